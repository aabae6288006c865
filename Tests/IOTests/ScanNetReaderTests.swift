import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class ScanNetReaderTests: DatasetTestCase {
    func testReadsFramesInNumericOrderWithDepthIntrinsicsAndResizedColour() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: root)
        let r = try ScanNetReader(directory: root)
        XCTAssertEqual(r.info.format, "scannet")
        XCTAssertEqual(r.info.frameCount, 3)
        XCTAssertEqual(r.frameNumbers, [0, 2, 10])  // numeric, not text order (0, 10, 2)
        // The depth camera's intrinsics, at the depth resolution.
        XCTAssertEqual(r.info.intrinsics, fx.intrinsics)
        XCTAssertEqual(r.colorIntrinsics, Intrinsics(fx: 14, fy: 12, cx: 7.5, cy: 5.5, width: 16, height: 12))
        XCTAssertEqual(r.info.depthUnitsPerMetre, 1000)
        for i in 0..<3 {
            let f = try r.frame(at: i)
            XCTAssertEqual(f.index, i)
            assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 1000)
            XCTAssertEqual(f.depth[5, 3], Float(1000 + 100 * i + 30 + 5) / 1000, accuracy: 1e-7)
            assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 0)
            XCTAssertEqual(f.intrinsics, fx.intrinsics)
            // Colour: the 16x12 JPEG decoded, then resized bilinearly to 8x6.
            XCTAssertEqual(f.rgb.size, ImageSize(width: 8, height: 6))
            let jpeg = try JPEGCodec().decode(try Files.read(root.appendingPathComponent("color/\(fx.frameNumbers[i]).jpg")),
                                             source: "fixture")
            XCTAssertEqual(f.rgb, jpeg.resizedBilinear(width: 8, height: 6))
            // The fixture is constant in 2x2 blocks, so the 2x downsample lands on the block values (up to JPEG loss).
            let expected = RGBImage(width: 8, height: 6, channels: 3,
                                    data: (0..<48).flatMap { p in (0..<3).map { fx.colors[i][2 * (p % 8), 2 * (p / 8), $0] } })
            XCTAssertLessThanOrEqual(maxDifference(f.rgb, expected), 6)
            XCTAssertNoThrow(try FrameValidator(vocabulary: nil).validate(f))
        }
    }

    func testInfinitePoseIsKeptForTheValidatorToRefuse() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.scanNet(in: root, infPoseFrame: 1)
        let r = try ScanNetReader(directory: root)
        let f = try r.frame(at: 1)
        XCTAssertTrue(f.T_W_C.rowMajor4x4.prefix(12).allSatisfy { $0 == -Double.infinity })
        let e = expectMapError(.badPose) { try FrameValidator(vocabulary: nil).validate(f, files: r.files(at: 1)) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertNoThrow(try r.frame(at: 2))
    }

    func testGroundTruthIsMappedToNYU40AndResizedNearest() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: root)
        let r = try ScanNetReader(directory: root)
        XCTAssertTrue(r.hasGroundTruth)
        XCTAssertNil(r.labelMap)
        XCTAssertEqual(r.groundTruthVocabulary?.classes.count, 40)
        XCTAssertEqual(r.groundTruthVocabulary?.class(id: 1)?.isThing, false)  // wall
        XCTAssertEqual(r.groundTruthVocabulary?.class(id: 22)?.name, "ceiling")
        XCTAssertEqual(r.groundTruthVocabulary?.class(id: 5)?.isThing, true)  // chair
        for i in 0..<3 {
            let gt = try XCTUnwrap(try r.groundTruth(at: i))
            XCTAssertEqual(gt.semantic, fx.groundTruth[i].semantic)
            XCTAssertEqual(gt.instance, fx.groundTruth[i].instance)
            XCTAssertEqual(gt.semantic[0, 0], 0)  // ScanNet id 300 is outside NYU40: unlabelled
            XCTAssertEqual(gt.semantic[7, 2], 5)
            XCTAssertEqual(gt.instance[7, 2], UInt16(7 + i))
        }
    }

    func testEightBitLabelImagesReadTheSame() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: root, labels8Bit: true)
        let r = try ScanNetReader(directory: root)
        for i in 0..<3 {
            let gt = try XCTUnwrap(try r.groundTruth(at: i))
            XCTAssertEqual(gt.semantic, fx.groundTruth[i].semantic)
            XCTAssertEqual(gt.instance, fx.groundTruth[i].instance)
        }
    }

    func testLabelTableMapsScanNetIDs() throws {
        let root = try makeTemp()
        let scene = root.appendingPathComponent("scene0000_00")
        _ = try DatasetFixtures.scanNet(in: scene)
        // The table sits beside the scene folders, as in ScanNet's release.
        let tsv = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\n1\twall\twall\t8277\t1\t12\n"
            + "5\tchair\tchair\t4923\t5\t4\n7\ttable\ttable\t100\t14\t6\n300\tthing\tthing\t3\t40\t9\n"
        try Data(tsv.utf8).write(to: root.appendingPathComponent("scannetv2-labels.combined.tsv"))
        let r = try ScanNetReader(directory: scene)
        XCTAssertEqual(r.labelMap?[7], 14)
        let gt = try XCTUnwrap(try r.groundTruth(at: 0))
        XCTAssertEqual(gt.semantic[0, 0], 40)  // 300 -> otherprop
        XCTAssertEqual(gt.semantic[3, 5], 14)  // table -> desk via the table's nyu40id column
        try Data("id\tname\n1\twall\n".utf8).write(to: root.appendingPathComponent("scannetv2-labels.combined.tsv"))
        expectMapError(.badFormat) { _ = try ScanNetReader(directory: scene) }
    }

    func testWithoutLabelsThereIsNoGroundTruth() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.scanNet(in: root, labels: false)
        let r = try ScanNetReader(directory: root)
        XCTAssertFalse(r.hasGroundTruth)
        XCTAssertNil(try r.groundTruth(at: 0))
    }

    func testBadFilesNameFileAndFrame() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.scanNet(in: root)
        let r = try ScanNetReader(directory: root)
        // Truncated JPEG.
        try truncate(root.appendingPathComponent("color/2.jpg"), keeping: 0.9)
        var e = expectMapError(.truncatedFile) { _ = try r.frame(at: 1) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertEqual(e?.file, root.appendingPathComponent("color/2.jpg").path)
        // Missing pose file.
        try FileManager.default.removeItem(at: root.appendingPathComponent("pose/10.txt"))
        e = expectMapError(.missingFile) { _ = try r.frame(at: 2) }
        XCTAssertEqual(e?.frame, 2)
        XCTAssertTrue(e?.file?.hasSuffix("pose/10.txt") ?? false)
        // Wrong number of pose entries.
        try Data("1 0 0 0\n0 1 0 0\n0 0 1 0\n".utf8).write(to: root.appendingPathComponent("pose/0.txt"))
        e = expectMapError(.badPose) { _ = try r.frame(at: 0) }
        XCTAssertEqual(e?.frame, 0)
        XCTAssertTrue(e?.message.contains("12 numbers") ?? false)
        // Malformed number.
        try Data("1 0 0 0\n0 1 0 0\n0 0 1 x0\n0 0 0 1\n".utf8).write(to: root.appendingPathComponent("pose/0.txt"))
        e = expectMapError(.badFormat) { _ = try r.frame(at: 0) }
        XCTAssertTrue(e?.message.contains("line 3") ?? false)
        // Truncated label PNG.
        try truncate(root.appendingPathComponent("label-filt/0.png"), keeping: 0.6)
        e = expectMapError(.truncatedFile) { _ = try r.groundTruth(at: 0) }
        XCTAssertEqual(e?.frame, 0)
        // Intrinsics with a wrong count.
        try Data("577 0 318\n0 578 242\n".utf8).write(to: root.appendingPathComponent("intrinsic/intrinsic_depth.txt"))
        e = expectMapError(.badCalibration) { _ = try ScanNetReader(directory: root) }
        XCTAssertTrue(e?.file?.hasSuffix("intrinsic_depth.txt") ?? false)
        try FileManager.default.removeItem(at: root.appendingPathComponent("intrinsic/intrinsic_depth.txt"))
        expectMapError(.missingFile) { _ = try ScanNetReader(directory: root) }
    }
}
