import Foundation
import MapCore
#if canImport(Glibc)
import Glibc
#endif

// Capture files: the raw packets of a camera session, recorded so a run can be replayed exactly (`pano` with a
// capture instead of a live camera decodes the same frames the camera would have given).
//
// Byte layout (version 1). All integers are little-endian, unsigned; offsets in bytes.
//
//   offset      size  field
//   0           8     magic: "PANOCAP" followed by one zero byte (50 41 4E 4F 43 41 50 00)
//   8           4     format version (UInt32), 1 for this layout
//   12          4     metadata length M in bytes (UInt32, at most 16 MiB)
//   16          M     metadata: UTF-8 JSON object, see `CaptureMetadata` (format "pano-capture", version, camera,
//                     USB ids, the device calibration as an embedded pano-calibration object, frame rate, note)
//   16 + M      ...   records, back to back until the end of the file, each:
//                       1   endpoint (UInt8, e.g. 0x81 colour, 0x82 depth on a Kinect v1)
//                       8   host time in nanoseconds since the capture started (UInt64)
//                       4   packet length L (UInt32, at most 16 MiB)
//                       L   the packet's bytes exactly as received (iso header included)
//
// There is no record count and no trailer: a capture is valid up to its last complete record, so a file cut short
// (the recording process died, the disk filled) is still readable. A reader that meets an incomplete last record
// stops there and reports it (`CaptureReader.truncatedTail`). A version change means the layout above changed;
// readers refuse versions they do not know rather than guess. New metadata keys may be added within a version
// (readers ignore keys they do not know).
//
// While recording, the file is `<name>.partial`; `CaptureWriter.finish()` renames it to its final name, so a
// capture under its final name is always complete.

/// Everything a replay needs besides the packets: which camera, its calibration, the nominal frame rate, a note.
/// Stored as the JSON block of a capture file (keys in snake_case; USB ids as 4-digit hex strings as `lsusb` prints
/// them; the calibration as a complete pano-calibration object, see `DeviceCalibration.jsonData()`).
public struct CaptureMetadata: Sendable, Equatable, Codable {
    /// The `format` value of every capture's metadata.
    public static let formatName = "pano-capture"

    /// Always `formatName`.
    public var format: String
    /// The capture format version (equal to the binary header's version).
    public var version: Int
    /// Human-readable camera model, e.g. "Microsoft Kinect v1".
    public var cameraModel: String
    /// USB vendor id of the recording device (JSON: "vendor_id", 4 hex digits).
    public var vendorID: UInt16
    /// USB product id of the recording device (JSON: "product_id", 4 hex digits).
    public var productID: UInt16
    /// The calibration of the device that recorded the capture (decoding needs it).
    public var calibration: DeviceCalibration
    /// Nominal frames per second of the recording.
    public var frameRate: Double
    /// Free-form text (where, what, who).
    public var note: String

    /// Metadata of the current format and version.
    public init(cameraModel: String, vendorID: UInt16, productID: UInt16, calibration: DeviceCalibration,
                frameRate: Double, note: String = "", version: Int = CaptureFormat.currentVersion) {
        self.format = Self.formatName; self.version = version; self.cameraModel = cameraModel
        self.vendorID = vendorID; self.productID = productID; self.calibration = calibration
        self.frameRate = frameRate; self.note = note
    }

    enum CodingKeys: String, CodingKey {
        case format, version, note, calibration
        case cameraModel = "camera_model", vendorID = "vendor_id", productID = "product_id"
        case frameRate = "frame_rate_hz"
    }

