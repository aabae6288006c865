import Foundation
import MapCore

/// Turns one frame's ground-truth (semantic, instance) images into the masks of our format. Arguments: semantic ids
/// (of `vocabulary`, 0 = unlabelled), instance ids (0 = none), the frame's index in the *source* sequence, and the
/// vocabulary. The clean default is `GroundTruthMasks.shuffled(seed:)`; the CLI can inject a noisy one.
public typealias MaskMaker = @Sendable (_ semantic: Gray16Image, _ instance: Gray16Image, _ frameIndex: Int,
                                        _ vocabulary: Vocabulary) throws -> FrameMasks

/// Vocabularies for ground truth whose class ids carry no names.
public enum GroundTruthVocabularies {
    /// Class k -> "class_k" (or `names[k]`), all things.
    public static func generic(classIDs: some Sequence<Int>, names: [Int: String] = [:]) -> Vocabulary {
        Vocabulary(classes: Set(classIDs).filter { $0 > 0 && $0 <= Int(UInt16.max) }.sorted().map {
            SemanticClass(id: $0, name: names[$0] ?? "class_\($0)", isThing: true, color: Vocabulary.paletteColor($0))
        })
    }
}

/// Clean ground-truth masks with per-frame shuffled ids.
public enum GroundTruthMasks {
    /// A `MaskMaker` that draws each frame's ids from `SeededRNG(seed:).fork(frameIndex)`.
    public static func shuffled(seed: UInt64) -> MaskMaker {
        { semantic, instance, frameIndex, vocabulary in
            try masks(semantic: semantic, instance: instance, frameIndex: frameIndex, vocabulary: vocabulary, seed: seed)
        }
    }

    /// One segment per thing instance (class = the majority thing class of its pixels; thing pixels with instance 0
    /// get no segment) and one per stuff class present; pixels of classes not in `vocabulary` get none. Segment ids
    /// are distinct random numbers in 1...max(255, 4 n), different in every frame, so they say nothing across frames.
    public static func masks(semantic: Gray16Image, instance: Gray16Image, frameIndex: Int, vocabulary: Vocabulary,
                             seed: UInt64) throws -> FrameMasks {
        let gt = try segmentation(semantic: semantic, instance: instance, frameIndex: frameIndex, vocabulary: vocabulary)
        let upper = min(Int(UInt16.max), max(255, 4 * gt.segments.count))
        var rng = SeededRNG(seed: seed).fork(UInt64(truncatingIfNeeded: frameIndex))
        var used = Set<Int>(), idOf = [Int](repeating: 0, count: gt.segments.count + 1), segments: [MaskSegment] = []
        for s in gt.segments {
            var id = 0
            repeat { id = Int(rng.next() % UInt64(upper)) + 1 } while used.contains(id)
            used.insert(id)
            idOf[s.id] = id
            segments.append(MaskSegment(id: id, classID: s.classID, score: 1))
        }
        let ids = Gray16Image(width: semantic.width, height: semantic.height, channels: 1,
                              data: gt.ids.data.map { UInt16(idOf[Int($0)]) })
        return FrameMasks(ids: ids, segments: segments.sorted { $0.id < $1.id })
    }

    /// Ground truth as panoptic segments of one frame: `ids` holds segment ids 1...n (0 = none) and `segments` says
    /// what each is. Segments are numbered in a fixed order (stuff classes by id, then instances by id).
    public struct Segmentation: Sendable, Equatable {
        public struct Segment: Sendable, Equatable {
            public var id: Int
            public var classID: Int
            /// Dataset instance id; 0 for stuff.
            public var instance: Int
            public var isThing: Bool
        }
        public var ids: Gray16Image
        public var segments: [Segment]
    }

    public static func segmentation(semantic: Gray16Image, instance: Gray16Image, frameIndex: Int,
                                    vocabulary: Vocabulary) throws -> Segmentation {
        guard semantic.size == instance.size, semantic.channels == 1, instance.channels == 1 else {
            throw MapError(.sizeMismatch, "semantic image is \(semantic.size)x\(semantic.channels), instance image is "
                           + "\(instance.size)x\(instance.channels)", frame: frameIndex,
                           hint: "ground-truth label and instance images must have the same size")
        }
        var isThing = [Int: Bool]()
        for c in vocabulary.classes { isThing[c.id] = c.isThing }
        // Keys: stuff class c -> -c, thing instance k -> k.
        var keyOf = [Int](repeating: 0, count: semantic.data.count)
        var thingVotes: [Int: [Int: Int]] = [:]
        for p in 0..<semantic.data.count {
            let c = Int(semantic.data[p])
            guard c != 0, let thing = isThing[c] else { continue }
            if !thing {
                keyOf[p] = -c
            } else if instance.data[p] != 0 {
                let k = Int(instance.data[p])
                keyOf[p] = k
                thingVotes[k, default: [:]][c, default: 0] += 1
            }
        }
        let keys = Set(keyOf).subtracting([0]).sorted { ($0 < 0 ? -$0 : 1 << 20 + $0) < ($1 < 0 ? -$1 : 1 << 20 + $1) }
        guard keys.count <= Int(UInt16.max) else {
            throw MapError(.badMask, "\(keys.count) segments do not fit 16-bit mask ids", frame: frameIndex)
        }
        var idOf = [Int: Int](), segments: [Segmentation.Segment] = []
        for key in keys {
            let cls: Int
            if key < 0 {
                cls = -key
            } else {
                // Majority class; ties go to the smaller id (deterministic).
                cls = (thingVotes[key] ?? [:]).max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }?.key ?? 0
            }
            idOf[key] = segments.count + 1
            segments.append(.init(id: segments.count + 1, classID: cls, instance: max(0, key), isThing: key > 0))
        }
        let ids = Gray16Image(width: semantic.width, height: semantic.height, channels: 1,
                              data: keyOf.map { $0 == 0 ? 0 : UInt16(idOf[$0] ?? 0) })
        return Segmentation(ids: ids, segments: segments)
    }
}

