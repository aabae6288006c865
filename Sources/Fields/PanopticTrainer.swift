import Foundation
import Kernels
import MapCore

public struct PanopticTrainerConfig: Sendable, Codable, Equatable {
    /// Frames per step; each frame's sampled pixels are matched to its own masks.
    public var framesPerStep = 4
    /// Rays per frame and step; half of them (when the frame has thing pixels) are drawn from thing pixels.
    public var raysPerFrame = 256
    /// Ray sampling as in `GeometryTrainerConfig` (strata over [near, D + truncation] and the band around D).
    public var uniformSamples = 4
    public var surfaceSamples = 6
    public var truncation: Float = 0.06
    public var near: Float = 0.1
    public var far: Float = 8
    /// Added to each ray's total weight when rendering distributions (see `SemanticRendering`).
    public var epsilon: Float = SemanticRendering.defaultEpsilon

    /// Staged schedule (steps): L_sem alone before `instanceStart`; then L_sem + L_ins + L_c; L_pan from
    /// `panopticStart` (when `usePanopticLoss`).
    public var instanceStart = 200
    public var panopticStart = 800
    public var usePanopticLoss = true
    /// The Gaussian spatial prior G of the token attention. Off (ablation): G = 1 (scales frozen at 1e4 m), tokens
    /// differ only by their features.
    public var usePrior = true
    /// beta of `TokenAttention` (A = softmax(beta S G)).
    public var sharpness: Float = 10
    public var initialTokens = 24
    /// Initial token scale (metres, isotropic).
    public var initialTokenScale: Float = 0.4
    /// Token and class-head learning rates (Adam).
    public var tokenFeatureLearningRate: Float = 1e-2
    public var tokenMeanLearningRate: Float = 2e-3
    public var tokenRotationLearningRate: Float = 5e-3
    public var tokenLogScaleLearningRate: Float = 5e-3
    public var classHeadLearningRate: Float = 2e-3
    public var classHeadHidden = 32
    /// Loss weights.
    public var instanceWeight: Float = 1
    public var classWeight: Float = 1
    public var panopticWeight: Float = 1
    /// A mask with fewer sampled pixels than this in a step is left out of that step's matching (its pixels too).
    public var minMaskSamples = 6
    /// The dice term of a token is dropped once its last `stableMatches` matches all had a hard IoU >= `stableIoU`
    /// with their mask (on the sampled pixels); it comes back after a worse match.
    public var stableMatches = 20
    public var stableIoU: Float = 0.8
    /// A token is moved to the mask it keeps failing after `respawnMatches` consecutive matches with hard IoU below
    /// `respawnIoU` (see `PanopticTrainer.respawnMisplacedTokens`).
    public var respawnMatches = 10
    public var respawnIoU: Float = 0.05
    /// Token management (prune / dedupe / split) every `manageEvery` steps of the instance stage (0 = never).
    public var manageEvery = 100
    /// No clones from this step on (late clones have no time to converge); pruning goes on.
    public var cloneUntil = Int.max
    /// Management rules; a token is judged "useless" only after `minObservations` frame matchings (400 = 100 steps
    /// of 4 frames), so that clones and tokens of rarely seen objects get time to be assigned.
    public var management: TokenManagementConfig = {
        var m = TokenManagementConfig()
        m.minObservations = 400
        return m
    }()
    /// Token 3D masks for the duplicate test (see `PanopticTrainer.tokenMasks`).
    public var maskFloor: Float = 0.3
    public var maskMargin: Float = 0.05
    /// Surface points (back-projected thing pixels) on which token 3D masks are compared.
    public var managementPoints = 4096
    public var seed: UInt64 = 1

    public init() {}

    public var samplesPerRay: Int { uniformSamples + surfaceSamples }

    public func validate() throws {
        guard framesPerStep >= 1, raysPerFrame >= 2, uniformSamples >= 1, surfaceSamples >= 1 else {
            throw ConfigError("frames per step, rays per frame and samples per ray must be positive")
        }
        guard near > 0, far > near, truncation > 0, epsilon > 0 else {
            throw ConfigError("need 0 < near < far and positive truncation and epsilon")
        }
        guard instanceStart >= 0, panopticStart >= instanceStart else {
            throw ConfigError("need 0 <= instanceStart <= panopticStart (got \(instanceStart), \(panopticStart))")
        }
        guard initialTokens >= 1, initialTokenScale > 0, sharpness > 0, minMaskSamples >= 1, stableMatches >= 1 else {
            throw ConfigError("initial tokens, token scale, sharpness, min mask samples and stable matches must be positive")
        }
        try management.validate()
    }
}

/// Statistics of one panoptic step (losses are means over the step's rays / matched pairs).
public struct PanopticStepStats: Sendable, Equatable {
    public var semanticLoss: Float = 0
    public var semanticAccuracy: Float = 0
    public var instanceLoss: Float = 0
    public var classLoss: Float = 0
    public var panopticLoss: Float = 0
    /// Matched (mask, token) pairs in the step.
    public var pairs = 0
    public var tokens = 0
    public var rays = 0
    public init() {}
}

/// Per-point or per-pixel panoptic labels: vocabulary class id (0 = none) and instance id (token index + 1; 0 for
/// stuff and none).
public struct PanopticLabels: Sendable, Equatable {
    public var semantic: [Int32]
    public var instance: [Int32]
}

