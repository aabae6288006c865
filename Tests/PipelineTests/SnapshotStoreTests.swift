import Evaluation
import Foundation
import IO
import Kernels
import MapCore
import Pipeline
import TestSupport
import XCTest

final class SnapshotStoreTests: XCTestCase {
    // MARK: Fixtures

    /// A small labelled mesh: a grid of `n`x`n` vertices, two triangles per cell, labels varying with `seed`.
    private func mesh(n: Int = 4, seed: Int = 0) -> TriangleMesh {
        var v: [SIMD3<Float>] = [], c: [SIMD3<UInt8>] = [], t: [SIMD3<UInt32>] = []
        for y in 0..<n { for x in 0..<n {
            v.append(SIMD3(Float(x) * 0.1, Float(y) * 0.1, Float(seed) * 0.01))
            c.append(SIMD3(UInt8(x * 40), UInt8(y * 40), UInt8(seed % 256)))
        } }
        for y in 0..<(n - 1) { for x in 0..<(n - 1) {
            let i = UInt32(y * n + x)
            t.append(SIMD3(i, i + 1, i + UInt32(n))); t.append(SIMD3(i + 1, i + UInt32(n) + 1, i + UInt32(n)))
        } }
        let k = v.count
        let sem = (0..<k).map { Int32(1 + ($0 + seed) % 3) }
        let ins = (0..<k).map { Int32(($0 + seed) % 2) }
        let pan = (0..<k).map { Int32(($0 + seed) % 4) }
        return TriangleMesh(vertices: v, colors: c, labels: [("semantic", sem), ("instance", ins), ("panoptic", pan)],
                            triangles: t)
    }

    private func legend() -> PanopticLegend {
        PanopticLegend(entries: [
            .init(id: 1, classID: 1, name: "wall", isThing: false, instance: 0, color: [80, 230, 124]),
            .init(id: 2, classID: 7, name: "chair", isThing: true, instance: 3, color: [230, 80, 91]),
        ])
    }

    private func png() throws -> [UInt8] {
        try PNGCodec.encodeRGB8(RGBImage(width: 3, height: 2, channels: 3, data: (0..<18).map { UInt8($0 * 13) }))
    }

    private func content(seed: Int = 0, n: Int = 4) throws -> SnapshotContent {
        let m = mesh(n: n, seed: seed)
        return SnapshotContent(mesh: m, points: TriangleMesh(vertices: m.vertices, colors: m.colors, triangles: m.triangles),
                               legend: legend(), renders: [(name: "rgb-000", png: try png())],
                               framesCovered: 10 * seed + 3, keyframesCovered: seed + 1,
                               extra: ["loss": "0.25", "seconds": "\(seed)"])
    }

    private func assertThrowsMapError(_ body: @autoclosure () throws -> Any, _ check: (MapError) -> Void,
                                      file: StaticString = #filePath, line: UInt = #line) {
        do { _ = try body(); XCTFail("no error thrown", file: file, line: line) } catch let e as MapError { check(e) } catch {
            XCTFail("not a MapError: \(error)", file: file, line: line)
        }
    }

    private func flipByte(_ url: URL, at offset: Int) throws {
        var d = try Data(contentsOf: url)
        d[d.startIndex + offset] ^= 0x40
        try d.write(to: url)
    }

    // MARK: Tests

