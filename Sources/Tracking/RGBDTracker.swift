import Foundation
import Kernels
import MapCore

/// Camera tracking for streams without poses (RGB-D odometry): coarse-to-fine alignment of each frame against a
/// reference keyframe, minimising jointly, in one Gauss-Newton system per iteration,
/// - a geometric term: projective point-to-plane ICP residuals n_r · (T p_c − v_r) (Newcombe et al., KinectFusion), and
/// - a photometric term: intensity residuals I_r(π(T p_c)) − I_c(p_c) (Steinbrücker et al., "Real-time visual odometry
///   from dense RGB-D images"; Kerl et al.), which pins the camera where geometry alone slides (along walls, floors),
/// each divided by its expected noise so both count on the same scale. A failure detector reports a frame that does not
/// fit; the reference is replaced by the current frame when the camera has moved far enough from it.
public struct RGBDTracker: Sendable {
    public struct Config: Sendable, Equatable {
        /// ICP iterations per pyramid level (each level halves the image), coarsest first.
        public var iterations: [Int] = [12, 10, 8, 8]
        /// Coarser levels (with the coarsest level's iteration count) are added in front of `iterations` until the
        /// coarsest image is at most this wide: the photometric term only converges over a few pixels of motion, so the
        /// coarsest level must be about as small whatever the image size (the synthetic room's 0.11 m per frame lost
        /// every frame at 320x240 with 4 levels, and none at 160x120).
        public var maxCoarsestWidth = 24
        /// Correspondences farther apart than this (metres, at the finest level; x2 per coarser level) or with
        /// normals more than `maxNormalAngle` degrees apart are rejected.
        public var maxDistance: Double = 0.05
        public var maxNormalAngle: Double = 30
        /// Depth used (metres).
        public var near: Float = 0.1
        public var far: Float = 6
        /// Expected noise of the geometric (metres) and photometric (grey level in [0, 1]) residuals: each residual is
        /// divided by its sigma, so the two terms are weighed against each other. Huber threshold in sigmas.
        public var geometricSigma: Double = 0.01
        public var photometricSigma: Double = 0.01
        public var huberSigmas: Double = 2
        /// The geometric sigma grows by this factor per coarser level: on small images, projective point-to-plane
        /// associations are poor and slide along planes, so the photometric term leads there.
        public var geometricSigmaGrowth: Double = 4
        /// A new reference keyframe after this much motion from the current one (fewer switches, less drift: on the
        /// synthetic room 0.1 m / 8 degrees gave 2.4 cm ATE, 0.35 m / 20 degrees 0.8 cm).
        public var keyframeTranslation: Double = 0.35
        public var keyframeRotationDegrees: Double = 20
        /// Failure: fewer than this fraction of the frame's valid pixels matched geometrically at the finest level,
        /// or an RMS point-to-plane residual above `maxResidual` metres.
        public var minInlierFraction: Double = 0.25
        public var maxResidual: Double = 0.02
        /// Threads for the pyramid and the normal equations (the result does not depend on it: sums run over a fixed
        /// number of row chunks, in order).
        public var threads: Int = Parallel.defaultThreads
        public init() {}

        /// Iterations per level, coarsest first, for images `width` pixels wide (see `maxCoarsestWidth`).
        public func schedule(width: Int) -> [Int] {
            var out = iterations
            while out.count < 8, (width >> (out.count - 1)) > maxCoarsestWidth { out.insert(iterations[0], at: 0) }
            return out
        }

        /// Throws when a value is unusable.
        public func validate() throws {
            let ok = !iterations.isEmpty && iterations.allSatisfy { $0 >= 0 } && maxDistance > 0 && near > 0
                && far > near && geometricSigma > 0 && photometricSigma > 0 && huberSigmas > 0
                && (0...1).contains(minInlierFraction) && maxResidual > 0 && threads >= 1
            guard ok else {
                throw MapError(.badArgument, "tracker config has an unusable value (\(self)); use positive sigmas and distances, near < far, at least one level")
            }
        }
    }

    /// What tracking one frame gave.
    public struct Result: Sendable, Equatable {
        public var T_W_C: RigidTransform
        public var inlierFraction: Double
        public var residual: Double
        public var lost: Bool
        public var newKeyframe: Bool
    }

