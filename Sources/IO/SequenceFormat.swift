import Foundation
import MapCore

/// `sequence.json`, the manifest of our own sequence directory. The layout (README, "Sequence format"):
///
///     sequence.json            this manifest
///     vocabulary.json          classes (optional; required when masks are present)
///     poses.txt                per line: frame timestamp r00 r01 r02 tx r10 r11 r12 ty r20 r21 r22 tz (T_W_C)
///     rgb/NNNNNN.{png,jpg}     8-bit RGB
///     depth/NNNNNN.png         16-bit, `depth_scale` units per metre, 0 = invalid
///     masks/NNNNNN.png         16-bit per-frame instance ids, 0 = none (optional)
///     masks/NNNNNN.json        {"segments": [{"id": 3, "class": 5, "score": 0.9}, ...]}
public struct SequenceManifest: Sendable, Equatable, Codable {
    public static let formatName = "pano-sequence"
    public static let currentVersion = 1

    public struct PinholeIntrinsics: Sendable, Equatable, Codable {
        public var fx: Double, fy: Double, cx: Double, cy: Double
        public init(fx: Double, fy: Double, cx: Double, cy: Double) { self.fx = fx; self.fy = fy; self.cx = cx; self.cy = cy }
    }

    public var format: String = SequenceManifest.formatName
    public var version: Int = SequenceManifest.currentVersion
    public var name: String
    public var frameCount: Int
    public var width: Int
    public var height: Int
    /// Pinhole intrinsics in pixels; alternatively `calibration` names a calibration JSON beside this file.
    public var intrinsics: PinholeIntrinsics?
    public var calibration: String?
    /// Depth units per metre in `depth/*.png` (1000 = millimetres).
    public var depthScale: Double
    /// Recorded frame rate in Hz (used by paced replay).
    public var frameRate: Double?
    /// "png" or "jpg".
    public var rgbFormat: String
    /// Vocabulary file name, relative to the directory.
    public var vocabulary: String?
    public var hasMasks: Bool

    enum CodingKeys: String, CodingKey {
        case format, version, name, width, height, intrinsics, calibration, vocabulary
        case frameCount = "frame_count", depthScale = "depth_scale", frameRate = "frame_rate", rgbFormat = "rgb_format"
        case hasMasks = "masks"
    }

    public init(name: String, frameCount: Int, intrinsics: Intrinsics, depthScale: Double = 1000,
                frameRate: Double? = 30, rgbFormat: String = "png", vocabulary: String? = nil, hasMasks: Bool = false) {
        self.name = name; self.frameCount = frameCount; self.width = intrinsics.width; self.height = intrinsics.height
        self.intrinsics = PinholeIntrinsics(fx: intrinsics.fx, fy: intrinsics.fy, cx: intrinsics.cx, cy: intrinsics.cy)
        self.depthScale = depthScale; self.frameRate = frameRate; self.rgbFormat = rgbFormat
        self.vocabulary = vocabulary; self.hasMasks = hasMasks
    }
}

/// Calibration JSON referenced by `sequence.json`'s `calibration` field: either `{"intrinsics": {"fx":..,"fy":..,"cx":..,
/// "cy":..}, "width": W, "height": H}` or a per-device file of `calibration/` (its colour camera is used).
struct CalibrationIntrinsicsFile: Codable {
    var intrinsics: SequenceManifest.PinholeIntrinsics
    var width: Int
    var height: Int
}

/// A per-device calibration file (`calibration/README.md`, format `pano-calibration`): a sequence's frames are in the
/// colour camera, so its intrinsics are `color_camera`'s (the USBCamera module validates the whole file).
struct DeviceCalibrationColourCamera: Codable {
    struct Camera: Codable { var fx: Double, fy: Double, cx: Double, cy: Double, width: Int, height: Int }
    var color_camera: Camera
}

