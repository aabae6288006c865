import ArgumentParser
import Foundation
import IO
import Kernels
import Pipeline
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [IOBench.self, KernelsBench.self, PipelineBench.self, GaussianBench.self])
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

struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Online pipeline on a replayed sequence: frontend frames/s while the optimizer runs, keyframes optimised per second, snapshot write latency, RSS over time.")

    @Argument(help: "Sequence (default ../shared/data/3dmatch-sample, 640x480).")
    var sequence: String?

    @Option(help: "Replay the sequence this many times.")
    var loops = 1

    @Option(help: "Output directory (a session; replaced).")
    var out = "out/bench-pipeline"

    func run() throws {
        try reportingErrors {
            let path = sequence ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
                .appendingPathComponent("../shared/data/3dmatch-sample").standardizedFileURL.path
            let reader = try SequenceFormats.open(URL(fileURLWithPath: path), format: nil)
            // The frontend reads as fast as it can and the pipeline drops (as for a live camera), so its rate is
            // measured while the optimizer works; the optimizer's own rate is keyframes per busy second.
            let source = ReplaySource(reader: reader, freeRunning: true, loops: loops)
            let dir = URL(fileURLWithPath: out)
            try? FileManager.default.removeItem(at: dir)
            var config = SessionConfig()
            config.snapshotEveryKeyframes = 5
            config.source = ["kind": "replay", "path": path, "format": "", "realtime": "0"]
            let session = try MappingSession(config: config, info: source.info, directory: dir)
            let sampler = RSSSampler()
            sampler.start()
            let line = SessionProgressLine("bench", total: source.info.frameCount ?? 0)
            let r = try blockingRun { try await session.run(source) { line.update($0) } }
            let samples = sampler.stop()
            print("bench pipeline: \(reader.info.name), \(reader.info.intrinsics.size), \(r.framesRead) frames read (\(loops) loop(s)), 2 cores")
            print(String(format: "  frontend (decode + validate) while optimizing  %6.1f frames/s   (target >= 30)",
                         r.frontendFramesPerSecond ?? 0))
            print(String(format: "  optimizer                                      %6.2f keyframes/s (%d keyframes in %.1f s busy; %d frames dropped on the live edge)",
                         Double(r.keyframes) / max(1e-9, r.optimizerSeconds), r.keyframes, r.optimizerSeconds, r.dropped))
            print(String(format: "  snapshot (re-mesh dirty blocks, label, render, write)  mean %.2f s over %d, last %.2f s",
                         r.snapshotSecondsTotal / Double(max(1, r.snapshots)), r.snapshots, r.lastSnapshotSeconds))
            let mib = { (b: Int) in Double(b) / 1_048_576 }
            if let peak = samples.map(\.rss).max() {
                print(String(format: "  RSS peak %.0f MiB over %.0f s", mib(peak), samples.last?.seconds ?? 0))
                let afterMinute = samples.filter { $0.seconds >= 60 }
                if let first = afterMinute.first, let last = afterMinute.last {
                    print(String(format: "  RSS after the first minute: %.0f → %.0f MiB (%+.1f %%)", mib(first.rss), mib(last.rss),
                                 100 * (Double(last.rss) / Double(first.rss) - 1)))
                } else {
                    print("  RSS after the first minute: run shorter than a minute (use --loops)")
                }
                let marks = stride(from: 0, to: samples.count, by: max(1, samples.count / 8)).map {
                    String(format: "%.0fs:%.0f", samples[$0].seconds, mib(samples[$0].rss))
                }
                print("  RSS MiB over time: " + marks.joined(separator: " "))
            }
        }
    }
}

/// Samples this process's resident set size once a second (from /proc/self/statm).
final class RSSSampler: @unchecked Sendable {
    // Safe: `samples` and `running` are only touched under the lock.
    private let lock = NSLock()
    private var samples: [(seconds: Double, rss: Int)] = []
    private var running = false
    private let origin = Date()

    static func current() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func start() {
        lock.lock(); running = true; lock.unlock()
        Thread.detachNewThread { [self] in
            while true {
                lock.lock()
                let go = running
                if go { samples.append((Date().timeIntervalSince(origin), Self.current())) }
                lock.unlock()
                if !go { return }
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    func stop() -> [(seconds: Double, rss: Int)] {
        lock.lock(); defer { lock.unlock() }
        running = false
        samples.append((Date().timeIntervalSince(origin), Self.current()))
        return samples
    }
}
