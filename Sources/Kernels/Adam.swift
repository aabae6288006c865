import Foundation
import MapCore

/// Adam hyper-parameters (Kingma & Ba), with decoupled weight decay (AdamW) when `weightDecay` > 0.
public struct AdamConfig: Sendable, Codable, Equatable {
    /// Step size, in parameter units per step.
    public var learningRate: Float = 1e-3
    /// Decay of the first moment (mean of gradients).
    public var beta1: Float = 0.9
    /// Decay of the second moment (mean of squared gradients). 0.99 as in instant-NGP rather than the usual 0.999,
    /// so the step size adapts within ~100 steps in the online setting.
    public var beta2: Float = 0.99
    /// Added to sqrt(v_hat) in the denominator. Deliberately tiny (1e-15, instant-NGP's choice) rather than the usual
    /// 1e-8: hash-grid features see gradients of 1e-6 and below, and a 1e-8 epsilon would shrink their steps far
    /// below `learningRate`. It only guards 0/0; with zero gradient history the update is exactly 0.
    public var epsilon: Float = 1e-15
    /// Decoupled weight decay per step: p -= learningRate * weightDecay * p (applied to the updated entries only in
    /// the sparse update). 0 = off.
    public var weightDecay: Float = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.99, epsilon: Float = 1e-15,
                weightDecay: Float = 0) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2
        self.epsilon = epsilon; self.weightDecay = weightDecay
    }

    /// Throws `MapError.badArgument` for values outside their ranges.
    public func validate() throws {
        func bad(_ what: String) -> MapError {
            MapError(.badArgument, "Adam config: \(what)", hint: "use learningRate > 0, betas in [0, 1), epsilon > 0, weightDecay >= 0")
        }
        if !(learningRate > 0 && learningRate.isFinite) { throw bad("learningRate = \(learningRate)") }
        if !(beta1 >= 0 && beta1 < 1) { throw bad("beta1 = \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw bad("beta2 = \(beta2)") }
        if !(epsilon > 0 && epsilon.isFinite) { throw bad("epsilon = \(epsilon)") }
        if !(weightDecay >= 0 && weightDecay.isFinite) { throw bad("weightDecay = \(weightDecay)") }
    }
}

/// Moments of one parameter buffer. `step` counts optimisation steps taken so far.
public struct AdamState: Sendable, Codable, Equatable {
    /// First moments, one per parameter.
    public var m: [Float]
    /// Second moments, one per parameter.
    public var v: [Float]
    /// Optimisation steps so far. The CALLER increments it by 1 once per optimisation step, BEFORE that step's
    /// `update` / `updateSparse` call(s); the updates read it (must be >= 1) for the bias correction and never change it.
    public var step: Int

    public init(parameterCount: Int) {
        m = [Float](repeating: 0, count: parameterCount)
        v = [Float](repeating: 0, count: parameterCount)
        step = 0
    }
}

/// Adam updates over caller-owned parameter and gradient buffers.
///
/// Per parameter, with g the gradient and t = state.step:
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + epsilon) + lr * weightDecay * p
public enum Adam {
    /// Dense update of all `count` parameters; gradients are read, not cleared.
    public static func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, count: Int,
                              state: inout AdamState, config: AdamConfig) {
        precondition(state.m.count >= count && state.v.count >= count, "Adam.update: state smaller than the parameters")
        let c = Coefficients(config: config, step: state.step)
        state.m.withUnsafeMutableBufferPointer { m in
            state.v.withUnsafeMutableBufferPointer { v in
                c.apply(params, grads, m.baseAddress!, v.baseAddress!, count)
            }
        }
    }

    /// Lazy sparse update for hash-grid tables: only the listed entries (entry i = floats [i*width, (i+1)*width))
    /// are updated; their moments decay only when touched; the bias correction uses the global `state.step`.
    /// The gradients of those entries are zeroed afterwards, so the caller never clears the whole table.
    /// `entries` must be distinct (a repeated entry would be updated twice, the second time with a zero gradient).
    public static func updateSparse(params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>,
                                    entries: UnsafeBufferPointer<Int32>, width: Int, state: inout AdamState,
                                    config: AdamConfig) {
        precondition(width >= 1, "Adam.updateSparse: width must be >= 1")
        let c = Coefficients(config: config, step: state.step)
        let total = state.m.count
        precondition(state.v.count == total, "Adam.updateSparse: m and v differ in size")
        state.m.withUnsafeMutableBufferPointer { m in
            state.v.withUnsafeMutableBufferPointer { v in
                let m = m.baseAddress!, v = v.baseAddress!
                for e in entries {
                    let o = Int(e) * width
                    precondition(e >= 0 && o + width <= total, "Adam.updateSparse: entry \(e) outside the table")
                    c.apply(params + o, UnsafePointer(grads + o), m + o, v + o, width)
                    (grads + o).update(repeating: 0, count: width)
                }
            }
        }
    }

    /// Step-dependent constants folded so the inner loop is p -= a * m / (sqrt(v) * b + eps) + decay * p.
    struct Coefficients {
        var beta1: Float, beta2: Float, oneMinusBeta1: Float, oneMinusBeta2: Float
        /// lr / (1 - beta1^t)
        var stepScale: Float
        /// 1 / sqrt(1 - beta2^t)
        var rootScale: Float
        var epsilon: Float
        /// lr * weightDecay
        var decay: Float

        init(config: AdamConfig, step: Int) {
            precondition(step >= 1, "Adam: state.step must be incremented (to >= 1) before the first update")
            let t = Double(step)
            beta1 = config.beta1; beta2 = config.beta2
            oneMinusBeta1 = 1 - config.beta1; oneMinusBeta2 = 1 - config.beta2
            stepScale = Float(Double(config.learningRate) / (1 - pow(Double(config.beta1), t)))
            rootScale = Float(1 / (1 - pow(Double(config.beta2), t)).squareRoot())
            epsilon = config.epsilon
            decay = config.learningRate * config.weightDecay
        }

        @inline(__always)
        func apply(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                   _ v: UnsafeMutablePointer<Float>, _ n: Int) {
            for i in 0..<n {
                let gi = g[i]
                let mi = beta1 * m[i] + oneMinusBeta1 * gi
                let vi = beta2 * v[i] + oneMinusBeta2 * (gi * gi)
                m[i] = mi; v[i] = vi
                let pi = p[i]
                p[i] = pi - stepScale * mi / (vi.squareRoot() * rootScale + epsilon) - decay * pi
            }
        }
    }
}
