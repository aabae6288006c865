import Foundation
import MapCore

/// Reader of a TUM RGB-D sequence:
///
///     rgb.txt, depth.txt     lines "timestamp filename" ('#' comments)
///     groundtruth.txt        lines "timestamp tx ty tz qx qy qz qw" (T_W_C; quaternion with w LAST)
///     rgb/*.png, depth/*.png depth uint16, 5000 units per metre, 0 = invalid
///
/// Frames follow the depth images: each depth image is paired with the nearest colour image (|dt| <= `maxColorGap`)
/// and a pose interpolated at the depth timestamp (linear translation, slerp rotation). Depth images with no colour
/// match or outside the ground-truth time range are left out and counted in `association`.
public struct TUMReader: SequenceReader {
    public static let depthUnitsPerMetre = 5000.0

    /// What the association kept and dropped.
    public struct Association: Sendable, Equatable {
        public var depthImages: Int
        public var droppedNoColor: Int
        public var droppedOutsidePoses: Int
        public var dropped: Int { droppedNoColor + droppedOutsidePoses }
    }

    struct Entry: Sendable { var time: Double; var file: String }
    struct Matched: Sendable { var time: Double; var depth: String; var rgb: String; var pose: RigidTransform }

    public let info: SequenceInfo
    public let association: Association
    let frames: [Matched]

    /// Intrinsics of the TUM cameras by the freiburg number in the sequence name (640x480).
    public static func defaultIntrinsics(sequenceName: String) -> Intrinsics {
        let n = sequenceName.lowercased()
        let (fx, fy, cx, cy): (Double, Double, Double, Double)
        if n.contains("freiburg1") || n.contains("fr1") {
            (fx, fy, cx, cy) = (517.3, 516.5, 318.6, 255.3)
        } else if n.contains("freiburg2") || n.contains("fr2") {
            (fx, fy, cx, cy) = (520.9, 521.0, 325.1, 249.7)
        } else if n.contains("freiburg3") || n.contains("fr3") {
            (fx, fy, cx, cy) = (535.4, 539.2, 320.1, 247.6)
        } else {
            (fx, fy, cx, cy) = (525.0, 525.0, 319.5, 239.5)
        }
        return Intrinsics(fx: fx, fy: fy, cx: cx, cy: cy, width: 640, height: 480)
    }

    /// - Parameters:
    ///   - intrinsics: replaces the freiburg default (which is chosen from the directory name).
    ///   - maxColorGap: largest |t_rgb - t_depth| in seconds for a colour match.
    public init(directory: URL, intrinsics override: Intrinsics? = nil, maxColorGap: Double = 0.02) throws {
        let rgb = try Self.list(directory.appendingPathComponent("rgb.txt"))
        let depth = try Self.list(directory.appendingPathComponent("depth.txt"))
        let gtURL = directory.appendingPathComponent("groundtruth.txt")
        let gt = try Self.groundTruth(gtURL)
        guard !gt.isEmpty else {
            throw MapError(.badPose, "ground truth has no poses", file: gtURL.path,
                           hint: "use a TUM sequence with groundtruth.txt")
        }
        let rgbSorted = rgb.sorted { $0.time < $1.time }
        let rgbTimes = rgbSorted.map(\.time)
        var matched: [Matched] = []
        var noColor = 0, outside = 0
        for d in depth.sorted(by: { $0.time < $1.time }) {
            guard let r = Self.nearest(rgbTimes, d.time), abs(rgbTimes[r] - d.time) <= maxColorGap else {
                noColor += 1; continue
            }
            guard let pose = Self.interpolate(gt, at: d.time) else { outside += 1; continue }
            matched.append(Matched(time: d.time, depth: d.file, rgb: rgbSorted[r].file, pose: pose))
        }
        guard !matched.isEmpty else {
            throw MapError(.badFormat, "no depth image has both a colour image within \(maxColorGap) s and a ground-truth pose "
                           + "(\(depth.count) depth images, \(noColor) without colour, \(outside) outside the poses)",
                           file: directory.path, hint: "check rgb.txt, depth.txt and groundtruth.txt belong together")
        }
        let name = directory.lastPathComponent
        let k = override ?? Self.defaultIntrinsics(sequenceName: name)
        try k.validate(source: override == nil ? "TUM default intrinsics" : "intrinsics override")
        let firstDepth = directory.appendingPathComponent(matched[0].depth)
        try DatasetFiles.checkSize(k, against: try DatasetFiles.pngSize(firstDepth, frame: 0, what: "depth image"),
                                   file: firstDepth.path,
                                   what: override == nil ? "the TUM default intrinsics for '\(name)'" : "the intrinsics override")
        var rate: Double?
        if matched.count > 1, let a = matched.first?.time, let b = matched.last?.time, b > a {
            rate = Double(matched.count - 1) / (b - a)
        }
        frames = matched
        association = Association(depthImages: depth.count, droppedNoColor: noColor, droppedOutsidePoses: outside)
        info = SequenceInfo(format: "tum", name: name, root: directory, frameCount: matched.count, intrinsics: k,
                            depthUnitsPerMetre: Self.depthUnitsPerMetre, frameRate: rate)
    }

