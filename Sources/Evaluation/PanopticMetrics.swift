import Foundation
import MapCore

/// Panoptic, semantic and instance segmentation metrics over per-element label arrays: pixels of rendered label
/// images against GT images (2D), or mesh vertices against the labels of their nearest GT points (3D).
///
/// Every element has a predicted and a GT (semantic class, instance id). Conventions:
/// - Class 0 is void. GT void elements are ignored: they are in no GT segment, in no class of mIoU/mAcc, and the
///   part of a predicted segment lying on GT void is left out of its IoU union (COCO panoptic rule). A predicted
///   class 0 means "no prediction": such elements are in no predicted segment (they still count in the GT area, so
///   they lower the IoU of the GT segment they lie on and are a miss for mIoU/mAcc).
/// - A segment is (class) for stuff and (class, instance) for things; instance ids of stuff-class elements are
///   ignored. Instance ids are scoped by class: the same id in two classes is two segments.
/// - A GT thing element with instance 0 has no known instance: it counts for mIoU/mAcc, but is no GT segment for
///   PQ or coverage. It acts like a COCO "crowd" region: a predicted segment of the same class lying mostly on it
///   (together with void) is not a false positive.
/// - Scene-level evaluation: several frames are concatenated (or, equivalently, fed one after the other with
///   `PanopticEvaluator.add`) and segments are formed over all of them together, so an instance id must denote the
///   same object in every frame of the evaluation (for GT and for the prediction alike); a consistent instance seen
///   in two frames is one segment, matched once.
///
/// Matching: a predicted and a GT segment of the same class match when IoU > 0.5 (strictly; exactly 0.5 is no
/// match). Since segments of one side are disjoint, a segment can have at most one partner with IoU > 0.5, so the
/// matching is unique and needs no assignment solver. Per class c: PQ = Σ IoU(TP) / (|TP| + |FP|/2 + |FN|/2),
/// SQ = Σ IoU(TP) / |TP|, RQ = |TP| / (|TP| + |FP|/2 + |FN|/2). An unmatched predicted segment is a FP unless
/// more than half of its area lies on GT void or on same-class GT thing elements with instance 0. The reported
/// PQ/SQ/RQ (overall, things, stuff) are means of the per-class values over the classes with TP+FP+FN > 0 (as in
/// Kirillov et al. / COCO panoptic); the pooled variant over all segments is reported too.
///
/// mIoU: mean over classes present in GT or prediction (on non-void GT) of TP/(TP+FP+FN), element counts.
/// mAcc: mean over classes present in GT of TP/(TP+FN) (per-class recall). mCov: for each GT instance (thing
/// segment) the best IoU with any predicted thing segment, whatever its class, averaged over GT instances; mW-Cov
/// weights that mean by GT instance size (pixels or vertices).
///
/// All values are fractions in [0, 1]; `text` prints them in percent. A value whose set is empty (e.g. stuff PQ
/// with no stuff class present) is 0 and its count is 0; `text` prints "n/a" for it.
public struct PanopticMetrics: Sendable, Equatable, Codable {
    /// PQ / SQ / RQ over a set of classes.
    public struct Quality: Sendable, Equatable, Codable {
        /// Mean over `classCount` classes of the per-class values.
        public var pq: Double
        public var sq: Double
        public var rq: Double
        public var classCount: Int
        /// Segment totals over those classes.
        public var truePositives: Int
        public var falsePositives: Int
        public var falseNegatives: Int
        /// Σ IoU over all true positives.
        public var iouSum: Double

        /// PQ over all segments pooled: Σ IoU(TP) / (|TP| + |FP|/2 + |FN|/2).
        public var pooledPQ: Double {
            let d = Double(truePositives) + 0.5 * Double(falsePositives + falseNegatives)
            return d > 0 ? iouSum / d : 0
        }
    }

    /// Everything known about one class of the vocabulary that occurs in GT or prediction.
    public struct ClassResult: Sendable, Equatable, Codable {
        public var id: Int
        public var name: String
        public var isThing: Bool
        public var truePositives: Int
        public var falsePositives: Int
        public var falseNegatives: Int
        public var iouSum: Double
        /// nil when the class has no TP, FP or FN segment.
        public var pq: Double?
        public var sq: Double?
        public var rq: Double?
        /// Semantic IoU (nil when absent from GT and prediction) and accuracy = recall (nil when absent from GT).
        public var iou: Double?
        public var accuracy: Double?
        /// Elements of this class in GT, predicted on non-void GT, and correct.
        public var gtCount: Int
        public var predictedCount: Int
        public var correctCount: Int
    }

    public var overall: Quality
    public var things: Quality
    public var stuff: Quality
    /// Classes with any GT or predicted element, ascending id.
    public var classes: [ClassResult]