    /// Where the time of the last `track` call went (seconds): building the current frame's pyramid, and aligning it.
    public struct Timing: Sendable, Equatable {
        public var pyramid: Double = 0
        public var alignment: Double = 0
    }

    public let config: Config
    public private(set) var lastTiming = Timing()
    var reference: Pyramid?
    var T_W_R = RigidTransform.identity
    var lastPose: RigidTransform?
    var velocity = RigidTransform.identity

    public init(config: Config = Config()) { self.config = config }

    /// Tracks a frame: `depth` (metres, 0 = none) and `rgb` (any size; resampled to the depth's) seen with
    /// `intrinsics` (of the depth image). The first frame defines the reference at `initialPose`. A lost frame gets
    /// the predicted pose (constant velocity, which carries on to the next frame) and does not touch the reference.
    public mutating func track(depth: DepthImage, rgb: RGBImage, intrinsics k: Intrinsics,
                               initialPose: RigidTransform = .identity) -> Result {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let iterations = config.schedule(width: depth.width)
        let current = Pyramid(depth: depth, rgb: rgb, intrinsics: k, levels: iterations.count,
                              near: config.near, far: config.far, threads: config.threads)
        let t1 = DispatchTime.now().uptimeNanoseconds
        lastTiming.pyramid = Double(t1 - t0) * 1e-9
        defer { lastTiming.alignment = Double(DispatchTime.now().uptimeNanoseconds - t1) * 1e-9 }
        guard let reference, let lastPose else {
            self.reference = current
            T_W_R = initialPose
            self.lastPose = initialPose
            return Result(T_W_C: initialPose, inlierFraction: 1, residual: 0, lost: false, newKeyframe: true)
        }
        // Constant-velocity prediction, then alignment of the current frame to the reference.
        let predicted = lastPose * velocity
        var T_R_C = T_W_R.inverse * predicted
        var inliers = 0.0, residual = 0.0
        let levels = iterations.count
        for level in stride(from: levels - 1, through: 0, by: -1) {
            let maxDistance = config.maxDistance * pow(2, Double(level))
            for _ in 0..<iterations[levels - 1 - level] {
                let step = Self.solveStep(current: current.levels[level], reference: reference.levels[level],
                                          T_R_C: T_R_C, maxDistance: maxDistance,
                                          minCos: cos(config.maxNormalAngle * .pi / 180), config: config,
                                          geometricSigma: config.geometricSigma * pow(config.geometricSigmaGrowth, Double(level)))
                inliers = step.inlierFraction; residual = step.rms
                guard let xi = step.xi else { break }
                T_R_C = (Self.exp(xi) * T_R_C).orthonormalized()
                if length(SIMD3(xi[0], xi[1], xi[2])) + length(SIMD3(xi[3], xi[4], xi[5])) < 1e-6 { break }
            }
        }
        // The statistics of the final pose.
        let final = Self.solveStep(current: current.levels[0], reference: reference.levels[0], T_R_C: T_R_C,
                                   maxDistance: config.maxDistance, minCos: cos(config.maxNormalAngle * .pi / 180),
                                   config: config, geometricSigma: config.geometricSigma, statisticsOnly: true)
        inliers = final.inlierFraction; residual = final.rms
        let pose = (T_W_R * T_R_C).orthonormalized()
        let lost = !(inliers >= config.minInlierFraction && residual <= config.maxResidual) || !pose.isRigid()
        if lost {
            // The motion model carries on through lost frames, so the next frame is predicted where the camera
            // should be by then (a short blackout does not leave the guess frames behind).
            self.lastPose = predicted
            return Result(T_W_C: predicted, inlierFraction: inliers, residual: residual, lost: true, newKeyframe: false)
        }
        velocity = lastPose.inverse * pose
        self.lastPose = pose
        let moved = T_R_C.translation, angle = T_R_C.rotationAngle * 180 / .pi
        let newKeyframe = length(moved) >= config.keyframeTranslation || angle >= config.keyframeRotationDegrees
        if newKeyframe { self.reference = current; T_W_R = pose }
        return Result(T_W_C: pose, inlierFraction: inliers, residual: residual, lost: false, newKeyframe: newKeyframe)
    }

    // MARK: - One Gauss-Newton step

    struct Step { var xi: [Double]?; var inlierFraction: Double; var rms: Double }

