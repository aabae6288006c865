import Foundation
import IO
import MapCore
import TestSupport
import XCTest

/// Shared helpers for the dataset reader tests, layout detection and bad-input tests across layouts.
class DatasetTestCase: XCTestCase {
    /// A fresh temp directory removed after the test.
    func makeTemp(_ label: String = "pano-datasets") throws -> URL {
        let t = try TempDirectory(label)
        addTeardownBlock { t.remove() }
        return t.url
    }

    /// Runs `body`, expecting a `MapError` of `kind`; returns it for further checks.
    @discardableResult
    func expectMapError(_ kind: MapError.Kind, file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> Void) -> MapError? {
        do {
            try body()
            XCTFail("expected a MapError of kind \(kind), got no error", file: file, line: line)
        } catch let e as MapError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("expected a MapError, got \(error)", file: file, line: line)
        }
        return nil
    }

    func truncate(_ url: URL, keeping fraction: Double = 0.5) throws {
        let data = try Data(contentsOf: url)
        try data.prefix(Int(Double(data.count) * fraction)).write(to: url)
    }

    func assertPosesEqual(_ a: RigidTransform, _ b: RigidTransform, accuracy: Double = 1e-12,
                          file: StaticString = #filePath, line: UInt = #line) {
        for (x, y) in zip(a.rowMajor4x4, b.rowMajor4x4) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
    }

    /// Depth in metres equals raw / unitsPerMetre (0 stays 0).
    func assertDepth(_ depth: DepthImage, raw: Gray16Image, unitsPerMetre: Double,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(depth.size, raw.size, file: file, line: line)
        for (d, r) in zip(depth.data, raw.data) {
            XCTAssertEqual(Double(d), Double(r) / unitsPerMetre, accuracy: 1e-6, file: file, line: line)
            if r == 0 { XCTAssertEqual(d, 0, file: file, line: line) }
        }
    }

    /// Largest per-sample difference of two same-size 8-bit images.
    func maxDifference(_ a: RGBImage, _ b: RGBImage) -> Int {
        guard a.size == b.size, a.channels == b.channels else { return Int.max }
        return zip(a.data, b.data).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }
}

final class DatasetReaderTests: DatasetTestCase {
    // MARK: detection

    func testDetectionPicksEachLayout() throws {
        let root = try makeTemp()
        func sub(_ name: String) -> URL { root.appendingPathComponent(name) }
        _ = try DatasetFixtures.scanNet(in: sub("scene0000_00"))
        _ = try DatasetFixtures.replica(in: sub("room0"))
        _ = try DatasetFixtures.tum(in: sub("rgbd_dataset_freiburg1_xyz"))
        _ = try DatasetFixtures.sevenScenes(in: sub("3dmatch"))
        _ = try DatasetFixtures.labelFusion(in: sub("lf-labels"), kind: .segmentation)
        _ = try DatasetFixtures.labelFusion(in: sub("lf-masks"), kind: .objectMask)
        _ = try DatasetFixtures.redwood(in: sub("redwood"))
        XCTAssertEqual(SequenceFormats.detect(sub("scene0000_00")), .scannet)
        XCTAssertEqual(SequenceFormats.detect(sub("room0")), .replica)
        XCTAssertEqual(SequenceFormats.detect(sub("rgbd_dataset_freiburg1_xyz")), .tum)
        XCTAssertEqual(SequenceFormats.detect(sub("3dmatch")), .sevenScenes)
        XCTAssertEqual(SequenceFormats.detect(sub("3dmatch/rgbd-frames")), .sevenScenes)
        XCTAssertEqual(SequenceFormats.detect(sub("lf-labels")), .labelFusion)
        XCTAssertEqual(SequenceFormats.detect(sub("lf-masks")), .labelFusion)
        XCTAssertEqual(SequenceFormats.detect(sub("redwood")), .redwood)
        XCTAssertEqual(SequenceFormats.detect(sub("redwood/RGBD")), .redwood)

        // open() builds the matching reader (overrides where the fixture's images are not the layout's camera).
        XCTAssertTrue(try SequenceFormats.open(sub("scene0000_00")) is ScanNetReader)
        let k8 = DatasetFixtures.smallCamera
        XCTAssertTrue(try SequenceFormats.open(sub("room0"), options: .init(intrinsics: k8)) is ReplicaReader)
        XCTAssertTrue(try SequenceFormats.open(sub("rgbd_dataset_freiburg1_xyz"), options: .init(intrinsics: k8)) is TUMReader)
        XCTAssertTrue(try SequenceFormats.open(sub("3dmatch")) is SevenScenesReader)
        XCTAssertTrue(try SequenceFormats.open(sub("lf-labels")) is LabelFusionReader)
        XCTAssertTrue(try SequenceFormats.open(sub("redwood")) is RedwoodReader)

        // An explicit choice overrides detection: the label-fusion fixture read as plain 7-Scenes.
        // (The fixture has no camera-intrinsics.txt, and the 7-Scenes default is for 640x480: pass the camera.)
        let forced = try SequenceFormats.open(sub("lf-labels"), options: .init(layout: .sevenScenes, intrinsics: k8))
        XCTAssertTrue(forced is SevenScenesReader)
        XCTAssertEqual(forced.info.format, "7scenes")
        XCTAssertTrue(try SequenceFormats.open(sub("lf-labels"), format: "7-scenes", intrinsics: k8) is SevenScenesReader)
        XCTAssertEqual(DatasetLayout(name: "3DMatch"), .sevenScenes)
        XCTAssertEqual(DatasetLayout(name: "label-fusion"), .labelFusion)
    }

