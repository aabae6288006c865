import Kernels
import MapCore
import TestSupport
import XCTest

final class PanopticHeadTests: XCTestCase {
    struct Case {
        var pixels: Int, classes: Int, tokens: Int
        var semantic: [Float], instance: [Float], stuff: [Int32], things: [Int32], targets: [Int32]
        var width: Int { stuff.count + tokens }
    }

    /// Semantic rows: softmax of random logits (sum to 1). Instance rows: non-negative, sum in (0.05, 1].
    /// Classes are split into stuff and things in a shuffled order; targets in -1..<(S + N).
    func randomCase(_ rng: inout SeededRNG, pixels: Int, classes c: Int, tokens n: Int, stuffCount s: Int) -> Case {
        var order = Array(0..<c)
        for k in stride(from: c - 1, to: 0, by: -1) { order.swapAt(k, Int(rng.next() % UInt64(k + 1))) }
        let stuff = order.prefix(s).map { Int32($0) }, things = order.dropFirst(s).map { Int32($0) }
        var u: [Float] = [], m: [Float] = [], t: [Int32] = []
        for p in 0..<pixels {
            u += ReferenceSemanticRendering.softmax((0..<c).map { _ in 1.5 * rng.gaussian() }).map { Float($0) }
            let raw = (0..<n).map { _ in exp(rng.gaussian()) }
            let mass = rng.uniform(0.05, 1) / raw.reduce(0, +)
            m += raw.map { Float($0 * mass) }
            t.append(p % 4 == 3 ? -1 : Int32(rng.next() % UInt64(s + n)))
        }
        return Case(pixels: pixels, classes: c, tokens: n, semantic: u, instance: m, stuff: stuff, things: things,
                    targets: t)
    }

    func forward(_ k: Case, epsilon: Float = PanopticHead.defaultEpsilon) -> [Float] {
        var out = [Float](repeating: .nan, count: k.pixels * k.width)
        PanopticHead.forward(semantic: k.semantic, instance: k.instance, pixels: k.pixels, classes: k.classes,
                             tokens: k.tokens, stuffClasses: k.stuff, stuffCount: k.stuff.count,
                             thingClasses: k.things, thingCount: k.things.count, epsilon: epsilon, panoptic: &out)
        return out
    }

    func loss(_ k: Case, epsilon: Float = PanopticHead.defaultEpsilon)
        -> (loss: Float, labelled: Int, gu: [Float], gm: [Float])
    {
        let lp = forward(k, epsilon: epsilon)
        var gu = [Float](repeating: .nan, count: k.pixels * k.classes)
        var gm = [Float](repeating: .nan, count: k.pixels * k.tokens)
        let (l, n) = PanopticHead.loss(semantic: k.semantic, instance: k.instance, pixels: k.pixels,
                                       classes: k.classes, tokens: k.tokens, stuffClasses: k.stuff,
                                       stuffCount: k.stuff.count, thingClasses: k.things,
                                       thingCount: k.things.count, epsilon: epsilon, panoptic: lp,
                                       targets: k.targets, gradSemantic: &gu, gradInstance: &gm)
        return (l, n, gu, gm)
    }

    func refLoss(_ k: Case, semantic: [Double]? = nil, instance: [Double]? = nil,
                 epsilon: Double = Double(PanopticHead.defaultEpsilon)) -> Double {
        ReferencePanopticHead.loss(semantic: semantic ?? k.semantic.map(Double.init),
                                   instance: instance ?? k.instance.map(Double.init), pixels: k.pixels,
                                   classes: k.classes, tokens: k.tokens, stuff: k.stuff.map(Int.init),
                                   things: k.things.map(Int.init), epsilon: epsilon,
                                   targets: k.targets.map(Int.init), floor: 1e-12)
    }