    public var mIoU: Double
    public var mIoUClassCount: Int
    public var mAcc: Double
    public var mAccClassCount: Int

    public var mCov: Double
    public var mWCov: Double
    /// Number of GT instances that mCov averages over.
    public var instanceCount: Int

    /// Elements evaluated (all added) and elements with void GT.
    public var elementCount: Int
    public var voidCount: Int

    public var pq: Double { overall.pq }
    public var sq: Double { overall.sq }
    public var rq: Double { overall.rq }

    /// One-line-per-metric summary in percent, then a per-class table.
    public var text: String {
        func pct(_ v: Double, _ n: Int) -> String { n > 0 ? String(format: "%6.2f", v * 100) : "   n/a" }
        func opt(_ v: Double?) -> String { v.map { String(format: "%6.2f", $0 * 100) } ?? "     -" }
        func q(_ name: String, _ x: Quality) -> String {
            "\(name)  PQ \(pct(x.pq, x.classCount))  SQ \(pct(x.sq, x.classCount))  RQ \(pct(x.rq, x.classCount))"
                + "   (\(x.classCount) classes; TP \(x.truePositives) FP \(x.falsePositives) FN \(x.falseNegatives))"
        }
        var lines = [
            "Panoptic (%, mean over classes)",
            q("  All   ", overall),
            q("  Things", things),
            q("  Stuff ", stuff),
            "  Pooled PQ \(pct(overall.pooledPQ, overall.classCount))",
            "Semantic  mIoU \(pct(mIoU, mIoUClassCount)) (\(mIoUClassCount) classes)  mAcc \(pct(mAcc, mAccClassCount))"
                + " (\(mAccClassCount) classes)",
            "Instance  mCov \(pct(mCov, instanceCount))  mW-Cov \(pct(mWCov, instanceCount)) (\(instanceCount) GT instances)",
            "Elements  \(elementCount) (\(voidCount) void in GT)",
        ]
        if !classes.isEmpty {
            lines.append("  class                 kind       PQ     SQ     RQ    IoU    Acc   TP  FP  FN")
            for c in classes {
                let name = c.name.count > 20 ? String(c.name.prefix(20)) : c.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                lines.append("  \(name)  \(c.isThing ? "thing" : "stuff")  \(opt(c.pq)) \(opt(c.sq)) \(opt(c.rq)) "
                    + "\(opt(c.iou)) \(opt(c.accuracy)) \(String(format: "%4d%4d%4d", c.truePositives, c.falsePositives, c.falseNegatives))")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Evaluates one (possibly concatenated) set of label arrays. All four arrays need the same length.
    public static func compute(predictedClass: [Int32], predictedInstance: [Int32], gtClass: [Int32],
                               gtInstance: [Int32], vocabulary: Vocabulary) throws -> PanopticMetrics {
        var e = PanopticEvaluator(vocabulary: vocabulary)
        try e.add(predictedClass: predictedClass, predictedInstance: predictedInstance, gtClass: gtClass, gtInstance: gtInstance)
        return try e.result()
    }

    public static func compute(predictedClass: [UInt16], predictedInstance: [UInt16], gtClass: [UInt16],
                               gtInstance: [UInt16], vocabulary: Vocabulary) throws -> PanopticMetrics {
        var e = PanopticEvaluator(vocabulary: vocabulary)
        try e.add(predictedClass: predictedClass, predictedInstance: predictedInstance, gtClass: gtClass, gtInstance: gtInstance)
        return try e.result()
    }
}

/// Accumulates (GT segment, predicted segment) overlap counts frame after frame; adding frames one by one is the same
/// as adding their concatenation (see `PanopticMetrics` for the conventions). Memory is proportional to the number of
/// distinct overlapping segment pairs, not to the number of elements.
public struct PanopticEvaluator: Sendable {
    public let vocabulary: Vocabulary
    /// Overlap counts keyed by raw (class, instance) of GT and prediction; stuff instances are dropped in `result()`.
    private var pairs: [SegmentPair: Int] = [:]
    public private(set) var elementCount = 0

    public init(vocabulary: Vocabulary) { self.vocabulary = vocabulary }

    public mutating func add(predictedClass: [Int32], predictedInstance: [Int32], gtClass: [Int32], gtInstance: [Int32]) throws {
        try accumulate(predictedClass, predictedInstance, gtClass, gtInstance)
    }
    public mutating func add(predictedClass: [UInt16], predictedInstance: [UInt16], gtClass: [UInt16], gtInstance: [UInt16]) throws {
        try accumulate(predictedClass, predictedInstance, gtClass, gtInstance)
    }
    public mutating func add(predictedClass: [Int32], predictedInstance: [Int32], gtClass: [UInt16], gtInstance: [UInt16]) throws {
        try accumulate(predictedClass, predictedInstance, gtClass, gtInstance)
    }
    public mutating func add(predictedClass: [UInt16], predictedInstance: [UInt16], gtClass: [Int32], gtInstance: [Int32]) throws {
        try accumulate(predictedClass, predictedInstance, gtClass, gtInstance)
    }

    private mutating func accumulate<P: BinaryInteger, G: BinaryInteger>(_ pc: [P], _ pi: [P], _ gc: [G], _ gi: [G]) throws {
        let n = pc.count
        guard pi.count == n, gc.count == n, gi.count == n else {
            throw MapError(.sizeMismatch, "label arrays differ in length: predicted class \(n), predicted instance "
                           + "\(pi.count), GT class \(gc.count), GT instance \(gi.count)",
                           hint: "pass one (class, instance) per element for prediction and GT")
        }
        guard n > 0 else { return }
        func key<T: BinaryInteger>(_ c: T, _ i: T) throws -> UInt64 {
            guard c >= 0, c <= T(exactly: UInt16.max) ?? c else {
                throw MapError(.unknownClass, "class id \(c) is outside 0...65535")
            }
            if c == 0 { return 0 }
            return UInt64(c) << 32 | UInt64(UInt32(truncatingIfNeeded: Int64(i)))
        }
        // Runs of equal pairs are counted before touching the dictionary: label images and meshes have long runs.
        var last = SegmentPair(gt: try key(gc[0], gi[0]), pred: try key(pc[0], pi[0])), run = 0
        for k in 0..<n {
            let p = SegmentPair(gt: try key(gc[k], gi[k]), pred: try key(pc[k], pi[k]))
            if p == last { run += 1; continue }
            pairs[last, default: 0] += run
            last = p; run = 1
        }
        pairs[last, default: 0] += run
        elementCount += n
    }

    /// The metrics of everything added so far. Throws `.unknownClass` for a non-zero class not in the vocabulary.
    public func result() throws -> PanopticMetrics {
        var classInfo: [Int: SemanticClass] = [:]
        for c in vocabulary.classes { classInfo[c.id] = c }
        func cls(_ k: UInt64) -> Int { Int(k >> 32) }
        func isThing(_ k: UInt64) -> Bool { classInfo[cls(k)]?.isThing ?? false }

        // Normalise keys (stuff loses its instance id) and check classes.
        var merged: [SegmentPair: Int] = [:]
        for (p, n) in pairs {
            for k in [p.gt, p.pred] where k != 0 && classInfo[cls(k)] == nil {
                throw MapError(.unknownClass, "class id \(cls(k)) is not in the vocabulary",
                               hint: "check the vocabulary matches the labels")
            }
            func norm(_ k: UInt64) -> UInt64 { k == 0 || isThing(k) ? k : k & ~0xFFFF_FFFF }
            merged[SegmentPair(gt: norm(p.gt), pred: norm(p.pred)), default: 0] += n
        }

        // Areas. A GT segment's area counts all its elements; a predicted segment's all of its elements (void GT too).
        var gtArea: [UInt64: Int] = [:], predArea: [UInt64: Int] = [:]
        var predOnVoid: [UInt64: Int] = [:]            // predicted elements on GT void
        var predOnIgnoredSameClass: [UInt64: Int] = [:] // predicted elements on same-class GT things with instance 0
        var gtCount: [Int: Int] = [:], predCount: [Int: Int] = [:], correct: [Int: Int] = [:]
        var voidCount = 0
        func isGTSegment(_ g: UInt64) -> Bool { g != 0 && !(isThing(g) && g & 0xFFFF_FFFF == 0) }
        for (p, n) in merged {
            let gc = cls(p.gt), pc = cls(p.pred)
            if p.gt == 0 { voidCount += n }
            if p.gt != 0 { gtArea[p.gt, default: 0] += n; gtCount[gc, default: 0] += n }
            if p.pred != 0 {
                predArea[p.pred, default: 0] += n
                if p.gt == 0 { predOnVoid[p.pred, default: 0] += n }
                else if !isGTSegment(p.gt) && gc == pc { predOnIgnoredSameClass[p.pred, default: 0] += n }
            }
            if p.gt != 0 && p.pred != 0 {
                predCount[pc, default: 0] += n
                if gc == pc { correct[gc, default: 0] += n }
            }
        }
        /// IoU of a GT and a predicted segment with `inter` common elements, the prediction's void part left out.
        func iou(_ g: UInt64, _ p: UInt64, _ inter: Int) -> (num: Int, den: Int) {
            (inter, gtArea[g]! + predArea[p]! - inter - predOnVoid[p, default: 0])
        }

        // Matching: same class, IoU > 0.5, i.e. 2·inter > union (exact integer test).
        var matchedGT = Set<UInt64>(), matchedPred = Set<UInt64>()
        var tp: [Int: Int] = [:], fp: [Int: Int] = [:], fn: [Int: Int] = [:], iouSum: [Int: Double] = [:]
        var bestCoverage: [UInt64: Double] = [:]
        // Sorted so that sums are taken in a fixed order (bit-identical results run to run).
        let sortedPairs = merged.sorted { ($0.key.gt, $0.key.pred) < ($1.key.gt, $1.key.pred) }
        for (p, inter) in sortedPairs where isGTSegment(p.gt) && p.pred != 0 {
            let (num, den) = iou(p.gt, p.pred, inter)
            if isThing(p.gt) && isThing(p.pred) {
                bestCoverage[p.gt] = max(bestCoverage[p.gt] ?? 0, Double(num) / Double(den))
            }
            guard cls(p.gt) == cls(p.pred), 2 * num > den else { continue }
            matchedGT.insert(p.gt); matchedPred.insert(p.pred)
            tp[cls(p.gt), default: 0] += 1
            iouSum[cls(p.gt), default: 0] += Double(num) / Double(den)
        }
        for g in gtArea.keys where isGTSegment(g) && !matchedGT.contains(g) { fn[cls(g), default: 0] += 1 }
        for (p, area) in predArea where !matchedPred.contains(p) {
            let ignored = predOnVoid[p, default: 0] + predOnIgnoredSameClass[p, default: 0]
            if 2 * ignored > area { continue }
            fp[cls(p), default: 0] += 1
        }

        // Per class.
        let ids = Set(gtCount.keys).union(predCount.keys).union(tp.keys).union(fp.keys).union(fn.keys).sorted()
        var results: [PanopticMetrics.ClassResult] = []
        for id in ids {
            let info = classInfo[id]!
            let t = tp[id, default: 0], f = fp[id, default: 0], m = fn[id, default: 0], s = iouSum[id, default: 0]
            let g = gtCount[id, default: 0], pr = predCount[id, default: 0], c = correct[id, default: 0]
            let d = Double(t) + 0.5 * Double(f + m)
            results.append(.init(
                id: id, name: info.name, isThing: info.isThing, truePositives: t, falsePositives: f, falseNegatives: m,
                iouSum: s, pq: d > 0 ? s / d : nil, sq: d > 0 ? (t > 0 ? s / Double(t) : 0) : nil,
                rq: d > 0 ? Double(t) / d : nil, iou: g + pr > 0 ? Double(c) / Double(g + pr - c) : nil,
                accuracy: g > 0 ? Double(c) / Double(g) : nil, gtCount: g, predictedCount: pr, correctCount: c))
        }
        func quality(_ subset: [PanopticMetrics.ClassResult]) -> PanopticMetrics.Quality {
            let scored = subset.filter { $0.pq != nil }
            let k = scored.count
            func mean(_ f: (PanopticMetrics.ClassResult) -> Double?) -> Double {
                k > 0 ? scored.reduce(0) { $0 + f($1)! } / Double(k) : 0
            }
            return .init(pq: mean(\.pq), sq: mean(\.sq), rq: mean(\.rq), classCount: k,
                         truePositives: subset.reduce(0) { $0 + $1.truePositives },
                         falsePositives: subset.reduce(0) { $0 + $1.falsePositives },
                         falseNegatives: subset.reduce(0) { $0 + $1.falseNegatives },
                         iouSum: subset.reduce(0) { $0 + $1.iouSum })
        }
        let ious = results.compactMap(\.iou), accs = results.compactMap(\.accuracy)

        // Coverage over GT instances (thing segments); an instance no predicted thing touches has coverage 0.
        let instances = gtArea.filter { isGTSegment($0.key) && isThing($0.key) }.sorted { $0.key < $1.key }
        var covSum = 0.0, wSum = 0.0, weight = 0
        for (g, area) in instances {
            let c = bestCoverage[g] ?? 0
            covSum += c; wSum += c * Double(area); weight += area
        }

        return PanopticMetrics(
            overall: quality(results), things: quality(results.filter(\.isThing)),
            stuff: quality(results.filter { !$0.isThing }), classes: results,
            mIoU: ious.isEmpty ? 0 : ious.reduce(0, +) / Double(ious.count), mIoUClassCount: ious.count,
            mAcc: accs.isEmpty ? 0 : accs.reduce(0, +) / Double(accs.count), mAccClassCount: accs.count,
            mCov: instances.isEmpty ? 0 : covSum / Double(instances.count),
            mWCov: weight > 0 ? wSum / Double(weight) : 0, instanceCount: instances.count,
            elementCount: elementCount, voidCount: voidCount)
    }
}

/// Raw segment keys: class << 32 | instance bit pattern; 0 = void / no prediction.
struct SegmentPair: Hashable, Sendable {
    var gt: UInt64
    var pred: UInt64
}