/// Optimises the semantic field, the instance field, the instance tokens and the token class head on frames with
/// masks, on top of a trained geometry field (NeuS weights by inference; geometry is not changed here). One step:
/// sample rays in a few frames → render semantics (L_sem) and the token distribution per ray → per frame, Hungarian
/// matching of the rendered token masks to that frame's thing masks (cost dice + BCE) → L_ins and L_c on the matched
/// pairs → the parameter-free panoptic head and L_pan → backward into both fields and the tokens. Every
/// `manageEvery` steps the token set is adjusted (`TokenManagement`).
///
/// The instance loss is computed on thing pixels only: the token distribution is the instance probability given
/// "thing", which is how the panoptic head uses it (P_thing * m_i / sum m).
public final class PanopticTrainer {
    public let config: PanopticTrainerConfig
    public let geometry: GeometryField
    public let semantic: SemanticField
    public let instance: InstanceField
    public internal(set) var tokens: InstanceTokens
    public internal(set) var classHead: TokenClassHead
    public internal(set) var usage: TokenUsage
    public private(set) var frames: [PanopticTrainingFrame] = []
    public internal(set) var steps = 0
    /// Vocabulary indices of the stuff and thing classes (in vocabulary order), the panoptic head's split.
    public let stuffClasses: [Int32]
    public let thingClasses: [Int32]
    public let sampler: DepthGuidedRaySampler
    var rng: SeededRNG
    var stableCount: [Int] = []
    /// Per token: where a clone of it should start (see `recordSplitTargets`).
    var splitTarget: [SIMD3<Float>?] = []
    /// Per token: consecutive matches with hard IoU < `respawnIoU`, and the last such mask's surface centroid.
    var poorMatches: [Int] = []
    var poorTarget: [SIMD3<Float>?] = []
    var tokensInitialised = false
    let classHeadAdam: AdamConfig

    public init(config: PanopticTrainerConfig, geometry: GeometryField, semantic: SemanticField,
                instance: InstanceField) throws {
        try config.validate()
        self.config = config
        self.geometry = geometry
        self.semantic = semantic
        self.instance = instance
        let classes = semantic.vocabulary.classes
        stuffClasses = classes.indices.filter { !classes[$0].isThing }.map { Int32($0) }
        thingClasses = classes.indices.filter { classes[$0].isThing }.map { Int32($0) }
        guard !thingClasses.isEmpty else {
            throw ConfigError("the vocabulary has no thing class: instances need at least one")
        }
        sampler = DepthGuidedRaySampler(near: config.near, truncation: config.truncation,
                                        uniformSamples: config.uniformSamples, surfaceSamples: config.surfaceSamples)
        rng = SeededRNG(seed: config.seed)
        var tokenRNG = rng.fork(1)
        tokens = InstanceTokens(positions: [], featureWidth: instance.featureWidth, scale: config.initialTokenScale,
                                featureScale: 0.5, rng: &tokenRNG)
        classHead = try TokenClassHead(featureWidth: instance.featureWidth, thingClasses: thingClasses.count,
                                       hidden: config.classHeadHidden, seed: config.seed &+ 17)
        classHeadAdam = AdamConfig(learningRate: config.classHeadLearningRate, beta1: 0.9, beta2: 0.99,
                                   epsilon: 1e-15, weightDecay: 0)
        usage = TokenUsage(tokens: 0)
    }

    /// Adds a frame (with or without masks); returns its slot.
    @discardableResult
    public func add(_ frame: Frame) -> Int {
        frames.append(trainingFrame(frame))
        return frames.count - 1
    }

    /// Replaces the frame in `slot` (the same keyframe, now with the masks that arrived for it).
    public func replace(slot: Int, with frame: Frame) {
        precondition(frames.indices.contains(slot), "PanopticTrainer.replace: no slot \(slot)")
        frames[slot] = trainingFrame(frame)
    }

    func trainingFrame(_ frame: Frame) -> PanopticTrainingFrame {
        let thingIndex = Dictionary(uniqueKeysWithValues: thingClasses.enumerated().map { (Int($0.element), $0.offset) })
        return PanopticTrainingFrame(frame, near: config.near, far: config.far,
                                     classIndex: { [semantic] in semantic.classIndex(ofClassID: $0) },
                                     thingIndex: { thingIndex[$0] })
    }

    /// Removes the frame in `slot`; later slots move down by one (the online mapper's keyframe budget).
    public func remove(slot: Int) {
        precondition(frames.indices.contains(slot), "PanopticTrainer.remove: no slot \(slot)")
        frames.remove(at: slot)
    }

    public var stage: String {
        steps < config.instanceStart ? "semantic" : (config.usePanopticLoss && steps >= config.panopticStart ? "panoptic" : "instance")
    }

    // MARK: - Tokens

    /// World point of labelled pixel `j` of frame `f`.
    func backProject(_ f: PanopticTrainingFrame, _ j: Int) -> SIMD3<Float> {
        let p = Int(f.labelledPixels[j]), k = f.intrinsics
        let p_C = k.unproject(u: Double(p % k.width), v: Double(p / k.width), depth: Double(f.depth[p]))
        let p_W = f.T_W_C * p_C
        return SIMD3<Float>(Float(p_W.x), Float(p_W.y), Float(p_W.z))
    }

    /// Tokens initialised by back-projecting random mask pixels with depth (paper IV-A): each token picks a random
    /// frame with thing masks, a random thing mask of it (uniform over masks, so small objects get tokens too) and a
    /// random pixel of that mask.
    func initialiseTokens() {
        tokensInitialised = true
        let pool = frames.indices.filter { !frames[$0].thingPixels.isEmpty }
        var positions: [SIMD3<Float>] = []
        if !pool.isEmpty {
            for _ in 0..<config.initialTokens {
                let f = frames[pool[Int(rng.next() % UInt64(pool.count))]]
                let members = f.slotPixels[Int(rng.next() % UInt64(f.slotPixels.count))]
                guard !members.isEmpty else { continue }
                positions.append(backProject(f, Int(members[Int(rng.next() % UInt64(members.count))])))
            }
        }
        let key = rng.next()
        var tokenRNG = rng.fork(key)
        tokens = InstanceTokens(positions: positions, featureWidth: instance.featureWidth,
                                scale: config.usePrior ? config.initialTokenScale : 1e4, featureScale: 0.5,
                                rng: &tokenRNG)
        usage = TokenUsage(tokens: tokens.count)
        stableCount = [Int](repeating: 0, count: tokens.count)
        splitTarget = [SIMD3<Float>?](repeating: nil, count: tokens.count)
        poorMatches = [Int](repeating: 0, count: tokens.count)
        poorTarget = splitTarget
    }

