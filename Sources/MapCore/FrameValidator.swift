/// Checks a decoded frame before it enters the mapper. Every failure is a `MapError` naming the frame, the file
/// when known, and what to do.
public struct FrameValidator: Sendable {
    public struct Config: Sendable {
        /// Largest accepted deviation of R^T R from identity and of det R from 1.
        public var rigidityTolerance: Double = 1e-3
        /// Depth values above this (metres) are treated as invalid readings, not errors.
        public var maxDepthMetres: Float = 20
        public init() {}
    }

    public var config: Config
    public var vocabulary: Vocabulary?

    public init(config: Config = Config(), vocabulary: Vocabulary?) {
        self.config = config; self.vocabulary = vocabulary
    }

    /// Validates `frame`; `files` names the files it came from (for the error message).
    public func validate(_ frame: Frame, files: String? = nil) throws {
        let i = frame.index
        guard frame.T_W_C.rowMajor4x4.allSatisfy({ $0.isFinite }) else {
            throw MapError(.badPose, "pose contains NaN or infinity", file: files, frame: i,
                           hint: "fix the pose file or rerun with --skip-bad-frames")
        }
        guard frame.T_W_C.isRigid(tolerance: config.rigidityTolerance) else {
            throw MapError(.badPose, "pose rotation is not orthonormal with det +1 (det \(frame.T_W_C.rotation.determinant))",
                           file: files, frame: i, hint: "fix the pose file or rerun with --skip-bad-frames")
        }
        do { try frame.intrinsics.validate(source: files ?? "frame \(i)") } catch let e as MapError { throw e.at(frame: i) }
        guard frame.rgb.channels == 3 else {
            throw MapError(.badFormat, "colour image has \(frame.rgb.channels) channels, expected 3", file: files, frame: i,
                           hint: "store colour as 8-bit RGB")
        }
        guard frame.depth.size == frame.rgb.size else {
            throw MapError(.sizeMismatch, "depth is \(frame.depth.size) but colour is \(frame.rgb.size)", file: files,
                           frame: i, hint: "register/resize colour to the depth resolution when converting")
        }
        guard frame.intrinsics.size == frame.depth.size else {
            throw MapError(.sizeMismatch, "intrinsics are for \(frame.intrinsics.size) but images are \(frame.depth.size)",
                           file: files, frame: i, hint: "scale the intrinsics to the image size")
        }
        if let masks = frame.masks { try validate(masks, frame: i, size: frame.depth.size, files: files) }
    }

    /// Checks masks on their own: size, channel count, segment ids and classes.
    public func validate(_ masks: FrameMasks, frame i: Int, size: ImageSize, files: String?) throws {
        guard masks.ids.size == size, masks.ids.channels == 1 else {
            throw MapError(.sizeMismatch, "mask image is \(masks.ids.size) but depth is \(size)", file: files, frame: i,
                           hint: "masks must have the depth resolution")
        }
        var known = Set<Int>()
        for s in masks.segments {
            guard known.insert(s.id).inserted else {
                throw MapError(.badMask, "segment id \(s.id) is listed twice", file: files, frame: i,
                               hint: "list each mask id once in the mask JSON")
            }
            guard s.id > 0 else {
                throw MapError(.badMask, "segment id \(s.id) is not positive (0 means 'no segment')", file: files, frame: i,
                               hint: "renumber the mask ids from 1")
            }
            if let vocabulary, !vocabulary.contains(id: s.classID) {
                throw MapError(.unknownClass, "segment \(s.id) has class \(s.classID), which is not in the vocabulary",
                               file: files, frame: i, hint: "add the class to the vocabulary or fix the mask JSON")
            }
            guard s.score.isFinite else {
                throw MapError(.badMask, "segment \(s.id) has a non-finite score", file: files, frame: i,
                               hint: "write scores in [0, 1]")
            }
        }
        var present = Set<UInt16>()
        for v in masks.ids.data where v != 0 { present.insert(v) }
        for v in present where !known.contains(Int(v)) {
            throw MapError(.badMask, "mask image uses id \(v), which the mask JSON does not list", file: files, frame: i,
                           hint: "list every id of the mask image with its class")
        }
    }
}
