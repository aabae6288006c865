import Foundation

/// A pinhole camera for splatting: OpenCV convention (+z forward, +x right, +y down), pixel centres at integer
/// (u, v) with u = fx x / z + cx (as `Intrinsics.project`).
public struct SplatCamera: Sendable, Equatable {
    public var fx: Float, fy: Float, cx: Float, cy: Float
    public var width: Int, height: Int
    /// 9 values, row-major R_CW (world -> camera).
    public var rotation: [Float]
    /// t_CW, so p_C = R_CW p_W + t_CW (metres).
    public var translation: SIMD3<Float>
    /// Gaussians whose centre has view depth < near (metres) are culled.
    public var near: Float

    public init(fx: Float, fy: Float, cx: Float, cy: Float, width: Int, height: Int, rotation: [Float],
                translation: SIMD3<Float>, near: Float = 0.05) {
        self.fx = fx; self.fy = fy; self.cx = cx; self.cy = cy
        self.width = width; self.height = height
        self.rotation = rotation; self.translation = translation; self.near = near
    }
}

/// N anisotropic 3D Gaussians, struct-of-arrays.
public struct GaussianSet: Sendable, Equatable {
    /// 3N world positions (metres).
    public var means: [Float]
    /// 3N, scale = exp(logScale) (metres).
    public var logScales: [Float]
    /// 4N quaternions (w, x, y, z), unnormalised; the kernel normalises (gradients go through the normalisation).
    public var rotations: [Float]
    /// N, opacity = sigmoid(logit).
    public var opacityLogits: [Float]
    /// 3N RGB (SH degree 0 as a plain colour), used as is (not clamped).
    public var colors: [Float]

    public var count: Int { opacityLogits.count }

    public init() { means = []; logScales = []; rotations = []; opacityLogits = []; colors = [] }

    public init(means: [Float], logScales: [Float], rotations: [Float], opacityLogits: [Float], colors: [Float]) {
        self.means = means; self.logScales = logScales; self.rotations = rotations
        self.opacityLogits = opacityLogits; self.colors = colors
    }

    public mutating func append(contentsOf other: GaussianSet) {
        means += other.means; logScales += other.logScales; rotations += other.rotations
        opacityLogits += other.opacityLogits; colors += other.colors
    }

    /// Keeps Gaussian i where keep[i] (keep has `count` entries).
    public func filtered(keep: [Bool]) -> GaussianSet {
        precondition(keep.count == count, "GaussianSet.filtered: \(keep.count) flags for \(count) Gaussians")
        var out = GaussianSet()
        let n = keep.reduce(0) { $0 + ($1 ? 1 : 0) }
        out.means.reserveCapacity(3 * n); out.logScales.reserveCapacity(3 * n); out.rotations.reserveCapacity(4 * n)
        out.opacityLogits.reserveCapacity(n); out.colors.reserveCapacity(3 * n)
        for i in 0..<count where keep[i] {
            out.means += means[(3 * i)..<(3 * i + 3)]
            out.logScales += logScales[(3 * i)..<(3 * i + 3)]
            out.rotations += rotations[(4 * i)..<(4 * i + 4)]
            out.opacityLogits.append(opacityLogits[i])
            out.colors += colors[(3 * i)..<(3 * i + 3)]
        }
        return out
    }

    /// True when every array has the length `count` asks for.
    public var isConsistent: Bool {
        let n = count
        return means.count == 3 * n && logScales.count == 3 * n && rotations.count == 4 * n && colors.count == 3 * n
    }
}

public struct SplatOptions: Sendable {
    /// Colour behind everything (added with the final transmittance).
    public var background: SIMD3<Float> = .zero
    /// Tile edge in pixels. The result does not depend on it (the culling box is exact, see `GaussianSplatting`).
    public var tileSize: Int = 16
    public var threads: Int = Parallel.defaultThreads

    public init(background: SIMD3<Float> = .zero, tileSize: Int = 16, threads: Int = Parallel.defaultThreads) {
        self.background = background; self.tileSize = tileSize; self.threads = threads
    }
}

