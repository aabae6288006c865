import Foundation
import Kernels

/// Slow, obviously-correct Gaussian splatting in Double: the equations of `GaussianSplatting` as written, without
/// tiles or screen boxes: every Gaussian is projected, all are sorted by depth (ties by index), and every pixel
/// composites every Gaussian with the same thresholds.
public enum ReferenceGaussianSplatting {
    /// A Gaussian set in Double, same layout as `GaussianSet`.
    public struct Params: Equatable {
        public var means: [Double], logScales: [Double], rotations: [Double], opacityLogits: [Double], colors: [Double]
        public var count: Int { opacityLogits.count }

        public init(_ g: GaussianSet) {
            means = g.means.map(Double.init); logScales = g.logScales.map(Double.init)
            rotations = g.rotations.map(Double.init); opacityLogits = g.opacityLogits.map(Double.init)
            colors = g.colors.map(Double.init)
        }

        /// All parameters as one vector (means, logScales, rotations, opacityLogits, colors), for finite differences.
        public var flat: [Double] { means + logScales + rotations + opacityLogits + colors }

        public mutating func setFlat(_ k: Int, _ value: Double) {
            let n = count
            switch k {
            case ..<(3 * n): means[k] = value
            case ..<(6 * n): logScales[k - 3 * n] = value
            case ..<(10 * n): rotations[k - 6 * n] = value
            case ..<(11 * n): opacityLogits[k - 10 * n] = value
            default: colors[k - 11 * n] = value
            }
        }
    }

    public struct Image {
        public var width: Int, height: Int
        public var color: [Double], depth: [Double], alpha: [Double]
        /// Per pixel: how many Gaussians were composited, and whether early termination stopped it.
        public var contributors: [Int], terminated: [Bool]
        /// Per pixel, a fingerprint of which Gaussians were composited (changes when a threshold decision flips).
        public var signature: [Int]
        public var composites: Int { contributors.reduce(0, +) }
    }

    struct Splat {
        var index: Int, z: Double, u: Double, v: Double
        var conic: (Double, Double, Double), opacity: Double, color: (Double, Double, Double)
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// Projects Gaussian i; nil when its centre is closer than `near` or its 2D covariance is singular.
    static func project(_ g: Params, _ i: Int, _ cam: SplatCamera) -> Splat? {
        let w = cam.rotation.map(Double.init)
        let t = [Double(cam.translation.x), Double(cam.translation.y), Double(cam.translation.z)]
        let fx = Double(cam.fx), fy = Double(cam.fy), cx = Double(cam.cx), cy = Double(cam.cy)
        // p_C = R_CW p_W + t_CW
        var p = [0.0, 0.0, 0.0]
        for r in 0..<3 { p[r] = w[3 * r] * g.means[3 * i] + w[3 * r + 1] * g.means[3 * i + 1] + w[3 * r + 2] * g.means[3 * i + 2] + t[r] }
        let (x, y, z) = (p[0], p[1], p[2])
        if z < Double(cam.near) { return nil }
        // Σ = R S Sᵀ Rᵀ from the normalised quaternion (w, x, y, z).
        var q = Array(g.rotations[(4 * i)..<(4 * i + 4)])
        let qn = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).squareRoot()
        q = q.map { $0 / qn }
        let (a, b, c, d) = (q[0], q[1], q[2], q[3])
        let rot = [[1 - 2 * (c * c + d * d), 2 * (b * c - a * d), 2 * (b * d + a * c)],
                   [2 * (b * c + a * d), 1 - 2 * (b * b + d * d), 2 * (c * d - a * b)],
                   [2 * (b * d - a * c), 2 * (c * d + a * b), 1 - 2 * (b * b + c * c)]]
        let s = (0..<3).map { exp(g.logScales[3 * i + $0]) }
        var sigma = [[Double]](repeating: [0, 0, 0], count: 3)
        for r in 0..<3 { for cc in 0..<3 { for k in 0..<3 { sigma[r][cc] += rot[r][k] * s[k] * s[k] * rot[cc][k] } } }
        // J at the mean with x/z, y/z clamped to the image widened by 15 % per side.
        let fw = Double(cam.width), fh = Double(cam.height)
        let rx = min((1.15 * fw - cx) / fx, max((-0.15 * fw - cx) / fx, x / z))
        let ry = min((1.15 * fh - cy) / fy, max((-0.15 * fh - cy) / fy, y / z))
        let jac = [[fx / z, 0, -fx * rx / z], [0, fy / z, -fy * ry / z]]
        // Σ' = J W Σ Wᵀ Jᵀ + 0.3 I
        var tm = [[Double]](repeating: [0, 0, 0], count: 2)
        for r in 0..<2 { for cc in 0..<3 { for k in 0..<3 { tm[r][cc] += jac[r][k] * w[3 * k + cc] } } }
        var cov = [[0.0, 0.0], [0.0, 0.0]]
        for r in 0..<2 { for cc in 0..<2 { for k in 0..<3 { for l in 0..<3 { cov[r][cc] += tm[r][k] * sigma[k][l] * tm[cc][l] } } } }
        cov[0][0] += 0.3; cov[1][1] += 0.3
        let det = cov[0][0] * cov[1][1] - cov[0][1] * cov[1][0]
        if det <= 0 { return nil }
        return Splat(index: i, z: z, u: fx * x / z + cx, v: fy * y / z + cy,
                     conic: (cov[1][1] / det, -cov[0][1] / det, cov[0][0] / det),
                     opacity: sigmoid(g.opacityLogits[i]),
                     color: (g.colors[3 * i], g.colors[3 * i + 1], g.colors[3 * i + 2]))
    }

