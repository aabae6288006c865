import MapCore
import Pipeline
import XCTest

final class BlobCodingTests: XCTestCase {
    /// One of every field kind, in a fixed order (`read` below mirrors it).
    private func sample() -> [UInt8] {
        var w = BlobWriter()
        w.write(-42)
        w.write(UInt64.max)
        w.write(Float(1.5))
        w.write(-0.125 as Double)
        w.write(true)
        w.write("héllo ✓")
        w.write([Float(1), -2, 3.25])
        w.write([Int32.min, 0, Int32.max])
        w.write([Int.min, -1, Int.max])
        w.write([UInt8](0..<5))
        w.write([Double.pi])
        return w.bytes
    }

    /// Reads `sample()`'s fields; the reads happen outside XCTAssert (which would swallow the errors).
    private func read(_ bytes: [UInt8]) throws(MapError) {
        var r = BlobReader(bytes, name: "sample.bin")
        let i = try r.readInt(), u = try r.readUInt64(), f = try r.readFloat(), d = try r.readDouble()
        let b = try r.readBool(), s = try r.readString(), fs = try r.readFloats(), i32 = try r.readInt32s()
        let ints = try r.readInts(), raw = try r.readBytes(), ds = try r.readDoubles()
        try r.finish()
        XCTAssertEqual(i, -42)
        XCTAssertEqual(u, UInt64.max)
        XCTAssertEqual(f, 1.5)
        XCTAssertEqual(d, -0.125)
        XCTAssertEqual(b, true)
        XCTAssertEqual(s, "héllo ✓")
        XCTAssertEqual(fs, [1, -2, 3.25])
        XCTAssertEqual(i32, [Int32.min, 0, Int32.max])
        XCTAssertEqual(ints, [Int.min, -1, Int.max])
        XCTAssertEqual(raw, [0, 1, 2, 3, 4])
        XCTAssertEqual(ds, [Double.pi])
        XCTAssertTrue(r.isAtEnd)
    }

    func testRoundTripEveryKind() throws {
        try read(sample())
    }

    func testLittleEndianLayout() {
        var w = BlobWriter()
        w.write(0x0102_0304)
        w.write([Int32(0x0A0B_0C0D)])
        XCTAssertEqual(w.bytes, [4, 3, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A])
    }

    func testEmptyArraysAndStrings() throws {
        var w = BlobWriter()
        w.write([Float]())
        w.write([Int32]())
        w.write([Int]())
        w.write([UInt8]())
        w.write("")
        XCTAssertEqual(w.bytes.count, 5 * 8)
        var r = BlobReader(w.bytes, name: "empty.bin")
        XCTAssertEqual(try r.readFloats(), [])
        XCTAssertEqual(try r.readInt32s(), [])
        XCTAssertEqual(try r.readInts(), [])
        XCTAssertEqual(try r.readBytes(), [])
        XCTAssertEqual(try r.readString(), "")
        try r.finish()
    }

    func testSpecialFloatsAreBitExact() throws {
        let floats: [Float] = [.nan, -.nan, Float(bitPattern: 0x7FA0_0001), .infinity, -.infinity, -0.0,
                               .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        let doubles: [Double] = [.nan, Double(bitPattern: 0x7FF4_0000_0000_0001), .infinity, -.infinity, -0.0]
        var w = BlobWriter()
        w.write(floats)
        for f in floats { w.write(f) }
        w.write(doubles)
        for d in doubles { w.write(d) }
        var r = BlobReader(w.bytes, name: "floats.bin")
        XCTAssertEqual(try r.readFloats().map(\.bitPattern), floats.map(\.bitPattern))
        for f in floats { XCTAssertEqual(try r.readFloat().bitPattern, f.bitPattern) }
        XCTAssertEqual(try r.readDoubles().map(\.bitPattern), doubles.map(\.bitPattern))
        for d in doubles { XCTAssertEqual(try r.readDouble().bitPattern, d.bitPattern) }
        try r.finish()
    }

    func testLongStringAndLargeArray() throws {
        let long = String(repeating: "tokens ∑ 0123456789 ", count: 5_000)
        let big = (0..<200_000).map { Float($0) * 0.5 - 7 }
        var w = BlobWriter()
        w.write(long)
        w.write(big)
        var r = BlobReader(w.bytes, name: "long.bin")
        XCTAssertEqual(try r.readString(), long)
        XCTAssertEqual(try r.readFloats(), big)
        try r.finish()
    }

    /// Reading `sample()` cut at every length throws a .badFormat error naming the blob, and never traps.
    func testTruncationAtEveryPrefixThrows() {
        let full = sample()
        for n in 0..<full.count {
            do {
                try read(Array(full[0..<n]))
                XCTFail("prefix of \(n) bytes was accepted")
            } catch {
                XCTAssertEqual(error.kind, .badFormat)
                XCTAssertEqual(error.file, "sample.bin")
                XCTAssertTrue(error.message.contains("offset"), error.message)
            }
        }
    }

    func testTrailingBytesFailFinish() throws {
        var r = BlobReader(sample() + [0], name: "trailing.bin")
        XCTAssertNoThrow(try read(sample()))
        // Read everything the writer wrote, then finish() must see the extra byte.
        _ = try r.readInt(); _ = try r.readUInt64(); _ = try r.readFloat(); _ = try r.readDouble()
        _ = try r.readBool(); _ = try r.readString(); _ = try r.readFloats(); _ = try r.readInt32s()
        _ = try r.readInts(); _ = try r.readBytes(); _ = try r.readDoubles()
        XCTAssertFalse(r.isAtEnd)
        XCTAssertThrowsError(try r.finish()) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
            XCTAssertTrue("\(e)".contains("1 unread bytes"), "\(e)")
        }
    }

    func testAbsurdAndNegativeCountsThrow() {
        for count in [Int.max, Int(Int32.max), 9, -1, Int.min] {
            var w = BlobWriter()
            w.write(count)
            w.write(UInt64(0))  // 8 bytes follow: room for 8 UTF-8 bytes, 2 Floats, 1 Int
            let bytes = w.bytes
            XCTAssertThrowsError(try { var r = BlobReader(bytes, name: "c.bin"); _ = try r.readInts() }(), "\(count)")
            XCTAssertThrowsError(try { var r = BlobReader(bytes, name: "c.bin"); _ = try r.readFloats() }(), "\(count)")
            XCTAssertThrowsError(try { var r = BlobReader(bytes, name: "c.bin"); _ = try r.readString() }(), "\(count)")
        }
        // Exactly fitting counts are fine.
        var w = BlobWriter()
        w.write(2)
        w.write(UInt64(0))
        var r = BlobReader(w.bytes, name: "fit.bin")
        XCTAssertEqual(try r.readFloats(), [0, 0])
    }

    func testInvalidBoolAndUTF8Throw() {
        var r = BlobReader([2], name: "bool.bin")
        XCTAssertThrowsError(try r.readBool()) { XCTAssertEqual(($0 as? MapError)?.kind, .badFormat) }
        var w = BlobWriter()
        w.write([UInt8]([0x66, 0xFF, 0x66]))  // same layout as a String, invalid UTF-8
        var s = BlobReader(w.bytes, name: "utf8.bin")
        XCTAssertThrowsError(try s.readString()) { XCTAssertEqual(($0 as? MapError)?.kind, .badFormat) }
    }
}
