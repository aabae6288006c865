import Evaluation
import Foundation
import MapCore
import XCTest

final class PanopticMetricsTests: XCTestCase {
    static let wall = 1, chair = 2, table = 3, floor = 4
    let vocabulary = Vocabulary(classes: [
        SemanticClass(id: wall, name: "wall", isThing: false, color: [200, 200, 200]),
        SemanticClass(id: chair, name: "chair", isThing: true, color: [255, 0, 0]),
        SemanticClass(id: table, name: "table", isThing: true, color: [0, 255, 0]),
        SemanticClass(id: floor, name: "floor", isThing: false, color: [0, 0, 255]),
    ])

    /// Builds (class, instance) arrays from runs of (class, instance, count).
    func labels(_ runs: [(Int, Int, Int)]) -> (cls: [Int32], inst: [Int32]) {
        var c: [Int32] = [], i: [Int32] = []
        for (k, n, count) in runs {
            c += Array(repeating: Int32(k), count: count); i += Array(repeating: Int32(n), count: count)
        }
        return (c, i)
    }

    // The scene of the hand-computed test (22 elements):
    //   idx   0-3   4-9      10-13    14-15  16-21
    //   GT    wall  chair#1  chair#2  void   floor
    //   pred  0-2 wall, 3 floor | 4-9 chair#7 | 10-11 chair#8, 12-13 chair#9 (split) | 14-15 table#5 (on void) |
    //         16-19 floor, 20-21 table#6 (false positive)
    lazy var gt = labels([(Self.wall, 0, 4), (Self.chair, 1, 6), (Self.chair, 2, 4), (0, 0, 2), (Self.floor, 0, 6)])
    lazy var pred = labels([(Self.wall, 0, 3), (Self.floor, 0, 1), (Self.chair, 7, 6), (Self.chair, 8, 2), (Self.chair, 9, 2),
                            (Self.table, 5, 2), (Self.floor, 0, 4), (Self.table, 6, 2)])

    func metrics(_ p: (cls: [Int32], inst: [Int32]), _ g: (cls: [Int32], inst: [Int32])) throws -> PanopticMetrics {
        try PanopticMetrics.compute(predictedClass: p.cls, predictedInstance: p.inst, gtClass: g.cls, gtInstance: g.inst,
                                    vocabulary: vocabulary)
    }

    /// Segments. GT: wall (4), chair#1 (6), chair#2 (4), floor (6). Pred: wall {0,1,2} (3), floor {3,16..19} (5),
    /// chair#7 {4..9} (6), chair#8 {10,11}, chair#9 {12,13}, table#5 {14,15}, table#6 {20,21}.
    /// Matches: wall 3/(4+3-3) = 3/4 TP; floor 4/(6+5-4) = 4/7 TP; chair#1–#7 6/6 = 1 TP;
    /// chair#2–#8 and chair#2–#9 2/(4+2-2) = 0.5, not > 0.5: chair#2 FN, chair#8 and chair#9 FP;
    /// table#5 lies wholly on void: not a FP; table#6 lies on floor: FP.
    /// Per class: wall PQ = SQ = 3/4, RQ 1; floor PQ = SQ = 4/7, RQ 1; chair TP 1 FP 2 FN 1: PQ = 1/(1+1+0.5) = 0.4,
    /// SQ 1, RQ 0.4; table TP 0 FP 1: PQ = SQ = RQ = 0.
    /// Things: PQ (0.4+0)/2 = 0.2, SQ 0.5, RQ 0.2. Stuff: PQ = SQ = (3/4+4/7)/2 = 37/56, RQ 1.
    /// All: PQ (3/4+4/7+0.4+0)/4 = 241/560, SQ (3/4+4/7+1+0)/4 = 325/560, RQ (1+1+0.4+0)/4 = 0.6.
    /// Pooled: Σ IoU = 3/4+4/7+1 over TP 3 + (FP 3 + FN 1)/2 = 5.
    /// Semantic (void GT ignored, so table#5 does not count): wall GT 4 pred 3 correct 3: IoU 3/4, acc 3/4; chair GT 10
    /// pred 10 correct 10: IoU 1, acc 1; floor GT 6 pred 5 correct 4: IoU 4/7, acc 4/6; table GT 0 pred 2: IoU 0, no acc.
    /// mIoU = (3/4+1+4/7+0)/4 = 325/560, mAcc = (3/4+1+2/3)/3 = 29/36.
    /// Coverage: chair#1 best IoU 1 (size 6), chair#2 best 0.5 (size 4): mCov 0.75, mW-Cov (6·1+4·0.5)/10 = 0.8.
    func testHandComputedScene() throws {
        let m = try metrics(pred, gt)
        XCTAssertEqual(m.pq, 241.0 / 560, accuracy: 1e-12)
        XCTAssertEqual(m.sq, 325.0 / 560, accuracy: 1e-12)
        XCTAssertEqual(m.rq, 0.6, accuracy: 1e-12)
        XCTAssertEqual(m.overall.classCount, 4)
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [3, 3, 1])
        XCTAssertEqual(m.overall.pooledPQ, (0.75 + 4.0 / 7 + 1) / 5, accuracy: 1e-12)
        XCTAssertEqual(m.things.pq, 0.2, accuracy: 1e-12)
        XCTAssertEqual(m.things.sq, 0.5, accuracy: 1e-12)
        XCTAssertEqual(m.things.rq, 0.2, accuracy: 1e-12)
        XCTAssertEqual(m.stuff.pq, 37.0 / 56, accuracy: 1e-12)
        XCTAssertEqual(m.stuff.sq, 37.0 / 56, accuracy: 1e-12)
        XCTAssertEqual(m.stuff.rq, 1, accuracy: 1e-12)