    // MARK: - Step

    /// One optimisation step (stage by `steps`, see the config) on frames drawn from `slots` (default: all frames).
    /// Frames without labelled pixels are never drawn; with none at all the step does nothing and returns zero stats.
    @discardableResult
    public func step(slots: [Int]? = nil) -> PanopticStepStats {
        let pool = (slots ?? Array(frames.indices)).filter {
            frames.indices.contains($0) && !frames[$0].labelledPixels.isEmpty
        }
        guard !pool.isEmpty else { return PanopticStepStats() }
        let instanceOn = steps >= config.instanceStart
        if instanceOn && tokens.count == 0 { initialiseTokens() } // again later if no frame had thing masks yet
        let panopticOn = instanceOn && config.usePanopticLoss && steps >= config.panopticStart
        let s = config.samplesPerRay, C = semantic.classCount

        // 1. Rays: per frame, half from thing pixels (when there are any), the rest from all labelled pixels.
        var batch = RayBatch()
        for _ in 0..<config.framesPerStep {
            let fi = pool[Int(rng.next() % UInt64(pool.count))]
            let f = frames[fi]
            let start = batch.rays
            for r in 0..<config.raysPerFrame {
                let j: Int
                if instanceOn && !f.thingPixels.isEmpty && r < config.raysPerFrame / 2 {
                    // Stratified by mask (a random mask, then a random pixel of it), so that small objects get
                    // enough samples to be matched.
                    let slot = f.slotPixels[Int(rng.next() % UInt64(f.slotPixels.count))]
                    j = slot.isEmpty ? Int(f.thingPixels[Int(rng.next() % UInt64(f.thingPixels.count))])
                                     : Int(slot[Int(rng.next() % UInt64(slot.count))])
                } else {
                    j = Int(rng.next() % UInt64(f.labelledPixels.count))
                }
                batch.append(frame: f, labelled: j, sampler: sampler, rng: &rng)
            }
            batch.frameRanges.append((fi, start..<batch.rays))
        }
        let R = batch.rays
        let weights = renderWeights(batch.positions, rays: R)

        // 2. Semantics: L_sem.
        var stats = PanopticStepStats()
        stats.rays = R
        let logits = semantic.forwardForTraining(positions: batch.positions)
        var probabilities = [Float](repeating: 0, count: R * C)
        let (semLoss, labelled) = SemanticRendering.forward(weights: weights, logits: logits, rays: R, samples: s,
                                                            classes: C, labels: batch.classes,
                                                            epsilon: config.epsilon, probabilities: &probabilities)
        stats.semanticLoss = semLoss
        var correct = 0
        probabilities.withUnsafeBufferPointer { p in
            for r in 0..<R where SemanticRendering.argmax(p.baseAddress! + r * C, classes: C) == Int(batch.classes[r]) {
                correct += 1
            }
        }
        stats.semanticAccuracy = Float(correct) / Float(R)
        var gradLogits = [Float](repeating: 0, count: R * s * C)
        SemanticRendering.backward(weights: weights, logits: logits, rays: R, samples: s, classes: C,
                                   labels: batch.classes, labelled: labelled, epsilon: config.epsilon,
                                   probabilities: probabilities, gradLogits: &gradLogits)

        // 3. Instances.
        let N = tokens.count
        if instanceOn && N > 0 {
            let D = instance.featureWidth, K = R * s
            let features = instance.core.forwardForTraining(positions: batch.positions)
            var attention = [Float](repeating: 0, count: K * N), savedS = attention, savedG = attention
            tokens.withKernelTokens { t in
                TokenAttention.forward(pointFeatures: features, positions: batch.positions, count: K,
                                       featureWidth: D, tokens: t, attention: &attention, savedS: &savedS,
                                       savedG: &savedG, sharpness: config.sharpness, threads: instance.config.threads)
            }
            // Token distribution per ray, normalised by the ray's total weight (weights are constants here).
            var rendered = [Float](repeating: 0, count: R * N)
            InstanceRendering.forward(weights: weights, attention: attention, rays: R, samples: s, tokens: N,
                                      rendered: &rendered)
            var rayWeight = [Float](repeating: 0, count: R)
            for r in 0..<R {
                var w: Float = 0
                for j in 0..<s { w += weights[r * s + j] }
                rayWeight[r] = w + config.epsilon
                for i in 0..<N { rendered[r * N + i] /= rayWeight[r] }
            }
            var gradRendered = [Float](repeating: 0, count: R * N)
            var gradClassLogits = [Float](repeating: 0, count: N * thingClasses.count)
            var panopticTargets = [Int32](repeating: -1, count: R)
            let classLogits = classHead.logits(tokens)
            var matchedFrames = 0
            for (fi, range) in batch.frameRanges {
                let m = matchFrame(frames[fi], range: range, batch: batch, rendered: rendered, N: N,
                                   classLogits: classLogits, panopticTargets: &panopticTargets,
                                   gradRendered: &gradRendered, gradClassLogits: &gradClassLogits)
                if m.pairs > 0 {
                    matchedFrames += 1
                    stats.instanceLoss += m.instanceLoss; stats.classLoss += m.classLoss; stats.pairs += m.pairs
                }
            }
            if matchedFrames > 0 {
                let scale = 1 / Float(matchedFrames)
                stats.instanceLoss *= scale; stats.classLoss *= scale
                for j in gradRendered.indices { gradRendered[j] *= scale * config.instanceWeight }
                for j in gradClassLogits.indices { gradClassLogits[j] *= scale * config.classWeight }
            }
            // 4. Panoptic head and L_pan.
            if panopticOn {
                let pan = panopticLoss(probabilities: probabilities, rendered: rendered, rays: R, N: N,
                                       targets: panopticTargets, batch: batch)
                stats.panopticLoss = pan.loss
                if pan.labelled > 0 {
                    var g = [Float](repeating: 0, count: R * s * C)
                    var gradP = pan.gradSemantic
                    for j in gradP.indices { gradP[j] *= config.panopticWeight }
                    SemanticRendering.backward(weights: weights, logits: logits, rays: R, samples: s, classes: C,
                                               epsilon: config.epsilon, gradProbabilities: gradP, gradLogits: &g)
                    for j in g.indices { gradLogits[j] += g[j] }
                    for j in gradRendered.indices { gradRendered[j] += config.panopticWeight * pan.gradInstance[j] }
                }
            }
            // 5. Backward through the normalisation, the rendering, the attention and the instance field.
            for r in 0..<R { for i in 0..<N { gradRendered[r * N + i] /= rayWeight[r] } }
            var gradAttention = [Float](repeating: 0, count: K * N)
            InstanceRendering.backward(weights: weights, gradRendered: gradRendered, rays: R, samples: s, tokens: N,
                                       gradAttention: &gradAttention)
            var gradFeatures = [Float](repeating: 0, count: K * D)
            var gTF = [Float](repeating: 0, count: N * D), gMu = [Float](repeating: 0, count: N * 3)
            var gRot = [Float](repeating: 0, count: N * 4), gLS = [Float](repeating: 0, count: N * 3)
            var scratch = [Float](repeating: 0, count: TokenAttention.backwardScratchCount(
                points: K, tokens: N, featureWidth: D, threads: instance.config.threads))
            tokens.withKernelTokens { t in
                gTF.withUnsafeMutableBufferPointer { a in gMu.withUnsafeMutableBufferPointer { b in
                gRot.withUnsafeMutableBufferPointer { c in gLS.withUnsafeMutableBufferPointer { d in
                    TokenAttention.backward(
                        pointFeatures: features, positions: batch.positions, count: K, featureWidth: D, tokens: t,
                        attention: attention, savedS: savedS, savedG: savedG, gradAttention: gradAttention,
                        gradPointFeatures: &gradFeatures,
                        gradTokens: .init(features: a.baseAddress!, means: b.baseAddress!, rotations: c.baseAddress!,
                                          logScales: d.baseAddress!),
                        scratch: &scratch, sharpness: config.sharpness, threads: instance.config.threads)
                } } } }
            }
            instance.core.backward(gradOutput: gradFeatures)
            instance.core.applyGradients()
            classHeadBackward(gradClassLogits, tokenFeatureGradients: &gTF)
            applyTokenGradients(features: gTF, means: gMu, rotations: gRot, logScales: gLS)
        }
        stats.tokens = tokens.count

        semantic.backward(gradLogits: gradLogits)
        semantic.applyGradients()
        steps += 1
        if instanceOn && config.manageEvery > 0 && (steps - config.instanceStart) % config.manageEvery == 0 {
            manageTokens()
        }
        return stats
    }

