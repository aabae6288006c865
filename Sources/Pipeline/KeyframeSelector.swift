import MapCore

/// When a frame becomes a keyframe, and which keyframes an optimisation step looks at.
public struct KeyframePolicy: Sendable, Codable, Equatable {
    /// A frame is a keyframe when the camera moved at least this far (metres) ...
    public var minTranslation: Double = 0.15
    /// ... or turned at least this much (degrees) since the last keyframe ...
    public var minRotationDegrees: Double = 12
    /// ... or this many frames passed (0 = no limit). The first frame is always a keyframe.
    public var maxFrameGap: Int = 4
    /// The sliding window: the most recent keyframes every step looks at ...
    public var window: Int = 6
    /// ... plus this many older keyframes drawn at random per step, so the map does not forget.
    public var replayed: Int = 4
    /// Keyframes kept at most (0 = no limit): beyond it the most redundant older keyframe (the one closest in pose
    /// to another keyframe, outside the window) is dropped, so memory stays bounded on long runs.
    public var maxKeyframes: Int = 64
    /// Every n-th frame (index % n == n - 1) is held out: never a keyframe, so the final map can be evaluated on
    /// views it never trained on (written to map/heldout/). 0 = none.
    public var holdOut: Int = 0

    public init() {}

    /// Whether the frame with source index `index` is held out (see `holdOut`).
    public func isHeldOut(_ index: Int) -> Bool { holdOut > 0 && index % holdOut == holdOut - 1 }

    public func validate() throws {
        guard minTranslation >= 0, minRotationDegrees >= 0, maxFrameGap >= 0, window >= 1, replayed >= 0, holdOut >= 0,
              maxKeyframes == 0 || maxKeyframes > window else {
            throw MapError(.badArgument, "keyframe policy: thresholds must be >= 0, the window at least 1 and the keyframe budget (if any) larger than the window",
                           hint: "check --keyframe-* options")
        }
    }

    /// Whether a frame at `T_W_C`, `gap` frames after the last keyframe at `last`, is a keyframe.
    public func isKeyframe(_ T_W_C: RigidTransform, last: RigidTransform?, gap: Int) -> Bool {
        guard let last else { return true }
        if maxFrameGap > 0 && gap >= maxFrameGap { return true }
        let delta = last.inverse * T_W_C
        return length(delta.translation) >= minTranslation
            || delta.rotationAngle * 180 / Double.pi >= minRotationDegrees
    }

    /// With more than `maxKeyframes` keyframes at `poses`: the slot to drop, the keyframe outside the window whose
    /// pose is closest to any other keyframe's (translation in metres + 0.5 m per radian of rotation; the lowest
    /// slot on ties). nil when the budget is not exceeded.
    public func redundantKeyframe(poses: [RigidTransform]) -> Int? {
        guard maxKeyframes > 0, poses.count > maxKeyframes else { return nil }
        func distance(_ a: RigidTransform, _ b: RigidTransform) -> Double {
            let d = a.inverse * b
            return length(d.translation) + 0.5 * d.rotationAngle
        }
        var best: (slot: Int, d: Double)?
        for i in 0..<(poses.count - window) {
            var nearest = Double.infinity
            for j in poses.indices where j != i { nearest = min(nearest, distance(poses[i], poses[j])) }
            if best == nil || nearest < best!.d { best = (i, nearest) }
        }
        return best?.slot
    }

    /// Keyframe slots a step draws from when `count` keyframes exist: the last `window` plus `replayed` distinct
    /// older ones drawn with `rng` (all of them when there are few).
    public func slots(count: Int, rng: inout SeededRNG) -> [Int] {
        let recent = Array(max(0, count - window)..<count)
        let older = max(0, count - window)
        guard older > 0, replayed > 0 else { return recent }
        if older <= replayed { return Array(0..<older) + recent }
        var chosen = Set<Int>()
        while chosen.count < replayed { chosen.insert(Int(rng.next() % UInt64(older))) }
        return chosen.sorted() + recent
    }
}
