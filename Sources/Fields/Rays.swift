import MapCore

/// A batch of camera rays in world coordinates. Directions are unit vectors; `observedRange` is the distance along
/// the ray to the measured surface (the depth image's z times the length of the pixel's un-normalised direction),
/// 0 where the pixel has no valid depth.
public struct RayBatch: Sendable {
    public var origins: [Float] = []
    public var directions: [Float] = []
    public var observedRange: [Float] = []
    /// Where each ray came from: frame slot and pixel (x, y).
    public var frameSlots: [Int32] = []
    public var pixels: [SIMD2<Int32>] = []

    public init() {}

    public var count: Int { observedRange.count }

    public mutating func removeAll() {
        origins.removeAll(keepingCapacity: true); directions.removeAll(keepingCapacity: true)
        observedRange.removeAll(keepingCapacity: true); frameSlots.removeAll(keepingCapacity: true)
        pixels.removeAll(keepingCapacity: true)
    }

    /// Appends the ray through pixel (x, y) of a camera at `T_W_C` with intrinsics `k` and measured z-depth `depth`.
    public mutating func append(x: Int, y: Int, depth: Float, T_W_C: RigidTransform, k: Intrinsics, slot: Int) {
        let d_C = Vec3((Double(x) - k.cx) / k.fx, (Double(y) - k.cy) / k.fy, 1)
        let norm = length(d_C)
        let d_W = T_W_C.rotation * (d_C / norm)
        let o = T_W_C.translation
        origins += [Float(o.x), Float(o.y), Float(o.z)]
        directions += [Float(d_W.x), Float(d_W.y), Float(d_W.z)]
        observedRange.append(depth > 0 && depth.isFinite ? depth * Float(norm) : 0)
        frameSlots.append(Int32(slot))
        pixels.append(SIMD2(Int32(x), Int32(y)))
    }
}
