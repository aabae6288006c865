import Foundation
import MapCore

/// Reader of the 7-Scenes / 3DMatch layout (and, with another depth model, label-fusion's):
///
///     frame-NNNNNN.color.{png,jpg}   colour (resized bilinearly to the depth resolution if it differs)
///     frame-NNNNNN.depth.png         uint16 millimetres; 0 and 65535 (7-Scenes' "no reading") = invalid
///     frame-NNNNNN.pose.txt          4x4 camera-to-world, row-major
///     camera-intrinsics.txt          3x3 K (beside the frames or one level up); 7-Scenes' 585, 585, 320, 240 if absent
///
/// The frames may be in the directory itself, in `rgbd-frames/`, or in `seq-NN/` subdirectories (the first in
/// sorted order unless `sequence` names one). Frame numbers need not start at 0: index = position in the sorted
/// list, and the original number stays in the file names (`frameNumbers`).
public struct SevenScenesReader: SequenceReader {
    /// 7-Scenes' Kinect depth camera at 640x480.
    public static let defaultIntrinsics = Intrinsics(fx: 585, fy: 585, cx: 320, cy: 240, width: 640, height: 480)

    public let info: SequenceInfo
    /// The directory holding the frame files.
    public let framesDirectory: URL
    /// The number NNNNNN of each frame, by index.
    public let frameNumbers: [Int]
    public let depthModel: DepthModel
    /// Where the intrinsics came from (a file path, "override" or "7-Scenes default").
    public let intrinsicsSource: String
    let digits: [String]
    let colorExtensions: [String]

    /// - Parameters:
    ///   - sequence: a `seq-NN` subdirectory to read when there are several.
    ///   - intrinsicsFile: the K file name to look for (label-fusion uses `camera-intrinsics.color.txt`).
    public init(directory: URL, intrinsics override: Intrinsics? = nil, depthModel: DepthModel = .millimetres,
                intrinsicsFile: String = "camera-intrinsics.txt", sequence: String? = nil,
                format: String = "7scenes") throws {
        guard let framesDir = Self.framesDirectory(in: directory, sequence: sequence) else {
            throw MapError(.missingFile, "no frame-NNNNNN.depth.png files found"
                           + (sequence.map { " in sequence '\($0)'" } ?? " in the directory, rgbd-frames/ or seq-NN/"),
                           file: directory.path, hint: "point at a 7-Scenes / 3DMatch sequence directory")
        }
        let depthFiles = DatasetFiles.numbered(in: framesDir, prefix: "frame-", suffix: ".depth.png")
        let numbers = depthFiles.keys.sorted()
        let names = Set(Files.list(framesDir))
        var digits: [String] = [], exts: [String] = []
        for n in numbers {
            let d = String((depthFiles[n] ?? "").dropFirst("frame-".count).dropLast(".depth.png".count))
            digits.append(d)
            exts.append(names.contains("frame-\(d).color.png") || !names.contains("frame-\(d).color.jpg") ? "png" : "jpg")
        }
        guard let firstDigits = digits.first else {
            throw MapError(.missingFile, "no frame-NNNNNN.depth.png files found", file: framesDir.path,
                           hint: "point at a 7-Scenes / 3DMatch sequence directory")
        }
        let first = framesDir.appendingPathComponent("frame-\(firstDigits).depth.png")
        let size = try DatasetFiles.pngSize(first, frame: 0, what: "depth image")
        let k: Intrinsics, source: String
        if let override {
            try override.validate(source: "intrinsics override")
            try DatasetFiles.checkSize(override, against: size, file: first.path, what: "the intrinsics override")
            (k, source) = (override, "override")
        } else if let url = [framesDir, framesDir.deletingLastPathComponent()]
            .map({ $0.appendingPathComponent(intrinsicsFile) }).first(where: { Files.exists($0) }) {
            (k, source) = (try DatasetFiles.intrinsicsMatrix(url, size: size), url.path)
        } else {
            try DatasetFiles.checkSize(Self.defaultIntrinsics, against: size, file: first.path,
                                       what: "\(intrinsicsFile) is absent and the 7-Scenes default intrinsics")
            (k, source) = (Self.defaultIntrinsics, "7-Scenes default")
        }
        self.framesDirectory = framesDir
        self.frameNumbers = numbers
        self.digits = digits
        self.colorExtensions = exts
        self.depthModel = depthModel
        self.intrinsicsSource = source
        let name = framesDir == directory ? directory.lastPathComponent
            : directory.lastPathComponent + "/" + framesDir.lastPathComponent
        info = SequenceInfo(format: format, name: name, root: directory, frameCount: numbers.count, intrinsics: k,
                            depthUnitsPerMetre: depthModel.unitsPerMetre, frameRate: 30)
    }

