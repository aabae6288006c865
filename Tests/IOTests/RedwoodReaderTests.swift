import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class RedwoodReaderTests: DatasetTestCase {
    func testLogPosesAndColumnMajorIntrinsics() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.redwood(in: root)
        for dir in [root, root.appendingPathComponent("RGBD")] {
            let r = try RedwoodReader(directory: dir)
            XCTAssertEqual(r.info.format, "redwood")
            XCTAssertEqual(r.info.frameCount, 3)  // other_formats/ is ignored
            XCTAssertEqual(r.frameNumbers, [0, 1, 2])
            // intrinsic_matrix [fx 0 0 0 fy 0 cx cy 1] is column-major.
            XCTAssertEqual(r.info.intrinsics, fx.intrinsics)
            XCTAssertTrue(r.intrinsicsSource.hasSuffix("camera.json"))
            for i in 0..<3 {
                let f = try r.frame(at: i)
                assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 1000)
                assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 0)
                XCTAssertLessThanOrEqual(maxDifference(f.rgb, fx.colors[i]), 6)
            }
        }
    }

    func testBadLogs() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.redwood(in: root)
        let log = root.appendingPathComponent("RGBD/trajectory.log")
        let good = try String(contentsOf: log, encoding: .utf8)
        var lines = good.split(separator: "\n").map(String.init)
        // A row with 3 numbers in block 1.
        lines[7] = "0 1 0"
        try lines.joined(separator: "\n").write(to: log, atomically: true, encoding: .utf8)
        var e = expectMapError(.badPose) { _ = try RedwoodReader(directory: root) }
        XCTAssertTrue(e?.message.contains("line 8 has 3 numbers") ?? false, "\(String(describing: e))")
        XCTAssertEqual(e?.frame, 1)
        // A missing line.
        lines = good.split(separator: "\n").map(String.init)
        lines.remove(at: 3)
        try lines.joined(separator: "\n").write(to: log, atomically: true, encoding: .utf8)
        e = expectMapError(.badPose) { _ = try RedwoodReader(directory: root) }
        XCTAssertTrue(e?.message.contains("multiple of 5") ?? false)
        // Fewer blocks than frames.
        lines = good.split(separator: "\n").map(String.init)
        try lines.prefix(10).joined(separator: "\n").write(to: log, atomically: true, encoding: .utf8)
        e = expectMapError(.badPose) { _ = try RedwoodReader(directory: root) }
        XCTAssertEqual(e?.frame, 2)
        try good.write(to: log, atomically: true, encoding: .utf8)
        // Intrinsics JSON with 8 entries.
        try Data(#"{"width": 8, "height": 6, "intrinsic_matrix": [6.5, 0, 0, 0, 5.5, 0, 3.25, 2.75]}"#.utf8)
            .write(to: root.appendingPathComponent("camera.json"))
        e = expectMapError(.badCalibration) { _ = try RedwoodReader(directory: root) }
        XCTAssertTrue(e?.file?.hasSuffix("camera.json") ?? false)
        // No JSON: PrimeSense default, which is for 640x480.
        try FileManager.default.removeItem(at: root.appendingPathComponent("camera.json"))
        expectMapError(.sizeMismatch) { _ = try RedwoodReader(directory: root) }
        XCTAssertEqual(RedwoodReader.defaultIntrinsics, Intrinsics(fx: 525, fy: 525, cx: 319.5, cy: 239.5, width: 640, height: 480))
    }
}
