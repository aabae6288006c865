import ArgumentParser
import Foundation
import Kernels
import MapCore
import TestSupport

struct GaussianBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gaussians",
        abstract: "3D Gaussian splatting: composited (Gaussian, pixel) pairs per second, forward and forward+backward, vs the reference twin, 1 vs 2 threads, at 640x480 and 320x240.")

    @Option(help: "Number of random Gaussians in a 6 x 3 x 6 m room.")
    var gaussians = 20_000

    @Option(help: "Image sizes WxH, comma-separated (focal length scales with the width: 525 px at 640); 320x240 is the training resolution.")
    var sizes = "640x480,320x240"

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 1

    @Option(help: "Pixels the reference twin composites (every Gaussian at each), spread over the image.")
    var twinPixels = 600

    func run() throws {
        let parsed = sizes.split(separator: ",").map { $0.split(separator: "x").compactMap { Int($0) } }
        guard gaussians >= 1, seconds > 0, twinPixels >= 1, !parsed.isEmpty,
              parsed.allSatisfy({ $0.count == 2 && $0[0] >= 1 && $0[1] >= 1 }) else {
            throw ValidationError("--gaussians, --twin-pixels must be >= 1, --seconds > 0, --sizes like 640x480,320x240")
        }
        var rng = SeededRNG(seed: 7)
        let g = Self.room(&rng, count: gaussians)
        for size in parsed { measure(g, width: size[0], height: size[1], rng: &rng) }
    }

    func measure(_ g: GaussianSet, width: Int, height: Int, rng: inout SeededRNG) {
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
        // The Double reference twin (TestSupport) on pixels spread over the image; includes its projection and sort.
        let pixels = (0..<min(twinPixels, px)).map { ($0 * 7919) % px }
        let start = DispatchTime.now().uptimeNanoseconds
        let twin = ReferenceGaussianSplatting.render(.init(g), camera: cam, background: SIMD3(0.5, 0.5, 0.5), pixels: pixels)
        let twinSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        let twinRate = Double(twin.composites) / twinSeconds
        print(String(format: "  reference twin (Double, every Gaussian at every pixel, 1 thread): %d pixels, %.2f s, %.3f M composites/s",
                     pixels.count, twinSeconds, twinRate / 1e6))
        if let a = rates[1], let b = rates[2] {
            print(String(format: "  ratio to twin (per composite): forward 1 thread %.0fx, 2 threads %.0fx; forward+backward 1 thread %.0fx",
                         a.forward / twinRate, b.forward / twinRate, a.both / twinRate))
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
