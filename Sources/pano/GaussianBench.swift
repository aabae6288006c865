import ArgumentParser
import Foundation
import Kernels
import MapCore

struct GaussianBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gaussians",
        abstract: "3D Gaussian splatting: composited (Gaussian, pixel) pairs per second, forward and forward+backward, vs the naive per-pixel twin, 1 vs 2 threads.")

    @Option(help: "Number of random Gaussians in a 6 x 3 x 6 m room.")
    var gaussians = 20_000

    @Option(help: "Image width in pixels (focal length scales with it: 525 px at 640).")
    var width = 640

    @Option(help: "Image height in pixels.")
    var height = 480

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 1

    @Option(help: "Pixels the naive twin composites (every Gaussian at each), spread over the image.")
    var twinPixels = 600

    func run() throws {
        guard gaussians >= 1, width >= 1, height >= 1, seconds > 0, twinPixels >= 1 else {
            throw ValidationError("--gaussians, --width, --height, --twin-pixels must be >= 1 and --seconds > 0")
        }
        var rng = SeededRNG(seed: 7)
        let g = Self.room(&rng, count: gaussians)
        let f = Float(525 * Double(width) / 640)
        let cam = SplatCamera(fx: f, fy: f, cx: Float(width) / 2 - 0.5, cy: Float(height) / 2 - 0.5, width: width,
                              height: height, rotation: [1, 0, 0, 0, 1, 0, 0, 0, 1], translation: SIMD3(0, 0, 3))
        let px = width * height
        let gradColor = (0..<(3 * px)).map { _ in Float(rng.gaussian()) }
        let gradDepth = (0..<px).map { _ in Float(rng.gaussian()) }
        print("bench gaussians: \(gaussians) random Gaussians in a room, \(width)x\(height), tile 16")
        var rates: [Int: (forward: Double, both: Double)] = [:]
        var composites = 0
        for t in [1, 2] {
            let opts = SplatOptions(background: SIMD3(0.5, 0.5, 0.5), tileSize: 16, threads: t)
            var r = GaussianSplatting.render(g, camera: cam, options: opts)
            composites = r.composites
            let fwd = Self.repeatFor(seconds) { r = GaussianSplatting.render(g, camera: cam, options: opts) }
            let both = Self.repeatFor(seconds) {
                let rr = GaussianSplatting.render(g, camera: cam, options: opts)
                _ = GaussianSplatting.backward(g, camera: cam, render: rr, gradColor: gradColor, gradDepth: gradDepth,
                                               gradAlpha: nil, options: opts)
            }
            rates[t] = (Double(composites) / fwd, Double(composites) / both)
            print(String(format: "  %d thread(s): forward %6.1f ms  %7.1f M composites/s;  forward+backward %6.1f ms  %7.1f M composites/s",
                         t, 1e3 * fwd, Double(composites) / fwd / 1e6, 1e3 * both, Double(composites) / both / 1e6))
        }
        print(String(format: "  %d composites per frame (%.1f per pixel), %d Gaussians visible",
                     composites, Double(composites) / Double(px),
                     GaussianSplatting.render(g, camera: cam).radii.filter { $0 > 0 }.count))
        if let a = rates[1], let b = rates[2] {
            print(String(format: "  scaling 1 -> 2 threads: forward %.2fx, forward+backward %.2fx", b.forward / a.forward, b.both / a.both))
        }
        let (twinSeconds, twinComposites) = NaiveTwin.time(g, cam, pixels: twinPixels)
        let twinRate = Double(twinComposites) / twinSeconds
        print(String(format: "  naive twin (Double, every Gaussian at every pixel, 1 thread): %d pixels, %.2f s, %.3f M composites/s",
                     twinPixels, twinSeconds, twinRate / 1e6))
        if let a = rates[1], let b = rates[2] {
            print(String(format: "  ratio to twin (per composite): forward 1 thread %.0fx, 2 threads %.0fx", a.forward / twinRate,
                         b.forward / twinRate))
        }
    }

    /// Means uniform over a 6 x 3 x 6 m box in front of the camera (z 0.5-6.5 m in view), scales 1-8 cm
    /// (log-uniform, anisotropic), random rotations, opacities sigmoid(U(-2, 3)), random colours.
    static func room(_ rng: inout SeededRNG, count: Int) -> GaussianSet {
        var g = GaussianSet()
        for _ in 0..<count {
            g.means += [Float(rng.uniform(-3, 3)), Float(rng.uniform(-1.5, 1.5)), Float(rng.uniform(-2.5, 3.5))]
            for _ in 0..<3 { g.logScales.append(Float(Foundation.log(rng.uniform(0.01, 0.08)))) }
            for _ in 0..<4 { g.rotations.append(Float(rng.gaussian())) }
            g.opacityLogits.append(Float(rng.uniform(-2, 3)))
            for _ in 0..<3 { g.colors.append(Float(rng.uniform())) }
        }
        return g
    }

    /// Mean seconds per call of `body` over at least `seconds` (one warm-up call first).
    static func repeatFor(_ seconds: Double, _ body: () -> Void) -> Double {
        body()
        let start = DispatchTime.now().uptimeNanoseconds
        var calls = 0, elapsed = 0.0
        repeat {
            body(); calls += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        } while elapsed < seconds
        return elapsed / Double(calls)
    }
}