    /// The directory with frame-*.depth.png files: `dir`, `dir/rgbd-frames`, or a `dir/seq-NN`.
    static func framesDirectory(in dir: URL, sequence: String?) -> URL? {
        func hasFrames(_ u: URL) -> Bool {
            !DatasetFiles.numbered(in: u, prefix: "frame-", suffix: ".depth.png").isEmpty
        }
        if let sequence {
            let u = dir.appendingPathComponent(sequence)
            return hasFrames(u) ? u : nil
        }
        if hasFrames(dir) { return dir }
        let rgbd = dir.appendingPathComponent("rgbd-frames")
        if hasFrames(rgbd) { return rgbd }
        for name in Files.list(dir) where name.hasPrefix("seq-") {
            let u = dir.appendingPathComponent(name)
            if hasFrames(u) { return u }
        }
        return nil
    }

    func url(_ i: Int, _ kind: String) -> URL {
        framesDirectory.appendingPathComponent("frame-\(digits[i]).\(kind)")
    }

    public func files(at i: Int) -> String {
        guard i >= 0 && i < frameNumbers.count else { return framesDirectory.path }
        return framesDirectory.appendingPathComponent("frame-\(digits[i]).*").path
    }

    public func frame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeFrame(at: i) }
    }

    func decodeFrame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        let raw = try ImageFiles.readGray16(url(i, "depth.png"), frame: i, what: "depth image")
        let rgb = try ImageFiles.readColor(url(i, "color." + colorExtensions[i]), frame: i, jpeg: JPEGCodec())
        let pose = try DatasetText.pose4x4(url(i, "pose.txt"), frame: i)
        return Frame(index: i, timestamp: Double(frameNumbers[i]) / 30, rgb: DatasetFiles.colorAtDepthSize(rgb, raw.size),
                     depth: depthModel.metres(raw), T_W_C: pose, intrinsics: info.intrinsics)
    }
}

/// Reader of label-fusion's exported frames (`labels/` with class ids, `masks/` with one object mask): the
/// 7-Scenes file naming with `camera-intrinsics.color.txt`, packed depth (metres = (value >> 3) / 10000) and
///
///     frame-NNNNNN.segm.png   uint8 class ids, 0 = background      -> GT semantic = id, instance = id
///     frame-NNNNNN.mask.png   uint8 0/255 one object                -> GT semantic = instance = 1 where 255
///
/// label-fusion's class ids carry no names here: the vocabulary is generic (class k -> "class_k", thing) and built
/// by the converter from the ids present; for mask frames it is the single class 1 "object".
public struct LabelFusionReader: GroundTruthProviding {
    public enum Labels: Sendable, Equatable { case segmentation, objectMask, none }

    public let base: SevenScenesReader
    public let labels: Labels
    public var info: SequenceInfo { base.info }
    public var frameNumbers: [Int] { base.frameNumbers }
    public var hasGroundTruth: Bool { labels != .none }
    public var groundTruthVocabulary: Vocabulary? {
        labels == .objectMask ? GroundTruthVocabularies.generic(classIDs: [1], names: [1: "object"]) : nil
    }

    public init(directory: URL, intrinsics override: Intrinsics? = nil) throws {
        base = try SevenScenesReader(directory: directory, intrinsics: override, depthModel: .shiftedBy3TenthMillimetres,
                                     intrinsicsFile: "camera-intrinsics.color.txt", format: "labelfusion")
        let names = Files.list(base.framesDirectory)
        if names.contains(where: { $0.hasSuffix(".segm.png") }) {
            labels = .segmentation
        } else if names.contains(where: { $0.hasSuffix(".mask.png") }) {
            labels = .objectMask
        } else {
            labels = .none
        }
    }

    public func files(at i: Int) -> String { base.files(at: i) }
    public func frame(at i: Int) throws -> Frame { try base.frame(at: i) }

    public func groundTruth(at i: Int) throws -> GroundTruthLabels? {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeGroundTruth(at: i) }
    }

    func decodeGroundTruth(at i: Int) throws -> GroundTruthLabels? {
        let size = try DatasetFiles.pngSize(base.url(i, "depth.png"), frame: i, what: "depth image")
        let semantic: Gray16Image
        switch labels {
        case .none: return nil
        case .segmentation:
            let segm = try ImageFiles.readGray8(base.url(i, "segm.png"), frame: i, what: "segmentation image")
            semantic = Gray16Image(width: segm.width, height: segm.height, channels: 1, data: segm.data.map { UInt16($0) })
        case .objectMask:
            let mask = try ImageFiles.readGray8(base.url(i, "mask.png"), frame: i, what: "object mask")
            semantic = Gray16Image(width: mask.width, height: mask.height, channels: 1,
                                   data: mask.data.map { $0 >= 128 ? 1 : 0 })
        }
        let s = semantic.resizedNearest(width: size.width, height: size.height)
        return GroundTruthLabels(semantic: s, instance: s)
    }
}