/// Masks JSON of one frame.
/// A frame's 2D masks on disk (sequence directories, the live mask inbox): a 16-bit id image (0 = no segment) and a
/// JSON file `{"segments": [{"id": 1, "class": 2, "score": 0.9}, ...]}`.
public enum MaskFiles {
    /// Reads the pair; a missing or unreadable file is a `MapError` naming it.
    public static func read(image: URL, segments: URL, frame: Int) throws -> FrameMasks {
        let ids = try ImageFiles.readGray16(image, frame: frame, what: "mask image")
        let data = try Files.read(segments, frame: frame, what: "mask JSON")
        do {
            let file = try JSONDecoder().decode(MaskFile.self, from: Data(data))
            return FrameMasks(ids: ids, segments: file.segments)
        } catch {
            throw MapError(.badMask, "mask JSON is not valid (\(error))", file: segments.path, frame: frame,
                           hint: "write {\"segments\": [{\"id\": 1, \"class\": 2, \"score\": 0.9}]}")
        }
    }

    /// Writes the pair, each atomically; the JSON last (a reader polling for the JSON finds the image in place).
    public static func write(_ masks: FrameMasks, image: URL, segments: URL) throws {
        try Files.writeAtomically(try PNGCodec.encodeGray16(masks.ids), to: image)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try Files.writeAtomically(try enc.encode(MaskFile(segments: masks.segments)), to: segments)
    }
}

struct MaskFile: Codable {
    var segments: [MaskSegment]
}

/// The file stem of frame `i` in our layout: six digits, zero-padded.
public func frameName(_ i: Int) -> String {
    let s = String(i)
    return String(repeating: "0", count: max(0, 6 - s.count)) + s
}

/// Reader of our own sequence directory.
public struct PanoSequenceReader: SequenceReader {
    public let info: SequenceInfo
    public let manifest: SequenceManifest
    let poses: [RigidTransform]
    let timestamps: [Double?]

    public init(directory: URL) throws {
        let manifestURL = directory.appendingPathComponent("sequence.json")
        let bytes = try Files.read(manifestURL, what: "sequence manifest")
        let m: SequenceManifest
        do { m = try JSONDecoder().decode(SequenceManifest.self, from: Data(bytes)) } catch {
            throw MapError(.badFormat, "sequence.json is not valid JSON of the documented shape (\(error))",
                           file: manifestURL.path, hint: "see README, 'Sequence format'")
        }
        guard m.format == SequenceManifest.formatName else {
            throw MapError(.badFormat, "format is '\(m.format)', expected '\(SequenceManifest.formatName)'",
                           file: manifestURL.path, hint: "this is not a pano sequence directory")
        }
        guard m.version <= SequenceManifest.currentVersion else {
            throw MapError(.unsupported, "format version \(m.version) is newer than this build (\(SequenceManifest.currentVersion))",
                           file: manifestURL.path, hint: "update pano")
        }
        guard m.frameCount >= 0 else {
            throw MapError(.badFormat, "frame_count \(m.frameCount) is negative", file: manifestURL.path)
        }
        guard m.depthScale > 0, m.depthScale.isFinite else {
            throw MapError(.badCalibration, "depth_scale \(m.depthScale) must be positive", file: manifestURL.path,
                           hint: "give depth units per metre, e.g. 1000 for millimetres")
        }
        guard m.rgbFormat == "png" || m.rgbFormat == "jpg" else {
            throw MapError(.badFormat, "rgb_format '\(m.rgbFormat)' is neither 'png' nor 'jpg'", file: manifestURL.path)
        }
        let intr: Intrinsics
        if let p = m.intrinsics {
            intr = Intrinsics(fx: p.fx, fy: p.fy, cx: p.cx, cy: p.cy, width: m.width, height: m.height)
            try intr.validate(source: manifestURL.path)
        } else if let c = m.calibration {
            let url = directory.appendingPathComponent(c)
            let data = try Files.read(url, what: "calibration file")
            if let cal = try? JSONDecoder().decode(CalibrationIntrinsicsFile.self, from: Data(data)) {
                intr = Intrinsics(fx: cal.intrinsics.fx, fy: cal.intrinsics.fy, cx: cal.intrinsics.cx,
                                  cy: cal.intrinsics.cy, width: cal.width, height: cal.height)
            } else {
                let c: DeviceCalibrationColourCamera.Camera
                do { c = try JSONDecoder().decode(DeviceCalibrationColourCamera.self, from: Data(data)).color_camera } catch {
                    throw MapError(.badCalibration, "calibration file is not valid (\(error))", file: url.path,
                                   hint: "see calibration/README.md for the schema")
                }
                intr = Intrinsics(fx: c.fx, fy: c.fy, cx: c.cx, cy: c.cy, width: c.width, height: c.height)
            }
            try intr.validate(source: url.path)
        } else {
            throw MapError(.badCalibration, "neither 'intrinsics' nor 'calibration' is given", file: manifestURL.path,
                           hint: "add the pinhole intrinsics to sequence.json")
        }
        var vocabulary: Vocabulary?
        if let v = m.vocabulary { vocabulary = try Vocabulary.load(from: directory.appendingPathComponent(v)) }
        if m.hasMasks && vocabulary == nil {
            throw MapError(.badFormat, "the sequence has masks but no vocabulary", file: manifestURL.path,
                           hint: "add \"vocabulary\": \"vocabulary.json\" and the file")
        }
        let (poses, stamps) = try Self.readPoses(directory.appendingPathComponent("poses.txt"), frameCount: m.frameCount)
        self.poses = poses; self.timestamps = stamps; self.manifest = m
        info = SequenceInfo(format: "pano", name: m.name, root: directory, frameCount: m.frameCount, intrinsics: intr,
                            depthUnitsPerMetre: m.depthScale, frameRate: m.frameRate, vocabulary: vocabulary,
                            hasMasks: m.hasMasks)
    }

