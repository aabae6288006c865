import Foundation
import Kernels
import MapCore

/// Settings of the appearance branch: 3D Gaussians seeded from keyframe depth and optimised with
/// L = L1 + 0.2 (1 - SSIM) + 0.1 L_depth (Adam), with densification (clone / split by view-space gradient) and pruning.
public struct GaussianTrainerConfig: Sendable, Codable, Equatable {
    /// New Gaussians are seeded on every `seedStride`-th pixel (in x and y) of a keyframe's unexplained depth.
    public var seedStride = 3
    /// Frames wider than this are trained on at an integer fraction of their size (2x2 box-filtered colour, depth
    /// averaged where a block agrees), so a 640x480 stream costs what a 320x240 one does. Renders can use any size.
    public var maxTrainingWidth = 320
    /// A pixel is unexplained when the current Gaussians cover it with alpha below this, ...
    public var seedAlpha: Float = 0.5
    /// ... or their normalised depth differs from the measured depth by more than `seedDepthMetres` + `seedDepthRatio` d.
    public var seedDepthMetres: Float = 0.04
    public var seedDepthRatio: Float = 0.03
    /// Opacity of a new Gaussian.
    public var seedOpacity: Float = 0.5
    /// Loss weights: L1 colour + ssimWeight (1 - SSIM) + depthWeight |D - d| (D the rendered expected depth).
    public var ssimWeight: Float = 0.2
    public var depthWeight: Float = 0.1
    /// Learning rates (Adam) per parameter group; the mean's rate decays exponentially from `meanLR` to
    /// `meanLRFinal` over `meanLRDecaySteps` steps.
    public var meanLR: Float = 2e-4
    public var meanLRFinal: Float = 2e-5
    public var meanLRDecaySteps = 6000
    public var logScaleLR: Float = 5e-3
    public var rotationLR: Float = 1e-3
    public var opacityLR: Float = 5e-2
    public var colorLR: Float = 2.5e-3
    /// Densify and prune every `densifyEvery` steps (from step `densifyFrom`).
    public var densifyEvery = 100
    public var densifyFrom = 100
    /// A Gaussian whose mean view-space gradient norm exceeds this (NDC units, as 3DGS: pixels scaled by W/2, H/2)
    /// is densified: cloned when its largest scale is below `splitScale` metres, split in two otherwise.
    public var densifyGradient: Float = 1e-3
    public var splitScale: Float = 0.03
    /// Pruned: opacity below `pruneOpacity` or largest scale above `pruneScale` metres.
    public var pruneOpacity: Float = 0.005
    public var pruneScale: Float = 0.5
    /// Never more Gaussians than this (densification stops at the cap).
    public var maxGaussians = 200_000
    /// Depth range used for seeding and the depth loss.
    public var near: Float = 0.1
    public var far: Float = 8
    public var threads = Parallel.defaultThreads
    public var seed: UInt64 = 1

    public init() {}

    public func validate() throws {
        guard seedStride >= 1, densifyEvery >= 1, maxGaussians >= 1, maxTrainingWidth >= 16 else {
            throw ConfigError("seed stride, densify interval and Gaussian cap must be positive")
        }
        guard (0...1).contains(seedAlpha), seedOpacity > 0, seedOpacity < 1 else {
            throw ConfigError("seed alpha must be in [0, 1] and seed opacity in (0, 1)")
        }
        let rates = [meanLR, meanLRFinal, logScaleLR, rotationLR, opacityLR, colorLR]
        guard rates.allSatisfy({ $0 > 0 && $0.isFinite }), meanLRDecaySteps >= 1 else {
            throw ConfigError("learning rates must be positive and finite")
        }
        guard ssimWeight >= 0, depthWeight >= 0, near > 0, far > near else {
            throw ConfigError("loss weights must be >= 0 and 0 < near < far")
        }
    }
}

