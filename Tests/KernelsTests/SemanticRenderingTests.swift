import Kernels
import MapCore
import TestSupport
import XCTest

final class SemanticRenderingTests: XCTestCase {
    struct Batch {
        var rays: Int, samples: Int, classes: Int
        var weights: [Float], logits: [Float], labels: [Int32]
    }

    /// Random weights summing to at most 1 per ray (some zero, like NeuS weights after the surface), random logits.
    func randomBatch(_ rng: inout SeededRNG, rays: Int, samples s: Int, classes c: Int, logitScale: Double = 3,
                     unlabelledEvery: Int = 0) -> Batch {
        var w: [Float] = [], z: [Float] = [], l: [Int32] = []
        for r in 0..<rays {
            var raw = (0..<s).map { _ in rng.uniform() < 0.25 ? 0 : rng.uniform(0, 1) }
            if r % 5 == 4 { raw = raw.map { $0 * 1e-3 } } // a ray that barely hits anything
            let total = raw.reduce(0, +) + rng.uniform(0, 0.5)
            w += raw.map { Float($0 / max(total, 1e-9)) }
            for _ in 0..<(s * c) { z.append(Float(logitScale * rng.gaussian())) }
            let unlabelled = unlabelledEvery > 0 && r % unlabelledEvery == 0
            l.append(unlabelled ? -1 : Int32(rng.next() % UInt64(c)))
        }
        return Batch(rays: rays, samples: s, classes: c, weights: w, logits: z, labels: l)
    }

    func run(_ b: Batch, epsilon: Float = SemanticRendering.defaultEpsilon)
        -> (p: [Float], loss: Float, labelled: Int, grad: [Float])
    {
        var p = [Float](repeating: .nan, count: b.rays * b.classes)
        var g = [Float](repeating: .nan, count: b.rays * b.samples * b.classes)
        let (loss, n) = SemanticRendering.forward(weights: b.weights, logits: b.logits, rays: b.rays, samples: b.samples,
                                                  classes: b.classes, labels: b.labels, epsilon: epsilon,
                                                  probabilities: &p)
        SemanticRendering.backward(weights: b.weights, logits: b.logits, rays: b.rays, samples: b.samples,
                                   classes: b.classes, labels: b.labels, labelled: n, epsilon: epsilon,
                                   probabilities: p, gradLogits: &g)
        return (p, loss, n, g)
    }

    func refLoss(_ b: Batch, logits: [Double]? = nil, epsilon: Double = Double(SemanticRendering.defaultEpsilon)) -> Double {
        ReferenceSemanticRendering.loss(weights: b.weights.map(Double.init), logits: logits ?? b.logits.map(Double.init),
                                        rays: b.rays, samples: b.samples, classes: b.classes,
                                        labels: b.labels.map(Int.init), epsilon: epsilon)
    }

    func testProbabilitiesAndLossMatchReference() {
        var rng = SeededRNG(seed: 11)
        for c in [1, 2, 5, 17, 300] {
            let b = randomBatch(&rng, rays: 7, samples: 12, classes: c, unlabelledEvery: 3)
            let out = run(b)
            for r in 0..<b.rays {
                let w = b.weights[(r * b.samples)..<((r + 1) * b.samples)].map(Double.init)
                let z = (0..<b.samples).map { j in
                    b.logits[((r * b.samples + j) * c)..<((r * b.samples + j + 1) * c)].map(Double.init)
                }
                let ref = ReferenceSemanticRendering.probabilities(weights: w, logits: z,
                                                                   epsilon: Double(SemanticRendering.defaultEpsilon))
                for k in 0..<c {
                    XCTAssertEqual(Double(out.p[r * c + k]), ref[k], accuracy: 2e-6 + 1e-5 * ref[k], "C \(c) ray \(r) k \(k)")
                }
                XCTAssertEqual(out.p[(r * c)..<((r + 1) * c)].reduce(0, +), 1, accuracy: 1e-4, "a distribution")
            }
            XCTAssertEqual(out.labelled, b.labels.filter { $0 >= 0 }.count)
            let ref = refLoss(b)
            XCTAssertEqual(Double(out.loss), ref, accuracy: 1e-5 * max(1, abs(ref)), "C \(c)")
        }
    }