/// The naive per-pixel algorithm of `ReferenceGaussianSplatting` (TestSupport, which pano does not link), for
/// timing only: project every Gaussian in Double, sort by depth, composite every Gaussian at each pixel.
enum NaiveTwin {
    static func time(_ g: GaussianSet, _ cam: SplatCamera, pixels: Int) -> (seconds: Double, composites: Int) {
        let start = DispatchTime.now().uptimeNanoseconds
        var splats: [(z: Double, u: Double, v: Double, a: Double, b: Double, c: Double, o: Double, i: Int)] = []
        let w = cam.rotation.map(Double.init), t = [Double(cam.translation.x), Double(cam.translation.y), Double(cam.translation.z)]
        let fx = Double(cam.fx), fy = Double(cam.fy), cx = Double(cam.cx), cy = Double(cam.cy)
        for i in 0..<g.count {
            let m = (0..<3).map { Double(g.means[3 * i + $0]) }
            let p = (0..<3).map { r in w[3 * r] * m[0] + w[3 * r + 1] * m[1] + w[3 * r + 2] * m[2] + t[r] }
            guard p[2] >= Double(cam.near) else { continue }
            var q = (0..<4).map { Double(g.rotations[4 * i + $0]) }
            let qn = q.map { $0 * $0 }.reduce(0, +).squareRoot()
            q = q.map { $0 / qn }
            let (qa, qb, qc, qd) = (q[0], q[1], q[2], q[3])
            let rot = [[1 - 2 * (qc * qc + qd * qd), 2 * (qb * qc - qa * qd), 2 * (qb * qd + qa * qc)],
                       [2 * (qb * qc + qa * qd), 1 - 2 * (qb * qb + qd * qd), 2 * (qc * qd - qa * qb)],
                       [2 * (qb * qd - qa * qc), 2 * (qc * qd + qa * qb), 1 - 2 * (qb * qb + qc * qc)]]
            let s = (0..<3).map { exp(Double(g.logScales[3 * i + $0])) }
            let z = p[2]
            let rx = min((1.15 * Double(cam.width) - cx) / fx, max((-0.15 * Double(cam.width) - cx) / fx, p[0] / z))
            let ry = min((1.15 * Double(cam.height) - cy) / fy, max((-0.15 * Double(cam.height) - cy) / fy, p[1] / z))
            let jac = [[fx / z, 0, -fx * rx / z], [0, fy / z, -fy * ry / z]]
            var tm = [[Double]](repeating: [0, 0, 0], count: 2)
            for r in 0..<2 { for c in 0..<3 { for k in 0..<3 { tm[r][c] += jac[r][k] * w[3 * k + c] } } }
            var v = [[Double]](repeating: [0, 0, 0], count: 2)
            for r in 0..<2 { for c in 0..<3 { for k in 0..<3 { v[r][c] += tm[r][k] * rot[k][c] * s[c] } } }
            let a = v[0].map { $0 * $0 }.reduce(0, +) + 0.3, c = v[1].map { $0 * $0 }.reduce(0, +) + 0.3
            let b = zip(v[0], v[1]).map { $0 * $1 }.reduce(0, +)
            let det = a * c - b * b
            guard det > 0 else { continue }
            splats.append((z, fx * p[0] / z + cx, fy * p[1] / z + cy, c / det, -b / det, a / det,
                           1 / (1 + exp(-Double(g.opacityLogits[i]))), i))
        }
        splats.sort { $0.z < $1.z || ($0.z == $1.z && $0.i < $1.i) }
        var composites = 0, sink = 0.0
        let total = cam.width * cam.height
        for k in 0..<pixels {
            let pix = (k * 7919) % total
            let (px, py) = (Double(pix % cam.width), Double(pix / cam.width))
            var tr = 1.0
            for sp in splats {
                let dx = sp.u - px, dy = sp.v - py
                let alpha = min(0.99, sp.o * exp(-0.5 * (sp.a * dx * dx + 2 * sp.b * dx * dy + sp.c * dy * dy)))
                if alpha < 1.0 / 255 { continue }
                let next = tr * (1 - alpha)
                if next < 1e-4 { break }
                sink += alpha * tr * Double(g.colors[3 * sp.i])
                tr = next
                composites += 1
            }
        }
        if sink.isNaN { print("") }
        return (Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9, composites)
    }
}