    /// Row chunks the normal equations are summed over: a fixed number, so the sum order (and the result) does not
    /// depend on the thread count.
    static let chunkCount = 16
    /// Per chunk: 21 entries of H's upper triangle (row-major), 6 of g, then sse, geometric, valid, photometric counts.
    static let chunkStride = 32

    /// Linearises both residuals around T_R_C (left increment exp(ξ), ξ = (ω, t)) and solves the 6x6 normal
    /// equations. `inlierFraction` and `rms` describe the geometric term (the failure detector's figures); with
    /// `statisticsOnly` nothing else is computed (xi is nil).
    static func solveStep(current c: Level, reference r: Level, T_R_C: RigidTransform, maxDistance: Double,
                          minCos: Double, config: Config, geometricSigma: Double, damping: Double = 0.1,
                          maxStep: Double = 0.05, statisticsOnly: Bool = false) -> Step {
        let h = c.height
        let chunks = min(chunkCount, max(1, h))
        var partial = [Double](repeating: 0, count: chunks * chunkStride)
        let R = T_R_C.rotation
        let r0 = SIMD3<Float>(R.r0), r1 = SIMD3<Float>(R.r1), r2 = SIMD3<Float>(R.r2), t = SIMD3<Float>(T_R_C.translation)
        let params = StepParameters(maxDistance: Float(maxDistance), minCos: Float(minCos), sg: 1 / geometricSigma,
                                    si: 1 / config.photometricSigma, huber: config.huberSigmas,
                                    statisticsOnly: statisticsOnly)
        partial.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            Parallel.forEachChunk(count: chunks, threads: config.threads) { _, range in
                for chunk in range {
                    let rows = (chunk * h / chunks)..<((chunk + 1) * h / chunks)
                    accumulateRows(rows, current: c, reference: r, r0: r0, r1: r1, r2: r2, t: t, params: params,
                                   into: base + chunk * chunkStride)
                }
            }
        }
        // Chunks summed in order (deterministic).
        var sums = [Double](repeating: 0, count: chunkStride)
        for chunk in 0..<chunks { for m in 0..<chunkStride { sums[m] += partial[chunk * chunkStride + m] } }
        let sse = sums[27], n = sums[28], valid = sums[29], photometric = sums[30]
        let fraction = valid > 0 ? n / valid : 0
        let rms = n > 0 ? (sse / n).squareRoot() : .infinity
        guard !statisticsOnly, n + photometric >= 12 else { return Step(xi: nil, inlierFraction: fraction, rms: rms) }
        var H = [Double](repeating: 0, count: 36)
        var m = 0
        for a in 0..<6 { for b in a..<6 { H[a * 6 + b] = sums[m]; H[b * 6 + a] = sums[m]; m += 1 } }
        let g = Array(sums[21..<27])
        // Levenberg-Marquardt damping of the diagonal: directions the data barely constrain take small steps.
        for a in 0..<6 { H[a * 6 + a] *= 1 + damping }
        guard var xi = solve6(H, g.map { -$0 }) else { return Step(xi: nil, inlierFraction: fraction, rms: rms) }
        // At most `maxStep` metres / radians per iteration (far from the answer the associations are poor).
        let size = max(length(SIMD3(xi[0], xi[1], xi[2])), length(SIMD3(xi[3], xi[4], xi[5])))
        if size > maxStep { xi = xi.map { $0 * maxStep / size } }
        return Step(xi: xi, inlierFraction: fraction, rms: rms)
    }

    struct StepParameters {
        var maxDistance: Float, minCos: Float, sg: Double, si: Double, huber: Double, statisticsOnly: Bool
    }

    /// The residuals of the current frame's rows `rows`, summed (in row order) into `out` (`chunkStride` values).
    static func accumulateRows(_ rows: Range<Int>, current c: Level, reference r: Level, r0: SIMD3<Float>,
                               r1: SIMD3<Float>, r2: SIMD3<Float>, t: SIMD3<Float>, params: StepParameters,
                               into out: UnsafeMutablePointer<Double>) {
        let w = r.width, h = r.height, cw = c.width
        let fx = r.fx, fy = r.fy, cx = r.cx, cy = r.cy
        let maxDistance = params.maxDistance, maxDistance2 = maxDistance * maxDistance, minCos = params.minCos
        let sg = params.sg, si = params.si, huber = params.huber
        // H rows (upper triangle used) and g.
        var h0 = SIMD8<Double>(), h1 = SIMD8<Double>(), h2 = SIMD8<Double>(), h3 = SIMD8<Double>()
        var h4 = SIMD8<Double>(), h5 = SIMD8<Double>(), g = SIMD8<Double>()
        var n = 0, valid = 0, sse = 0.0, photometric = 0
        @inline(__always) func accumulate(_ J: SIMD8<Double>, _ e: Double) {
            // Huber: residuals beyond `huber` sigmas count linearly.
            let weight = abs(e) <= huber ? 1 : huber / abs(e)
            let wJ = weight * J
            g += wJ * e
            h0 += wJ[0] * J; h1 += wJ[1] * J; h2 += wJ[2] * J; h3 += wJ[3] * J; h4 += wJ[4] * J; h5 += wJ[5] * J
        }
        c.vertices.withUnsafeBufferPointer { cv in
        c.normals.withUnsafeBufferPointer { cn in
        c.mask.withUnsafeBufferPointer { cm in
        c.intensity.withUnsafeBufferPointer { ci in
        r.vertices.withUnsafeBufferPointer { rv in
        r.normals.withUnsafeBufferPointer { rn in
        r.mask.withUnsafeBufferPointer { rm in
        r.image.withUnsafeBufferPointer { rimg in
            for y in rows {
                for i in (y * cw)..<((y + 1) * cw) {
                    let cmask = cm[i]
                    guard cmask & 1 != 0 else { continue }
                    valid += 1
                    let vc = cv[i]
                    let p = SIMD3<Float>((r0 * vc).sum(), (r1 * vc).sum(), (r2 * vc).sum()) + t
                    guard p.z > 1e-3 else { continue }
                    let iz = 1 / p.z
                    let uf = fx * p.x * iz + cx, vf = fy * p.y * iz + cy
                    guard uf > -0.5, vf > -0.5, uf < Float(w) - 0.5, vf < Float(h) - 0.5 else { continue }
                    let u = Int(uf.rounded()), v = Int(vf.rounded())
                    guard u >= 0, v >= 0, u < w, v < h else { continue }
                    let j = v * w + u
                    let rmask = rm[j]
                    guard rmask & 1 != 0 else { continue }
                    let vr = rv[j]
                    let pd = SIMD3<Double>(p)
                    // Geometric: point-to-plane (KinectFusion ICP).
                    if cmask & 2 != 0, rmask & 2 != 0 {
                        let nc = cn[i], nr = rn[j]
                        let d = p - vr
                        let rnc = SIMD3<Float>((r0 * nc).sum(), (r1 * nc).sum(), (r2 * nc).sum())
                        if (d * d).sum() <= maxDistance2, (rnc * nr).sum() >= minCos {
                            let e = Double((nr * d).sum())
                            if !params.statisticsOnly {
                                let nrd = SIMD3<Double>(nr), a = cross(pd, nrd) * sg, b = nrd * sg
                                accumulate(SIMD8(a.x, a.y, a.z, b.x, b.y, b.z, 0, 0), e * sg)
                            }
                            sse += e * e
                            n += 1
                        }
                    }
                    if params.statisticsOnly { continue }
                    // Photometric: I_r(π(T p_c)) − I_c(p_c), where the reference sees this point (no occlusion).
                    guard abs(p.z - vr.z) <= maxDistance, uf >= 0, vf >= 0, uf < Float(w - 1), vf < Float(h - 1) else { continue }
                    let x0 = Int(uf), y0 = Int(vf), ax = uf - Float(x0), ay = vf - Float(y0)
                    let q = y0 * w + x0
                    // Intensity and gradients (x, y) bilinearly at once.
                    let top = rimg[q] + ax * (rimg[q + 1] - rimg[q])
                    let bottom = rimg[q + w] + ax * (rimg[q + w + 1] - rimg[q + w])
                    let s = top + ay * (bottom - top)
                    let e = Double(s.x) - Double(ci[i])
                    let gx = Double(s.y), gy = Double(s.z)
                    // ∂I/∂p = ∇I · ∂π/∂p; the point moves by ω × p + t.
                    let izd = 1 / pd.z, fxd = Double(fx), fyd = Double(fy)
                    let a = SIMD3<Double>(gx * fxd * izd, gy * fyd * izd, -(gx * fxd * pd.x + gy * fyd * pd.y) * izd * izd)
                    let ja = cross(pd, a) * si, jb = a * si
                    accumulate(SIMD8(ja.x, ja.y, ja.z, jb.x, jb.y, jb.z, 0, 0), e * si)
                    photometric += 1
                }
            }
        }}}}}}}}
        var m = 0
        for (a, row) in [h0, h1, h2, h3, h4, h5].enumerated() { for b in a..<6 { out[m] = row[b]; m += 1 } }
        for a in 0..<6 { out[21 + a] = g[a] }
        out[27] = sse; out[28] = Double(n); out[29] = Double(valid); out[30] = Double(photometric)
    }

    /// Solves H x = b (symmetric positive definite 6x6) by Cholesky; nil when H is (nearly) singular.
    static func solve6(_ H: [Double], _ b: [Double]) -> [Double]? {
        var L = [Double](repeating: 0, count: 36)
        for i in 0..<6 {
            for j in 0...i {
                var s = H[i * 6 + j]
                for m in 0..<j { s -= L[i * 6 + m] * L[j * 6 + m] }
                if i == j {
                    guard s > 1e-12 * max(1, H[0] + H[7] + H[14] + H[21] + H[28] + H[35]) else { return nil }
                    L[i * 6 + i] = s.squareRoot()
                } else {
                    L[i * 6 + j] = s / L[j * 6 + j]
                }
            }
        }
        var y = [Double](repeating: 0, count: 6), x = y
        for i in 0..<6 {
            var s = b[i]
            for m in 0..<i { s -= L[i * 6 + m] * y[m] }
            y[i] = s / L[i * 6 + i]
        }
        for i in stride(from: 5, through: 0, by: -1) {
            var s = y[i]
            for m in (i + 1)..<6 { s -= L[m * 6 + i] * x[m] }
            x[i] = s / L[i * 6 + i]
        }
        return x
    }

    /// The rigid motion of twist ξ = (ω, t) (rotation by |ω| about ω, then translation t: a first-order step).
    static func exp(_ xi: [Double]) -> RigidTransform {
        let w = Vec3(xi[0], xi[1], xi[2]), angle = length(w)
        let R = angle > 1e-12 ? Mat3(axis: w / angle, angle: angle) : .identity
        return RigidTransform(rotation: R, translation: Vec3(xi[3], xi[4], xi[5]))
    }

    // MARK: - Vertex / normal / intensity pyramids

    /// One pyramid level, in flat Float buffers; `mask` bit 0 marks a vertex, bit 1 a normal (else zero vectors).
    struct Level: Sendable {
        var intrinsics: Intrinsics
        var width: Int, height: Int
        var fx: Float, fy: Float, cx: Float, cy: Float
        var vertices: [SIMD3<Float>]
        var normals: [SIMD3<Float>]
        var mask: [UInt8]
        /// Grey (mean of RGB / 255) per pixel of this level.
        var intensity: [Float]
        /// (grey, its central-difference gradients x, y, 0) per pixel, for one bilinear lookup of all three.
        var image: [SIMD4<Float>]
    }

    /// Calls `body` on `chunkCount` contiguous row ranges of `0..<height`, on up to `threads` threads.
    static func forEachRowChunk(height: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        let chunks = min(chunkCount, max(1, height))
        Parallel.forEachChunk(count: chunks, threads: threads) { _, range in
            for chunk in range { body((chunk * height / chunks)..<((chunk + 1) * height / chunks)) }
        }
    }

    struct Pyramid: Sendable {
        var levels: [Level]

        init(depth: DepthImage, rgb: RGBImage, intrinsics k: Intrinsics, levels count: Int, near: Float, far: Float,
             threads: Int = 1) {
            var w = depth.width, h = depth.height, kk = k
            var d = Self.smoothed(depth.data.map { $0.isFinite && $0 >= near && $0 <= far ? $0 : 0 }, width: w,
                                  height: h, threads: threads)
            var grey = Self.blurred(Self.grey(rgb, width: w, height: h), width: w, height: h)
            var out: [Level] = []
            for level in 0..<count {
                if level > 0 {
                    // 2x2 blocks: the mean depth where all usable depths agree within 3 %, else none; mean grey.
                    let w2 = w / 2, h2 = h / 2
                    var d2 = [Float](repeating: 0, count: w2 * h2), g2 = d2
                    for y in 0..<h2 {
                        for x in 0..<w2 {
                            let a = (2 * y) * w + 2 * x
                            g2[y * w2 + x] = (grey[a] + grey[a + 1] + grey[a + w] + grey[a + w + 1]) / 4
                            var lo = Float.infinity, hi: Float = 0, sum: Float = 0, n: Float = 0
                            let q = SIMD4<Float>(d[a], d[a + 1], d[a + w], d[a + w + 1])
                            for m in 0..<4 where q[m] > 0 {
                                lo = min(lo, q[m]); hi = max(hi, q[m]); sum += q[m]; n += 1
                            }
                            guard n > 0, hi - lo <= 0.03 * lo else { continue }
                            d2[y * w2 + x] = sum / n
                        }
                    }
                    d = d2; grey = g2; w = w2; h = h2
                    kk = Intrinsics(fx: kk.fx / 2, fy: kk.fy / 2, cx: (kk.cx + 0.5) / 2 - 0.5,
                                    cy: (kk.cy + 0.5) / 2 - 0.5, width: w, height: h)
                }
                out.append(Self.level(depth: d, grey: grey, width: w, height: h, intrinsics: kk, threads: threads))
            }
            levels = out
        }

        /// Vertices, normals, grey gradients of one level.
        static func level(depth d: [Float], grey: [Float], width w: Int, height h: Int, intrinsics kk: Intrinsics,
                          threads: Int) -> Level {
            var vertices = [SIMD3<Float>](repeating: .zero, count: w * h)
            var normals = vertices
            var mask = [UInt8](repeating: 0, count: w * h)
            var image = [SIMD4<Float>](repeating: .zero, count: w * h)
            vertices.withUnsafeMutableBufferPointer { vb in
                let vp = vb.baseAddress!
                mask.withUnsafeMutableBufferPointer { mb in
                    let mp = mb.baseAddress!
                    forEachRowChunk(height: h, threads: threads) { rows in
                        for y in rows {
                            for x in 0..<w where d[y * w + x] > 0 {
                                vp[y * w + x] = SIMD3<Float>(kk.unproject(u: Double(x), v: Double(y), depth: Double(d[y * w + x])))
                                mp[y * w + x] = 1
                            }
                        }
                    }
                    // Normals from the right and lower neighbours, pointing to the camera; none across depth edges.
                    normals.withUnsafeMutableBufferPointer { nb in
                        let np = nb.baseAddress!
                        forEachRowChunk(height: max(0, h - 1), threads: threads) { rows in
                            for y in rows {
                                for x in 0..<(w - 1) {
                                    let i = y * w + x
                                    guard mp[i] & 1 != 0, mp[i + 1] & 1 != 0, mp[i + w] & 1 != 0 else { continue }
                                    let p = vp[i], ea = vp[i + 1] - p, eb = vp[i + w] - p
                                    let limit = 0.05 * p.z + 0.01
                                    guard length(ea) < limit, length(eb) < limit else { continue }
                                    var nrm = cross(ea, eb)
                                    let l = length(nrm)
                                    guard l > 1e-12 else { continue }
                                    nrm /= l
                                    if dot(nrm, p) > 0 { nrm = -nrm }
                                    np[i] = nrm
                                    mp[i] |= 2
                                }
                            }
                        }
                    }
                }
            }
            for i in 0..<(w * h) { image[i].x = grey[i] }
            for y in 1..<max(1, h - 1) {
                for x in 1..<max(1, w - 1) {
                    let i = y * w + x
                    image[i].y = (grey[i + 1] - grey[i - 1]) / 2
                    image[i].z = (grey[i + w] - grey[i - w]) / 2
                }
            }
            return Level(intrinsics: kk, width: w, height: h, fx: Float(kk.fx), fy: Float(kk.fy), cx: Float(kk.cx),
                         cy: Float(kk.cy), vertices: vertices, normals: normals, mask: mask, intensity: grey,
                         image: image)
        }

        /// Grey = mean of R, G, B / 255, sampled at the depth image's pixels (nearest, when the sizes differ).
        static func grey(_ rgb: RGBImage, width w: Int, height h: Int) -> [Float] {
            var out = [Float](repeating: 0, count: w * h)
            guard rgb.width > 0, rgb.height > 0, rgb.channels >= 3 else { return out }
            let columns = (0..<w).map { x in min(rgb.width - 1, Int((Double(x) + 0.5) * Double(rgb.width) / Double(w))) }
            rgb.data.withUnsafeBufferPointer { src in
                for y in 0..<h {
                    let sy = min(rgb.height - 1, Int((Double(y) + 0.5) * Double(rgb.height) / Double(h)))
                    for x in 0..<w {
                        let s = (sy * rgb.width + columns[x]) * rgb.channels
                        out[y * w + x] = (Float(src[s]) + Float(src[s + 1]) + Float(src[s + 2])) / (3 * 255)
                    }
                }
            }
            return out
        }

        /// 3x3 binomial blur (1 2 1)², edges clamped: smoother gradients, less pixel noise.
        static func blurred(_ a: [Float], width w: Int, height h: Int) -> [Float] {
            var tmp = a, out = a
            for y in 0..<h {
                for x in 0..<w {
                    let l = a[y * w + max(0, x - 1)], r = a[y * w + min(w - 1, x + 1)]
                    tmp[y * w + x] = (l + 2 * a[y * w + x] + r) / 4
                }
            }
            for y in 0..<h {
                for x in 0..<w {
                    let u = tmp[max(0, y - 1) * w + x], d = tmp[min(h - 1, y + 1) * w + x]
                    out[y * w + x] = (u + 2 * tmp[y * w + x] + d) / 4
                }
            }
            return out
        }

        /// Edge-aware 5x5 mean (a cheap bilateral filter): each valid pixel becomes the mean of the valid neighbours
        /// within 3 % of its depth, so sensor noise is averaged without blurring across depth edges.
        static func smoothed(_ d: [Float], width w: Int, height h: Int, threads: Int = 1) -> [Float] {
            var out = [Float](repeating: 0, count: d.count)
            d.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { ob in
                    let op = ob.baseAddress!
                    forEachRowChunk(height: h, threads: threads) { rows in
                        for y in rows {
                            for x in 0..<w {
                                let c = src[y * w + x]
                                guard c > 0 else { continue }
                                var sum: Float = 0, n: Float = 0
                                for j in max(0, y - 2)...min(h - 1, y + 2) {
                                    for i in max(0, x - 2)...min(w - 1, x + 2) {
                                        let v = src[j * w + i]
                                        if v > 0 && abs(v - c) <= 0.03 * c { sum += v; n += 1 }
                                    }
                                }
                                op[y * w + x] = sum / n
                            }
                        }
                    }
                }
            }
            return out
        }
    }
}

