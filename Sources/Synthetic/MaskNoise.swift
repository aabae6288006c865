import MapCore

/// Where one output mask segment came from (for tests and diagnostics; a real segmenter gives no such thing).
public struct MaskOrigin: Sendable, Equatable, Codable {
    /// The per-frame mask id.
    public var maskID: Int
    /// The class reported for the mask.
    public var classID: Int
    /// Ground-truth panoptic segment ids whose pixels the mask took (two after a merge).
    public var panopticIDs: [Int]
    public var wasSplit: Bool
    public var wasMerged: Bool
    public var wasRelabelled: Bool
}

/// What the mask noise did in one frame. Rates can be checked as `merged / mergeCandidates` etc.
public struct MaskNoiseLog: Sendable, Equatable, Codable {
    /// Ground-truth segments (regions with at least `minSegmentPixels` pixels).
    public var groundTruthSegments = 0
    /// Thing segments that had an unmerged touching thing segment when considered, and how many of them merged.
    public var mergeCandidates = 0
    public var merged = 0
    /// Segments considered for a split, and how many were split in two.
    public var splitCandidates = 0
    public var split = 0
    /// Segments considered for a miss, and how many were removed.
    public var missCandidates = 0
    public var missed = 0
    /// Segments considered for a wrong label, and how many got another class.
    public var relabelCandidates = 0
    public var relabelled = 0
    /// Pixels cleared by boundary erosion, and segments that erosion removed completely.
    public var erodedPixels = 0
    public var erodedAway = 0
    public var origins: [MaskOrigin] = []

    public init() {}
}

/// A model of a real 2D panoptic segmenter: from the ground-truth panoptic image of a frame it produces `FrameMasks`
/// with per-frame random ids, missed detections, wrong labels, over- and under-segmentation, eroded boundaries and
/// scores, as set by `MaskNoiseConfig`. Steps, in order: GT segments (small regions dropped) -> merges of touching
/// things -> splits -> misses -> wrong labels -> erosion -> random unique ids in 1...65535 and scores.
public struct MaskNoiseModel: Sendable {
    public let config: MaskNoiseConfig
    public let vocabulary: Vocabulary
    public let segmentTable: PanopticSegmentTable

    public init(config: MaskNoiseConfig, vocabulary: Vocabulary, segmentTable: PanopticSegmentTable) {
        self.config = config; self.vocabulary = vocabulary; self.segmentTable = segmentTable
    }

    struct WorkSegment {
        var classID: Int
        var isThing: Bool
        var sources: [Int]
        var alive = true
        var merged = false
        var split = false
        var relabelled = false
    }

