import Foundation

/// Weights and constants of the geometry losses (PanopticRecon++ eq. 24 and around).
public struct GeometryLossConfig: Sendable, Codable, Equatable {
    /// tau: samples with |b| <= tau (metres) get the truncated-SDF term, the others the free-space term.
    public var truncation: Float = 0.06
    /// beta of the free-space term's e^{-beta s}.
    public var freeSpaceBeta: Float = 5
    public var sdfWeight: Float = 1
    /// Weight of the free-space samples relative to the truncation-band ones.
    public var freeSpaceWeight: Float = 0.5
    public var eikonalWeight: Float = 0.05
    public var depthWeight: Float = 0.1

    public init() {}

    public func validate() throws {
        for (name, v) in [("truncation", truncation), ("freeSpaceBeta", freeSpaceBeta), ("sdfWeight", sdfWeight),
                          ("freeSpaceWeight", freeSpaceWeight), ("eikonalWeight", eikonalWeight),
                          ("depthWeight", depthWeight)] {
            guard v.isFinite, v >= 0 else {
                throw ConfigError("loss setting \(name) = \(v) must be a finite number >= 0")
            }
        }
        guard truncation > 0 else { throw ConfigError("truncation must be positive") }
    }
}

/// A configuration value out of range; turned into a `MapError(.badArgument)` by callers that face users.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The geometry losses, each once, each returning (loss, dLoss/dInput).
public enum GeometryLosses {
    /// L_sdf (eq. 24) for a sample with predicted SDF `s` and approximate SDF b = D - rho (distance along the ray to
    /// the observed surface): |s - b| inside the truncation band; max(0, e^{-beta s} - 1, s - b) in free space.
    @inline(__always)
    public static func sdf(s: Float, b: Float, config c: GeometryLossConfig) -> (loss: Float, grad: Float) {
        if abs(b) <= c.truncation {
            let d = s - b
            return (c.sdfWeight * abs(d), c.sdfWeight * (d > 0 ? 1 : d < 0 ? -1 : 0))
        }
        // Free space: the SDF must be positive and no larger than the distance to the observed surface.
        let e = expf(min(-c.freeSpaceBeta * s, 10)) - 1
        let over = s - b
        let w = c.sdfWeight * c.freeSpaceWeight
        if e > 0 && e >= over {
            return (w * e, -s * c.freeSpaceBeta < 10 ? w * -c.freeSpaceBeta * (e + 1) : 0)
        }
        if over > 0 { return (w * over, w) }
        return (0, 0)
    }

    /// L_eik = (1 - |g|)^2 for an SDF gradient g; returns dL/dg.
    @inline(__always)
    public static func eikonal(_ g: SIMD3<Float>, weight: Float) -> (loss: Float, grad: SIMD3<Float>) {
        let n = (g * g).sum().squareRoot()
        let d = n - 1
        let grad = n > 1e-12 ? g * (2 * d / n) : SIMD3<Float>(repeating: 0)
        return (weight * d * d, weight * grad)
    }

    /// L_depth = |D - D_rendered|; returns dL/dD_rendered.
    @inline(__always)
    public static func depth(rendered: Float, observed: Float, weight: Float) -> (loss: Float, grad: Float) {
        let d = rendered - observed
        return (weight * abs(d), weight * (d > 0 ? 1 : d < 0 ? -1 : 0))
    }
}