    /// Encodes the documented JSON (the calibration as a nested pano-calibration object).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(version, forKey: .version)
        try c.encode(cameraModel, forKey: .cameraModel)
        try c.encode(hexID(vendorID), forKey: .vendorID)
        try c.encode(hexID(productID), forKey: .productID)
        try c.encode(frameRate, forKey: .frameRate)
        try c.encode(note, forKey: .note)
        // The calibration keeps its own schema: its JSON is embedded as a nested object.
        let tree = try JSONDecoder().decode(CaptureJSON.self, from: try calibration.jsonData())
        try c.encode(tree, forKey: .calibration)
    }

    /// Decodes the documented JSON; the nested calibration is validated by `DeviceCalibration.decode` (its errors
    /// are `MapError`s). Prefer `CaptureMetadata.decode(_:source:)`, which also checks format and version.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(String.self, forKey: .format)
        version = try c.decode(Int.self, forKey: .version)
        cameraModel = try c.decode(String.self, forKey: .cameraModel)
        vendorID = try Self.decodeID(c, .vendorID)
        productID = try Self.decodeID(c, .productID)
        frameRate = try c.decode(Double.self, forKey: .frameRate)
        note = try c.decodeIfPresent(String.self, forKey: .note) ?? ""
        let tree = try c.decode(CaptureJSON.self, forKey: .calibration)
        let data = try JSONEncoder().encode(tree)
        calibration = try DeviceCalibration.decode(data, source: "capture metadata")
    }

    private static func decodeID(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> UInt16 {
        let s = try c.decode(String.self, forKey: key)
        guard s.count == 4, let v = UInt16(s, radix: 16) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c,
                                                   debugDescription: "'\(s)' is not 4 hexadecimal digits")
        }
        return v
    }

    /// The metadata as the JSON block of a capture (pretty-printed, keys sorted).
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// Parses and checks a capture's JSON block; every problem is a `MapError(.badFormat)` naming `source`.
    public static func decode(_ data: Data, source: String) throws -> CaptureMetadata {
        let m: CaptureMetadata
        do { m = try JSONDecoder().decode(CaptureMetadata.self, from: data) } catch let e as MapError {
            throw MapError(.badFormat, "the capture's calibration is invalid: \(e.message)", file: source,
                           hint: e.hint ?? "re-record with a valid calibration")
        } catch {
            throw MapError(.badFormat, "the capture's metadata is not valid: \(Self.describe(error))", file: source,
                           hint: "the file is damaged or was not written by pano; re-record it")
        }
        guard m.format == formatName else {
            throw MapError(.badFormat, "metadata format is '\(m.format)', expected '\(formatName)'", file: source,
                           hint: "this is not a pano capture")
        }
        guard m.version == CaptureFormat.currentVersion else {
            throw MapError(.badFormat, "metadata version is \(m.version); this build reads version "
                           + "\(CaptureFormat.currentVersion)", file: source,
                           hint: m.version > CaptureFormat.currentVersion ? "update pano" : "re-record the capture")
        }
        guard m.frameRate.isFinite, m.frameRate > 0 else {
            throw MapError(.badFormat, "frame rate \(m.frameRate) Hz is not positive", file: source,
                           hint: "the metadata is damaged; re-record the capture")
        }
        return m
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "key '\(key.stringValue)' is missing"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx),
             DecodingError.dataCorrupted(let ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? ctx.debugDescription : "'\(path)': \(ctx.debugDescription)"
        default: return "\(error)"
        }
    }
}

private func hexID(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 4 - s.count) + s
}

/// A JSON value that encodes back as it was decoded, to embed the calibration's own JSON in the metadata.
private enum CaptureJSON: Codable {
    case null, bool(Bool), number(Double), string(String), array([CaptureJSON]), object([String: CaptureJSON])

