import Kernels
import MapCore
import TestSupport
import XCTest

final class GaussianSplattingTests: XCTestCase {
    typealias Ref = ReferenceGaussianSplatting

    /// 24x20 pixels, slightly rotated (about y then z), camera centre at (0.1, -0.05, 0) in the world.
    func camera(width: Int = 24, height: Int = 20) -> SplatCamera {
        let (a, b) = (0.1, 0.05)
        let ry: [Double] = [cos(a), 0, sin(a), 0, 1, 0, -sin(a), 0, cos(a)]
        let rz: [Double] = [cos(b), -sin(b), 0, sin(b), cos(b), 0, 0, 0, 1]
        var r = [Double](repeating: 0, count: 9)
        for i in 0..<3 { for j in 0..<3 { for k in 0..<3 { r[3 * i + j] += rz[3 * i + k] * ry[3 * k + j] } } }
        let c: [Double] = [0.1, -0.05, 0]
        let t = (0..<3).map { i in -(r[3 * i] * c[0] + r[3 * i + 1] * c[1] + r[3 * i + 2] * c[2]) }
        return SplatCamera(fx: 30, fy: 30, cx: Float(width) / 2 - 0.5, cy: Float(height) / 2 - 0.5,
                           width: width, height: height, rotation: r.map { Float($0) },
                           translation: SIMD3(Float(t[0]), Float(t[1]), Float(t[2])))
    }

    /// Random Gaussians in front of `cam` (centres over the view widened by `spread`, depth 1.5-5 m), screen sizes
    /// of ~1-6 px, opacities sigmoid(logit) with logit in `logits`; `behind` more with centres behind the camera.
    func scene(_ rng: inout SeededRNG, count: Int, behind: Int = 0, spread: Double = 1.2,
               logits: ClosedRange<Double> = -1.5...2, cam: SplatCamera) -> GaussianSet {
        var g = GaussianSet()
        for k in 0..<(count + behind) {
            let z = k < count ? rng.uniform(1.5, 5) : rng.uniform(-2, 0.02)
            let halfW = Double(cam.width) / 2 / Double(cam.fx) * spread, halfH = Double(cam.height) / 2 / Double(cam.fy) * spread
            let pC = [rng.uniform(-halfW, halfW) * abs(z), rng.uniform(-halfH, halfH) * abs(z), z]
            // p_W = R_CWᵀ (p_C - t)
            let r = cam.rotation.map(Double.init)
            let d = [pC[0] - Double(cam.translation.x), pC[1] - Double(cam.translation.y), pC[2] - Double(cam.translation.z)]
            for j in 0..<3 { g.means.append(Float(r[j] * d[0] + r[3 + j] * d[1] + r[6 + j] * d[2])) }
            for _ in 0..<3 { g.logScales.append(Float(log(rng.uniform(0.03, 0.25)))) }
            for _ in 0..<4 { g.rotations.append(Float(rng.gaussian())) }
            g.opacityLogits.append(Float(rng.uniform(logits.lowerBound, logits.upperBound)))
            for _ in 0..<3 { g.colors.append(Float(rng.uniform(-0.2, 1.2))) }
        }
        return g
    }

    func assertMatchesReference(_ out: SplatRender, _ ref: Ref.Image, _ tol: Double = 1e-4,
                                file: StaticString = #filePath, line: UInt = #line) {
        for k in 0..<ref.color.count {
            XCTAssertEqual(Double(out.color[k]), ref.color[k], accuracy: tol, "colour \(k)", file: file, line: line)
        }
        for k in 0..<ref.depth.count {
            XCTAssertEqual(Double(out.depth[k]), ref.depth[k], accuracy: tol * max(1, abs(ref.depth[k])), "depth \(k)",
                           file: file, line: line)
            XCTAssertEqual(Double(out.alpha[k]), ref.alpha[k], accuracy: tol, "alpha \(k)", file: file, line: line)
        }
    }

