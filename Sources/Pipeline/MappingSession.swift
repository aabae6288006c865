import Foundation
import Evaluation
import IO
import Logging
import MapCore

/// Everything a run needs besides the source, saved as `OUT/session.json` so `pano resume OUT` can rebuild the run.
public struct SessionConfig: Sendable, Codable, Equatable {
    public var mapper = OnlineMapperConfig()
    /// Snapshots every N keyframes (0 = off) and/or every T seconds (0 = off).
    public var snapshotEveryKeyframes = 10
    public var snapshotEverySeconds: Double = 0
    /// Checkpoints every M keyframes (0 = only on stop and at the end).
    public var checkpointEveryKeyframes = 10
    public var skipBadFrames = false
    /// Capacity of each pipeline edge (frames).
    public var queueCapacity = 8
    /// How to reopen the source on resume: free-form description written by the CLI.
    public var source: [String: String] = [:]
    /// Keep the keyframes in `OUT/keyframes/` (`KeyframeStore`): resume reads them there instead of from the source.
    /// Needed when the source cannot give a keyframe back by index with the pose it was mapped at (a live camera, a
    /// tracked stream) or when its masks arrived later (the mask inbox).
    public var storeKeyframes = false
    /// Directory of the mask inbox (`MaskInbox`), or nil: masks come with the frames, or not at all.
    public var maskInbox: String?
    /// When the source ends, wait up to this many seconds for masks of keyframes that have none yet.
    public var maskWaitSeconds: Double = 0

    public init() {}

    // Keys added after the first version are optional in a saved configuration.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mapper = try c.decode(OnlineMapperConfig.self, forKey: .mapper)
        snapshotEveryKeyframes = try c.decode(Int.self, forKey: .snapshotEveryKeyframes)
        snapshotEverySeconds = try c.decode(Double.self, forKey: .snapshotEverySeconds)
        checkpointEveryKeyframes = try c.decode(Int.self, forKey: .checkpointEveryKeyframes)
        skipBadFrames = try c.decode(Bool.self, forKey: .skipBadFrames)
        queueCapacity = try c.decode(Int.self, forKey: .queueCapacity)
        source = try c.decode([String: String].self, forKey: .source)
        storeKeyframes = try c.decodeIfPresent(Bool.self, forKey: .storeKeyframes) ?? false
        maskInbox = try c.decodeIfPresent(String.self, forKey: .maskInbox)
        maskWaitSeconds = try c.decodeIfPresent(Double.self, forKey: .maskWaitSeconds) ?? 0
    }
}

/// Counters shown on the progress line and returned at the end.
public struct SessionProgress: Sendable, Equatable, Codable {
    public var framesIn = 0
    public var keyframes = 0
    /// Frames dropped on paced / live edges (replay never drops).
    public var dropped = 0
    /// Frames skipped as unreadable or invalid (--skip-bad-frames).
    public var skipped = 0
    public var snapshots = 0
    public var checkpoints = 0
    public var lastLoss: Float = 0
    public var lastSnapshotSeconds: Double = 0
    public var snapshotSecondsTotal: Double = 0
    public var elapsed: Double = 0
    /// Source index of the next frame to map (the resume position).
    public var position = 0
    public var totalFrames: Int?
    public var stage = "mapping"
    /// Frames the frontend read (validated or not) and the frontend's rate while the optimizer ran (frames/s; set
    /// once the source has ended).
    public var framesRead = 0
    public var frontendFramesPerSecond: Double?
    /// Seconds spent integrating keyframes (the optimizer's busy time, refinement excluded).
    public var optimizerSeconds: Double = 0
    /// Keyframes integrated so far (`keyframes` is the number kept, at most the keyframe budget).
    public var keyframesIntegrated = 0
    /// Seconds the optimizer spent on snapshots (copying the state out and waiting for the writer, which builds
    /// and writes them concurrently); `snapshotSecondsTotal` is the writer's time.
    public var snapshotBlockingSeconds: Double = 0
    /// Keyframes that got their masks through the mask inbox.
    public var masksReceived = 0

    public init() {}

