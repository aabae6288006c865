import Foundation

/// Volume rendering of per-sample class logits into a per-ray class distribution, and the semantic cross-entropy.
/// Plain buffers, no allocation; one ray at a time, so rays can be split across threads by the caller.
///
/// For a ray with samples j = 0..<S, rendering weights w_j (from `NeuSRendering.weights` of the geometry field, taken
/// as constants: no gradient flows from semantics into geometry) and logits z_j (C per sample):
///     p_jc = softmax(z_j)_c                           (stable: max subtracted before exp)
///     W = sum_j w_j
///     P_c = (sum_j w_j p_jc + eps / C) / (W + eps)     // semantic rendering, normalised by the ray's total weight
/// The epsilon (default `defaultEpsilon`) keeps rays that carry no weight finite: with W = 0 the distribution is
/// uniform (1 / C) and its gradient is zero; with W >> eps it is the weight-normalised mixture. The eps / C in the
/// numerator keeps sum_c P_c = 1 exactly, so -log P is always finite.
///     L_sem = (1 / N) sum over the N rays with a label l of -log P_l       // L_sem, cross-entropy vs mask labels
/// Rays whose label is negative (no label) contribute nothing (and N counts only labelled rays).
///
/// Gradient (per labelled ray, label l):
///     dL/dz_jc = -(1 / N) * w_j / (W + eps) * p_jl * (delta_cl - p_jc) / P_l
public enum SemanticRendering {
    /// Epsilon added to the ray's total weight (see the type's documentation).
    public static let defaultEpsilon: Float = 1e-6

    /// Rendered distributions `probabilities` (rays x classes) from `weights` (rays x samples) and `logits`
    /// (rays x samples x classes). If `labels` (rays, class index or negative for none) is given, returns L_sem (the
    /// mean over labelled rays, 0 when there is none) and the number of labelled rays; without labels returns (0, 0).
    @discardableResult
    public static func forward(weights: UnsafePointer<Float>, logits: UnsafePointer<Float>, rays: Int, samples s: Int,
                               classes c: Int, labels: UnsafePointer<Int32>?, epsilon: Float = defaultEpsilon,
                               probabilities: UnsafeMutablePointer<Float>) -> (loss: Float, labelled: Int) {
        precondition(c >= 1 && s >= 1 && rays >= 0, "SemanticRendering.forward: need classes >= 1, samples >= 1")
        let prior = epsilon / Float(c)
        var lossSum: Double = 0
        var labelled = 0
        for r in 0..<rays {
            let wr = weights + r * s, zr = logits + r * s * c, pr = probabilities + r * c
            pr.update(repeating: 0, count: c)
            var total: Float = 0
            for j in 0..<s {
                let w = wr[j]
                guard w != 0 else { continue }
                total += w
                let z = zr + j * c
                var m = z[0]
                for k in 1..<max(c, 1) where z[k] > m { m = z[k] }
                var sum: Float = 0
                for k in 0..<c { sum += expf(z[k] - m) }
                let scale = w / sum
                for k in 0..<c { pr[k] += scale * expf(z[k] - m) }
            }
            let inv = 1 / (total + epsilon)
            for k in 0..<c { pr[k] = (pr[k] + prior) * inv }
            if let labels, labels[r] >= 0 {
                let l = Int(labels[r])
                precondition(l < c, "SemanticRendering.forward: label \(l) of ray \(r) outside 0..<\(c)")
                lossSum -= Double(logf(pr[l]))
                labelled += 1
            }
        }
        return (labelled > 0 ? Float(lossSum / Double(labelled)) : 0, labelled)
    }