    /// The rays of one step: sample positions and distances, and per ray its class index, mask slot and frame.
    struct RayBatch {
        var positions: [Float] = []
        var distances: [Float] = []
        var classes: [Int32] = []
        var slots: [Int32] = []
        /// The observed surface point of each ray.
        var surface: [SIMD3<Float>] = []
        var frameRanges: [(frame: Int, rays: Range<Int>)] = []
        var rays: Int { classes.count }

        mutating func append(frame f: PanopticTrainingFrame, labelled j: Int, sampler: DepthGuidedRaySampler,
                             rng: inout SeededRNG) {
            let p = Int(f.labelledPixels[j])
            let ray = DepthGuidedRaySampler.cameraRay(x: p % f.intrinsics.width, y: p / f.intrinsics.width,
                                                      T_W_C: f.T_W_C, intrinsics: f.intrinsics)
            sampler.append(origin: ray.origin, direction: ray.direction, range: f.depth[p] * ray.rangePerDepth,
                           jitter: true, rng: &rng, distances: &distances, positions: &positions)
            classes.append(f.classes[j])
            slots.append(f.maskSlots[j])
            surface.append(ray.origin + f.depth[p] * ray.rangePerDepth * ray.direction)
        }
    }

    /// Per frame: Hungarian matching of the rendered token masks to the frame's thing masks on its sampled thing
    /// pixels (cost dice(eps 1) + BCE), then L_ins and L_c on the matched pairs; fills the panoptic targets of the
    /// frame's rays (stuff column, or S + matched token), accumulates gradients, records usage and stability.
    func matchFrame(_ f: PanopticTrainingFrame, range: Range<Int>, batch: RayBatch, rendered: [Float], N: Int,
                    classLogits: [Float], panopticTargets: inout [Int32], gradRendered: inout [Float],
                    gradClassLogits: inout [Float]) -> (instanceLoss: Float, classLoss: Float, pairs: Int) {
        let S = stuffClasses.count
        let stuffColumn = Dictionary(uniqueKeysWithValues: stuffClasses.enumerated().map { ($0.element, Int32($0.offset)) })
        for r in range where batch.slots[r] < 0 { panopticTargets[r] = stuffColumn[batch.classes[r]] ?? -1 }
        // Masks with enough samples, renumbered 0..<L.
        var counts = [Int](repeating: 0, count: f.maskThingClasses.count)
        for r in range where batch.slots[r] >= 0 { counts[Int(batch.slots[r])] += 1 }
        var local = [Int32](repeating: -1, count: counts.count), maskClass: [Int32] = []
        for (slot, c) in counts.enumerated() where c >= config.minMaskSamples {
            local[slot] = Int32(maskClass.count)
            maskClass.append(f.maskThingClasses[slot])
        }
        let L = maskClass.count
        guard L > 0 else { return (0, 0, 0) }
        var rows: [Int] = [], targets: [Int32] = []
        for r in range where batch.slots[r] >= 0 && local[Int(batch.slots[r])] >= 0 {
            rows.append(r); targets.append(local[Int(batch.slots[r])])
        }
        let P = rows.count
        var probs = [Float](repeating: 0, count: P * N)
        for (p, r) in rows.enumerated() { for i in 0..<N { probs[p * N + i] = rendered[r * N + i] } }
        var costs = [Float](repeating: 0, count: L * N)
        MaskLosses.costMatrix(probabilities: probs, pixels: P, tokens: N, targets: targets, masks: L, costs: &costs)
        let assignment = Hungarian.solve(costs: costs, rows: L, cols: N)
        usage.record(costs: costs, masks: L, assignment: assignment)
        recordSplitTargets(costs: costs, masks: L, tokens: N, assignment: assignment, rows: rows, targets: targets,
                           batch: batch)
        let assigned = assignment.map { Int32($0) }
        let diceWeight = (0..<N).map { stableCount[$0] >= config.stableMatches ? Float(0) : 1 }
        var g = [Float](repeating: 0, count: P * N)
        let (insLoss, pairs) = MaskLosses.matchedLoss(probabilities: probs, pixels: P, tokens: N, targets: targets,
                                                      masks: L, assignment: assigned, diceWeight: diceWeight,
                                                      gradProbabilities: &g)
        for (p, r) in rows.enumerated() { for i in 0..<N { gradRendered[r * N + i] += g[p * N + i] } }
        var gc = [Float](repeating: 0, count: N * thingClasses.count)
        let (clsLoss, _) = MaskLosses.classLoss(classLogits: classLogits, tokens: N, classes: thingClasses.count,
                                                maskClass: maskClass, masks: L, assignment: assigned,
                                                gradLogits: &gc)
        for j in gc.indices { gradClassLogits[j] += gc[j] }
        // Panoptic targets of the matched thing pixels; hard IoU per pair for the dice schedule.
        var inter = [Int](repeating: 0, count: L), predicted = [Int](repeating: 0, count: L)
        probs.withUnsafeBufferPointer { pb in
            for (p, r) in rows.enumerated() {
                let l = Int(targets[p])
                if assignment[l] >= 0 { panopticTargets[r] = Int32(S + assignment[l]) }
                let best = SemanticRendering.argmax(pb.baseAddress! + p * N, classes: N)
                for l2 in 0..<L where assignment[l2] == best {
                    predicted[l2] += 1
                    if l2 == l { inter[l2] += 1 }
                }
            }
        }
        var size = [Int](repeating: 0, count: L)
        for t in targets { size[Int(t)] += 1 }
        for l in 0..<L where assignment[l] >= 0 {
            let i = assignment[l]
            let union = size[l] + predicted[l] - inter[l]
            let iou = union > 0 ? Float(inter[l]) / Float(union) : 0
            stableCount[i] = iou >= config.stableIoU ? stableCount[i] + 1 : 0
            // A token matched to a mask it does not explain at all, again and again, is in the wrong place.
            if iou < config.respawnIoU {
                poorMatches[i] += 1
                if let c = surfaceCentroid(mask: l, rows: rows, targets: targets, batch: batch) { poorTarget[i] = c }
            } else {
                poorMatches[i] = 0
            }
        }
        return (insLoss, clsLoss, pairs)
    }

