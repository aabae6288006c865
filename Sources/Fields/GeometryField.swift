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
    public let grid: HashGrid
    public let mlp: MLP

    public var gridParams: [Float]
    public var mlpParams: [Float]
    public var logXi: Float
    public var gridAdamState: AdamState
    public var mlpAdamState: AdamState
    public var xiAdamState = AdamState(parameterCount: 1)

    var gridGrad: [Float]
    var mlpGrad: [Float]
    var xiGrad: Float = 0
    var touched: HashGridTouched
    var touchedAscending: [Int32] = []
    var encoded: [Float] = []
    /// Grid features of inference calls, apart from `encoded`, which the backward of the last training forward reads.
    var inferenceEncoded: [Float] = []
    var gradEncoded: [Float] = []
    var output: [Float] = []
    /// Training activations (kept from forward to backward) and a separate one for inference, so that evaluating
    /// the field between a training forward and its backward cannot clobber what the backward needs.
    let workspace: MLPWorkspace
    let inferenceWorkspace: MLPWorkspace
    /// Positions of the last `forwardForTraining`, kept for the backward pass.
    var lastPositions: [Float] = []

    public var xi: Float { expf(logXi) }

    public init(config: Config, seed: UInt64) throws {
        try config.grid.validate()
        self.config = config
        grid = try HashGrid(config: config.grid)
        mlp = try MLP(config: MLPConfig(inputs: grid.outputWidth, hidden: config.hidden, outputs: 1,
                                        activation: config.activation, outputActivation: .none))
        var rng = SeededRNG(seed: seed)
        gridParams = grid.initialParameters(seed: rng.next())
        mlpParams = mlp.initialParameters(seed: rng.next())
        logXi = logf(config.initialXi)
        gridGrad = [Float](repeating: 0, count: grid.parameterCount)
        mlpGrad = [Float](repeating: 0, count: mlp.parameterCount)
        gridAdamState = AdamState(parameterCount: grid.parameterCount)
        mlpAdamState = AdamState(parameterCount: mlp.parameterCount)
        touched = HashGridTouched(grid: grid)
        workspace = MLPWorkspace(mlp: mlp, maxBatch: 1 << 14, threads: config.threads)
        inferenceWorkspace = MLPWorkspace(mlp: mlp, maxBatch: 1 << 15, threads: config.threads)
    }

    /// SDF at `count` positions (xyz interleaved), inference only, in chunks (no state kept for backward).
    public func sdf(positions: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        let chunk = 1 << 15
        var start = 0
        while start < count {
            let n = min(chunk, count - start)
            encode(positions + 3 * start, n, into: &inferenceEncoded)
            inferenceEncoded.withUnsafeBufferPointer { enc in
                mlpParams.withUnsafeBufferPointer { p in
                    mlp.infer(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: inferenceWorkspace,
                              output: out + start)
                }
            }
            start += n
        }
    }

    public func sdf(_ positions: [SIMD3<Float>]) -> [Float] {
        var out = [Float](repeating: 0, count: positions.count)
        let flat = positions.flatMap { [$0.x, $0.y, $0.z] }
        flat.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
            sdf(positions: p.baseAddress!, count: positions.count, out: o.baseAddress!)
        } }
        return out
    }

    private func encode(_ positions: UnsafePointer<Float>, _ n: Int, into encoded: inout [Float]) {
        let width = grid.outputWidth
        if encoded.count < n * width { encoded = [Float](repeating: 0, count: n * width) }
        gridParams.withUnsafeBufferPointer { p in
            encoded.withUnsafeMutableBufferPointer { e in
                grid.forward(params: p.baseAddress!, positions: positions, count: n, output: e.baseAddress!,
                             threads: config.threads)
            }
        }
    }

    /// Forward pass over a training batch; keeps what the backward needs. Returns the SDF values (valid until the
    /// next call).
    public func forwardForTraining(positions: [Float]) -> [Float] {
        let n = positions.count / 3
        lastPositions = positions
        positions.withUnsafeBufferPointer { encode($0.baseAddress!, n, into: &encoded) }
        if output.count < n { output = [Float](repeating: 0, count: n) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { o in
                    mlp.forward(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: workspace,
                                output: o.baseAddress!)
                }
            }
        }
        return Array(output[0..<n])
    }

    /// Backward of the last `forwardForTraining` for dL/ds; accumulates parameter gradients. `gradXi` is dL/dxi.
    public func backward(gradSDF: [Float], gradXi: Float) {
        let n = gradSDF.count
        let width = grid.outputWidth
        if gradEncoded.count < n * width { gradEncoded = [Float](repeating: 0, count: n * width) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                gradSDF.withUnsafeBufferPointer { g in
                    mlpGrad.withUnsafeMutableBufferPointer { gp in
                        gradEncoded.withUnsafeMutableBufferPointer { ge in
                            mlp.backward(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: workspace,
                                         gradOutput: g.baseAddress!, gradParams: gp.baseAddress!,
                                         gradInput: ge.baseAddress!)
                        }
                    }
                }
            }
        }
        lastPositions.withUnsafeBufferPointer { pos in
            gradEncoded.withUnsafeBufferPointer { ge in
                gridGrad.withUnsafeMutableBufferPointer { gg in
                    grid.backward(positions: pos.baseAddress!, count: n, gradOutput: ge.baseAddress!,
                                  gradParams: gg.baseAddress!, touched: &touched, threads: config.threads)
                }
            }
        }
        xiGrad += gradXi * xi // d/dlogxi = d/dxi * xi
    }

    /// One Adam step on everything that has gradients; clears them (the grid only where touched).
    public func applyGradients() {
        gridAdamState.step += 1
        mlpAdamState.step += 1
        xiAdamState.step += 1
        gridParams.withUnsafeMutableBufferPointer { p in
            gridGrad.withUnsafeMutableBufferPointer { g in
                touched.ascendingEntries(into: &touchedAscending)
                touchedAscending.withUnsafeBufferPointer { e in
                    Adam.updateSparse(params: p.baseAddress!, grads: g.baseAddress!, entries: e,
                                      width: config.grid.featuresPerLevel, state: &gridAdamState, config: config.gridAdam)
                }
            }
        }
        touched.reset()
        mlpParams.withUnsafeMutableBufferPointer { p in
            mlpGrad.withUnsafeBufferPointer { g in
                Adam.update(params: p.baseAddress!, grads: g.baseAddress!, count: p.count, state: &mlpAdamState,
                            config: config.mlpAdam)
            }
        }
        for i in 0..<mlpGrad.count { mlpGrad[i] = 0 }
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
