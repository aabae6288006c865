import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class TUMReaderTests: DatasetTestCase {
    func fixture() throws -> (URL, DatasetFixtures.Written) {
        let root = try makeTemp().appendingPathComponent("rgbd_dataset_freiburg2_fixture")
        return (root, try DatasetFixtures.tum(in: root))
    }

    func testAssociationInterpolationAndDroppedFrames() throws {
        let (root, fx) = try fixture()
        let r = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera)
        XCTAssertEqual(r.info.format, "tum")
        XCTAssertEqual(r.info.frameCount, 3)
        XCTAssertEqual(r.association.depthImages, 6)
        XCTAssertEqual(r.association.droppedNoColor, 1)       // depth 1.2: nearest colour 1.25 is 0.05 s away
        XCTAssertEqual(r.association.droppedOutsidePoses, 2)  // depth 1.0 and 1.5 lie outside 1.05 ... 1.45
        XCTAssertEqual(r.association.dropped, 3)
        XCTAssertEqual(r.info.depthUnitsPerMetre, 5000)
        for i in 0..<3 {
            let f = try r.frame(at: i)
            XCTAssertEqual(f.timestamp ?? -1, fx.timestamps[i], accuracy: 1e-9)
            assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 5000)
            XCTAssertEqual(f.depth[3, 2], Float(DatasetFixtures.depthValue(fx.frameNumbers[i], 3, 2)) / 5000, accuracy: 1e-7)
            XCTAssertEqual(f.rgb, fx.colors[i])  // PNG colour: exact; the nearest colour image was chosen
            // Interpolated at the depth time: rotation angle = t about (1, 2, 3) (slerp along one axis is linear in
            // angle), translation (t, 2t, -t). Frame 0 sits at 2/3 between samples 1.05 and 1.125.
            assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 1e-9)
        }
    }

    func testQuaternionIsReadWLast() throws {
        let (root, _) = try fixture()
        // One pose exactly at a depth time: 90 degrees about x written as qx qy qz qw = s 0 0 s.
        let s = 0.5.squareRoot()
        try Data("1.05 0 0 0 \(s) 0 0 \(s)\n1.45 0 0 0 \(s) 0 0 \(s)\n".utf8)
            .write(to: root.appendingPathComponent("groundtruth.txt"))
        let f = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera).frame(at: 0)
        // R_x(90): y -> z, z -> -y.
        let expected = RigidTransform(rotation: Mat3(rows: Vec3(1, 0, 0), Vec3(0, 0, -1), Vec3(0, 1, 0)))
        assertPosesEqual(f.T_W_C, expected, accuracy: 1e-12)
    }

    func testSlerpTakesTheShortArc() throws {
        let (root, _) = try fixture()
        // q and -q are the same rotation; interpolating between them must stay put.
        let h = sin(0.3), c = cos(0.3)
        try Data("1.05 0 0 0 0 0 \(h) \(c)\n1.45 0 0 0 0 0 \(-h) \(-c)\n".utf8)
            .write(to: root.appendingPathComponent("groundtruth.txt"))
        let f = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera).frame(at: 1)
        assertPosesEqual(f.T_W_C, RigidTransform(rotation: Mat3(axis: Vec3(0, 0, 1), angle: 0.6)), accuracy: 1e-12)
    }

    func testFreiburgIntrinsicsFromTheDirectoryName() throws {
        XCTAssertEqual(TUMReader.defaultIntrinsics(sequenceName: "rgbd_dataset_freiburg1_xyz"),
                       Intrinsics(fx: 517.3, fy: 516.5, cx: 318.6, cy: 255.3, width: 640, height: 480))
        XCTAssertEqual(TUMReader.defaultIntrinsics(sequenceName: "rgbd_dataset_freiburg2_desk"),
                       Intrinsics(fx: 520.9, fy: 521.0, cx: 325.1, cy: 249.7, width: 640, height: 480))
        XCTAssertEqual(TUMReader.defaultIntrinsics(sequenceName: "fr3_office"),
                       Intrinsics(fx: 535.4, fy: 539.2, cx: 320.1, cy: 247.6, width: 640, height: 480))
        XCTAssertEqual(TUMReader.defaultIntrinsics(sequenceName: "my_recording"),
                       Intrinsics(fx: 525, fy: 525, cx: 319.5, cy: 239.5, width: 640, height: 480))
        // Without the override the fr2 camera is chosen and its 640x480 size does not fit the 8x6 fixture.
        let (root, _) = try fixture()
        let e = expectMapError(.sizeMismatch) { _ = try TUMReader(directory: root) }
        XCTAssertTrue(e?.message.contains("freiburg2") ?? false, "\(String(describing: e))")
    }

    func testBadListsAndGroundTruth() throws {
        let (root, _) = try fixture()
        let gt = root.appendingPathComponent("groundtruth.txt")
        try Data("# c\n1.05 0 0 0 0 0 0 1\n1.45 0 0 0 0 0 1\n".utf8).write(to: gt)
        var e = expectMapError(.badPose) { _ = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertTrue(e?.message.contains("line 3 has 7 numbers") ?? false, "\(String(describing: e))")
        XCTAssertEqual(e?.file, gt.path)
        try Data("1.05 0 0 0 0 0 0 1\n1.45 0 0 zero 0 0 0 1\n".utf8).write(to: gt)
        e = expectMapError(.badFormat) { _ = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertTrue(e?.message.contains("line 2") ?? false)
        try Data("2.0 0 0 0 0 0 0 1\n3.0 0 0 0 0 0 0 1\n".utf8).write(to: gt)
        e = expectMapError(.badFormat) { _ = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertTrue(e?.message.contains("outside the poses") ?? false)
        try Data("1.05 0 0 0 0 0 0 1\n1.45 0 0 0 0 0 0 1\n".utf8).write(to: gt)
        try Data("1.0\n".utf8).write(to: root.appendingPathComponent("rgb.txt"))
        e = expectMapError(.badFormat) { _ = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
        XCTAssertTrue(e?.file?.hasSuffix("rgb.txt") ?? false)
        try FileManager.default.removeItem(at: root.appendingPathComponent("rgb.txt"))
        expectMapError(.missingFile) { _ = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera) }
    }

    func testMissingImageNamesFrame() throws {
        let (root, _) = try fixture()
        let r = try TUMReader(directory: root, intrinsics: DatasetFixtures.smallCamera)
        try FileManager.default.removeItem(at: root.appendingPathComponent("rgb/1.299000.png"))
        let e = expectMapError(.missingFile) { _ = try r.frame(at: 1) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertTrue(e?.file?.hasSuffix("rgb/1.299000.png") ?? false)
    }
}