    /// The paper's split signal (two masks of a frame prefer token i, one of them gets another token) also tells
    /// where the missing instance is: the centroid of the losing mask's surface points. It is remembered per token
    /// and a clone of that token starts there.
    func recordSplitTargets(costs: [Float], masks L: Int, tokens N: Int, assignment: [Int], rows: [Int],
                            targets: [Int32], batch: RayBatch) {
        var best = [Int](repeating: -1, count: L)
        for l in 0..<L {
            var b = -1
            for i in 0..<N where costs[l * N + i].isFinite && (b < 0 || costs[l * N + i] < costs[l * N + b]) { b = i }
            best[l] = b
        }
        for l in 0..<L where best[l] >= 0 && assignment[l] != best[l] {
            let i = best[l]
            guard (0..<L).contains(where: { $0 != l && best[$0] == i && assignment[$0] == i }) else { continue }
            if let c = surfaceCentroid(mask: l, rows: rows, targets: targets, batch: batch) { splitTarget[i] = c }
        }
    }

    /// Mean surface point of the sampled pixels of mask `l` (rows of the frame's thing pixels, their mask targets).
    func surfaceCentroid(mask l: Int, rows: [Int], targets: [Int32], batch: RayBatch) -> SIMD3<Float>? {
        var sum = SIMD3<Float>(repeating: 0), n: Float = 0
        for (p, r) in rows.enumerated() where Int(targets[p]) == l { sum += batch.surface[r]; n += 1 }
        return n > 0 ? sum / n : nil
    }

    /// Moves token `i` to `q` with the initial isotropic scale and no rotation (clones and respawns).
    func placeToken(_ i: Int, at q: SIMD3<Float>) {
        tokens.means[3 * i] = q.x; tokens.means[3 * i + 1] = q.y; tokens.means[3 * i + 2] = q.z
        for a in 0..<3 { tokens.logScales[3 * i + a] = logf(config.initialTokenScale) }
        tokens.rotations.replaceSubrange((4 * i)..<(4 * i + 4), with: [1, 0, 0, 0])
    }