    func testRoundTrip() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.appending("snapshots"))
        XCTAssertNil(store.latest())
        let c = try content(seed: 2)
        let (dir, seconds) = try store.write(c, sequence: 7)
        XCTAssertEqual(dir.lastPathComponent, "snapshot-000007")
        XCTAssertGreaterThanOrEqual(seconds, 0)
        XCTAssertEqual(store.latest()?.standardizedFileURL, dir.standardizedFileURL)
        XCTAssertEqual(try String(contentsOf: tmp.appending("snapshots/LATEST"), encoding: .utf8), "snapshot-000007")

        let m = try SnapshotStore.validate(dir)
        XCTAssertEqual(m.formatVersion, PipelineFormat.version)
        XCTAssertEqual(m.sequence, 7)
        XCTAssertEqual(m.framesCovered, 23)
        XCTAssertEqual(m.keyframesCovered, 3)
        XCTAssertEqual(m.extra, ["loss": "0.25", "seconds": "2"])
        XCTAssertEqual(Set(m.files.keys), ["mesh.ply", "points.ply", "legend.json", "renders/rgb-000.png"])
        XCTAssertLessThan(abs(m.created - Date().timeIntervalSince1970), 60)

        let meshBack = try TriangleMesh(ply: PLY.read(dir.appendingPathComponent("mesh.ply")), source: "mesh")
        XCTAssertEqual(meshBack, c.mesh)
        XCTAssertEqual(meshBack.label("panoptic"), c.mesh.label("panoptic"))
        let points = try PLY.read(dir.appendingPathComponent("points.ply"))
        XCTAssertEqual(points.positions, c.mesh.vertices)
        XCTAssertTrue(points.faces.isEmpty)
        XCTAssertEqual(try PanopticLegend.load(from: dir.appendingPathComponent("legend.json")), legend())
        XCTAssertEqual(try [UInt8](Data(contentsOf: dir.appendingPathComponent("renders/rgb-000.png"))), try png())
        // The manifest's JSON keys are snake_case, like the legend's.
        let json = try String(contentsOf: dir.appendingPathComponent("manifest.json"), encoding: .utf8)
        XCTAssertTrue(json.contains("\"frames_covered\""), json)
        // No temporary entries are left behind.
        XCTAssertEqual(Files.list(tmp.appending("snapshots")), ["LATEST", "snapshot-000007"])
    }

    func testMinimalSnapshotAndBadInput() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url)
        let (dir, _) = try store.write(SnapshotContent(mesh: TriangleMesh(), framesCovered: 0, keyframesCovered: 0),
                                       sequence: 0)
        XCTAssertEqual(Set(try SnapshotStore.validate(dir).files.keys), ["mesh.ply"])
        XCTAssertEqual(store.nextSequence(), 1)
        // Sequence numbers must increase, so LATEST always names the newest snapshot.
        assertThrowsMapError(try store.write(try content(), sequence: 0)) {
            XCTAssertEqual($0.kind, .badArgument); XCTAssertTrue($0.description.contains("snapshot-000000"), "\($0)")
        }
        var c = try content()
        c.renders = [(name: "../escape", png: try png())]
        assertThrowsMapError(try store.write(c, sequence: 1)) { XCTAssertEqual($0.kind, .badArgument) }
        c.renders = [(name: "ok", png: [1, 2, 3])]
        assertThrowsMapError(try store.write(c, sequence: 1)) { XCTAssertEqual($0.kind, .badArgument) }
        // Failed writes leave nothing behind and do not move LATEST.
        XCTAssertEqual(Files.list(tmp.url), ["LATEST", "snapshot-000000"])
        XCTAssertEqual(store.latest()?.lastPathComponent, "snapshot-000000")
        // Sequences past 999999 get more digits.
        XCTAssertEqual(SnapshotStore.directoryName(sequence: 1_234_567), "snapshot-1234567")
        XCTAssertEqual(SnapshotStore.sequence(ofDirectoryName: "snapshot-1234567"), 1_234_567)
        XCTAssertNil(SnapshotStore.sequence(ofDirectoryName: ".snapshot-000001.tmp-5"))
        XCTAssertNil(SnapshotStore.sequence(ofDirectoryName: "snapshot-00001"))
    }

    func testKeepPrunesOldestButNeverLatest() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url, keep: 3)
        for s in 1...6 { try store.write(try content(seed: s), sequence: s) }
        XCTAssertEqual(store.snapshots().map(\.sequence), [4, 5, 6])
        XCTAssertEqual(store.latest()?.lastPathComponent, "snapshot-000006")
        for s in [4, 5, 6] { XCTAssertNoThrow(try SnapshotStore.validate(tmp.appending(SnapshotStore.directoryName(sequence: s)))) }

        // LATEST pointing at an older snapshot (e.g. set by hand) protects it from pruning.
        try Files.writeAtomically("snapshot-000004", to: tmp.appending("LATEST"))
        try SnapshotStore(directory: tmp.url, keep: 1).prune()
        XCTAssertEqual(store.snapshots().map(\.sequence), [4, 6])
        XCTAssertEqual(store.latest()?.lastPathComponent, "snapshot-000004")
        XCTAssertEqual(Files.list(tmp.url), ["LATEST", "snapshot-000004", "snapshot-000006"])
    }

    func testCorruptedOrMissingFileIsNamed() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url, keep: 10)
        for (k, path) in ["mesh.ply", "points.ply", "legend.json", "renders/rgb-000.png"].enumerated() {
            let dir = try store.write(try content(seed: k), sequence: 2 * k).directory
            try flipByte(dir.appendingPathComponent(path), at: 5)
            assertThrowsMapError(try SnapshotStore.validate(dir)) {
                XCTAssertEqual($0.kind, .corruptFile, "\($0)")
                XCTAssertTrue($0.file?.hasSuffix(path) ?? false, "\($0)")
                XCTAssertTrue($0.message.contains(path) && $0.message.contains("crc32"), "\($0)")
            }
            let dir2 = try store.write(try content(seed: k), sequence: 2 * k + 1).directory
            try FileManager.default.removeItem(at: dir2.appendingPathComponent(path))
            assertThrowsMapError(try SnapshotStore.validate(dir2)) {
                XCTAssertEqual($0.kind, .missingFile, "\($0)")
                XCTAssertTrue($0.file?.hasSuffix(path) ?? false, "\($0)")
            }
        }
        // Truncation, a damaged manifest, an unsupported version, a missing manifest.
        let dir = try store.write(try content(), sequence: 20).directory
        let mesh = dir.appendingPathComponent("mesh.ply")
        let bytes = try Data(contentsOf: mesh)
        try bytes.prefix(bytes.count - 4).write(to: mesh)
        assertThrowsMapError(try SnapshotStore.validate(dir)) {
            XCTAssertEqual($0.kind, .truncatedFile, "\($0)"); XCTAssertTrue($0.file?.hasSuffix("mesh.ply") ?? false)
        }
        try bytes.write(to: mesh)
        XCTAssertNoThrow(try SnapshotStore.validate(dir))
        let manifestURL = dir.appendingPathComponent("manifest.json")
        let manifest = try String(contentsOf: manifestURL, encoding: .utf8)
        try manifest.replacingOccurrences(of: "\"format_version\" : \(PipelineFormat.version)",
                                          with: "\"format_version\" : 99").write(to: manifestURL, atomically: true, encoding: .utf8)
        assertThrowsMapError(try SnapshotStore.validate(dir)) {
            XCTAssertEqual($0.kind, .unsupported, "\($0)"); XCTAssertTrue($0.file?.hasSuffix("manifest.json") ?? false)
        }
        try String(manifest.dropLast(3)).write(to: manifestURL, atomically: true, encoding: .utf8)
        assertThrowsMapError(try SnapshotStore.validate(dir)) {
            XCTAssertEqual($0.kind, .badFormat, "\($0)"); XCTAssertTrue($0.file?.hasSuffix("manifest.json") ?? false)
        }
        try FileManager.default.removeItem(at: manifestURL)
        assertThrowsMapError(try SnapshotStore.validate(dir)) {
            XCTAssertEqual($0.kind, .missingFile, "\($0)"); XCTAssertTrue($0.file?.hasSuffix("manifest.json") ?? false)
        }
        // A mesh.ply whose checksum matches but which is not PLY (manifest rewritten to match).
        let dir3 = try store.write(try content(), sequence: 21).directory
        let junk = [UInt8](repeating: 0x41, count: 40)
        try Data(junk).write(to: dir3.appendingPathComponent("mesh.ply"))
        var m = try SnapshotStore.validate(try store.write(try content(), sequence: 22).directory)
        m.sequence = 21
        m.files["mesh.ply"] = Checksum.hex(Checksum.crc32(junk)); m.sizes["mesh.ply"] = junk.count
        try JSONEncoder().encode(m).write(to: dir3.appendingPathComponent("manifest.json"))
        assertThrowsMapError(try SnapshotStore.validate(dir3)) {
            XCTAssertEqual($0.kind, .badFormat, "\($0)"); XCTAssertTrue($0.file?.hasSuffix("mesh.ply") ?? false)
        }
    }

    func testLeftoverTemporaryDirectoriesAreIgnoredAndCleaned() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url)
        try store.write(try content(seed: 1), sequence: 1)
        // A crashed writer's half-written snapshot (newer sequence), a half-deleted one and a LATEST temp file.
        let stale = tmp.appending(".snapshot-000009.tmp-424242")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: stale.appendingPathComponent("mesh.ply"))
        try FileManager.default.createDirectory(at: tmp.appending(".snapshot-000000.del-424242"),
                                                withIntermediateDirectories: true)
        try Data("snapshot-000009".utf8).write(to: tmp.appending(".LATEST.tmp-424242"))
        XCTAssertEqual(store.latest()?.lastPathComponent, "snapshot-000001")
        XCTAssertEqual(store.snapshots().map(\.sequence), [1])
        XCTAssertEqual(store.nextSequence(), 2)

        try store.write(try content(seed: 2), sequence: 2)
        XCTAssertEqual(Files.list(tmp.url), ["LATEST", "snapshot-000001", "snapshot-000002"])
        XCTAssertNoThrow(try SnapshotStore.validate(store.latest()!))
    }

    /// The reader test from the issue: a background thread polls `latest()` + `validate` while the main thread writes
    /// 30 snapshots with pruning. The reader must never see a partial or invalid snapshot. A snapshot that vanishes
    /// between reading LATEST and validating it is only excused when it was pruned: the error is a missing file, the
    /// directory is gone and LATEST has moved on.
    func testReaderNeverSeesPartialSnapshot() throws {
        let r = try readerStress(keep: 3)
        XCTAssertEqual(r.failures, [], "the reader saw invalid snapshots")
    }

    /// The same with keep = 1, where the reader is often overtaken by pruning (the excused race actually happens).
    func testReaderNeverSeesPartialSnapshotKeepOne() throws {
        let r = try readerStress(keep: 1)
        XCTAssertEqual(r.failures, [], "the reader saw invalid snapshots")
    }

    /// The reader's protocol, deterministically: a snapshot pruned after LATEST was read fails validation with a
    /// missing file, and LATEST has moved on.
    func testPrunedUnderReaderIsReportedAsMissing() throws {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url, keep: 1)
        try store.write(try content(seed: 0), sequence: 0)
        let seen = try XCTUnwrap(store.latest())
        try store.write(try content(seed: 1), sequence: 1)
        assertThrowsMapError(try SnapshotStore.validate(seen)) {
            XCTAssertEqual($0.kind, .missingFile, "\($0)")
            XCTAssertTrue($0.file?.hasSuffix("manifest.json") ?? false, "\($0)")
        }
        XCTAssertNotEqual(store.latest()?.lastPathComponent, seen.lastPathComponent)
        XCTAssertEqual(try SnapshotStore.validate(try XCTUnwrap(store.latest())).sequence, 1)
    }

    private func readerStress(keep: Int) throws -> ReaderLog.State {
        let tmp = try TempDirectory("snap"); defer { tmp.remove() }
        let store = SnapshotStore(directory: tmp.url, keep: keep)
        let log = ReaderLog()
        let count = 30

        let reader = Thread {
            while !log.shouldStop {
                guard let dir = store.latest() else { log.noLatest(); continue }
                do {
                    let m = try SnapshotStore.validate(dir)
                    if SnapshotStore.sequence(ofDirectoryName: dir.lastPathComponent) != m.sequence {
                        log.fail("\(dir.lastPathComponent) holds a manifest for sequence \(m.sequence)")
                    }
                    log.validated(m.sequence)
                } catch let e as MapError {
                    let moved = store.latest()?.lastPathComponent != dir.lastPathComponent
                    if (e.kind == .missingFile || e.kind == .ioFailure) && moved && !Files.exists(dir) {
                        log.raced()
                    } else {
                        log.fail("\(dir.lastPathComponent): \(e)")
                    }
                } catch {
                    log.fail("\(dir.lastPathComponent): \(error)")
                }
            }
            log.finish()
        }
        reader.start()

        for s in 0..<count {
            // Every fifth write waits (briefly) until the reader has validated the previous snapshot, so the reader
            // provably overlaps the writes even on a loaded machine; between those, bursts of writes let it fall
            // behind far enough to race with pruning.
            if s > 0 && s % 5 == 0 { log.wait { $0.lastSequence >= s - 1 } }
            try store.write(try content(seed: s, n: 6), sequence: s)
            // Pruning never deletes what LATEST names, and keeps exactly `keep` snapshots.
            XCTAssertEqual(store.latest()?.lastPathComponent, SnapshotStore.directoryName(sequence: s))
            XCTAssertEqual(store.snapshots().count, min(s + 1, keep))
        }
        log.wait { $0.lastSequence == count - 1 }
        log.stop()
        log.wait { $0.finished }

        let r = log.snapshot()
        XCTAssertGreaterThan(r.validations, 0)
        XCTAssertEqual(r.lastSequence, count - 1)
        XCTAssertGreaterThanOrEqual(r.distinct.count, count / 5, "the reader did not overlap the writes")
        XCTAssertTrue(r.monotonic, "LATEST went backwards")
        XCTAssertEqual(store.snapshots().map(\.sequence), Array((count - keep)..<count))
        XCTAssertEqual(Files.list(tmp.url).filter { $0.hasPrefix(".") }, [])
        return r
    }
}

