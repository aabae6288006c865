import Foundation
import IO
import MapCore
@testable import Pipeline
import TestSupport
import XCTest

/// Snapshots are built by the snapshot writer's replica of the mapper from a copied `MapView` while the optimizer
/// goes on; they must equal what the mapper itself would build in line for the same state.
final class SnapshotBuilderTests: XCTestCase {
    /// The files a snapshot writes, as bytes (mesh.ply, points.ply, legend.json, renders).
    static func files(_ c: SnapshotContent) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = ["mesh.ply": try PLY.encode(c.mesh.plyData)]
        if let p = c.points { out["points.ply"] = try PLY.encode(p.plyData) }
        if let l = c.legend { out["legend.json"] = [UInt8](try l.jsonData()) }
        for r in c.renders { out["renders/\(r.name).png"] = r.png }
        return out
    }

    func testReplicaSnapshotEqualsInLineSnapshot() async throws {
        let source = try MappingSessionTests.source(frames: 12)
        var config = MappingSessionTests.config().mapper
        config.panopticStepsPerKeyframe = 20 // tokens (instance steps start at 150) before the last check
        // Two mappers fed the same frames hold the same state (runs are deterministic): one builds its snapshots in
        // line, the other only hands views to the builder.
        let inLine = try OnlineMapper(config: config, info: source.info)
        let live = try OnlineMapper(config: config, info: source.info)
        let builder = SnapshotBuilder(config: config, info: source.info)
        var checked = 0
        for i in 0..<12 {
            let f = try source.frame(at: i)
            try inLine.integrate(f)
            try live.integrate(f)
            guard i % 4 == 3 else { continue }
            let expected = try SnapshotBuilder.content(of: inLine, view: nil, framesCovered: i + 1)
            let view = try XCTUnwrap(live.takeView())
            XCTAssertTrue(live.dirty.isEmpty, "taking a view clears the dirty blocks")
            // Mapping goes on before the builder gets to the view: the view is a copy.
            try live.integrate(f)
            let got = try await builder.run { replica in
                defer { replica.forgetKeyframes() }
                return try SnapshotBuilder.content(of: replica, view: view, framesCovered: i + 1)
            }
            XCTAssertGreaterThan(got.mesh.vertices.count, 100)
            XCTAssertEqual(got.keyframesCovered, expected.keyframesCovered)
            XCTAssertEqual(got.extra["remeshed_blocks"], expected.extra["remeshed_blocks"])
            let a = try Self.files(got), b = try Self.files(expected)
            XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
            if i == 11 {
                XCTAssertTrue(a.keys.contains("legend.json") && a.keys.contains("renders/panoptic-color.png") && a.keys.contains("renders/rgb.png"), "\(a.keys)")
            }
            for (name, bytes) in b { XCTAssertTrue(a[name] == bytes, "\(name) differs after \(i + 1) frames") }
            // Keep the in-line mapper in step with the extra integration above.
            try inLine.integrate(f)
            checked += 1
        }
        XCTAssertEqual(checked, 3)
        await builder.release()
    }

    /// A session's snapshots, built off the optimizer, validate; the final map is written without keeping the
    /// block meshes afterwards.
    func testExportFreesBlockMeshes() async throws {
        let tmp = try TempDirectory("pano-export-free")
        defer { tmp.remove() }
        let source = try MappingSessionTests.source(frames: 8)
        var config = MappingSessionTests.config()
        config.snapshotEveryKeyframes = 2
        let session = try MappingSession(config: config, info: source.info, directory: tmp.url)
        let r = try await session.run(source)
        XCTAssertEqual(r.stage, "done")
        XCTAssertGreaterThanOrEqual(r.snapshots, 2)
        XCTAssertGreaterThan(r.keyframesIntegrated, 0)
        for snap in session.snapshots.snapshots() {
            try SnapshotStore.validate(session.snapshots.directory.appendingPathComponent(snap.name))
        }
        let blocks = await session.meshedBlockCount
        XCTAssertEqual(blocks, 0, "the mesher holds nothing after the export")
    }
}
