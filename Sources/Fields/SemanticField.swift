import Foundation
import Kernels
import MapCore

/// The semantic field: logits(x) = MLP_s(hashgrid_s(x)), C values per point, softmax -> class distribution. C is the
/// number of classes of the sequence's `Vocabulary` (any number >= 1, fixed when the field is made). Class index k is
/// the position of the class in `vocabulary.classes`; a mask's class id maps to its index with `classIndex(ofClassID:)`,
/// and ids not in the vocabulary map to nil (callers skip those pixels). Owns its parameters, gradients, optimiser
/// state and scratch buffers; one owner at a time, so it is a plain class and not `Sendable` (like `GeometryField`).
public final class SemanticField {
    public struct Config: Sendable, Codable, Equatable {
        public var grid: HashGridConfig
        public var hidden: [Int] = [64]
        public var activation: Activation = .relu
        public var gridAdam = AdamConfig(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var mlpAdam = AdamConfig(learningRate: 2e-3, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        public var threads: Int = Parallel.defaultThreads

        public init(grid: HashGridConfig) { self.grid = grid }
    }

    public let config: Config
    public let vocabulary: Vocabulary
    public let grid: HashGrid
    public let mlp: MLP
    /// C, the number of logits per point.
    public let classCount: Int
    private let indexOfClassID: [Int: Int]

    public var gridParams: [Float]
    public var mlpParams: [Float]
    public var gridAdamState: AdamState
    public var mlpAdamState: AdamState

    var gridGrad: [Float]
    var mlpGrad: [Float]
    var touched: HashGridTouched
    var touchedAscending: [Int32] = []
    /// Grid features of the last training forward (kept for backward) and, separately, of inference calls, so that
    /// inference between a training forward and its backward cannot clobber what the backward needs.
    var encoded: [Float] = []
    var inferenceEncoded: [Float] = []
    var gradEncoded: [Float] = []
    var output: [Float] = []
    let workspace: MLPWorkspace
    let inferenceWorkspace: MLPWorkspace
    var lastPositions: [Float] = []

    /// Throws `ConfigError` when the vocabulary is empty or the grid / MLP config is invalid.
    public init(config: Config, vocabulary: Vocabulary, seed: UInt64) throws {
        guard !vocabulary.classes.isEmpty else {
            throw ConfigError("the semantic field needs a vocabulary with at least one class")
        }
        try config.grid.validate()
        self.config = config
        self.vocabulary = vocabulary
        classCount = vocabulary.classes.count
        var map: [Int: Int] = [:]
        for (k, c) in vocabulary.classes.enumerated() where map[c.id] == nil { map[c.id] = k }
        indexOfClassID = map
        grid = try HashGrid(config: config.grid)
        mlp = try MLP(config: MLPConfig(inputs: grid.outputWidth, hidden: config.hidden, outputs: classCount,
                                        activation: config.activation, outputActivation: .none))
        var rng = SeededRNG(seed: seed)
        gridParams = grid.initialParameters(seed: rng.next())
        mlpParams = mlp.initialParameters(seed: rng.next())
        gridGrad = [Float](repeating: 0, count: grid.parameterCount)
        mlpGrad = [Float](repeating: 0, count: mlp.parameterCount)
        gridAdamState = AdamState(parameterCount: grid.parameterCount)
        mlpAdamState = AdamState(parameterCount: mlp.parameterCount)
        touched = HashGridTouched(grid: grid)
        // Batches hold C values per point: size the workspaces by points, not floats.
        workspace = MLPWorkspace(mlp: mlp, maxBatch: 1 << 14, threads: config.threads)
        inferenceWorkspace = MLPWorkspace(mlp: mlp, maxBatch: Self.inferenceChunk, threads: config.threads)
    }

    static let inferenceChunk = 1 << 14

    /// Class index (position in `vocabulary.classes`) of a vocabulary class id; nil for ids not in the vocabulary.
    public func classIndex(ofClassID id: Int) -> Int? { indexOfClassID[id] }

    /// Vocabulary class id of class index `k`.
    public func classID(ofIndex k: Int) -> Int { vocabulary.classes[k].id }

    /// Logits at `count` positions (xyz interleaved) into `out` (count x C), inference only, in chunks.
    public func logits(positions: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        let width = grid.outputWidth
        var start = 0
        while start < count {
            let n = min(Self.inferenceChunk, count - start)
            if inferenceEncoded.count < n * width { inferenceEncoded = [Float](repeating: 0, count: n * width) }
            gridParams.withUnsafeBufferPointer { p in
                inferenceEncoded.withUnsafeMutableBufferPointer { e in
                    grid.forward(params: p.baseAddress!, positions: positions + 3 * start, count: n,
                                 output: e.baseAddress!, threads: config.threads)
                }
            }
            inferenceEncoded.withUnsafeBufferPointer { enc in
                mlpParams.withUnsafeBufferPointer { p in
                    mlp.infer(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: inferenceWorkspace,
                              output: out + start * classCount)
                }
            }
            start += n
        }
    }

    /// Logits (positions.count x C) at the given positions.
    public func logits(_ positions: [SIMD3<Float>]) -> [Float] {
        var out = [Float](repeating: 0, count: positions.count * classCount)
        let flat = positions.flatMap { [$0.x, $0.y, $0.z] }
        flat.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
            logits(positions: p.baseAddress!, count: positions.count, out: o.baseAddress!)
        } }
        return out
    }

    /// Forward pass over a training batch (xyz interleaved); keeps what the backward needs. Returns the logits
    /// (count x C).
    public func forwardForTraining(positions: [Float]) -> [Float] {
        let n = positions.count / 3
        let width = grid.outputWidth
        lastPositions = positions
        if encoded.count < n * width { encoded = [Float](repeating: 0, count: n * width) }
        gridParams.withUnsafeBufferPointer { p in
            positions.withUnsafeBufferPointer { pos in
                encoded.withUnsafeMutableBufferPointer { e in
                    grid.forward(params: p.baseAddress!, positions: pos.baseAddress!, count: n, output: e.baseAddress!,
                                 threads: config.threads)
                }
            }
        }
        if output.count < n * classCount { output = [Float](repeating: 0, count: n * classCount) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                output.withUnsafeMutableBufferPointer { o in
                    mlp.forward(params: p.baseAddress!, input: enc.baseAddress!, count: n, workspace: workspace,
                                output: o.baseAddress!)
                }
            }
        }
        return Array(output[0..<(n * classCount)])
    }

    /// Backward of the last `forwardForTraining` for dL/dlogits (count x C); accumulates parameter gradients.
    public func backward(gradLogits: [Float]) {
        let n = lastPositions.count / 3
        precondition(gradLogits.count == n * classCount, "SemanticField.backward: \(gradLogits.count) gradients for \(n) points x \(classCount) classes")
        let width = grid.outputWidth
        if gradEncoded.count < n * width { gradEncoded = [Float](repeating: 0, count: n * width) }
        encoded.withUnsafeBufferPointer { enc in
            mlpParams.withUnsafeBufferPointer { p in
                gradLogits.withUnsafeBufferPointer { g in
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
    }

    /// One Adam step on the grid (sparse, touched entries only) and the MLP; clears the gradients.
    public func applyGradients() {
        gridAdamState.step += 1
        mlpAdamState.step += 1
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
    }
}
