import Foundation
import MapCore

/// Depth images of the SDF by batched sphere tracing: every ray advances by its SDF value each round (all rays of a
/// batch are evaluated together, so the field runs on large batches), and a hit is a sign change from positive to
/// negative, refined by the secant between the two samples. A ray that starts inside negative space (unobserved space
/// the field never had to make positive) walks out of it first instead of giving up. Used for novel-view depth and
/// held-out evaluation.
public struct SDFRaycaster {
    public var near: Float = 0.1
    public var far: Float = 8
    /// Rounds of the batched march; with `minStep` this bounds the distance a ray covers where the field
    /// underestimates the distance (free space far from surfaces is only constrained to 0 <= s <= distance along the
    /// training rays, so s there can be much smaller than the true distance).
    public var maxRounds = 1024
    /// A ray has hit when |s| falls below this (metres).
    public var hitTolerance: Float = 5e-4
    /// Smallest advance per round (metres), so rays do not stall where the SDF underestimates. Surfaces thinner than
    /// this can be stepped over.
    public var minStep: Float = 0.01

    public init() {}

    /// z-depth (metres, 0 = no hit) for each pixel of a camera at `T_W_C` with intrinsics `k`.
    public func depth(field: GeometryField, T_W_C: RigidTransform, intrinsics k: Intrinsics) -> DepthImage {
        let n = k.width * k.height
        var origins = [Float](repeating: 0, count: 3 * n), dirs = origins
        var zScale = [Float](repeating: 0, count: n)
        for y in 0..<k.height {
            for x in 0..<k.width {
                let i = y * k.width + x
                let ray = DepthGuidedRaySampler.cameraRay(x: x, y: y, T_W_C: T_W_C, intrinsics: k)
                for c in 0..<3 { origins[3 * i + c] = ray.origin[c]; dirs[3 * i + c] = ray.direction[c] }
                zScale[i] = 1 / ray.rangePerDepth
            }
        }
        let t = trace(field: field, origins: origins, directions: dirs)
        return DepthImage(width: k.width, height: k.height, channels: 1,
                          data: (0..<n).map { t[$0] > 0 ? t[$0] * zScale[$0] : 0 })
    }

    /// Distance along each unit ray to the first zero crossing, 0 where none is found within [near, far].
    public func trace(field: GeometryField, origins: [Float], directions: [Float]) -> [Float] {
        let n = origins.count / 3
        var t = [Float](repeating: near, count: n)
        var prevT = [Float](repeating: near, count: n), prevS = [Float](repeating: -1, count: n) // -1: no positive sample yet
        var result = [Float](repeating: 0, count: n)
        var active = Array(0..<n)
        var pos = [Float](), s = [Float]()
        for _ in 0..<maxRounds where !active.isEmpty {
            pos.removeAll(keepingCapacity: true)
            for i in active {
                for c in 0..<3 { pos.append(origins[3 * i + c] + t[i] * directions[3 * i + c]) }
            }
            if s.count < active.count { s = [Float](repeating: 0, count: active.count) }
            pos.withUnsafeBufferPointer { p in
                s.withUnsafeMutableBufferPointer { o in field.sdf(positions: p.baseAddress!, count: active.count, out: o.baseAddress!) }
            }
            var next: [Int] = []
            next.reserveCapacity(active.count)
            for (a, i) in active.enumerated() {
                let v = s[a]
                if v < 0 {
                    // A crossing from outside: secant between the last positive sample and this one.
                    if prevS[i] > 0 {
                        result[i] = prevT[i] + (t[i] - prevT[i]) * prevS[i] / (prevS[i] - v)
                        continue
                    }
                    // Inside a solid (e.g. the ray starts in unobserved space the field left negative): walk out.
                    prevS[i] = v
                    t[i] += max(-v, minStep)
                    if t[i] <= far { next.append(i) }
                    continue
                }
                if v < hitTolerance && prevS[i] > 0 { result[i] = t[i]; continue }
                prevT[i] = t[i]; prevS[i] = v
                t[i] += max(v, minStep)
                if t[i] <= far { next.append(i) }
            }
            active = next
        }
        return result
    }
}
