/// One 2D segment of a frame's mask image: its per-frame id (arbitrary, not consistent across frames), its class
/// from the vocabulary and the segmenter's confidence.
public struct MaskSegment: Sendable, Equatable, Codable {
    public var id: Int
    public var classID: Int
    public var score: Double

    public init(id: Int, classID: Int, score: Double = 1) { self.id = id; self.classID = classID; self.score = score }
    enum CodingKeys: String, CodingKey { case id, classID = "class", score }
}

/// The 2D masks of one frame: an id image (0 = no segment) and, per id, a class and score.
public struct FrameMasks: Sendable, Equatable {
    public var ids: Gray16Image
    public var segments: [MaskSegment]

    public init(ids: Gray16Image, segments: [MaskSegment]) { self.ids = ids; self.segments = segments }

    public func segment(id: Int) -> MaskSegment? { segments.first { $0.id == id } }
}

/// One posed RGB-D frame as every reader produces it.
public struct Frame: Sendable, Equatable {
    /// Position in the sequence (0-based), the number used in errors and file names.
    public var index: Int
    /// Capture time in seconds, when the source has one.
    public var timestamp: Double?
    public var rgb: RGBImage
    /// Depth in metres, 0 = invalid.
    public var depth: DepthImage
    /// Camera-to-world pose (OpenCV camera: +z forward, +x right, +y down).
    public var T_W_C: RigidTransform
    public var intrinsics: Intrinsics
    public var masks: FrameMasks?

    public init(index: Int, timestamp: Double? = nil, rgb: RGBImage, depth: DepthImage, T_W_C: RigidTransform,
                intrinsics: Intrinsics, masks: FrameMasks? = nil) {
        self.index = index; self.timestamp = timestamp; self.rgb = rgb; self.depth = depth; self.T_W_C = T_W_C
        self.intrinsics = intrinsics; self.masks = masks
    }
}