    init(from decoder: Decoder) throws {
        if var a = try? decoder.unkeyedContainer() {
            var items: [CaptureJSON] = []
            while !a.isAtEnd { items.append(try a.decode(CaptureJSON.self)) }
            self = .array(items); return
        }
        if let o = try? decoder.container(keyedBy: AnyKey.self) {
            var dict: [String: CaptureJSON] = [:]
            for k in o.allKeys { dict[k.stringValue] = try o.decode(CaptureJSON.self, forKey: k) }
            self = .object(dict); return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else { self = .string(try c.decode(String.self)) }
    }

    func encode(to encoder: Encoder) throws {
        switch self {
        case .null: var c = encoder.singleValueContainer(); try c.encodeNil()
        case .bool(let b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .number(let d): var c = encoder.singleValueContainer(); try c.encode(d)
        case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
        case .array(let items):
            var c = encoder.unkeyedContainer()
            for v in items { try c.encode(v) }
        case .object(let dict):
            var c = encoder.container(keyedBy: AnyKey.self)
            for (k, v) in dict { try c.encode(v, forKey: AnyKey(k)) }
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// Constants of the capture file layout (see the top of CaptureFile.swift).
public enum CaptureFormat {
    /// "PANOCAP\0".
    public static let magic: [UInt8] = [0x50, 0x41, 0x4E, 0x4F, 0x43, 0x41, 0x50, 0x00]
    /// The version this build writes and reads.
    public static let currentVersion = 1
    /// Magic, version, metadata length.
    public static let headerBytes = 16
    /// Endpoint, host time, length.
    public static let recordHeaderBytes = 13
    /// Upper bound on the metadata block and on one packet; larger values mean a damaged file.
    public static let maxBlockBytes = 16 << 20
    /// Suffix of a capture being recorded.
    public static let partialSuffix = ".partial"

    /// The name a capture has while it is being recorded: `<url>.partial`.
    public static func partialURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + partialSuffix)
    }

    /// The header and metadata block of a capture.
    static func header(_ metadata: CaptureMetadata) throws -> [UInt8] {
        let json = [UInt8](try metadata.jsonData())
        var out = magic
        appendLE(&out, UInt32(currentVersion))
        appendLE(&out, UInt32(json.count))
        out += json
        return out
    }
}

@inline(__always) private func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    var x = v.littleEndian
    withUnsafeBytes(of: &x) { out.append(contentsOf: $0) }
}

@inline(__always) private func readLE<T: FixedWidthInteger>(_ p: UnsafeRawBufferPointer, _ offset: Int) -> T {
    var v: T = 0
    withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: p[offset..<offset + MemoryLayout<T>.size])) }
    return T(littleEndian: v)
}

// MARK: - Writer

/// Records packets into a capture file. The file is `<url>.partial` until `finish()` renames it to `url`, so other
/// processes never see a half-written capture under its final name; if the recording process dies, the .partial file
/// holds every record flushed so far and reads like a capture cut short. Records are buffered and written to the
/// file whenever `flushBytes` accumulate or `flushInterval` passed since the last write, and on `flush()`.
/// An existing file of either name is replaced.
public final class CaptureWriter {
    /// The capture's final name.
    public let url: URL
    /// Where the capture is written while recording (`<url>.partial`).
    public let partialURL: URL
    /// The metadata written at the start of the capture.
    public let metadata: CaptureMetadata
    /// Buffered bytes that trigger a write.
    public var flushBytes: Int
    /// Seconds after which buffered records are written even if fewer than `flushBytes` accumulated.
    public var flushInterval: Double
    /// Records appended so far.
    public private(set) var recordCount = 0
    /// Bytes of the capture so far, header included.
    public private(set) var byteCount = 0
    /// True once `finish()` succeeded.
    public private(set) var isFinished = false

    private var fd: Int32
    private var buffer: [UInt8] = []
    private var lastFlush: UInt64

