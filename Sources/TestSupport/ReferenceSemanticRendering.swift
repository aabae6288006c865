import Foundation

/// Slow, obviously-correct semantic rendering in Double: the equations of `SemanticRendering` as written, one ray at
/// a time, softmax from the definition (max subtracted, which changes nothing mathematically).
public enum ReferenceSemanticRendering {
    public static func softmax(_ z: [Double]) -> [Double] {
        let m = z.max() ?? 0
        let e = z.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// P_c = (sum_j w_j softmax(z_j)_c + eps / C) / (sum_j w_j + eps) for one ray; `logits[j]` has C values.
    public static func probabilities(weights: [Double], logits: [[Double]], epsilon: Double) -> [Double] {
        let c = logits.first?.count ?? 0
        var p = [Double](repeating: 0, count: c)
        for (j, z) in logits.enumerated() {
            let q = softmax(z)
            for k in 0..<c { p[k] += weights[j] * q[k] }
        }
        let total = weights.reduce(0, +)
        return p.map { ($0 + epsilon / Double(c)) / (total + epsilon) }
    }

    /// L_sem over a batch laid out like the kernel's buffers (rays x samples weights, rays x samples x classes logits);
    /// rays with a negative label are skipped; the mean is over labelled rays (0 if none).
    public static func loss(weights: [Double], logits: [Double], rays: Int, samples s: Int, classes c: Int,
                            labels: [Int], epsilon: Double) -> Double {
        var total = 0.0, n = 0
        for r in 0..<rays where labels[r] >= 0 {
            let w = Array(weights[(r * s)..<((r + 1) * s)])
            let z = (0..<s).map { j in Array(logits[((r * s + j) * c)..<((r * s + j + 1) * c)]) }
            let p = probabilities(weights: w, logits: z, epsilon: epsilon)
            total -= log(p[labels[r]])
            n += 1
        }
        return n > 0 ? total / Double(n) : 0
    }
}

extension ReferenceSemanticRendering {
    /// The rendered distributions of a whole batch (rays x classes, flattened), laid out like the kernel's buffers;
    /// the function whose vector-Jacobian product `SemanticRendering.backward(..., gradProbabilities:, ...)` computes.
    public static func probabilities(weights: [Double], logits: [Double], rays: Int, samples s: Int, classes c: Int,
                                     epsilon: Double) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(rays * c)
        for r in 0..<rays {
            let w = Array(weights[(r * s)..<((r + 1) * s)])
            let z = (0..<s).map { j in Array(logits[((r * s + j) * c)..<((r * s + j + 1) * c)]) }
            out += probabilities(weights: w, logits: z, epsilon: epsilon)
        }
        return out
    }
}