    /// Backward of L_sem: dL/dlogits (written, rays x samples x classes) given the `probabilities` of `forward` (same
    /// inputs) and the number of labelled rays it returned. Unlabelled rays and zero-weight samples get zero gradient.
    public static func backward(weights: UnsafePointer<Float>, logits: UnsafePointer<Float>, rays: Int, samples s: Int,
                                classes c: Int, labels: UnsafePointer<Int32>, labelled: Int,
                                epsilon: Float = defaultEpsilon, probabilities: UnsafePointer<Float>,
                                gradLogits: UnsafeMutablePointer<Float>) {
        let norm: Float = labelled > 0 ? 1 / Float(labelled) : 0
        for r in 0..<rays {
            let wr = weights + r * s, zr = logits + r * s * c, gr = gradLogits + r * s * c
            let l = Int(labels[r])
            guard l >= 0, norm > 0 else { gr.update(repeating: 0, count: s * c); continue }
            var total: Float = 0
            for j in 0..<s { total += wr[j] }
            // -(1/N) / ((W + eps) P_l), the common factor of the ray.
            let rayScale = -norm / ((total + epsilon) * probabilities[r * c + l])
            for j in 0..<s {
                let w = wr[j], z = zr + j * c, g = gr + j * c
                guard w != 0 else { g.update(repeating: 0, count: c); continue }
                var m = z[0]
                for k in 1..<max(c, 1) where z[k] > m { m = z[k] }
                var sum: Float = 0
                for k in 0..<c { sum += expf(z[k] - m) }
                let invSum = 1 / sum
                let pl = expf(z[l] - m) * invSum
                let a = rayScale * w * pl
                for k in 0..<c { g[k] = -a * expf(z[k] - m) * invSum }
                g[l] += a
            }
        }
    }

    /// Backward of any loss of the rendered distributions: given dL/dP (rays x classes) writes dL/dlogits (rays x
    /// samples x classes). P_c = (sum_j w_j p_jc + eps/C) / (W + eps) with p_j = softmax(z_j):
    /// dL/dz_jc = w_j / (W + eps) * p_jc * (g_c - sum_k g_k p_jk).   // semantic rendering, chain rule through softmax
    /// Zero-weight samples get zero gradient. Used by losses other than L_sem that read P (e.g. L_pan through
    /// `PanopticHead`); with g = one-hot(-1 / (N P_l)) it equals the label-based `backward`.
    public static func backward(weights: UnsafePointer<Float>, logits: UnsafePointer<Float>, rays: Int, samples s: Int,
                                classes c: Int, epsilon: Float = defaultEpsilon,
                                gradProbabilities: UnsafePointer<Float>, gradLogits: UnsafeMutablePointer<Float>) {
        precondition(c >= 1 && s >= 1 && rays >= 0, "SemanticRendering.backward: need classes >= 1, samples >= 1")
        for r in 0..<rays {
            let wr = weights + r * s, zr = logits + r * s * c, gr = gradLogits + r * s * c
            let up = gradProbabilities + r * c
            var total: Float = 0
            for j in 0..<s { total += wr[j] }
            let inv = 1 / (total + epsilon)
            for j in 0..<s {
                let w = wr[j], z = zr + j * c, g = gr + j * c
                guard w != 0 else { g.update(repeating: 0, count: c); continue }
                var m = z[0]
                for k in 1..<c where z[k] > m { m = z[k] }
                // g holds exp(z - max) first, then the gradient.
                var sum: Float = 0
                for k in 0..<c { let e = expf(z[k] - m); g[k] = e; sum += e }
                let invSum = 1 / sum
                var dot: Float = 0
                for k in 0..<c { g[k] *= invSum; dot += up[k] * g[k] }
                let a = w * inv
                for k in 0..<c { g[k] = a * g[k] * (up[k] - dot) }
            }
        }
    }

    /// Index of the largest of `classes` values at `p` (the first on ties).
    @inline(__always)
    public static func argmax(_ p: UnsafePointer<Float>, classes c: Int) -> Int {
        var best = 0
        for k in 1..<max(c, 1) where p[k] > p[best] { best = k }
        return best
    }
}

#if canImport(Glibc)
import Glibc
#endif