/// Losses of one appearance step (weights applied) and the Gaussian count after it.
public struct GaussianStepStats: Sendable, Equatable {
    public var l1: Float = 0
    public var ssim: Float = 0
    public var depth: Float = 0
    public var gaussians = 0
    public var total: Float { l1 + ssim + depth }
    public init() {}
}

/// A keyframe as the appearance branch needs it: 8-bit interleaved RGB and depth in metres, used where it lies in
/// [near, far]. At most `maxWidth` wide: the frame's own arrays (shared, not copied), or reduced by an integer factor.
public struct GaussianFrame: Sendable {
    public var index: Int
    public var camera: SplatCamera
    public var rgb: [UInt8]
    public var depth: [Float]
    public var near: Float, far: Float
    public var validDepth: Int

    public init(_ frame: Frame, near: Float, far: Float, maxWidth: Int = .max) {
        index = frame.index
        self.near = near; self.far = far
        let k = frame.intrinsics, f = max(1, (k.width + maxWidth - 1) / maxWidth)
        if f == 1 {
            camera = SplatCamera(T_W_C: frame.T_W_C, intrinsics: k)
            rgb = frame.rgb.data
            depth = frame.depth.data
        } else {
            camera = SplatCamera(T_W_C: frame.T_W_C, intrinsics: k.reduced(by: f))
            (rgb, depth) = FrameReduction.reduce(rgb: frame.rgb.data, depth: frame.depth.data, width: k.width,
                                                 height: k.height, factor: f, near: near, far: far)
        }
        validDepth = depth.reduce(0) { $0 + ($1.isFinite && $1 >= near && $1 <= far ? 1 : 0) }
    }

    /// The depth of pixel p if usable, else 0.
    @inline(__always) public func usableDepth(_ p: Int) -> Float {
        let d = depth[p]
        return d.isFinite && d >= near && d <= far ? d : 0
    }

    /// The colour as floats in [0, 1] (interleaved RGB) into `out`.
    public func color(into out: inout [Float]) {
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: rgb.lazy.map { Float($0) * (1 / 255) })
    }
}

extension SplatCamera {
    /// The camera of a posed frame (world -> camera = inverse of T_W_C).
    public init(T_W_C: RigidTransform, intrinsics k: Intrinsics, near: Float = 0.05) {
        let T = T_W_C.inverse
        let r = T.rotation
        let rows = [r.r0, r.r1, r.r2].flatMap { [Float($0.x), Float($0.y), Float($0.z)] }
        self.init(fx: Float(k.fx), fy: Float(k.fy), cx: Float(k.cx), cy: Float(k.cy), width: k.width, height: k.height,
                  rotation: rows, translation: SIMD3(Float(T.translation.x), Float(T.translation.y),
                                                     Float(T.translation.z)), near: near)
    }
}

/// Optimises a `GaussianSet` against keyframes (one class, one owner: the optimizer). Slots follow the geometry
/// trainer's (add appends, remove shifts down), so the online mapper addresses all trainers with the same slot.
public final class GaussianTrainer {
    public let config: GaussianTrainerConfig
    public internal(set) var gaussians = GaussianSet()
    public private(set) var frames: [GaussianFrame] = []
    public internal(set) var steps = 0
    var rng: SeededRNG
    /// Adam moments per group: means, logScales, rotations, opacityLogits, colors (one shared step count).
    var adam: [AdamState] = (0..<5).map { _ in AdamState(parameterCount: 0) }
    /// Densification statistics since the last densify: summed view-space gradient norms and visible counts.
    var gradientSum: [Float] = []
    var gradientCount: [Float] = []
    /// Scratch: the current step's target colour as floats.
    var target: [Float] = []

    public init(config: GaussianTrainerConfig) throws {
        try config.validate()
        self.config = config
        rng = SeededRNG(seed: config.seed ^ 0x6A55)
    }

    var options: SplatOptions { SplatOptions(threads: config.threads) }

