import Foundation
import IO
import MapCore
import Pipeline
import TestSupport
import XCTest

final class CheckpointStoreTests: XCTestCase {
    private var temp: TempDirectory!
    private var store: CheckpointStore!

    override func setUpWithError() throws {
        temp = try TempDirectory("pano-ckpt")
        store = CheckpointStore(directory: temp.appending("session"))
    }

    override func tearDown() { temp.remove() }

    private func checkpoint(_ seq: Int) -> Checkpoint {
        var w = BlobWriter()
        w.write((0..<1000).map { Float($0) * Float(seq) })
        w.write("state \(seq)")
        return Checkpoint(sequence: seq, metadata: ["config": "{\"lr\": 0.01}", "frame": "\(seq * 10)"],
                          blobs: ["geometry.bin": w.bytes, "rng.bin": [UInt8(truncatingIfNeeded: seq), 1, 2, 3], "empty": []])
    }

    private func names() -> [String] { store.checkpoints().map(\.lastPathComponent) }

    private func modify(_ url: URL, _ change: (inout [UInt8]) -> Void) throws {
        var bytes = [UInt8](try Data(contentsOf: url))
        change(&bytes)
        try Data(bytes).write(to: url)
    }

    private func assertRefused(_ dir: URL, _ kind: MapError.Kind, mentioning text: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try store.load(dir), file: file, line: line) { e in
            guard let e = e as? MapError else { return XCTFail("not a MapError: \(e)", file: file, line: line) }
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(text), "\(e) does not mention \(text)", file: file, line: line)
            XCTAssertNotNil(e.hint, file: file, line: line)
        }
    }

    func testSaveLoadRoundTrip() throws {
        let c = checkpoint(12)
        let dir = try store.save(c)
        XCTAssertEqual(dir.lastPathComponent, "checkpoint-000012")
        XCTAssertEqual(Set(Files.list(dir)), ["manifest.json", "geometry.bin", "rng.bin", "empty"])
        XCTAssertEqual(try Files.readText(temp.appending("session/CURRENT")), "checkpoint-000012\n")
        XCTAssertEqual(try store.load(dir), c)
        let latest = try store.loadLatest()
        XCTAssertEqual(latest.checkpoint, c)
        XCTAssertEqual(latest.directory.lastPathComponent, "checkpoint-000012")
        XCTAssertTrue(latest.refused.isEmpty)

        let manifest = try Files.readText(dir.appendingPathComponent("manifest.json"))
        XCTAssertTrue(manifest.contains("\"version\" : \(PipelineFormat.version)"), manifest)
        XCTAssertTrue(manifest.contains(Checksum.hex(Checksum.crc32(c.blobs["geometry.bin"]!))), manifest)

        var r = try latest.checkpoint.reader("geometry.bin")
        XCTAssertEqual(r.name, "checkpoint-000012/geometry.bin")
        XCTAssertEqual(try r.readFloats().count, 1000)
        XCTAssertEqual(try r.readString(), "state 12")
        try r.finish()
        XCTAssertThrowsError(try latest.checkpoint.reader("tokens"))
    }

    func testSequenceBeyondSixDigitsAndOrdering() throws {
        try store.save(checkpoint(999_999))
        try store.save(checkpoint(1_000_000))
        XCTAssertEqual(names(), ["checkpoint-999999", "checkpoint-1000000"])
        XCTAssertEqual(try store.loadLatest().checkpoint.sequence, 1_000_000)
    }

    func testKeepDeletesOlderCheckpoints() throws {
        for s in 1...4 { try store.save(checkpoint(s)) }
        XCTAssertEqual(names(), ["checkpoint-000003", "checkpoint-000004"])
        let three = CheckpointStore(directory: store.directory, keep: 3)
        for s in 5...7 { try three.save(checkpoint(s)) }
        XCTAssertEqual(names(), ["checkpoint-000005", "checkpoint-000006", "checkpoint-000007"])
        XCTAssertEqual(CheckpointStore(directory: store.directory, keep: 0).keep, 2)
    }

    func testResavingSameSequenceReplacesIt() throws {
        try store.save(checkpoint(3))
        var c = checkpoint(3)
        c.metadata["frame"] = "31"
        try store.save(c)
        XCTAssertEqual(names(), ["checkpoint-000003"])
        XCTAssertEqual(try store.loadLatest().checkpoint, c)
        XCTAssertFalse(Files.list(store.directory).contains { $0.hasPrefix(".") })
    }

    func testSaveRejectsBadBlobNames() {
        for bad in ["", "a/b", "x y", "é", ".", "..", "manifest.json"] {
            XCTAssertThrowsError(try store.save(Checkpoint(sequence: 1, blobs: [bad: [1]])), bad)
        }
        XCTAssertThrowsError(try store.save(Checkpoint(sequence: -1)))
        XCTAssertTrue(names().isEmpty)
    }

    func testFlippedByteIsRefusedAndLatestFallsBack() throws {
        try store.save(checkpoint(1))
        let two = try store.save(checkpoint(2))
        let blob = two.appendingPathComponent("geometry.bin")
        try modify(blob) { $0[100] ^= 0x01 }
        assertRefused(two, .corruptFile, mentioning: "geometry")

        let latest = try store.loadLatest()
        XCTAssertEqual(latest.checkpoint, checkpoint(1))
        XCTAssertEqual(latest.refused.count, 1)
        XCTAssertEqual(latest.refused.first?.0.lastPathComponent, "checkpoint-000002")
        XCTAssertEqual(latest.refused.first?.1.kind, .corruptFile)
        XCTAssertEqual(latest.refused.first?.1.file, blob.path)
    }

    func testTruncatedBlobIsRefused() throws {
        let dir = try store.save(checkpoint(1))
        try modify(dir.appendingPathComponent("geometry.bin")) { $0.removeLast(3) }
        assertRefused(dir, .truncatedFile, mentioning: "geometry")
    }

    func testMissingBlobIsRefused() throws {
        let dir = try store.save(checkpoint(1))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("rng.bin"))
        assertRefused(dir, .missingFile, mentioning: "rng.bin")
    }

    func testNewerVersionIsRefused() throws {
        let dir = try store.save(checkpoint(1))
        let manifest = dir.appendingPathComponent("manifest.json")
        let text = try Files.readText(manifest)
        try Files.writeAtomically(text.replacingOccurrences(of: "\"version\" : \(PipelineFormat.version)",
                                                            with: "\"version\" : \(PipelineFormat.version + 1)"),
                                  to: manifest)
        assertRefused(dir, .unsupported, mentioning: "version \(PipelineFormat.version + 1)")
    }

    func testGarbageOrMissingManifestIsRefused() throws {
        let dir = try store.save(checkpoint(1))
        let manifest = dir.appendingPathComponent("manifest.json")
        try Files.writeAtomically("{\"format\": \"pano-sess", to: manifest)
        assertRefused(dir, .badFormat, mentioning: "manifest.json")
        try Files.writeAtomically("{\"format\": \"pano-session-checkpoint\", \"version\": 1}", to: manifest)
        assertRefused(dir, .badFormat, mentioning: "shape")
        try FileManager.default.removeItem(at: manifest)
        assertRefused(dir, .missingFile, mentioning: "manifest")
    }

    func testCurrentPointingToMissingDirectoryFallsBack() throws {
        try store.save(checkpoint(1))
        let two = try store.save(checkpoint(2))
        try FileManager.default.removeItem(at: two)
        let latest = try store.loadLatest()
        XCTAssertEqual(latest.checkpoint.sequence, 1)
        XCTAssertEqual(latest.refused.map { $0.0.lastPathComponent }, ["checkpoint-000002"])
        XCTAssertEqual(latest.refused.first?.1.kind, .missingFile)
    }

    func testCurrentIsPreferredOverHigherSequence() throws {
        try store.save(checkpoint(5))
        try store.save(checkpoint(6))
        // A resumed session that went back to 5 and saved again: CURRENT names the newest write, not the highest number.
        try Files.writeAtomically("checkpoint-000005\n", to: store.directory.appendingPathComponent("CURRENT"))
        XCTAssertEqual(try store.loadLatest().checkpoint.sequence, 5)
    }

    func testLeftoverTemporaryDirectoryIsIgnoredThenCleaned() throws {
        try store.save(checkpoint(1))
        // A crash mid-save of checkpoint 2: a partial temporary directory without a manifest.
        let tmp = store.directory.appendingPathComponent(".checkpoint-000002.tmp-99999")
        try Files.createDirectory(tmp)
        try Files.writeAtomically([1, 2, 3], to: tmp.appendingPathComponent("geometry.bin"))
        XCTAssertEqual(names(), ["checkpoint-000001"])
        let latest = try store.loadLatest()
        XCTAssertEqual(latest.checkpoint.sequence, 1)
        XCTAssertTrue(latest.refused.isEmpty)

        try store.save(checkpoint(2))
        XCTAssertFalse(Files.exists(tmp))
        XCTAssertEqual(Files.list(store.directory), ["CURRENT", "checkpoint-000001", "checkpoint-000002"])
    }

    func testNoCheckpointAtAll() throws {
        for setup in [{}, { try Files.createDirectory(self.store.directory) }] {
            try setup()
            XCTAssertThrowsError(try store.loadLatest()) { e in
                XCTAssertEqual((e as? MapError)?.kind, .missingFile)
                XCTAssertTrue("\(e)".contains("no session checkpoint"), "\(e)")
            }
        }
        XCTAssertTrue(store.checkpoints().isEmpty)
    }

    func testEveryCandidateCorruptListsRefusals() throws {
        for s in 1...2 {
            let dir = try store.save(checkpoint(s))
            try modify(dir.appendingPathComponent("rng.bin")) { $0[0] ^= 0xFF }
        }
        XCTAssertThrowsError(try store.loadLatest()) { e in
            guard let e = e as? MapError else { return XCTFail("\(e)") }
            XCTAssertEqual(e.kind, .badFormat)
            XCTAssertTrue(e.message.contains("checkpoint-000001") && e.message.contains("checkpoint-000002"), e.message)
        }
    }
}
