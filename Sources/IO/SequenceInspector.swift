import Foundation
import MapCore

/// Reads every frame of a sequence through the validator (the ingest path) and gathers the figures `pano inspect`
/// prints. With `skipBadFrames`, a frame that fails to decode or validate is counted and skipped; otherwise the first
/// such error is thrown.
public struct SequenceInspector {
    public struct Report: Sendable {
        public var info: SequenceInfo
        public var framesRead = 0
        public var skipped: [(frame: Int, error: MapError)] = []
        public var depthMin: Float = .infinity
        public var depthMax: Float = 0
        public var depthMedian: Float = 0
        /// 1st and 99th percentile of valid depth, metres (1 cm bins).
        public var depthP1: Float = 0
        public var depthP99: Float = 0
        /// Fraction of pixels with a valid depth.
        public var validDepthFraction: Double = 0
        /// Length of the camera centre path, metres.
        public var pathLength: Double = 0
        /// Sum of rotation angles between consecutive frames, degrees.
        public var totalRotationDegrees: Double = 0
        public var boundsMin = Vec3(repeating: .infinity)
        public var boundsMax = Vec3(repeating: -.infinity)
        public var framesWithMasks = 0
        public var segmentCount = 0
        /// Pixel share of each class id over all mask pixels.
        public var classPixels: [Int: Int] = [:]
        /// Number of distinct mask ids used over the whole sequence (large when ids are per-frame random).
        public var distinctMaskIDs = 0
        /// Frames with ground-truth label images (ScanNet label-filt, label-fusion segm/mask) and their class ids.
        public var framesWithGroundTruth = 0
        public var groundTruthClassPixels: [Int: Int] = [:]
        public var groundTruthInstances = Set<Int>()
        public var seconds: Double = 0
    }

    public var validator: FrameValidator
    public var skipBadFrames: Bool
    /// Called after each frame with (frames done, total).
    public var progress: ((Int, Int) -> Void)?

    public init(vocabulary: Vocabulary?, skipBadFrames: Bool, progress: ((Int, Int) -> Void)? = nil) {
        validator = FrameValidator(vocabulary: vocabulary)
        self.skipBadFrames = skipBadFrames
        self.progress = progress
    }

    public func run(_ reader: any SequenceReader) throws -> Report {
        let start = Date()
        var r = Report(info: reader.info)
        var depthHistogram = [Int](repeating: 0, count: 2001) // 1 cm bins up to 20 m
        var validPixels = 0, totalPixels = 0
        var previous: RigidTransform?
        var ids = Set<UInt16>()
        let n = reader.info.frameCount
        for i in 0..<n {
            let frame: Frame
            do {
                frame = try reader.frame(at: i)
                try validator.validate(frame, files: reader.files(at: i))
            } catch let e as MapError {
                let e = e.at(frame: i)
                guard skipBadFrames else { throw e }
                r.skipped.append((i, e))
                progress?(i + 1, n)
                continue
            }
            r.framesRead += 1
            for d in frame.depth.data {
                totalPixels += 1
                guard d > 0, d.isFinite else { continue }
                validPixels += 1
                r.depthMin = min(r.depthMin, d); r.depthMax = max(r.depthMax, d)
                depthHistogram[min(2000, Int(d * 100))] += 1
            }
            let c = frame.T_W_C.translation
            r.boundsMin = pointwiseMin(r.boundsMin, c); r.boundsMax = pointwiseMax(r.boundsMax, c)
            if let p = previous {
                r.pathLength += length(c - p.translation)
                r.totalRotationDegrees += (p.inverse * frame.T_W_C).rotationAngle * 180 / .pi
            }
            previous = frame.T_W_C
            if let masks = frame.masks {
                r.framesWithMasks += 1
                r.segmentCount += masks.segments.count
                var classOfID: [UInt16: Int] = [:]
                for s in masks.segments { classOfID[UInt16(truncatingIfNeeded: s.id)] = s.classID }
                for v in masks.ids.data where v != 0 {
                    ids.insert(v)
                    r.classPixels[classOfID[v] ?? 0, default: 0] += 1
                }
            }
            if let gt = try groundTruth(reader, i) {
                r.framesWithGroundTruth += 1
                for v in gt.semantic.data where v != 0 { r.groundTruthClassPixels[Int(v), default: 0] += 1 }
                for v in gt.instance.data where v != 0 { r.groundTruthInstances.insert(Int(v)) }
            }
            progress?(i + 1, n)
        }
        r.validDepthFraction = totalPixels > 0 ? Double(validPixels) / Double(totalPixels) : 0
        func percentile(_ q: Double) -> Float {
            var acc = 0
            for (bin, count) in depthHistogram.enumerated() {
                acc += count
                if Double(acc) >= q * Double(validPixels) { return (Float(bin) + 0.5) / 100 }
            }
            return 0
        }
        r.depthMedian = percentile(0.5); r.depthP1 = percentile(0.01); r.depthP99 = percentile(0.99)
        if validPixels == 0 { r.depthMin = 0 }
        r.distinctMaskIDs = ids.count
        if let v = (reader as? any GroundTruthProviding)?.groundTruthVocabulary, r.info.vocabulary == nil { r.info.vocabulary = v }
        r.seconds = Date().timeIntervalSince(start)
        return r
    }