/// The images of `GaussianSplatting.render` and the state its backward needs.
public struct SplatRender: Sendable {
    public let width: Int, height: Int
    /// 3*W*H, interleaved RGB, row-major; includes background * final transmittance.
    public var color: [Float]
    /// W*H, expected depth sum_i w_i z_i (z = view depth of the Gaussian's centre), not normalised.
    public var depth: [Float]
    /// W*H, sum_i w_i = 1 - final transmittance.
    public var alpha: [Float]
    /// N, half-extent in pixels of each Gaussian's screen box (ceil), 0 when culled (3DGS `radii`; > 0 = visible).
    public let radii: [Int32]
    /// Number of (Gaussian, pixel) pairs composited (alpha >= 1/255, before early termination).
    public let composites: Int

    // Backward state.
    let tileSize: Int
    let gaussianCount: Int
    /// Per Gaussian, `GaussianSplatting.packedWidth` floats: u, v, power coefficients (A, B, C), opacity, rgb, z,
    /// power floor (see `GaussianSplatting.preprocess`).
    let packed: [Float]
    /// Per Gaussian x0, x1, y0, y1: inclusive pixel box, clipped to the image.
    let boxes: [Int32]
    /// Tile t lists Gaussians tileList[tileStart[t]..<tileStart[t+1]], front to back.
    let tileStart: [Int32]
    let tileList: [Int32]
    /// Per pixel: final transmittance and the number of the tile's list entries up to its last contributor.
    let finalT: [Float]
    let lastCount: [Int32]
    /// 4*W*H: per pixel Σ w rgb and Σ w z (before the background), so backward does not trust the public images.
    let sums: [Float]
}

/// dL/d(parameters) of one render, laid out like `GaussianSet`.
public struct GaussianGradients: Sendable {
    public var means: [Float], logScales: [Float], rotations: [Float], opacityLogits: [Float], colors: [Float]
    /// 2N: dL/d(projected 2D mean) in pixels, for densification (the trainer uses its norm).
    public var screenMeans: [Float]
}

/// CPU 3D Gaussian splatting (Kerbl et al. 2023), forward and backward.
///
/// Per Gaussian (projection, "preprocess"):
///     Σ = R S Sᵀ Rᵀ,  R from the normalised quaternion, S = diag(exp(logScale))     // 3DGS covariance
///     p_C = R_CW p_W + t_CW;  culled when z < near
///     (u, v) = (fx x/z + cx, fy y/z + cy)
///     J = [[fx/z, 0, -fx x'/z²], [0, fy/z, -fy y'/z²]],  x'/z, y'/z = x/z, y/z clamped to the image widened by
///         15 % on each side (1.3x the field of view when the principal point is centred, as 3DGS)
///     Σ' = J R_CW Σ R_CWᵀ Jᵀ + 0.3 I                                                  // EWA splatting + low-pass
///     conic = Σ'⁻¹,  opacity o = sigmoid(logit)
/// Per pixel (u_p, v_p), Gaussians in depth order (stable: ties by index), d = (u, v) - (u_p, v_p):
///     α = min(0.99, o exp(-½ dᵀ conic d));  skipped when α < 1/255                 // 3DGS alpha blending
///     w = α T,  T ← T (1 - α), stopping before the Gaussian that would bring T below 1e-4
///     colour = Σ w c + T bg,  depth = Σ w z,  alpha = 1 - T
///
/// Screen extent (a deviation from 3DGS's 3-sigma radius, chosen so tiling changes nothing): α >= 1/255 needs
/// dᵀ conic d <= 2 ln(255 o), an ellipse whose axis-aligned half-extents are sqrt(2 ln(255 o) Σ'_xx) and
/// sqrt(2 ln(255 o) Σ'_yy). That box (clipped to the image) is where a Gaussian is binned and evaluated, so nothing
/// above the threshold is ever cut: the result equals compositing every Gaussian at every pixel, for any tile size.
/// Gaussians with o < 1/255 or whose box misses the image are culled.
///
/// The test α >= 1/255 is made on the power (power >= -ln(255 o), the same inequality), so it does not depend on the
/// vectorised exp (`expLanes`, < 1e-7 relative on [-6, 0], checked at every float); forward and backward run the same per-pixel arithmetic, so the
/// backward repeats every decision of the forward exactly.
///
/// Tiles (tileSize² px) are independent in the forward pass and split across threads (tile k to worker k mod t),
/// so the images do not depend on the thread count. Backward accumulates per-Gaussian screen-space gradients in
/// per-worker buffers summed in worker order (deterministic for a given thread count), then runs the chain rule
/// through the projection per Gaussian.
public enum GaussianSplatting {
    static let alphaMin: Float = 1 / 255
    static let alphaMax: Float = 0.99
    static let transmittanceMin: Float = 1e-4
    static let lowPass: Float = 0.3
    /// Fraction of the image added on each side before the Jacobian's x/z, y/z are clamped.
    static let jacobianMargin: Float = 0.15
    static let packedWidth = 12

