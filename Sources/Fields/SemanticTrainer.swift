import Foundation
import Kernels
import MapCore

public struct SemanticTrainerConfig: Sendable, Codable, Equatable {
    public var raysPerStep = 1024
    /// Samples per ray stratified over [near, D + truncation] (as `GeometryTrainerConfig.uniformSamples`).
    public var uniformSamples = 4
    /// Samples per ray stratified over the band [D - truncation, D + truncation].
    public var surfaceSamples = 6
    /// Half-width of the band around the observed surface (metres); the geometry's L_sdf truncation by default.
    public var truncation: Float = 0.06
    /// Valid depth range (metres); pixels outside are not sampled.
    public var near: Float = 0.1
    public var far: Float = 8
    /// Added to each ray's total weight in the rendered distribution (see `SemanticRendering`).
    public var epsilon: Float = SemanticRendering.defaultEpsilon
    public var seed: UInt64 = 1

    public init() {}

    public var samplesPerRay: Int { uniformSamples + surfaceSamples }

    public func validate() throws {
        guard raysPerStep > 0, uniformSamples >= 1, surfaceSamples >= 1 else {
            throw ConfigError("rays per step and samples per ray must be positive")
        }
        guard near > 0, far > near else { throw ConfigError("need 0 < near < far (got \(near), \(far))") }
        guard truncation > 0, epsilon > 0 else { throw ConfigError("truncation and epsilon must be positive") }
    }
}

/// What the semantic optimisation keeps of a frame: depth, pose, intrinsics and the labelled pixels, i.e. pixels with
/// valid depth in [near, far] whose mask id is non-zero, listed in the frame's segments, and whose class is in the
/// vocabulary, each with its class index. A frame without masks (or with none usable) has no labelled pixels and is
/// never sampled. A mask image of another size than the depth image is resized (nearest) to it.
public struct SemanticTrainingFrame: Sendable {
    public var index: Int
    public var depth: [Float]
    public var T_W_C: RigidTransform
    public var intrinsics: Intrinsics
    /// Linear pixel indices (y * width + x) with a usable label, ascending.
    public var labelledPixels: [Int32]
    /// Class index (position in the vocabulary) of each labelled pixel.
    public var labels: [Int32]
    /// Pixels with valid depth and a non-zero mask id that were skipped: id not among the segments, or its class not
    /// in the vocabulary.
    public var skippedPixels: Int

    /// `classIndex` maps a vocabulary class id to its index (nil = not in the vocabulary).
    public init(_ frame: Frame, near: Float, far: Float, classIndex: (Int) -> Int?) {
        index = frame.index
        depth = frame.depth.data
        T_W_C = frame.T_W_C
        intrinsics = frame.intrinsics
        labelledPixels = []
        labels = []
        skippedPixels = 0
        guard let masks = frame.masks, !masks.segments.isEmpty,
              frame.depth.width > 0, frame.depth.height > 0, masks.ids.width > 0, masks.ids.height > 0 else { return }
        let ids = masks.ids.resizedNearest(width: frame.depth.width, height: frame.depth.height)
        var classOfID: [Int: Int32] = [:]
        for s in masks.segments.reversed() { // the first segment of an id wins, as in `FrameMasks.segment(id:)`
            if let k = classIndex(s.classID) { classOfID[s.id] = Int32(k) } else { classOfID[s.id] = -1 }
        }
        for (i, d) in depth.enumerated() where d.isFinite && d >= near && d <= far {
            let id = Int(ids.data[i])
            guard id != 0 else { continue }
            guard let k = classOfID[id], k >= 0 else { skippedPixels += 1; continue }
            labelledPixels.append(Int32(i))
            labels.append(k)
        }
    }
}

/// Statistics of one semantic step.
public struct SemanticStepStats: Sendable, Equatable {
    /// L_sem, mean over the batch's rays.
    public var loss: Float = 0
    /// Rays in the batch (0 when no frame had labelled pixels).
    public var rays: Int = 0
    /// Share of the batch's rays whose rendered argmax class is the mask label.
    public var accuracy: Float = 0

    public init() {}
}

/// Optimises a `SemanticField` with L_sem on frames with masks. Rays and samples are drawn like `GeometryTrainer`'s
/// (depth-guided), the NeuS weights come from `geometry` by inference (constants here: the geometry field is never
/// changed by this trainer), and only the semantic field is updated. The geometry may be trained jointly by its own
/// trainer, but not between a `GeometryField.forwardForTraining` and its `backward` (inference through the geometry
/// field reuses its grid-encoding scratch).
public final class SemanticTrainer {
    public let config: SemanticTrainerConfig
    public let field: SemanticField
    public let geometry: GeometryField
    public let sampler: DepthGuidedRaySampler
    public private(set) var frames: [SemanticTrainingFrame] = []
    public private(set) var steps = 0
    var rng: SeededRNG

