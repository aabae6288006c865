import Foundation
import MapCore

/// The on-disk layouts `SequenceFormats.open` knows.
public enum DatasetLayout: String, Sendable, CaseIterable, CustomStringConvertible {
    case pano
    case scannet
    case replica
    case tum
    case sevenScenes = "7scenes"
    case labelFusion = "labelfusion"
    case redwood

    /// What detection looks for, for messages and `--help`.
    public var signature: String {
        switch self {
        case .pano: return "pano: sequence.json"
        case .scannet: return "scannet: color/, depth/, pose/ and intrinsic/ directories"
        case .replica: return "replica (NICE-SLAM): results/ directory and traj.txt"
        case .tum: return "tum: rgb.txt, depth.txt and groundtruth.txt"
        case .sevenScenes: return "7scenes / 3DMatch: frame-NNNNNN.depth.png in the directory, rgbd-frames/ or seq-NN/"
        case .labelFusion: return "labelfusion: frame-NNNNNN.depth.png with camera-intrinsics.color.txt or .segm.png / .mask.png"
        case .redwood: return "redwood / Open3D: color/, depth/ and trajectory.log in the directory or RGBD/"
        }
    }

    public var description: String { rawValue }

    /// The layout named `name` (its raw value or a common alias, case-insensitive), or nil.
    public init?(name: String) {
        let n = name.lowercased().replacingOccurrences(of: "_", with: "-")
        switch n {
        case "pano", "pano-sequence", "own": self = .pano
        case "scannet": self = .scannet
        case "replica", "nice-slam", "niceslam": self = .replica
        case "tum", "tum-rgbd": self = .tum
        case "7scenes", "7-scenes", "sevenscenes", "3dmatch": self = .sevenScenes
        case "labelfusion", "label-fusion": self = .labelFusion
        case "redwood", "open3d": self = .redwood
        default: return nil
        }
    }
}

/// Opens any supported sequence directory as a `SequenceReader`.
public enum SequenceFormats {
    public struct Options: Sendable, Equatable {
        /// Skips detection when set.
        public var layout: DatasetLayout?
        /// Replaces the intrinsics of the files or the layout's default (not allowed for `pano`, whose manifest
        /// carries them).
        public var intrinsics: Intrinsics?

        public init(layout: DatasetLayout? = nil, intrinsics: Intrinsics? = nil) {
            self.layout = layout; self.intrinsics = intrinsics
        }
    }

    /// The layout of `url`, or nil when none matches. Checked in an order where more specific signatures come first.
    public static func detect(_ url: URL) -> DatasetLayout? {
        func has(_ name: String) -> Bool { Files.exists(url.appendingPathComponent(name)) }
        func dir(_ name: String) -> Bool { DatasetFiles.isDirectory(url.appendingPathComponent(name)) }
        if has("sequence.json") { return .pano }
        if dir("color") && dir("depth") && dir("pose") && dir("intrinsic") { return .scannet }
        if dir("results") && has("traj.txt") { return .replica }
        if has("rgb.txt") && has("depth.txt") && has("groundtruth.txt") { return .tum }
        if RedwoodReader.framesDirectory(in: url) != nil { return .redwood }
        if let frames = SevenScenesReader.framesDirectory(in: url, sequence: nil) {
            let names = Files.list(frames)
            let labelFusion = names.contains("camera-intrinsics.color.txt")
                || names.contains { $0.hasSuffix(".segm.png") || $0.hasSuffix(".mask.png") }
            return labelFusion ? .labelFusion : .sevenScenes
        }
        return nil
    }

    /// `open` with the layout given by name (nil = detect), for command lines; an unknown name is a `.badArgument`
    /// error listing the known ones.
    public static func open(_ url: URL, format: String?, intrinsics: Intrinsics? = nil) throws -> any SequenceReader {
        var layout: DatasetLayout?
        if let format {
            guard let l = DatasetLayout(name: format) else {
                throw MapError(.badArgument, "unknown format '\(format)'",
                               hint: "use one of: " + DatasetLayout.allCases.map(\.rawValue).joined(separator: ", "))
            }
            layout = l
        }
        return try open(url, options: Options(layout: layout, intrinsics: intrinsics))
    }

    public static func open(_ url: URL, options: Options = Options()) throws -> any SequenceReader {
        guard DatasetFiles.isDirectory(url) else {
            throw MapError(Files.exists(url) ? .badArgument : .missingFile,
                           Files.exists(url) ? "not a directory" : "sequence directory does not exist", file: url.path,
                           hint: "give the directory of a sequence")
        }
        guard let layout = options.layout ?? detect(url) else {
            let known = DatasetLayout.allCases.map { "  " + $0.signature }.joined(separator: "\n")
            throw MapError(.unsupported, "no known sequence layout found; looked for:\n\(known)", file: url.path,
                           hint: "point at a sequence directory, or name the layout explicitly (--format)")
        }
        let k = options.intrinsics
        switch layout {
        case .pano:
            if k != nil {
                throw MapError(.badArgument, "an intrinsics override is not supported for pano sequences", file: url.path,
                               hint: "edit sequence.json instead")
            }
            return try PanoSequenceReader(directory: url)
        case .scannet: return try ScanNetReader(directory: url, intrinsics: k)
        case .replica: return try ReplicaReader(directory: url, intrinsics: k)
        case .tum: return try TUMReader(directory: url, intrinsics: k)
        case .sevenScenes: return try SevenScenesReader(directory: url, intrinsics: k)
        case .labelFusion: return try LabelFusionReader(directory: url, intrinsics: k)
        case .redwood: return try RedwoodReader(directory: url, intrinsics: k)
        }
    }
}
