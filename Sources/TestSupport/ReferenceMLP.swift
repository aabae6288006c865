import Foundation
import Kernels

/// Slow, obviously-correct twin of `Kernels.MLP`: plain Double loops (no BLAS) over the same flat parameter layout
/// (per layer: W row-major out x in, then b).
public enum ReferenceMLP {
    /// Activation value in Double.
    public static func activate(_ a: Activation, _ z: Double) -> Double {
        switch a {
        case .none: return z
        case .relu: return max(z, 0)
        case .softplus(let beta):
            let b = Double(beta)
            return max(z, 0) + log1p(exp(-abs(b * z))) / b
        case .sigmoid: return 1 / (1 + exp(-z))
        }
    }

    /// d activation / dz at pre-activation z (relu: 1 for z > 0, else 0).
    public static func derivative(_ a: Activation, _ z: Double) -> Double {
        switch a {
        case .none: return 1
        case .relu: return z > 0 ? 1 : 0
        case .softplus(let beta): return 1 / (1 + exp(-Double(beta) * z))
        case .sigmoid:
            let s = 1 / (1 + exp(-z))
            return s * (1 - s)
        }
    }

    /// Pre-activations z_l and post-activations a_l of every layer (a_{-1} = input), per row.
    public struct Trace {
        public var pre: [[Double]]   // layer l: count x widths[l+1]
        public var post: [[Double]]  // layer l: count x widths[l+1]
    }

    /// Forward in Double. `params` in the MLP layout; input count x inputs. Returns the trace; the output is
    /// `trace.post.last`.
    public static func forward(config: MLPConfig, params: [Double], input: [Double], count: Int) -> Trace {
        let widths = [config.inputs] + config.hidden + [config.outputs]
        let L = widths.count - 1
        var pre: [[Double]] = [], post: [[Double]] = []
        var prev = input
        var off = 0
        for l in 0..<L {
            let inW = widths[l], outW = widths[l + 1]
            let wOff = off, bOff = off + outW * inW
            off = bOff + outW
            let act = l == L - 1 ? config.outputActivation : config.activation
            var z = [Double](repeating: 0, count: count * outW), a = z
            for r in 0..<count {
                for o in 0..<outW {
                    var s = params[bOff + o]
                    for i in 0..<inW { s += params[wOff + o * inW + i] * prev[r * inW + i] }
                    z[r * outW + o] = s
                    a[r * outW + o] = activate(act, s)
                }
            }
            pre.append(z); post.append(a)
            prev = a
        }
        return Trace(pre: pre, post: post)
    }

    /// Output only (count x outputs).
    public static func output(config: MLPConfig, params: [Double], input: [Double], count: Int) -> [Double] {
        forward(config: config, params: params, input: input, count: count).post.last!
    }

    /// Gradients of L given dL/doutput: (dL/dparams in the MLP layout, dL/dinput count x inputs).
    public static func backward(config: MLPConfig, params: [Double], input: [Double], count: Int,
                                gradOutput: [Double]) -> (params: [Double], input: [Double]) {
        let widths = [config.inputs] + config.hidden + [config.outputs]
        let L = widths.count - 1
        let trace = forward(config: config, params: params, input: input, count: count)
        var wOffs: [Int] = [], bOffs: [Int] = [], off = 0
        for l in 0..<L { wOffs.append(off); off += widths[l + 1] * widths[l]; bOffs.append(off); off += widths[l + 1] }
        var gp = [Double](repeating: 0, count: off)
        var ga = gradOutput  // dL/da_l for the current l
        var gInput = [Double](repeating: 0, count: count * widths[0])
        for l in stride(from: L - 1, through: 0, by: -1) {
            let inW = widths[l], outW = widths[l + 1]
            let act = l == L - 1 ? config.outputActivation : config.activation
            let prev = l == 0 ? input : trace.post[l - 1]
            var gPrev = [Double](repeating: 0, count: count * inW)
            for r in 0..<count {
                for o in 0..<outW {
                    let gz = ga[r * outW + o] * derivative(act, trace.pre[l][r * outW + o])
                    gp[bOffs[l] + o] += gz
                    for i in 0..<inW {
                        gp[wOffs[l] + o * inW + i] += gz * prev[r * inW + i]
                        gPrev[r * inW + i] += gz * params[wOffs[l] + o * inW + i]
                    }
                }
            }
            if l == 0 { gInput = gPrev } else { ga = gPrev }
        }
        return (gp, gInput)
    }
}

/// Twin of `Kernels.Adam` in Double (same formulas, decoupled weight decay, step incremented by the caller first).
public struct ReferenceAdam {
    public var m: [Double]
    public var v: [Double]
    public var step = 0

    public init(count: Int) {
        m = [Double](repeating: 0, count: count)
        v = [Double](repeating: 0, count: count)
    }

    /// Updates params[i] for i in `indices` (all when nil) with gradients `grads`; step must already be incremented.
    public mutating func update(params: inout [Double], grads: [Double], config: AdamConfig, indices: [Int]? = nil) {
        let b1 = Double(config.beta1), b2 = Double(config.beta2), lr = Double(config.learningRate)
        let t = Double(step)
        for i in indices ?? Array(0..<params.count) {
            m[i] = b1 * m[i] + (1 - b1) * grads[i]
            v[i] = b2 * v[i] + (1 - b2) * grads[i] * grads[i]
            let mHat = m[i] / (1 - pow(b1, t)), vHat = v[i] / (1 - pow(b2, t))
            params[i] -= lr * mHat / (vHat.squareRoot() + Double(config.epsilon)) + lr * Double(config.weightDecay) * params[i]
        }
    }
}