/// Shared state of the reader test. `@unchecked Sendable` is safe: every stored property is read and written only
/// while holding `condition`'s lock.
private final class ReaderLog: @unchecked Sendable {
    struct State {
        var validations = 0, racedCount = 0, noLatestCount = 0
        var lastSequence = -1
        var distinct = Set<Int>()
        var monotonic = true
        var failures: [String] = []
        var stopping = false, finished = false
    }
    private let condition = NSCondition()
    private var state = State()

    private func locked<T>(_ body: (inout State) -> T) -> T {
        condition.lock(); defer { condition.broadcast(); condition.unlock() }
        return body(&state)
    }

    var shouldStop: Bool { locked { $0.stopping } }
    func validated(_ s: Int) {
        locked {
            $0.validations += 1
            if s < $0.lastSequence { $0.monotonic = false }
            $0.lastSequence = max($0.lastSequence, s); $0.distinct.insert(s)
        }
    }
    func raced() { locked { $0.racedCount += 1 } }
    func noLatest() { locked { $0.noLatestCount += 1 } }
    func fail(_ m: String) { locked { if $0.failures.count < 10 { $0.failures.append(m) } } }
    func stop() { locked { $0.stopping = true } }
    func finish() { locked { $0.finished = true } }
    func snapshot() -> State { locked { $0 } }

    /// Waits until `done` holds, at most 10 s (then returns; the test's assertions report the shortfall).
    func wait(_ done: (State) -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        condition.lock(); defer { condition.unlock() }
        while !done(state) && Date() < deadline { _ = condition.wait(until: deadline) }
    }
}
