import IO
import XCTest

final class ChecksumTests: XCTestCase {
    /// Check values of the CRC-32/ISO-HDLC catalogue entry and of zlib.
    func testKnownValues() {
        XCTAssertEqual(Checksum.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(Checksum.crc32([UInt8]()), 0)
        XCTAssertEqual(Checksum.crc32(Array("The quick brown fox jumps over the lazy dog".utf8)), 0x414F_A339)
        XCTAssertEqual(Checksum.hex(0x0000_00AB), "000000ab")
    }

    func testUpdateContinues() {
        let a = Array("hello, ".utf8), b = Array("world".utf8)
        XCTAssertEqual(Checksum.update(Checksum.crc32(a), b), Checksum.crc32(a + b))
    }

    func testDetectsSingleBitFlips() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let c = Checksum.crc32(data)
        for i in stride(from: 0, to: data.count, by: 97) {
            var d = data
            d[i] ^= 0x10
            XCTAssertNotEqual(Checksum.crc32(d), c, "flip at \(i)")
        }
    }
}

extension ChecksumTests {
    func testArrayAndGenericPathsAgree() {
        let data = (0..<4099).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        XCTAssertEqual(Checksum.crc32(data), Checksum.crc32(data[...]))
        XCTAssertEqual(Checksum.crc32(Array("123456789".utf8)), 0xCBF4_3926)
    }
}
