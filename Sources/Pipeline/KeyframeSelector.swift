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

    public init() {}

    public func validate() throws {
        guard minTranslation >= 0, minRotationDegrees >= 0, maxFrameGap >= 0, window >= 1, replayed >= 0 else {
            throw MapError(.badArgument, "keyframe policy: thresholds must be >= 0 and the window at least 1",
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
