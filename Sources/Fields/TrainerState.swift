import Kernels
import MapCore

/// The trainable state of a hash grid + MLP core: parameters and Adam moments (gradients are zero between steps).
public struct HashMLPState: Sendable, Equatable {
    public var gridParams: [Float]
    public var mlpParams: [Float]
    public var gridAdam: AdamState
    public var mlpAdam: AdamState

    public init(gridParams: [Float], mlpParams: [Float], gridAdam: AdamState, mlpAdam: AdamState) {
        self.gridParams = gridParams; self.mlpParams = mlpParams; self.gridAdam = gridAdam; self.mlpAdam = mlpAdam
    }
}

extension HashMLPField {
    public var state: HashMLPState {
        HashMLPState(gridParams: gridParams, mlpParams: mlpParams, gridAdam: gridAdamState, mlpAdam: mlpAdamState)
    }

    /// Restores a saved state; throws when its sizes do not fit this field (another config).
    public func restore(_ s: HashMLPState, what: String) throws {
        guard s.gridParams.count == gridParams.count, s.mlpParams.count == mlpParams.count,
              s.gridAdam.m.count == gridParams.count, s.gridAdam.v.count == gridParams.count,
              s.mlpAdam.m.count == mlpParams.count, s.mlpAdam.v.count == mlpParams.count else {
            throw MapError(.sizeMismatch, "saved \(what) state has \(s.gridParams.count) grid / \(s.mlpParams.count) MLP parameters, the field \(gridParams.count) / \(mlpParams.count)",
                           hint: "resume with the configuration the session was started with")
        }
        gridParams = s.gridParams; mlpParams = s.mlpParams; gridAdamState = s.gridAdam; mlpAdamState = s.mlpAdam
    }
}

/// The geometry trainer's own state besides the field: step count and random generator.
public struct GeometryTrainerState: Sendable, Codable, Equatable {
    public var steps: Int
    public var rng: SeededRNG
    public var logXi: Float
    public var xiAdam: AdamState
}

extension GeometryTrainer {
    public var state: GeometryTrainerState {
        GeometryTrainerState(steps: steps, rng: rng, logXi: field.logXi, xiAdam: field.xiAdamState)
    }

    public func restore(_ s: GeometryTrainerState) {
        steps = s.steps; rng = s.rng; field.logXi = s.logXi; field.xiAdamState = s.xiAdam
    }
}

/// Everything of a `PanopticTrainer` besides its fields and frames: tokens with their Adam moments, the class
/// head, token usage, schedule counters and the per-token bookkeeping of the dice / split / respawn rules.
public struct PanopticTrainerState: Sendable, Codable, Equatable {
    public var steps: Int
    public var rng: SeededRNG
    public var tokensInitialised: Bool
    public var features: [Float], means: [Float], rotations: [Float], logScales: [Float]
    public var featureAdam: AdamState, meanAdam: AdamState, rotationAdam: AdamState, logScaleAdam: AdamState
    public var classHeadParams: [Float]
    public var classHeadAdam: AdamState
    public var usage: TokenUsage
    public var stableCount: [Int]
    public var splitTarget: [[Float]?]
    public var poorMatches: [Int]
    public var poorTarget: [[Float]?]
}

extension PanopticTrainer {
    public var state: PanopticTrainerState {
        PanopticTrainerState(
            steps: steps, rng: rng, tokensInitialised: tokensInitialised, features: tokens.features,
            means: tokens.means, rotations: tokens.rotations, logScales: tokens.logScales,
            featureAdam: tokens.featureAdam, meanAdam: tokens.meanAdam, rotationAdam: tokens.rotationAdam,
            logScaleAdam: tokens.logScaleAdam, classHeadParams: classHead.params, classHeadAdam: classHead.adam,
            usage: usage, stableCount: stableCount, splitTarget: splitTarget.map { $0.map { [$0.x, $0.y, $0.z] } },
            poorMatches: poorMatches, poorTarget: poorTarget.map { $0.map { [$0.x, $0.y, $0.z] } })
    }

    /// Restores a saved state; throws when it does not fit (another feature width or vocabulary).
    public func restore(_ s: PanopticTrainerState) throws {
        let n = s.means.count / 3, D = instance.featureWidth
        guard s.features.count == n * D, s.rotations.count == n * 4, s.logScales.count == n * 3,
              s.usage.count == n, s.stableCount.count == n, s.splitTarget.count == n, s.poorMatches.count == n,
              s.poorTarget.count == n, s.classHeadParams.count == classHead.params.count else {
            throw MapError(.sizeMismatch, "saved panoptic state does not fit the fields (\(n) tokens)",
                           hint: "resume with the configuration and vocabulary the session was started with")
        }
        var t = tokens
        t.features = s.features; t.means = s.means; t.rotations = s.rotations; t.logScales = s.logScales
        t.featureAdam = s.featureAdam; t.meanAdam = s.meanAdam; t.rotationAdam = s.rotationAdam
        t.logScaleAdam = s.logScaleAdam
        tokens = t
        var h = classHead
        h.params = s.classHeadParams; h.adam = s.classHeadAdam
        classHead = h
        usage = s.usage; steps = s.steps; rng = s.rng; tokensInitialised = s.tokensInitialised
        stableCount = s.stableCount; poorMatches = s.poorMatches
        func point(_ a: [Float]?) -> SIMD3<Float>? { a.flatMap { $0.count == 3 ? SIMD3($0[0], $0[1], $0[2]) : nil } }
        splitTarget = s.splitTarget.map(point)
        poorTarget = s.poorTarget.map(point)
    }
}

/// Everything of a `GaussianTrainer` besides its frames: the Gaussians, their Adam moments (means, log-scales,
/// rotations, opacity logits, colours), the densification statistics, step count and random generator.
public struct GaussianTrainerState: Sendable, Equatable {
    public var gaussians: GaussianSet
    public var adam: [AdamState]
    public var gradientSum: [Float]
    public var gradientCount: [Float]
    public var steps: Int
    public var rng: SeededRNG

    public init(gaussians: GaussianSet, adam: [AdamState], gradientSum: [Float], gradientCount: [Float], steps: Int,
                rng: SeededRNG) {
        self.gaussians = gaussians; self.adam = adam; self.gradientSum = gradientSum
        self.gradientCount = gradientCount; self.steps = steps; self.rng = rng
    }
}

extension GaussianTrainer {
    public var state: GaussianTrainerState {
        GaussianTrainerState(gaussians: gaussians, adam: adam, gradientSum: gradientSum, gradientCount: gradientCount,
                             steps: steps, rng: rng)
    }

    /// Restores a saved state; throws when its buffers disagree in size (a damaged or foreign state).
    public func restore(_ s: GaussianTrainerState) throws {
        let g = s.gaussians, n = g.count
        let widths = [3, 3, 4, 1, 3]
        guard g.means.count == 3 * n, g.logScales.count == 3 * n, g.rotations.count == 4 * n, g.colors.count == 3 * n,
              s.adam.count == 5, zip(s.adam, widths).allSatisfy({ $0.m.count == $1 * n && $0.v.count == $1 * n }),
              s.gradientSum.count == n, s.gradientCount.count == n else {
            throw MapError(.sizeMismatch, "saved Gaussian state is inconsistent (\(n) Gaussians)",
                           hint: "the checkpoint is damaged; resume from the previous one or start a new run")
        }
        gaussians = g; adam = s.adam; gradientSum = s.gradientSum; gradientCount = s.gradientCount
        steps = s.steps; rng = s.rng
    }
}
