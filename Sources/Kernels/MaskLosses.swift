#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Instance supervision against one frame's 2D masks (paper Sec. V-C "Instance Assignment", Eq. 27-31).
/// Plain buffers; the only allocation is one scratch block per `costMatrix` call (never inside a loop).
///
/// Layouts: `probabilities` is P x N (row p = a sampled pixel, column i = token i's rendered mask probability m_pi,
/// in [0, 1], e.g. from `InstanceRendering`); `targets` has P entries in -1..<L (l: the pixel is in 2D mask l;
/// -1: in none of them, so its target is 0 for every mask). The binary target of mask l is t_p = [targets_p == l].
///
/// For token i against mask l, over the P pixels:
///     L_dice = 1 - (2 sum_p m_p t_p + eps) / (sum_p m_p + sum_p t_p + eps),   eps = `diceEpsilon` = 1   // Eq. 28
///     L_bce  = (1 / P) sum_p -(t_p log m~_p + (1 - t_p) log(1 - m~_p))                                  // Eq. 29
///     C      = L_dice + L_bce                                                                          // Eq. 27
/// where m~ = min(max(m, clamp), 1 - clamp) only inside the logs (the dice term sees m itself); a clamped value has
/// zero BCE gradient. With P = 0 both terms are 0. In Float, 1 - clamp is not representable (it rounds to
/// 1 - 1.013e-6), so 1 - m~ is computed as min(max(1 - m, clamp), 1 - clamp): the same thing in exact arithmetic,
/// and both logs then floor at exactly log(clamp).
public enum MaskLosses {
    /// The smoothing term of the dice loss (the paper sets it to 1).
    public static let diceEpsilon: Float = 1
    /// Probabilities are clamped to [clamp, 1 - clamp] inside the BCE logs.
    public static let clamp: Float = 1e-6

