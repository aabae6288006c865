import MapCore
import Synthetic

/// Slow, obviously-correct twins of the synthetic renderer: sphere tracing over the scene SDF and finite-difference
/// normals. Only for tests.
public enum SyntheticReference {
    /// Distance along the unit ray `origin + s * direction` to the first surface, by sphere tracing an SDF that is
    /// exact outside the solids (each step moves by the SDF value, which never crosses the surface). nil when no
    /// surface is reached within `maxDistance` metres or `maxSteps` steps.
    public static func sphereTrace(_ sdf: (Vec3) -> Double, origin: Vec3, direction: Vec3, epsilon: Double = 1e-9,
                                   maxDistance: Double = 20, maxSteps: Int = 100_000) -> Double? {
        let d = normalize(direction)
        var s = 0.0
        for _ in 0..<maxSteps {
            let v = sdf(origin + s * d)
            if v < epsilon { return s }
            s += v
            if s > maxDistance { return nil }
        }
        return nil
    }

    /// Camera-frame depth (metres) of pixel (u, v) of a camera at `T_W_C`, by sphere tracing `sdf`.
    public static func depth(_ sdf: (Vec3) -> Double, T_W_C: RigidTransform, intrinsics K: Intrinsics, u: Int, v: Int)
        -> Double?
    {
        let d_C = Vec3((Double(u) - K.cx) / K.fx, (Double(v) - K.cy) / K.fy, 1)
        let d_W = T_W_C.rotation * d_C
        guard let s = sphereTrace(sdf, origin: T_W_C.translation, direction: d_W) else { return nil }
        // Ray length s along the unit direction -> camera z = s / |d_C| (d_C has z = 1).
        return s / length(d_C)
    }

    /// Central finite-difference gradient of `sdf` at `p` with step `h` (metres).
    public static func gradient(_ sdf: (Vec3) -> Double, at p: Vec3, h: Double = 1e-6) -> Vec3 {
        var g = Vec3.zero
        for a in 0..<3 {
            var e = Vec3.zero
            e[a] = h
            g[a] = (sdf(p + e) - sdf(p - e)) / (2 * h)
        }
        return g
    }

    /// World point of pixel (u, v) with camera-frame depth `z`.
    public static func backProject(u: Int, v: Int, depth z: Double, T_W_C: RigidTransform, intrinsics K: Intrinsics)
        -> Vec3
    {
        T_W_C * K.unproject(u: Double(u), v: Double(v), depth: z)
    }
}