    /// L_pan of the step's rays: the panoptic head over rendered semantics and token distributions.
    func panopticLoss(probabilities: [Float], rendered: [Float], rays R: Int, N: Int, targets: [Int32],
                      batch: RayBatch) -> (loss: Float, labelled: Int, gradSemantic: [Float], gradInstance: [Float]) {
        let C = semantic.classCount, S = stuffClasses.count
        var panoptic = [Float](repeating: 0, count: R * (S + N))
        PanopticHead.forward(semantic: probabilities, instance: rendered, pixels: R, classes: C, tokens: N,
                             stuffClasses: stuffClasses, stuffCount: S, thingClasses: thingClasses,
                             thingCount: thingClasses.count, panoptic: &panoptic)
        var gS = [Float](repeating: 0, count: R * C), gI = [Float](repeating: 0, count: R * N)
        let (loss, n) = PanopticHead.loss(semantic: probabilities, instance: rendered, pixels: R, classes: C,
                                          tokens: N, stuffClasses: stuffClasses, stuffCount: S,
                                          thingClasses: thingClasses, thingCount: thingClasses.count,
                                          epsilon: PanopticHead.defaultEpsilon, panoptic: panoptic, targets: targets,
                                          gradSemantic: &gS, gradInstance: &gI)
        return (loss, n, gS, gI)
    }

    func classHeadBackward(_ gradLogits: [Float], tokenFeatureGradients gTF: inout [Float]) {
        let N = tokens.count
        let ws = MLPWorkspace(mlp: classHead.mlp, maxBatch: max(1, N))
        var out = [Float](repeating: 0, count: N * thingClasses.count)
        var gradParams = [Float](repeating: 0, count: classHead.params.count)
        var gradInput = [Float](repeating: 0, count: N * tokens.featureWidth)
        classHead.mlp.forward(params: classHead.params, input: tokens.features, count: N, workspace: ws, output: &out)
        classHead.mlp.backward(params: classHead.params, input: tokens.features, count: N, workspace: ws,
                               gradOutput: gradLogits, gradParams: &gradParams, gradInput: &gradInput)
        for j in gTF.indices { gTF[j] += gradInput[j] }
        // Local copies: the parameters and the Adam state are two parts of one stored property (exclusive access).
        var head = classHead
        head.adam.step += 1
        var state = head.adam
        head.params.withUnsafeMutableBufferPointer { p in
            Adam.update(params: p.baseAddress!, grads: gradParams, count: p.count, state: &state, config: classHeadAdam)
        }
        head.adam = state
        classHead = head
    }

    func applyTokenGradients(features: [Float], means: [Float], rotations: [Float], logScales: [Float]) {
        func adam(_ lr: Float) -> AdamConfig {
            AdamConfig(learningRate: lr, beta1: 0.9, beta2: 0.99, epsilon: 1e-15, weightDecay: 0)
        }
        func update(_ p: inout [Float], _ g: [Float], _ s: inout AdamState, _ lr: Float) {
            s.step += 1
            p.withUnsafeMutableBufferPointer { pp in
                Adam.update(params: pp.baseAddress!, grads: g, count: pp.count, state: &s, config: adam(lr))
            }
        }
        var t = tokens // a local copy: two parts of one stored property are updated together
        defer { tokens = t }
        update(&t.features, features, &t.featureAdam, config.tokenFeatureLearningRate)
        guard config.usePrior else { return }
        update(&t.means, means, &t.meanAdam, config.tokenMeanLearningRate)
        update(&t.rotations, rotations, &t.rotationAdam, config.tokenRotationLearningRate)
        update(&t.logScales, logScales, &t.logScaleAdam, config.tokenLogScaleLearningRate)
    }

    // MARK: - Token management

    /// Surface points for the 3D token masks: back-projected thing-mask pixels of the current frames, drawn with a
    /// seed fixed by the step count (so a restored trainer draws the same points).
    func managementSurface() -> [Float] {
        var pointRNG = SeededRNG(seed: config.seed &+ 99 &+ UInt64(steps))
        let pool = frames.indices.filter { !frames[$0].thingPixels.isEmpty }
        guard !pool.isEmpty else { return [] }
        var out: [Float] = []
        for _ in 0..<config.managementPoints {
            // Stratified by mask like the rays, so that small objects have enough points to be judged.
            let f = frames[pool[Int(pointRNG.next() % UInt64(pool.count))]]
            let members = f.slotPixels[Int(pointRNG.next() % UInt64(f.slotPixels.count))]
            guard !members.isEmpty else { continue }
            let q = backProject(f, Int(members[Int(pointRNG.next() % UInt64(members.count))]))
            out += [q.x, q.y, q.z]
        }
        return out
    }

    /// Scores S * G (P x N) of every token at `positions` (P points, xyz).
    public func tokenScores(positions: [Float]) -> [Float] {
        let P = positions.count / 3, N = tokens.count, D = instance.featureWidth
        guard P > 0, N > 0 else { return [] }
        var features = [Float](repeating: 0, count: P * D)
        positions.withUnsafeBufferPointer { p in
            features.withUnsafeMutableBufferPointer { f in
                instance.core.infer(positions: p.baseAddress!, count: P, out: f.baseAddress!)
            }
        }
        var a = [Float](repeating: 0, count: P * N), sS = a, sG = a
        tokens.withKernelTokens { t in
            TokenAttention.forward(pointFeatures: features, positions: positions, count: P, featureWidth: D,
                                   tokens: t, attention: &a, savedS: &sS, savedG: &sG, sharpness: config.sharpness,
                                   threads: instance.config.threads)
        }
        for j in sS.indices { sS[j] *= sG[j] }
        return sS
    }

    /// Binary 3D token masks (P x N, 1 or 0) for the duplicate test: token i covers point p when its logit S G is
    /// at least `maskFloor` and within `maskMargin` of the best token's there. S G >= 0.5 alone (the paper's binary
    /// masks) does not work with attention normalised over tokens: a large neighbouring token may score 0.5 on an
    /// object another token owns, and the owner is then removed as "enclosed".
    public func tokenMasks(positions: [Float]) -> [Float] {
        let N = tokens.count
        var x = tokenScores(positions: positions)
        guard N > 0 else { return x }
        for p in 0..<(x.count / N) {
            var best: Float = 0
            for i in 0..<N { best = max(best, x[p * N + i]) }
            for i in 0..<N {
                let v = x[p * N + i]
                x[p * N + i] = v >= config.maskFloor && v >= best - config.maskMargin ? 1 : 0
            }
        }
        return x
    }

