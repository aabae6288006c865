import ArgumentParser
import Foundation
import IO

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [IOBench.self])
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
