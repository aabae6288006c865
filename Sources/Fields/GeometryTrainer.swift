import Foundation
import Kernels
import MapCore

public struct GeometryTrainerConfig: Sendable, Codable, Equatable {
    // Defaults measured on the synthetic room (pano train, 90 s budgets): many cheap steps beat few rich ones, e.g.
    // 2048 rays x (12 + 12) samples, 16 levels x 2^19: Chamfer-L1 2.38 cm; 1024 x (4 + 6), 8 levels x 2^16: 0.89 cm.
    // More steps do not always help: 3000 steps gave 0.99 cm, 6000 gave 1.10 cm (an exponential learning-rate decay
    // to 0.1x did not change either figure, so there is none).
    public var raysPerStep = 1024
    /// Samples per ray stratified over [near, D + tau].
    public var uniformSamples = 4
    /// Samples per ray stratified over the truncation band [D - tau, D + tau].
    public var surfaceSamples = 6
    /// Valid depth range (metres); pixels outside are not sampled.
    public var near: Float = 0.1
    public var far: Float = 8
    /// Share of rays whose band samples also get the eikonal term.
    public var eikonalFraction: Float = 0.25
    /// Finite-difference step of the SDF gradient for L_eik (metres). The hash grid is not differentiated with
    /// respect to position: the eikonal term uses forward differences s(x + h e_k) - s(x).
    public var eikonalStep: Float = 0.01
    public var losses = GeometryLossConfig()
    public var seed: UInt64 = 1

    public init() {}

    public var samplesPerRay: Int { uniformSamples + surfaceSamples }

    public func validate() throws {
        guard raysPerStep > 0, uniformSamples >= 1, surfaceSamples >= 1 else {
            throw ConfigError("rays per step and samples per ray must be positive")
        }
        guard near > 0, far > near else { throw ConfigError("need 0 < near < far (got \(near), \(far))") }
        guard (0...1).contains(eikonalFraction), eikonalStep > 0 else {
            throw ConfigError("eikonal fraction must be in [0, 1] and the step positive")
        }
        try losses.validate()
    }
}

/// Losses of one optimisation step (means over the batch, weights applied).
public struct GeometryStepStats: Sendable, Equatable {
    public var sdf: Float = 0
    public var eikonal: Float = 0
    public var depth: Float = 0
    /// Mean |D - D_rendered| over the batch's rays, metres.
    public var depthError: Float = 0
    public var xi: Float = 0
    public var total: Float { sdf + eikonal + depth }
    public init() {}
}

/// Optimises a `GeometryField` on a set of frames with L_sdf + L_eik + L_depth. `step(slots:)` is the unit the
/// online optimizer schedules (on a window of keyframes); `train` is the batch driver over all frames.
public final class GeometryTrainer {
    public let config: GeometryTrainerConfig
    public let field: GeometryField
    public private(set) var frames: [TrainingFrame] = []
    public internal(set) var steps = 0
    var rng: SeededRNG

    // Scratch, reused across steps.
    var positions: [Float] = []
    var rho: [Float] = []
    var observed: [Float] = []
    var weights: [Float] = []
    var gradWeights: [Float] = []
    var gradNeuS: [Float] = []

    public init(config: GeometryTrainerConfig, field: GeometryField) throws {
        try config.validate()
        self.config = config
        self.field = field
        rng = SeededRNG(seed: config.seed)
    }

    /// Adds a frame; returns its slot.
    @discardableResult
    public func add(_ frame: Frame) -> Int {
        add(TrainingFrame(frame, near: config.near, far: config.far))
    }

    /// Adds a frame already reduced to what training needs (e.g. after computing the scene bounds from it).
    @discardableResult
    public func add(_ frame: TrainingFrame) -> Int {
        frames.append(frame)
        return frames.count - 1
    }

    /// Removes the frame in `slot`; later slots move down by one (the online mapper's keyframe budget).
    public func remove(slot: Int) {
        precondition(frames.indices.contains(slot), "GeometryTrainer.remove: no slot \(slot)")
        frames.remove(at: slot)
    }