    static func readPoses(_ url: URL, frameCount: Int) throws -> ([RigidTransform], [Double?]) {
        let text = try Files.readText(url, what: "pose list")
        var poses = [RigidTransform?](repeating: nil, count: frameCount)
        var stamps = [Double?](repeating: nil, count: frameCount)
        for (n, line) in DatasetText.lines(text) where !DatasetText.isBlankOrComment(line) {
            let v = try DatasetText.numbers(line, file: url.path, line: n)
            guard v.count == 14 else {
                throw MapError(.badPose, "line \(n) has \(v.count) numbers, expected 14 (frame, timestamp, 3x4 T_W_C)",
                               file: url.path, hint: "see README, 'Sequence format'")
            }
            guard let i = Int(exactly: v[0]), i >= 0, i < frameCount else {
                throw MapError(.badPose, "line \(n) names frame \(v[0]), outside 0..<\(frameCount)", file: url.path)
            }
            // NaN or non-rigid poses are kept here and refused per frame by FrameValidator (so --skip-bad-frames works).
            poses[i] = RigidTransform(rowMajor: Array(v[2...]))
            stamps[i] = v[1].isFinite ? v[1] : nil
        }
        if let missing = poses.firstIndex(where: { $0 == nil }) {
            throw MapError(.badPose, "no pose for frame \(missing)", file: url.path, frame: missing,
                           hint: "every frame needs one line in poses.txt")
        }
        return (poses.map { $0! }, stamps)
    }

    func url(_ sub: String, _ i: Int, _ ext: String) -> URL {
        info.root.appendingPathComponent(sub).appendingPathComponent(frameName(i) + "." + ext)
    }

    public func files(at i: Int) -> String {
        info.root.appendingPathComponent("{rgb,depth,masks}/\(frameName(i)).*").path
    }

    public func frame(at i: Int) throws -> Frame {
        guard i >= 0 && i < info.frameCount else {
            throw MapError(.badArgument, "frame \(i) is outside 0..<\(info.frameCount)", file: info.root.path)
        }
        let rgb = try ImageFiles.readColor(url("rgb", i, manifest.rgbFormat), frame: i, jpeg: JPEGCodec())
        let raw = try ImageFiles.readGray16(url("depth", i, "png"), frame: i, what: "depth image")
        var masks: FrameMasks?
        if manifest.hasMasks {
            masks = try MaskFiles.read(image: url("masks", i, "png"), segments: url("masks", i, "json"), frame: i)
        }
        return Frame(index: i, timestamp: timestamps[i], rgb: rgb,
                     depth: ImageFiles.depthMetres(raw, unitsPerMetre: manifest.depthScale), T_W_C: poses[i],
                     intrinsics: info.intrinsics, masks: masks)
    }
}

/// Writes frames into our own sequence directory. Frame files are written as they come; `poses.txt` and
/// `sequence.json` (renamed into place last) make the directory a valid sequence once `finish()` returns.
public final class SequenceWriter {
    public let directory: URL
    public private(set) var manifest: SequenceManifest
    private var poseLines: [Int: String] = [:]
    private let jpeg = JPEGCodec()

