import Foundation
import MapCore
import Tracking

/// Settings of tracking for streams without (trusted) poses.
public struct TrackingOptions: Sendable, Codable, Equatable {
    /// Consecutive lost frames (not passed on to the map) before relocalisation is tried.
    public var maxLostFrames = 10
    /// Relocalisation aligns the current frame, from rest, against this many of the tracker's latest reference
    /// keyframes (newest first); if none fits, the run stops with a `trackingLost` error (the session is saved).
    public var relocaliseCandidates = 8
    /// A relocalisation is accepted only with at least this inlier fraction and at most this RMS point-to-plane
    /// residual (metres): stricter than tracking's own test, since a fit from rest can slide along planes.
    public var relocaliseMinInliers = 0.5
    public var relocaliseMaxResidual = 0.01

    public init() {}
}

/// Counters of a tracked stream, readable from any thread (the progress line).
public final class TrackingMonitor: @unchecked Sendable {
    // Safe: plain counters, written and read under the lock.
    private let lock = NSLock()
    private var _tracked = 0, _lost = 0, _relocalised = 0
    public init() {}
    public var tracked: Int { lock.lock(); defer { lock.unlock() }; return _tracked }
    public var lost: Int { lock.lock(); defer { lock.unlock() }; return _lost }
    public var relocalised: Int { lock.lock(); defer { lock.unlock() }; return _relocalised }
    func count(tracked: Int = 0, lost: Int = 0, relocalised: Int = 0) {
        lock.lock(); _tracked += tracked; _lost += lost; _relocalised += relocalised; lock.unlock()
    }
}

/// A source whose poses come from the RGB-D tracker instead of the stream (`pano run --track`, live cameras). The
/// first frame is placed at `anchor` (e.g. the first given pose, so maps stay comparable with ground truth), or at
/// `seed`'s pose when continuing a session (the seed, the last keyframe, is the first reference). A lost frame is not
/// passed on (the map never sees a pose the tracker does not trust); after `maxLostFrames` in a row the frame is
/// aligned against recent reference keyframes; if that fails too, the stream yields a `trackingLost` error, which
/// stops the run with its state saved.
public struct TrackedSource<Base: FrameSource>: FrameSource {
    public let base: Base
    public let tracker: RGBDTracker.Config
    public let options: TrackingOptions
    public let anchor: RigidTransform
    public let seed: Frame?
    public let monitor: TrackingMonitor

    public init(base: Base, tracker: RGBDTracker.Config = .init(), options: TrackingOptions = .init(),
                anchor: RigidTransform = .identity, seed: Frame? = nil, monitor: TrackingMonitor = .init()) {
        self.base = base; self.tracker = tracker; self.options = options; self.anchor = anchor; self.seed = seed
        self.monitor = monitor
    }

    public var info: SourceInfo { base.info }
    public var isPaced: Bool { base.isPaced }

    /// The base's frame with its given pose (tracked poses cannot be recomputed out of order). Used for held-out
    /// evaluation views; a tracked session keeps its keyframes in its keyframe store.
    public func frame(at index: Int) throws -> Frame { try base.frame(at: index) }

    public func frames(from start: Int) -> TrackedFrames<Base.Frames> {
        TrackedFrames(base: base.frames(from: start), tracker: tracker, options: options, anchor: anchor, seed: seed,
                      monitor: monitor)
    }
}

public struct TrackedFrames<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == SourceFrame {
    public typealias Element = SourceFrame
    let base: Base
    let tracker: RGBDTracker.Config
    let options: TrackingOptions
    let anchor: RigidTransform
    let seed: Frame?
    let monitor: TrackingMonitor

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let owner: TrackedFrames
        var tracker: RGBDTracker
        var started = false
        /// The tracker's reference is the resume seed: the first frame placed against it restarts the motion model.
        var fromSeed = false
        var lostInARow = 0
        /// Recent reference keyframes (newest last), for relocalisation.
        var references: [Frame] = []

        public mutating func next() async throws -> SourceFrame? {
            while let item = try await base.next() {
                guard case .success(var frame) = item.result else { return item }
                if !started {
                    started = true
                    if let seed = owner.seed {
                        remember(seed)
                        _ = tracker.track(depth: seed.depth, rgb: seed.rgb, intrinsics: seed.intrinsics,
                                          initialPose: seed.T_W_C)
                        fromSeed = true
                    }
                }
                let r = tracker.track(depth: frame.depth, rgb: frame.rgb, intrinsics: frame.intrinsics,
                                      initialPose: owner.anchor)
                if !r.lost {
                    lostInARow = 0
                    frame.T_W_C = r.T_W_C
                    if fromSeed {
                        // The seed may be frames behind: its jump is no velocity.
                        fromSeed = false
                        restart(frame, at: r.T_W_C)
                        remember(frame)
                    } else if r.newKeyframe { remember(frame) }
                    owner.monitor.count(tracked: 1)
                    return SourceFrame(index: item.index, result: .success(frame))
                }
                owner.monitor.count(lost: 1)
                lostInARow += 1
                guard lostInARow >= owner.options.maxLostFrames else { continue }
                if let pose = relocalise(frame) {
                    frame.T_W_C = pose
                    restart(frame, at: pose)
                    remember(frame)
                    lostInARow = 0
                    owner.monitor.count(tracked: 1, relocalised: 1)
                    return SourceFrame(index: item.index, result: .success(frame))
                }
                return SourceFrame(index: item.index, result: .failure(MapError(
                    .trackingLost, "tracking lost for \(lostInARow) frames and relocalisation against the last \(references.count) reference keyframes failed",
                    frame: item.index,
                    hint: "the map so far is saved; point the camera back at a mapped part of the scene and run `pano resume`")))
            }
            return nil
        }

        mutating func remember(_ f: Frame) {
            var g = f
            g.masks = nil
            references.append(g)
            if references.count > owner.options.relocaliseCandidates { references.removeFirst() }
        }

        /// Aligns `frame` from rest against each remembered reference, newest first; the first fit good enough (see
        /// `TrackingOptions`) gives the pose.
        func relocalise(_ frame: Frame) -> RigidTransform? {
            for ref in references.reversed() {
                var t = RGBDTracker(config: owner.tracker)
                _ = t.track(depth: ref.depth, rgb: ref.rgb, intrinsics: ref.intrinsics, initialPose: ref.T_W_C)
                let r = t.track(depth: frame.depth, rgb: frame.rgb, intrinsics: frame.intrinsics, initialPose: ref.T_W_C)
                if !r.lost, r.inlierFraction >= owner.options.relocaliseMinInliers,
                   r.residual <= owner.options.relocaliseMaxResidual {
                    return r.T_W_C
                }
            }
            return nil
        }

        /// A fresh tracker whose reference is `frame` at `pose` (no motion carried over).
        mutating func restart(_ frame: Frame, at pose: RigidTransform) {
            tracker = RGBDTracker(config: owner.tracker)
            _ = tracker.track(depth: frame.depth, rgb: frame.rgb, intrinsics: frame.intrinsics, initialPose: pose)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), owner: self, tracker: RGBDTracker(config: tracker))
    }
}
