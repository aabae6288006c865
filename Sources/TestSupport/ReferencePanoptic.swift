#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Slow, obviously-correct twin of `InstanceRendering` in Double: the sum of the definition, nothing skipped.
public enum ReferenceInstanceRendering {
    /// m[r, i] = sum_j w[r, j] A[r * samples + j, i]; flattened rays x tokens.
    public static func render(weights: [Double], attention: [Double], rays: Int, samples: Int, tokens: Int) -> [Double] {
        var m = [Double](repeating: 0, count: rays * tokens)
        for r in 0..<rays {
            for i in 0..<tokens {
                var sum = 0.0
                for j in 0..<samples { sum += weights[r * samples + j] * attention[(r * samples + j) * tokens + i] }
                m[r * tokens + i] = sum
            }
        }
        return m
    }
}

/// Slow, obviously-correct twins of `MaskLosses` in Double: every (mask, token) pair evaluated from the definitions
/// (Eq. 27-31) over all pixels, with the binary target built explicitly; no precomputed sums.
public enum ReferenceMaskLosses {
    /// The binary target of mask l: t_p = 1 where targets[p] == l, else 0.
    public static func binaryMask(targets: [Int], mask l: Int) -> [Double] { targets.map { $0 == l ? 1 : 0 } }

    /// L_dice = 1 - (2 sum m t + eps) / (sum m + sum t + eps).
    public static func dice(_ m: [Double], _ t: [Double], epsilon: Double) -> Double {
        var mt = 0.0, sm = 0.0, st = 0.0
        for p in 0..<m.count { mt += m[p] * t[p]; sm += m[p]; st += t[p] }
        return 1 - (2 * mt + epsilon) / (sm + st + epsilon)
    }

    /// L_bce = mean over pixels of -(t log m~ + (1 - t) log(1 - m~)), m~ = m clamped to [clamp, 1 - clamp]; 0 for
    /// no pixels.
    public static func bce(_ m: [Double], _ t: [Double], clamp: Double) -> Double {
        guard !m.isEmpty else { return 0 }
        var sum = 0.0
        for p in 0..<m.count {
            let mc = min(max(m[p], clamp), 1 - clamp)
            sum -= t[p] * log(mc) + (1 - t[p]) * log(1 - mc)
        }
        return sum / Double(m.count)
    }

    /// Column i of a P x N row-major matrix.
    public static func column(_ probabilities: [Double], pixels: Int, tokens: Int, _ i: Int) -> [Double] {
        (0..<pixels).map { probabilities[$0 * tokens + i] }
    }

    /// C[l, i] = dice + BCE of token i against mask l; flattened L x N.
    public static func costMatrix(probabilities: [Double], pixels: Int, tokens: Int, targets: [Int], masks: Int,
                                  diceEpsilon: Double, clamp: Double) -> [Double] {
        var c: [Double] = []
        for l in 0..<masks {
            let t = binaryMask(targets: targets, mask: l)
            for i in 0..<tokens {
                let m = column(probabilities, pixels: pixels, tokens: tokens, i)
                c.append(dice(m, t, epsilon: diceEpsilon) + bce(m, t, clamp: clamp))
            }
        }
        return c
    }

    /// Mean over matched pairs (assignment[l] >= 0) of diceWeight[i] * dice + bce; 0 without pairs.
    public static func matchedLoss(probabilities: [Double], pixels: Int, tokens: Int, targets: [Int], masks: Int,
                                   assignment: [Int], diceWeight: [Double], diceEpsilon: Double,
                                   clamp: Double) -> Double {
        var total = 0.0, pairs = 0
        for l in 0..<masks where assignment[l] >= 0 {
            let i = assignment[l]
            let t = binaryMask(targets: targets, mask: l)
            let m = column(probabilities, pixels: pixels, tokens: tokens, i)
            total += diceWeight[i] * dice(m, t, epsilon: diceEpsilon) + bce(m, t, clamp: clamp)
            pairs += 1
        }
        return pairs > 0 ? total / Double(pairs) : 0
    }

    /// L_c: mean over matched pairs and classes of -(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), y one-hot of
    /// the matched mask's class. Written plainly (not the stable form): keep |x| moderate.
    public static func classLoss(classLogits: [Double], tokens: Int, classes K: Int, maskClass: [Int], masks: Int,
                                 assignment: [Int]) -> Double {
        var total = 0.0, pairs = 0
        for l in 0..<masks where assignment[l] >= 0 {
            let i = assignment[l]
            for k in 0..<K {
                let sigma = 1 / (1 + exp(-classLogits[i * K + k]))
                let y: Double = k == maskClass[l] ? 1 : 0
                total -= y * log(sigma) + (1 - y) * log(1 - sigma)
            }
            pairs += 1
        }
        return pairs > 0 ? total / Double(pairs * K) : 0
    }
}

/// Slow, obviously-correct twin of `PanopticHead` in Double: Eq. 18 per pixel, then L_pan as the mean of -log.
public enum ReferencePanopticHead {
    /// l_P of one pixel: [u_s for s in stuff, (sum_{c in things} u_c) m_i / (sum_j m_j + eps) for each token i].
    public static func panoptic(semantic u: [Double], instance m: [Double], stuff: [Int], things: [Int],
                                epsilon: Double) -> [Double] {
        let thing = things.map { u[$0] }.reduce(0, +)
        let mass = m.reduce(0, +)
        return stuff.map { u[$0] } + m.map { thing * $0 / (mass + epsilon) }
    }

    /// l_P for P pixels (semantic P x C, instance P x N, flattened), flattened P x (S + N).
    public static func panoptic(semantic: [Double], instance: [Double], pixels: Int, classes C: Int, tokens N: Int,
                                stuff: [Int], things: [Int], epsilon: Double) -> [Double] {
        (0..<pixels).flatMap { p in
            panoptic(semantic: Array(semantic[(p * C)..<((p + 1) * C)]), instance: Array(instance[(p * N)..<((p + 1) * N)]),
                     stuff: stuff, things: things, epsilon: epsilon)
        }
    }

    /// L_pan = mean over pixels with target >= 0 of -log(l_P[target] + floor); 0 if no pixel is labelled.
    public static func loss(semantic: [Double], instance: [Double], pixels: Int, classes C: Int, tokens N: Int,
                            stuff: [Int], things: [Int], epsilon: Double, targets: [Int], floor: Double) -> Double {
        let lp = panoptic(semantic: semantic, instance: instance, pixels: pixels, classes: C, tokens: N, stuff: stuff,
                          things: things, epsilon: epsilon)
        let width = stuff.count + N
        var total = 0.0, n = 0
        for p in 0..<pixels where targets[p] >= 0 {
            total -= log(lp[p * width + targets[p]] + floor)
            n += 1
        }
        return n > 0 ? total / Double(n) : 0
    }
}