    // Counters added after format version 1 are optional in a saved state.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        framesIn = try c.decode(Int.self, forKey: .framesIn)
        keyframes = try c.decode(Int.self, forKey: .keyframes)
        dropped = try c.decode(Int.self, forKey: .dropped)
        skipped = try c.decode(Int.self, forKey: .skipped)
        snapshots = try c.decode(Int.self, forKey: .snapshots)
        checkpoints = try c.decode(Int.self, forKey: .checkpoints)
        lastLoss = try c.decode(Float.self, forKey: .lastLoss)
        lastSnapshotSeconds = try c.decode(Double.self, forKey: .lastSnapshotSeconds)
        snapshotSecondsTotal = try c.decode(Double.self, forKey: .snapshotSecondsTotal)
        elapsed = try c.decode(Double.self, forKey: .elapsed)
        position = try c.decode(Int.self, forKey: .position)
        totalFrames = try c.decodeIfPresent(Int.self, forKey: .totalFrames)
        stage = try c.decode(String.self, forKey: .stage)
        framesRead = try c.decode(Int.self, forKey: .framesRead)
        frontendFramesPerSecond = try c.decodeIfPresent(Double.self, forKey: .frontendFramesPerSecond)
        optimizerSeconds = try c.decode(Double.self, forKey: .optimizerSeconds)
        keyframesIntegrated = try c.decodeIfPresent(Int.self, forKey: .keyframesIntegrated) ?? keyframes
        snapshotBlockingSeconds = try c.decodeIfPresent(Double.self, forKey: .snapshotBlockingSeconds) ?? 0
        masksReceived = try c.decodeIfPresent(Int.self, forKey: .masksReceived) ?? 0
    }
}

/// The state the keyframe manager needs to continue after a resume: the pose of the last keyframe and the frames
/// since.
public struct KeyframeManagerState: Sendable, Codable, Equatable {
    public var lastKeyframePose: RigidTransform?
    public var framesSinceKeyframe = 0
    public init() {}
}

/// A validated frame on its way through the pipeline.
struct FrameEnvelope: Sendable {
    var index: Int
    var frame: Frame
}

/// Frontend: pulls frames from the source, validates them, and sends them on. Bad frames stop the run with a typed
/// error, or are skipped and counted with `skipBadFrames`.
actor Frontend {
    let validator: FrameValidator
    let skipBadFrames: Bool
    private(set) var skipped = 0
    private(set) var read = 0
    private(set) var failure: MapError?
    /// When the source ended (or failed), for the frontend's frame rate.
    private(set) var finishedAt: Date?

    init(vocabulary: Vocabulary?, skipBadFrames: Bool) {
        validator = FrameValidator(vocabulary: vocabulary)
        self.skipBadFrames = skipBadFrames
    }

    func run<S: FrameSource>(_ source: S, from start: Int, into out: BoundedChannel<FrameEnvelope>,
                             stop: StopFlag) async {
        var iterator = source.frames(from: start).makeAsyncIterator()
        while !stop.isSet {
            let next: SourceFrame?
            do { next = try await iterator.next() } catch {
                failure = MapError(.ioFailure, "frame source failed: \(error)", hint: "check the source")
                break
            }
            guard let item = next else { break }
            read += 1
            do {
                let frame = try item.result.get()
                try validator.validate(frame)
                await out.send(FrameEnvelope(index: item.index, frame: frame))
            } catch {
                let e = (error as? MapError ?? MapError(.badFormat, "\(error)")).at(frame: item.index)
                // A lost camera or lost tracking ends the stream whatever --skip-bad-frames says (the session is
                // saved and can be resumed); only unreadable or invalid frames are skipped.
                if skipBadFrames && e.kind != .deviceLost && e.kind != .trackingLost {
                    skipped += 1
                    pipelineLog.warning("skipped frame \(item.index): \(e)")
                } else {
                    failure = e
                    break
                }
            }
        }
        finishedAt = Date()
        await out.finish()
    }
}