    /// dL/dz against central differences of the Double reference loss, for every logit.
    func testGradientsMatchFiniteDifferences() {
        var rng = SeededRNG(seed: 12)
        for c in [1, 3, 8] {
            let b = randomBatch(&rng, rays: 6, samples: 7, classes: c, unlabelledEvery: 4)
            let out = run(b)
            let base = b.logits.map(Double.init), h = 1e-5
            var worst = 0.0
            for i in 0..<base.count {
                var p = base, m = base
                p[i] += h; m[i] -= h
                let fd = (refLoss(b, logits: p) - refLoss(b, logits: m)) / (2 * h)
                let err = abs(Double(out.grad[i]) - fd)
                worst = max(worst, err / max(1e-3, abs(fd)))
                XCTAssertEqual(Double(out.grad[i]), fd, accuracy: 2e-5 + 1e-3 * abs(fd), "C \(c) logit \(i)")
            }
            XCTAssertLessThan(worst, 0.01)
            if c == 1 { XCTAssertTrue(out.grad.allSatisfy { abs($0) < 1e-6 }, "one class: P = 1, no gradient") }
        }
    }

    func testUnlabelledRaysContributeNothing() {
        var rng = SeededRNG(seed: 13)
        let b = randomBatch(&rng, rays: 8, samples: 6, classes: 4, unlabelledEvery: 2)
        let out = run(b)
        let s = b.samples, c = b.classes
        for r in 0..<b.rays where b.labels[r] < 0 {
            XCTAssertTrue(out.grad[(r * s * c)..<((r + 1) * s * c)].allSatisfy { $0 == 0 }, "ray \(r)")
        }
        // Changing an unlabelled ray's logits changes neither loss nor other gradients.
        var b2 = b
        for i in 0..<(s * c) { b2.logits[i] += 5 * Float(i % 3) } // ray 0 is unlabelled
        let out2 = run(b2)
        XCTAssertEqual(out2.loss, out.loss)
        XCTAssertEqual(Array(out2.grad[(s * c)...]), Array(out.grad[(s * c)...]))
        // No labelled ray at all: zero loss, zero gradients.
        var none = b
        none.labels = [Int32](repeating: -1, count: b.rays)
        let out3 = run(none)
        XCTAssertEqual(out3.loss, 0); XCTAssertEqual(out3.labelled, 0)
        XCTAssertTrue(out3.grad.allSatisfy { $0 == 0 })
    }

    func testExtremeLogitsAndEmptyRaysStayFinite() {
        // Logits of +-1e4 (plain exp overflows), a ray with all-zero weights (uniform, no gradient).
        let s = 4, c = 3
        let w: [Float] = [0.2, 0.7, 0.1, 0, 0, 0, 0, 0]
        var z: [Float] = []
        for j in 0..<(2 * s) { z += [1e4, -1e4, Float(j) * 3e3] }
        let b = Batch(rays: 2, samples: s, classes: c, weights: w, logits: z, labels: [1, 0])
        let out = run(b)
        XCTAssertTrue(out.p.allSatisfy { $0.isFinite }); XCTAssertTrue(out.grad.allSatisfy { $0.isFinite })
        XCTAssertTrue(out.loss.isFinite)
        for k in 0..<c { XCTAssertEqual(out.p[c + k], 1 / Float(c), accuracy: 1e-6) }
        XCTAssertTrue(out.grad[(s * c)...].allSatisfy { $0 == 0 })
        // Ray 0: P_1 = (eps / 3) / (1 + eps), -log = 14.9; ray 1: uniform, -log 3 = 1.1.
        XCTAssertEqual(out.loss, (-logf(SemanticRendering.defaultEpsilon / 3) + logf(3)) / 2, accuracy: 1e-3,
                       "the label's probability is tiny but -log stays finite")
    }

