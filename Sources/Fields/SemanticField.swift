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
    /// Hash grid + MLP with C outputs, the logits.
    public let core: HashMLPField
    public var grid: HashGrid { core.grid }
    public var mlp: MLP { core.mlp }
    public var gridParams: [Float] { core.gridParams }
    public var mlpParams: [Float] { core.mlpParams }
    /// C, the number of logits per point.
    public let classCount: Int
    private let indexOfClassID: [Int: Int]

    /// Throws `ConfigError` when the vocabulary is empty or the grid / MLP config is invalid.
    public init(config: Config, vocabulary: Vocabulary, seed: UInt64) throws {
        guard !vocabulary.classes.isEmpty else {
            throw ConfigError("the semantic field needs a vocabulary with at least one class")
        }
        self.config = config
        self.vocabulary = vocabulary
        classCount = vocabulary.classes.count
        var map: [Int: Int] = [:]
        for (k, c) in vocabulary.classes.enumerated() where map[c.id] == nil { map[c.id] = k }
        indexOfClassID = map
        var rng = SeededRNG(seed: seed)
        core = try HashMLPField(grid: config.grid, hidden: config.hidden, activation: config.activation,
                                outputs: classCount, gridAdam: config.gridAdam, mlpAdam: config.mlpAdam,
                                threads: config.threads, rng: &rng)
    }

    /// Class index (position in `vocabulary.classes`) of a vocabulary class id; nil for ids not in the vocabulary.
    public func classIndex(ofClassID id: Int) -> Int? { indexOfClassID[id] }

    /// Vocabulary class id of class index `k`.
    public func classID(ofIndex k: Int) -> Int { vocabulary.classes[k].id }

    /// Logits at `count` positions (xyz interleaved) into `out` (count x C), inference only, in chunks.
    public func logits(positions: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        core.infer(positions: positions, count: count, out: out)
    }

    /// Logits (positions.count x C) at the given positions.
    public func logits(_ positions: [SIMD3<Float>]) -> [Float] { core.infer(positions) }

    /// Forward pass over a training batch (xyz interleaved); keeps what the backward needs. Returns the logits
    /// (count x C).
    public func forwardForTraining(positions: [Float]) -> [Float] { core.forwardForTraining(positions: positions) }

    /// Backward of the last `forwardForTraining` for dL/dlogits (count x C); accumulates parameter gradients.
    public func backward(gradLogits: [Float]) { core.backward(gradOutput: gradLogits) }

    /// One Adam step on the grid (sparse, touched entries only) and the MLP; clears the gradients.
    public func applyGradients() { core.applyGradients() }
}