/// Copies any `SequenceReader` into our own sequence format.
public enum SequenceConverter {
    public struct Options: Sendable {
        /// Source frame indices to take (default: all), then every `stride`-th of them.
        public var frames: Range<Int>?
        public var stride: Int
        /// Sequence name (default: the source's).
        public var name: String?
        /// "png" (lossless) or "jpg".
        public var rgbFormat: String
        /// Depth units per metre to write (default: the source's, which keeps depth exact).
        public var depthScale: Double?
        /// Write masks from the source's ground truth (or its masks, for pano sources).
        public var masks: Bool
        /// Seed of the default mask maker's id shuffling.
        public var seed: UInt64
        /// Replaces the clean shuffled masks (e.g. Synthetic's noise model).
        public var maskMaker: MaskMaker?

        public init(frames: Range<Int>? = nil, stride: Int = 1, name: String? = nil, rgbFormat: String = "png",
                    depthScale: Double? = nil, masks: Bool = true, seed: UInt64 = 0, maskMaker: MaskMaker? = nil) {
            self.frames = frames; self.stride = stride; self.name = name; self.rgbFormat = rgbFormat
            self.depthScale = depthScale; self.masks = masks; self.seed = seed; self.maskMaker = maskMaker
        }
    }

    public struct Report: Sendable, Equatable {
        /// Source index of each written frame (written frame i = source frame sourceIndices[i]).
        public var sourceIndices: [Int]
        public var vocabulary: Vocabulary?
        public var wroteMasks: Bool
        /// Ground-truth class ids that are not in the vocabulary (their pixels got no segment).
        public var unknownClassIDs: [Int]
    }

    /// Converts `reader` into a new sequence directory `output`. `progress(done, total)` is called after each frame.
    @discardableResult
    public static func convert(_ reader: any SequenceReader, to output: URL, options: Options = Options(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> Report {
        let n = reader.info.frameCount
        let range = options.frames ?? 0..<n
        guard range.lowerBound >= 0, range.upperBound <= n, !range.isEmpty else {
            throw MapError(.badArgument, "frame range \(range.lowerBound)..<\(range.upperBound) is empty or outside 0..<\(n)",
                           file: reader.info.root.path, hint: "choose frames inside the sequence")
        }
        guard options.stride >= 1 else {
            throw MapError(.badArgument, "stride \(options.stride) must be at least 1", hint: "use --stride 1 or more")
        }
        let indices = Array(Swift.stride(from: range.lowerBound, to: range.upperBound, by: options.stride))
        let scale = options.depthScale ?? reader.info.depthUnitsPerMetre
        guard scale.isFinite, scale > 0 else {
            throw MapError(.badArgument, "depth scale \(scale) must be positive", hint: "give units per metre, e.g. 1000")
        }

        // Where masks come from: the reader's ground truth, or the frames' own masks (pano sources).
        let gtReader = (reader as? any GroundTruthProviding).flatMap { $0.hasGroundTruth ? $0 : nil }
        var vocabulary: Vocabulary?
        if options.masks, let gtReader {
            if let v = gtReader.groundTruthVocabulary {
                vocabulary = v
            } else {
                var present = Set<Int>()
                for i in indices {
                    guard let gt = try gtReader.groundTruth(at: i) else { continue }
                    for v in Set(gt.semantic.data) where v != 0 { present.insert(Int(v)) }
                }
                vocabulary = GroundTruthVocabularies.generic(classIDs: present)
            }
        } else if options.masks, reader.info.hasMasks {
            vocabulary = reader.info.vocabulary
        }
        let maker = options.maskMaker ?? GroundTruthMasks.shuffled(seed: options.seed)

        let writer = try SequenceWriter(directory: output, name: options.name ?? reader.info.name,
                                        intrinsics: reader.info.intrinsics, depthScale: scale,
                                        frameRate: reader.info.frameRate, rgbFormat: options.rgbFormat,
                                        vocabulary: vocabulary)
        var unknown = Set<Int>()
        var wroteMasks = false
        for (out, i) in indices.enumerated() {
            var frame = try reader.frame(at: i)
            frame.index = out
            if !options.masks {
                frame.masks = nil
            } else if let gtReader, let vocabulary {
                if let gt = try gtReader.groundTruth(at: i) {
                    guard gt.semantic.size == frame.depth.size, gt.instance.size == frame.depth.size else {
                        throw MapError(.sizeMismatch, "ground truth is \(gt.semantic.size)/\(gt.instance.size) but depth is \(frame.depth.size)",
                                       file: reader.files(at: i), frame: i, hint: "ground truth must have the depth resolution")
                    }
                    for v in Set(gt.semantic.data) where v != 0 && !vocabulary.contains(id: Int(v)) { unknown.insert(Int(v)) }
                    do { frame.masks = try maker(gt.semantic, gt.instance, i, vocabulary) } catch let e as MapError {
                        throw e.at(frame: i, file: reader.files(at: i))
                    }
                }
            }
            if frame.masks != nil { wroteMasks = true }
            do { try writer.write(frame) } catch let e as MapError { throw e.at(frame: out, file: output.path) }
            progress?(out + 1, indices.count)
        }
        try writer.finish()
        return Report(sourceIndices: indices, vocabulary: vocabulary, wroteMasks: wroteMasks,
                      unknownClassIDs: unknown.sorted())
    }
}
