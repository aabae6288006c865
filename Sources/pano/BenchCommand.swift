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
        subcommands: [IOBench.self, KernelsBench.self, PipelineBench.self, GaussianBench.self, TrackingBench.self, CameraBench.self])
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
        abstract: "Online pipeline on a replayed sequence: frontend frames/s while the optimizer runs, keyframes optimised per second, snapshot write latency, RSS over time (mapping and final export apart) and its flatness after the first minute.")

    @Argument(help: "Sequence (default ../shared/data/3dmatch-sample, 640x480).")
    var sequence: String?

    @Option(help: "Replay the sequence this many times (ignored with --seconds).")
    var loops = 1

    @Option(help: "Map for this many seconds (the sequence is looped), then refine and export; 0 = use --loops.")
    var seconds: Double = 0

    @Option(help: "Snapshot every N keyframes.")
    var snapshotEvery = 5

    @Option(help: "Refinement steps when the source ends (geometry; panoptic gets 2/3 of it, appearance 2/5).")
    var finalSteps = OnlineMapperConfig().finalGeometrySteps

    @Option(help: "Keyframes kept at most (the memory budget of the map; the oldest redundant one is dropped beyond it).")
    var maxKeyframes = KeyframePolicy().maxKeyframes

    @Option(help: "Output directory (a session; replaced).")
    var out = "out/bench-pipeline"

    func run() throws {
        try reportingErrors {
            let path = sequence ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
                .appendingPathComponent("../shared/data/3dmatch-sample").standardizedFileURL.path
            let reader = try SequenceFormats.open(URL(fileURLWithPath: path), format: nil)
            // The frontend reads as fast as it can and the pipeline drops (as for a live camera), so its rate is
            // measured while the optimizer works; the optimizer's own rate is keyframes per busy second.
            let timed = seconds > 0
            let source = ReplaySource(reader: reader, freeRunning: true,
                                      loops: timed ? 1_000_000 / max(1, reader.info.frameCount) : loops,
                                      seconds: timed ? seconds : nil)
            let dir = URL(fileURLWithPath: out)
            try? FileManager.default.removeItem(at: dir)
            var config = SessionConfig()
            config.snapshotEveryKeyframes = snapshotEvery
            config.mapper.finalGeometrySteps = finalSteps
            config.mapper.finalPanopticSteps = finalSteps * 2 / 3
            config.mapper.finalAppearanceSteps = finalSteps * 2 / 5
            config.source = ["kind": "replay", "path": path, "format": "", "realtime": "0"]
            config.mapper.keyframes.maxKeyframes = maxKeyframes
            let session = try MappingSession(config: config, info: source.info, directory: dir)
            let sampler = RSSSampler()
            let budget = config.mapper.keyframes.maxKeyframes
            sampler.start()
            let line = SessionProgressLine("bench", total: timed ? 0 : source.info.frameCount ?? 0)
            let r = try blockingRun {
                try await session.run(source) { p in
                    sampler.mark(p.stage, budgetFull: p.keyframes >= budget)
                    line.update(p)
                }
            }
            let samples = sampler.stop()
            print("bench pipeline: \(reader.info.name), \(reader.info.intrinsics.size), \(r.framesRead) frames read ("
                  + (timed ? String(format: "%.0f s of replay", seconds) : "\(loops) loop(s)") + "), 2 cores")
            print(String(format: "  frontend (decode + validate) while optimizing  %6.1f frames/s   (target >= 30)",
                         r.frontendFramesPerSecond ?? 0))
            print(String(format: "  optimizer                                      %6.2f keyframes/s (%d keyframes kept, %d integrated in %.1f s busy; %d frames dropped on the live edge)",
                         Double(r.keyframesIntegrated) / max(1e-9, r.optimizerSeconds), r.keyframes,
                         r.keyframesIntegrated, r.optimizerSeconds, r.dropped))
            print(String(format: "  snapshot (re-mesh dirty blocks, label, render, write)  mean %.2f s over %d, last %.2f s; optimizer blocked by snapshots %.1f s in all",
                         r.snapshotSecondsTotal / Double(max(1, r.snapshots)), r.snapshots, r.lastSnapshotSeconds,
                         r.snapshotBlockingSeconds))
            Self.printRSS(samples, budget: budget)
            let footprint = try blockingRun { await session.footprint }
            print("  long-lived buffers at the end (MiB): " + footprint.map {
                String(format: "%@ %.0f", $0.what, Double($0.bytes) / 1_048_576)
            }.joined(separator: ", "))
        }
    }

    /// RSS during mapping (series, and the largest deviation from the median after the first minute against the
    /// ±10 % target) and during refinement / final export (peak), apart.
    static func printRSS(_ samples: [RSSSampler.Sample], budget: Int) {
        let mib = { (b: Int) in Double(b) / 1_048_576 }
        guard let peak = samples.map(\.rss).max() else { return }
        let mapping = samples.filter { $0.stage == "mapping" }
        let after = samples.filter { $0.stage != "mapping" }
        print(String(format: "  RSS peak %.0f MiB over %.0f s", mib(peak), samples.last?.seconds ?? 0))
        if !mapping.isEmpty {
            let step = max(1, mapping.count / 12)
            let marks = stride(from: 0, to: mapping.count, by: step).map {
                String(format: "%.0fs:%.0f", mapping[$0].seconds, mib(mapping[$0].rss))
            }
            print("  RSS MiB while mapping: " + marks.joined(separator: " "))
        }
        func flatness(_ steady: [RSSSampler.Sample], _ label: String) {
            guard steady.count >= 2 else {
                print("  RSS \(label): no samples (map longer: --seconds 240)")
                return
            }
            let sorted = steady.map(\.rss).sorted()
            let median = Double(sorted[sorted.count / 2])
            let deviation = steady.map { abs(Double($0.rss) - median) / median }.max() ?? 0
            print(String(format: "  RSS %@ (%d samples over %.0f s): median %.0f MiB, min %.0f, max %.0f, max deviation from the median %.1f %% (target <= 10 %%)",
                         label, steady.count, steady.last!.seconds - steady.first!.seconds, mib(Int(median)),
                         mib(sorted.first!), mib(sorted.last!), 100 * deviation))
        }
        flatness(mapping.filter { $0.seconds >= 60 }, "after the first minute of mapping")
        if let full = mapping.first(where: \.budgetFull) {
            flatness(mapping.filter { $0.seconds >= max(60, full.seconds) },
                     String(format: "once the keyframe budget (%d) is full (from %.0f s)", budget, max(60, full.seconds)))
        }
        if let first = after.first {
            print(String(format: "  RSS refinement + final export (from %.0f s): peak %.0f MiB, at the end %.0f MiB",
                         first.seconds, mib(after.map(\.rss).max()!), mib(after.last!.rss)))
        }
    }
}

