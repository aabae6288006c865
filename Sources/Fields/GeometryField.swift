import Foundation
import Kernels
import MapCore

/// The geometry field: s(x) = MLP_g(hashgrid_g(x)), a signed distance in metres (positive in free space), plus the
/// NeuS sharpness xi (learned as log xi). Owns its parameters, gradients, optimiser state and scratch buffers; one
/// owner at a time (the trainer or the optimizer stage), so it is a plain class and not `Sendable`.
public final class GeometryField {
    public struct Config: Sendable, Codable, Equatable {
        public var grid: HashGridConfig
        public var hidden: [Int] = [64]
        /// Softplus with a large beta keeps the SDF smooth where ReLU would crease it.
        public var activation: Activation = .softplus(beta: 100)
        public var initialXi: Float = 30
        public var gridAdam = AdamConfig(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var mlpAdam = AdamConfig(learningRate: 2e-3, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var xiLearningRate: Float = 1e-3
        public var threads: Int = Parallel.defaultThreads

        public init(grid: HashGridConfig) { self.grid = grid }
    }

    public let config: Config
    /// Hash grid + MLP with one output, the SDF.
    public let core: HashMLPField
    public var grid: HashGrid { core.grid }
    public var mlp: MLP { core.mlp }
    public var gridParams: [Float] { core.gridParams }
    public var mlpParams: [Float] { core.mlpParams }
    public var logXi: Float
    public var xiAdamState = AdamState(parameterCount: 1)
    var xiGrad: Float = 0

    public var xi: Float { expf(logXi) }

    public init(config: Config, seed: UInt64) throws {
        self.config = config
        var rng = SeededRNG(seed: seed)
        core = try HashMLPField(grid: config.grid, hidden: config.hidden, activation: config.activation, outputs: 1,
                                gridAdam: config.gridAdam, mlpAdam: config.mlpAdam, threads: config.threads, rng: &rng)
        logXi = logf(config.initialXi)
    }

    /// SDF at `count` positions (xyz interleaved), inference only (no state kept for backward).
    public func sdf(positions: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        core.infer(positions: positions, count: count, out: out)
    }

    public func sdf(_ positions: [SIMD3<Float>]) -> [Float] { core.infer(positions) }

    /// Forward pass over a training batch; keeps what the backward needs. Returns the SDF values.
    public func forwardForTraining(positions: [Float]) -> [Float] { core.forwardForTraining(positions: positions) }

    /// Backward of the last `forwardForTraining` for dL/ds; accumulates parameter gradients. `gradXi` is dL/dxi.
    public func backward(gradSDF: [Float], gradXi: Float) {
        core.backward(gradOutput: gradSDF)
        xiGrad += gradXi * xi // d/dlogxi = d/dxi * xi
    }

    /// One Adam step on everything that has gradients; clears them (the grid only where touched).
    public func applyGradients() {
        core.applyGradients()
        xiAdamState.step += 1
        var x = [logXi]
        let g = [xiGrad]
        var xiConfig = config.mlpAdam
        xiConfig.learningRate = config.xiLearningRate
        Adam.update(params: &x, grads: g, count: 1, state: &xiAdamState, config: xiConfig)
        logXi = min(max(x[0], logf(5)), logf(5000))
        xiGrad = 0
    }
}

import Foundation

extension GeometryField {
    /// The field as a batched SDF evaluator for the block mesher. Calls are serialised by a lock (the field's scratch
    /// buffers are shared); the field already spreads each batch over the cores, so run the mesher with 1 thread.
    public func evaluator() -> SDFEvaluator {
        let box = SerializedField(field: self)
        return { positions, count, out in box.sdf(positions, count, out) }
    }
}

/// @unchecked Sendable is safe: every use of `field` goes through `lock`, so no two threads touch it at once.
private final class SerializedField: @unchecked Sendable {
    let field: GeometryField
    let lock = NSLock()
    init(field: GeometryField) { self.field = field }
    func sdf(_ p: UnsafePointer<Float>, _ n: Int, _ out: UnsafeMutablePointer<Float>) {
        lock.lock(); defer { lock.unlock() }
        field.sdf(positions: p, count: n, out: out)
    }
}
