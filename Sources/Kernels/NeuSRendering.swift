import Foundation

/// Volume rendering of signed distances with the NeuS S-density, over a batch of rays with a fixed number of sorted
/// samples each. Plain buffers, no allocation; one ray at a time, so rays can be split across threads by the caller.
///
/// For samples j = 0..<S along a ray with SDF values s_j (positive in free space):
///     Phi(s) = sigmoid(xi * s)                                                   // NeuS S-density (CDF)
///     alpha_j = max((Phi(s_j) - Phi(s_{j+1})) / Phi(s_j), 0),  j < S - 1;  alpha_{S-1} = 0
///     T_j = prod_{k<j} (1 - alpha_k),  w_j = T_j alpha_j
/// The ratio Phi(s_{j+1}) / Phi(s_j) is computed in log space (log sigmoid), so deep inside solids, where both
/// values underflow, alpha stays finite. Interval j's rendered position is the midpoint of samples j and j + 1.
public enum NeuSRendering {
    @inline(__always) static func logSigmoid(_ x: Float) -> Float {
        // log sigmoid(x) = -softplus(-x), stable for both signs.
        x >= 0 ? -log1pf(expf(-x)) : x - log1pf(expf(x))
    }
    @inline(__always) static func sigmoid(_ x: Float) -> Float { x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x)) }

    /// Weights `w` (rays x samples) from SDF values `sdf` (rays x samples), sharpness `xi` > 0.
    public static func weights(sdf: UnsafePointer<Float>, rays: Int, samples s: Int, xi: Float,
                               weights w: UnsafeMutablePointer<Float>) {
        for r in 0..<rays {
            let sd = sdf + r * s, wr = w + r * s
            var t: Float = 1
            var lPrev = logSigmoid(xi * sd[0])
            for j in 0..<(s - 1) {
                let lNext = logSigmoid(xi * sd[j + 1])
                let alpha = max(0, 1 - expf(lNext - lPrev))
                wr[j] = t * alpha
                t *= 1 - alpha
                lPrev = lNext
            }
            wr[s - 1] = 0
        }
    }

    /// Backward of `weights`: from dL/dw (rays x samples) to dL/dsdf (written, rays x samples) and dL/dxi (returned).
    public static func backward(sdf: UnsafePointer<Float>, rays: Int, samples s: Int, xi: Float,
                                gradWeights g: UnsafePointer<Float>, gradSDF: UnsafeMutablePointer<Float>) -> Float {
        var gradXi: Float = 0
        for r in 0..<rays {
            let sd = sdf + r * s, gr = g + r * s, gs = gradSDF + r * s
            // Forward again, keeping T_j in the output buffer (overwritten by gradients below, back to front).
            var t: Float = 1
            var lPrev = logSigmoid(xi * sd[0])
            for j in 0..<(s - 1) {
                let lNext = logSigmoid(xi * sd[j + 1])
                gs[j] = t
                t *= 1 - max(0, 1 - expf(lNext - lPrev))
                lPrev = lNext
            }
            gs[s - 1] = 0
            // U_j = sum_{k>j} g_k alpha_k prod_{j<m<k} (1 - alpha_m), built from the back; dL/dalpha_j = T_j (g_j - U_j).
            var u: Float = 0
            for j in stride(from: s - 2, through: 0, by: -1) {
                let tj = gs[j]
                let x0 = xi * sd[j], x1 = xi * sd[j + 1]
                let ratio = expf(logSigmoid(x1) - logSigmoid(x0))
                let alpha = 1 - ratio
                guard alpha > 0 else { gs[j] = 0; continue } // clamped: no gradient, (1 - alpha_j) = 1 keeps u
                let dAlpha = tj * (gr[j] - u)
                // alpha = 1 - exp(ls(x1) - ls(x0)) with d ls(x)/dx = sigmoid(-x).
                let dx0 = dAlpha * ratio * sigmoid(-x0)
                let dx1 = -dAlpha * ratio * sigmoid(-x1)
                gs[j] = dx0 * xi
                gs[j + 1] += dx1 * xi
                gradXi += dx0 * sd[j] + dx1 * sd[j + 1]
                u = gr[j] * alpha + (1 - alpha) * u
            }
        }
        return gradXi
    }
}

#if canImport(Glibc)
import Glibc
#endif