    /// costs (L x N, row-major, written): dice + BCE of token column i against the binary mask (targets == l).
    /// O(P*N + L*N): precompute per-token column sums and sum of log(1-m), per (mask, token) sums over the mask's
    /// pixels.   // Hungarian cost, Eq. 27
    ///
    /// Since every pixel is in at most one mask, one pass over the P x N probabilities gives, per token i,
    /// M_i = sum_p m_pi and B_i = sum_p log(1 - m~_pi), and per (mask l, token i), I_li = sum_{p in l} m_pi and
    /// R_li = sum_{p in l} (log m~_pi - log(1 - m~_pi)). Then with T_l = |mask l|:
    ///     C_li = 1 - (2 I_li + eps) / (M_i + T_l + eps) - (B_i + R_li) / P
    public static func costMatrix(probabilities: UnsafePointer<Float>, pixels P: Int, tokens N: Int,
                                  targets: UnsafePointer<Int32>, masks L: Int, costs: UnsafeMutablePointer<Float>) {
        precondition(P >= 0 && N >= 0 && L >= 0, "MaskLosses.costMatrix: negative size")
        guard N > 0, L > 0 else { return }
        let lo = clamp, hi = 1 - clamp
        // Scratch (Double sums): M (N), B (N), I (L x N), R (L x N), T (L).
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * N + 2 * L * N + L) { scratch in
            let base = scratch.baseAddress!
            base.update(repeating: 0, count: scratch.count)
            let colSum = base, colLogNeg = base + N, inter = base + 2 * N, ratio = inter + L * N
            let count = ratio + L * N
            for p in 0..<P {
                let row = probabilities + p * N
                let t = Int(targets[p])
                precondition(t >= -1 && t < L, "MaskLosses.costMatrix: target \(t) of pixel \(p) outside -1..<\(L)")
                if t < 0 {
                    for i in 0..<N {
                        let m = row[i]
                        colSum[i] += Double(m)
                        colLogNeg[i] += Double(logf(min(max(1 - m, lo), hi)))
                    }
                } else {
                    count[t] += 1
                    let it = inter + t * N, rt = ratio + t * N
                    for i in 0..<N {
                        let m = row[i], mc = min(max(m, lo), hi)
                        let ln = logf(min(max(1 - m, lo), hi))
                        colSum[i] += Double(m)
                        colLogNeg[i] += Double(ln)
                        it[i] += Double(m)
                        rt[i] += Double(logf(mc) - ln)
                    }
                }
            }
            let eps = Double(diceEpsilon), invP = P > 0 ? 1 / Double(P) : 0
            for l in 0..<L {
                let it = inter + l * N, rt = ratio + l * N, cl = costs + l * N
                for i in 0..<N {
                    let dice = 1 - (2 * it[i] + eps) / (colSum[i] + count[l] + eps)
                    let bce = -(colLogNeg[i] + rt[i]) * invP
                    cl[i] = Float(dice + bce)
                }
            }
        }
    }

    /// L_ins over matched pairs: assignment[l] = token index or -1 (unmatched mask). diceWeight[i] in [0,1] scales
    /// the dice term of token i (the trainer drops dice for tokens whose assignment is stable); BCE always weight 1.
    /// Returns the mean over matched pairs of (diceWeight[i] * dice + bce) (0 if no pair) and the number of pairs.
    /// If gradProbabilities != nil it is WRITTEN (P x N, zero for tokens in no pair) with dL/dprobabilities of that
    /// mean.   // L_ins, Eq. 30
    ///
    /// Gradient of one pair (K pairs, D = M + T + eps, I = sum_p m_p t_p, M = sum_p m_p):
    ///     d/dm_p = (1 / K) [ w_dice ((2 I + eps) / D^2 - 2 t_p / D) + (1 / P)(-t_p / m_p + (1 - t_p) / (1 - m_p)) ]
    /// with the BCE part 0 where m_p is clamped. A token in two pairs (not produced by the Hungarian matching)
    /// receives the sum of both.
    public static func matchedLoss(probabilities: UnsafePointer<Float>, pixels P: Int, tokens N: Int,
                                   targets: UnsafePointer<Int32>, masks L: Int, assignment: UnsafePointer<Int32>,
                                   diceWeight: UnsafePointer<Float>,
                                   gradProbabilities: UnsafeMutablePointer<Float>?) -> (loss: Float, pairs: Int) {
        precondition(P >= 0 && N >= 0 && L >= 0, "MaskLosses.matchedLoss: negative size")
        gradProbabilities?.update(repeating: 0, count: P * N)
        var pairs = 0
        for l in 0..<L where assignment[l] >= 0 {
            precondition(Int(assignment[l]) < N, "MaskLosses.matchedLoss: mask \(l) assigned to token \(assignment[l]) outside 0..<\(N)")
            pairs += 1
        }
        guard pairs > 0 else { return (0, 0) }
        let lo = clamp, hi = 1 - clamp
        let eps = Double(diceEpsilon), invP = P > 0 ? 1 / Double(P) : 0
        let scale = 1 / Double(pairs)
        var total: Double = 0
        for l in 0..<L where assignment[l] >= 0 {
            let i = Int(assignment[l]), l32 = Int32(l)
            var sumM: Double = 0, sumT: Double = 0, inter: Double = 0, bce: Double = 0
            for p in 0..<P {
                let m = probabilities[p * N + i]
                let inMask = targets[p] == l32
                sumM += Double(m)
                if inMask {
                    sumT += 1; inter += Double(m)
                    bce -= Double(logf(min(max(m, lo), hi)))
                } else {
                    bce -= Double(logf(min(max(1 - m, lo), hi)))
                }
            }
            let d = sumM + sumT + eps, wd = Double(diceWeight[i])
            let dice = 1 - (2 * inter + eps) / d
            total += wd * dice + bce * invP
            guard let g = gradProbabilities else { continue }
            let common = Float(scale * wd * (2 * inter + eps) / (d * d))
            let inside = Float(-scale * wd * 2 / d)
            let bceScale = Float(scale * invP)
            for p in 0..<P {
                let m = probabilities[p * N + i]
                let inMask = targets[p] == l32
                var gp = common
                if inMask { gp += inside }
                if inMask {
                    if m >= lo && m <= hi { gp -= bceScale / m }
                } else {
                    let q = 1 - m
                    if q >= lo && q <= hi { gp += bceScale / q }
                }
                g[p * N + i] += gp
            }
        }
        return (Float(total * scale), pairs)
    }

    /// Token class head loss L_c (paper Eq. 31): BCE of sigmoid(classLogits[i, :]) against the one-hot class of the
    /// mask matched to token i. classLogits: N x K (K thing classes), maskClass: L entries in 0..<K. Mean over
    /// matched pairs and over K. gradLogits (N x K) WRITTEN when non-nil (zero rows for unmatched tokens).
    /// Returns (loss, pairs).   // L_c
    ///
    /// Per logit x with target y, in the stable BCE-with-logits form:
    ///     softplus(x) - y x,  softplus(x) = max(x, 0) + log(1 + exp(-|x|));   d/dx = sigmoid(x) - y
    public static func classLoss(classLogits: UnsafePointer<Float>, tokens N: Int, classes K: Int,
                                 maskClass: UnsafePointer<Int32>, masks L: Int, assignment: UnsafePointer<Int32>,
                                 gradLogits: UnsafeMutablePointer<Float>?) -> (loss: Float, pairs: Int) {
        precondition(N >= 0 && K >= 0 && L >= 0, "MaskLosses.classLoss: negative size")
        gradLogits?.update(repeating: 0, count: N * K)
        var pairs = 0
        for l in 0..<L where assignment[l] >= 0 {
            precondition(Int(assignment[l]) < N, "MaskLosses.classLoss: mask \(l) assigned to token \(assignment[l]) outside 0..<\(N)")
            precondition(maskClass[l] >= 0 && Int(maskClass[l]) < K, "MaskLosses.classLoss: class \(maskClass[l]) of mask \(l) outside 0..<\(K)")
            pairs += 1
        }
        guard pairs > 0, K > 0 else { return (0, pairs) }
        let norm = 1 / Double(pairs * K)
        let gnorm = Float(norm)
        var total: Double = 0
        for l in 0..<L where assignment[l] >= 0 {
            let i = Int(assignment[l]), y = Int(maskClass[l])
            let row = classLogits + i * K
            for k in 0..<K {
                let x = row[k]
                let softplus = max(x, 0) + log1pf(expf(-abs(x)))
                total += Double(softplus) - (k == y ? Double(x) : 0)
                if let g = gradLogits {
                    let sigmoid: Float
                    if x >= 0 { sigmoid = 1 / (1 + expf(-x)) } else { let e = expf(x); sigmoid = e / (1 + e) }
                    g[i * K + k] += gnorm * (sigmoid - (k == y ? 1 : 0))
                }
            }
        }
        return (Float(total * norm), pairs)
    }
}
