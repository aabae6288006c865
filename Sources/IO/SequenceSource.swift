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