    /// "timestamp filename" lines.
    static func list(_ url: URL) throws -> [Entry] {
        let text = try Files.readText(url, what: "TUM file list")
        var out: [Entry] = []
        for (n, line) in DatasetText.lines(text) where !DatasetText.isBlankOrComment(line) {
            let parts = line.split(whereSeparator: { $0.isWhitespace })
            guard parts.count >= 2, let time = Double(parts[0]), time.isFinite else {
                throw MapError(.badFormat, "line \(n) is not 'timestamp filename': '\(parts.joined(separator: " "))'", file: url.path,
                               hint: "fix or regenerate the file list")
            }
            out.append(Entry(time: time, file: String(parts[1])))
        }
        return out
    }

    struct PoseSample: Sendable { var time: Double; var t: Vec3; var q: SIMD4<Double> }  // q = (w, x, y, z)

    static func groundTruth(_ url: URL) throws -> [PoseSample] {
        let text = try Files.readText(url, what: "ground-truth trajectory")
        var out: [PoseSample] = []
        for (n, line) in DatasetText.lines(text) where !DatasetText.isBlankOrComment(line) {
            let v = try DatasetText.numbers(line, file: url.path, line: n)
            guard v.count == 8 else {
                throw MapError(.badPose, "line \(n) has \(v.count) numbers, expected 8 (timestamp tx ty tz qx qy qz qw)",
                               file: url.path, hint: "fix or regenerate groundtruth.txt")
            }
            guard v[0].isFinite else {
                throw MapError(.badPose, "line \(n) has a non-finite timestamp", file: url.path,
                               hint: "fix or regenerate groundtruth.txt")
            }
            // File order qx qy qz qw; stored as (w, x, y, z).
            out.append(PoseSample(time: v[0], t: Vec3(v[1], v[2], v[3]), q: SIMD4(v[7], v[4], v[5], v[6])))
        }
        return out.sorted { $0.time < $1.time }
    }

    /// Index of the value nearest to `t` in the sorted `times`.
    static func nearest(_ times: [Double], _ t: Double) -> Int? {
        guard !times.isEmpty else { return nil }
        var lo = 0, hi = times.count  // first index with times[i] >= t
        while lo < hi {
            let mid = (lo + hi) / 2
            if times[mid] < t { lo = mid + 1 } else { hi = mid }
        }
        if lo == 0 { return 0 }
        if lo == times.count { return times.count - 1 }
        return abs(times[lo] - t) < abs(times[lo - 1] - t) ? lo : lo - 1
    }

    /// Pose at time `t` between the samples around it; nil outside the sampled range.
    static func interpolate(_ gt: [PoseSample], at t: Double) -> RigidTransform? {
        guard let first = gt.first, let last = gt.last, t >= first.time, t <= last.time else { return nil }
        var lo = 0, hi = gt.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if gt[mid].time < t { lo = mid + 1 } else { hi = mid }
        }
        // gt[lo].time >= t, gt[lo - 1].time < t
        let b = gt[min(lo, gt.count - 1)]
        if b.time == t || lo == 0 { return RigidTransform(rotation: Mat3(quaternion: b.q), translation: b.t) }
        let a = gt[lo - 1]
        let s = (t - a.time) / (b.time - a.time)
        let q = slerp(a.q, b.q, s)
        return RigidTransform(rotation: Mat3(quaternion: q), translation: a.t + (b.t - a.t) * s)
    }

    /// Spherical interpolation of unit quaternions (shortest arc).
    static func slerp(_ a0: SIMD4<Double>, _ b0: SIMD4<Double>, _ s: Double) -> SIMD4<Double> {
        let na = (a0 * a0).sum().squareRoot(), nb = (b0 * b0).sum().squareRoot()
        guard na > 0, nb > 0, na.isFinite, nb.isFinite else { return a0 * (1 - s) + b0 * s }
        let a = a0 / na
        var b = b0 / nb
        var d = (a * b).sum()
        if d < 0 { b = -b; d = -d }
        if d > 0.9995 {
            let q = a + (b - a) * s
            return q / (q * q).sum().squareRoot()
        }
        let theta = acos(min(1, d))
        let sinTheta = sin(theta)
        return a * (sin((1 - s) * theta) / sinTheta) + b * (sin(s * theta) / sinTheta)
    }

    public func files(at i: Int) -> String {
        guard i >= 0 && i < frames.count else { return info.root.path }
        return info.root.appendingPathComponent(frames[i].depth).path + " + " + frames[i].rgb
    }

    public func frame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeFrame(at: i) }
    }

    func decodeFrame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        let m = frames[i]
        let raw = try ImageFiles.readGray16(info.root.appendingPathComponent(m.depth), frame: i, what: "depth image")
        let rgb = try ImageFiles.readColor(info.root.appendingPathComponent(m.rgb), frame: i, jpeg: JPEGCodec())
        return Frame(index: i, timestamp: m.time, rgb: DatasetFiles.colorAtDepthSize(rgb, raw.size),
                     depth: DepthModel.linear(unitsPerMetre: Self.depthUnitsPerMetre, invalidValue: nil).metres(raw),
                     T_W_C: m.pose, intrinsics: info.intrinsics)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