    public init(directory: URL, name: String, intrinsics: Intrinsics, depthScale: Double = 1000,
                frameRate: Double? = 30, rgbFormat: String = "png", vocabulary: Vocabulary? = nil) throws {
        guard rgbFormat == "png" || rgbFormat == "jpg" else {
            throw MapError(.badArgument, "rgb format '\(rgbFormat)' is neither png nor jpg")
        }
        try intrinsics.validate(source: "intrinsics of \(name)")
        self.directory = directory
        manifest = SequenceManifest(name: name, frameCount: 0, intrinsics: intrinsics, depthScale: depthScale,
                                    frameRate: frameRate, rgbFormat: rgbFormat,
                                    vocabulary: vocabulary == nil ? nil : "vocabulary.json", hasMasks: false)
        for sub in ["rgb", "depth"] { try Files.createDirectory(directory.appendingPathComponent(sub)) }
        if let vocabulary {
            try vocabulary.validate(source: "vocabulary of \(name)")
            try Files.writeAtomically(vocabulary.jsonData(), to: directory.appendingPathComponent("vocabulary.json"))
        }
    }

    /// Writes one frame under its `index`; masks need a vocabulary.
    public func write(_ frame: Frame) throws {
        let i = frame.index
        guard frame.intrinsics.size == ImageSize(width: manifest.width, height: manifest.height),
              frame.rgb.size == frame.intrinsics.size, frame.depth.size == frame.intrinsics.size else {
            throw MapError(.sizeMismatch, "frame images \(frame.rgb.size)/\(frame.depth.size) do not match the sequence's \(manifest.width)x\(manifest.height)",
                           frame: i)
        }
        let rgbBytes = manifest.rgbFormat == "jpg" ? try jpeg.encode(frame.rgb, quality: 95) : try PNGCodec.encodeRGB8(frame.rgb)
        try Files.writeAtomically(rgbBytes, to: url("rgb", i, manifest.rgbFormat))
        let raw = ImageFiles.depthRaw(frame.depth, unitsPerMetre: manifest.depthScale)
        try Files.writeAtomically(try PNGCodec.encodeGray16(raw), to: url("depth", i, "png"))
        if let masks = frame.masks {
            guard manifest.vocabulary != nil else {
                throw MapError(.badArgument, "frame \(i) has masks but the writer has no vocabulary", frame: i)
            }
            if !manifest.hasMasks {
                try Files.createDirectory(directory.appendingPathComponent("masks"))
                manifest.hasMasks = true
            }
            try MaskFiles.write(masks, image: url("masks", i, "png"), segments: url("masks", i, "json"))
        }
        let m = frame.T_W_C.rowMajor4x4
        let numbers = [Double(i), frame.timestamp ?? Double(i) / (manifest.frameRate ?? 30)] + Array(m[0..<12])
        poseLines[i] = numbers.map { formatNumber($0) }.joined(separator: " ")
        manifest.frameCount = max(manifest.frameCount, i + 1)
    }

    /// Writes `poses.txt` and `sequence.json`. Frames must be 0..<frameCount without gaps.
    public func finish() throws {
        if let gap = (0..<manifest.frameCount).first(where: { poseLines[$0] == nil }) {
            throw MapError(.badArgument, "frame \(gap) was never written", frame: gap,
                           hint: "write frames 0..<\(manifest.frameCount) without gaps")
        }
        var text = "# frame timestamp r00 r01 r02 tx r10 r11 r12 ty r20 r21 r22 tz  (T_W_C, camera-to-world, OpenCV camera)\n"
        for i in 0..<manifest.frameCount { text += poseLines[i]! + "\n" }
        try Files.writeAtomically(text, to: directory.appendingPathComponent("poses.txt"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(try enc.encode(manifest), to: directory.appendingPathComponent("sequence.json"))
    }

    func url(_ sub: String, _ i: Int, _ ext: String) -> URL {
        directory.appendingPathComponent(sub).appendingPathComponent(frameName(i) + "." + ext)
    }
}

/// Shortest text that reads back as the same Double.
func formatNumber(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
    return "\(v)"
}
