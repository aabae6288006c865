import ArgumentParser
import Foundation
import IO
import Kernels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [IOBench.self, KernelsBench.self])
}

struct IOBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io",
        abstract: "Ingest (decode + convert + validate) frames/s for 640x480 JPEG + 16-bit PNG depth vs bare codecs, one core.")

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 2

    @Option(help: "7-Scenes-layout directory to take a real frame from (default: ../shared/data/3dmatch-sample/rgbd-frames when present).")
    var frames: String?

    func run() throws {
        try reportingErrors {
            let dir = frames.map { URL(fileURLWithPath: $0) } ?? defaultRealFrames()
            let r = try IOBenchmark.run(seconds: seconds, realFrameDirectory: dir)
            print("bench io: \(r.source), \(r.size), JPEG \(r.jpegBytes / 1024) KiB + PNG \(r.pngBytes / 1024) KiB, 1 thread")
            print(String(format: "  bare turbojpeg + libpng decode   %7.1f frames/s", r.rawFramesPerSecond))
            print(String(format: "  ingest (decode+convert+validate) %7.1f frames/s   ratio %.2f   (targets: >= 60 frames/s, ratio >= 0.8)",
                         r.ingestFramesPerSecond, r.ratio))
        }
    }

    func defaultRealFrames() -> URL? {
        let candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            .appendingPathComponent("../shared/data/3dmatch-sample/rgbd-frames").standardizedFileURL]
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }
}

struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Hash grid and MLP throughput against this machine's limits (random gather, sgemm 1024^3), 1 vs 2 threads.")

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 1

    @Option(help: "Points per hash-grid batch.")
    var points = 100_000

    @Option(help: "Rows per MLP batch.")
    var batch = 65536

    func run() throws {
        let threadCounts = [1, 2]
        print("hash grid: \(HashGridBenchmark.benchmarkConfig.levels) levels x \(HashGridBenchmark.benchmarkConfig.featuresPerLevel) features, 2^\(HashGridBenchmark.benchmarkConfig.log2TableSize) entries, \(points) uniform points")
        var grid: [Int: HashGridBenchmark.Result] = [:]
        for t in threadCounts {
            let r = HashGridBenchmark.runDetailed(points: points, threads: t, seconds: seconds)
            grid[t] = r
            print(String(format: "  %d thread(s): fwd %.2f M/s, bwd %.2f M/s, fwd+bwd %.2f M pts/s; random gather %.2f M/s -> ratio %.2f (target >= 0.5); level-major gather %.2f M/s -> ratio %.2f",
                         t, r.forwardPointsPerSecond / 1e6, r.backwardPointsPerSecond / 1e6,
                         r.forwardBackwardPointsPerSecond / 1e6, r.gatherPointsPerSecond / 1e6, r.ratio,
                         r.levelMajorGatherPointsPerSecond / 1e6, r.levelMajorRatio))
        }
        if let a = grid[1], let b = grid[2] {
            print(String(format: "  scaling 1 -> 2 threads: %.2fx", b.forwardBackwardPointsPerSecond / a.forwardBackwardPointsPerSecond))
        }
        print("MLP 32 -> 64 -> 64 -> 16, batch \(batch), forward + backward")
        var mlp: [Int: Double] = [:]
        for t in threadCounts {
            let r = MLPBenchmark.run(batch: batch, threads: t, seconds: seconds)
            mlp[t] = r.mlpGFLOPS
            print(String(format: "  %d thread(s): %.1f GFLOP/s; sgemm 1024^3 %.1f GFLOP/s -> ratio %.2f (target >= 0.3)",
                         t, r.mlpGFLOPS, r.sgemmPeakGFLOPS, r.mlpGFLOPS / r.sgemmPeakGFLOPS))
        }
        if let a = mlp[1], let b = mlp[2] { print(String(format: "  scaling 1 -> 2 threads: %.2fx", b / a)) }
        print("instance-token attention, 65536 points x 32 tokens, width 16")
        for t in threadCounts {
            let r = TokenAttentionBenchmark.run(points: 65536, tokens: 32, width: 16, threads: t)
            print(String(format: "  %d thread(s): forward %.2f M pts/s, forward+backward %.2f M pts/s",
                         t, r.forwardPointsPerSecond / 1e6, r.forwardBackwardPointsPerSecond / 1e6))
        }
    }
}
