import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class ReplicaReaderTests: DatasetTestCase {
    func testReadsDepthAt6553Point5UnitsPerMetreAndTrajectoryPoses() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.replica(in: root)
        let r = try ReplicaReader(directory: root, intrinsics: DatasetFixtures.smallCamera)
        XCTAssertEqual(r.info.format, "replica")
        XCTAssertEqual(r.info.frameCount, 3)
        XCTAssertEqual(r.info.depthUnitsPerMetre, 6553.5)
        XCTAssertEqual(r.info.intrinsics, DatasetFixtures.smallCamera)
        for i in 0..<3 {
            let f = try r.frame(at: i)
            assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 6553.5)
            // 6553.5 units = 1 m; 13107 units = 2 m.
            XCTAssertEqual(Double(f.depth[1, 0]), Double(6100 + i) / 6553.5, accuracy: 1e-6)
            assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 0)
            XCTAssertLessThanOrEqual(maxDifference(f.rgb, fx.colors[i]), 6)
            XCTAssertNoThrow(try FrameValidator(vocabulary: nil).validate(f))
        }
    }

    func testDefaultCameraIsNiceSLAMsAndSizeIsChecked() throws {
        XCTAssertEqual(ReplicaReader.niceSLAMCamera,
                       Intrinsics(fx: 600, fy: 600, cx: 599.5, cy: 339.5, width: 1200, height: 680))
        let root = try makeTemp()
        _ = try DatasetFixtures.replica(in: root)
        let e = expectMapError(.sizeMismatch) { _ = try ReplicaReader(directory: root) }
        XCTAssertTrue(e?.message.contains("1200x680") ?? false, "\(String(describing: e))")
        XCTAssertTrue(e?.message.contains("8x6") ?? false)
        XCTAssertTrue(e?.file?.hasSuffix("depth000000.png") ?? false)
    }

    func testBadTrajectoryAndImages() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.replica(in: root)
        let traj = root.appendingPathComponent("traj.txt")
        let good = try String(contentsOf: traj, encoding: .utf8)
        // 15 numbers on the second line.
        var lines = good.split(separator: "\n").map(String.init)
        lines[1] = lines[1].split(separator: " ").dropLast().joined(separator: " ")
        try lines.joined(separator: "\n").write(to: traj, atomically: true, encoding: .utf8)
        var e = expectMapError(.badPose) { _ = try ReplicaReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertTrue(e?.message.contains("line 2 has 15 numbers") ?? false, "\(String(describing: e))")
        XCTAssertEqual(e?.frame, 1)
        XCTAssertEqual(e?.file, traj.path)
        // Too few poses for the frames.
        try lines.prefix(2).map { _ in lines[0] }.joined(separator: "\n").write(to: traj, atomically: true, encoding: .utf8)
        e = expectMapError(.badPose) { _ = try ReplicaReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertEqual(e?.frame, 2)
        try good.write(to: traj, atomically: true, encoding: .utf8)
        // Truncated depth PNG and JPEG name their frame and file.
        let r = try ReplicaReader(directory: root, intrinsics: DatasetFixtures.smallCamera)
        try truncate(root.appendingPathComponent("results/depth000001.png"), keeping: 0.7)
        e = expectMapError(.truncatedFile) { _ = try r.frame(at: 1) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertTrue(e?.file?.hasSuffix("results/depth000001.png") ?? false)
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 16]).write(to: root.appendingPathComponent("results/frame000002.jpg"))
        e = expectMapError(.truncatedFile) { _ = try r.frame(at: 2) }
        XCTAssertEqual(e?.frame, 2)
        try FileManager.default.removeItem(at: traj)
        expectMapError(.missingFile) { _ = try ReplicaReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
    }
}