    /// `pixels`: when given, only those pixel indices (py * width + px) are composited; the others stay 0 (for timing).
    public static func render(_ g: Params, camera: SplatCamera, background: SIMD3<Double> = .zero,
                              pixels: [Int]? = nil) -> Image {
        let splats = (0..<g.count).compactMap { project(g, $0, camera) }
            .sorted { $0.z < $1.z || ($0.z == $1.z && $0.index < $1.index) }
        let w = camera.width, h = camera.height
        var img = Image(width: w, height: h, color: .init(repeating: 0, count: 3 * w * h),
                        depth: .init(repeating: 0, count: w * h), alpha: .init(repeating: 0, count: w * h),
                        contributors: .init(repeating: 0, count: w * h), terminated: .init(repeating: false, count: w * h),
                        signature: .init(repeating: 0, count: w * h))
        for pix in pixels ?? Array(0..<(w * h)) {
            let px = pix % w, py = pix / w
            var t = 1.0, rgb = [0.0, 0.0, 0.0], depth = 0.0
            for sp in splats {
                let dx = sp.u - Double(px), dy = sp.v - Double(py)
                let m = sp.conic.0 * dx * dx + 2 * sp.conic.1 * dx * dy + sp.conic.2 * dy * dy
                let alpha = min(0.99, sp.opacity * exp(-0.5 * m))
                if alpha < 1.0 / 255 { continue }
                let next = t * (1 - alpha)
                if next < 1e-4 { img.terminated[pix] = true; break }
                let wgt = alpha * t
                rgb[0] += wgt * sp.color.0; rgb[1] += wgt * sp.color.1; rgb[2] += wgt * sp.color.2
                depth += wgt * sp.z
                t = next
                img.contributors[pix] += 1
                img.signature[pix] = img.signature[pix] &* 31 &+ sp.index &+ 1
            }
            img.color[3 * pix] = rgb[0] + t * background.x
            img.color[3 * pix + 1] = rgb[1] + t * background.y
            img.color[3 * pix + 2] = rgb[2] + t * background.z
            img.depth[pix] = depth
            img.alpha[pix] = 1 - t
        }
        return img
    }

    /// L = Σ a·color + Σ b·depth + Σ c·alpha for weights a (3*W*H), b, c (W*H).
    public static func loss(_ img: Image, a: [Double], b: [Double], c: [Double]) -> Double {
        var l = 0.0
        for k in 0..<img.color.count { l += a[k] * img.color[k] }
        for k in 0..<img.depth.count { l += b[k] * img.depth[k] + c[k] * img.alpha[k] }
        return l
    }
}