    func testForwardMatchesReference() {
        var rng = SeededRNG(seed: 41)
        let cam = camera()
        // 36 in front (many crossing tile borders and the image edges), 4 behind the camera.
        let g = scene(&rng, count: 36, behind: 4, cam: cam)
        let bg = SIMD3<Float>(0.2, 0.3, 0.5)
        // Tile 8 on 24x20: the bottom row of tiles is half outside the image.
        let out = GaussianSplatting.render(g, camera: cam, options: SplatOptions(background: bg, tileSize: 8, threads: 2))
        let ref = Ref.render(Ref.Params(g), camera: cam, background: SIMD3(Double(bg.x), Double(bg.y), Double(bg.z)))
        assertMatchesReference(out, ref)
        XCTAssertEqual(Double(out.composites), Double(ref.composites), accuracy: 2, "composited pairs")
        XCTAssertGreaterThan(ref.composites, 500, "a busy scene")
        XCTAssertTrue(out.radii.suffix(4).allSatisfy { $0 == 0 }, "the ones behind the camera are culled")
        // The culling box is exact, so the tile size changes nothing.
        for ts in [1, 5, 16, 64] {
            let other = GaussianSplatting.render(g, camera: cam, options: SplatOptions(background: bg, tileSize: ts, threads: 2))
            XCTAssertEqual(other.color, out.color, "tile \(ts)")
            XCTAssertEqual(other.depth, out.depth, "tile \(ts)")
            XCTAssertEqual(other.alpha, out.alpha, "tile \(ts)")
        }
    }

    /// A stack of eight near-opaque (o <= 0.989) discs on the view axis: pixels near the middle stop early (T would
    /// fall below 1e-4), those further out composite them all; images and gradients still match the reference.
    func testEarlyTerminationMatchesReference() {
        let cam = camera()
        var g = GaussianSet()
        for k in 0..<8 {
            let z = Float(2 + 0.5 * Double(k))
            g.append(contentsOf: GaussianSet(means: [0.1 + 0.02 * Float(k), -0.05, z], logScales: [log(0.5 * z / 2), log(0.4 * z / 2), -2],
                                             rotations: [1, 0.1 * Float(k), 0, 0.2], opacityLogits: [4.5 - 0.1 * Float(k)],
                                             colors: [Float(k) / 8, 1 - Float(k) / 8, 0.5]))
        }
        let bg = SIMD3<Float>(1, 0, 0.25)
        let out = GaussianSplatting.render(g, camera: cam, options: SplatOptions(background: bg, tileSize: 16, threads: 2))
        let ref = Ref.render(Ref.Params(g), camera: cam, background: SIMD3(1, 0, 0.25))
        XCTAssertGreaterThan(ref.terminated.filter { $0 }.count, 20, "early termination triggers")
        XCTAssertLessThan(ref.terminated.filter { $0 }.count, cam.width * cam.height, "but not everywhere")
        assertMatchesReference(out, ref)
        XCTAssertEqual(out.composites, ref.composites)
        checkGradients(g, cam, bg: bg, seed: 43)
    }

    /// Gradients of every parameter against central differences of the Double reference's loss
    /// L = Σ a·colour + Σ b·depth + Σ c·alpha (random a, b, c). Opacities stay below 0.99 (no clamp), and a
    /// parameter whose ±h perturbation flips any threshold decision (α >= 1/255 at some pixel, or early termination;
    /// the reference's per-pixel signatures differ) is skipped: L jumps there, so FD says nothing. Few are.
    func testGradientsMatchFiniteDifferences() {
        var rng = SeededRNG(seed: 42)
        let cam = camera()
        let g = scene(&rng, count: 18, behind: 1, spread: 1.0, logits: -1.5...2, cam: cam)
        checkGradients(g, cam, bg: SIMD3(0.3, 0.1, 0.6), seed: 44)
    }