/// Keyframe manager: selects keyframes by motion / time (`KeyframePolicy`) and passes only those on.
actor KeyframeManager {
    let policy: KeyframePolicy
    private(set) var state: KeyframeManagerState
    private(set) var framesIn = 0

    init(policy: KeyframePolicy, state: KeyframeManagerState) { self.policy = policy; self.state = state }

    func run(from input: BoundedChannel<FrameEnvelope>, into out: BoundedChannel<FrameEnvelope>) async {
        while let e = await input.receive() {
            framesIn += 1
            if !policy.isHeldOut(e.index),
               policy.isKeyframe(e.frame.T_W_C, last: state.lastKeyframePose, gap: state.framesSinceKeyframe + 1) {
                state.lastKeyframePose = e.frame.T_W_C
                state.framesSinceKeyframe = 0
                await out.send(e)
            } else {
                state.framesSinceKeyframe += 1
            }
        }
        await out.finish()
    }
}

/// Snapshot writer: owns the snapshot directory (writes are atomic, see `SnapshotStore`) and the snapshot builder,
/// which meshes, labels and renders a copy of the map state (`MapView`) while the optimizer goes on.
actor SnapshotWriter {
    let store: SnapshotStore
    let builder: SnapshotBuilder

    init(store: SnapshotStore, config: OnlineMapperConfig, info: SourceInfo) {
        self.store = store
        builder = SnapshotBuilder(config: config, info: info)
    }

    /// Builds the snapshot of `view` and writes it as `sequence`; returns its directory and the seconds both took.
    func write(_ view: MapView, sequence: Int, framesCovered: Int, extra: [String: String]) async throws
        -> (directory: URL, seconds: Double)
    {
        let t0 = Date()
        let store = self.store
        let url = try await builder.run { replica in
            var content = try SnapshotBuilder.content(of: replica, view: view, framesCovered: framesCovered)
            content.extra.merge(extra) { a, _ in a }
            defer { replica.forgetKeyframes() }
            return try store.write(content, sequence: sequence).directory
        }
        // No trim here: the next snapshot needs the same working memory again (the heap keeps it, as it keeps frame
        // buffers; see MemoryTrim). The session trims after one-off phases.
        return (url, Date().timeIntervalSince(t0))
    }

    /// Drops the builder's block meshes and fields (after the final snapshot).
    func release() async { await builder.release() }
}

/// The snapshot writer's replica of the mapper (same config and source info; its fields get the parameters of each
/// `MapView`, its mesher keeps the block meshes between snapshots so only dirty blocks are re-meshed), and the
/// dedicated thread it runs on: snapshot work is seconds of synchronous meshing and inference, which must not occupy
/// the cooperative pool the frontend and keyframe manager run on.
///
/// @unchecked Sendable is safe: `replica` is only touched by jobs on the private serial `queue`, one at a time.
final class SnapshotBuilder: @unchecked Sendable {
    let config: OnlineMapperConfig
    let info: SourceInfo
    private let queue = DispatchQueue(label: "pano.snapshot-builder")
    private var replica: OnlineMapper?

    init(config: OnlineMapperConfig, info: SourceInfo) { self.config = config; self.info = info }

    /// Runs `body` with the replica on the builder's thread.
    func run<T: Sendable>(_ body: @escaping @Sendable (OnlineMapper) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
            queue.async { [self] in
                do {
                    if replica == nil { replica = try OnlineMapper(config: config, info: info) }
                    c.resume(returning: try body(replica!))
                } catch { c.resume(throwing: error) }
            }
        }
    }

    func release() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            queue.async { [self] in replica = nil; c.resume() }
        }
        MemoryTrim.releaseFreedMemory()
    }

    /// The snapshot of `view` as `mapper` (the session's own mapper, or a replica showing the view) builds it:
    /// re-mesh the dirty blocks, assemble, colour, label, render.
    static func content(of mapper: OnlineMapper, view: MapView?, framesCovered: Int) throws -> SnapshotContent {
        if let view { try mapper.show(view) }
        let (mesh, legend, remeshed) = try mapper.map()
        var points = mesh
        points.triangles = []
        return SnapshotContent(mesh: mesh, points: points, legend: legend, renders: try mapper.renders(legend: legend),
                               framesCovered: framesCovered, keyframesCovered: mapper.keyframes.count,
                               extra: ["remeshed_blocks": String(remeshed)])
    }
}