    /// Adds a keyframe and (with `seeding`) seeds Gaussians on its unexplained surface; returns its slot.
    @discardableResult
    public func add(_ frame: Frame, seeding: Bool = true) -> Int {
        let f = GaussianFrame(frame, near: config.near, far: config.far, maxWidth: config.maxTrainingWidth)
        if seeding { seed(from: f) }
        frames.append(f)
        return frames.count - 1
    }

    /// Removes the frame in `slot`; later slots move down by one (its Gaussians stay).
    public func remove(slot: Int) {
        precondition(frames.indices.contains(slot), "GaussianTrainer.remove: no slot \(slot)")
        frames.remove(at: slot)
    }

    /// Renders colour, depth and alpha at any pose.
    public func render(T_W_C: RigidTransform, intrinsics: Intrinsics) -> SplatRender {
        GaussianSplatting.render(gaussians, camera: SplatCamera(T_W_C: T_W_C, intrinsics: intrinsics),
                                 options: options)
    }

    /// Back-projects every `seedStride`-th pixel of `f` whose depth the current Gaussians do not explain.
    func seed(from f: GaussianFrame) {
        let cam = f.camera, w = cam.width, h = cam.height, s = config.seedStride
        let current: SplatRender? = gaussians.count > 0 ? GaussianSplatting.render(gaussians, camera: cam,
                                                                                  options: options) : nil
        // camera -> world: p_W = R_CWᵀ (p_C - t_CW)
        let R = cam.rotation, t = cam.translation
        var add = GaussianSet()
        let capacity = config.maxGaussians - gaussians.count
        var added = 0
        for y in stride(from: s / 2, to: h, by: s) {
            for x in stride(from: s / 2, to: w, by: s) where added < capacity {
                let p = y * w + x, d = f.usableDepth(p)
                guard d > 0 else { continue }
                if let r = current {
                    let a = r.alpha[p]
                    let explained = a >= config.seedAlpha
                        && abs(r.depth[p] / a - d) <= config.seedDepthMetres + config.seedDepthRatio * d
                    if explained { continue }
                }
                let c = SIMD3<Float>((Float(x) - cam.cx) / cam.fx * d, (Float(y) - cam.cy) / cam.fy * d, d) - t
                let q = SIMD3<Float>(R[0] * c.x + R[3] * c.y + R[6] * c.z, R[1] * c.x + R[4] * c.y + R[7] * c.z,
                                     R[2] * c.x + R[5] * c.y + R[8] * c.z)
                // Isotropic, about 0.6 of the spacing of the seeded pixels at this depth, so neighbours overlap.
                let sigma = max(1e-3, 0.6 * Float(s) * d / cam.fx)
                add.append(mean: q, logScale: SIMD3(repeating: log(sigma)), rotation: SIMD4(1, 0, 0, 0),
                           opacityLogit: log(config.seedOpacity / (1 - config.seedOpacity)),
                           color: SIMD3(Float(f.rgb[3 * p]), Float(f.rgb[3 * p + 1]), Float(f.rgb[3 * p + 2])) / 255)
                added += 1
            }
        }
        append(add)
    }

    /// Appends Gaussians with zero Adam moments and statistics.
    func append(_ g: GaussianSet) {
        guard g.count > 0 else { return }
        gaussians.append(contentsOf: g)
        let widths = [3, 3, 4, 1, 3]
        for k in 0..<5 {
            adam[k].m += [Float](repeating: 0, count: widths[k] * g.count)
            adam[k].v += [Float](repeating: 0, count: widths[k] * g.count)
        }
        gradientSum += [Float](repeating: 0, count: g.count)
        gradientCount += [Float](repeating: 0, count: g.count)
    }

