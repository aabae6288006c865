import Evaluation
import Fields
import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import TestSupport
import XCTest

/// End-to-end runs of the online pipeline on a small synthetic room (sized for an optimised test build).
final class MappingSessionTests: XCTestCase {
    static func source(frames: Int = 24) throws -> SyntheticSource {
        var c = SyntheticSceneConfig.small(width: 96, height: 72, frameCount: frames, seed: 2)
        c.depthNoise = .none
        return SyntheticSource(scene: try SyntheticScene(config: c))
    }

    static func config() -> SessionConfig {
        var c = SessionConfig()
        c.mapper.geometryStepsPerKeyframe = 15
        c.mapper.panopticStepsPerKeyframe = 8
        c.mapper.panopticMinAge = 15
        c.mapper.finalGeometrySteps = 60
        c.mapper.finalPanopticSteps = 40
        c.mapper.raysPerStep = 256
        c.mapper.log2Table = 14
        c.mapper.finestCell = 0.04
        c.mapper.voxel = 0.05
        c.snapshotEveryKeyframes = 4
        c.checkpointEveryKeyframes = 4
        return c
    }

    /// Snapshots appear during the run, each validates, and the last one covers the whole sequence.
    func testSnapshotsDuringRun() async throws {
        let tmp = try TempDirectory("pano-session")
        defer { tmp.remove() }
        let source = try Self.source()
        let session = try MappingSession(config: Self.config(), info: source.info, directory: tmp.url)
        let store = session.snapshots
        final class Seen: @unchecked Sendable { var names: [String] = [] } // written by the report closure only
        let seen = Seen()
        let result = try await session.run(source) { _ in
            if let l = store.latest(), seen.names.last != l.lastPathComponent { seen.names.append(l.lastPathComponent) }
        }
        XCTAssertEqual(result.stage, "done")
        XCTAssertEqual(result.position, 24)
        XCTAssertGreaterThanOrEqual(seen.names.count, 2, "snapshots appear while mapping: \(seen.names)")
        var last: SnapshotManifest?
        for snap in store.snapshots() {
            let m = try SnapshotStore.validate(store.directory.appendingPathComponent(snap.name))
            XCTAssertGreaterThan(m.keyframesCovered, 0)
            last = m
        }
        let m = try XCTUnwrap(last)
        XCTAssertEqual(m.framesCovered, 24, "the last snapshot covers every frame")
        XCTAssertEqual(m.keyframesCovered, result.keyframes)
        let mesh = try PLY.read(tmp.appending("map/mesh.ply"))
        XCTAssertGreaterThan(mesh.positions.count, 1000)
        XCTAssertTrue(Files.exists(tmp.appending("map/legend.json")))
    }

    /// With a keyframe budget the mapper keeps at most that many keyframes and the run still ends with a map.
    func testKeyframeBudgetBoundsTheKeyframes() async throws {
        let tmp = try TempDirectory("pano-budget")
        defer { tmp.remove() }
        let source = try Self.source(frames: 16)
        var config = Self.config()
        config.mapper.keyframes.window = 3
        config.mapper.keyframes.maxKeyframes = 5
        config.snapshotEveryKeyframes = 0
        config.checkpointEveryKeyframes = 0
        let session = try MappingSession(config: config, info: source.info, directory: tmp.url)
        final class Counts: @unchecked Sendable { var max = 0 } // written by the report closure only
        let counts = Counts()
        let result = try await session.run(source) { counts.max = Swift.max(counts.max, $0.keyframes) }
        XCTAssertEqual(result.stage, "done")
        XCTAssertEqual(counts.max, 5, "never more than the budget")
        XCTAssertTrue(Files.exists(tmp.appending("map/mesh.ply")))
    }

    /// Stopping after a few keyframes and resuming gives the same final state as an uninterrupted run (bit for bit:
    /// the checkpoint holds every layer and the iteration budget makes the run a pure function of its frames).
    func testStopAndResumeIsBitIdentical() async throws {
        let a = try TempDirectory("pano-a"), b = try TempDirectory("pano-b")
        defer { a.remove(); b.remove() }
        let source = try Self.source(frames: 16)
        let whole = try MappingSession(config: Self.config(), info: source.info, directory: a.url)
        try await whole.run(source)

        let first = try MappingSession(config: Self.config(), info: source.info, directory: b.url)
        let stop = first.stop
        let stopped = try await first.run(source) { p in if p.keyframes >= 5 { stop.set() } }
        XCTAssertEqual(stopped.stage, "stopped")
        XCTAssertLessThan(stopped.position, 16)
        let resumed = try MappingSession(resuming: b.url, info: source.info, frames: { try source.frame(at: $0) })
        let done = try await resumed.run(source)
        XCTAssertEqual(done.stage, "done")
        let meshA = try Files.read(a.appending("map/mesh.ply")), meshB = try Files.read(b.appending("map/mesh.ply"))
        XCTAssertTrue(meshA == meshB, "resumed map differs from the uninterrupted one")
        let sa = try CheckpointStore(directory: a.appending("session")).loadLatest().checkpoint
        let sb = try CheckpointStore(directory: b.appending("session")).loadLatest().checkpoint
        for name in ["geometry.bin", "semantic.bin", "instance.bin"] {
            XCTAssertTrue(sa.blobs[name] != nil && sa.blobs[name] == sb.blobs[name], "\(name) differs")
        }
    }

    /// A corrupted newest checkpoint is refused with a clear error and the previous one is used.
    func testCorruptCheckpointFallsBack() async throws {
        let tmp = try TempDirectory("pano-corrupt")
        defer { tmp.remove() }
        let source = try Self.source(frames: 16)
        let session = try MappingSession(config: Self.config(), info: source.info, directory: tmp.url)
        let stop = session.stop
        try await session.run(source) { p in if p.keyframes >= 9 { stop.set() } }
        let store = CheckpointStore(directory: tmp.appending("session"))
        let dirs = store.checkpoints()
        XCTAssertGreaterThanOrEqual(dirs.count, 2)
        let newest = try XCTUnwrap(dirs.last)
        let blob = newest.appendingPathComponent("geometry.bin")
        var bytes = try Files.read(blob)
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: blob)
        let (c, used, refused) = try store.loadLatest()
        XCTAssertEqual(used, dirs[dirs.count - 2], "the previous checkpoint is used")
        XCTAssertEqual(refused.count, 1)
        XCTAssertTrue("\(refused[0].1)".contains("geometry.bin"), "the error names the blob: \(refused[0].1)")
        XCTAssertLessThan(c.sequence, Int(newest.lastPathComponent.dropFirst("checkpoint-".count))!)
        // And the session resumes from it and finishes.
        let resumed = try MappingSession(resuming: tmp.url, info: source.info, frames: { try source.frame(at: $0) })
        let done = try await resumed.run(source)
        XCTAssertEqual(done.stage, "done")
        XCTAssertEqual(done.position, 16)
    }
}
