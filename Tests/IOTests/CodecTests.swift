import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class CodecTests: XCTestCase {
    func gradientImage(_ w: Int, _ h: Int) -> RGBImage {
        var data = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                data[(y * w + x) * 3] = UInt8((x * 255) / max(1, w - 1))
                data[(y * w + x) * 3 + 1] = UInt8((y * 255) / max(1, h - 1))
                data[(y * w + x) * 3 + 2] = UInt8(((x + y) * 7) & 0xFF)
            }
        }
        return RGBImage(width: w, height: h, channels: 3, data: data)
    }

    func testPNGRoundTripRGB8IsExact() throws {
        let img = gradientImage(37, 21)
        let bytes = try PNGCodec.encodeRGB8(img)
        XCTAssertEqual(try PNGCodec.decodeRGB8(bytes, source: "mem"), img)
        let info = try PNGCodec.info(bytes, source: "mem")
        XCTAssertEqual(info, PNGCodec.Info(width: 37, height: 21, is16Bit: false, hasColor: true, hasAlpha: false))
    }

    func testPNGRoundTripGray16IsExactOverFullRange() throws {
        let values: [UInt16] = (0..<(64 * 33)).map { UInt16(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        let img = Gray16Image(width: 64, height: 33, channels: 1, data: values)
        let bytes = try PNGCodec.encodeGray16(img)
        XCTAssertEqual(try PNGCodec.decodeGray16(bytes, source: "mem"), img)
        XCTAssertTrue(try PNGCodec.info(bytes, source: "mem").is16Bit)
    }

    func testPNGRoundTripGray8() throws {
        let img = Image<UInt8>(width: 5, height: 4, channels: 1, data: (0..<20).map { UInt8($0 * 13) })
        XCTAssertEqual(try PNGCodec.decodeGray8(try PNGCodec.encodeGray8(img), source: "mem"), img)
        // 8-bit files widen to 16-bit without scaling.
        XCTAssertEqual(try PNGCodec.decodeGray16(try PNGCodec.encodeGray8(img), source: "mem").data, img.data.map { UInt16($0) })
    }

    /// Ground truth from an independent PNG writer: 16-bit values must come back bit-exact (no gamma conversion).
    func testDecodesIndependentlyWrittenPNGs() throws {
        let samples16 = [0, 1, 255, 256, 1000, 4095, 32768, 65535, 12345, 54321, 7, 60000]
        let png16 = ReferencePNG.encode(width: 4, height: 3, colorType: 0, bitDepth: 16, samples: samples16)
        XCTAssertEqual(try PNGCodec.decodeGray16(png16, source: "ref").data.map(Int.init), samples16)
        let rgb = (0..<(3 * 2 * 3)).map { ($0 * 37) % 256 }
        let png8 = ReferencePNG.encode(width: 3, height: 2, colorType: 2, bitDepth: 8, samples: rgb)
        XCTAssertEqual(try PNGCodec.decodeRGB8(png8, source: "ref").data.map(Int.init), rgb)
    }

    func testJPEGRoundTripIsClose() throws {
        let img = gradientImage(64, 48)
        let codec = JPEGCodec()
        let bytes = try codec.encode(img, quality: 95)
        XCTAssertEqual(ImageFiles.kind(of: bytes), .jpeg)
        let back = try codec.decode(bytes, source: "mem")
        XCTAssertEqual(back.size, img.size)
        let meanAbs = zip(back.data, img.data).map { abs(Int($0) - Int($1)) }.reduce(0, +) / img.data.count
        XCTAssertLessThanOrEqual(meanAbs, 2, "quality-95 JPEG should be within a couple of levels on a smooth image")
        XCTAssertEqual(try codec.size(of: bytes, source: "mem"), ImageSize(width: 64, height: 48))
    }

    func testTruncatedAndCorruptJPEGGiveTypedErrors() throws {
        let codec = JPEGCodec()
        let bytes = try codec.encode(gradientImage(64, 48), quality: 90)
        let truncated = Array(bytes[0..<(bytes.count / 2)])
        XCTAssertThrowsError(try codec.decode(truncated, source: "half.jpg")) { e in
            let m = e as? MapError
            XCTAssertEqual(m?.kind, .truncatedFile, "\(e)")
            XCTAssertEqual(m?.file, "half.jpg")
        }
        var corrupt = bytes
        for i in 2..<min(200, corrupt.count) { corrupt[i] = 0x5A }
        XCTAssertThrowsError(try codec.decode(corrupt, source: "bad.jpg")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .corruptFile, "\(e)")
        }
        XCTAssertThrowsError(try codec.decode([], source: "empty.jpg")) { e in XCTAssertTrue(e is MapError) }
    }

    func testTruncatedAndCorruptPNGGiveTypedErrors() throws {
        let bytes = try PNGCodec.encodeGray16(Gray16Image(width: 40, height: 30, channels: 1,
                                                          data: (0..<1200).map { UInt16($0 * 50) }))
        for cut in [bytes.count - 20, bytes.count / 2, 40, 7] {
            XCTAssertThrowsError(try PNGCodec.decodeGray16(Array(bytes[0..<cut]), source: "cut.png"), "cut \(cut)") { e in
                let m = e as? MapError
                XCTAssertNotNil(m, "\(e)")
                XCTAssertEqual(m?.file, "cut.png")
                XCTAssertTrue(m?.kind == .truncatedFile || m?.kind == .corruptFile, "\(e)")
            }
        }
        var corrupt = bytes
        corrupt[bytes.count / 2] ^= 0xFF // breaks the IDAT CRC / zlib stream
        XCTAssertThrowsError(try PNGCodec.decodeGray16(corrupt, source: "bad.png")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .corruptFile, "\(e)")
        }
        XCTAssertThrowsError(try PNGCodec.decodeRGB8(Array("not a png at all".utf8), source: "text.png")) { e in
            XCTAssertTrue(e is MapError)
        }
    }

    func testWrongKindOfPNGIsRefused() throws {
        let rgb = try PNGCodec.encodeRGB8(gradientImage(4, 4))
        XCTAssertThrowsError(try PNGCodec.decodeGray16(rgb, source: "colour-as-depth.png")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
        }
        let g16 = try PNGCodec.encodeGray16(Gray16Image(width: 2, height: 2, channels: 1, data: [1, 2, 3, 4]))
        XCTAssertThrowsError(try PNGCodec.decodeGray8(g16, source: "deep.png")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
        }
    }

    func testRealSensorFilesDecode() throws {
        guard let dir = SharedData.folder("3dmatch-sample/rgbd-frames") else {
            throw XCTSkip("shared data 3dmatch-sample not found at \(SharedData.root().path)")
        }
        let depth = try ImageFiles.readGray16(dir.appendingPathComponent("frame-000008.depth.png"))
        XCTAssertEqual(depth.size, ImageSize(width: 640, height: 480))
        let metres = ImageFiles.depthMetres(depth, unitsPerMetre: 1000).data.filter { $0 > 0 }.sorted()
        XCTAssertGreaterThan(metres.count, 640 * 480 / 2)
        let median = metres[metres.count / 2]
        XCTAssertTrue((0.3...6).contains(median), "median depth \(median) m")
        let colour = try ImageFiles.readColor(dir.appendingPathComponent("frame-000008.color.png"), jpeg: JPEGCodec())
        XCTAssertEqual(colour.size, depth.size)
        guard let redwood = SharedData.folder("redwood-5/RGBD/color") else { throw XCTSkip("redwood-5 not found") }
        let jpg = try ImageFiles.readColor(redwood.appendingPathComponent("00000.jpg"), jpeg: JPEGCodec())
        XCTAssertEqual(jpg.size, ImageSize(width: 640, height: 480))
    }

    func testMissingFileNamesPathAndFrame() {
        XCTAssertThrowsError(try ImageFiles.readGray16(URL(fileURLWithPath: "/nonexistent/d.png"), frame: 7)) { e in
            let m = e as? MapError
            XCTAssertEqual(m?.kind, .missingFile)
            XCTAssertEqual(m?.frame, 7)
            XCTAssertEqual(m?.file, "/nonexistent/d.png")
        }
    }

    func testDepthConversionRoundTrip() {
        let raw = Gray16Image(width: 3, height: 1, channels: 1, data: [0, 1234, 65535])
        let m = ImageFiles.depthMetres(raw, unitsPerMetre: 1000)
        XCTAssertEqual(m.data, [0, 1.234, 65.535])
        XCTAssertEqual(ImageFiles.depthRaw(m, unitsPerMetre: 1000), raw)
        let invalid = DepthImage(width: 3, height: 1, channels: 1, data: [.nan, -1, 100])
        XCTAssertEqual(ImageFiles.depthRaw(invalid, unitsPerMetre: 1000).data, [0, 0, 0])
    }
}
