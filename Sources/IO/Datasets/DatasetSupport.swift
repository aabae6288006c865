import Foundation
import MapCore

/// Ground-truth label images of one frame at the depth resolution: `semantic` holds class ids of the reader's
/// `groundTruthVocabulary` (0 = unlabelled), `instance` holds instance ids (0 = none). Instance ids are those of the
/// dataset (usually consistent across frames); converters shuffle them per frame before they become masks.
public struct GroundTruthLabels: Sendable, Equatable {
    public var semantic: Gray16Image
    public var instance: Gray16Image

    public init(semantic: Gray16Image, instance: Gray16Image) { self.semantic = semantic; self.instance = instance }
}

/// A reader whose layout carries ground-truth labels (ScanNet's label-filt / instance-filt, label-fusion's segm / mask).
public protocol GroundTruthProviding: SequenceReader {
    /// True when the files carry labels (the directories / files exist).
    var hasGroundTruth: Bool { get }
    /// The vocabulary the semantic ids refer to; nil when it is only known from the ids present (the converter then
    /// builds a generic one, `GroundTruthVocabularies.generic(classIDs:)`).
    var groundTruthVocabulary: Vocabulary? { get }
    /// Labels of frame `index` resized (nearest) to the depth resolution; nil when the layout has none.
    func groundTruth(at index: Int) throws -> GroundTruthLabels?
}

/// How raw 16-bit depth values become metres.
public enum DepthModel: Sendable, Equatable {
    /// metres = value / unitsPerMetre; `invalidValue` (if any) also means "no reading".
    case linear(unitsPerMetre: Double, invalidValue: UInt16?)
    /// label-fusion's packed depth: metres = (value >> 3) / 10000 (the low 3 bits are not depth).
    case shiftedBy3TenthMillimetres

    /// Millimetres (ScanNet, 7-Scenes, Redwood); 65535 is 7-Scenes' "no reading".
    public static let millimetres = DepthModel.linear(unitsPerMetre: 1000, invalidValue: 65535)

    /// Units per metre after decoding (for `SequenceInfo.depthUnitsPerMetre`).
    public var unitsPerMetre: Double {
        switch self {
        case .linear(let u, _): return u
        case .shiftedBy3TenthMillimetres: return 10000
        }
    }

    public func metres(_ raw: Gray16Image) -> DepthImage {
        switch self {
        case .linear(let units, let invalid):
            var d = ImageFiles.depthMetres(raw, unitsPerMetre: units)
            if let invalid {
                for i in 0..<raw.data.count where raw.data[i] == invalid { d.data[i] = 0 }
            }
            return d
        case .shiftedBy3TenthMillimetres:
            return DepthImage(width: raw.width, height: raw.height, channels: 1,
                              data: raw.data.map { Float($0 >> 3) / 10000 })
        }
    }
}

/// Numbers in text files. Lines end at any newline, including CRLF (one `Character` in Swift, so splitting on
/// "\n" alone misses it: the 3DMatch pose files are CRLF); tokens are separated by any whitespace or commas.
enum DatasetText {
    /// Lines with their 1-based numbers.
    static func lines(_ text: String) -> [(number: Int, text: Substring)] {
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).enumerated().map { ($0 + 1, $1) }
    }

    static func isBlankOrComment(_ line: Substring) -> Bool {
        let t = line.drop(while: { $0.isWhitespace })
        return t.isEmpty || t.hasPrefix("#")
    }

    static func tokens(_ line: Substring) -> [Substring] {
        line.split(whereSeparator: { $0.isWhitespace || $0 == "," })
    }

    static func numbers(_ line: Substring, file: String, line number: Int) throws -> [Double] {
        try tokens(line).map { token in
            guard let v = Double(token) else {
                throw MapError(.badFormat, "line \(number): '\(token)' is not a number", file: file,
                               hint: "fix or regenerate the file")
            }
            return v
        }
    }

    /// All numbers of a text file, skipping blank and '#' lines.
    static func allNumbers(_ text: String, file: String) throws -> [Double] {
        var out: [Double] = []
        for (n, line) in lines(text) where !isBlankOrComment(line) { out += try numbers(line, file: file, line: n) }
        return out
    }

    /// A 4x4 row-major camera-to-world pose file; non-finite entries are kept (FrameValidator refuses them).
    static func pose4x4(_ url: URL, frame: Int?) throws -> RigidTransform {
        let text = try Files.readText(url, frame: frame, what: "pose file")
        let v: [Double]
        do { v = try allNumbers(text, file: url.path) } catch let e as MapError { throw e.at(frame: frame) }
        guard v.count == 16 else {
            throw MapError(.badPose, "pose file has \(v.count) numbers, expected 16 (4x4 row-major)", file: url.path,
                           frame: frame, hint: "fix or regenerate the pose file")
        }
        return RigidTransform(rowMajor: v)
    }
}

