import Foundation
import MapCore

/// File access with typed errors. Files that other processes read are written under a temporary name in the same
/// directory and renamed into place, so a reader sees the old file or the new one, never a partial one.
public enum Files {
    public static func read(_ url: URL, frame: Int? = nil, what: String = "file") throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw MapError(.missingFile, "\(what) does not exist", file: url.path, frame: frame,
                           hint: "check the sequence directory, or rerun with --skip-bad-frames")
        }
        do { return [UInt8](try Data(contentsOf: url)) } catch {
            throw MapError(.ioFailure, "cannot read \(what): \(error.localizedDescription)", file: url.path, frame: frame,
                           hint: "check permissions and the disk")
        }
    }

    public static func readText(_ url: URL, frame: Int? = nil, what: String = "file") throws -> String {
        let bytes = try read(url, frame: frame, what: what)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `bytes` to `url` atomically (temporary file in the same directory, then rename).
    public static func writeAtomically(_ bytes: some Collection<UInt8>, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try createDirectory(dir)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try Data(bytes).write(to: tmp)
            if rename(tmp.path, url.path) != 0 {
                throw MapError(.ioFailure, "rename into place failed (errno \(errno))", file: url.path,
                               hint: "check permissions and free space")
            }
        } catch let e as MapError {
            try? FileManager.default.removeItem(at: tmp)
            throw e
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw MapError(.ioFailure, "cannot write: \(error.localizedDescription)", file: url.path,
                           hint: "check permissions and free space")
        }
    }

    public static func writeAtomically(_ text: String, to url: URL) throws {
        try writeAtomically(Array(text.utf8), to: url)
    }

    public static func createDirectory(_ url: URL) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw MapError(.ioFailure, "cannot create directory: \(error.localizedDescription)", file: url.path,
                           hint: "check permissions and free space")
        }
    }

    public static func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    /// Names of the entries of a directory (not recursive), sorted; empty when it does not exist.
    public static func list(_ url: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }
}

/// Image files by kind, dispatching on the file's magic bytes (not its extension).
public enum ImageFiles {
    public enum Kind: Sendable { case jpeg, png }

    public static func kind(of bytes: [UInt8]) -> Kind? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, bytes[0] == 0x89, bytes[1] == 0x50, bytes[2] == 0x4E, bytes[3] == 0x47 { return .png }
        return nil
    }

    /// Decodes a colour image (JPEG or PNG) from memory.
    public static func decodeColor(_ bytes: [UInt8], source: String, jpeg: JPEGCodec) throws -> RGBImage {
        switch kind(of: bytes) {
        case .jpeg: return try jpeg.decode(bytes, source: source)
        case .png: return try PNGCodec.decodeRGB8(bytes, source: source)
        case nil:
            throw MapError(bytes.isEmpty ? .truncatedFile : .corruptFile,
                           bytes.isEmpty ? "colour image is empty" : "colour image is neither JPEG nor PNG",
                           file: source, hint: "re-export the image as JPEG or PNG")
        }
    }

    public static func readColor(_ url: URL, frame: Int? = nil, jpeg: JPEGCodec) throws -> RGBImage {
        do { return try decodeColor(try Files.read(url, frame: frame, what: "colour image"), source: url.path, jpeg: jpeg) }
        catch let e as MapError { throw e.at(frame: frame) }
    }

    /// Reads a single-channel 16-bit PNG (depth in sensor units, id images).
    public static func readGray16(_ url: URL, frame: Int? = nil, what: String = "16-bit image") throws -> Gray16Image {
        do { return try PNGCodec.decodeGray16(try Files.read(url, frame: frame, what: what), source: url.path) }
        catch let e as MapError { throw e.at(frame: frame) }
    }

    public static func readGray8(_ url: URL, frame: Int? = nil, what: String = "8-bit image") throws -> Image<UInt8> {
        do { return try PNGCodec.decodeGray8(try Files.read(url, frame: frame, what: what), source: url.path) }
        catch let e as MapError { throw e.at(frame: frame) }
    }

    /// Converts raw depth units to metres (`unitsPerMetre`, e.g. 1000 for millimetres); 0 stays invalid.
    public static func depthMetres(_ raw: Gray16Image, unitsPerMetre: Double) -> DepthImage {
        // An IEEE division (not a multiplication by the reciprocal) so that e.g. 1234 mm becomes the Float nearest
        // to 1.234 m whenever the scale is a Float exactly (1000, 5000, 6553.5 are).
        let s = Float(unitsPerMetre), n = raw.data.count
        let data = [Float](unsafeUninitializedCapacity: n) { out, initialized in
            raw.data.withUnsafeBufferPointer { src in
                for i in 0..<n { out[i] = Float(src[i]) / s }
            }
            initialized = n
        }
        return DepthImage(width: raw.width, height: raw.height, channels: 1, data: data)
    }

    /// Converts metres to raw 16-bit units, rounding; invalid (0, negative, NaN) and out-of-range values become 0.
    public static func depthRaw(_ depth: DepthImage, unitsPerMetre: Double) -> Gray16Image {
        let s = unitsPerMetre
        return Gray16Image(width: depth.width, height: depth.height, channels: 1, data: depth.data.map { d in
            let v = (Double(d) * s).rounded()
            return v.isFinite && v > 0 && v <= 65535 ? UInt16(v) : 0
        })
    }
}