    /// One optimisation step on rays drawn from `slots` (default: all frames).
    @discardableResult
    public func step(slots: [Int]? = nil) -> GeometryStepStats {
        let pool = (slots ?? Array(frames.indices)).filter { !frames[$0].validPixels.isEmpty }
        guard !pool.isEmpty else { return GeometryStepStats() }
        let r = config.raysPerStep, s = config.samplesPerRay, nu = config.uniformSamples, ns = config.surfaceSamples
        let tau = config.losses.truncation
        let eikRays = Int(Float(r) * config.eikonalFraction)
        let bandPoints = r * s, eikPoints = eikRays * ns
        let total = bandPoints + 3 * eikPoints
        positions.removeAll(keepingCapacity: true)
        positions.reserveCapacity(total * 3)
        rho.removeAll(keepingCapacity: true)
        observed.removeAll(keepingCapacity: true)
        let sampler = DepthGuidedRaySampler(near: config.near, truncation: tau, uniformSamples: nu, surfaceSamples: ns)

        // Rays and their sorted samples.
        for _ in 0..<r {
            let f = frames[pool[Int(rng.next() % UInt64(pool.count))]]
            let p = Int(f.validPixels[Int(rng.next() % UInt64(f.validPixels.count))])
            let k = f.intrinsics
            let ray = DepthGuidedRaySampler.cameraRay(x: p % k.width, y: p / k.width, T_W_C: f.T_W_C, intrinsics: k)
            let depth = f.depth[p] * ray.rangePerDepth
            sampler.append(origin: ray.origin, direction: ray.direction, range: depth, jitter: true, rng: &rng,
                           distances: &rho, positions: &positions)
            observed.append(depth)
        }
        // Eikonal points: the band samples of the first `eikRays` rays, each moved by h along x, y, z.
        let h = config.eikonalStep
        var eikCentres: [Int] = []
        eikCentres.reserveCapacity(eikPoints)
        for ray in 0..<eikRays {
            for j in 0..<s where abs(observed[ray] - rho[ray * s + j]) <= tau {
                eikCentres.append(ray * s + j)
            }
        }
        for c in eikCentres {
            let x = positions[3 * c], y = positions[3 * c + 1], z = positions[3 * c + 2]
            positions += [x + h, y, z, x, y + h, z, x, y, z + h]
        }

        let sdf = field.forwardForTraining(positions: positions)
        var grad = [Float](repeating: 0, count: sdf.count)
        var stats = GeometryStepStats()

        // L_sdf on every ray sample.
        let sdfNorm = 1 / Float(bandPoints)
        for ray in 0..<r {
            for j in 0..<s {
                let i = ray * s + j
                let (l, g) = GeometryLosses.sdf(s: sdf[i], b: observed[ray] - rho[i], config: config.losses)
                stats.sdf += l * sdfNorm
                grad[i] += g * sdfNorm
            }
        }
        // L_depth through NeuS rendering.
        if weights.count < bandPoints {
            weights = [Float](repeating: 0, count: bandPoints); gradWeights = weights; gradNeuS = weights
        }
        let xi = field.xi
        sdf.withUnsafeBufferPointer { sp in
            weights.withUnsafeMutableBufferPointer { w in
                NeuSRendering.weights(sdf: sp.baseAddress!, rays: r, samples: s, xi: xi, weights: w.baseAddress!)
            }
        }
        let depthNorm = 1 / Float(r)
        for ray in 0..<r {
            var rendered: Float = 0
            for j in 0..<(s - 1) {
                rendered += weights[ray * s + j] * 0.5 * (rho[ray * s + j] + rho[ray * s + j + 1])
            }
            let (l, g) = GeometryLosses.depth(rendered: rendered, observed: observed[ray], weight: config.losses.depthWeight)
            stats.depth += l * depthNorm
            stats.depthError += abs(rendered - observed[ray]) * depthNorm
            for j in 0..<s {
                gradWeights[ray * s + j] = j < s - 1 ? g * depthNorm * 0.5 * (rho[ray * s + j] + rho[ray * s + j + 1]) : 0
            }
        }
        var gradXi: Float = 0
        sdf.withUnsafeBufferPointer { sp in
            gradWeights.withUnsafeBufferPointer { gw in
                gradNeuS.withUnsafeMutableBufferPointer { gn in
                    gradXi = NeuSRendering.backward(sdf: sp.baseAddress!, rays: r, samples: s, xi: xi,
                                                    gradWeights: gw.baseAddress!, gradSDF: gn.baseAddress!)
                }
            }
        }
        for i in 0..<bandPoints { grad[i] += gradNeuS[i] }
        // L_eik with forward differences.
        if !eikCentres.isEmpty {
            let eikNorm = 1 / Float(eikCentres.count)
            for (e, c) in eikCentres.enumerated() {
                let base = bandPoints + 3 * e
                let g = SIMD3<Float>(sdf[base] - sdf[c], sdf[base + 1] - sdf[c], sdf[base + 2] - sdf[c]) / h
                let (l, dg) = GeometryLosses.eikonal(g, weight: config.losses.eikonalWeight)
                stats.eikonal += l * eikNorm
                let d = dg * (eikNorm / h)
                grad[base] += d.x; grad[base + 1] += d.y; grad[base + 2] += d.z
                grad[c] -= d.x + d.y + d.z
            }
        }
        field.backward(gradSDF: grad, gradXi: gradXi)
        field.applyGradients()
        steps += 1
        stats.xi = field.xi
        return stats
    }

    /// Batch training: `iterations` steps or until `seconds` pass, whichever comes first. `progress(step, stats)` is
    /// called every `reportEvery` steps.
    @discardableResult
    public func train(iterations: Int, seconds: Double = .infinity, reportEvery: Int = 100,
                      progress: ((Int, GeometryStepStats) -> Void)? = nil) -> GeometryStepStats {
        let start = Date()
        var last = GeometryStepStats()
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
}
