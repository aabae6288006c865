import Kernels
import MapCore
import TestSupport
import XCTest

final class MaskLossesTests: XCTestCase {
    struct Frame {
        var pixels: Int, tokens: Int, masks: Int
        var probabilities: [Float], targets: [Int32]
    }

    let eps = Double(MaskLosses.diceEpsilon), clamp = Double(MaskLosses.clamp)

    /// Random rendered masks in [0.02, 0.98] (optionally with exact 0 / 1 entries, which the BCE clamps) and
    /// per-pixel targets in -1..<L.
    func randomFrame(_ rng: inout SeededRNG, pixels: Int, tokens: Int, masks: Int, extremes: Bool = false) -> Frame {
        var m: [Float] = [], t: [Int32] = []
        for _ in 0..<pixels {
            t.append(Int32(Int(rng.next() % UInt64(masks + 1)) - 1))
            for _ in 0..<tokens {
                let x = rng.uniform()
                if extremes && x < 0.05 { m.append(0) } else if extremes && x > 0.95 { m.append(1) }
                else { m.append(Float(rng.uniform(0.02, 0.98))) }
            }
        }
        return Frame(pixels: pixels, tokens: tokens, masks: masks, probabilities: m, targets: t)
    }

    func costs(_ f: Frame) -> [Float] {
        var c = [Float](repeating: .nan, count: f.masks * f.tokens)
        MaskLosses.costMatrix(probabilities: f.probabilities, pixels: f.pixels, tokens: f.tokens, targets: f.targets,
                              masks: f.masks, costs: &c)
        return c
    }

    func matched(_ f: Frame, assignment: [Int32], diceWeight: [Float]) -> (loss: Float, pairs: Int, grad: [Float]) {
        var g = [Float](repeating: .nan, count: f.pixels * f.tokens)
        let (loss, pairs) = MaskLosses.matchedLoss(probabilities: f.probabilities, pixels: f.pixels, tokens: f.tokens,
                                                   targets: f.targets, masks: f.masks, assignment: assignment,
                                                   diceWeight: diceWeight, gradProbabilities: &g)
        return (loss, pairs, g)
    }

    func refMatched(_ f: Frame, probabilities: [Double]? = nil, assignment: [Int32], diceWeight: [Float]) -> Double {
        ReferenceMaskLosses.matchedLoss(probabilities: probabilities ?? f.probabilities.map(Double.init),
                                        pixels: f.pixels, tokens: f.tokens, targets: f.targets.map(Int.init),
                                        masks: f.masks, assignment: assignment.map(Int.init),
                                        diceWeight: diceWeight.map(Double.init), diceEpsilon: eps, clamp: clamp)
    }

    func testCostMatrixMatchesReference() {
        var rng = SeededRNG(seed: 51)
        for (p, n, l, extremes) in [(60, 7, 4, false), (80, 5, 3, true), (9, 1, 1, false), (40, 3, 8, true)] {
            let f = randomFrame(&rng, pixels: p, tokens: n, masks: l, extremes: extremes)
            let c = costs(f)
            let ref = ReferenceMaskLosses.costMatrix(probabilities: f.probabilities.map(Double.init), pixels: p,
                                                     tokens: n, targets: f.targets.map(Int.init), masks: l,
                                                     diceEpsilon: eps, clamp: clamp)
            for k in 0..<c.count {
                XCTAssertEqual(Double(c[k]), ref[k], accuracy: 2e-6 * max(1, abs(ref[k])), "P \(p) L \(l) entry \(k)")
            }
        }
    }

    func testHandComputedCost() {
        // Mask 0 = pixels 0, 1; token masks 0.8, 0.6, 0.1, 0 (the last clamped inside the log).
        // dice = 1 - (2 * 1.4 + 1) / (1.5 + 2 + 1) = 1 - 3.8 / 4.5
        // bce  = (-log 0.8 - log 0.6 - log 0.9 - log(1 - 1e-6)) / 4
        let f = Frame(pixels: 4, tokens: 1, masks: 1, probabilities: [0.8, 0.6, 0.1, 0], targets: [0, 0, -1, -1])
        let dice = 1 - 3.8 / 4.5
        let bce = (-log(0.8) - log(0.6) - log(0.9) - log(1 - 1e-6)) / 4
        XCTAssertEqual(Double(costs(f)[0]), dice + bce, accuracy: 1e-6)
        XCTAssertEqual(dice + bce, 0.365388, accuracy: 1e-6, "the hand value itself")
        let out = matched(f, assignment: [0], diceWeight: [1])
        XCTAssertEqual(out.pairs, 1)
        XCTAssertEqual(Double(out.loss), dice + bce, accuracy: 1e-6)
        // Gradient at pixel 0: dice (3.8 / 4.5^2 - 2 / 4.5) + bce (-1 / 0.8) / 4; at pixel 3 (m = 0, clamped):
        // dice only, 3.8 / 4.5^2.
        XCTAssertEqual(Double(out.grad[0]), 3.8 / 20.25 - 2 / 4.5 - 0.25 / 0.8, accuracy: 1e-6)
        XCTAssertEqual(Double(out.grad[3]), 3.8 / 20.25, accuracy: 1e-6)
    }

