import Foundation
import IO
import MapCore
import Synthetic

/// Facts about a frame source.
public struct SourceInfo: Sendable {
    public var name: String
    public var intrinsics: Intrinsics
    public var vocabulary: Vocabulary?
    /// Number of frames, nil for an endless (live) source.
    public var frameCount: Int?
    public var frameRate: Double?

    public init(name: String, intrinsics: Intrinsics, vocabulary: Vocabulary?, frameCount: Int?, frameRate: Double?) {
        self.name = name; self.intrinsics = intrinsics; self.vocabulary = vocabulary
        self.frameCount = frameCount; self.frameRate = frameRate
    }
}

/// One item from a source: frame `index`, or the typed error reading it gave (the frontend decides to skip or stop).
public struct SourceFrame: Sendable {
    public var index: Int
    public var result: Result<Frame, MapError>

    public init(index: Int, result: Result<Frame, MapError>) { self.index = index; self.result = result }
}

/// A stream of posed RGB-D frames: a recorded sequence, a synthetic scene, or (later) a live camera. Pull-based:
/// a frame is produced when the consumer asks for it, so a replay never runs ahead of the pipeline.
public protocol FrameSource: Sendable {
    associatedtype Frames: AsyncSequence & Sendable where Frames.Element == SourceFrame
    var info: SourceInfo { get }
    /// True when frames arrive at the sensor's pace whether or not the pipeline keeps up (live, or `--realtime`
    /// replay): the frontend → keyframe edge then drops the oldest frame when full instead of waiting.
    var isPaced: Bool { get }
    /// Frames from index `start` on (resume continues from the next frame after a checkpoint).
    func frames(from start: Int) -> Frames
    /// Frame `index` on demand (resume re-reads the saved keyframes by index). Live sources cannot and throw.
    func frame(at index: Int) throws -> Frame
}

/// Frames of a random-access source, read on demand, optionally paced at `frameRate`.
public struct IndexedFrames: AsyncSequence, Sendable {
    public typealias Element = SourceFrame
    let count: Int
    let start: Int
    let interval: Double?
    /// The sequence ends this many seconds after the first frame was asked for (nil: at `count`).
    var duration: Double? = nil
    let read: @Sendable (Int) -> Result<Frame, MapError>

    /// Frames `start..<count` produced by `read`, one every `interval` seconds (nil: as fast as they are asked for),
    /// ending `duration` seconds after the first was asked for (nil: at `count`).
    public init(count: Int, start: Int, interval: Double? = nil, duration: Double? = nil,
                read: @escaping @Sendable (Int) -> Result<Frame, MapError>) {
        self.count = count; self.start = start; self.interval = interval; self.duration = duration; self.read = read
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var next: Int
        let owner: IndexedFrames
        var startTime: ContinuousClock.Instant?
        var firstAsked: ContinuousClock.Instant?

        public mutating func next() async -> SourceFrame? {
            guard next < owner.count, !Task.isCancelled else { return nil }
            if let duration = owner.duration {
                let now = ContinuousClock.now
                let t0 = firstAsked ?? now
                firstAsked = t0
                if now - t0 >= .seconds(duration) { return nil }
            }
            if let interval = owner.interval {
                let clock = ContinuousClock()
                let t0 = startTime ?? clock.now
                startTime = t0
                let due = t0 + .seconds(Double(next - owner.start) * interval)
                if due > clock.now { try? await clock.sleep(until: due) }
            }
            let i = next
            next += 1
            return SourceFrame(index: i, result: owner.read(i))
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(next: start, owner: self) }
}

/// Replay of a sequence directory (any supported layout), as fast as possible or at the recorded rate.
///
/// `freeRunning` (benchmarks): frames are read as fast as the frontend can, but the pipeline treats the source as
/// paced (dropping instead of waiting), so the frontend's rate is measured while the optimizer runs. `loops` replays
/// the sequence that many times (frame k of loop l has index l * count + k). `seconds` (benchmarks) ends the stream
/// that long after the first frame instead (loops then only bound the indices).
public struct ReplaySource: FrameSource {
    public let reader: any SequenceReader
    public let realtime: Bool
    public let freeRunning: Bool
    public let loops: Int
    public let seconds: Double?

    public init(reader: any SequenceReader, realtime: Bool = false, freeRunning: Bool = false, loops: Int = 1,
                seconds: Double? = nil) {
        self.reader = reader; self.realtime = realtime; self.freeRunning = freeRunning; self.loops = max(1, loops)
        self.seconds = seconds
    }

    public var info: SourceInfo {
        SourceInfo(name: reader.info.name, intrinsics: reader.info.intrinsics, vocabulary: reader.info.vocabulary,
                   frameCount: reader.info.frameCount * loops, frameRate: reader.info.frameRate)
    }
    public var isPaced: Bool { realtime || freeRunning }

    public func frame(at index: Int) throws -> Frame {
        var f = try reader.frame(at: index % max(1, reader.info.frameCount))
        f.index = index
        return f
    }

    public func frames(from start: Int) -> IndexedFrames {
        let source = self
        return IndexedFrames(count: info.frameCount ?? 0, start: max(0, start),
                             interval: realtime ? 1 / (reader.info.frameRate ?? 30) : nil, duration: seconds) { i in
            do { return .success(try source.frame(at: i)) } catch let e as MapError {
                return .failure(e.at(frame: i))
            } catch {
                return .failure(MapError(.ioFailure, "\(error)", file: source.reader.files(at: i), frame: i,
                                         hint: "check the file, or rerun with --skip-bad-frames"))
            }
        }
    }
}

/// Frames rendered on the fly from the synthetic scene (no files).
public struct SyntheticSource: FrameSource {
    public let scene: SyntheticScene

    public init(scene: SyntheticScene) { self.scene = scene }

    public var info: SourceInfo {
        SourceInfo(name: "synthetic-room-seed\(scene.config.seed)", intrinsics: scene.intrinsics,
                   vocabulary: scene.vocabulary, frameCount: scene.frameCount, frameRate: 10)
    }
    public var isPaced: Bool { false }

    public func frame(at index: Int) throws -> Frame { try scene.frame(index).frame }

    public func frames(from start: Int) -> IndexedFrames {
        let scene = self.scene
        return IndexedFrames(count: scene.frameCount, start: max(0, start), interval: nil) { i in
            do { return .success(try scene.frame(i).frame) } catch let e as MapError { return .failure(e.at(frame: i)) } catch {
                return .failure(MapError(.badArgument, "\(error)", frame: i, hint: "check the synthetic scene config"))
            }
        }
    }
}