    func testForwardMatchesReferenceAndIsADistribution() {
        var rng = SeededRNG(seed: 61)
        for (c, n, s) in [(5, 4, 2), (8, 1, 7), (3, 12, 0), (6, 7, 3)] {
            let k = randomCase(&rng, pixels: 9, classes: c, tokens: n, stuffCount: s)
            let lp = forward(k)
            let ref = ReferencePanopticHead.panoptic(semantic: k.semantic.map(Double.init),
                                                     instance: k.instance.map(Double.init), pixels: k.pixels,
                                                     classes: c, tokens: n, stuff: k.stuff.map(Int.init),
                                                     things: k.things.map(Int.init),
                                                     epsilon: Double(PanopticHead.defaultEpsilon))
            for e in 0..<lp.count { XCTAssertEqual(Double(lp[e]), ref[e], accuracy: 1e-6, "C \(c) entry \(e)") }
            // Eq. 19-21: semantic rows sum to 1, so does l_P (up to eps / sum m, here < 2e-5).
            for p in 0..<k.pixels {
                XCTAssertEqual(k.semantic[(p * c)..<((p + 1) * c)].reduce(0, +), 1, accuracy: 1e-5)
                XCTAssertEqual(lp[(p * k.width)..<((p + 1) * k.width)].reduce(0, +), 1, accuracy: 3e-5, "pixel \(p)")
                XCTAssertTrue(lp[(p * k.width)..<((p + 1) * k.width)].allSatisfy { $0 >= 0 })
            }
        }
    }

    func testHandComputed() {
        // C = 3: class 1 is stuff, classes 0 and 2 are things. u = (0.2, 0.5, 0.3): P_thing = 0.5.
        // m = (0.3, 0.1): l_P = (0.5, 0.5 * 0.75, 0.5 * 0.25) = (0.5, 0.375, 0.125) with eps = 0.
        let k = Case(pixels: 1, classes: 3, tokens: 2, semantic: [0.2, 0.5, 0.3], instance: [0.3, 0.1], stuff: [1],
                     things: [0, 2], targets: [1])
        let lp = forward(k, epsilon: 0)
        XCTAssertEqual(lp[0], 0.5, accuracy: 1e-7)
        XCTAssertEqual(lp[1], 0.375, accuracy: 1e-7)
        XCTAssertEqual(lp[2], 0.125, accuracy: 1e-7)
        XCTAssertEqual(PanopticHead.argmax(lp, count: 3), 0)
        // Target token 0: L = -log 0.375; g = -1 / 0.375. dL/du_thing = g * m_0 / 0.4 = -2, dL/du_stuff = 0.
        // dL/dm = g * 0.5 * (delta_0j / 0.4 - 0.3 / 0.16) = (-1/0.375) * 0.5 * (0.625, -1.875) = (-5/6, 2.5).
        let out = loss(k, epsilon: 0)
        XCTAssertEqual(out.labelled, 1)
        XCTAssertEqual(out.loss, -logf(0.375), accuracy: 1e-6)
        XCTAssertEqual(out.gu[0], -2, accuracy: 1e-5); XCTAssertEqual(out.gu[1], 0); XCTAssertEqual(out.gu[2], -2, accuracy: 1e-5)
        XCTAssertEqual(out.gm[0], -5.0 / 6, accuracy: 1e-5); XCTAssertEqual(out.gm[1], 2.5, accuracy: 1e-5)
        // Target the stuff class: L = -log 0.5, dL/du_1 = -2, nothing else.
        var stuffCase = k
        stuffCase.targets = [0]
        let s = loss(stuffCase, epsilon: 0)
        XCTAssertEqual(s.loss, logf(2), accuracy: 1e-6)
        XCTAssertEqual(s.gu, [0, -2, 0]); XCTAssertEqual(s.gm, [0, 0])
    }