    func checkGradients(_ g: GaussianSet, _ cam: SplatCamera, bg: SIMD3<Float>, seed: UInt64,
                        file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededRNG(seed: seed)
        let px = cam.width * cam.height
        let a = (0..<(3 * px)).map { _ in rng.gaussian() }, b = (0..<px).map { _ in rng.gaussian() }
        let c = (0..<px).map { _ in rng.gaussian() }
        let opts = SplatOptions(background: bg, tileSize: 8, threads: 2)
        let out = GaussianSplatting.render(g, camera: cam, options: opts)
        let grad = GaussianSplatting.backward(g, camera: cam, render: out, gradColor: a.map { Float($0) },
                                              gradDepth: b.map { Float($0) }, gradAlpha: c.map { Float($0) }, options: opts)
        let analytic = (grad.means + grad.logScales + grad.rotations + grad.opacityLogits + grad.colors).map(Double.init)
        let bgD = SIMD3(Double(bg.x), Double(bg.y), Double(bg.z))
        let base = Ref.Params(g), flat = base.flat
        let baseImage = Ref.render(base, camera: cam, background: bgD)
        let n = g.count, h = 1e-6
        let groups: [(String, Range<Int>)] = [("means", 0..<(3 * n)), ("logScales", (3 * n)..<(6 * n)),
                                              ("rotations", (6 * n)..<(10 * n)), ("opacityLogits", (10 * n)..<(11 * n)),
                                              ("colors", (11 * n)..<(14 * n))]
        var skipped = 0
        for (name, range) in groups {
            let scale = range.map { abs(analytic[$0]) }.max() ?? 0
            XCTAssertGreaterThan(scale, 1e-3, "\(name): not trivially zero", file: file, line: line)
            for k in range {
                var p = base, m = base
                p.setFlat(k, flat[k] + h); m.setFlat(k, flat[k] - h)
                let ip = Ref.render(p, camera: cam, background: bgD), im = Ref.render(m, camera: cam, background: bgD)
                guard ip.signature == baseImage.signature, im.signature == baseImage.signature else { skipped += 1; continue }
                let fd = (Ref.loss(ip, a: a, b: b, c: c) - Ref.loss(im, a: a, b: b, c: c)) / (2 * h)
                XCTAssertEqual(analytic[k], fd, accuracy: 2e-3 * scale + 5e-3 * abs(fd),
                               "\(name)[\(k - range.lowerBound)] (Gaussian \((k - range.lowerBound) / (name == "rotations" ? 4 : name == "opacityLogits" ? 1 : 3)))",
                               file: file, line: line)
            }
        }
        XCTAssertLessThanOrEqual(skipped, flat.count / 50, "few parameters sit on a threshold", file: file, line: line)
    }

    func testThreadCountsAgree() {
        var rng = SeededRNG(seed: 45)
        let cam = camera(width: 40, height: 30)
        let g = scene(&rng, count: 60, behind: 2, cam: cam)
        let px = cam.width * cam.height
        let gc = (0..<(3 * px)).map { _ in Float(rng.gaussian()) }, gd = (0..<px).map { _ in Float(rng.gaussian()) }
        var results: [(SplatRender, GaussianGradients)] = []
        for t in [1, 2] {
            let opts = SplatOptions(background: SIMD3(0.1, 0.2, 0.3), tileSize: 8, threads: t)
            let r = GaussianSplatting.render(g, camera: cam, options: opts)
            results.append((r, GaussianSplatting.backward(g, camera: cam, render: r, gradColor: gc, gradDepth: gd,
                                                          gradAlpha: nil, options: opts)))
        }
        let (r1, g1) = results[0], (r2, g2) = results[1]
        XCTAssertEqual(r1.color, r2.color); XCTAssertEqual(r1.depth, r2.depth); XCTAssertEqual(r1.alpha, r2.alpha)
        XCTAssertEqual(r1.composites, r2.composites)
        for (name, x, y) in [("means", g1.means, g2.means), ("logScales", g1.logScales, g2.logScales),
                             ("rotations", g1.rotations, g2.rotations), ("opacityLogits", g1.opacityLogits, g2.opacityLogits),
                             ("colors", g1.colors, g2.colors), ("screenMeans", g1.screenMeans, g2.screenMeans)] {
            let scale = x.map { abs($0) }.max() ?? 0
            XCTAssertGreaterThan(scale, 0, name)
            for k in 0..<x.count { XCTAssertEqual(x[k], y[k], accuracy: 1e-6 * scale, "\(name)[\(k)]") }
        }
        // The same thread count twice: bit-identical.
        let again = GaussianSplatting.backward(g, camera: cam, render: r2, gradColor: gc, gradDepth: gd, gradAlpha: nil,
                                               options: SplatOptions(background: SIMD3(0.1, 0.2, 0.3), tileSize: 8, threads: 2))
        XCTAssertEqual(again.means, g2.means); XCTAssertEqual(again.rotations, g2.rotations)
    }