    public static func render(_ g: GaussianSet, camera: SplatCamera, options: SplatOptions = .init()) -> SplatRender {
        precondition(g.isConsistent, "GaussianSplatting.render: GaussianSet arrays disagree with count \(g.count)")
        precondition(camera.rotation.count == 9, "GaussianSplatting.render: camera.rotation needs 9 values")
        precondition(camera.width >= 0 && camera.height >= 0 && options.tileSize >= 1, "GaussianSplatting.render: bad size")
        let n = g.count, w = camera.width, h = camera.height, ts = options.tileSize
        var packed = [Float](repeating: 0, count: packedWidth * n)
        var boxes = [Int32](repeating: 0, count: 4 * n)
        var radii = [Int32](repeating: 0, count: n)
        var visible = [Bool](repeating: false, count: n)
        packed.withUnsafeMutableBufferPointer { pk in
            boxes.withUnsafeMutableBufferPointer { bx in
                radii.withUnsafeMutableBufferPointer { rd in
                    visible.withUnsafeMutableBufferPointer { vis in
                        Parallel.forEachChunk(count: n, threads: options.threads, alignment: 64) { _, range in
                            for i in range {
                                vis[i] = preprocess(g, i, camera, pk.baseAddress! + packedWidth * i,
                                                    bx.baseAddress! + 4 * i, rd.baseAddress! + i)
                            }
                        }
                    }
                }
            }
        }
        // Depth order once (ties by index), then binning in that order leaves every tile's list sorted.
        // Keys: z's bits made monotonic as unsigned (negative z flips all bits), then the index.
        var keys = [UInt64]()
        keys.reserveCapacity(n)
        for i in 0..<n where visible[i] {
            let zb = packed[packedWidth * i + 9].bitPattern
            let mono = zb & 0x8000_0000 != 0 ? ~zb : zb | 0x8000_0000
            keys.append(UInt64(mono) << 32 | UInt64(i))
        }
        keys.sort()
        let order = keys.map { Int32(truncatingIfNeeded: $0) }
        let tilesX = (w + ts - 1) / ts, tilesY = (h + ts - 1) / ts, tiles = tilesX * tilesY
        var tileStart = [Int32](repeating: 0, count: tiles + 1)
        for i in order {
            let b = 4 * Int(i)
            for ty in (Int(boxes[b + 2]) / ts)...(Int(boxes[b + 3]) / ts) {
                for tx in (Int(boxes[b]) / ts)...(Int(boxes[b + 1]) / ts) { tileStart[ty * tilesX + tx + 1] += 1 }
            }
        }
        for t in 0..<tiles { tileStart[t + 1] += tileStart[t] }
        var tileList = [Int32](repeating: 0, count: Int(tileStart[tiles]))
        var fill = Array(tileStart.dropLast())
        for i in order {
            let b = 4 * Int(i)
            for ty in (Int(boxes[b + 2]) / ts)...(Int(boxes[b + 3]) / ts) {
                for tx in (Int(boxes[b]) / ts)...(Int(boxes[b + 1]) / ts) {
                    let t = ty * tilesX + tx
                    tileList[Int(fill[t])] = i
                    fill[t] += 1
                }
            }
        }

        var color = [Float](repeating: 0, count: 3 * w * h)
        var depth = [Float](repeating: 0, count: w * h)
        var alpha = [Float](repeating: 0, count: w * h)
        var finalT = [Float](repeating: 1, count: w * h)
        var lastCount = [Int32](repeating: 0, count: w * h)
        var sums = [Float](repeating: 0, count: 4 * w * h)
        let workers = max(1, min(options.threads, tiles))
        var perWorker = [Int](repeating: 0, count: workers)
        let bg = options.background
        color.withUnsafeMutableBufferPointer { col in
        depth.withUnsafeMutableBufferPointer { dep in
        alpha.withUnsafeMutableBufferPointer { alp in
        finalT.withUnsafeMutableBufferPointer { fT in
        lastCount.withUnsafeMutableBufferPointer { lc in
        sums.withUnsafeMutableBufferPointer { sm in
        perWorker.withUnsafeMutableBufferPointer { pw in
        packed.withUnsafeBufferPointer { pk in
        boxes.withUnsafeBufferPointer { bx in
        tileStart.withUnsafeBufferPointer { tStart in
        tileList.withUnsafeBufferPointer { tList in
            let out = ImageBuffers(color: col.baseAddress!, depth: dep.baseAddress!, alpha: alp.baseAddress!,
                                   finalT: fT.baseAddress!, lastCount: lc.baseAddress!, sums: sm.baseAddress!)
            let scene = TileScene(packed: pk.baseAddress!, boxes: bx.baseAddress!, tileStart: tStart.baseAddress!,
                                  tileList: tList.baseAddress!, width: w, height: h, tileSize: ts, tilesX: tilesX)
            Parallel.forEachChunk(count: workers, threads: workers) { worker, _ in
                let scratch = TileScratch(tileSize: ts)
                defer { scratch.deallocate() }
                var composites = 0
                for t in stride(from: worker, to: tiles, by: workers) {
                    composites += forwardTile(scene, t, scratch, bg, out)
                }
                pw[worker] = composites
            }
        }}}}}}}}}}}
        return SplatRender(width: w, height: h, color: color, depth: depth, alpha: alpha, radii: radii,
                           composites: perWorker.reduce(0, +), tileSize: ts, gaussianCount: n, packed: packed,
                           boxes: boxes, tileStart: tileStart, tileList: tileList, finalT: finalT,
                           lastCount: lastCount, sums: sums)
    }

