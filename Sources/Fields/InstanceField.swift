import Foundation
import Kernels
import MapCore

/// The instance field Psi_I: per-point instance features f_k = MLP_I(hashgrid_I(x)), D values per point, the keys of
/// the token attention (PanopticRecon++ Sec. IV; the paper replaces the MLP by the attention, we keep a one-layer
/// decoder so the features are not limited to the grid's 2 features per level). Plain class, one owner at a time.
public final class InstanceField {
    public struct Config: Sendable, Codable, Equatable {
        public var grid: HashGridConfig
        public var hidden: [Int] = [64]
        /// D, the width of the instance features (and of the token features).
        public var featureWidth = 16
        public var gridAdam = AdamConfig(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var mlpAdam = AdamConfig(learningRate: 2e-3, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var threads: Int = Parallel.defaultThreads

        public init(grid: HashGridConfig) { self.grid = grid }
    }

    public let config: Config
    public let core: HashMLPField
    public var featureWidth: Int { config.featureWidth }

    public init(config: Config, seed: UInt64) throws {
        guard config.featureWidth >= 1 else { throw ConfigError("instance feature width must be at least 1") }
        self.config = config
        var rng = SeededRNG(seed: seed)
        core = try HashMLPField(grid: config.grid, hidden: config.hidden, activation: .relu,
                                outputs: config.featureWidth, gridAdam: config.gridAdam, mlpAdam: config.mlpAdam,
                                threads: config.threads, rng: &rng)
    }
}

/// The N instance tokens Q_i = (feature f_i, mean p_i, quaternion q_i, log-scales l_i) with their Adam state, and the
/// per-token class head h_SI (paper Eq. 22): an MLP from f_i to logits over the vocabulary's thing classes.
/// Token i's instance id in outputs is i + 1 (after the last token-management round).
public struct InstanceTokens: Sendable {
    public var featureWidth: Int
    public var features: [Float]   // N x D
    public var means: [Float]      // N x 3
    public var rotations: [Float]  // N x 4 (w, x, y, z)
    public var logScales: [Float]  // N x 3
    var featureAdam: AdamState
    var meanAdam: AdamState
    var rotationAdam: AdamState
    var logScaleAdam: AdamState

    public var count: Int { means.count / 3 }

    /// Tokens at `positions` (metres) with isotropic scale `scale`, identity rotation and features drawn from
    /// N(0, featureScale^2).
    public init(positions: [SIMD3<Float>], featureWidth D: Int, scale: Float, featureScale: Float,
                rng: inout SeededRNG) {
        featureWidth = D
        features = (0..<(positions.count * D)).map { _ in Float(rng.gaussian()) * featureScale }
        means = positions.flatMap { [$0.x, $0.y, $0.z] }
        rotations = positions.flatMap { _ in [Float(1), 0, 0, 0] }
        logScales = [Float](repeating: logf(scale), count: positions.count * 3)
        featureAdam = AdamState(parameterCount: features.count)
        meanAdam = AdamState(parameterCount: means.count)
        rotationAdam = AdamState(parameterCount: rotations.count)
        logScaleAdam = AdamState(parameterCount: logScales.count)
    }

    /// Calls `body` with kernel views of the parameters.
    public func withKernelTokens<R>(_ body: (TokenAttention.Tokens) -> R) -> R {
        features.withUnsafeBufferPointer { f in
            means.withUnsafeBufferPointer { m in
                rotations.withUnsafeBufferPointer { r in
                    logScales.withUnsafeBufferPointer { l in
                        body(TokenAttention.Tokens(features: f.baseAddress!, means: m.baseAddress!,
                                                   rotations: r.baseAddress!, logScales: l.baseAddress!,
                                                   count: count))
                    }
                }
            }
        }
    }

    /// Rearranges every per-token row (parameters and Adam moments) by a token-management plan.
    mutating func apply(_ plan: TokenPlan) {
        let D = featureWidth
        func move(_ a: inout [Float], _ w: Int) { a = plan.applied(to: a, width: w) }
        func move(_ s: inout AdamState, _ w: Int) { move(&s.m, w); move(&s.v, w) }
        move(&features, D); move(&means, 3); move(&rotations, 4); move(&logScales, 3)
        move(&featureAdam, D); move(&meanAdam, 3); move(&rotationAdam, 4); move(&logScaleAdam, 3)
    }
}

/// The per-token class head h_SI: MLP from a token feature (D) to K thing-class logits, with its Adam state.
public struct TokenClassHead: Sendable {
    public let mlp: MLP
    public var params: [Float]
    var adam: AdamState

    public init(featureWidth D: Int, thingClasses K: Int, hidden: Int, seed: UInt64) throws {
        mlp = try MLP(config: MLPConfig(inputs: D, hidden: [hidden], outputs: K, activation: .relu,
                                        outputActivation: .none))
        params = mlp.initialParameters(seed: seed)
        adam = AdamState(parameterCount: params.count)
    }

    /// Logits (N x K) of the tokens' features.
    public func logits(_ tokens: InstanceTokens) -> [Float] {
        let n = tokens.count, k = mlp.config.outputs
        var out = [Float](repeating: 0, count: n * k)
        guard n > 0 else { return out }
        let ws = MLPWorkspace(mlp: mlp, maxBatch: n)
        params.withUnsafeBufferPointer { p in
            tokens.features.withUnsafeBufferPointer { f in
                out.withUnsafeMutableBufferPointer { o in
                    mlp.infer(params: p.baseAddress!, input: f.baseAddress!, count: n, workspace: ws,
                              output: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Thing-class index (0..<K) of each token: the argmax of its logits.
    public func classes(_ tokens: InstanceTokens) -> [Int] {
        let k = mlp.config.outputs
        let z = logits(tokens)
        return z.withUnsafeBufferPointer { p in
            (0..<tokens.count).map { SemanticRendering.argmax(p.baseAddress! + $0 * k, classes: k) }
        }
    }
}
