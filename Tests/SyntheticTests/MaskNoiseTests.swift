import MapCore
import Synthetic
import TestSupport
import XCTest

final class MaskNoiseTests: XCTestCase {
    let scene = Fixtures.statsScene
    var minPixels: Int { scene.config.maskNoise.minSegmentPixels }

    /// Runs the mask model with `config` over the 40 cached GT renders.
    func run(_ config: MaskNoiseConfig, seed: UInt64 = 7) -> [(masks: FrameMasks, log: MaskNoiseLog, gt: Gray16Image)] {
        let model = MaskNoiseModel(config: config, vocabulary: scene.vocabulary, segmentTable: scene.segmentTable)
        var base = SeededRNG(seed: seed)
        _ = base.next()
        return Fixtures.statsRenders.enumerated().map { i, r in
            var g = base.fork(UInt64(i))
            let (m, log) = model.apply(panoptic: r.panoptic, rng: &g)
            return (m, log, r.panoptic)
        }
    }

    func only(_ body: (inout MaskNoiseConfig) -> Void) -> MaskNoiseConfig {
        var c = MaskNoiseConfig.clean
        c.minSegmentPixels = minPixels
        c.minScore = 0.5
        body(&c)
        return c
    }

    func classOf(_ gt: Int) -> Int { scene.segmentTable.segment(id: gt)!.classID }

    func testCleanPresetIsExactUpToIDs() {
        var cfg = MaskNoiseConfig.clean
        cfg.minSegmentPixels = minPixels
        for (masks, log, gt) in run(cfg) {
            let o = Overlap(masks: masks, panoptic: gt)
            let gtSegs = o.gtSegments(minPixels: minPixels)
            XCTAssertEqual(masks.segments.count, gtSegs.count)
            XCTAssertEqual(log.groundTruthSegments, gtSegs.count)
            for g in gtSegs {
                let ms = o.masks(over: g)
                XCTAssertEqual(ms.count, 1)
                guard let m = ms.first else { continue }
                XCTAssertEqual(o.byGT[g]![m], o.gtSize[g], "mask must cover the whole GT segment")
                XCTAssertEqual(o.gts(under: m), [g], "mask must not leak")
                XCTAssertEqual(masks.segment(id: m)!.classID, classOf(g))
                XCTAssertEqual(masks.segment(id: m)!.score, 1)
            }
            // Small regions are not reported.
            for (g, n) in o.gtSize where g != 0 && n < minPixels { XCTAssertEqual(o.masks(over: g), []) }
            XCTAssertEqual(log.missed + log.merged + log.split + log.relabelled + log.erodedPixels, 0)
        }
    }

    func testIDsAreShuffledPerFrame() {
        let frames = run(only { $0.minScore = 1 })
        var sameMapping = 0, pairs = 0
        var allIDs: [Int] = []
        for f in frames {
            let ids = f.masks.segments.map(\.id)
            XCTAssertEqual(Set(ids).count, ids.count, "ids must be unique in a frame")
            XCTAssertTrue(ids.allSatisfy { (1...65535).contains($0) })
            allIDs += ids
        }
        for k in 1..<frames.count {
            let a = Overlap(masks: frames[k - 1].masks, panoptic: frames[k - 1].gt)
            let b = Overlap(masks: frames[k].masks, panoptic: frames[k].gt)
            for g in Set(a.gtSegments(minPixels: minPixels)).intersection(b.gtSegments(minPixels: minPixels)) {
                pairs += 1
                if a.masks(over: g) == b.masks(over: g) { sameMapping += 1 }
            }
        }
        XCTAssertGreaterThan(pairs, 100)
        XCTAssertLessThanOrEqual(sameMapping, 1, "GT segment -> mask id mapping must change between frames")
        // Ids are spread over the 16-bit range, not 1...k.
        XCTAssertGreaterThan(allIDs.max()!, 1000)
    }

    func testMissedDetectionRate() {
        let rate = 0.3
        var missed = 0, total = 0
        for (masks, log, gt) in run(only { $0.missRate = rate }) {
            let o = Overlap(masks: masks, panoptic: gt)
            for g in o.gtSegments(minPixels: minPixels) {
                total += 1
                let ms = o.masks(over: g)
                if ms.isEmpty { missed += 1 } else { XCTAssertEqual(o.byGT[g]![ms[0]], o.gtSize[g]) }
            }
            XCTAssertEqual(log.missed, log.groundTruthSegments - masks.segments.count)
        }
        assertRate(missed, total, rate, "missed detections")
    }

    func testWrongLabelRate() {
        let rate = 0.3
        var wrong = 0, total = 0
        for (masks, _, gt) in run(only { $0.wrongLabelRate = rate }) {
            let o = Overlap(masks: masks, panoptic: gt)
            for s in masks.segments {
                let g = o.gts(under: s.id)
                XCTAssertEqual(g.count, 1)
                total += 1
                let truth = scene.segmentTable.segment(id: g[0])!
                if s.classID != truth.classID {
                    wrong += 1
                    XCTAssertEqual(scene.vocabulary.class(id: s.classID)!.isThing, truth.isThing,
                                   "a wrong label keeps the thing/stuff kind")
                }
            }
        }
        assertRate(wrong, total, rate, "wrong labels")
    }