    /// A perfect mask has a low cost and is preferred over a wrong one; an empty 2D mask still has a finite cost.
    func testCostRanksTheRightToken() {
        // Tokens: 0 matches mask 0 almost exactly, 1 matches mask 1, 2 is flat.
        let targets: [Int32] = [0, 0, 0, 1, 1, -1, -1, -1]
        var m: [Float] = []
        for t in targets { m += [t == 0 ? 0.99 : 0.01, t == 1 ? 0.99 : 0.01, 0.5] }
        let f = Frame(pixels: 8, tokens: 3, masks: 3, probabilities: m, targets: targets)
        let c = costs(f)
        XCTAssertLessThan(c[0], c[1]); XCTAssertLessThan(c[0], c[2])
        XCTAssertLessThan(c[4], c[3]); XCTAssertLessThan(c[4], c[5])
        XCTAssertTrue(c.allSatisfy { $0.isFinite && $0 >= 0 })
        // Mask 2 has no pixels: dice = 1 - 1 / (sum m + 1), bce = mean -log(1 - m).
        XCTAssertEqual(Double(c[8]), 1 - 1 / (4 + 1) + -log(0.5), accuracy: 1e-5)
    }

    /// matchedLoss vs the reference, and dL/dm vs central differences of the reference for every entry.
    func testMatchedLossAndGradientMatchReference() {
        var rng = SeededRNG(seed: 52)
        let f = randomFrame(&rng, pixels: 30, tokens: 6, masks: 4)
        let assignment: [Int32] = [3, -1, 0, 5]
        let diceWeight: [Float] = [1, 1, 0.3, 0, 1, 0.5]
        let out = matched(f, assignment: assignment, diceWeight: diceWeight)
        XCTAssertEqual(out.pairs, 3)
        let ref = refMatched(f, assignment: assignment, diceWeight: diceWeight)
        XCTAssertEqual(Double(out.loss), ref, accuracy: 2e-6 * max(1, ref))
        let base = f.probabilities.map(Double.init), h = 1e-6
        for k in 0..<base.count {
            var p = base, q = base
            p[k] += h; q[k] -= h
            let fd = (refMatched(f, probabilities: p, assignment: assignment, diceWeight: diceWeight)
                - refMatched(f, probabilities: q, assignment: assignment, diceWeight: diceWeight)) / (2 * h)
            XCTAssertEqual(Double(out.grad[k]), fd, accuracy: 1e-5 + 1e-3 * abs(fd), "entry \(k)")
        }
        // Tokens in no pair (1, 2... here 1, 2, 4) get exactly zero gradient.
        for p in 0..<f.pixels { for i in [1, 2, 4] { XCTAssertEqual(out.grad[p * f.tokens + i], 0) } }
        // With full dice weights the loss is the mean of the matched cost entries.
        let full = matched(f, assignment: assignment, diceWeight: [Float](repeating: 1, count: 6))
        let c = costs(f)
        XCTAssertEqual(full.loss, (c[0 * 6 + 3] + c[2 * 6 + 0] + c[3 * 6 + 5]) / 3, accuracy: 1e-5)
    }

    /// Clamped entries (exactly 0 or 1) get only the dice part of the gradient; the FD of the reference agrees
    /// wherever it is defined (one-sided steps stay inside the clamp).
    func testClampedEntriesHaveDiceOnlyGradient() {
        var rng = SeededRNG(seed: 53)
        let f = randomFrame(&rng, pixels: 40, tokens: 3, masks: 2, extremes: true)
        let assignment: [Int32] = [2, 0]
        let out = matched(f, assignment: assignment, diceWeight: [1, 1, 1])
        XCTAssertTrue(out.loss.isFinite)
        let noDice = matched(f, assignment: assignment, diceWeight: [0, 0, 0])
        let base = f.probabilities.map(Double.init)
        var clamped = 0
        for k in 0..<base.count where base[k] == 0 || base[k] == 1 {
            let i = k % f.tokens
            guard i == 2 || i == 0 else { continue }
            XCTAssertEqual(noDice.grad[k], 0, "entry \(k): clamped, no BCE gradient")
            // One-sided FD inward moves less than the clamp, so the reference's BCE term does not change.
            let h = 1e-8 * (base[k] == 0 ? 1 : -1)
            var p = base
            p[k] += h
            let fd = (refMatched(f, probabilities: p, assignment: assignment, diceWeight: [1, 1, 1])
                - refMatched(f, probabilities: base, assignment: assignment, diceWeight: [1, 1, 1])) / h
            XCTAssertEqual(Double(out.grad[k]), fd, accuracy: 1e-4, "entry \(k)")
            XCTAssertNotEqual(out.grad[k], 0, "the dice part remains")
            clamped += 1
        }
        XCTAssertGreaterThan(clamped, 3)
    }

