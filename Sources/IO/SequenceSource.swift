import Foundation
import MapCore

/// Facts about a sequence that hold for all its frames.
public struct SequenceInfo: Sendable, Equatable {
    /// Short name of the on-disk layout ("pano", "scannet", "replica", "tum", "7scenes", "redwood", ...).
    public var format: String
    public var name: String
    public var root: URL
    public var frameCount: Int
    /// Intrinsics of the frames as delivered (colour already resized to the depth resolution where needed).
    public var intrinsics: Intrinsics
    /// Raw depth units per metre in the files (1000 = millimetres), for information.
    public var depthUnitsPerMetre: Double
    public var frameRate: Double?
    public var vocabulary: Vocabulary?
    public var hasMasks: Bool

    public init(format: String, name: String, root: URL, frameCount: Int, intrinsics: Intrinsics,
                depthUnitsPerMetre: Double, frameRate: Double? = nil, vocabulary: Vocabulary? = nil,
                hasMasks: Bool = false) {
        self.format = format; self.name = name; self.root = root; self.frameCount = frameCount
        self.intrinsics = intrinsics; self.depthUnitsPerMetre = depthUnitsPerMetre; self.frameRate = frameRate
        self.vocabulary = vocabulary; self.hasMasks = hasMasks
    }
}

/// A random-access sequence of posed RGB-D frames on disk. Every reader maps its layout onto the same `Frame`.
/// `frame(at:)` decodes but does not validate; callers run `FrameValidator` (the frontend does).
public protocol SequenceReader: Sendable {
    var info: SequenceInfo { get }
    /// Decodes frame `index` (0-based position in the sequence).
    func frame(at index: Int) throws -> Frame
    /// The files frame `index` is read from, for messages.
    func files(at index: Int) -> String
}

/// Parses whitespace-separated numbers; the error names the file and line.
public enum NumberText {
    public static func numbers(_ line: Substring, file: String, line number: Int) throws -> [Double] {
        var out: [Double] = []
        for token in line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," || $0 == "\r" }) {
            guard let v = Double(token) else {
                throw MapError(.badFormat, "line \(number): '\(token)' is not a number", file: file,
                               hint: "fix or regenerate the file")
            }
            out.append(v)
        }
        return out
    }

    /// All numbers of a text file, in order (for matrices stored as text).
    public static func allNumbers(_ text: String, file: String) throws -> [Double] {
        var out: [Double] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            out += try numbers(line, file: file, line: i + 1)
        }
        return out
    }

    /// A 4x4 row-major matrix file (7-Scenes, ScanNet, label-fusion poses) as a rigid transform.
    public static func pose4x4(_ url: URL, frame: Int?) throws -> RigidTransform {
        let values = try allNumbers(try Files.readText(url, frame: frame, what: "pose file"), file: url.path)
        guard values.count == 16 else {
            throw MapError(.badPose, "pose file has \(values.count) numbers, expected 16 (4x4 row-major)", file: url.path,
                           frame: frame, hint: "fix or regenerate the pose file")
        }
        return RigidTransform(rowMajor: values)
    }
}