extension RigidTransform {
    /// The nearest rotation (Gram-Schmidt on the rows), so products of many steps stay rigid.
    func orthonormalized() -> RigidTransform {
        let r = rotation
        let a = normalize(r.r0), b = normalize(r.r1 - dot(r.r1, a) * a), c = cross(a, b)
        return RigidTransform(rotation: Mat3(rows: a, b, c), translation: translation)
    }
}

extension RGBDTracker {
    /// Absolute trajectory error: RMSE (metres) of the camera positions of `estimated` against `reference` (same
    /// length and order, same world frame: both start at the same pose, so no alignment is applied).
    public static func ate(_ estimated: [RigidTransform], _ reference: [RigidTransform]) -> Double {
        precondition(estimated.count == reference.count && !estimated.isEmpty, "ATE needs two equal, non-empty trajectories")
        let sse = zip(estimated, reference).reduce(0.0) { s, p in
            let d = p.0.translation - p.1.translation
            return s + dot(d, d)
        }
        return (sse / Double(estimated.count)).squareRoot()
    }
}

// Float twins of MapCore's Vec3 helpers, for the tracker's Float buffers.
@inline(__always) func dot(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> Float { (a * b).sum() }
@inline(__always) func length(_ a: SIMD3<Float>) -> Float { dot(a, a).squareRoot() }
@inline(__always) func cross(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> SIMD3<Float> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}
