import Kernels
import MapCore
import TestSupport
import XCTest

final class InstanceRenderingTests: XCTestCase {
    /// NeuS-like weights (some zero, total <= 1) and attention rows that are distributions over tokens.
    func randomInputs(_ rng: inout SeededRNG, rays: Int, samples s: Int, tokens n: Int) -> (w: [Float], a: [Float]) {
        var w: [Float] = [], a: [Float] = []
        for _ in 0..<rays {
            let raw = (0..<s).map { _ in rng.uniform() < 0.25 ? 0 : rng.uniform(0, 1) }
            let total = raw.reduce(0, +) + rng.uniform(0, 0.5)
            w += raw.map { Float($0 / max(total, 1e-9)) }
            for _ in 0..<s {
                let e = (0..<n).map { _ in exp(2 * rng.gaussian()) }
                let sum = e.reduce(0, +)
                a += e.map { Float($0 / sum) }
            }
        }
        return (w, a)
    }

    func render(_ w: [Float], _ a: [Float], rays: Int, samples: Int, tokens: Int) -> [Float] {
        var m = [Float](repeating: .nan, count: rays * tokens)
        InstanceRendering.forward(weights: w, attention: a, rays: rays, samples: samples, tokens: tokens, rendered: &m)
        return m
    }

    func testForwardMatchesReference() {
        var rng = SeededRNG(seed: 41)
        for (rays, s, n) in [(5, 9, 1), (7, 12, 6), (3, 20, 33)] {
            let (w, a) = randomInputs(&rng, rays: rays, samples: s, tokens: n)
            let m = render(w, a, rays: rays, samples: s, tokens: n)
            let ref = ReferenceInstanceRendering.render(weights: w.map(Double.init), attention: a.map(Double.init),
                                                        rays: rays, samples: s, tokens: n)
            for k in 0..<m.count { XCTAssertEqual(Double(m[k]), ref[k], accuracy: 1e-6, "rays \(rays) entry \(k)") }
            // Attention rows are distributions and weights sum to at most 1: each pixel's mass is the ray's weight.
            for r in 0..<rays {
                let mass = m[(r * n)..<((r + 1) * n)].reduce(0, +)
                let wsum = w[(r * s)..<((r + 1) * s)].reduce(0, +)
                XCTAssertEqual(mass, wsum, accuracy: 1e-5)
                XCTAssertTrue(m[(r * n)..<((r + 1) * n)].allSatisfy { $0 >= 0 && $0 <= 1 })
            }
        }
    }

    func testHandComputed() {
        // One ray, two samples, two tokens: m = 0.5 * (0.9, 0.1) + 0.25 * (0.2, 0.8) = (0.5, 0.25).
        let m = render([0.5, 0.25], [0.9, 0.1, 0.2, 0.8], rays: 1, samples: 2, tokens: 2)
        XCTAssertEqual(m[0], 0.5, accuracy: 1e-7)
        XCTAssertEqual(m[1], 0.25, accuracy: 1e-7)
        // dL/dA = w * g, row by row.
        var g = [Float](repeating: .nan, count: 4)
        InstanceRendering.backward(weights: [0.5, 0.25], gradRendered: [2, -4], rays: 1, samples: 2, tokens: 2,
                                   gradAttention: &g)
        XCTAssertEqual(g, [1, -2, 0.5, -1])
    }

    /// dL/dA for L = sum(g * m) against central differences of the reference, and the adjoint identity.
    func testBackwardMatchesFiniteDifferences() {
        var rng = SeededRNG(seed: 42)
        let rays = 4, s = 6, n = 5
        let (w, a) = randomInputs(&rng, rays: rays, samples: s, tokens: n)
        let up = (0..<(rays * n)).map { _ in Float(rng.gaussian()) }
        var ga = [Float](repeating: .nan, count: rays * s * n)
        InstanceRendering.backward(weights: w, gradRendered: up, rays: rays, samples: s, tokens: n, gradAttention: &ga)
        let wd = w.map(Double.init), ud = up.map(Double.init), base = a.map(Double.init), h = 1e-4
        func objective(_ att: [Double]) -> Double {
            let m = ReferenceInstanceRendering.render(weights: wd, attention: att, rays: rays, samples: s, tokens: n)
            return zip(m, ud).map { $0 * $1 }.reduce(0, +)
        }
        for k in 0..<base.count {
            var p = base, q = base
            p[k] += h; q[k] -= h
            let fd = (objective(p) - objective(q)) / (2 * h)
            XCTAssertEqual(Double(ga[k]), fd, accuracy: 1e-5 + 1e-4 * abs(fd), "entry \(k)")
        }
        // <g, forward(A)> == <backward(g), A>.
        let m = render(w, a, rays: rays, samples: s, tokens: n)
        let lhs = zip(m, up).map { Double($0) * Double($1) }.reduce(0, +)
        let rhs = zip(ga, a).map { Double($0) * Double($1) }.reduce(0, +)
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5)
    }

    func testZeroWeightRaysAndEmptySizes() {
        // A ray through free space renders zero for every token, whatever the attention holds; its gradient is zero.
        let m = render([0, 0, 0], [1, 0, 0.3, 0.7, 0.5, 0.5], rays: 1, samples: 3, tokens: 2)
        XCTAssertEqual(m, [0, 0])
        var g = [Float](repeating: .nan, count: 6)
        InstanceRendering.backward(weights: [0, 0, 0], gradRendered: [3, -1], rays: 1, samples: 3, tokens: 2,
                                   gradAttention: &g)
        XCTAssertTrue(g.allSatisfy { $0 == 0 })
        // No tokens / no rays: nothing written, nothing read.
        var none: [Float] = [42]
        InstanceRendering.forward(weights: [1], attention: [], rays: 1, samples: 1, tokens: 0, rendered: &none)
        InstanceRendering.forward(weights: [], attention: [], rays: 0, samples: 4, tokens: 3, rendered: &none)
        XCTAssertEqual(none, [42])
    }
}
