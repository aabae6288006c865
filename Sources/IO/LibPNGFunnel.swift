import CPNG
import MapCore

/// Every libpng call of the project lives in this file. It uses libpng's simplified `png_image` API, which reports
/// errors through return codes and a message (no longjmp crosses Swift frames); they become `MapError`s here.
///
/// Sample values are kept exactly: 16-bit files are read as linear 16-bit (no gamma conversion for files without a
/// gAMA chunk, which is what depth and id images are), 8-bit files as 8-bit.
public enum PNGCodec {
    /// Header facts of a PNG file.
    public struct Info: Sendable, Equatable {
        public var width: Int
        public var height: Int
        /// True for 16-bit samples.
        public var is16Bit: Bool
        public var hasColor: Bool
        public var hasAlpha: Bool

        public init(width: Int, height: Int, is16Bit: Bool, hasColor: Bool, hasAlpha: Bool) {
            self.width = width; self.height = height; self.is16Bit = is16Bit; self.hasColor = hasColor
            self.hasAlpha = hasAlpha
        }
    }

    public static func info(_ bytes: [UInt8], source: String) throws -> Info {
        var image = png_image()
        try begin(&image, bytes, source: source)
        defer { png_image_free(&image) }
        return Info(width: Int(image.width), height: Int(image.height),
                    is16Bit: image.format & PNG_FORMAT_FLAG_LINEAR != 0,
                    hasColor: image.format & PNG_FORMAT_FLAG_COLOR != 0,
                    hasAlpha: image.format & PNG_FORMAT_FLAG_ALPHA != 0)
    }