    /// One optimisation step on one keyframe drawn from `slots` (default: all).
    @discardableResult
    public func step(slots: [Int]? = nil) -> GaussianStepStats {
        let pool = slots ?? Array(frames.indices)
        guard !pool.isEmpty, gaussians.count > 0 else { return GaussianStepStats() }
        let f = frames[pool[Int(rng.next() % UInt64(pool.count))]]
        let cam = f.camera, n = cam.width * cam.height
        let r = GaussianSplatting.render(gaussians, camera: cam, options: options)

        var stats = GaussianStepStats()
        f.color(into: &target)
        var gradColor: [Float]
        (stats.l1, gradColor) = ImageLosses.l1WithGradient(r.color, target)
        if config.ssimWeight > 0 {
            let (ssim, g) = ImageLosses.ssimWithGradient(r.color, target, width: cam.width, height: cam.height,
                                                         channels: 3, threads: config.threads)
            stats.ssim = config.ssimWeight * (1 - ssim)
            for i in gradColor.indices { gradColor[i] -= config.ssimWeight * g[i] }
        }
        var gradDepth: [Float]?
        if config.depthWeight > 0, f.validDepth > 0 {
            var g = [Float](repeating: 0, count: n)
            let scale = config.depthWeight / Float(f.validDepth)
            var sum: Float = 0
            for p in 0..<n {
                let d = f.usableDepth(p)
                guard d > 0 else { continue }
                let e = r.depth[p] - d
                sum += abs(e)
                g[p] = e > 0 ? scale : (e < 0 ? -scale : 0)
            }
            stats.depth = sum * scale
            gradDepth = g
        }
        let grads = GaussianSplatting.backward(gaussians, camera: cam, render: r, gradColor: gradColor,
                                               gradDepth: gradDepth, gradAlpha: nil, options: options)
        steps += 1
        accumulate(grads.screenMeans, width: cam.width, height: cam.height)
        update(grads)
        if steps >= config.densifyFrom, steps % config.densifyEvery == 0 { densifyAndPrune() }
        stats.gaussians = gaussians.count
        return stats
    }

    /// Adds each visible Gaussian's view-space gradient norm (in NDC units) to the densification statistics.
    func accumulate(_ screen: [Float], width: Int, height: Int) {
        let sx = Float(width) / 2, sy = Float(height) / 2
        for i in 0..<gaussians.count {
            let gx = screen[2 * i] * sx, gy = screen[2 * i + 1] * sy
            guard gx != 0 || gy != 0 else { continue }
            gradientSum[i] += (gx * gx + gy * gy).squareRoot()
            gradientCount[i] += 1
        }
    }

    func update(_ g: GaussianGradients) {
        let t = min(1, Float(steps) / Float(config.meanLRDecaySteps))
        let meanLR = config.meanLR * pow(config.meanLRFinal / config.meanLR, t)
        let rates = [meanLR, config.logScaleLR, config.rotationLR, config.opacityLR, config.colorLR]
        for k in 0..<5 { adam[k].step += 1 }
        func apply(_ params: inout [Float], _ grads: [Float], _ k: Int) {
            let c = AdamConfig(learningRate: rates[k], beta1: 0.9, beta2: 0.999, epsilon: 1e-15)
            params.withUnsafeMutableBufferPointer { p in
                grads.withUnsafeBufferPointer { gp in
                    Adam.update(params: p.baseAddress!, grads: gp.baseAddress!, count: p.count, state: &adam[k],
                                config: c)
                }
            }
        }
        apply(&gaussians.means, g.means, 0)
        apply(&gaussians.logScales, g.logScales, 1)
        apply(&gaussians.rotations, g.rotations, 2)
        apply(&gaussians.opacityLogits, g.opacityLogits, 3)
        apply(&gaussians.colors, g.colors, 4)
    }

