import Foundation
import MapCore

/// `pano bench io`: frames/s of the ingest path (JPEG colour + 16-bit PNG depth → decoded, converted to metres and
/// validated `Frame`) against the bare codecs decoding the same bytes into preallocated buffers, in the same run,
/// on one thread.
public enum IOBenchmark {
    public struct Result: Sendable {
        public var source: String
        public var size: ImageSize
        public var jpegBytes: Int
        public var pngBytes: Int
        public var rawFramesPerSecond: Double
        public var ingestFramesPerSecond: Double
        public var ratio: Double { ingestFramesPerSecond / rawFramesPerSecond }
    }

    /// A 640x480 test frame: the first frame of `realFrameDirectory` (7-Scenes layout) when given, else a
    /// generated textured frame. Returns JPEG colour bytes, PNG depth bytes, intrinsics, and what it used.
    static func testFrame(realFrameDirectory: URL?) throws -> ([UInt8], [UInt8], Intrinsics, String) {
        let codec = JPEGCodec()
        let k = Intrinsics(fx: 585, fy: 585, cx: 320, cy: 240, width: 640, height: 480)
        if let dir = realFrameDirectory {
            let names = Files.list(dir)
            if let c = names.first(where: { $0.hasSuffix(".color.png") }) {
                let base = String(c.dropLast(".color.png".count))
                let rgb = try ImageFiles.readColor(dir.appendingPathComponent(c), jpeg: codec)
                let depth = try Files.read(dir.appendingPathComponent(base + ".depth.png"))
                if rgb.size == k.size {
                    return (try codec.encode(rgb, quality: 95), depth, k, "\(dir.lastPathComponent)/\(base) (real Kinect frame)")
                }
            }
        }
        var rng = SeededRNG(seed: 7)
        var rgb = RGBImage(width: 640, height: 480, channels: 3, repeating: 0)
        var raw = Gray16Image(width: 640, height: 480, repeating: 0)
        for y in 0..<480 {
            for x in 0..<640 {
                let n = UInt8(truncatingIfNeeded: rng.next() & 0x1F)
                rgb[x, y, 0] = UInt8((x / 3) & 0xFF) &+ n
                rgb[x, y, 1] = UInt8((y / 2) & 0xFF) &+ n
                rgb[x, y, 2] = UInt8(((x ^ y) / 4) & 0xFF)
                raw[x, y] = UInt16(800 + (x * 3 + y * 2) % 3000) + UInt16(n)
            }
        }
        return (try codec.encode(rgb, quality: 95), try PNGCodec.encodeGray16(raw), k, "generated 640x480 frame")
    }

    public static func run(seconds: Double = 2, realFrameDirectory: URL?) throws -> Result {
        let (jpeg, png, k, source) = try testFrame(realFrameDirectory: realFrameDirectory)
        let codec = JPEGCodec()
        let size = try codec.size(of: jpeg, source: "bench.jpg")
        var rgbBuffer = [UInt8](repeating: 0, count: size.width * size.height * 3)
        var depthBuffer = [UInt16](repeating: 0, count: size.width * size.height)

        func measure(_ body: () throws -> Void) rethrows -> Double {
            try body() // warm-up
            var n = 0
            let start = DispatchTime.now().uptimeNanoseconds
            var elapsed = 0.0
            repeat {
                try body(); n += 1
                elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            } while elapsed < seconds
            return Double(n) / elapsed
        }
        let raw = try measure {
            try rgbBuffer.withUnsafeMutableBufferPointer { try codec.decode(jpeg, size: size, into: $0, source: "bench.jpg") }
            try depthBuffer.withUnsafeMutableBufferPointer { try PNGCodec.decodeGray16(png, into: $0, source: "bench.png") }
        }
        let validator = FrameValidator(vocabulary: nil)
        let ingest = try measure {
            let rgb = try ImageFiles.decodeColor(jpeg, source: "bench.jpg", jpeg: codec)
            let depth = ImageFiles.depthMetres(try PNGCodec.decodeGray16(png, source: "bench.png"), unitsPerMetre: 1000)
            let frame = Frame(index: 0, rgb: rgb, depth: depth, T_W_C: .identity, intrinsics: k)
            try validator.validate(frame)
        }
        return Result(source: source, size: size, jpegBytes: jpeg.count, pngBytes: png.count,
                      rawFramesPerSecond: raw, ingestFramesPerSecond: ingest)
    }
}