    func testNoPairsAndDiceWeightZero() {
        var rng = SeededRNG(seed: 54)
        let f = randomFrame(&rng, pixels: 12, tokens: 3, masks: 2)
        let none = matched(f, assignment: [-1, -1], diceWeight: [1, 1, 1])
        XCTAssertEqual(none.loss, 0); XCTAssertEqual(none.pairs, 0)
        XCTAssertTrue(none.grad.allSatisfy { $0 == 0 })
        // Dice weight 0: the loss is the BCE alone (the cost minus the dice).
        let bceOnly = matched(f, assignment: [1, -1], diceWeight: [1, 0, 1])
        let t = ReferenceMaskLosses.binaryMask(targets: f.targets.map(Int.init), mask: 0)
        let m = ReferenceMaskLosses.column(f.probabilities.map(Double.init), pixels: 12, tokens: 3, 1)
        XCTAssertEqual(Double(bceOnly.loss), ReferenceMaskLosses.bce(m, t, clamp: clamp), accuracy: 1e-6)
        // Without a gradient buffer the loss is the same.
        let (loss, pairs) = MaskLosses.matchedLoss(probabilities: f.probabilities, pixels: 12, tokens: 3,
                                                   targets: f.targets, masks: 2, assignment: [1, -1],
                                                   diceWeight: [1, 0, 1], gradProbabilities: nil)
        XCTAssertEqual(loss, bceOnly.loss); XCTAssertEqual(pairs, 1)
    }

    // MARK: L_c

    func classRun(_ logits: [Float], tokens n: Int, classes k: Int, maskClass: [Int32], assignment: [Int32])
        -> (loss: Float, pairs: Int, grad: [Float])
    {
        var g = [Float](repeating: .nan, count: n * k)
        let (loss, pairs) = MaskLosses.classLoss(classLogits: logits, tokens: n, classes: k, maskClass: maskClass,
                                                 masks: maskClass.count, assignment: assignment, gradLogits: &g)
        return (loss, pairs, g)
    }

    func testClassLossMatchesReferenceAndFiniteDifferences() {
        var rng = SeededRNG(seed: 55)
        let n = 5, k = 4
        let logits = (0..<(n * k)).map { _ in Float(3 * rng.gaussian()) }
        let maskClass: [Int32] = [2, 0, 3], assignment: [Int32] = [4, -1, 1]
        let out = classRun(logits, tokens: n, classes: k, maskClass: maskClass, assignment: assignment)
        XCTAssertEqual(out.pairs, 2)
        func ref(_ x: [Double]) -> Double {
            ReferenceMaskLosses.classLoss(classLogits: x, tokens: n, classes: k, maskClass: maskClass.map(Int.init),
                                          masks: 3, assignment: assignment.map(Int.init))
        }
        let base = logits.map(Double.init), h = 1e-5
        XCTAssertEqual(Double(out.loss), ref(base), accuracy: 1e-6 * max(1, ref(base)))
        for i in 0..<base.count {
            var p = base, q = base
            p[i] += h; q[i] -= h
            let fd = (ref(p) - ref(q)) / (2 * h)
            XCTAssertEqual(Double(out.grad[i]), fd, accuracy: 1e-6 + 1e-4 * abs(fd), "logit \(i)")
        }
        for t in [0, 2, 3] { XCTAssertTrue(out.grad[(t * k)..<((t + 1) * k)].allSatisfy { $0 == 0 }, "token \(t)") }
        // Hand value: one pair, K = 2, logits (0, 0): both terms log 2; gradient (0.5 - 1, 0.5) / 2.
        let hand = classRun([0, 0], tokens: 1, classes: 2, maskClass: [0], assignment: [0])
        XCTAssertEqual(hand.loss, logf(2), accuracy: 1e-7)
        XCTAssertEqual(hand.grad, [-0.25, 0.25])
        let none = classRun(logits, tokens: n, classes: k, maskClass: maskClass, assignment: [-1, -1, -1])
        XCTAssertEqual(none.loss, 0); XCTAssertEqual(none.pairs, 0); XCTAssertTrue(none.grad.allSatisfy { $0 == 0 })
    }

    func testClassLossStableForExtremeLogits() {
        // Logits +-1e4: a naive log(sigmoid) is -inf; the softplus form gives |x| for a wrong sign, 0 for a right one.
        let out = classRun([1e4, -1e4, 1e4], tokens: 1, classes: 3, maskClass: [0], assignment: [0])
        XCTAssertEqual(out.loss, 1e4 / 3, accuracy: 1e-2, "class 2 is confidently wrong")
        XCTAssertTrue(out.grad.allSatisfy { $0.isFinite })
        XCTAssertEqual(out.grad[0], 0, accuracy: 1e-7); XCTAssertEqual(out.grad[1], 0, accuracy: 1e-7)
        XCTAssertEqual(out.grad[2], 1.0 / 3, accuracy: 1e-7)
    }
}
