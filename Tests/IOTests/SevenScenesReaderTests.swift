import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class SevenScenesReaderTests: DatasetTestCase {
    func testFramesStartingAtEightAreIndexedFromZero() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.sevenScenes(in: root, first: 8)
        let r = try SevenScenesReader(directory: root)
        XCTAssertEqual(r.info.format, "7scenes")
        XCTAssertEqual(r.framesDirectory.lastPathComponent, "rgbd-frames")
        XCTAssertEqual(r.frameNumbers, [8, 9, 10])
        XCTAssertEqual(r.info.frameCount, 3)
        // camera-intrinsics.txt one level above rgbd-frames/, tab-separated 3x3.
        XCTAssertEqual(r.info.intrinsics, fx.intrinsics)
        XCTAssertEqual(r.intrinsicsSource, root.appendingPathComponent("camera-intrinsics.txt").path)
        for i in 0..<3 {
            let f = try r.frame(at: i)
            XCTAssertEqual(f.index, i)
            XCTAssertTrue(r.files(at: i).contains(String(format: "frame-%06d", 8 + i)))
            assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 1000)
            XCTAssertEqual(f.depth[1, 0], 0)  // 65535 = no reading
            XCTAssertEqual(f.depth[2, 0], Float(1000 + 100 * i + 2) / 1000, accuracy: 1e-7)
            // Pose files with tabs, CRLF and exponents, camera-to-world as written.
            assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 1e-15)
            XCTAssertEqual(f.rgb, fx.colors[i])
        }
        // Reading the frames folder directly gives the same frames.
        let direct = try SevenScenesReader(directory: root.appendingPathComponent("rgbd-frames"))
        XCTAssertEqual(try direct.frame(at: 2), try r.frame(at: 2))
    }

    func testSeqSubdirectoryJpegColourAndDefaultIntrinsics() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.sevenScenes(in: root.appendingPathComponent("seq-01"), first: 0, colorExtension: "jpg")
        // The fixture's K file sits in seq-01's parent... move it away to get the 7-Scenes default.
        try FileManager.default.removeItem(at: root.appendingPathComponent("seq-01/camera-intrinsics.txt"))
        try FileManager.default.moveItem(at: root.appendingPathComponent("seq-01/rgbd-frames"),
                                         to: root.appendingPathComponent("seq-02"))
        try FileManager.default.removeItem(at: root.appendingPathComponent("seq-01"))
        // 640x480 default does not fit 8x6 images: a clear error, then an override works.
        let e = expectMapError(.sizeMismatch) { _ = try SevenScenesReader(directory: root) }
        XCTAssertTrue(e?.message.contains("585") ?? false || e?.message.contains("640x480") ?? false)
        XCTAssertEqual(SevenScenesReader.defaultIntrinsics, Intrinsics(fx: 585, fy: 585, cx: 320, cy: 240, width: 640, height: 480))
        let r = try SevenScenesReader(directory: root, intrinsics: DatasetFixtures.smallCamera)
        XCTAssertEqual(r.framesDirectory.lastPathComponent, "seq-02")
        XCTAssertEqual(r.intrinsicsSource, "override")
        XCTAssertLessThanOrEqual(maxDifference(try r.frame(at: 1).rgb, fx.colors[1]), 6)
    }

    func testBadInput() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.sevenScenes(in: root)
        let dir = root.appendingPathComponent("rgbd-frames")
        let r = try SevenScenesReader(directory: root)
        try Data("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 7\n".utf8).write(to: dir.appendingPathComponent("frame-000009.pose.txt"))
        var e = expectMapError(.badPose) { _ = try r.frame(at: 1) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertTrue(e?.file?.hasSuffix("frame-000009.pose.txt") ?? false)
        try Data().write(to: dir.appendingPathComponent("frame-000010.color.png"))
        e = expectMapError(.truncatedFile) { _ = try r.frame(at: 2) }
        XCTAssertEqual(e?.frame, 2)
        try Data("585 0 320\n0 585\n".utf8).write(to: root.appendingPathComponent("camera-intrinsics.txt"))
        expectMapError(.badCalibration) { _ = try SevenScenesReader(directory: root) }
        try Data(repeating: 7, count: 100).write(to: dir.appendingPathComponent("frame-000008.depth.png"))
        e = expectMapError(.corruptFile) { _ = try r.frame(at: 0) }
        XCTAssertEqual(e?.frame, 0)
        // The first depth image fixes the resolution: a corrupt one is reported when opening.
        e = expectMapError(.corruptFile) { _ = try SevenScenesReader(directory: root) }
        XCTAssertTrue(e?.file?.hasSuffix("frame-000008.depth.png") ?? false)
        expectMapError(.missingFile) { _ = try SevenScenesReader(directory: try makeTemp()) }
    }
}

final class LabelFusionReaderTests: DatasetTestCase {
    func testPackedDepthSegmentationAndIntrinsics() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.labelFusion(in: root, kind: .segmentation)
        let r = try LabelFusionReader(directory: root)
        XCTAssertEqual(r.info.format, "labelfusion")
        XCTAssertEqual(r.labels, .segmentation)
        XCTAssertEqual(r.info.intrinsics, fx.intrinsics)  // from camera-intrinsics.color.txt
        XCTAssertNil(r.groundTruthVocabulary)  // generic, built from the ids present
        for i in 0..<3 {
            let f = try r.frame(at: i)
            // metres = (raw >> 3) / 10000: the low 3 bits (5 in the fixture) are dropped.
            assertDepth(f.depth, raw: fx.depthRaw[i], unitsPerMetre: 10000)
            XCTAssertEqual(f.depth[2, 1], Float(4000 + 100 * i + 12) / 10000, accuracy: 1e-7)
            assertPosesEqual(f.T_W_C, fx.poses[i], accuracy: 0)
            let gt = try XCTUnwrap(try r.groundTruth(at: i))
            XCTAssertEqual(gt.semantic, fx.groundTruth[i].semantic)
            XCTAssertEqual(gt.instance, fx.groundTruth[i].instance)
            XCTAssertEqual(Set(gt.semantic.data), [0, 3, 12])
        }
    }

    func testObjectMaskIsOneObjectClass() throws {
        let root = try makeTemp()
        let fx = try DatasetFixtures.labelFusion(in: root, kind: .objectMask)
        let r = try LabelFusionReader(directory: root)
        XCTAssertEqual(r.labels, .objectMask)
        XCTAssertEqual(r.groundTruthVocabulary?.classes.map(\.name), ["object"])
        let gt = try XCTUnwrap(try r.groundTruth(at: 1))
        XCTAssertEqual(gt.semantic, fx.groundTruth[1].semantic)
        XCTAssertEqual(gt.semantic[7, 0], 1)
        XCTAssertEqual(gt.semantic[0, 0], 0)
        try FileManager.default.removeItem(at: root.appendingPathComponent("frame-000002.mask.png"))
        let e = expectMapError(.missingFile) { _ = try r.groundTruth(at: 2) }
        XCTAssertEqual(e?.frame, 2)
    }

    func testSixteenBitSegmentationIsRefusedWithAClearError() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.labelFusion(in: root, kind: .segmentation)
        let big = Gray16Image(width: 8, height: 6, repeating: 300)
        try Data(try PNGCodec.encodeGray16(big)).write(to: root.appendingPathComponent("frame-000001.segm.png"))
        let e = expectMapError(.badFormat) { _ = try LabelFusionReader(directory: root).groundTruth(at: 1) }
        XCTAssertEqual(e?.frame, 1)
        XCTAssertTrue(e?.file?.hasSuffix("frame-000001.segm.png") ?? false)
    }
}
