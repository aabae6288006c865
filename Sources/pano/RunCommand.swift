import ArgumentParser
import Dispatch
import Evaluation
import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import Tracking
#if canImport(Glibc)
import Glibc
#endif

/// `pano run`: the online pipeline on a sequence directory (or `synthetic`), with snapshots and checkpoints.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Map a sequence online: keyframes, sliding-window optimisation, periodic snapshots and checkpoints.",
        discussion: """
            OUT gets session.json (the run's settings), session/ (checkpoints: Ctrl-C or SIGTERM saves one, \
            `pano resume OUT` continues), snapshots/ (partial maps; LATEST names the newest complete one) and, when \
            the source ends, map/ (mesh.ply, points.ply, legend.json; with --hold-out, heldout/ renders of every branch). SEQUENCE `synthetic` maps the synthetic room \
            rendered on the fly.
            """)

    @Argument(help: "Sequence directory (any supported layout), or `synthetic`.")
    var sequence: String

    @Option(help: "Output (session) directory.")
    var out = "out/run"

    @Option(help: "Layout instead of detecting it.")
    var format: String?

    @Flag(help: "Replay at the recorded frame rate (frames are dropped when the mapper falls behind).")
    var realtime = false

    @Flag(help: "Ignore the sequence's poses (except the first, which anchors the world frame): track the camera with RGB-D odometry. Keyframes are kept in OUT/keyframes/.")
    var track = false

    @Option(help: "With `synthetic`: number of frames.")
    var syntheticFrames = 60

    @Option(help: "With `synthetic`: image width (height is 3/4 of it).")
    var syntheticWidth = 320

    @OptionGroup var mapping: MappingOptions

    func run() throws {
        try reportingErrors {
            var config = mapping.sessionConfig()
            config.storeKeyframes = track
            config.source = sequence == "synthetic"
                ? ["kind": "synthetic", "seed": String(mapping.seed), "frames": String(syntheticFrames),
                   "width": String(syntheticWidth)]
                : ["kind": "replay", "path": URL(fileURLWithPath: sequence).standardizedFileURL.path,
                   "format": format ?? "", "realtime": realtime ? "1" : "0"]
            if track { config.source["track"] = "1" }
            let source = try openSource(config.source)
            let session = try MappingSession(config: config, info: source.info, directory: URL(fileURLWithPath: out))
            try runSession(session, source: source, label: "run")
        }
    }
}

/// Options of the online mapper shared by `pano run` and `pano live`.
struct MappingOptions: ParsableArguments {
    @Option(help: "Random seed (same seed and settings: same map).")
    var seed: UInt64 = 1

    @Option(help: "Snapshot every N keyframes (0 = off).")
    var snapshotEvery = 10

    @Option(help: "Snapshot every T seconds too (0 = off).")
    var snapshotSeconds: Double = 0

    @Option(help: "Checkpoint every M keyframes (0 = only on stop and at the end).")
    var checkpointEvery = 10

    @Option(help: "Geometry steps per new keyframe.")
    var geometrySteps = OnlineMapperConfig().geometryStepsPerKeyframe

    @Option(help: "Semantic / instance steps per new keyframe.")
    var panopticSteps = OnlineMapperConfig().panopticStepsPerKeyframe

    @Option(help: "Refinement steps over all keyframes when the source ends (geometry; panoptic gets 2/3 of it).")
    var finalSteps = OnlineMapperConfig().finalGeometrySteps

    @Option(help: "Appearance (Gaussian) steps per new keyframe.")
    var appearanceSteps = OnlineMapperConfig().appearanceStepsPerKeyframe

    @Option(help: "Appearance refinement steps over all keyframes when the source ends.")
    var finalAppearanceSteps = OnlineMapperConfig().finalAppearanceSteps

    @Flag(help: "No appearance branch (no Gaussians; no RGB / depth renders).")
    var noAppearance = false

    @Option(help: "Hold out every n-th frame (never a keyframe); the final map renders them into map/heldout/ for `pano eval images` / `pano eval panoptic`. 0 = none.")
    var holdOut = 0

    @Option(help: "Half-size in metres of the mapped cube around the first camera.")
    var extent: Float = OnlineMapperConfig().extent