    public func apply(panoptic: Gray16Image, rng: inout SeededRNG) -> (masks: FrameMasks, log: MaskNoiseLog) {
        let w = panoptic.width, h = panoptic.height, n = w * h
        var log = MaskNoiseLog()

        // Ground-truth segments; label = panoptic id.
        var segs: [WorkSegment?] = Array(repeating: nil, count: (segmentTable.segments.map(\.id).max() ?? 0) + 1)
        var counts = [Int](repeating: 0, count: segs.count)
        for v in panoptic.data where Int(v) < counts.count { counts[Int(v)] += 1 }
        for s in segmentTable.segments where counts[s.id] >= config.minSegmentPixels && counts[s.id] > 0 {
            segs[s.id] = WorkSegment(classID: s.classID, isThing: s.isThing, sources: [s.id])
        }
        var labels = [Int](repeating: 0, count: n)
        for i in 0..<n {
            let v = Int(panoptic.data[i])
            labels[i] = v < segs.count && segs[v] != nil ? v : 0
        }
        log.groundTruthSegments = segs.compactMap { $0 }.count
        func aliveLabels() -> [Int] { segs.indices.filter { segs[$0]?.alive == true } }

        // Under-segmentation: merge a thing segment with a touching thing segment (4-neighbourhood).
        var touching: [Int: Set<Int>] = [:]
        for y in 0..<h {
            for x in 0..<w {
                let a = labels[y * w + x]
                guard a != 0, segs[a]!.isThing else { continue }
                for k in 0..<2 {
                    let nx = x + (k == 0 ? 1 : 0), ny = y + (k == 0 ? 0 : 1)
                    guard nx < w && ny < h else { continue }
                    let b = labels[ny * w + nx]
                    if b != 0, b != a, segs[b]!.isThing {
                        touching[a, default: []].insert(b); touching[b, default: []].insert(a)
                    }
                }
            }
        }
        for a in aliveLabels() where segs[a]!.isThing {
            let u = rng.uniform()
            guard !segs[a]!.merged else { continue }
            let partners = (touching[a] ?? []).filter { !segs[$0]!.merged }.sorted()
            guard !partners.isEmpty else { continue }
            log.mergeCandidates += 1
            guard u < config.underSegmentationRate else { continue }
            let b = partners[Int(rng.next() % UInt64(partners.count))]
            let keepClass = rng.uniform() < 0.5 ? segs[a]!.classID : segs[b]!.classID
            for i in 0..<n where labels[i] == b { labels[i] = a }
            segs[a]!.classID = keepClass
            segs[a]!.sources += segs[b]!.sources
            segs[a]!.merged = true
            segs[b]!.merged = true
            segs[b]!.alive = false
            log.merged += 1
        }

        // Over-segmentation: split by a random line through the centroid.
        var sumX = [Double](repeating: 0, count: segs.count), sumY = sumX, size = [Int](repeating: 0, count: segs.count)
        for y in 0..<h {
            for x in 0..<w where labels[y * w + x] != 0 {
                let l = labels[y * w + x]
                sumX[l] += Double(x); sumY[l] += Double(y); size[l] += 1
            }
        }
        var cut: [Int: (cx: Double, cy: Double, c: Double, s: Double, newLabel: Int)] = [:]
        for a in aliveLabels() {
            let u = rng.uniform(), angle = rng.uniform(0, Double.pi)
            log.splitCandidates += 1
            guard u < config.overSegmentationRate, size[a] > 1 else { continue }
            segs.append(WorkSegment(classID: segs[a]!.classID, isThing: segs[a]!.isThing, sources: segs[a]!.sources,
                                    merged: segs[a]!.merged))
            cut[a] = (sumX[a] / Double(size[a]), sumY[a] / Double(size[a]), cos(angle), sin(angle), segs.count - 1)
        }
        if !cut.isEmpty {
            var moved = [Int](repeating: 0, count: segs.count)
            for y in 0..<h {
                for x in 0..<w {
                    let l = labels[y * w + x]
                    guard l != 0, let c = cut[l] else { continue }
                    if (Double(x) - c.cx) * c.c + (Double(y) - c.cy) * c.s > 0 {
                        labels[y * w + x] = c.newLabel; moved[c.newLabel] += 1
                    }
                }
            }
            for (a, c) in cut.sorted(by: { $0.key < $1.key }) {
                if moved[c.newLabel] == 0 || moved[c.newLabel] == size[a] {
                    // Degenerate line (all pixels on one side): undo.
                    for i in 0..<n where labels[i] == c.newLabel { labels[i] = a }
                    segs[c.newLabel]!.alive = false
                } else {
                    segs[a]!.split = true; segs[c.newLabel]!.split = true
                    log.split += 1
                }
            }
        }

        // Missed detections.
        var removed = false
        for a in aliveLabels() {
            let u = rng.uniform()
            log.missCandidates += 1
            if u < config.missRate { segs[a]!.alive = false; log.missed += 1; removed = true }
        }
        if removed { for i in 0..<n where labels[i] != 0 && !segs[labels[i]]!.alive { labels[i] = 0 } }

        // Wrong labels: another class of the same kind.
        for a in aliveLabels() {
            let u = rng.uniform()
            log.relabelCandidates += 1
            guard u < config.wrongLabelRate else { continue }
            let current = segs[a]!.classID
            let pool = (segs[a]!.isThing ? vocabulary.thingIDs : vocabulary.stuffIDs).filter { $0 != current }
            guard !pool.isEmpty else { continue }
            segs[a]!.classID = pool[Int(rng.next() % UInt64(pool.count))]
            segs[a]!.relabelled = true
            log.relabelled += 1
        }

        // Boundary erosion: clear pixels with a differently labelled pixel within r (Chebyshev).
        let r = config.erosionRadiusPixels
        if r > 0 {
            var eroded = labels
            for y in 0..<h {
                for x in 0..<w {
                    let l = labels[y * w + x]
                    guard l != 0 else { continue }
                    var boundary = false
                    for yy in max(0, y - r)...min(h - 1, y + r) where !boundary {
                        for xx in max(0, x - r)...min(w - 1, x + r) where labels[yy * w + xx] != l {
                            boundary = true; break
                        }
                    }
                    if boundary { eroded[y * w + x] = 0; log.erodedPixels += 1 }
                }
            }
            labels = eroded
        }

        // Random unique per-frame ids and scores.
        var finalCount = [Int](repeating: 0, count: segs.count)
        for l in labels where l != 0 { finalCount[l] += 1 }
        var idOf = [Int](repeating: 0, count: segs.count)
        var used = Set<Int>()
        var segments: [MaskSegment] = []
        for a in aliveLabels() {
            guard finalCount[a] > 0 else { log.erodedAway += 1; continue }
            var id = 0
            repeat { id = 1 + Int(rng.next() % 65535) } while !used.insert(id).inserted
            idOf[a] = id
            let score = config.minScore + (1 - config.minScore) * rng.uniform()
            let s = segs[a]!
            segments.append(MaskSegment(id: id, classID: s.classID, score: score))
            log.origins.append(MaskOrigin(maskID: id, classID: s.classID, panopticIDs: s.sources.sorted(),
                                          wasSplit: s.split, wasMerged: s.merged, wasRelabelled: s.relabelled))
        }
        var ids = [UInt16](repeating: 0, count: n)
        for i in 0..<n where labels[i] != 0 { ids[i] = UInt16(idOf[labels[i]]) }
        return (FrameMasks(ids: Image(width: w, height: h, data: ids), segments: segments), log)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