    private func groundTruth(_ reader: any SequenceReader, _ i: Int) throws -> GroundTruthLabels? {
        guard let gt = reader as? any GroundTruthProviding, gt.hasGroundTruth else { return nil }
        do { return try gt.groundTruth(at: i) } catch let e as MapError {
            guard skipBadFrames else { throw e.at(frame: i) }
            return nil
        }
    }
}

extension SequenceInspector.Report {
    /// Human-readable summary, one fact per line.
    public var text: String {
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        let k = info.intrinsics
        var s = """
        sequence     \(info.name)  (\(info.format) layout)  \(info.root.path)
        frames       \(framesRead) of \(info.frameCount) read\(skipped.isEmpty ? "" : ", \(skipped.count) skipped")\(info.frameRate.map { "  at \(f($0, 1)) Hz" } ?? "")
        resolution   \(k.width)x\(k.height)  fx \(f(k.fx)) fy \(f(k.fy)) cx \(f(k.cx)) cy \(f(k.cy))
        depth        \(f(Double(depthMin), 3)) .. \(f(Double(depthMax), 3)) m (1-99%: \(f(Double(depthP1))) .. \(f(Double(depthP99))) m), median \(f(Double(depthMedian), 2)) m, \(f(validDepthFraction * 100, 1))% valid (file units: \(f(info.depthUnitsPerMetre, 1))/m)
        trajectory   path \(f(pathLength)) m, rotation \(f(totalRotationDegrees, 1))°, camera box \(vec(boundsMin)) .. \(vec(boundsMax)) m
        """
        if let v = info.vocabulary {
            let names = v.classes.map { "\($0.id):\($0.name)\($0.isThing ? "" : "*")" }.joined(separator: " ")
            s += "\nvocabulary   \(v.classes.count) classes (* = stuff): \(names)"
        }
        // The eight largest classes by pixel share.
        func top(_ pixels: [Int: Int]) -> String {
            let total = max(1, pixels.values.reduce(0, +))
            return pixels.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(8).map { id, px in
                "\(info.vocabulary?.class(id: id)?.name ?? "id \(id)") \(f(Double(px) * 100 / Double(total), 1))%"
            }.joined(separator: ", ")
        }
        if framesWithMasks > 0 {
            s += "\nmasks        \(framesWithMasks) frames, \(f(Double(segmentCount) / Double(framesWithMasks), 1)) segments/frame, \(distinctMaskIDs) distinct ids; pixels: \(top(classPixels))"
        } else {
            s += "\nmasks        none"
        }
        if framesWithGroundTruth > 0 {
            s += "\nground truth \(framesWithGroundTruth) frames with label images, \(groundTruthClassPixels.count) classes, \(groundTruthInstances.count) instance ids; labelled pixels: \(top(groundTruthClassPixels))"
        }
        for (frame, e) in skipped.prefix(10) { s += "\nskipped      frame \(frame): \(e)" }
        if skipped.count > 10 { s += "\nskipped      ... \(skipped.count - 10) more" }
        return s
    }

    private func vec(_ v: Vec3) -> String {
        v.x.isFinite ? String(format: "(%.2f, %.2f, %.2f)", v.x, v.y, v.z) : "(none)"
    }
}
