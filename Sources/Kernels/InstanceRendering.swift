/// Volume rendering of token attention into a per-pixel token distribution (DESIGN.md "Instances", paper Eq. 10
/// applied to the attention map of Eq. 6). Plain buffers, no allocation; one ray at a time, so rays can be split
/// across threads by the caller.
///
/// For a ray r with samples j = 0..<S, rendering weights w_rj (from `NeuSRendering.weights` of the geometry field,
/// taken as constants: no gradient flows from instances into geometry) and attention rows A_(rS+j) (N tokens each,
/// a distribution over tokens from `TokenAttention`):
///     m_ri = sum_j w_rj A_(rS+j),i                    // instance rendering
/// Unlike `SemanticRendering` there is no normalisation by the ray's total weight: m_ri is the probability that
/// the ray's pixel shows token i, so a ray through free space renders (near) zero for every token, and with
/// sum_j w_rj <= 1 every m_ri lies in [0, 1] (the "rendered token mask" of L_ins and the cost matrix).
///
/// Gradient (written, weights constant):
///     dL/dA_(rS+j),i = w_rj dL/dm_ri
public enum InstanceRendering {
    /// m[r, i] = sum_j w[r, j] * A[(r * samples + j), i]   (rays x tokens), weights rays x samples, attention
    /// (rays*samples) x tokens. `rendered` (rays x tokens) is written. Zero-weight samples are skipped.
    public static func forward(weights: UnsafePointer<Float>, attention: UnsafePointer<Float>, rays: Int, samples: Int,
                               tokens: Int, rendered: UnsafeMutablePointer<Float>) {
        precondition(rays >= 0 && samples >= 0 && tokens >= 0, "InstanceRendering.forward: negative size")
        for r in 0..<rays {
            let wr = weights + r * samples, mr = rendered + r * tokens
            mr.update(repeating: 0, count: tokens)
            for j in 0..<samples {
                let w = wr[j]
                guard w != 0 else { continue }
                let a = attention + (r * samples + j) * tokens
                for i in 0..<tokens { mr[i] += w * a[i] }
            }
        }
    }

    /// dL/dA[(r*samples+j), i] = w[r, j] * dL/dm[r, i]  (written, not accumulated). Weights are constants (no
    /// gradient). `gradRendered` is rays x tokens, `gradAttention` (rays*samples) x tokens.
    public static func backward(weights: UnsafePointer<Float>, gradRendered: UnsafePointer<Float>, rays: Int,
                                samples: Int, tokens: Int, gradAttention: UnsafeMutablePointer<Float>) {
        precondition(rays >= 0 && samples >= 0 && tokens >= 0, "InstanceRendering.backward: negative size")
        for r in 0..<rays {
            let wr = weights + r * samples, gr = gradRendered + r * tokens
            for j in 0..<samples {
                let w = wr[j], ga = gradAttention + (r * samples + j) * tokens
                for i in 0..<tokens { ga[i] = w * gr[i] }
            }
        }
    }
}
