import Kernels
import MapCore
import TestSupport
import XCTest

final class NeuSRenderingTests: XCTestCase {
    func randomRay(_ rng: inout SeededRNG, samples: Int) -> [Float] {
        // A ray crossing a surface: SDF decreasing through 0 with noise, sometimes re-emerging.
        let start = rng.uniform(0.05, 0.4)
        return (0..<samples).map { j in Float(start - 0.03 * Double(j) + 0.004 * rng.gaussian()) }
    }

    func testWeightsMatchReference() {
        var rng = SeededRNG(seed: 5)
        for xi in [Float(5), 40, 300] {
            let s = 24
            let sdf = randomRay(&rng, samples: s)
            var w = [Float](repeating: 0, count: s)
            NeuSRendering.weights(sdf: sdf, rays: 1, samples: s, xi: xi, weights: &w)
            let ref = ReferenceNeuS.weights(sdf: sdf.map(Double.init), xi: Double(xi))
            for j in 0..<s { XCTAssertEqual(Double(w[j]), ref[j], accuracy: 2e-6, "xi \(xi) j \(j)") }
            XCTAssertLessThanOrEqual(w.reduce(0, +), 1.0001)
        }
    }

    func testDeepInsideSolidsStaysFinite() {
        let sdf: [Float] = [0.5, 0.2, 0.01, -0.3, -2, -5, -10]
        var w = [Float](repeating: 0, count: sdf.count)
        NeuSRendering.weights(sdf: sdf, rays: 1, samples: sdf.count, xi: 1000, weights: &w)
        XCTAssertTrue(w.allSatisfy { $0.isFinite })
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-4, "an opaque crossing absorbs the whole ray")
        var g = [Float](repeating: 0, count: sdf.count)
        let gx = NeuSRendering.backward(sdf: sdf, rays: 1, samples: sdf.count, xi: 1000,
                                        gradWeights: [Float](repeating: 1, count: sdf.count), gradSDF: &g)
        XCTAssertTrue(g.allSatisfy { $0.isFinite }); XCTAssertTrue(gx.isFinite)
    }

    /// Gradients of L = sum_j c_j w_j (e.g. rendered depth) against central differences of the Double reference.
    func testGradientsMatchFiniteDifferences() {
        var rng = SeededRNG(seed: 9)
        let rays = 3, s = 16
        for xi in [Float(10), 60] {
            var sdf: [Float] = []
            for _ in 0..<rays { sdf += randomRay(&rng, samples: s) }
            let c = (0..<(rays * s)).map { _ in Float(rng.uniform(0, 3)) }
            var w = [Float](repeating: 0, count: rays * s), gs = w
            NeuSRendering.weights(sdf: sdf, rays: rays, samples: s, xi: xi, weights: &w)
            let gx = NeuSRendering.backward(sdf: sdf, rays: rays, samples: s, xi: xi, gradWeights: c, gradSDF: &gs)
            func loss(_ sd: [Double], _ x: Double) -> Double {
                var total = 0.0
                for r in 0..<rays {
                    let wr = ReferenceNeuS.weights(sdf: Array(sd[(r * s)..<((r + 1) * s)]), xi: x)
                    for j in 0..<s { total += Double(c[r * s + j]) * wr[j] }
                }
                return total
            }
            let base = sdf.map(Double.init), h = 1e-6
            var largest = 0.0
            for i in 0..<(rays * s) {
                var p = base, m = base
                p[i] += h; m[i] -= h
                let fd = (loss(p, Double(xi)) - loss(m, Double(xi))) / (2 * h)
                XCTAssertEqual(Double(gs[i]), fd, accuracy: 1e-4 + 2e-3 * abs(fd), "xi \(xi) sample \(i)")
                largest = max(largest, abs(fd))
            }
            XCTAssertGreaterThan(largest, 0.1, "the test must exercise non-trivial gradients")
            let fdXi = (loss(base, Double(xi) + 1e-4) - loss(base, Double(xi) - 1e-4)) / 2e-4
            XCTAssertEqual(Double(gx), fdXi, accuracy: 1e-5 + 2e-3 * abs(fdXi), "xi \(xi)")
            XCTAssertGreaterThan(abs(fdXi), 1e-4)
        }
    }
}