    /// One management round: prune useless tokens, drop duplicates by 3D IoM, clone tokens two masks keep choosing.
    /// Returns the plan applied.
    @discardableResult
    public func manageTokens(allowClones: Bool = true) -> TokenPlan {
        let N = tokens.count
        let surface = managementSurface()
        let scores = tokenMasks(positions: surface)
        var plan = TokenManagement.plan(usage: usage, scores: scores, points: surface.count / 3, tokens: N,
                                        config: config.management)
        if !allowClones || steps >= config.cloneUntil { plan.clone = [] }
        if plan.remove.count == N { plan.remove.removeLast() } // never remove every token
        respawnMisplacedTokens(except: Set(plan.remove))
        guard !plan.isEmpty else { return plan }
        let sources = plan.sourceIndices(oldCount: N)
        tokens.apply(plan)
        usage.apply(plan)
        stableCount = sources.map { stableCount[$0] }
        poorMatches = sources.map { poorMatches[$0] }
        poorTarget = sources.map { poorTarget[$0] }
        let targets = sources.map { splitTarget[$0] }
        splitTarget = [SIMD3<Float>?](repeating: nil, count: sources.count)
        // A clone starts at the losing mask it was made for (its source's position if unknown), with the initial
        // scale and slightly perturbed features so that it can diverge from its source.
        let firstClone = sources.count - plan.clone.count
        for t in firstClone..<sources.count {
            for c in 0..<tokens.featureWidth {
                tokens.features[t * tokens.featureWidth + c] += Float(rng.gaussian()) * 0.05
            }
            if let q = targets[t], config.usePrior { placeToken(t, at: q) }
            stableCount[t] = 0; poorMatches[t] = 0; poorTarget[t] = nil
        }
        return plan
    }

    /// Not in the paper: a token whose last `respawnMatches` matches all had a hard IoU below `respawnIoU` (it is
    /// matched to an object it cannot reach, typically far from its Gaussian) is moved to the last such mask's
    /// surface centroid with the initial scale. With the spatial prior a token moves only a few millimetres per
    /// step, so without this an object with no token nearby waits for a lucky split.
    func respawnMisplacedTokens(except removed: Set<Int>) {
        guard config.usePrior else { return }
        for i in 0..<tokens.count where !removed.contains(i) && poorMatches[i] >= config.respawnMatches {
            guard let q = poorTarget[i] else { continue }
            placeToken(i, at: q)
            poorMatches[i] = 0; poorTarget[i] = nil; stableCount[i] = 0
        }
    }

    // MARK: - Training loop

    /// Batch training: `iterations` steps or until `seconds` pass, whichever comes first.
    @discardableResult
    public func train(iterations: Int, seconds: Double = .infinity, reportEvery: Int = 100,
                      progress: ((Int, PanopticStepStats) -> Void)? = nil) -> PanopticStepStats {
        let start = Date()
        var last = PanopticStepStats()
        for i in 0..<iterations {
            last = step()
            if let progress, (i + 1) % reportEvery == 0 || i + 1 == iterations { progress(i + 1, last) }
            if Date().timeIntervalSince(start) >= seconds {
                if (i + 1) % reportEvery != 0 { progress?(i + 1, last) }
                break
            }
        }
        // A last pruning round (no clones): duplicates and useless tokens made since the last one.
        if tokensInitialised { manageTokens(allowClones: false) }
        return last
    }

    // MARK: - Inference

    /// NeuS weights (rays x samples) of the geometry field at `positions`, by inference.
    func renderWeights(_ positions: [Float], rays: Int) -> [Float] {
        let n = positions.count / 3
        var sdf = [Float](repeating: 0, count: n), weights = sdf
        positions.withUnsafeBufferPointer { p in
            sdf.withUnsafeMutableBufferPointer { o in geometry.sdf(positions: p.baseAddress!, count: n, out: o.baseAddress!) }
        }
        NeuSRendering.weights(sdf: sdf, rays: rays, samples: config.samplesPerRay, xi: geometry.xi, weights: &weights)
        return weights
    }

    /// Labels from panoptic-head outputs (P x (S + N)): stuff column → its class, token column → the token's class
    /// (its class head's argmax) and instance id token + 1. Without tokens (before the instance stage) the labels
    /// are the argmax of the semantic distributions `semantic` (P x C), instance 0.
    func labels(fromPanoptic panoptic: [Float], semantic u: [Float], count P: Int) -> PanopticLabels {
        let S = stuffClasses.count, N = tokens.count, C = semantic.classCount
        if N == 0 {
            let classes = u.withUnsafeBufferPointer { p in
                (0..<P).map { Int32(semantic.classID(ofIndex: SemanticRendering.argmax(p.baseAddress! + $0 * C, classes: C))) }
            }
            return PanopticLabels(semantic: classes, instance: [Int32](repeating: 0, count: P))
        }
        let tokenClass = classHead.classes(tokens).map { Int32(semantic.classID(ofIndex: Int(thingClasses[$0]))) }
        var out = PanopticLabels(semantic: [Int32](repeating: 0, count: P), instance: [Int32](repeating: 0, count: P))
        panoptic.withUnsafeBufferPointer { p in
            for j in 0..<P {
                let a = PanopticHead.argmax(p.baseAddress! + j * (S + N), count: S + N)
                if a < S {
                    out.semantic[j] = Int32(semantic.classID(ofIndex: Int(stuffClasses[a])))
                } else {
                    out.semantic[j] = tokenClass[a - S]
                    out.instance[j] = Int32(a - S + 1)
                }
            }
        }
        return out
    }