    func testDetectionFindsOwnFormat() throws {
        let root = try makeTemp()
        let k = Intrinsics(fx: 5, fy: 5, cx: 3.5, cy: 2.5, width: 8, height: 6)
        let w = try SequenceWriter(directory: root, name: "own", intrinsics: k)
        try w.write(Frame(index: 0, rgb: DatasetFixtures.colorImage(0), depth: DepthImage(width: 8, height: 6, repeating: 1),
                          T_W_C: .identity, intrinsics: k))
        try w.finish()
        XCTAssertEqual(SequenceFormats.detect(root), .pano)
        XCTAssertTrue(try SequenceFormats.open(root) is PanoSequenceReader)
        expectMapError(.badArgument) { _ = try SequenceFormats.open(root, options: .init(intrinsics: k)) }
    }

    func testUnknownLayoutListsWhatWasLookedFor() throws {
        let root = try makeTemp()
        try Data("hello".utf8).write(to: root.appendingPathComponent("notes.txt"))
        let e = expectMapError(.unsupported) { _ = try SequenceFormats.open(root) }
        XCTAssertEqual(e?.file, root.path)
        for layout in DatasetLayout.allCases { XCTAssertTrue(e?.message.contains(layout.signature) ?? false, "\(layout)") }
        expectMapError(.missingFile) { _ = try SequenceFormats.open(root.appendingPathComponent("absent")) }
        expectMapError(.badArgument) { _ = try SequenceFormats.open(root, format: "kinectfusion") }
    }

    /// A forced layout on the wrong directory fails with a clear error, not a crash.
    func testForcedWrongLayoutFailsCleanly() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.redwood(in: root)
        for layout in DatasetLayout.allCases where layout != .redwood {
            do { _ = try SequenceFormats.open(root, options: .init(layout: layout)) } catch let e as MapError {
                XCTAssertNotNil(e.file, "\(layout): \(e)")
            }
        }
    }

    func testFrameIndexOutOfRangeIsAnError() throws {
        let root = try makeTemp()
        _ = try DatasetFixtures.sevenScenes(in: root)
        let r = try SevenScenesReader(directory: root)
        expectMapError(.badArgument) { _ = try r.frame(at: 3) }
        expectMapError(.badArgument) { _ = try r.frame(at: -1) }
    }
}