    // MARK: projection

    /// The per-Gaussian intermediates of the projection, shared by `preprocess` and the backward chain rule.
    struct Projection {
        var pC: SIMD3<Float>
        var clampedX: Bool, clampedY: Bool
        var rx: Float, ry: Float              // x'/z, y'/z (clamped)
        var j00: Float, j02: Float, j11: Float, j12: Float
        var q: SIMD4<Float>, qNorm: Float     // normalised quaternion and |q|
        var r: (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>) // rows of R
        var s: SIMD3<Float>
        var t0: SIMD3<Float>, t1: SIMD3<Float> // rows of T = J R_CW
        var v0: SIMD3<Float>, v1: SIMD3<Float> // rows of V = T R S, Σ' = V Vᵀ + 0.3 I
        var a: Float, b: Float, c: Float       // Σ'
    }

    @inline(__always)
    static func cameraRows(_ camera: SplatCamera) -> (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>) {
        let m = camera.rotation
        return (SIMD3(m[0], m[1], m[2]), SIMD3(m[3], m[4], m[5]), SIMD3(m[6], m[7], m[8]))
    }

    /// Projection of Gaussian i; nil when behind `near`.
    @inline(__always)
    static func project(_ g: GaussianSet, _ i: Int, _ camera: SplatCamera,
                        _ w: (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>)) -> Projection? {
        let p = SIMD3<Float>(g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2])
        let pC = SIMD3<Float>((w.0 * p).sum(), (w.1 * p).sum(), (w.2 * p).sum()) + camera.translation
        guard pC.z >= camera.near else { return nil }
        let invZ = 1 / pC.z
        let fw = Float(camera.width), fh = Float(camera.height), m = jacobianMargin
        let xz = pC.x * invZ, yz = pC.y * invZ
        let loX = (-m * fw - camera.cx) / camera.fx, hiX = ((1 + m) * fw - camera.cx) / camera.fx
        let loY = (-m * fh - camera.cy) / camera.fy, hiY = ((1 + m) * fh - camera.cy) / camera.fy
        let rx = min(hiX, max(loX, xz)), ry = min(hiY, max(loY, yz))
        let j00 = camera.fx * invZ, j02 = -camera.fx * rx * invZ
        let j11 = camera.fy * invZ, j12 = -camera.fy * ry * invZ
        let t0 = j00 * w.0 + j02 * w.2, t1 = j11 * w.1 + j12 * w.2
        let qRaw = SIMD4<Float>(g.rotations[4 * i], g.rotations[4 * i + 1], g.rotations[4 * i + 2], g.rotations[4 * i + 3])
        let qNorm = max(1e-12, (qRaw * qRaw).sum().squareRoot())
        let q = qRaw / qNorm
        let r = rotationRows(q)
        let s = SIMD3<Float>(expf(g.logScales[3 * i]), expf(g.logScales[3 * i + 1]), expf(g.logScales[3 * i + 2]))
        // V = T R S: row k of V is (T_k R) * s.
        let v0 = (t0.x * r.0 + t0.y * r.1 + t0.z * r.2) * s
        let v1 = (t1.x * r.0 + t1.y * r.1 + t1.z * r.2) * s
        return Projection(pC: pC, clampedX: xz != rx, clampedY: yz != ry, rx: rx, ry: ry,
                          j00: j00, j02: j02, j11: j11, j12: j12, q: q, qNorm: qNorm, r: r, s: s, t0: t0, t1: t1,
                          v0: v0, v1: v1, a: (v0 * v0).sum() + lowPass, b: (v0 * v1).sum(),
                          c: (v1 * v1).sum() + lowPass)
    }

    /// Rows of the rotation matrix of a unit quaternion (w, x, y, z).
    @inline(__always)
    static func rotationRows(_ q: SIMD4<Float>) -> (SIMD3<Float>, SIMD3<Float>, SIMD3<Float>) {
        let (w, x, y, z) = (q.x, q.y, q.z, q.w)
        return (SIMD3(1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
                SIMD3(2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
                SIMD3(2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)))
    }

    @inline(__always) static func sigmoid(_ x: Float) -> Float {
        x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x))
    }

    /// Fills Gaussian i's packed record and box; false when culled.
    static func preprocess(_ g: GaussianSet, _ i: Int, _ camera: SplatCamera, _ out: UnsafeMutablePointer<Float>,
                           _ box: UnsafeMutablePointer<Int32>, _ radius: UnsafeMutablePointer<Int32>) -> Bool {
        radius.pointee = 0
        guard let pr = project(g, i, camera, cameraRows(camera)) else { return false }
        let det = pr.a * pr.c - pr.b * pr.b
        let o = sigmoid(g.opacityLogits[i])
        guard det > 0, o >= alphaMin else { return false }
        let level = logf(255 * o) // α >= 1/255  <=>  dᵀ conic d <= 2 level
        let invZ = 1 / pr.pC.z
        let u = camera.fx * pr.pC.x * invZ + camera.cx, v = camera.fy * pr.pC.y * invZ + camera.cy
        // Half-extents of the ellipse, with a hair of slack for rounding (extra pixels fail the threshold).
        let ex = (2 * level * pr.a).squareRoot() * 1.001 + 1e-3, ey = (2 * level * pr.c).squareRoot() * 1.001 + 1e-3
        let fx0 = max(0, (u - ex).rounded(.up)), fx1 = min(Float(camera.width - 1), (u + ex).rounded(.down))
        let fy0 = max(0, (v - ey).rounded(.up)), fy1 = min(Float(camera.height - 1), (v + ey).rounded(.down))
        guard fx0 <= fx1, fy0 <= fy1, u.isFinite, v.isFinite else { return false }
        box[0] = Int32(fx0); box[1] = Int32(fx1); box[2] = Int32(fy0); box[3] = Int32(fy1)
        radius.pointee = Int32(max(ex, ey).rounded(.up))
        out[0] = u; out[1] = v
        // power = -½ dᵀ conic d = A dx² + B dx dy + C dy² with conic (c, -b, a) / det.
        out[2] = -0.5 * (pr.c / det); out[3] = pr.b / det; out[4] = -0.5 * (pr.a / det)
        out[5] = o
        out[6] = g.colors[3 * i]; out[7] = g.colors[3 * i + 1]; out[8] = g.colors[3 * i + 2]
        out[9] = pr.pC.z
        out[10] = -level // power floor: power < -level gives α < 1/255
        out[11] = 0
        return true
    }

    // MARK: tiles

    /// Pixels per SIMD run (the build targets plain x86-64, SSE2: 4 lanes per register).
    typealias FL = SIMD4<Float>
    typealias IL = SIMD4<Int32>
    typealias ML = SIMDMask<IL>
    static let laneCount = FL.scalarCount
    static let laneShift = laneCount.trailingZeroBitCount
    static let lanes: FL = {
        var v = FL()
        for i in 0..<FL.scalarCount { v[i] = Float(i) }
        return v
    }()

    /// exp(x) per lane, x <= 0 (lanes below -87 give exp(-87)); Cephes expf: x = n ln2 + r, |r| <= ½ ln2,
    /// exp(r) by a degree-7 polynomial, times 2^n from the exponent bits. Relative error < 1e-7 on [-6, 0].
    /// SSE2 only: rounding by the 1.5·2²³ trick, no roundps / cvtps2dq needed.
    @inline(__always)
    static func expLanes(_ x: FL) -> FL {
        let x = x.replacing(with: -87, where: x .< -87)
        let magic: Float = 12_582_912 // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits
        let t = x * 1.442_695_04 + magic
        let n = t - magic
        let r = (x - n * 0.693_359_375) - n * -2.121_944_4e-4
        var p = r * 1.987_569_15e-4 + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 0.166_666_65
        p = p * r + 0.500_000_01
        p = p * (r * r) + r + 1
        let bits = (unsafeBitCast(t, to: IL.self) &- IL(repeating: 0x4B40_0000) &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: FL.self)
    }

    /// Any lane set (the stdlib's `any` and `pointwiseMin` were left as generic calls in the tile loops).
    @inline(__always)
    static func anyLane(_ m: ML) -> Bool {
        let half = unsafeBitCast(orHalves(unsafeBitCast(m, to: IL.self)), to: (UInt64, UInt64).self)
        return half.0 | half.1 != 0
    }
    @inline(__always) static func orHalves(_ x: SIMD8<Int32>) -> SIMD4<Int32> { x.lowHalf | x.highHalf }
    @inline(__always) static func orHalves(_ x: SIMD4<Int32>) -> SIMD4<Int32> { x }

    /// min(alphaMax, x) per lane.
    @inline(__always)
    static func clampAlpha(_ x: FL) -> FL { x.replacing(with: alphaMax, where: x .> alphaMax) }

    struct ImageBuffers {
        let color: UnsafeMutablePointer<Float>, depth: UnsafeMutablePointer<Float>, alpha: UnsafeMutablePointer<Float>
        let finalT: UnsafeMutablePointer<Float>, lastCount: UnsafeMutablePointer<Int32>
        let sums: UnsafeMutablePointer<Float>
    }

    struct TileScene {
        let packed: UnsafePointer<Float>, boxes: UnsafePointer<Int32>
        let tileStart: UnsafePointer<Int32>, tileList: UnsafePointer<Int32>
        let width: Int, height: Int, tileSize: Int, tilesX: Int

        /// Pixel rectangle of tile t (inclusive lower, exclusive upper).
        @inline(__always) func rect(_ t: Int) -> (x0: Int, x1: Int, y0: Int, y1: Int) {
            let x0 = (t % tilesX) * tileSize, y0 = (t / tilesX) * tileSize
            return (x0, min(width, x0 + tileSize), y0, min(height, y0 + tileSize))
        }
    }

    /// Per-worker tile state, allocated once per worker: each tile row is `chunksPerRow` runs of 8 pixels
    /// (lanes past the tile's width are never touched by a Gaussian's box).
    struct TileScratch {
        let chunksPerRow: Int
        /// Per chunk: T, Σ w r, Σ w g, Σ w b, Σ w z (forward); T, S, gc r, gc g, gc b, gd, ga (backward).
        let f: UnsafeMutablePointer<FL>
        let last: UnsafeMutablePointer<IL>
        let done: UnsafeMutablePointer<ML>
        static let planes = 7

        init(tileSize: Int) {
            chunksPerRow = (tileSize + laneCount - 1) / laneCount
            let chunks = chunksPerRow * tileSize
            f = .allocate(capacity: Self.planes * chunks); last = .allocate(capacity: chunks)
            done = .allocate(capacity: chunks)
            f.initialize(repeating: .zero, count: Self.planes * chunks)
            last.initialize(repeating: .zero, count: chunks)
            done.initialize(repeating: ML(repeating: false), count: chunks)
        }
        func plane(_ k: Int, _ chunks: Int) -> UnsafeMutablePointer<FL> { f + k * chunks }
        func deallocate() { f.deallocate(); last.deallocate(); done.deallocate() }
    }

    /// Composites tile t front to back, Gaussian by Gaussian over the runs of `laneCount` pixels of its box rows; returns the
    /// composites. Each pixel's arithmetic does not depend on the tile (dx = u - px per lane), so neither do the images.
    static func forwardTile(_ s: TileScene, _ tile: Int, _ sc: TileScratch, _ bg: SIMD3<Float>,
                            _ out: ImageBuffers) -> Int {
        let (tx0, tx1, ty0, ty1) = s.rect(tile)
        let cpr = sc.chunksPerRow
        let chunks = (ty1 - ty0) * cpr
        let tP = sc.plane(0, chunks), rP = sc.plane(1, chunks), gP = sc.plane(2, chunks), bP = sc.plane(3, chunks)
        let zP = sc.plane(4, chunks)
        tP.update(repeating: FL(repeating: 1), count: chunks)
        for k in 1..<5 { sc.plane(k, chunks).update(repeating: .zero, count: chunks) }
        sc.last.update(repeating: .zero, count: chunks)
        sc.done.update(repeating: ML(repeating: false), count: chunks)
        var alive = (tx1 - tx0) * (ty1 - ty0)
        var composites = IL.zero
        let start = Int(s.tileStart[tile]), end = Int(s.tileStart[tile + 1])
        let tMin = FL(repeating: transmittanceMin)
        var k = start
        while k < end && alive > 0 {
            let gi = Int(s.tileList[k])
            let p = s.packed + packedWidth * gi, b = s.boxes + 4 * gi
            let x0 = max(tx0, Int(b[0])), x1 = min(tx1 - 1, Int(b[1]))
            let y0 = max(ty0, Int(b[2])), y1 = min(ty1 - 1, Int(b[3]))
            let entry = IL(repeating: Int32(k - start + 1))
            k += 1
            guard x0 <= x1 && y0 <= y1 else { continue }
            let u = p[0], v = p[1], cA = p[2], cB = p[3], cC = p[4]
            let o = FL(repeating: p[5]), floor = FL(repeating: p[10])
            let cr = p[6], cg = p[7], cbl = p[8], gz = p[9]
            let c0 = (x0 - tx0) >> laneShift, c1 = (x1 - tx0) >> laneShift
            let lo = FL(repeating: Float(x0)), hi = FL(repeating: Float(x1))
            for py in y0...y1 {
                let dy = v - Float(py)
                let rowB = cB * dy, rowC = cC * dy * dy
                let row = (py - ty0) * cpr
                for c in c0...c1 {
                    let q = row + c
                    let px = FL(repeating: Float(tx0 + laneCount * c)) + lanes
                    let dx = u - px
                    let power = (cA * dx + rowB) * dx + rowC
                    var m = (power .>= floor) .& (px .>= lo) .& (px .<= hi) .& .!sc.done[q]
                    if !anyLane(m) { continue }
                    let a = clampAlpha(o * expLanes(power))
                    let t = tP[q]
                    let next = t * (1 - a)
                    let term = m .& (next .< tMin)
                    if anyLane(term) {
                        sc.done[q] = sc.done[q] .| term
                        alive += Int(unsafeBitCast(term, to: IL.self).wrappedSum())
                        m = m .& .!term
                    }
                    let wgt = (a * t).replacing(with: 0, where: .!m)
                    rP[q] += wgt * cr; gP[q] += wgt * cg; bP[q] += wgt * cbl; zP[q] += wgt * gz
                    tP[q] = t.replacing(with: next, where: m)
                    sc.last[q] = sc.last[q].replacing(with: entry, where: m)
                    composites &-= unsafeBitCast(m, to: IL.self)
                }
            }
        }
        let tF = UnsafeRawPointer(tP).assumingMemoryBound(to: Float.self)
        let rF = UnsafeRawPointer(rP).assumingMemoryBound(to: Float.self)
        let gF = UnsafeRawPointer(gP).assumingMemoryBound(to: Float.self)
        let bF = UnsafeRawPointer(bP).assumingMemoryBound(to: Float.self)
        let zF = UnsafeRawPointer(zP).assumingMemoryBound(to: Float.self)
        let lF = UnsafeRawPointer(sc.last).assumingMemoryBound(to: Int32.self)
        for py in ty0..<ty1 {
            for px in tx0..<tx1 {
                let q = (py - ty0) * laneCount * cpr + px - tx0, o = py * s.width + px
                let t = tF[q]
                out.color[3 * o] = rF[q] + t * bg.x
                out.color[3 * o + 1] = gF[q] + t * bg.y
                out.color[3 * o + 2] = bF[q] + t * bg.z
                out.depth[o] = zF[q]
                out.alpha[o] = 1 - t
                out.finalT[o] = t
                out.lastCount[o] = lF[q]
                out.sums[4 * o] = rF[q]; out.sums[4 * o + 1] = gF[q]; out.sums[4 * o + 2] = bF[q]
                out.sums[4 * o + 3] = zF[q]
            }
        }
        return Int(composites.wrappedSum())
    }
}

#if canImport(Glibc)
import Glibc
#endif