/// Samples this process's resident set size once a second (from /proc/self/statm), tagged with the pipeline stage
/// last reported.
final class RSSSampler: @unchecked Sendable {
    struct Sample { var seconds: Double; var rss: Int; var stage: String; var budgetFull: Bool }
    // Safe: `samples`, `stage` and `running` are only touched under the lock.
    private let lock = NSLock()
    private var samples: [Sample] = []
    private var stage = "mapping"
    private var budgetFull = false
    private var running = false
    private let origin = Date()

    static func current() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func mark(_ stage: String, budgetFull: Bool) {
        lock.lock(); self.stage = stage; self.budgetFull = self.budgetFull || budgetFull; lock.unlock()
    }

    func start() {
        lock.lock(); running = true; lock.unlock()
        Thread.detachNewThread { [self] in
            while true {
                lock.lock()
                let go = running
                if go { samples.append(Sample(seconds: Date().timeIntervalSince(origin), rss: Self.current(), stage: stage,
                                              budgetFull: budgetFull)) }
                lock.unlock()
                if !go { return }
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    func stop() -> [Sample] {
        lock.lock(); defer { lock.unlock() }
        running = false
        samples.append(Sample(seconds: Date().timeIntervalSince(origin), rss: Self.current(), stage: stage,
                              budgetFull: budgetFull))
        return samples
    }
}