    /// Point-level panoptic labels (e.g. mesh vertices): the panoptic head over softmax(semantic logits) and the
    /// token attention at each point. Works in chunks of 32768 points, so the scratch stays small on big meshes.
    public func labels(points: [SIMD3<Float>]) -> PanopticLabels {
        var out = PanopticLabels(semantic: [], instance: [])
        out.semantic.reserveCapacity(points.count)
        out.instance.reserveCapacity(points.count)
        var start = 0
        while start < points.count {
            let end = min(points.count, start + 32768)
            let l = labelsOfChunk(Array(points[start..<end]))
            out.semantic += l.semantic
            out.instance += l.instance
            start = end
        }
        return out
    }

    func labelsOfChunk(_ points: [SIMD3<Float>]) -> PanopticLabels {
        let P = points.count, C = semantic.classCount, N = tokens.count, S = stuffClasses.count
        guard P > 0 else { return PanopticLabels(semantic: [], instance: []) }
        let flat = points.flatMap { [$0.x, $0.y, $0.z] }
        var u = semantic.logits(points)
        for j in 0..<P {
            var m = -Float.infinity
            for c in 0..<C { m = max(m, u[j * C + c]) }
            var sum: Float = 0
            for c in 0..<C { u[j * C + c] = expf(u[j * C + c] - m); sum += u[j * C + c] }
            for c in 0..<C { u[j * C + c] /= sum }
        }
        var attention = [Float](repeating: 0, count: P * N)
        if N > 0 {
            var features = [Float](repeating: 0, count: P * instance.featureWidth)
            flat.withUnsafeBufferPointer { p in features.withUnsafeMutableBufferPointer { f in
                instance.core.infer(positions: p.baseAddress!, count: P, out: f.baseAddress!)
            } }
            tokens.withKernelTokens { t in
                TokenAttention.forward(pointFeatures: features, positions: flat, count: P,
                                       featureWidth: instance.featureWidth, tokens: t, attention: &attention,
                                       savedS: nil, savedG: nil, sharpness: config.sharpness,
                                       threads: instance.config.threads)
            }
        }
        var panoptic = [Float](repeating: 0, count: P * (S + N))
        PanopticHead.forward(semantic: u, instance: attention, pixels: P, classes: C, tokens: N,
                             stuffClasses: stuffClasses, stuffCount: S, thingClasses: thingClasses,
                             thingCount: thingClasses.count, panoptic: &panoptic)
        return labels(fromPanoptic: panoptic, semantic: u, count: P)
    }

    /// Rendered panoptic labels of a whole view (width x height of `intrinsics`), each ray sampled deterministically
    /// around its z-depth `depth[i]` (observed, or sphere-traced for novel views). Pixels whose depth is outside
    /// [near, far] get class 0, instance 0.
    public func renderLabels(T_W_C: RigidTransform, intrinsics k: Intrinsics, depth: [Float]) -> PanopticLabels {
        let C = semantic.classCount, N = tokens.count, S = stuffClasses.count, s = config.samplesPerRay
        let D = instance.featureWidth
        var out = PanopticLabels(semantic: [Int32](repeating: 0, count: depth.count),
                                 instance: [Int32](repeating: 0, count: depth.count))
        var dummy = SeededRNG(seed: 0)
        let chunk = 2048
        var start = 0
        while start < depth.count {
            let end = min(depth.count, start + chunk)
            var positions: [Float] = [], rho: [Float] = [], which: [Int] = []
            for i in start..<end where depth[i].isFinite && depth[i] >= config.near && depth[i] <= config.far {
                let ray = DepthGuidedRaySampler.cameraRay(x: i % k.width, y: i / k.width, T_W_C: T_W_C, intrinsics: k)
                sampler.append(origin: ray.origin, direction: ray.direction, range: depth[i] * ray.rangePerDepth,
                               jitter: false, rng: &dummy, distances: &rho, positions: &positions)
                which.append(i)
            }
            start = end
            let R = which.count
            guard R > 0 else { continue }
            let weights = renderWeights(positions, rays: R)
            var logits = [Float](repeating: 0, count: R * s * C)
            positions.withUnsafeBufferPointer { p in logits.withUnsafeMutableBufferPointer { z in
                semantic.logits(positions: p.baseAddress!, count: R * s, out: z.baseAddress!)
            } }
            var probabilities = [Float](repeating: 0, count: R * C)
            SemanticRendering.forward(weights: weights, logits: logits, rays: R, samples: s, classes: C, labels: nil,
                                      epsilon: config.epsilon, probabilities: &probabilities)
            var rendered = [Float](repeating: 0, count: R * N)
            if N > 0 {
                var features = [Float](repeating: 0, count: R * s * D)
                positions.withUnsafeBufferPointer { p in features.withUnsafeMutableBufferPointer { f in
                    instance.core.infer(positions: p.baseAddress!, count: R * s, out: f.baseAddress!)
                } }
                var attention = [Float](repeating: 0, count: R * s * N)
                tokens.withKernelTokens { t in
                    TokenAttention.forward(pointFeatures: features, positions: positions, count: R * s,
                                           featureWidth: D, tokens: t, attention: &attention, savedS: nil,
                                           savedG: nil, sharpness: config.sharpness, threads: instance.config.threads)
                }
                InstanceRendering.forward(weights: weights, attention: attention, rays: R, samples: s, tokens: N,
                                          rendered: &rendered)
            }
            var panoptic = [Float](repeating: 0, count: R * (S + N))
            PanopticHead.forward(semantic: probabilities, instance: rendered, pixels: R, classes: C, tokens: N,
                                 stuffClasses: stuffClasses, stuffCount: S, thingClasses: thingClasses,
                                 thingCount: thingClasses.count, panoptic: &panoptic)
            let l = labels(fromPanoptic: panoptic, semantic: probabilities, count: R)
            for (row, i) in which.enumerated() {
                out.semantic[i] = l.semantic[row]; out.instance[i] = l.instance[row]
            }
        }
        return out
    }
}
