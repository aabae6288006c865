import Foundation
import IO
import MapCore

/// The keyframes of a session whose source cannot give them back by index (a live camera, a tracked stream whose
/// poses are the tracker's, masks that arrived through the inbox): `OUT/keyframes/NNNNNN.keyframe`, one file per
/// keyframe, written atomically when the keyframe is integrated and again when its masks arrive. Resume reads the
/// checkpoint's keyframes from here. Files of keyframes that no kept checkpoint refers to are deleted after each
/// checkpoint (`prune`), so the store stays within the keyframe budget.
///
/// File layout (`BlobWriter` values, little-endian): "pano-keyframe", version 1, index, timestamp (NaN = none), T_W_C
/// (12 doubles, row-major 3x4), intrinsics (fx fy cx cy width height), RGB bytes, depth floats (metres), has-masks,
/// then mask ids (as Int32) and segments (id, class, score) when present, and a CRC-32 of everything before it.
/// With `colourPreviews`, `NNNNNN.png` holds the keyframe's colour for an external segmenter (see `MaskInbox`).
public struct KeyframeStore: Sendable {
    public let directory: URL
    public let colourPreviews: Bool
    static let magic = "pano-keyframe"
    static let version = 1

    public init(directory: URL, colourPreviews: Bool = false) {
        self.directory = directory
        self.colourPreviews = colourPreviews
    }

    public func url(_ index: Int) -> URL { directory.appendingPathComponent(frameName(index) + ".keyframe") }
    public func previewURL(_ index: Int) -> URL { directory.appendingPathComponent(frameName(index) + ".png") }

    /// Writes (or replaces) the keyframe `frame.index`.
    public func write(_ frame: Frame) throws {
        try Files.createDirectory(directory)
        try Files.writeAtomically(Self.encode(frame), to: url(frame.index))
        if colourPreviews {
            try Files.writeAtomically(try PNGCodec.encodeRGB8(frame.rgb), to: previewURL(frame.index))
        }
    }

    /// Reads keyframe `index`; a missing, truncated or corrupt file is a `MapError` naming it.
    public func read(_ index: Int) throws -> Frame {
        let u = url(index)
        let bytes = try Files.read(u, frame: index, what: "stored keyframe")
        return try Self.decode(bytes, name: u.path, frame: index)
    }

    /// Indices of the stored keyframes.
    public func indices() -> [Int] {
        Files.list(directory).compactMap { name in
            name.hasSuffix(".keyframe") ? Int(name.dropLast(".keyframe".count)) : nil
        }.sorted()
    }

    /// Deletes the keyframes not in `keep` (and their previews).
    public func prune(keeping keep: Set<Int>) {
        for i in indices() where !keep.contains(i) {
            try? FileManager.default.removeItem(at: url(i))
            try? FileManager.default.removeItem(at: previewURL(i))
        }
    }

    static func encode(_ f: Frame) -> [UInt8] {
        var w = BlobWriter(capacity: f.rgb.data.count + 4 * f.depth.data.count + 4 * (f.masks?.ids.data.count ?? 0) + 512)
        w.write(magic)
        w.write(version)
        w.write(f.index)
        w.write(f.timestamp ?? .nan)
        w.write(Array(f.T_W_C.rowMajor4x4[0..<12]))
        let k = f.intrinsics
        w.write([k.fx, k.fy, k.cx, k.cy])
        w.write([k.width, k.height])
        w.write(f.rgb.data)
        w.write(f.depth.data)
        w.write(f.masks != nil)
        if let m = f.masks {
            w.write(m.ids.data.map { Int32($0) })
            w.write(m.segments.map(\.id))
            w.write(m.segments.map(\.classID))
            w.write(m.segments.map(\.score))
        }
        var bytes = w.bytes
        var crc = Checksum.crc32(bytes).littleEndian
        withUnsafeBytes(of: &crc) { bytes.append(contentsOf: $0) }
        return bytes
    }

    static func decode(_ bytes: [UInt8], name: String, frame: Int) throws -> Frame {
        func corrupt(_ why: String) -> MapError {
            MapError(.badFormat, "stored keyframe is corrupt (\(why))", file: name, frame: frame,
                     hint: "resume refuses it; start a new session or restore the file")
        }
        guard bytes.count >= 4 else { throw corrupt("too short") }
        let body = Array(bytes[0..<(bytes.count - 4)])
        let stored = bytes[(bytes.count - 4)...].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        guard Checksum.crc32(body) == stored else { throw corrupt("checksum mismatch") }
        var r = BlobReader(body, name: name)
        guard try r.readString() == magic else { throw corrupt("not a keyframe file") }
        guard try r.readInt() == version else { throw corrupt("unknown version") }
        let index = try r.readInt()
        let t = try r.readDouble()
        let pose = try r.readDoubles()
        let kd = try r.readDoubles(), size = try r.readInts()
        guard pose.count == 12, kd.count == 4, size.count == 2, size[0] > 0, size[1] > 0 else { throw corrupt("bad header") }
        let k = Intrinsics(fx: kd[0], fy: kd[1], cx: kd[2], cy: kd[3], width: size[0], height: size[1])
        let rgb = try r.readBytes(), depth = try r.readFloats()
        let n = k.width * k.height
        guard rgb.count == 3 * n, depth.count == n else { throw corrupt("image sizes do not match \(k.width)x\(k.height)") }
        var masks: FrameMasks?
        if try r.readBool() {
            let ids = try r.readInt32s(), segIDs = try r.readInts(), classes = try r.readInts(), scores = try r.readDoubles()
            guard ids.count == n, segIDs.count == classes.count, classes.count == scores.count,
                  ids.allSatisfy({ (0...Int32(UInt16.max)).contains($0) }) else { throw corrupt("bad masks") }
            masks = FrameMasks(ids: Gray16Image(width: k.width, height: k.height, data: ids.map { UInt16($0) }),
                               segments: segIDs.indices.map { MaskSegment(id: segIDs[$0], classID: classes[$0],
                                                                          score: scores[$0]) })
        }
        try r.finish()
        return Frame(index: index, timestamp: t.isNaN ? nil : t,
                     rgb: RGBImage(width: k.width, height: k.height, channels: 3, data: rgb),
                     depth: DepthImage(width: k.width, height: k.height, data: depth),
                     T_W_C: RigidTransform(rowMajor: pose), intrinsics: k, masks: masks)
    }
}
