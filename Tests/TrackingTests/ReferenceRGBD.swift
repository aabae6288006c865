import Foundation
import MapCore
@testable import Tracking

/// The slow, obviously-correct twin of RGBDTracker's pyramid and Gauss-Newton step (the tracker before it moved to
/// Float buffers, row chunks and threads): Double vertices, zero vectors for "none", one pixel loop.
enum ReferenceRGBD {
    struct Step { var xi: [Double]?; var inlierFraction: Double; var rms: Double }

    static func solveStep(current c: Level, reference r: Level, T_R_C: RigidTransform, maxDistance: Double,
                          minCos: Double, config: RGBDTracker.Config, geometricSigma: Double, damping: Double = 0.1, maxStep: Double = 0.05) -> Step {
        var H = [Double](repeating: 0, count: 36), g = [Double](repeating: 0, count: 6)
        var n = 0, valid = 0, sse = 0.0, photometric = 0
        let R = T_R_C.rotation, t = T_R_C.translation, k = r.intrinsics, w = k.width, h = k.height
        let sg = 1 / geometricSigma, si = 1 / config.photometricSigma, huber = config.huberSigmas
        @inline(__always) func accumulate(_ J: (Vec3, Vec3), _ e: Double) {
            // Huber: residuals beyond `huber` sigmas count linearly.
            let weight = abs(e) <= huber ? 1 : huber / abs(e)
            let Ja = [J.0.x, J.0.y, J.0.z, J.1.x, J.1.y, J.1.z]
            for a in 0..<6 {
                g[a] += weight * Ja[a] * e
                for b in a..<6 { H[a * 6 + b] += weight * Ja[a] * Ja[b] }
            }
        }
        for i in 0..<c.vertices.count {
            let vc = c.vertices[i]
            guard vc.z > 0 else { continue }
            valid += 1
            let p = R * vc + t
            guard p.z > 1e-3 else { continue }
            let uf = k.fx * p.x / p.z + k.cx, vf = k.fy * p.y / p.z + k.cy
            let u = Int(uf.rounded()), v = Int(vf.rounded())
            guard u >= 0, v >= 0, u < w, v < h else { continue }
            let j = v * w + u
            let vr = r.vertices[j]
            guard vr.z > 0 else { continue }
            // Geometric: point-to-plane (KinectFusion ICP).
            let nc = c.normals[i], nr = r.normals[j]
            if nc != .zero, nr != .zero {
                let d = p - vr
                if length(d) <= maxDistance, dot(R * nc, nr) >= minCos {
                    let e = dot(nr, d)
                    accumulate((cross(p, nr) * sg, nr * sg), e * sg)
                    sse += e * e
                    n += 1
                }
            }
            // Photometric: I_r(π(T p_c)) − I_c(p_c), where the reference sees this point (no occlusion).
            guard abs(p.z - vr.z) <= maxDistance, uf >= 0, vf >= 0, uf < Double(w - 1), vf < Double(h - 1) else { continue }
            let x0 = Int(uf), y0 = Int(vf), ax = Float(uf - Double(x0)), ay = Float(vf - Double(y0))
            let q = y0 * w + x0
            @inline(__always) func bilinear(_ img: [Float]) -> Double {
                let top = img[q] + ax * (img[q + 1] - img[q]), bottom = img[q + w] + ax * (img[q + w + 1] - img[q + w])
                return Double(top + ay * (bottom - top))
            }
            let e = bilinear(r.intensity) - Double(c.intensity[i])
            let gx = bilinear(r.gradX), gy = bilinear(r.gradY)
            // ∂I/∂p = ∇I · ∂π/∂p; the point moves by ω × p + t.
            let iz = 1 / p.z
            let a = Vec3(gx * k.fx * iz, gy * k.fy * iz, -(gx * k.fx * p.x + gy * k.fy * p.y) * iz * iz)
            accumulate((cross(p, a) * si, a * si), e * si)
            photometric += 1
        }
        let fraction = valid > 0 ? Double(n) / Double(valid) : 0
        let rms = n > 0 ? (sse / Double(n)).squareRoot() : .infinity
        guard n + photometric >= 12 else { return Step(xi: nil, inlierFraction: fraction, rms: rms) }
        for a in 0..<6 { for b in 0..<a { H[a * 6 + b] = H[b * 6 + a] } }
        // Levenberg-Marquardt damping of the diagonal: directions the data barely constrain take small steps.
        for a in 0..<6 { H[a * 6 + a] *= 1 + damping }
        guard var xi = RGBDTracker.solve6(H, g.map { -$0 }) else { return Step(xi: nil, inlierFraction: fraction, rms: rms) }
        // At most `maxStep` metres / radians per iteration (far from the answer the associations are poor).
        let size = max(length(SIMD3(xi[0], xi[1], xi[2])), length(SIMD3(xi[3], xi[4], xi[5])))
        if size > maxStep { xi = xi.map { $0 * maxStep / size } }
        return Step(xi: xi, inlierFraction: fraction, rms: rms)
    }

