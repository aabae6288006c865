import Foundation
import MapCore
import TestSupport
@testable import USBCamera
import XCTest

final class CaptureFileTests: XCTestCase {
    private var dir: TempDirectory!

    override func setUpWithError() throws { dir = try TempDirectory("pano-capture-test") }
    override func tearDown() { dir.remove() }

    private func metadata(note: String = "kitchen, handheld") -> CaptureMetadata {
        KinectCaptureGenerator.metadata(calibration: .kinectV1Default, frameRate: 30, note: note)
    }

    /// Seeded packets of varied endpoints and sizes (0 bytes included), host times increasing.
    private func packets(_ count: Int, seed: UInt64) -> [CapturedPacket] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var host: UInt64 = 0
        return (0..<count).map { i in
            host += next() % 200_000
            let n = i == 3 ? 0 : Int(next() % 2000)
            return CapturedPacket(endpoint: i % 3 == 0 ? 0x81 : 0x82, hostNanoseconds: host,
                                  bytes: (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) })
        }
    }

    private func readAll(_ reader: CaptureReader) throws -> [CapturedPacket] {
        var out: [CapturedPacket] = []
        while let batch = try reader.nextPackets() {
            XCTAssertFalse(batch.isEmpty)
            XCTAssertLessThanOrEqual(batch.count, reader.batchSize)
            out += batch
        }
        XCTAssertNil(try reader.nextPackets(), "stays ended")
        return out
    }

    private func write(_ packets: [CapturedPacket], to url: URL, metadata: CaptureMetadata) throws {
        let w = try CaptureWriter(url: url, metadata: metadata)
        var i = 0
        while i < packets.count {           // uneven appends
            let end = min(packets.count, i + 1 + i % 37)
            try w.append(Array(packets[i..<end]))
            i = end
        }
        try w.finish()
    }

    func testWriteThenReadGivesIdenticalPacketsAndMetadata() throws {
        let url = dir.appending("a.panocap")
        let original = packets(700, seed: 1)
        let meta = metadata()
        try write(original, to: url, metadata: meta)
        let reader = try CaptureReader(url: url)
        XCTAssertEqual(reader.metadata, meta)
        XCTAssertEqual(reader.metadata.calibration, .kinectV1Default)
        XCTAssertEqual(reader.metadata.format, "pano-capture")
        XCTAssertEqual(reader.metadata.vendorID, 0x045E)
        XCTAssertEqual(reader.metadata.productID, 0x02AE)
        XCTAssertEqual(reader.metadata.note, "kitchen, handheld")
        XCTAssertEqual(reader.formatVersion, CaptureFormat.currentVersion)
        let back = try readAll(reader)
        XCTAssertEqual(back, original)
        XCTAssertEqual(reader.recordsRead, original.count)
        XCTAssertFalse(reader.truncatedTail)

        // The documented layout: magic, version 1, metadata length, JSON, then records.
        let bytes = [UInt8](try Data(contentsOf: url))
        XCTAssertEqual(Array(bytes[0..<8]), Array("PANOCAP".utf8) + [0])
        XCTAssertEqual(Array(bytes[8..<12]), [1, 0, 0, 0])
        let m = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16 | Int(bytes[15]) << 24
        let json = try JSONSerialization.jsonObject(with: Data(bytes[16..<16 + m])) as? [String: Any]
        XCTAssertEqual(json?["format"] as? String, "pano-capture")
        XCTAssertEqual(json?["vendor_id"] as? String, "045e")
        XCTAssertEqual((json?["calibration"] as? [String: Any])?["format"] as? String, "pano-calibration")
        let first = 16 + m
        XCTAssertEqual(bytes[first], original[0].endpoint)
        let len = Int(bytes[first + 9]) | Int(bytes[first + 10]) << 8
        XCTAssertEqual(len, original[0].bytes.count)
        XCTAssertEqual(Array(bytes[(first + 13)..<(first + 13 + len)]), original[0].bytes)
        let expectedSize = first + original.reduce(0) { $0 + 13 + $1.bytes.count }
        XCTAssertEqual(bytes.count, expectedSize)

        // Other batch sizes give the same stream.
        let small = try CaptureReader(url: url, batchSize: 5)
        XCTAssertEqual(try readAll(small), original)
    }

    func testPartialFileWhileRecordingFinalNameOnlyAfterFinish() throws {
        let url = dir.appending("b.panocap")
        let partial = CaptureFormat.partialURL(for: url)
        XCTAssertEqual(partial.lastPathComponent, "b.panocap.partial")
        let original = packets(50, seed: 2)
        let w = try CaptureWriter(url: url, metadata: metadata())
        XCTAssertTrue(FileManager.default.fileExists(atPath: partial.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        try w.append(Array(original[0..<20]))
        try w.flush()
        // A reader (another process) can read the recording so far from the .partial file.
        let early = try CaptureReader(url: partial)
        XCTAssertEqual(try readAll(early), Array(original[0..<20]))
        XCTAssertFalse(early.truncatedTail)
        // The final name does not exist yet, and opening it says so with a hint.
        XCTAssertThrowsError(try CaptureReader(url: url)) { e in
            let err = e as? MapError
            XCTAssertEqual(err?.kind, .missingFile)
            XCTAssertEqual(err?.file, url.path)
            XCTAssertTrue(err?.hint?.contains("partial") ?? false, "\(String(describing: err))")
        }
        try w.append(Array(original[20...]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        try w.finish()
        try w.finish()   // twice is fine
        XCTAssertTrue(w.isFinished)
        XCTAssertTrue(FileManager.default.fileExists(atPath: url.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial.path))
        XCTAssertEqual(try readAll(try CaptureReader(url: url)), original)
        XCTAssertThrowsError(try w.append(original)) { XCTAssertEqual(($0 as? MapError)?.kind, .badArgument) }
    }

    func testWriterDroppedWithoutFinishLeavesReadablePartial() throws {
        let url = dir.appending("c.panocap")
        let original = packets(30, seed: 3)
        do {
            let w = try CaptureWriter(url: url, metadata: metadata(), flushBytes: 1 << 30, flushInterval: 1e9)
            try w.append(original)
        }   // the writer goes away unfinished (as if the recording stopped abruptly)
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        let reader = try CaptureReader(url: CaptureFormat.partialURL(for: url))
        XCTAssertEqual(try readAll(reader), original)
    }

    func testTruncatedCaptureEndsCleanlyAfterTheCompleteRecords() throws {
        let url = dir.appending("d.panocap")
        let original = packets(40, seed: 4)
        try write(original, to: url, metadata: metadata())
        let bytes = [UInt8](try Data(contentsOf: url))
        let m = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16 | Int(bytes[15]) << 24
        // Record boundaries.
        var ends = [16 + m]
        for p in original { ends.append(ends.last! + 13 + p.bytes.count) }
        XCTAssertEqual(ends.last, bytes.count)
        let b10 = ends[10]
        let cuts = [b10 + 1, b10 + 5, b10 + 12, b10 + 13, b10 + 14, ends[11] - 1, ends[11], ends[25] + 7, bytes.count - 1,
                    ends[0], ends[0] + 3]
        for cut in cuts {
            let cutURL = dir.appending("cut-\(cut).panocap")
            try Data(bytes[0..<cut]).write(to: cutURL)
            let reader = try CaptureReader(url: cutURL, batchSize: 7)
            let complete = ends.lastIndex { $0 <= cut }!   // records wholly inside the cut
            let got = try readAll(reader)
            XCTAssertEqual(got, Array(original[0..<complete]), "cut at \(cut)")
            XCTAssertEqual(reader.recordsRead, complete, "cut at \(cut)")
            XCTAssertEqual(reader.truncatedTail, !ends.contains(cut), "cut at \(cut)")
            XCTAssertEqual(reader.truncatedBytes, cut - ends[complete], "cut at \(cut)")
        }
    }

    private func assertBadCapture(_ bytes: [UInt8], kind: MapError.Kind = .badFormat, mentions: String,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let url = dir.appending("bad-\(UUID().uuidString.prefix(6)).panocap")
        try Data(bytes).write(to: url)
        XCTAssertThrowsError(try CaptureReader(url: url), file: file, line: line) { e in
            guard let err = e as? MapError else { return XCTFail("not a MapError: \(e)", file: file, line: line) }
            XCTAssertEqual(err.kind, kind, "\(err)", file: file, line: line)
            XCTAssertEqual(err.file, url.path, file: file, line: line)
            XCTAssertNotNil(err.hint, file: file, line: line)
            XCTAssertTrue(err.description.contains(mentions), "\(err)", file: file, line: line)
        }
    }

    func testBadMagicVersionAndMetadataAreTypedErrorsNamingTheFile() throws {
        let url = dir.appending("good.panocap")
        try write(packets(5, seed: 5), to: url, metadata: metadata())
        let good = [UInt8](try Data(contentsOf: url))

        var magic = good; magic[0] = 0x89
        try assertBadCapture(magic, mentions: "PANOCAP")
        try assertBadCapture([], mentions: "PANOCAP")
        try assertBadCapture(Array("hello".utf8), mentions: "PANOCAP")

        var version = good; version[8] = 2
        try assertBadCapture(version, mentions: "version 2")
        var version0 = good; version0[8] = 0
        try assertBadCapture(version0, mentions: "version 0")

        func withMetadata(_ json: String) -> [UInt8] {
            let j = Array(json.utf8)
            return CaptureFormat.magic + [1, 0, 0, 0] + [UInt8(j.count & 0xFF), UInt8(j.count >> 8 & 0xFF), 0, 0] + j
        }
        try assertBadCapture(withMetadata("{not json"), mentions: "metadata")
        try assertBadCapture(withMetadata("{\"format\": \"pano-capture\"}"), mentions: "version")
        // A wrong format name, a future metadata version and a broken calibration, in otherwise valid metadata.
        let json = String(decoding: try metadata().jsonData(), as: UTF8.self)
        var otherFormat = metadata(); otherFormat.format = "other"
        try assertBadCapture(withMetadata(String(decoding: try otherFormat.jsonData(), as: UTF8.self)), mentions: "other")
        var future = metadata(); future.version = 9
        try assertBadCapture(withMetadata(String(decoding: try future.jsonData(), as: UTF8.self)), mentions: "version is 9")
        try assertBadCapture(withMetadata(json.replacingOccurrences(of: "\"kinect-disparity\"", with: "\"magic\"")),
                             mentions: "calibration")
        try assertBadCapture(withMetadata(json.replacingOccurrences(of: "\"045e\"", with: "\"zz\"")),
                             mentions: "vendor_id")
        // Cut inside the metadata block.
        try assertBadCapture(Array(good[0..<40]), kind: .truncatedFile, mentions: "metadata")
        // A record claiming an absurd length is corruption, not a short tail.
        let m = Int(good[12]) | Int(good[13]) << 8
        var huge = good; huge[16 + m + 9 + 3] = 0x7F
        let hugeURL = dir.appending("huge.panocap")
        try Data(huge).write(to: hugeURL)
        let reader = try CaptureReader(url: hugeURL)
        XCTAssertThrowsError(try reader.nextPackets()) { e in
            XCTAssertEqual((e as? MapError)?.kind, .corruptFile)
            XCTAssertEqual((e as? MapError)?.file, hugeURL.path)
        }
        XCTAssertNil(try reader.nextPackets(), "the replay stops at the damage")
        // The writer refuses metadata of another format or version instead of writing a file readers would refuse.
        XCTAssertThrowsError(try CaptureWriter(url: dir.appending("future.panocap"), metadata: future)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badArgument)
        }
    }

    func testRecordingPacketSourcePassesThroughAndRecords() throws {
        let url = dir.appending("rec.panocap")
        let original = packets(300, seed: 6)
        let source = ListPacketSource(original, batch: 23)
        let recording = RecordingPacketSource(source: source, writer: try CaptureWriter(url: url, metadata: metadata()))
        var seen: [CapturedPacket] = []
        while let b = try recording.nextPackets() { seen += b }
        XCTAssertEqual(seen, original)
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        recording.close()
        recording.close()
        XCTAssertTrue(source.closed)
        XCTAssertNil(recording.finishError)
        let reader = try CaptureReader(url: url)
        XCTAssertEqual(try readAll(reader), original)
        XCTAssertEqual(reader.metadata, metadata())
    }

    func testPacedReplayFollowsHostTimes() throws {
        let url = dir.appending("paced.panocap")
        let original = (0..<4).map { CapturedPacket(endpoint: 0x82, hostNanoseconds: 5_000_000_000 + UInt64($0) * 40_000_000,
                                                    bytes: [UInt8($0)]) }
        try write(original, to: url, metadata: metadata())
        let fast = try CaptureReader(url: url)
        XCTAssertEqual(try readAll(fast), original)
        let paced = try CaptureReader(url: url, paced: true)
        let start = Date()
        XCTAssertEqual(try readAll(paced), original)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(elapsed, 0.115, "3 gaps of 40 ms")
        XCTAssertLessThan(elapsed, 2.0)
    }

    func testMetadataJSONRoundTripAndClose() throws {
        let meta = KinectCaptureGenerator.metadata(calibration: try .synthetic(
            intrinsics: Intrinsics(fx: 500, fy: 501, cx: 320, cy: 240, width: 640, height: 480)), frameRate: 15)
        XCTAssertEqual(try CaptureMetadata.decode(try meta.jsonData(), source: "mem"), meta)
        let url = dir.appending("e.panocap")
        try write(packets(10, seed: 7), to: url, metadata: meta)
        let reader = try CaptureReader(url: url)
        reader.close()
        reader.close()
        XCTAssertNil(try reader.nextPackets())
    }
}