    /// Creates `<url>.partial` and writes the header and metadata. Throws `MapError(.ioFailure)` if the file cannot
    /// be created.
    public init(url: URL, metadata: CaptureMetadata, flushBytes: Int = 256 << 10, flushInterval: Double = 0.25) throws {
        self.url = url
        self.partialURL = CaptureFormat.partialURL(for: url)
        self.metadata = metadata
        self.flushBytes = flushBytes
        self.flushInterval = flushInterval
        guard metadata.format == CaptureMetadata.formatName, metadata.version == CaptureFormat.currentVersion else {
            throw MapError(.badArgument, "metadata says format '\(metadata.format)' version \(metadata.version); this "
                           + "build writes '\(CaptureMetadata.formatName)' version \(CaptureFormat.currentVersion)",
                           file: url.path, hint: "create the metadata with CaptureMetadata.init")
        }
        let header: [UInt8]
        do { header = try CaptureFormat.header(metadata) } catch {
            throw MapError(.badArgument, "cannot encode the capture metadata (\(error))", file: url.path,
                           hint: "check the calibration values (they must be finite)")
        }
        let dir = url.deletingLastPathComponent()
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw MapError(.ioFailure, "cannot create the capture's directory (\(error.localizedDescription))",
                           file: dir.path, hint: "check permissions and free space")
        }
        fd = open(partialURL.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw MapError(.ioFailure, "cannot create the capture file (errno \(errno): \(String(cString: strerror(errno))))",
                           file: partialURL.path, hint: "check permissions and free space")
        }
        lastFlush = DispatchTime.now().uptimeNanoseconds
        buffer.reserveCapacity(flushBytes + 4096)
        buffer += header
        byteCount = header.count
        try flush()
    }

    deinit {
        // Not finished: keep what was recorded under the .partial name.
        if fd >= 0 {
            try? flush()
            Glibc.close(fd)
        }
    }

    /// Appends packets as records (in the given order). Throws `MapError(.ioFailure)` when writing fails, or
    /// `.badArgument` after `finish()`.
    public func append(_ packets: [CapturedPacket]) throws {
        guard fd >= 0 else {
            throw MapError(.badArgument, "append after finish()", file: url.path, hint: "start a new CaptureWriter")
        }
        for p in packets {
            guard p.bytes.count <= CaptureFormat.maxBlockBytes else {
                throw MapError(.badArgument, "packet of \(p.bytes.count) bytes exceeds the capture format's limit of "
                               + "\(CaptureFormat.maxBlockBytes)", file: url.path, hint: "this is not an iso packet")
            }
            buffer.append(p.endpoint)
            appendLE(&buffer, p.hostNanoseconds)
            appendLE(&buffer, UInt32(p.bytes.count))
            buffer += p.bytes
            recordCount += 1
            byteCount += CaptureFormat.recordHeaderBytes + p.bytes.count
        }
        if buffer.count >= flushBytes
            || Double(DispatchTime.now().uptimeNanoseconds &- lastFlush) * 1e-9 >= flushInterval {
            try flush()
        }
    }

    /// Writes buffered records to the file (the kernel's page cache: they survive the process, not a power cut).
    public func flush() throws {
        guard fd >= 0 else { return }
        var written = 0
        let total = buffer.count
        while written < total {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + written, total - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                buffer.removeFirst(written)
                throw MapError(.ioFailure, "cannot write the capture (errno \(code): \(String(cString: strerror(code))))",
                               file: partialURL.path, hint: "check free space; the records written so far stay readable")
            }
            written += n
        }
        buffer.removeAll(keepingCapacity: true)
        lastFlush = DispatchTime.now().uptimeNanoseconds
    }

    /// Flushes, syncs to disk, closes and renames `<url>.partial` to `url`. Safe to call twice.
    public func finish() throws {
        guard !isFinished else { return }
        try flush()
        if fsync(fd) != 0 && errno != EINVAL {
            throw MapError(.ioFailure, "cannot sync the capture to disk (errno \(errno))", file: partialURL.path,
                           hint: "check the disk; the .partial file holds the recording")
        }
        Glibc.close(fd)
        fd = -1
        guard rename(partialURL.path, url.path) == 0 else {
            throw MapError(.ioFailure, "cannot rename the capture into place (errno \(errno))", file: url.path,
                           hint: "the recording is complete in \(partialURL.lastPathComponent); rename it by hand")
        }
        isFinished = true
    }
}

// MARK: - Reader

/// Replays a capture file as a `PacketSource`: packets in recorded order, in batches of up to `batchSize`, then nil.
/// A last record cut short (a recording that died) ends the stream cleanly with `truncatedTail` set; a damaged
/// header, an unknown version or bad metadata throws `MapError` naming the file when the reader is created.
/// With `paced`, packets are released no faster than their host times (a live-like replay); otherwise as fast as
/// the consumer pulls.
public final class CaptureReader: PacketSource {
    /// The file being replayed.
    public let url: URL
    /// The capture's metadata (camera, calibration, frame rate, note).
    public let metadata: CaptureMetadata
    /// The binary header's format version.
    public let formatVersion: Int
    /// Most packets returned by one `nextPackets()` call.
    public var batchSize: Int
    /// Sleep so packets come out at their recorded host times (relative to the first packet).
    public var paced: Bool
    /// Complete records returned so far.
    public private(set) var recordsRead = 0
    /// True once the reader met an incomplete last record (the capture was cut short); set when the stream ends.
    public private(set) var truncatedTail = false
    /// Bytes of the incomplete last record, if any.
    public private(set) var truncatedBytes = 0

    private var fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0          // next unread byte in `buffer`
    private var fileOffset = 0        // file offset of buffer[position]
    private var atEOF = false
    private var ended = false
    private var paceStart: (host: UInt64, wall: UInt64)?