    /// Any PNG (grey, palette, RGB, with or without alpha, 8 or 16 bit) as 8-bit RGB; alpha is dropped.
    public static func decodeRGB8(_ bytes: [UInt8], source: String) throws -> RGBImage {
        var image = png_image()
        try begin(&image, bytes, source: source)
        defer { png_image_free(&image) }
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB) // 16-bit colour files hold sRGB values, not linear light
        let (w, h) = (Int(image.width), Int(image.height))
        let data: [UInt8] = try finish(&image, format: PNG_FORMAT_RGB, count: w * h * 3, source: source)
        return RGBImage(width: w, height: h, channels: 3, data: data)
    }

    /// An 8-bit single-channel PNG (class-id images, binary masks). A 16-bit file is refused: its values would not fit.
    public static func decodeGray8(_ bytes: [UInt8], source: String) throws -> Image<UInt8> {
        var image = png_image()
        try begin(&image, bytes, source: source)
        defer { png_image_free(&image) }
        guard image.format & PNG_FORMAT_FLAG_LINEAR == 0 else {
            throw MapError(.badFormat, "expected an 8-bit single-channel PNG, found 16-bit samples", file: source,
                           hint: "read this file as a 16-bit image")
        }
        let (w, h) = (Int(image.width), Int(image.height))
        let data: [UInt8] = try finish(&image, format: UInt32(PNG_FORMAT_GRAY), count: w * h, source: source)
        return Image(width: w, height: h, channels: 1, data: data)
    }

    /// A single-channel PNG as 16-bit values (depth, instance ids). 8-bit files are widened without scaling.
    public static func decodeGray16(_ bytes: [UInt8], source: String) throws -> Gray16Image {
        var image = png_image()
        try begin(&image, bytes, source: source)
        defer { png_image_free(&image) }
        try requireGrey(image, source: source)
        let (w, h) = (Int(image.width), Int(image.height))
        if image.format & PNG_FORMAT_FLAG_LINEAR == 0 {
            // 8-bit grey: read as 8-bit (reading it as 16-bit linear would apply an sRGB-to-linear curve).
            let g8: [UInt8] = try finish(&image, format: UInt32(PNG_FORMAT_GRAY), count: w * h, source: source)
            return Gray16Image(width: w, height: h, channels: 1, data: g8.map { UInt16($0) })
        }
        let data: [UInt16] = try finish(&image, format: PNG_FORMAT_LINEAR_Y, count: w * h, source: source)
        return Gray16Image(width: w, height: h, channels: 1, data: data)
    }

    /// Decodes a 16-bit single-channel PNG into a caller-owned buffer of width * height values (sizes from `info`).
    public static func decodeGray16(_ bytes: [UInt8], into dst: UnsafeMutableBufferPointer<UInt16>, source: String) throws {
        var image = png_image()
        try begin(&image, bytes, source: source)
        defer { png_image_free(&image) }
        try requireGrey(image, source: source)
        guard image.format & PNG_FORMAT_FLAG_LINEAR != 0 else {
            throw MapError(.badFormat, "expected a 16-bit single-channel PNG", file: source,
                           hint: "use decodeGray16(_:source:) for 8-bit files")
        }
        guard dst.count >= Int(image.width) * Int(image.height) else {
            throw MapError(.sizeMismatch, "PNG is \(image.width)x\(image.height), larger than the buffer given", file: source)
        }
        try finish(&image, format: PNG_FORMAT_LINEAR_Y, into: UnsafeMutableRawPointer(dst.baseAddress!), source: source)
    }

    public static func encodeRGB8(_ image: RGBImage, fast: Bool = true) throws -> [UInt8] {
        guard image.channels == 3 else {
            throw MapError(.badArgument, "PNG RGB encode needs 3 channels, got \(image.channels)")
        }
        return try encode(image.data, width: image.width, height: image.height, format: PNG_FORMAT_RGB, fast: fast)
    }

    public static func encodeGray8(_ image: Image<UInt8>, fast: Bool = true) throws -> [UInt8] {
        guard image.channels == 1 else {
            throw MapError(.badArgument, "PNG grey encode needs 1 channel, got \(image.channels)")
        }
        return try encode(image.data, width: image.width, height: image.height, format: UInt32(PNG_FORMAT_GRAY), fast: fast)
    }

    public static func encodeGray16(_ image: Gray16Image, fast: Bool = true) throws -> [UInt8] {
        guard image.channels == 1 else {
            throw MapError(.badArgument, "PNG 16-bit encode needs 1 channel, got \(image.channels)")
        }
        return try encode(image.data, width: image.width, height: image.height, format: PNG_FORMAT_LINEAR_Y, fast: fast)
    }

    // MARK: - funnel

    private static func failure(_ image: png_image, source: String, action: String) -> MapError {
        var msg = image.message
        let text = withUnsafeBytes(of: &msg) { raw -> String in
            let bytes = raw.bindMemory(to: UInt8.self)
            let n = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes[..<n], as: UTF8.self)
        }
        let lower = text.lowercased()
        let truncated = lower.contains("read beyond end") || lower.contains("truncated") || lower.contains("not enough")
            || lower.contains("unexpected end") || lower.contains("eof") || lower.contains("too short")
        return MapError(truncated ? .truncatedFile : .corruptFile, "PNG \(action) failed: \(text.isEmpty ? "unknown libpng error" : text)",
                        file: source, hint: truncated ? "the file is cut short; re-copy or re-export it" : "the file is not a valid PNG; re-export it")
    }

    private static func begin(_ image: inout png_image, _ bytes: [UInt8], source: String) throws {
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard bytes.count >= 8 else {
            throw MapError(.truncatedFile, "PNG has only \(bytes.count) bytes", file: source,
                           hint: "the file is cut short; re-copy or re-export it")
        }
        let ok = bytes.withUnsafeBytes { raw in png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) }
        guard ok != 0 else {
            let e = failure(image, source: source, action: "header read")
            png_image_free(&image)
            throw e
        }
    }

    private static func requireGrey(_ image: png_image, source: String) throws {
        guard image.format & PNG_FORMAT_FLAG_COLOR == 0 else {
            throw MapError(.badFormat, "expected a single-channel (grey) PNG, found a colour image", file: source,
                           hint: "depth and id images must be 1-channel 16-bit PNGs")
        }
    }

    /// Finishes a read begun by `begin` into a new array of `count` samples.
    private static func finish<T: FixedWidthInteger>(_ image: inout png_image, format: UInt32, count: Int,
                                                     source: String) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buf, initialized in
            if count > 0 { try finish(&image, format: format, into: UnsafeMutableRawPointer(buf.baseAddress!), source: source) }
            initialized = count
        }
    }

    private static func finish(_ image: inout png_image, format: UInt32, into dst: UnsafeMutableRawPointer,
                               source: String) throws {
        image.format = format
        let channels: Int32 = format & PNG_FORMAT_FLAG_COLOR != 0 ? 3 : 1
        // row_stride is in components (not bytes).
        let ok = png_image_finish_read(&image, nil, dst, Int32(image.width) * channels, nil)
        guard ok != 0 else { throw failure(image, source: source, action: "decode") }
        // A warning (e.g. a CRC error that libpng tolerated) leaves the pixels in doubt: refuse them.
        if image.warning_or_error & 0x03 != 0 {
            throw failure(image, source: source, action: "decode")
        }
    }

    private static func encode<T>(_ pixels: [T], width: Int, height: Int, format: UInt32, fast: Bool) throws -> [UInt8] {
        guard width > 0, height > 0 else {
            throw MapError(.badArgument, "PNG encode needs a non-empty image, got \(width)x\(height)")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = format
        image.flags = fast ? UInt32(PNG_IMAGE_FLAG_FAST) : 0
        let channels = format & PNG_FORMAT_FLAG_COLOR != 0 ? 3 : 1
        var size: Int = 0
        // First call sizes the output, second writes it.
        var ok = pixels.withUnsafeBytes { src in
            png_image_write_to_memory(&image, nil, &size, 0, src.baseAddress, Int32(width * channels), nil)
        }
        guard ok != 0, size > 0 else {
            defer { png_image_free(&image) }
            throw failure(image, source: "<memory>", action: "encode")
        }
        var out = [UInt8](repeating: 0, count: size)
        ok = pixels.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                png_image_write_to_memory(&image, dst.baseAddress, &size, 0, src.baseAddress, Int32(width * channels), nil)
            }
        }
        defer { png_image_free(&image) }
        guard ok != 0 else { throw failure(image, source: "<memory>", action: "encode") }
        return Array(out[0..<size])
    }
}
