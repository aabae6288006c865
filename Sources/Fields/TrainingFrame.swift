import MapCore

/// What the geometry optimisation keeps of a (key)frame: depth in metres, pose, intrinsics, and the pixels with valid
/// depth inside [near, far] to sample rays from.
public struct TrainingFrame: Sendable {
    public var index: Int
    public var depth: [Float]
    public var T_W_C: RigidTransform
    public var intrinsics: Intrinsics
    public var validPixels: [Int32]

    public init(_ frame: Frame, near: Float, far: Float) {
        index = frame.index
        depth = frame.depth.data
        T_W_C = frame.T_W_C
        intrinsics = frame.intrinsics
        // Two passes so the list is allocated at its exact size (it lives as long as the keyframe).
        let usable = { (d: Float) in d.isFinite && d >= near && d <= far }
        var valid: [Int32] = []
        valid.reserveCapacity(depth.reduce(0) { $0 + (usable($1) ? 1 : 0) })
        for (i, d) in depth.enumerated() where usable(d) { valid.append(Int32(i)) }
        validPixels = valid
    }
}

/// An axis-aligned box in world coordinates (metres).
public struct SceneBounds: Sendable, Codable, Equatable {
    public var min: SIMD3<Float>
    public var max: SIMD3<Float>

    public init(min: SIMD3<Float>, max: SIMD3<Float>) { self.min = min; self.max = max }

    /// The box of all back-projected valid depth of `frames` (every `stride`-th pixel), grown by `margin` metres.
    public static func enclosing(_ frames: [TrainingFrame], stride: Int = 8, margin: Float = 0.2) -> SceneBounds {
        var lo = SIMD3<Float>(repeating: .infinity), hi = SIMD3<Float>(repeating: -.infinity)
        for f in frames {
            let k = f.intrinsics
            for i in Swift.stride(from: 0, to: f.validPixels.count, by: Swift.max(1, stride)) {
                let p = Int(f.validPixels[i])
                let x = p % k.width, y = p / k.width
                let p_C = k.unproject(u: Double(x), v: Double(y), depth: Double(f.depth[p]))
                let p_W = f.T_W_C * p_C
                let q = SIMD3<Float>(Float(p_W.x), Float(p_W.y), Float(p_W.z))
                lo = pointwiseMin(lo, q); hi = pointwiseMax(hi, q)
            }
            let c = f.T_W_C.translation
            let cf = SIMD3<Float>(Float(c.x), Float(c.y), Float(c.z))
            lo = pointwiseMin(lo, cf); hi = pointwiseMax(hi, cf)
        }
        if !(lo.x <= hi.x) { return SceneBounds(min: .init(repeating: -1), max: .init(repeating: 1)) }
        return SceneBounds(min: lo - margin, max: hi + margin)
    }

    public var size: SIMD3<Float> { max - min }
}