        XCTAssertEqual(m.classes.map(\.id), [1, 2, 3, 4])
        let chair = m.classes[1], table = m.classes[2], floor = m.classes[3]
        XCTAssertEqual([chair.truePositives, chair.falsePositives, chair.falseNegatives], [1, 2, 1])
        XCTAssertEqual(chair.pq!, 0.4, accuracy: 1e-12)
        XCTAssertEqual(chair.sq!, 1, accuracy: 1e-12)
        XCTAssertEqual([table.truePositives, table.falsePositives, table.falseNegatives], [0, 1, 0])
        XCTAssertEqual(table.pq, 0)
        XCTAssertEqual(floor.pq!, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(floor.iou!, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(floor.accuracy!, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(table.iou, 0)
        XCTAssertNil(table.accuracy)
        XCTAssertEqual([floor.gtCount, floor.predictedCount, floor.correctCount], [6, 5, 4])

        XCTAssertEqual(m.mIoU, 325.0 / 560, accuracy: 1e-12)
        XCTAssertEqual(m.mIoUClassCount, 4)
        XCTAssertEqual(m.mAcc, 29.0 / 36, accuracy: 1e-12)
        XCTAssertEqual(m.mAccClassCount, 3)
        XCTAssertEqual(m.mCov, 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.mWCov, 0.8, accuracy: 1e-12)
        XCTAssertEqual(m.instanceCount, 2)
        XCTAssertEqual(m.elementCount, 22)
        XCTAssertEqual(m.voidCount, 2)

        // The UInt16 entry point and frame-by-frame accumulation give the same numbers.
        let u = try PanopticMetrics.compute(predictedClass: pred.cls.map { UInt16($0) }, predictedInstance: pred.inst.map { UInt16($0) },
                                            gtClass: gt.cls.map { UInt16($0) }, gtInstance: gt.inst.map { UInt16($0) },
                                            vocabulary: vocabulary)
        XCTAssertEqual(u, m)
        var e = PanopticEvaluator(vocabulary: vocabulary)
        for r in [0..<5, 5..<13, 13..<22] {
            try e.add(predictedClass: Array(pred.cls[r]), predictedInstance: Array(pred.inst[r]),
                      gtClass: Array(gt.cls[r]).map { UInt16($0) }, gtInstance: Array(gt.inst[r]).map { UInt16($0) })
        }
        XCTAssertEqual(try e.result(), m)

        let text = m.text
        XCTAssertTrue(text.contains("All     PQ  43.04  SQ  58.04  RQ  60.00"), text)
        XCTAssertTrue(text.contains("mIoU  58.04 (4 classes)  mAcc  80.56 (3 classes)"), text)
        XCTAssertTrue(text.contains("mCov  75.00  mW-Cov  80.00 (2 GT instances)"), text)
        let decoded = try JSONDecoder().decode(PanopticMetrics.self, from: JSONEncoder().encode(m))
        XCTAssertEqual(decoded, m)
    }

    /// All headline numbers equal `v` (things/stuff PQ only when such classes were scored).
    func assertAll(_ m: PanopticMetrics, equal v: Double, file: StaticString = #filePath, line: UInt = #line) {
        var values = [("PQ", m.pq), ("SQ", m.sq), ("RQ", m.rq), ("mIoU", m.mIoU), ("mAcc", m.mAcc), ("mCov", m.mCov),
                      ("mW-Cov", m.mWCov)]
        if m.things.classCount > 0 { values.append(("things PQ", m.things.pq)) }
        if m.stuff.classCount > 0 { values.append(("stuff PQ", m.stuff.pq)) }
        for (name, x) in values {
            XCTAssertEqual(x, v, accuracy: 1e-12, name, file: file, line: line)
        }
    }

    /// The GT itself, with other instance ids and with junk instance ids on stuff: 100 % everywhere.
    func testPerfectPrediction() throws {
        var p = gt
        p.inst = zip(gt.cls, gt.inst).map { c, i in Int(c) == Self.chair ? 100 - i : (c == 0 ? 0 : 5) }
        let m = try metrics(p, gt)
        assertAll(m, equal: 1)
        XCTAssertEqual([m.things.classCount, m.stuff.classCount], [1, 2])
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [4, 0, 0])
        XCTAssertTrue(m.text.contains("All     PQ 100.00  SQ 100.00  RQ 100.00"), m.text)
        // Anything predicted on void does not matter.
        p.cls[14] = Int32(Self.table); p.inst[14] = 3
        assertAll(try metrics(p, gt), equal: 1)
    }

    /// Renaming predicted instances (a permutation, plus instance ids on stuff elements) changes nothing.
    func testPredictedInstanceIDPermutation() throws {
        let base = try metrics(pred, gt)
        let perm: [Int32: Int32] = [0: 0, 5: 9, 6: 8, 7: 5, 8: 6, 9: 7]
        var p = pred
        p.inst = zip(pred.cls, pred.inst).map { c, i in
            Int(c) == Self.wall || Int(c) == Self.floor ? 42 : perm[i]!
        }
        let m = try metrics(p, gt)
        for (a, b) in [(m.pq, base.pq), (m.sq, base.sq), (m.rq, base.rq), (m.things.pq, base.things.pq),
                       (m.stuff.pq, base.stuff.pq), (m.mIoU, base.mIoU), (m.mAcc, base.mAcc), (m.mCov, base.mCov),
                       (m.mWCov, base.mWCov), (m.overall.pooledPQ, base.overall.pooledPQ)] {
            XCTAssertEqual(a, b, accuracy: 1e-12)
        }
        XCTAssertEqual(m.classes.map(\.falsePositives), base.classes.map(\.falsePositives))
        XCTAssertEqual(m.classes.map(\.truePositives), base.classes.map(\.truePositives))
        XCTAssertEqual(m.classes.map(\.falseNegatives), base.classes.map(\.falseNegatives))
    }

    /// Two frames of 4 elements, each all chair #1 in GT. A prediction with one id in both frames is one segment:
    /// IoU 8/8, TP 1, FP 0, FN 0 (not two TPs). With a different id per frame each predicted segment covers half the
    /// GT instance (IoU 4/8 = 0.5, no match): TP 0, FP 2, FN 1, PQ 0; coverage 0.5.
    func testInstanceConsistentAcrossConcatenatedFrames() throws {
        let g = labels([(Self.chair, 1, 4), (Self.chair, 1, 4)])
        let consistent = try metrics(labels([(Self.chair, 3, 4), (Self.chair, 3, 4)]), g)
        XCTAssertEqual([consistent.overall.truePositives, consistent.overall.falsePositives,
                        consistent.overall.falseNegatives], [1, 0, 0])
        assertAll(consistent, equal: 1)
        XCTAssertEqual(consistent.stuff.classCount, 0)
        XCTAssertEqual(consistent.instanceCount, 1)

        // Same when fed frame by frame.
        var e = PanopticEvaluator(vocabulary: vocabulary)
        for _ in 0..<2 {
            try e.add(predictedClass: [Int32](repeating: 2, count: 4), predictedInstance: [Int32](repeating: 3, count: 4),
                      gtClass: [Int32](repeating: 2, count: 4), gtInstance: [Int32](repeating: 1, count: 4))
        }
        XCTAssertEqual(try e.result(), consistent)

        let inconsistent = try metrics(labels([(Self.chair, 3, 4), (Self.chair, 4, 4)]), g)
        XCTAssertEqual([inconsistent.overall.truePositives, inconsistent.overall.falsePositives,
                        inconsistent.overall.falseNegatives], [0, 2, 1])
        XCTAssertEqual(inconsistent.pq, 0)
        XCTAssertEqual(inconsistent.mCov, 0.5, accuracy: 1e-12)
        XCTAssertEqual(inconsistent.mIoU, 1, accuracy: 1e-12) // semantics are perfect
    }

    /// IoU exactly 0.5 is no match; just above is.
    func testIoUExactlyHalfIsNoMatch() throws {
        // GT chair 2 elements; prediction covers them and 2 more (on wall): IoU 2/4 = 0.5.
        let g = labels([(Self.chair, 1, 2), (Self.wall, 0, 8)])
        let half = try metrics(labels([(Self.chair, 1, 4), (Self.wall, 0, 6)]), g)
        XCTAssertEqual(half.classes[1].truePositives, 0)
        XCTAssertEqual(half.classes[1].falsePositives, 1)
        XCTAssertEqual(half.classes[1].falseNegatives, 1)
        XCTAssertEqual(half.classes[1].pq, 0)
        XCTAssertEqual(half.mCov, 0.5, accuracy: 1e-12)
        // 3 elements predicted: IoU 2/3 > 0.5 → TP; chair PQ = SQ = 2/3; wall 6/8 → PQ 3/4.
        let above = try metrics(labels([(Self.chair, 1, 3), (Self.wall, 0, 7)]), g)
        XCTAssertEqual(above.classes[1].truePositives, 1)
        XCTAssertEqual(above.classes[1].pq!, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(above.things.pq, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(above.stuff.pq, 7.0 / 8, accuracy: 1e-12)
        XCTAssertEqual(above.pq, (2.0 / 3 + 7.0 / 8) / 2, accuracy: 1e-12)
    }

    /// Void rules (15 elements):
    ///   idx   0-3                 4-7    8-14
    ///   GT    chair, instance 0   void   wall
    ///   pred  0-2 chair#3, 3 nothing (class 0) | 4-5 table#1, 6 wall, 7 nothing | 8 chair#3, 9 table#1,
    ///         10-13 wall, 14 nothing
    /// chair#3 (area 4) lies 3/4 on same-class GT chair without instance: not a FP. table#1 (area 3) lies 2/3 on void:
    /// not a FP. Wall: pred area 5 of which 1 on void, so IoU = 4/(7+5-4-1) = 4/7 (it would be exactly 0.5 if the void
    /// part stayed in the union): TP. Only wall is scored: PQ = SQ = 4/7, RQ 1; no things scored, no GT instances.
    /// Semantic: chair GT 4, pred on non-void {0,1,2,8} 4, correct 3: IoU 3/5, acc 3/4; wall GT 7 pred 4 correct 4:
    /// IoU 4/7, acc 4/7; table pred {9}: IoU 0. mIoU = (3/5+4/7+0)/3, mAcc = (3/4+4/7)/2.
    func testVoidAndUnassignedThingRules() throws {
        let g = labels([(Self.chair, 0, 4), (0, 0, 4), (Self.wall, 0, 7)])
        let p = labels([(Self.chair, 3, 3), (0, 0, 1), (Self.table, 1, 2), (Self.wall, 0, 1), (0, 0, 1),
                        (Self.chair, 3, 1), (Self.table, 1, 1), (Self.wall, 0, 4), (0, 0, 1)])
        let m = try metrics(p, g)
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [1, 0, 0])
        XCTAssertEqual(m.overall.classCount, 1)
        XCTAssertEqual(m.pq, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(m.sq, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(m.rq, 1, accuracy: 1e-12)
        XCTAssertEqual(m.things.classCount, 0)
        XCTAssertEqual(m.instanceCount, 0)
        XCTAssertNil(m.classes[1].pq)
        XCTAssertEqual(m.mIoU, (3.0 / 5 + 4.0 / 7) / 3, accuracy: 1e-12)
        XCTAssertEqual(m.mAcc, (3.0 / 4 + 4.0 / 7) / 2, accuracy: 1e-12)
        XCTAssertEqual(m.voidCount, 4)
        XCTAssertTrue(m.text.contains("Things  PQ    n/a"), m.text)
    }

    func testBadInput() {
        XCTAssertThrowsError(try PanopticMetrics.compute(predictedClass: [Int32](repeating: 1, count: 3), predictedInstance: [0, 0],
                                                         gtClass: [1, 1, 1], gtInstance: [0, 0, 0], vocabulary: vocabulary)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .sizeMismatch)
        }
        XCTAssertThrowsError(try PanopticMetrics.compute(predictedClass: [Int32](repeating: 9, count: 3), predictedInstance: [0, 0, 0],
                                                         gtClass: [1, 1, 1], gtInstance: [0, 0, 0], vocabulary: vocabulary)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .unknownClass)
        }
        // Nothing to evaluate: zeros, n/a in the text.
        let empty = try? PanopticMetrics.compute(predictedClass: [Int32](), predictedInstance: [], gtClass: [], gtInstance: [],
                                                 vocabulary: vocabulary)
        XCTAssertEqual(empty?.pq, 0)
        XCTAssertEqual(empty?.overall.classCount, 0)
    }
}