    // Scratch, reused across steps.
    var positions: [Float] = []
    var rho: [Float] = []
    var rayLabels: [Int32] = []
    var sdf: [Float] = []
    var weights: [Float] = []
    var probabilities: [Float] = []
    var gradLogits: [Float] = []

    public init(config: SemanticTrainerConfig, field: SemanticField, geometry: GeometryField) throws {
        try config.validate()
        self.config = config
        self.field = field
        self.geometry = geometry
        sampler = DepthGuidedRaySampler(near: config.near, truncation: config.truncation,
                                        uniformSamples: config.uniformSamples, surfaceSamples: config.surfaceSamples)
        rng = SeededRNG(seed: config.seed)
    }

    /// Adds a frame (with or without masks); returns its slot.
    @discardableResult
    public func add(_ frame: Frame) -> Int {
        frames.append(SemanticTrainingFrame(frame, near: config.near, far: config.far,
                                            classIndex: { [field] in field.classIndex(ofClassID: $0) }))
        return frames.count - 1
    }

    /// One optimisation step on rays drawn from the labelled pixels of `slots` (default: all frames). Frames without
    /// labelled pixels are skipped; with none at all the step does nothing and returns zero stats.
    @discardableResult
    public func step(slots: [Int]? = nil) -> SemanticStepStats {
        let pool = (slots ?? Array(frames.indices)).filter { frames.indices.contains($0) && !frames[$0].labelledPixels.isEmpty }
        guard !pool.isEmpty else { return SemanticStepStats() }
        let r = config.raysPerStep, s = config.samplesPerRay, c = field.classCount
        positions.removeAll(keepingCapacity: true)
        positions.reserveCapacity(r * s * 3)
        rho.removeAll(keepingCapacity: true)
        rayLabels.removeAll(keepingCapacity: true)
        for _ in 0..<r {
            let f = frames[pool[Int(rng.next() % UInt64(pool.count))]]
            let i = Int(rng.next() % UInt64(f.labelledPixels.count))
            let p = Int(f.labelledPixels[i])
            let ray = DepthGuidedRaySampler.cameraRay(x: p % f.intrinsics.width, y: p / f.intrinsics.width,
                                                      T_W_C: f.T_W_C, intrinsics: f.intrinsics)
            sampler.append(origin: ray.origin, direction: ray.direction, range: f.depth[p] * ray.rangePerDepth,
                           jitter: true, rng: &rng, distances: &rho, positions: &positions)
            rayLabels.append(f.labels[i])
        }
        renderWeights(rays: r)
        let logits = field.forwardForTraining(positions: positions)
        if probabilities.count < r * c { probabilities = [Float](repeating: 0, count: r * c) }
        if gradLogits.count != r * s * c { gradLogits = [Float](repeating: 0, count: r * s * c) }
        var stats = SemanticStepStats()
        stats.rays = r
        weights.withUnsafeBufferPointer { w in
            logits.withUnsafeBufferPointer { z in
                rayLabels.withUnsafeBufferPointer { l in
                    probabilities.withUnsafeMutableBufferPointer { p in
                        let (loss, n) = SemanticRendering.forward(
                            weights: w.baseAddress!, logits: z.baseAddress!, rays: r, samples: s, classes: c,
                            labels: l.baseAddress!, epsilon: config.epsilon, probabilities: p.baseAddress!)
                        stats.loss = loss
                        var correct = 0
                        for ray in 0..<r where SemanticRendering.argmax(p.baseAddress! + ray * c, classes: c) == Int(l[ray]) {
                            correct += 1
                        }
                        stats.accuracy = Float(correct) / Float(r)
                        gradLogits.withUnsafeMutableBufferPointer { g in
                            SemanticRendering.backward(
                                weights: w.baseAddress!, logits: z.baseAddress!, rays: r, samples: s, classes: c,
                                labels: l.baseAddress!, labelled: n, epsilon: config.epsilon,
                                probabilities: UnsafePointer(p.baseAddress!), gradLogits: g.baseAddress!)
                        }
                    }
                }
            }
        }
        field.backward(gradLogits: gradLogits)
        field.applyGradients()
        steps += 1
        return stats
    }