    /// One pyramid level; a vertex with z = 0 and a zero normal mark "none".
    struct Level: Sendable {
        var intrinsics: Intrinsics
        var vertices: [Vec3]
        var normals: [Vec3]
        /// Grey (mean of RGB / 255) and its central-difference gradients (per pixel of this level).
        var intensity: [Float]
        var gradX: [Float]
        var gradY: [Float]
    }

    struct Pyramid: Sendable {
        var levels: [Level]

        init(depth: DepthImage, rgb: RGBImage, intrinsics k: Intrinsics, levels count: Int, near: Float, far: Float) {
            var w = depth.width, h = depth.height, kk = k
            var d = Self.smoothed(depth.data.map { $0.isFinite && $0 >= near && $0 <= far ? $0 : 0 }, width: w,
                                  height: h)
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
                            let q = [d[a], d[a + 1], d[a + w], d[a + w + 1]].filter { $0 > 0 }
                            guard let lo = q.min(), let hi = q.max(), hi - lo <= 0.03 * lo else { continue }
                            d2[y * w2 + x] = q.reduce(0, +) / Float(q.count)
                        }
                    }
                    d = d2; grey = g2; w = w2; h = h2
                    kk = Intrinsics(fx: kk.fx / 2, fy: kk.fy / 2, cx: (kk.cx + 0.5) / 2 - 0.5,
                                    cy: (kk.cy + 0.5) / 2 - 0.5, width: w, height: h)
                }
                var vertices = [Vec3](repeating: .zero, count: w * h)
                for y in 0..<h {
                    for x in 0..<w where d[y * w + x] > 0 {
                        vertices[y * w + x] = kk.unproject(u: Double(x), v: Double(y), depth: Double(d[y * w + x]))
                    }
                }
                // Normals from the right and lower neighbours, pointing to the camera; none across depth edges.
                var normals = [Vec3](repeating: .zero, count: w * h)
                for y in 0..<(h - 1) {
                    for x in 0..<(w - 1) {
                        let p = vertices[y * w + x], a = vertices[y * w + x + 1], b = vertices[(y + 1) * w + x]
                        guard p.z > 0, a.z > 0, b.z > 0 else { continue }
                        let ea = a - p, eb = b - p
                        guard length(ea) < 0.05 * p.z + 0.01, length(eb) < 0.05 * p.z + 0.01 else { continue }
                        var nrm = cross(ea, eb)
                        let l = length(nrm)
                        guard l > 1e-12 else { continue }
                        nrm /= l
                        if dot(nrm, p) > 0 { nrm = -nrm }
                        normals[y * w + x] = nrm
                    }
                }
                var gx = [Float](repeating: 0, count: w * h), gy = gx
                for y in 1..<max(1, h - 1) {
                    for x in 1..<max(1, w - 1) {
                        let i = y * w + x
                        gx[i] = (grey[i + 1] - grey[i - 1]) / 2
                        gy[i] = (grey[i + w] - grey[i - w]) / 2
                    }
                }
                out.append(Level(intrinsics: kk, vertices: vertices, normals: normals, intensity: grey, gradX: gx,
                                 gradY: gy))
            }
            levels = out
        }

        /// Grey = mean of R, G, B / 255, sampled at the depth image's pixels (nearest, when the sizes differ).
        static func grey(_ rgb: RGBImage, width w: Int, height h: Int) -> [Float] {
            var out = [Float](repeating: 0, count: w * h)
            guard rgb.width > 0, rgb.height > 0, rgb.channels >= 3 else { return out }
            for y in 0..<h {
                let sy = min(rgb.height - 1, Int((Double(y) + 0.5) * Double(rgb.height) / Double(h)))
                for x in 0..<w {
                    let sx = min(rgb.width - 1, Int((Double(x) + 0.5) * Double(rgb.width) / Double(w)))
                    let s = (sy * rgb.width + sx) * rgb.channels
                    out[y * w + x] = (Float(rgb.data[s]) + Float(rgb.data[s + 1]) + Float(rgb.data[s + 2])) / (3 * 255)
                }
            }
            return out
        }

        /// The tracker's own 3x3 binomial blur: already one plain loop, nothing for a twin to restate.
        static func blurred(_ a: [Float], width w: Int, height h: Int) -> [Float] {
            RGBDTracker.Pyramid.blurred(a, width: w, height: h)
        }

        /// Edge-aware 5x5 mean (a cheap bilateral filter): each valid pixel becomes the mean of the valid neighbours
        /// within 3 % of its depth, so sensor noise is averaged without blurring across depth edges.
        static func smoothed(_ d: [Float], width w: Int, height h: Int) -> [Float] {
            var out = [Float](repeating: 0, count: d.count)
            for y in 0..<h {
                for x in 0..<w {
                    let c = d[y * w + x]
                    guard c > 0 else { continue }
                    var sum: Float = 0, n: Float = 0
                    for j in max(0, y - 2)...min(h - 1, y + 2) {
                        for i in max(0, x - 2)...min(w - 1, x + 2) {
                            let v = d[j * w + i]
                            if v > 0 && abs(v - c) <= 0.03 * c { sum += v; n += 1 }
                        }
                    }
                    out[y * w + x] = sum / n
                }
            }
            return out
        }
    }
}