    @Flag(help: "Geometry only (no semantic / instance fields).")
    var noPanoptic = false

    @Flag(help: "Log and skip frames that fail to decode or validate.")
    var skipBadFrames = false

    func sessionConfig() -> SessionConfig {
        var config = SessionConfig()
        config.mapper.seed = seed
        config.mapper.geometryStepsPerKeyframe = geometrySteps
        config.mapper.panopticStepsPerKeyframe = panopticSteps
        config.mapper.finalGeometrySteps = finalSteps
        config.mapper.finalPanopticSteps = finalSteps * 2 / 3
        config.mapper.extent = extent
        config.mapper.panoptic = !noPanoptic
        config.mapper.appearance = !noAppearance
        config.mapper.appearanceStepsPerKeyframe = appearanceSteps
        config.mapper.finalAppearanceSteps = finalAppearanceSteps
        config.mapper.keyframes.holdOut = holdOut
        config.snapshotEveryKeyframes = snapshotEvery
        config.snapshotEverySeconds = snapshotSeconds
        config.checkpointEveryKeyframes = checkpointEvery
        config.skipBadFrames = skipBadFrames
        return config
    }
}

/// `pano resume`: continues a stopped or killed run from its newest valid checkpoint.
struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue an online run from its newest valid checkpoint (a corrupt one is refused; the previous is used).")

    @Argument(help: "Session directory of `pano run`.")
    var directory: String

    func run() throws {
        try reportingErrors {
            let dir = URL(fileURLWithPath: directory)
            let config = try MappingSession.savedConfig(dir)
            var d = config.source
            d["unplug-after"] = nil // a simulated unplug happens once
            if d["kind"] == "live-device" { // new frames are numbered above anything stored before a crash
                let used = KeyframeStore(directory: dir.appendingPathComponent("keyframes")).indices()
                    + Files.list(URL(fileURLWithPath: config.maskInbox ?? "/nonexistent")).compactMap {
                        $0.hasSuffix(".json") ? Int($0.dropLast(5)) : nil
                    }
                d["first-index"] = String((used.max() ?? -1) + 1)
            }
            let source = try openSource(d)
            let session = try MappingSession(resuming: dir, info: source.info, frames: { try source.frame(at: $0) })
            let (keyframes, position, last) = try blockingRun {
                (await session.keyframeCount, await session.currentProgress.position, await session.lastKeyframe)
            }
            log.info("resume: \(keyframes) keyframes restored, continuing at frame \(position)")
            // A tracked stream continues from the last keyframe (the tracker relocalises against it).
            try runSession(session, source: try openSource(d, seed: last), label: "resume")
        }
    }
}

/// `pano export`: the final map of a session from its newest valid checkpoint.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the map of a session (newest valid checkpoint) as mesh.ply, points.ply and legend.json.")

    @Argument(help: "Session directory of `pano run`.")
    var directory: String

    @Option(help: "Output directory (default DIRECTORY/map).")
    var out: String?

    func run() throws {
        try reportingErrors {
            let dir = URL(fileURLWithPath: directory)
            let config = try MappingSession.savedConfig(dir)
            let source = try openSource(config.source)
            let session = try MappingSession(resuming: dir, info: source.info, frames: { try source.frame(at: $0) })
            let target = out.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("map")
            let keyframes = try blockingRun {
                try await session.export(to: target, frames: { try source.frame(at: $0) })
                return await session.keyframeCount
            }
            print("exported \(keyframes) keyframes → \(target.path)")
        }
    }
}

/// Opens the source a session description names (`SessionConfig.source`); tracked sources (`track` = 1, and live
/// ones) continue from `seed` when resuming.
func openSource(_ d: [String: String], seed: Frame? = nil) throws -> any FrameSource {
    let base = try openBaseSource(d)
    guard d["track"] == "1" else { return base }
    return try tracked(base, d, seed: seed)
}