    /// NeuS weights (rays x samples) of the geometry field at `positions`, by inference.
    private func renderWeights(rays: Int) {
        let n = positions.count / 3
        if sdf.count < n { sdf = [Float](repeating: 0, count: n); weights = sdf }
        positions.withUnsafeBufferPointer { p in
            sdf.withUnsafeMutableBufferPointer { o in geometry.sdf(positions: p.baseAddress!, count: n, out: o.baseAddress!) }
        }
        let xi = geometry.xi
        sdf.withUnsafeBufferPointer { sp in
            weights.withUnsafeMutableBufferPointer { w in
                NeuSRendering.weights(sdf: sp.baseAddress!, rays: rays, samples: config.samplesPerRay, xi: xi,
                                      weights: w.baseAddress!)
            }
        }
    }

    /// Batch training: `iterations` steps or until `seconds` pass, whichever comes first.
    @discardableResult
    public func train(iterations: Int, seconds: Double = .infinity, reportEvery: Int = 100,
                      progress: ((Int, SemanticStepStats) -> Void)? = nil) -> SemanticStepStats {
        let start = Date()
        var last = SemanticStepStats()
        for i in 0..<iterations {
            last = step()
            if let progress, (i + 1) % reportEvery == 0 || i + 1 == iterations { progress(i + 1, last) }
            if Date().timeIntervalSince(start) >= seconds {
                if (i + 1) % reportEvery != 0 { progress?(i + 1, last) }
                break
            }
        }
        return last
    }

    /// Rendered class distributions (pixels.count x C) of a camera at linear pixel indices `pixels`, each ray sampled
    /// deterministically (stratum centres) around its z-depth `depth[i]` (observed, or sphere-traced for novel views).
    /// Pixels whose depth is outside [near, far] get the uniform distribution. Inference only; changes no state but
    /// scratch (uses the trainer's buffers, so not concurrently with `step`).
    public func renderProbabilities(T_W_C: RigidTransform, intrinsics k: Intrinsics, pixels: [Int32],
                                    depth: [Float]) -> [Float] {
        precondition(pixels.count == depth.count, "renderProbabilities: one depth per pixel")
        let c = field.classCount, s = config.samplesPerRay
        var out = [Float](repeating: 1 / Float(c), count: pixels.count * c)
        var dummy = SeededRNG(seed: 0)
        var logits: [Float] = []
        let chunk = 4096
        var start = 0
        while start < pixels.count {
            let end = min(pixels.count, start + chunk)
            positions.removeAll(keepingCapacity: true)
            rho.removeAll(keepingCapacity: true)
            var which: [Int] = []
            for i in start..<end where depth[i].isFinite && depth[i] >= config.near && depth[i] <= config.far {
                let p = Int(pixels[i])
                let ray = DepthGuidedRaySampler.cameraRay(x: p % k.width, y: p / k.width, T_W_C: T_W_C, intrinsics: k)
                sampler.append(origin: ray.origin, direction: ray.direction, range: depth[i] * ray.rangePerDepth,
                               jitter: false, rng: &dummy, distances: &rho, positions: &positions)
                which.append(i)
            }
            start = end
            guard !which.isEmpty else { continue }
            let r = which.count
            renderWeights(rays: r)
            if logits.count < r * s * c { logits = [Float](repeating: 0, count: r * s * c) }
            if probabilities.count < r * c { probabilities = [Float](repeating: 0, count: r * c) }
            positions.withUnsafeBufferPointer { pp in
                logits.withUnsafeMutableBufferPointer { z in
                    field.logits(positions: pp.baseAddress!, count: r * s, out: z.baseAddress!)
                }
            }
            weights.withUnsafeBufferPointer { w in
                logits.withUnsafeBufferPointer { z in
                    probabilities.withUnsafeMutableBufferPointer { p in
                        _ = SemanticRendering.forward(weights: w.baseAddress!, logits: z.baseAddress!, rays: r,
                                                  samples: s, classes: c, labels: nil, epsilon: config.epsilon,
                                                  probabilities: p.baseAddress!)
                    }
                }
            }
            for (row, i) in which.enumerated() {
                for kk in 0..<c { out[i * c + kk] = probabilities[row * c + kk] }
            }
        }
        return out
    }

    /// Rendered semantic label per pixel: the argmax class index of `renderProbabilities` (-1 where the depth is
    /// outside [near, far]).
    public func renderClassIndices(T_W_C: RigidTransform, intrinsics: Intrinsics, pixels: [Int32],
                                   depth: [Float]) -> [Int] {
        let c = field.classCount
        let p = renderProbabilities(T_W_C: T_W_C, intrinsics: intrinsics, pixels: pixels, depth: depth)
        return p.withUnsafeBufferPointer { pp in
            (0..<pixels.count).map { i in
                let d = depth[i]
                guard d.isFinite, d >= config.near, d <= config.far else { return -1 }
                return SemanticRendering.argmax(pp.baseAddress! + i * c, classes: c)
            }
        }
    }
}