    /// Clone small / split large Gaussians with a large mean view-space gradient, then prune transparent or huge ones.
    public func densifyAndPrune() {
        let n = gaussians.count
        guard n > 0 else { return }
        var add = GaussianSet()
        var keep = [Bool](repeating: true, count: n)
        var budget = config.maxGaussians - n
        for i in 0..<n where gradientCount[i] > 0 && budget > 0 {
            guard gradientSum[i] / gradientCount[i] > config.densifyGradient else { continue }
            let g = gaussians.gaussian(i)
            let scale = SIMD3<Float>(exp(g.logScale.x), exp(g.logScale.y), exp(g.logScale.z))
            if scale.max() <= config.splitScale {
                add.append(g)
                budget -= 1
            } else if budget >= 1 {
                // Split: two samples from the Gaussian itself, scales divided by 1.6 (the 3DGS rule).
                let rot = Mat3(quaternion: SIMD4(Double(g.rotation[0]), Double(g.rotation[1]), Double(g.rotation[2]),
                                                 Double(g.rotation[3])))
                for _ in 0..<2 {
                    let z = Vec3(rng.gaussian(), rng.gaussian(), rng.gaussian()) * Vec3(Double(scale.x), Double(scale.y),
                                                                                       Double(scale.z))
                    let o = rot * z
                    var child = g
                    child.mean += SIMD3(Float(o.x), Float(o.y), Float(o.z))
                    child.logScale -= log(1.6)
                    add.append(child)
                }
                keep[i] = false
                budget -= 1
            }
        }
        for i in 0..<n {
            let opacity = 1 / (1 + exp(-gaussians.opacityLogits[i]))
            let s = max(gaussians.logScales[3 * i], gaussians.logScales[3 * i + 1], gaussians.logScales[3 * i + 2])
            if opacity < config.pruneOpacity || exp(s) > config.pruneScale { keep[i] = false }
        }
        compact(keep: keep)
        append(add)
        for i in gradientSum.indices { gradientSum[i] = 0; gradientCount[i] = 0 }
    }

    /// Keeps Gaussian i (and its moments and statistics) where keep[i].
    func compact(keep: [Bool]) {
        guard keep.contains(false) else { return }
        gaussians = gaussians.filtered(keep: keep)
        let widths = [3, 3, 4, 1, 3]
        for k in 0..<5 {
            adam[k].m = Self.filter(adam[k].m, width: widths[k], keep: keep)
            adam[k].v = Self.filter(adam[k].v, width: widths[k], keep: keep)
        }
        gradientSum = Self.filter(gradientSum, width: 1, keep: keep)
        gradientCount = Self.filter(gradientCount, width: 1, keep: keep)
    }

    static func filter(_ a: [Float], width: Int, keep: [Bool]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for (i, k) in keep.enumerated() where k { out.append(contentsOf: a[(width * i)..<(width * i + width)]) }
        return out
    }
}

/// One Gaussian's parameters (for densification and seeding).
public struct Gaussian: Sendable, Equatable {
    public var mean: SIMD3<Float>
    public var logScale: SIMD3<Float>
    public var rotation: SIMD4<Float>
    public var opacityLogit: Float
    public var color: SIMD3<Float>
}

extension GaussianSet {
    public func gaussian(_ i: Int) -> Gaussian {
        Gaussian(mean: SIMD3(means[3 * i], means[3 * i + 1], means[3 * i + 2]),
                 logScale: SIMD3(logScales[3 * i], logScales[3 * i + 1], logScales[3 * i + 2]),
                 rotation: SIMD4(rotations[4 * i], rotations[4 * i + 1], rotations[4 * i + 2], rotations[4 * i + 3]),
                 opacityLogit: opacityLogits[i],
                 color: SIMD3(colors[3 * i], colors[3 * i + 1], colors[3 * i + 2]))
    }

    public mutating func append(_ g: Gaussian) {
        append(mean: g.mean, logScale: g.logScale, rotation: g.rotation, opacityLogit: g.opacityLogit, color: g.color)
    }

    public mutating func append(mean: SIMD3<Float>, logScale: SIMD3<Float>, rotation: SIMD4<Float>,
                                opacityLogit: Float, color: SIMD3<Float>) {
        means += [mean.x, mean.y, mean.z]
        logScales += [logScale.x, logScale.y, logScale.z]
        rotations += [rotation[0], rotation[1], rotation[2], rotation[3]]
        opacityLogits.append(opacityLogit)
        colors += [color.x, color.y, color.z]
    }
}
