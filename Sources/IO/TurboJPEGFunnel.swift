import CTurboJPEG
import MapCore

/// Every TurboJPEG call of the project lives in this file; C return codes become `MapError`s here.
///
/// A `JPEGCodec` owns one compressor and one decompressor handle and reuses them across calls, so it is a
/// reference type that must stay on one thread at a time (each frontend worker owns its own).
public final class JPEGCodec {
    private var decompressor: tjhandle?
    private var compressor: tjhandle?

    public init() {}

    deinit {
        if let decompressor { tjDestroy(decompressor) }
        if let compressor { tjDestroy(compressor) }
    }

    private func message(_ handle: tjhandle?) -> String {
        guard let c = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
        return String(cString: c)
    }

    private func error(_ handle: tjhandle?, source: String, action: String) -> MapError {
        let text = message(handle)
        let truncated = text.contains("Premature end") || text.contains("premature end")
        return MapError(truncated ? .truncatedFile : .corruptFile, "JPEG \(action) failed: \(text)", file: source,
                        hint: truncated ? "the file is cut short; re-copy or re-export it" : "the file is not a valid JPEG; re-export it")
    }

    /// Reads width and height without decoding.
    public func size(of bytes: [UInt8], source: String) throws -> ImageSize {
        let handle = try decompressHandle(source: source)
        var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        let rc = bytes.withUnsafeBufferPointer { buf in
            tjDecompressHeader3(handle, buf.baseAddress, UInt(buf.count), &w, &h, &subsamp, &colorspace)
        }
        guard rc == 0, w > 0, h > 0 else { throw error(handle, source: source, action: "header read") }
        return ImageSize(width: Int(w), height: Int(h))
    }

    /// Decodes a baseline/progressive JPEG to 8-bit RGB. Warnings (e.g. a truncated file) are errors here:
    /// a partially decoded frame must not enter the map.
    public func decode(_ bytes: [UInt8], source: String) throws -> RGBImage {
        let size = try self.size(of: bytes, source: source)
        var out = [UInt8](repeating: 0, count: size.width * size.height * 3)
        try out.withUnsafeMutableBufferPointer { dst in try decode(bytes, size: size, into: dst, source: source) }
        return RGBImage(width: size.width, height: size.height, channels: 3, data: out)
    }

    /// Decodes into a caller-owned buffer of `size.width * size.height * 3` bytes (`size` from `size(of:)`).
    public func decode(_ bytes: [UInt8], size: ImageSize, into dst: UnsafeMutableBufferPointer<UInt8>,
                       source: String) throws {
        precondition(dst.count >= size.width * size.height * 3, "JPEG decode buffer too small")
        let handle = try decompressHandle(source: source)
        let rc = bytes.withUnsafeBufferPointer { src in
            tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, Int32(size.width),
                          Int32(size.width * 3), Int32(size.height), Int32(TJPF_RGB.rawValue),
                          TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT)
        }
        guard rc == 0 else { throw error(handle, source: source, action: "decode") }
    }

    /// Encodes 8-bit RGB with 4:4:4 chroma (no colour bleeding at label boundaries) at `quality` 1...100.
    public func encode(_ image: RGBImage, quality: Int = 95, source: String = "<memory>") throws -> [UInt8] {
        guard image.channels == 3, image.width > 0, image.height > 0 else {
            throw MapError(.badArgument, "JPEG encode needs a non-empty RGB image, got \(image.size)x\(image.channels)",
                           file: source)
        }
        guard (1...100).contains(quality) else {
            throw MapError(.badArgument, "JPEG quality \(quality) is outside 1...100", file: source)
        }
        if compressor == nil { compressor = tjInitCompress() }
        guard let handle = compressor else {
            throw MapError(.ioFailure, "TurboJPEG compressor could not be created: \(message(nil))", file: source)
        }
        var jpegBuf: UnsafeMutablePointer<UInt8>?
        var jpegSize: UInt = 0
        let rc = image.data.withUnsafeBufferPointer { src in
            tjCompress2(handle, src.baseAddress, Int32(image.width), Int32(image.width * 3), Int32(image.height),
                        Int32(TJPF_RGB.rawValue), &jpegBuf, &jpegSize, Int32(TJSAMP_444.rawValue), Int32(quality),
                        TJFLAG_ACCURATEDCT)
        }
        defer { if let jpegBuf { tjFree(jpegBuf) } }
        guard rc == 0, let jpegBuf else { throw error(handle, source: source, action: "encode") }
        return Array(UnsafeBufferPointer(start: jpegBuf, count: Int(jpegSize)))
    }

    private func decompressHandle(source: String) throws -> tjhandle {
        if decompressor == nil { decompressor = tjInitDecompress() }
        guard let decompressor else {
            throw MapError(.ioFailure, "TurboJPEG decompressor could not be created: \(message(nil))", file: source)
        }
        return decompressor
    }
}