    /// A large vocabulary: values and a few gradients against the reference.
    func testLargeClassCount() {
        var rng = SeededRNG(seed: 14)
        let b = randomBatch(&rng, rays: 3, samples: 10, classes: 1000, logitScale: 5)
        let out = run(b)
        XCTAssertEqual(Double(out.loss), refLoss(b), accuracy: 1e-4)
        let base = b.logits.map(Double.init), h = 1e-4
        for _ in 0..<20 {
            // Probe the label's logits (large gradients) and random ones.
            let r = Int(rng.next() % 3), j = Int(rng.next() % 10)
            let k = rng.uniform() < 0.5 ? Int(b.labels[r]) : Int(rng.next() % 1000)
            let i = (r * 10 + j) * 1000 + k
            var p = base, m = base
            p[i] += h; m[i] -= h
            let fd = (refLoss(b, logits: p) - refLoss(b, logits: m)) / (2 * h)
            XCTAssertEqual(Double(out.grad[i]), fd, accuracy: 1e-5 + 1e-3 * abs(fd))
        }
    }
}

// MARK: - The general backward (dL/dP -> dL/dlogits)

extension SemanticRenderingTests {
    func generalBackward(_ b: Batch, upstream: [Float], epsilon: Float = SemanticRendering.defaultEpsilon) -> [Float] {
        var g = [Float](repeating: .nan, count: b.rays * b.samples * b.classes)
        SemanticRendering.backward(weights: b.weights, logits: b.logits, rays: b.rays, samples: b.samples,
                                   classes: b.classes, epsilon: epsilon, gradProbabilities: upstream, gradLogits: &g)
        return g
    }

    /// For a random upstream gradient g, dL/dz against central differences of sum(g * P_ref), every logit.
    func testGeneralBackwardMatchesFiniteDifferences() {
        var rng = SeededRNG(seed: 15)
        for c in [1, 3, 7] {
            let b = randomBatch(&rng, rays: 5, samples: 6, classes: c)
            let up = (0..<(b.rays * c)).map { _ in Float(rng.gaussian()) }
            let grad = generalBackward(b, upstream: up)
            let ud = up.map(Double.init), wd = b.weights.map(Double.init), base = b.logits.map(Double.init)
            let eps = Double(SemanticRendering.defaultEpsilon), h = 1e-5
            func objective(_ z: [Double]) -> Double {
                let p = ReferenceSemanticRendering.probabilities(weights: wd, logits: z, rays: b.rays,
                                                                 samples: b.samples, classes: c, epsilon: eps)
                return zip(p, ud).map { $0 * $1 }.reduce(0, +)
            }
            for i in 0..<base.count {
                var p = base, m = base
                p[i] += h; m[i] -= h
                let fd = (objective(p) - objective(m)) / (2 * h)
                XCTAssertEqual(Double(grad[i]), fd, accuracy: 1e-6 + 1e-3 * abs(fd), "C \(c) logit \(i)")
            }
            // Zero-weight samples get exactly zero.
            for j in 0..<(b.rays * b.samples) where b.weights[j] == 0 {
                XCTAssertTrue(grad[(j * c)..<((j + 1) * c)].allSatisfy { $0 == 0 }, "sample \(j)")
            }
        }
    }

    /// With g = one-hot(-1 / (N P_l)) per labelled ray (zero for unlabelled ones) it is the label-based backward.
    func testGeneralBackwardEqualsLabelBackward() {
        var rng = SeededRNG(seed: 16)
        let b = randomBatch(&rng, rays: 9, samples: 8, classes: 5, unlabelledEvery: 3)
        let out = run(b)
        var up = [Float](repeating: 0, count: b.rays * b.classes)
        for r in 0..<b.rays where b.labels[r] >= 0 {
            let l = Int(b.labels[r])
            up[r * b.classes + l] = -1 / (Float(out.labelled) * out.p[r * b.classes + l])
        }
        let grad = generalBackward(b, upstream: up)
        for i in 0..<grad.count {
            XCTAssertEqual(grad[i], out.grad[i], accuracy: 1e-6 + 1e-4 * abs(out.grad[i]), "logit \(i)")
        }
        XCTAssertGreaterThan(grad.map { abs($0) }.max() ?? 0, 1e-3, "not trivially zero")
    }
}
