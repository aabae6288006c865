import Foundation
import MapCore
import USBCamera

/// Frames from an `RGBDCamera` (a USB camera, or a recorded capture replayed through the same parser), without poses
/// (wrap it in a `TrackedSource`) and without masks (they come through the `MaskInbox`, or not at all).
///
/// A camera (`paced`) runs on its own thread and delivers at the sensor's rate: when the pipeline falls behind, the
/// oldest undelivered frames are dropped (on that thread, and on the frontend edge; both counted). A replay (`paced` false) is read when the
/// pipeline asks, so a replayed session is deterministic. Frames are numbered in arrival order; when continuing a
/// session at `start`, a replay skips its first `start` frames and a camera numbers its frames from `start` on.
/// Frames are reduced by `reduction` (an integer factor) for mapping. A camera error (`USBError`, e.g. `.noDevice`
/// when unplugged) ends the stream with a `deviceLost` error naming what to do; the session saves what it has.
public struct LiveSource: FrameSource {
    public let name: String
    public let cameraIntrinsics: Intrinsics
    public let frameRate: Double?
    public let vocabulary: Vocabulary?
    public let reduction: Int
    public let paced: Bool
    /// A recording (frames before `start` are skipped on resume) rather than a device (numbering continues).
    public let isReplay: Bool
    /// A device numbers its frames from at least this (on resume: above every index a stored keyframe or an inbox
    /// mask already uses, so nothing from before a crash is mistaken for a new frame).
    public var firstIndex = 0
    let open: @Sendable () throws -> any RGBDCamera

    /// `open` makes the camera when the stream starts (and again for every `frames(from:)`).
    public init(name: String, intrinsics: Intrinsics, frameRate: Double?, vocabulary: Vocabulary?, reduction: Int = 1,
                paced: Bool, isReplay: Bool, open: @escaping @Sendable () throws -> any RGBDCamera) {
        self.name = name; self.cameraIntrinsics = intrinsics; self.frameRate = frameRate; self.vocabulary = vocabulary
        self.reduction = max(1, reduction); self.paced = paced; self.isReplay = isReplay; self.open = open
    }

    public var info: SourceInfo {
        SourceInfo(name: name, intrinsics: cameraIntrinsics.reduced(by: reduction), vocabulary: vocabulary,
                   frameCount: nil, frameRate: frameRate)
    }
    public var isPaced: Bool { paced }

    public func frame(at index: Int) throws -> Frame {
        throw MapError(.unsupported, "a live stream cannot give frame \(index) again", frame: index,
                       hint: "live sessions keep their keyframes in OUT/keyframes/")
    }

    public func frames(from start: Int) -> LiveFrames {
        LiveFrames(source: self, start: isReplay ? max(0, start) : max(0, start, firstIndex))
    }

    /// The camera frame as a mapping frame: reduced, identity pose (the tracker sets it), no masks.
    func frame(_ c: CameraFrame, index: Int) -> Frame {
        let f = Frame(index: index, timestamp: c.timestamp, rgb: c.rgb, depth: c.depth, T_W_C: .identity,
                      intrinsics: c.intrinsics)
        return f.reduced(by: reduction)
    }

    /// A camera failure as the pipeline reports it.
    static func failure(_ error: any Error, frame: Int?) -> MapError {
        if let e = error as? MapError { return e.at(frame: frame) }
        if let e = error as? USBError {
            return MapError(e.code == .noDevice ? .deviceLost : .ioFailure, "camera: \(e)", frame: frame,
                            hint: "the session is saved; reconnect the camera and run `pano resume OUT`")
        }
        return MapError(.deviceLost, "camera: \(error)", frame: frame,
                        hint: "the session is saved; reconnect the camera and run `pano resume OUT`")
    }
}

public struct LiveFrames: AsyncSequence, Sendable {
    public typealias Element = SourceFrame
    let source: LiveSource
    let start: Int