/// Helpers shared by the dataset readers. Nothing here trusts file content: counts are checked before indexing.
enum DatasetFiles {
    /// Files of `dir` named `prefix` + decimal number + `suffix`, by number. Names whose middle is not all digits
    /// are ignored. Two names with the same number (e.g. `7.png` and `007.png`) keep the first in sorted order.
    static func numbered(in dir: URL, prefix: String, suffix: String) -> [Int: String] {
        var out: [Int: String] = [:]
        for name in Files.list(dir) where name.hasPrefix(prefix) && name.hasSuffix(suffix)
            && name.count > prefix.count + suffix.count {
            let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
            guard middle.allSatisfy({ $0.isASCII && $0.isNumber }), middle.count <= 12, let n = Int(middle) else { continue }
            if out[n] == nil { out[n] = name }
        }
        return out
    }

    static func isDirectory(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Throws the standard out-of-range error.
    static func checkIndex(_ i: Int, count: Int, root: URL) throws {
        guard i >= 0 && i < count else {
            throw MapError(.badArgument, "frame \(i) is outside 0..<\(count)", file: root.path, frame: i,
                           hint: "ask for a frame index below the sequence's frame count")
        }
    }

    /// Runs `body`, filling the frame (and the frame's files, when no file is named) into any `MapError` it throws.
    static func naming<T>(frame i: Int, files: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as MapError { throw e.at(frame: i, file: files) }
    }

    /// Size of a PNG from its header (the first depth image fixes a sequence's resolution).
    static func pngSize(_ url: URL, frame: Int? = nil, what: String) throws -> ImageSize {
        do {
            let info = try PNGCodec.info(try Files.read(url, frame: frame, what: what), source: url.path)
            return ImageSize(width: info.width, height: info.height)
        } catch let e as MapError { throw e.at(frame: frame) }
    }

    /// A rigid transform from 16 row-major numbers; the count is checked first (no precondition is reachable).
    static func pose(_ values: [Double], file: String, frame: Int?, line: Int? = nil) throws -> RigidTransform {
        guard values.count == 16 else {
            let whereText = line.map { "line \($0) has" } ?? "pose has"
            throw MapError(.badPose, "\(whereText) \(values.count) numbers, expected 16 (4x4 row-major)", file: file,
                           frame: frame, hint: "fix or regenerate the pose file")
        }
        return RigidTransform(rowMajor: values)
    }

    /// A pinhole K from a text file holding a 3x3 or 4x4 row-major matrix (7-Scenes, ScanNet, label-fusion).
    static func intrinsicsMatrix(_ url: URL, size: ImageSize) throws -> Intrinsics {
        let text = try Files.readText(url, what: "intrinsics file")
        let v: [Double]
        do { v = try DatasetText.allNumbers(text, file: url.path) } catch let e as MapError {
            var e2 = e
            e2.kind = .badCalibration
            throw e2
        }
        let fx: Double, fy: Double, cx: Double, cy: Double
        switch v.count {
        case 9: (fx, cx, fy, cy) = (v[0], v[2], v[4], v[5])
        case 16: (fx, cx, fy, cy) = (v[0], v[2], v[5], v[6])
        default:
            throw MapError(.badCalibration, "intrinsics file has \(v.count) numbers, expected 9 (3x3 K) or 16 (4x4)",
                           file: url.path, hint: "write K row by row: fx 0 cx / 0 fy cy / 0 0 1")
        }
        let k = Intrinsics(fx: fx, fy: fy, cx: cx, cy: cy, width: size.width, height: size.height)
        try k.validate(source: url.path)
        return k
    }

    /// Colour brought to the depth resolution (bilinear); unchanged when the sizes agree.
    static func colorAtDepthSize(_ rgb: RGBImage, _ size: ImageSize) -> RGBImage {
        rgb.size == size ? rgb : rgb.resizedBilinear(width: size.width, height: size.height)
    }

    /// Checks an override or default camera against the delivered image size.
    static func checkSize(_ k: Intrinsics, against size: ImageSize, file: String, what: String) throws {
        guard k.size == size else {
            throw MapError(.sizeMismatch, "\(what) are for \(k.size) but the images are \(size)", file: file,
                           hint: "pass intrinsics for \(size) images (override parameter / --intrinsics)")
        }
    }
}