/// Session store: owns the checkpoint directory; writes are atomic and keep the previous checkpoint.
actor SessionStore {
    let store: CheckpointStore

    init(store: CheckpointStore) { self.store = store }

    func save(_ checkpoint: Checkpoint) throws -> URL { try store.save(checkpoint) }
}

/// A stop request (SIGINT / SIGTERM, or a test), readable from any thread.
public final class StopFlag: @unchecked Sendable {
    // Safe: a single word written under the lock and read under it.
    private let lock = NSLock()
    private var value = false
    public init() {}
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    public func set() { lock.lock(); value = true; lock.unlock() }
}

let pipelineLog = Logger(label: "pano.pipeline")

/// One online mapping run: source → frontend → keyframe manager → optimizer (this actor, which owns the
/// `OnlineMapper` and runs its step functions) → snapshot writer / session store. The recipe is `run`: start the stages, integrate keyframes as
/// they come (snapshot and checkpoint on schedule), refine and write the final map when the source ends, or
/// checkpoint and return when asked to stop.
public actor MappingSession {
    public nonisolated let config: SessionConfig
    public nonisolated let directory: URL
    public nonisolated let stop = StopFlag()
    var mapper: OnlineMapper
    var keyframeState: KeyframeManagerState
    var position: Int
    var progress = SessionProgress()
    var checkpointSequence: Int
    var snapshotSequence = 0
    /// The mapping and refinement are complete (a final checkpoint was restored): only the export is left.
    var refined = false
    /// A snapshot is being built and written by the writer (at most one at a time), a due one waits for it, and the
    /// first error one of them threw (raised by the optimizer loop).
    var snapshotRunning = false
    var pendingSnapshot: Task<Void, Never>?
    var snapshotOwed = false
    var snapshotFailure: (any Error)?
    /// Where keyframes are kept when the source cannot give them back (`SessionConfig.storeKeyframes`), and the
    /// keyframe sets of the last two checkpoints (their files must stay).
    let keyframeStore: KeyframeStore?
    var checkpointKeyframes: [Set<Int>] = []
    let inbox: MaskInbox?

    /// A new session writing into `directory` (session.json, session/, snapshots/, map/).
    public init(config: SessionConfig, info: SourceInfo, directory: URL) throws {
        self.config = config
        self.directory = directory
        mapper = try OnlineMapper(config: config.mapper, info: info)
        keyframeState = KeyframeManagerState()
        position = 0
        checkpointSequence = 0
        (keyframeStore, inbox) = try Self.liveParts(config, directory: directory, vocabulary: info.vocabulary)
        try Files.createDirectory(directory)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(try enc.encode(config), to: directory.appendingPathComponent("session.json"))
    }

    /// A session continued from the newest valid checkpoint in `directory` (refused ones are logged).
    /// Keyframes are re-read from the source by index, or from `OUT/keyframes/` when the session keeps them there.
    public init(resuming directory: URL, info: SourceInfo, frames: (Int) throws -> Frame) throws {
        self.directory = directory
        let store = CheckpointStore(directory: directory.appendingPathComponent("session"))
        let (checkpoint, dir, refused) = try store.loadLatest()
        for (url, e) in refused { pipelineLog.error("refused checkpoint \(url.lastPathComponent): \(e)") }
        pipelineLog.info("resuming from \(dir.lastPathComponent)")
        let saved = try Self.savedConfig(directory)
        (keyframeStore, inbox) = try Self.liveParts(saved, directory: directory, vocabulary: info.vocabulary)
        let restored: SessionState.Restored
        if let keyframeStore {
            restored = try SessionState.restore(checkpoint, info: info, frames: { try keyframeStore.read($0) })
        } else {
            restored = try SessionState.restore(checkpoint, info: info, frames: frames)
        }
        config = restored.config
        mapper = restored.mapper
        keyframeState = restored.keyframeState
        position = restored.position
        progress = restored.progress
        checkpointSequence = checkpoint.sequence
        refined = restored.final
        // Snapshots written after that checkpoint (before a crash) keep their numbers; new ones go above them.
        snapshotSequence = max(restored.snapshotSequence,
                               SnapshotStore(directory: directory.appendingPathComponent("snapshots")).nextSequence() - 1)
    }

    static func liveParts(_ config: SessionConfig, directory: URL, vocabulary: Vocabulary?) throws
        -> (KeyframeStore?, MaskInbox?) {
        // Masks that arrived through the inbox exist only in the stored keyframes, so an inbox implies the store.
        let store = config.storeKeyframes || config.maskInbox != nil
            ? KeyframeStore(directory: directory.appendingPathComponent("keyframes"), colourPreviews: config.maskInbox != nil)
            : nil
        let inbox = try config.maskInbox.map { try MaskInbox(directory: URL(fileURLWithPath: $0), vocabulary: vocabulary) }
        return (store, inbox)
    }

    /// The saved configuration of a session directory.
    public static func savedConfig(_ directory: URL) throws -> SessionConfig {
        let url = directory.appendingPathComponent("session.json")
        let bytes = try Files.read(url, what: "session configuration")
        do { return try JSONDecoder().decode(SessionConfig.self, from: Data(bytes)) } catch {
            throw MapError(.badFormat, "cannot read the session configuration: \(error)", file: url.path,
                           hint: "the directory is not a pano session, or session.json was edited")
        }
    }

    public nonisolated var snapshots: SnapshotStore {
        SnapshotStore(directory: directory.appendingPathComponent("snapshots"))
    }

    /// Runs until the source ends (then refines, snapshots, checkpoints and exports the map to `map/`) or until
    /// `stop` is set (then checkpoints and returns). `report` gets the progress after every keyframe.
    @discardableResult
    public func run<S: FrameSource>(_ source: S, report: (@Sendable (SessionProgress) -> Void)? = nil) async throws
        -> SessionProgress
    {
        let start = Date()
        let previous = progress.elapsed
        progress.totalFrames = source.info.frameCount
        if refined { // killed after the final checkpoint: redo only the export (refining again would change the map)
            try export(to: directory.appendingPathComponent("map"), frames: { try source.frame(at: $0) })
            progress.stage = "done"
            report?(progress)
            return progress
        }
        let capacity = max(1, config.queueCapacity)
        let frames = BoundedChannel<FrameEnvelope>(name: "frontend→keyframes", capacity: capacity,
                                                   policy: source.isPaced ? .dropOldest : .backPressure)
        let keyframes = BoundedChannel<FrameEnvelope>(name: "keyframes→optimizer", capacity: capacity,
                                                      policy: .backPressure)
        let frontend = Frontend(vocabulary: source.info.vocabulary, skipBadFrames: config.skipBadFrames)
        let manager = KeyframeManager(policy: config.mapper.keyframes, state: keyframeState)
        let writer = SnapshotWriter(store: snapshots, config: config.mapper, info: source.info)
        let sessionStore = SessionStore(store: CheckpointStore(directory: directory.appendingPathComponent("session")))
        let stop = self.stop
        let from = position
        let frontTask = Task { await frontend.run(source, from: from, into: frames, stop: stop) }
        let managerTask = Task { await manager.run(from: frames, into: keyframes) }
        var lastSnapshot = Date()
        let framesBefore = progress.framesIn

        // The optimizer loop (this task owns the mapper).
        while let e = await keyframes.receive() {
            if let failure = snapshotFailure { throw failure }
            try deliverMasks() // masks that arrived join this keyframe's panoptic rounds
            let r = try mapper.integrate(e.frame)
            try keyframeStore?.write(e.frame)
            progress.optimizerSeconds += r.seconds
            progress.keyframesIntegrated += 1
            progress.framesRead = await frontend.read
            if progress.frontendFramesPerSecond == nil, let end = await frontend.finishedAt {
                progress.frontendFramesPerSecond = Double(progress.framesRead) / max(1e-9, end.timeIntervalSince(start))
            }
            position = e.index + 1
            keyframeState = KeyframeManagerState()
            keyframeState.lastKeyframePose = e.frame.T_W_C
            progress.keyframes = mapper.keyframes.count
            progress.position = position
            progress.framesIn = framesBefore + (await manager.framesIn)
            progress.dropped = await frames.dropped
            progress.skipped = await frontend.skipped
            progress.lastLoss = r.geometry.total
            progress.elapsed = previous + Date().timeIntervalSince(start)
            let k = progress.keyframesIntegrated
            if config.snapshotEveryKeyframes > 0 && k % config.snapshotEveryKeyframes == 0
                || config.snapshotEverySeconds > 0 && Date().timeIntervalSince(lastSnapshot) >= config.snapshotEverySeconds {
                snapshotOwed = true
                lastSnapshot = Date()
            }
            if snapshotOwed && !snapshotRunning { startSnapshot(writer) }
            if config.checkpointEveryKeyframes > 0 && k % config.checkpointEveryKeyframes == 0 {
                try await checkpoint(sessionStore)
            }
            report?(progress)
            if stop.isSet { break }
        }
        if stop.isSet {
            // Drain the stages so their tasks end, then save where we are.
            await frames.finish()
            await keyframes.finish()
            _ = await (frontTask.value, managerTask.value)
            try await snapshotsIdle()
            try await checkpoint(sessionStore)
            progress.stage = "stopped"
            report?(progress)
            return progress
        }
        _ = await (frontTask.value, managerTask.value)
        progress.framesRead = await frontend.read
        if progress.frontendFramesPerSecond == nil, let end = await frontend.finishedAt {
            progress.frontendFramesPerSecond = Double(progress.framesRead) / max(1e-9, end.timeIntervalSince(start))
        }
        if let failure = await frontend.failure {
            await pendingSnapshot?.value
            try await checkpoint(sessionStore) // what was mapped before the bad frame is kept
            throw failure
        }
        try await snapshotsIdle()
        try await waitForMasks(report: report)
        if stop.isSet { // Ctrl-C while waiting for masks: save and stop, as during mapping
            try await checkpoint(sessionStore)
            progress.stage = "stopped"
            report?(progress)
            return progress
        }
        MemoryTrim.releaseFreedMemory() // mapping's working memory (frames, snapshot transients) is not needed again
        progress.stage = "refining"
        report?(progress)
        mapper.finish()
        progress.stage = "final map"
        report?(progress)
        startSnapshot(writer)
        try await snapshotsIdle()
        await writer.release()
        try await checkpoint(sessionStore, final: true)
        try export(to: directory.appendingPathComponent("map"), frames: { try source.frame(at: $0) })
        progress.stage = "done"
        progress.elapsed = previous + Date().timeIntervalSince(start)
        report?(progress)
        return progress
    }

    /// Gives the keyframes waiting for masks those that arrived in the inbox (and keeps the updated keyframes).
    func deliverMasks() throws {
        guard let inbox else { return }
        for (i, masks) in inbox.poll(wanted: mapper.keyframesAwaitingMasks) {
            guard let frame = mapper.attachMasks(masks, toKeyframe: i) else { continue }
            try keyframeStore?.write(frame)
            progress.masksReceived += 1
        }
    }

    /// After the source ended: waits up to `maskWaitSeconds` for the masks of keyframes that have none.
    func waitForMasks(report: (@Sendable (SessionProgress) -> Void)?) async throws {
        guard inbox != nil, config.maskWaitSeconds > 0 else { return }
        let deadline = Date().addingTimeInterval(config.maskWaitSeconds)
        progress.stage = "waiting for masks"
        try deliverMasks()
        while !mapper.keyframesAwaitingMasks.isEmpty && Date() < deadline && !stop.isSet {
            report?(progress)
            try await Task.sleep(nanoseconds: 200_000_000)
            try deliverMasks()
        }
        _ = mapper.panopticRounds()
        let missing = mapper.keyframesAwaitingMasks.count
        if missing > 0 { pipelineLog.warning("\(missing) keyframes got no masks (mapped with geometry and appearance only)") }
    }

    /// Starts the next snapshot: copies the map state out (cheap: arrays are shared copy-on-write) and has the
    /// writer build and write it while the optimizer goes on. `snapshotFinished` records it.
    func startSnapshot(_ writer: SnapshotWriter) {
        let t0 = Date()
        snapshotOwed = false
        guard let view = mapper.takeView() else { return }
        snapshotSequence += 1
        snapshotRunning = true
        let sequence = snapshotSequence, covered = position
        let extra = ["loss": String(progress.lastLoss)]
        progress.snapshotBlockingSeconds += Date().timeIntervalSince(t0)
        pendingSnapshot = Task {
            do {
                let r = try await writer.write(view, sequence: sequence, framesCovered: covered, extra: extra)
                self.snapshotFinished(seconds: r.seconds, failure: nil)
            } catch {
                self.snapshotFinished(seconds: 0, failure: error)
            }
        }
    }

    func snapshotFinished(seconds: Double, failure: (any Error)?) {
        snapshotRunning = false
        if let failure {
            if snapshotFailure == nil { snapshotFailure = failure }
            return
        }
        progress.snapshots += 1
        progress.lastSnapshotSeconds = seconds
        progress.snapshotSecondsTotal += seconds
    }

    /// Waits for the snapshot in flight (if any) and raises the error a snapshot threw.
    func snapshotsIdle() async throws {
        let t0 = Date()
        await pendingSnapshot?.value
        pendingSnapshot = nil
        progress.snapshotBlockingSeconds += Date().timeIntervalSince(t0)
        if let failure = snapshotFailure { throw failure }
    }

    /// The snapshot of the current state built in line, on the session's own mapper (tests compare it with the
    /// writer's). Clears the dirty blocks as a snapshot does.
    func snapshotContent() throws -> SnapshotContent {
        var content = try SnapshotBuilder.content(of: mapper, view: nil, framesCovered: position)
        content.extra["loss"] = String(progress.lastLoss)
        return content
    }

    func checkpoint(_ store: SessionStore, final: Bool = false) async throws {
        checkpointSequence += 1
        let c = try SessionState.checkpoint(sequence: checkpointSequence, config: config, mapper: mapper,
                                            keyframeState: keyframeState, position: position, progress: progress,
                                            snapshotSequence: snapshotSequence, final: final)
        _ = try await store.save(c)
        progress.checkpoints += 1
        if let keyframeStore {
            // Keep the files of the keyframes this checkpoint and the previous one (the fallback) refer to.
            if checkpointKeyframes.isEmpty { checkpointKeyframes = [Set(keyframeStore.indices())] }
            checkpointKeyframes = Array((checkpointKeyframes + [Set(mapper.keyframes.map(\.index))]).suffix(2))
            keyframeStore.prune(keeping: checkpointKeyframes.reduce(into: Set<Int>()) { $0.formUnion($1) })
        }
    }

    /// Writes the final map (everything re-meshed): mesh.ply, points.ply, legend.json into `dir`.
    /// With a hold-out policy and `frames` (the source by index), the held-out views of every branch go to
    /// `dir/heldout/` (see `writeHeldOutViews`).
    public func export(to dir: URL, frames: ((Int) throws -> Frame)? = nil) throws {
        mapper.releaseMeshes() // from scratch: the final map does not depend on earlier snapshots
        try writeMap(to: dir)
        if let frames { try writeHeldOutViews(into: dir.appendingPathComponent("heldout"), frames: frames) }
        mapper.releaseMeshes() // the whole map's block meshes are not needed once it is written
        MemoryTrim.releaseFreedMemory()
    }

    private func writeMap(to dir: URL) throws {
        mapper.markAllDirty()
        let (mesh, legend, _) = try mapper.map()
        try Files.createDirectory(dir)
        try PLY.write(mesh.plyData, to: dir.appendingPathComponent("mesh.ply"))
        var points = mesh
        points.triangles = []
        try PLY.write(points.plyData, to: dir.appendingPathComponent("points.ply"))
        if let legend { try legend.write(to: dir.appendingPathComponent("legend.json")) }
    }

    public var currentProgress: SessionProgress { progress }
    public var keyframeCount: Int { mapper.keyframes.count }
    /// The newest keyframe (a tracked stream continues from it on resume).
    public var lastKeyframe: Frame? { mapper.keyframes.last }
    /// The mapper's long-lived buffers (see `OnlineMapper.footprint`).
    public var footprint: [(what: String, bytes: Int)] { mapper.footprint }
    /// Block meshes the session's own mapper holds (none except during the export).
    public var meshedBlockCount: Int { mapper.meshedBlockCount }
}