    public final class AsyncIterator: AsyncIteratorProtocol {
        let source: LiveSource
        var next: Int
        var ended = false
        // Replay: the camera, read on the consumer's task.
        var camera: (any RGBDCamera)?
        var skipped = 0
        // Paced: frames from the reader thread.
        var stream: AsyncStream<Result<CameraFrame, MapError>>.AsyncIterator?
        var reader: CameraReader?

        init(source: LiveSource, start: Int) {
            self.source = source
            next = start
            skipped = source.isReplay ? 0 : start // a device numbers on from `start`, a replay skips to it
        }
        deinit { reader?.stop(); camera?.close() }

        public func next() async -> SourceFrame? {
            guard !ended, !Task.isCancelled else { finish(); return nil }
            let result: Result<CameraFrame, MapError>?
            if source.paced { result = await nextPaced() } else { result = nextReplayed() }
            guard let result else { finish(); return nil }
            let i = next
            next += 1
            switch result {
            case .success(let c): return SourceFrame(index: i, result: .success(source.frame(c, index: i)))
            case .failure(let e):
                finish()
                return SourceFrame(index: i, result: .failure(e.at(frame: i)))
            }
        }

        func finish() {
            ended = true
            reader?.stop(); reader = nil
            camera?.close(); camera = nil
        }

        func nextReplayed() -> Result<CameraFrame, MapError>? {
            do {
                if camera == nil { camera = try source.open() }
                guard let camera else { return nil }
                while skipped < next {
                    guard try camera.nextFrame() != nil else { return nil }
                    skipped += 1
                }
                guard let c = try camera.nextFrame() else { return nil }
                skipped += 1
                return .success(c)
            } catch { return .failure(LiveSource.failure(error, frame: next)) }
        }

        func nextPaced() async -> Result<CameraFrame, MapError>? {
            if stream == nil {
                let (s, continuation) = AsyncStream<Result<CameraFrame, MapError>>.makeStream(bufferingPolicy: .bufferingNewest(2))
                let r = CameraReader(open: source.open, continuation: continuation, skip: source.isReplay ? next : 0)
                reader = r
                r.start()
                stream = s.makeAsyncIterator()
            }
            return await stream?.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source, start: start) }
}

/// The thread a paced camera is read on: blocking `nextFrame` calls, frames into a stream that keeps the newest (frames
/// the pipeline did not take in time are dropped here, counted and logged at the end). A replay first skips `skip`
/// frames (unpaced is not possible here: the capture reader paces itself, so skipping costs their recorded time).
final class CameraReader: @unchecked Sendable {
    // Safe: `stopped` is read and written under the lock; the camera lives on the reader thread only.
    let open: @Sendable () throws -> any RGBDCamera
    let continuation: AsyncStream<Result<CameraFrame, MapError>>.Continuation
    let skip: Int
    private let lock = NSLock()
    private var stopped = false

    init(open: @escaping @Sendable () throws -> any RGBDCamera,
         continuation: AsyncStream<Result<CameraFrame, MapError>>.Continuation, skip: Int) {
        self.open = open; self.continuation = continuation; self.skip = skip
    }

    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    func stop() { lock.lock(); stopped = true; lock.unlock() }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "pano.camera"
        t.start()
    }

    private func run() {
        var camera: (any RGBDCamera)?
        var dropped = 0
        defer {
            camera?.close()
            continuation.finish()
            if dropped > 0 { pipelineLog.warning("camera: \(dropped) frames dropped because the pipeline fell behind") }
        }
        do {
            let c = try open()
            camera = c
            var skipped = 0
            while skipped < skip, !isStopped, try c.nextFrame() != nil { skipped += 1 }
            while !isStopped, let frame = try c.nextFrame() {
                if case .dropped = continuation.yield(.success(frame)) { dropped += 1 }
            }
        } catch {
            // The consumer numbers the failure (it knows which frame it would have been).
            if !isStopped { continuation.yield(.failure(LiveSource.failure(error, frame: nil))) }
        }
    }
}