    /// Opens `url` (the final name or a `.partial` file) and reads its header and metadata.
    public init(url: URL, paced: Bool = false, batchSize: Int = 64) throws {
        self.url = url
        self.paced = paced
        self.batchSize = max(1, batchSize)
        fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let partial = CaptureFormat.partialURL(for: url)
            let hint = FileManager.default.fileExists(atPath: partial.path)
                ? "only \(partial.lastPathComponent) exists: the recording was not finished; replay that file"
                : "check the path"
            throw MapError(code == ENOENT ? .missingFile : .ioFailure,
                           "cannot open the capture (errno \(code): \(String(cString: strerror(code))))",
                           file: url.path, hint: hint)
        }
        buffer.reserveCapacity(1 << 20)
        do {
            let source = url.path
            let head = try Self.take(CaptureFormat.headerBytes, fd: fd, buffer: &buffer, position: &position,
                                     atEOF: &atEOF, source: source)
            guard let head, head.count == CaptureFormat.headerBytes,
                  Array(head.prefix(8)) == CaptureFormat.magic else {
                throw MapError(.badFormat, "not a pano capture (the file does not start with 'PANOCAP')",
                               file: source, hint: "give a file recorded by pano (pano record)")
            }
            let version: UInt32 = head.withUnsafeBytes { readLE($0, 8) }
            guard version == UInt32(CaptureFormat.currentVersion) else {
                throw MapError(.badFormat, "capture format version \(version); this build reads version "
                               + "\(CaptureFormat.currentVersion)", file: source,
                               hint: version > UInt32(CaptureFormat.currentVersion) ? "update pano to replay it"
                                   : "the header is damaged")
            }
            formatVersion = Int(version)
            let metaLength = Int(head.withUnsafeBytes { readLE($0, 12) as UInt32 })
            guard metaLength <= CaptureFormat.maxBlockBytes else {
                throw MapError(.badFormat, "metadata block of \(metaLength) bytes (limit \(CaptureFormat.maxBlockBytes))",
                               file: source, hint: "the header is damaged; re-record the capture")
            }
            guard let meta = try Self.take(metaLength, fd: fd, buffer: &buffer, position: &position, atEOF: &atEOF,
                                           source: source) else {
                throw MapError(.truncatedFile, "the file ends inside its metadata block", file: source,
                               hint: "the recording died right at its start; re-record")
            }
            metadata = try CaptureMetadata.decode(Data(meta), source: source)
            fileOffset = CaptureFormat.headerBytes + metaLength
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Exactly `count` bytes from the file, or nil if it ends first.
    private static func take(_ count: Int, fd: Int32, buffer: inout [UInt8], position: inout Int, atEOF: inout Bool,
                             source: String) throws -> ArraySlice<UInt8>? {
        while buffer.count - position < count && !atEOF {
            try fill(fd: fd, buffer: &buffer, position: &position, atEOF: &atEOF, minimum: count, source: source)
        }
        guard buffer.count - position >= count else { return nil }
        defer { position += count }
        return buffer[position..<position + count]
    }

    /// Reads more of the file into `buffer` (dropping consumed bytes first).
    private static func fill(fd: Int32, buffer: inout [UInt8], position: inout Int, atEOF: inout Bool, minimum: Int,
                             source: String) throws {
        if position > 0 {
            buffer.removeFirst(position)
            position = 0
        }
        let chunk = max(1 << 20, minimum - buffer.count)
        let old = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        var got = 0
        while got < chunk {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + old + got, chunk - got) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                buffer.removeLast(chunk - got)
                throw MapError(.ioFailure, "cannot read the capture (errno \(code): \(String(cString: strerror(code))))",
                               file: source, hint: "check the disk")
            }
            if n == 0 { atEOF = true; break }
            got += n
        }
        buffer.removeLast(chunk - got)
    }

    /// Up to `batchSize` packets in recorded order; nil at the end of the capture (or at an incomplete last record,
    /// see `truncatedTail`). Throws `MapError(.corruptFile)` for a record with an impossible length, or
    /// `.ioFailure` when reading fails.
    public func nextPackets() throws -> [CapturedPacket]? {
        guard !ended, fd >= 0 else { return nil }
        var out: [CapturedPacket] = []
        out.reserveCapacity(batchSize)
        while out.count < batchSize {
            guard let packet = try nextRecord() else { break }
            if paced {
                let due = waitTime(for: packet)
                if due > 0 {
                    if !out.isEmpty { pending = packet; break }
                    usleep(useconds_t(min(due / 1000, 1_000_000)))
                    if waitTime(for: packet) > 0 { pending = packet; continue }
                }
            }
            out.append(packet)
            recordsRead += 1
        }
        if out.isEmpty && pending == nil {
            ended = true
            return nil
        }
        return out
    }

    /// A record read but not yet released (paced replay).
    private var pending: CapturedPacket?

    /// Nanoseconds until `packet` is due (paced replay); 0 when due.
    private func waitTime(for packet: CapturedPacket) -> UInt64 {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let start = paceStart else { paceStart = (packet.hostNanoseconds, now); return 0 }
        let offset = packet.hostNanoseconds >= start.host ? packet.hostNanoseconds - start.host : 0
        let dueAt = start.wall &+ offset
        return dueAt > now ? dueAt - now : 0
    }

    /// The next complete record; nil at the end of the file or at an incomplete last record.
    private func nextRecord() throws -> CapturedPacket? {
        if let p = pending { pending = nil; return p }
        guard !ended else { return nil }
        let recordStart = fileOffset
        let source = url.path
        guard let head = try Self.take(CaptureFormat.recordHeaderBytes, fd: fd, buffer: &buffer, position: &position,
                                       atEOF: &atEOF, source: source) else {
            noteTail()
            return nil
        }
        let (endpoint, host, length): (UInt8, UInt64, Int) = head.withUnsafeBytes { p in
            (p[0], readLE(p, 1), Int(readLE(p, 9) as UInt32))
        }
        guard length <= CaptureFormat.maxBlockBytes else {
            ended = true
            throw MapError(.corruptFile, "record \(recordsRead + 1) at byte \(recordStart) claims \(length) bytes "
                           + "(limit \(CaptureFormat.maxBlockBytes))", file: source,
                           hint: "the capture is damaged from this record on; replay stops here")
        }
        guard let body = try Self.take(length, fd: fd, buffer: &buffer, position: &position, atEOF: &atEOF,
                                       source: source) else {
            noteTail(consumed: CaptureFormat.recordHeaderBytes)
            return nil
        }
        fileOffset += CaptureFormat.recordHeaderBytes + length
        return CapturedPacket(endpoint: endpoint, hostNanoseconds: host, bytes: Array(body))
    }

    /// At the end of the data: leftover bytes (plus `consumed` bytes of it already taken) are an incomplete last
    /// record.
    private func noteTail(consumed: Int = 0) {
        let left = buffer.count - position + consumed
        if left > 0 {
            truncatedTail = true
            truncatedBytes = left
        }
        ended = true
    }

    /// Closes the file; `nextPackets()` then returns nil. Safe to call twice.
    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        ended = true
        pending = nil
    }
}

// MARK: - Recording

/// Passes packets through from another source while appending every batch to a capture (`pano` recording while it
/// maps). `close()` closes the source and finishes the capture; an error finishing is kept in `finishError`.
public final class RecordingPacketSource: PacketSource {
    /// The source being recorded.
    public let source: PacketSource
    /// The capture being written.
    public let writer: CaptureWriter
    /// Set when `close()` could not finish the capture (the .partial file then holds the recording).
    public private(set) var finishError: MapError?

    /// Records everything `source` delivers into `writer`.
    public init(source: PacketSource, writer: CaptureWriter) {
        self.source = source
        self.writer = writer
    }

    /// The source's next packets, after appending them to the capture. A failed write throws `MapError`.
    public func nextPackets() throws -> [CapturedPacket]? {
        guard let batch = try source.nextPackets() else { return nil }
        try writer.append(batch)
        return batch
    }

    /// Closes the source and finishes the capture. Safe to call twice.
    public func close() {
        source.close()
        guard !writer.isFinished else { return }
        do { try writer.finish() } catch let e as MapError { finishError = e } catch {
            finishError = MapError(.ioFailure, "\(error)", file: writer.url.path)
        }
    }
}
