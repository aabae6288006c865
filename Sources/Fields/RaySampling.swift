import MapCore

/// Depth-guided stratified sampling along a camera ray, the scheme of `GeometryTrainer`: `uniformSamples` strata over
/// [near, D + tau] and `surfaceSamples` strata over [D - tau, D + tau], merged into one sorted list. D is the observed
/// range along the ray (metres). With `jitter` each sample is uniform in its stratum, otherwise at its centre
/// (deterministic rendering).
public struct DepthGuidedRaySampler: Sendable, Equatable {
    public var near: Float
    public var truncation: Float
    public var uniformSamples: Int
    public var surfaceSamples: Int

    public init(near: Float, truncation: Float, uniformSamples: Int, surfaceSamples: Int) {
        self.near = near; self.truncation = truncation
        self.uniformSamples = uniformSamples; self.surfaceSamples = surfaceSamples
    }

    public var samplesPerRay: Int { uniformSamples + surfaceSamples }

    /// Appends the ray's `samplesPerRay` sorted distances to `distances` and their points origin + t dir (xyz) to
    /// `positions`. Draws `samplesPerRay` uniforms from `rng` when `jitter` is true, none otherwise.
    public func append(origin: SIMD3<Float>, direction: SIMD3<Float>, range depth: Float, jitter: Bool,
                       rng: inout SeededRNG, distances: inout [Float], positions: inout [Float]) {
        let nu = uniformSamples, ns = surfaceSamples, tau = truncation
        let lo = near, hi = depth + tau
        @inline(__always) func u(_ rng: inout SeededRNG) -> Float { jitter ? Float(rng.uniform()) : 0.5 }
        // Stratified draws, uniform list first, then the band (the order GeometryTrainer draws them in).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: nu + ns) { buf in
            for i in 0..<nu { buf[i] = lo + (hi - lo) * (Float(i) + u(&rng)) / Float(nu) }
            for i in 0..<ns { buf[nu + i] = depth - tau + 2 * tau * (Float(i) + u(&rng)) / Float(ns) }
            var a = 0, b = 0
            while a < nu || b < ns {
                let t: Float
                if b >= ns || (a < nu && buf[a] <= buf[nu + b]) { t = buf[a]; a += 1 } else { t = buf[nu + b]; b += 1 }
                distances.append(t)
                let q = origin + t * direction
                positions.append(q.x); positions.append(q.y); positions.append(q.z)
            }
        }
    }

    /// The world ray through pixel (x, y) of a camera: origin, unit direction and the factor that turns z-depth into
    /// range along the ray.
    public static func cameraRay(x: Int, y: Int, T_W_C: RigidTransform, intrinsics k: Intrinsics)
        -> (origin: SIMD3<Float>, direction: SIMD3<Float>, rangePerDepth: Float)
    {
        let d_C = Vec3((Double(x) - k.cx) / k.fx, (Double(y) - k.cy) / k.fy, 1)
        let norm = length(d_C)
        let d_W = T_W_C.rotation * (d_C / norm)
        let o = T_W_C.translation
        return (SIMD3<Float>(Float(o.x), Float(o.y), Float(o.z)), SIMD3<Float>(Float(d_W.x), Float(d_W.y), Float(d_W.z)),
                Float(norm))
    }
}