    func testEmptySetRendersBackground() {
        let cam = camera()
        let bg = SIMD3<Float>(0.25, 0.5, 0.75)
        let out = GaussianSplatting.render(GaussianSet(), camera: cam, options: SplatOptions(background: bg))
        for p in 0..<(cam.width * cam.height) {
            XCTAssertEqual(out.color[3 * p], 0.25); XCTAssertEqual(out.color[3 * p + 1], 0.5); XCTAssertEqual(out.color[3 * p + 2], 0.75)
            XCTAssertEqual(out.depth[p], 0); XCTAssertEqual(out.alpha[p], 0)
        }
        XCTAssertEqual(out.composites, 0)
        let grad = GaussianSplatting.backward(GaussianSet(), camera: cam, render: out,
                                              gradColor: .init(repeating: 1, count: 3 * cam.width * cam.height),
                                              gradDepth: nil, gradAlpha: nil)
        XCTAssertTrue(grad.means.isEmpty && grad.screenMeans.isEmpty)
    }

    func testGaussianBehindCameraContributesNothing() {
        var rng = SeededRNG(seed: 46)
        let cam = camera()
        let front = scene(&rng, count: 10, cam: cam)
        // A huge opaque Gaussian 1 m behind the camera (it would cover everything if it were projected).
        var behind = GaussianSet(means: [0.1, -0.05, -1], logScales: [0, 0, 0], rotations: [1, 0, 0, 0],
                                 opacityLogits: [5], colors: [1, 1, 1])
        let opts = SplatOptions(background: SIMD3(0, 0, 1), threads: 2)
        let alone = GaussianSplatting.render(behind, camera: cam, options: opts)
        XCTAssertTrue(alone.alpha.allSatisfy { $0 == 0 }); XCTAssertEqual(alone.radii, [0])
        behind.append(contentsOf: front)
        let with = GaussianSplatting.render(behind, camera: cam, options: opts)
        let without = GaussianSplatting.render(front, camera: cam, options: opts)
        XCTAssertEqual(with.color, without.color); XCTAssertEqual(with.depth, without.depth)
        let px = cam.width * cam.height
        let grad = GaussianSplatting.backward(behind, camera: cam, render: with,
                                              gradColor: (0..<(3 * px)).map { _ in Float(rng.gaussian()) },
                                              gradDepth: (0..<px).map { _ in Float(rng.gaussian()) }, gradAlpha: nil, options: opts)
        XCTAssertEqual(Array(grad.means[0..<3]), [0, 0, 0]); XCTAssertEqual(Array(grad.rotations[0..<4]), [0, 0, 0, 0])
        XCTAssertEqual(grad.opacityLogits[0], 0); XCTAssertEqual(Array(grad.colors[0..<3]), [0, 0, 0])
        XCTAssertEqual(behind.filtered(keep: [false] + .init(repeating: true, count: 10)), front)
    }
}