/// `base` with the tracker's poses; the world frame is the given anchor, else the base's first given pose.
func tracked<S: FrameSource>(_ base: S, _ d: [String: String], seed: Frame?) throws -> any FrameSource {
    var anchor = RigidTransform.identity
    if let text = d["anchor"], !text.isEmpty {
        let v = text.split(separator: " ").compactMap { Double($0) }
        guard v.count == 12 else {
            throw MapError(.badPose, "session.json: the anchor pose has \(v.count) numbers, expected 12", hint: "start a new run")
        }
        anchor = RigidTransform(rowMajor: v)
    } else if base.info.frameCount != nil {
        anchor = try base.frame(at: 0).T_W_C
    }
    return TrackedSource(base: base, anchor: anchor, seed: seed)
}

func openBaseSource(_ d: [String: String]) throws -> any FrameSource {
    switch d["kind"] {
    case "live-replay", "live-device":
        return try openLiveSource(d)
    case "synthetic":
        var c = SyntheticSceneConfig()
        c.seed = UInt64(d["seed"] ?? "1") ?? 1
        c.frameCount = Int(d["frames"] ?? "") ?? c.frameCount
        c.width = Int(d["width"] ?? "") ?? c.width
        c.height = c.width * 3 / 4
        try c.validate()
        return SyntheticSource(scene: try SyntheticScene(config: c))
    case "replay":
        guard let path = d["path"] else {
            throw MapError(.badFormat, "session.json names no source path", hint: "start a new run")
        }
        let format = d["format"].flatMap { $0.isEmpty ? nil : $0 }
        return ReplaySource(reader: try SequenceFormats.open(URL(fileURLWithPath: path), format: format),
                            realtime: d["realtime"] == "1")
    default:
        throw MapError(.badFormat, "session.json has an unknown source kind \(d["kind"] ?? "none")",
                       hint: "start a new run")
    }
}

/// A progress line fed from the optimizer task.
final class SessionProgressLine: @unchecked Sendable {
    // Safe: every access holds the lock.
    private let lock = NSLock()
    private let progress: Progress

    init(_ label: String, total: Int) { progress = Progress(label, total: total) }

    func update(_ p: SessionProgress) {
        lock.lock(); defer { lock.unlock() }
        let fps = p.elapsed > 0 ? Double(p.framesIn) / p.elapsed : 0
        progress.update(progress.total > 0 ? min(p.position, progress.total) : p.position, extra: String(
            format: "%@  in %d  keyframes %d  drops %d  loss %.4f  %.1f frames/s  snapshots %d%@", p.stage, p.framesIn,
            p.keyframes, p.dropped, p.lastLoss, fps, p.snapshots, p.masksReceived > 0 ? "  masks \(p.masksReceived)" : ""))
    }
}

/// Runs a session to its end (or to Ctrl-C / SIGTERM, which checkpoint and exit with status 130).
func runSession(_ session: MappingSession, source: any FrameSource, label: String) throws {
    let line = SessionProgressLine(label, total: source.info.frameCount ?? 0)
    let stop = session.stop
    var handlers: [DispatchSourceSignal] = []
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let h = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        h.setEventHandler {
            FileHandle.standardError.write(Data("\nstopping: saving the session…\n".utf8))
            stop.set()
        }
        h.resume()
        handlers.append(h)
    }
    defer { for h in handlers { h.cancel() } }
    let result: SessionProgress
    do { result = try blockingRun { try await session.run(source) { line.update($0) } } } catch let e as MapError
        where e.kind == .deviceLost || e.kind == .trackingLost {
        log.error("\(e)")
        let position = (try? blockingRun { await session.currentProgress.position }) ?? 0
        print("session saved in \(session.directory.path) (mapped up to frame \(position)); continue with `pano resume \(session.directory.path)`")
        throw ExitCode(2)
    }
    if result.stage == "stopped" {
        print("session saved in \(session.directory.path) at frame \(result.position); continue with `pano resume \(session.directory.path)`")
        throw ExitCode(130)
    }
    print(String(format: "mapped %d frames, %d keyframes, %d dropped, %d skipped, %d snapshots in %.1f s → %@",
                 result.framesIn, result.keyframes, result.dropped, result.skipped, result.snapshots, result.elapsed,
                 session.directory.appendingPathComponent("map").path))
}

/// Runs async work from a synchronous command and waits for it.
func blockingRun<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

/// The result of a task, handed to the waiting thread.
final class ResultBox<T>: @unchecked Sendable {
    // Safe: written once by the task before it signals the semaphore, read once by the waiter after it.
    var result: Result<T, Error>?
}