    /// dL/du and dL/dm against central differences of the Double reference loss, every entry.
    func testGradientsMatchFiniteDifferences() {
        var rng = SeededRNG(seed: 62)
        for (c, n, s) in [(5, 4, 2), (4, 6, 1), (3, 3, 0)] {
            let k = randomCase(&rng, pixels: 8, classes: c, tokens: n, stuffCount: s)
            let out = loss(k)
            let ref = refLoss(k)
            XCTAssertEqual(Double(out.loss), ref, accuracy: 1e-5 * max(1, ref))
            XCTAssertEqual(out.labelled, k.targets.filter { $0 >= 0 }.count)
            let u = k.semantic.map(Double.init), m = k.instance.map(Double.init), h = 1e-6
            for e in 0..<u.count {
                var p = u, q = u
                p[e] += h; q[e] -= h
                let fd = (refLoss(k, semantic: p) - refLoss(k, semantic: q)) / (2 * h)
                XCTAssertEqual(Double(out.gu[e]), fd, accuracy: 1e-4 + 1e-3 * abs(fd), "C \(c) semantic \(e)")
            }
            for e in 0..<m.count {
                var p = m, q = m
                p[e] += h; q[e] -= h
                let fd = (refLoss(k, instance: p) - refLoss(k, instance: q)) / (2 * h)
                XCTAssertEqual(Double(out.gm[e]), fd, accuracy: 1e-4 + 1e-3 * abs(fd), "C \(c) instance \(e)")
            }
            // Unlabelled pixels: zero rows.
            for p in 0..<k.pixels where k.targets[p] < 0 {
                XCTAssertTrue(out.gu[(p * c)..<((p + 1) * c)].allSatisfy { $0 == 0 })
                XCTAssertTrue(out.gm[(p * n)..<((p + 1) * n)].allSatisfy { $0 == 0 })
            }
        }
    }

    func testNoTokenMassAndNoLabels() {
        // m = 0 everywhere: thing outputs are 0 (the thing mass is lost), a thing target costs -log(1e-12) but stays
        // finite, and the gradient with respect to m is finite (it is what pulls tokens onto the pixel).
        var k = Case(pixels: 2, classes: 2, tokens: 3, semantic: [0.4, 0.6, 0.9, 0.1], instance: [0, 0, 0, 0, 0, 0],
                     stuff: [0], things: [1], targets: [2, -1])
        let lp = forward(k)
        XCTAssertEqual(Array(lp[0..<4]), [0.4, 0, 0, 0])
        let out = loss(k)
        XCTAssertTrue(out.loss.isFinite); XCTAssertEqual(out.loss, -logf(1e-12), accuracy: 1e-3)
        XCTAssertTrue(out.gm.allSatisfy { $0.isFinite }); XCTAssertTrue(out.gu.allSatisfy { $0.isFinite })
        XCTAssertLessThan(out.gm[1], 0, "raising m of the target token lowers the loss")
        k.targets = [-1, -1]
        let none = loss(k)
        XCTAssertEqual(none.loss, 0); XCTAssertEqual(none.labelled, 0)
        XCTAssertTrue(none.gu.allSatisfy { $0 == 0 }); XCTAssertTrue(none.gm.allSatisfy { $0 == 0 })
        // Without gradient buffers the loss is the same.
        k.targets = [2, 0]
        let lp2 = forward(k)
        let (l, n) = PanopticHead.loss(semantic: k.semantic, instance: k.instance, pixels: 2, classes: 2, tokens: 3,
                                       stuffClasses: k.stuff, stuffCount: 1, thingClasses: k.things, thingCount: 1,
                                       panoptic: lp2, targets: k.targets, gradSemantic: nil, gradInstance: nil)
        XCTAssertEqual(n, 2); XCTAssertEqual(l, loss(k).loss)
    }

    func testArgmaxFirstOnTies() {
        XCTAssertEqual(PanopticHead.argmax([0.1, 0.4, 0.4, 0.1], count: 4), 1)
        XCTAssertEqual(PanopticHead.argmax([0.7], count: 1), 0)
        XCTAssertEqual(PanopticHead.argmax([0.2, 0.1, 0.3, 0.3, 0.1], count: 5), 2)
        XCTAssertEqual(PanopticHead.argmax([0.2, 0.1, 0.3, 0.9, 0.1], count: 3), 2, "only count entries are read")
    }
}