    func testOverSegmentationRate() {
        let rate = 0.3
        var splits = 0, total = 0
        for (masks, log, gt) in run(only { $0.overSegmentationRate = rate }) {
            let o = Overlap(masks: masks, panoptic: gt)
            for g in o.gtSegments(minPixels: minPixels) {
                total += 1
                let ms = o.masks(over: g)
                XCTAssertTrue((1...2).contains(ms.count))
                XCTAssertEqual(ms.reduce(0) { $0 + o.byGT[g]![$1]! }, o.gtSize[g], "split halves cover the segment")
                if ms.count == 2 {
                    splits += 1
                    XCTAssertEqual(masks.segment(id: ms[0])!.classID, masks.segment(id: ms[1])!.classID)
                    // The two halves are separated by a straight line: their centroids lie on opposite sides.
                }
                for m in ms { XCTAssertEqual(o.gts(under: m), [g]) }
            }
            XCTAssertEqual(log.split, masks.segments.count - log.groundTruthSegments)
        }
        assertRate(splits, total, rate, "over-segmentation")
    }

    func testUnderSegmentationRate() {
        let rate = 0.3
        var merges = 0, candidates = 0
        for (masks, log, gt) in run(only { $0.underSegmentationRate = rate }) {
            let o = Overlap(masks: masks, panoptic: gt)
            var mergesHere = 0
            for s in masks.segments {
                let gs = o.gts(under: s.id)
                XCTAssertTrue((1...2).contains(gs.count))
                guard gs.count == 2 else { continue }
                mergesHere += 1
                let a = scene.segmentTable.segment(id: gs[0])!, b = scene.segmentTable.segment(id: gs[1])!
                XCTAssertTrue(a.isThing && b.isThing, "only things are merged")
                XCTAssertTrue([a.classID, b.classID].contains(s.classID), "a merge keeps one of the two classes")
                XCTAssertTrue(touching(gt, gs[0], gs[1]), "only touching segments are merged")
            }
            XCTAssertEqual(mergesHere, log.merged)
            merges += log.merged; candidates += log.mergeCandidates
        }
        XCTAssertGreaterThan(merges, 10)
        assertRate(merges, candidates, rate, tolerance: 0.12, "under-segmentation")
    }

    private func touching(_ gt: Gray16Image, _ a: Int, _ b: Int) -> Bool {
        for y in 0..<gt.height {
            for x in 0..<gt.width {
                let p = Int(gt[x, y])
                guard p == a || p == b else { continue }
                let other = p == a ? b : a
                if x + 1 < gt.width, Int(gt[x + 1, y]) == other { return true }
                if y + 1 < gt.height, Int(gt[x, y + 1]) == other { return true }
            }
        }
        return false
    }

    func testErosionClearsExactlyTheBoundaryBand() {
        for r in [1, 2] {
            for (masks, _, gt) in run(only { $0.erosionRadiusPixels = r }).prefix(10) {
                // Expected: GT with small regions removed, then pixels with another label within r cleared.
                let o = Overlap(masks: masks, panoptic: gt)
                let kept = Set(o.gtSegments(minPixels: minPixels))
                let w = gt.width, h = gt.height
                func label(_ x: Int, _ y: Int) -> Int { kept.contains(Int(gt[x, y])) ? Int(gt[x, y]) : 0 }
                for y in 0..<h {
                    for x in 0..<w {
                        let l = label(x, y)
                        var interior = l != 0
                        for yy in max(0, y - r)...min(h - 1, y + r) {
                            for xx in max(0, x - r)...min(w - 1, x + r) where label(xx, yy) != l { interior = false }
                        }
                        XCTAssertEqual(masks.ids[x, y] != 0, interior, "r \(r) pixel (\(x), \(y))")
                    }
                }
            }
        }
    }

    func testNoisyPresetKeepsClassesInVocabularyAndScoresInRange() {
        var cfg = MaskNoiseConfig.noisy
        cfg.minSegmentPixels = minPixels
        var log = MaskNoiseLog()
        for (masks, l, gt) in run(cfg) {
            for s in masks.segments {
                XCTAssertTrue(scene.vocabulary.contains(id: s.classID))
                XCTAssertTrue((0.5...1).contains(s.score))
            }
            XCTAssertNoThrow(try FrameValidator(vocabulary: scene.vocabulary).validate(
                Frame(index: 0, rgb: RGBImage(width: gt.width, height: gt.height, channels: 3, repeating: 0),
                      depth: DepthImage(width: gt.width, height: gt.height, repeating: 1),
                      T_W_C: .identity, intrinsics: scene.intrinsics, masks: masks)))
            log.missed += l.missed; log.merged += l.merged; log.split += l.split; log.relabelled += l.relabelled
            log.erodedPixels += l.erodedPixels
        }
        // Over 40 frames of ~10 segments the moderate preset does each kind of error at least once.
        XCTAssertGreaterThan(log.missed, 0); XCTAssertGreaterThan(log.split, 0)
        XCTAssertGreaterThan(log.relabelled, 0); XCTAssertGreaterThan(log.erodedPixels, 0)
    }

    func testOriginsDescribeTheMasks() {
        var cfg = MaskNoiseConfig.noisy
        cfg.minSegmentPixels = minPixels
        cfg.erosionRadiusPixels = 0
        for (masks, log, gt) in run(cfg, seed: 3).prefix(20) {
            let o = Overlap(masks: masks, panoptic: gt)
            XCTAssertEqual(log.origins.map(\.maskID), masks.segments.map(\.id))
            for origin in log.origins {
                let under = o.gts(under: origin.maskID)
                if origin.wasSplit {
                    XCTAssertTrue(Set(under).isSubset(of: origin.panopticIDs))
                } else {
                    XCTAssertEqual(under, origin.panopticIDs)
                }
                XCTAssertEqual(origin.wasMerged, origin.panopticIDs.count == 2)
                XCTAssertEqual(masks.segment(id: origin.maskID)!.classID, origin.classID)
            }
        }
    }
}
