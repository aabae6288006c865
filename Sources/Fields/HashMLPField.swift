import Kernels
import MapCore

/// The core every neural field shares: a multi-resolution hash grid encoding followed by an MLP decoder with
/// `outputs` values per point, trained with Adam (lazy sparse for the grid, dense for the MLP). Owns parameters,
/// gradients, optimiser state and scratch buffers; one owner at a time, so it is a plain class and not `Sendable`.
public final class HashMLPField {
    public let grid: HashGrid
    public let mlp: MLP
    public let outputs: Int
    public let gridAdam: AdamConfig
    public let mlpAdam: AdamConfig
    public let threads: Int

    public var gridParams: [Float]
    public var mlpParams: [Float]
    public var gridAdamState: AdamState
    public var mlpAdamState: AdamState

    var gridGrad: [Float]
    var mlpGrad: [Float]
    var touched: HashGridTouched
    var touchedAscending: [Int32] = []
    /// Grid features of the last training forward (the backward reads them) and, separately, of inference calls, so
    /// that evaluating the field between a training forward and its backward cannot clobber them.
    var encoded: [Float] = []
    var inferenceEncoded: [Float] = []
    var gradEncoded: [Float] = []
    var output: [Float] = []
    let workspace: MLPWorkspace
    let inferenceWorkspace: MLPWorkspace
    /// Positions of the last `forwardForTraining`, kept for the backward pass.
    var lastPositions: [Float] = []

    /// Points per inference chunk.
    static let inferenceChunk = 1 << 15

    /// Draws the grid's and then the MLP's initial parameters from `rng`.
    public init(grid gridConfig: HashGridConfig, hidden: [Int], activation: Activation, outputs: Int,
                gridAdam: AdamConfig, mlpAdam: AdamConfig, threads: Int, rng: inout SeededRNG) throws {
        try gridConfig.validate()
        grid = try HashGrid(config: gridConfig)
        mlp = try MLP(config: MLPConfig(inputs: grid.outputWidth, hidden: hidden, outputs: outputs,
                                        activation: activation, outputActivation: .none))
        self.outputs = outputs
        self.gridAdam = gridAdam; self.mlpAdam = mlpAdam; self.threads = threads
        gridParams = grid.initialParameters(seed: rng.next())
        mlpParams = mlp.initialParameters(seed: rng.next())
        gridGrad = [Float](repeating: 0, count: grid.parameterCount)
        mlpGrad = [Float](repeating: 0, count: mlp.parameterCount)
        gridAdamState = AdamState(parameterCount: grid.parameterCount)
        mlpAdamState = AdamState(parameterCount: mlp.parameterCount)
        touched = HashGridTouched(grid: grid)
        workspace = MLPWorkspace(mlp: mlp, maxBatch: 1 << 14, threads: threads)
        inferenceWorkspace = MLPWorkspace(mlp: mlp, maxBatch: Self.inferenceChunk, threads: threads)
    }

    private func encode(_ positions: UnsafePointer<Float>, _ n: Int, into encoded: inout [Float]) {
        let width = grid.outputWidth
        if encoded.count < n * width { encoded = [Float](repeating: 0, count: n * width) }
        gridParams.withUnsafeBufferPointer { p in
            encoded.withUnsafeMutableBufferPointer { e in
                grid.forward(params: p.baseAddress!, positions: positions, count: n, output: e.baseAddress!,
                             threads: threads)
            }
        }
    }

    /// Outputs (count x outputs) at `count` positions (xyz interleaved), inference only, in chunks.
    public func infer(positions: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        var start = 0
        while start < count {
            let n = min(Self.inferenceChunk, count - start)
            encode(positions + 3 * start, n, into: &inferenceEncoded)
            inferenceEncoded.withUnsafeBufferPointer { enc in
                mlpParams.withUnsafeBufferPointer { p in
                    mlp.infer(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: inferenceWorkspace,
                              output: out + start * outputs)
                }
            }
            start += n
        }
    }

    /// Outputs at the given points.
    public func infer(_ positions: [SIMD3<Float>]) -> [Float] {
        var out = [Float](repeating: 0, count: positions.count * outputs)
        let flat = positions.flatMap { [$0.x, $0.y, $0.z] }
        flat.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
            infer(positions: p.baseAddress!, count: positions.count, out: o.baseAddress!)
        } }
        return out
    }

    /// Forward pass over a training batch (xyz interleaved); keeps what the backward needs. Returns the outputs
    /// (count x outputs).
    public func forwardForTraining(positions: [Float]) -> [Float] {
        let n = positions.count / 3
        lastPositions = positions
        positions.withUnsafeBufferPointer { encode($0.baseAddress!, n, into: &encoded) }
        if output.count < n * outputs { output = [Float](repeating: 0, count: n * outputs) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { o in
                    mlp.forward(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: workspace,
                                output: o.baseAddress!)
                }
            }
        }
        return Array(output[0..<(n * outputs)])
    }

    /// Backward of the last `forwardForTraining` for dL/doutputs (count x outputs); accumulates parameter gradients.
    public func backward(gradOutput: [Float]) {
        let n = lastPositions.count / 3
        precondition(gradOutput.count == n * outputs, "HashMLPField.backward: \(gradOutput.count) gradients for \(n) points x \(outputs) outputs")
        let width = grid.outputWidth
        if gradEncoded.count < n * width { gradEncoded = [Float](repeating: 0, count: n * width) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                gradOutput.withUnsafeBufferPointer { g in
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
                                  gradParams: gg.baseAddress!, touched: &touched, threads: threads)
                }
            }
        }
    }

    /// One Adam step on the grid (sparse: touched entries, in memory order) and the MLP; clears the gradients.
    public func applyGradients() {
        gridAdamState.step += 1
        mlpAdamState.step += 1
        gridParams.withUnsafeMutableBufferPointer { p in
            gridGrad.withUnsafeMutableBufferPointer { g in
                touched.ascendingEntries(into: &touchedAscending)
                touchedAscending.withUnsafeBufferPointer { e in
                    Adam.updateSparse(params: p.baseAddress!, grads: g.baseAddress!, entries: e,
                                      width: grid.config.featuresPerLevel, state: &gridAdamState, config: gridAdam)
                }
            }
        }
        touched.reset()
        mlpParams.withUnsafeMutableBufferPointer { p in
            mlpGrad.withUnsafeBufferPointer { g in
                Adam.update(params: p.baseAddress!, grads: g.baseAddress!, count: p.count, state: &mlpAdamState,
                            config: mlpAdam)
            }
        }
        for i in 0..<mlpGrad.count { mlpGrad[i] = 0 }
    }
}
