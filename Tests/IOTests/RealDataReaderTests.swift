import Foundation
import IO
import MapCore
import TestSupport
import XCTest

/// Reads the real sequences of `../shared/data` (beside the package root); skipped when the folder is absent.
final class RealDataReaderTests: DatasetTestCase {
    /// `../shared/data/<name>` relative to the package root, derived from this file's path.
    func sharedData(_ name: String, filePath: String = #filePath) throws -> URL {
        let packageRoot = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/\(name)")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("real data '\(name)' not found at \(url.path)")
        }
        return url
    }

    /// Median of the valid depths on a 4-pixel grid (the debug build sorts 19k values, not 300k).
    func median(_ d: DepthImage) -> Float {
        var valid: [Float] = []
        for y in stride(from: 0, to: d.height, by: 4) { for x in stride(from: 0, to: d.width, by: 4) where d[x, y] > 0 { valid.append(d[x, y]) } }
        valid.sort()
        return valid.isEmpty ? 0 : valid[valid.count / 2]
    }

    /// Reads and validates frames `range`; returns their depth medians.
    func readAndValidate(_ r: any SequenceReader, _ range: Range<Int>) throws -> [Float] {
        let validator = FrameValidator(vocabulary: nil)
        return try range.map { i in
            let f = try r.frame(at: i)
            try validator.validate(f, files: r.files(at: i))
            return median(f.depth)
        }
    }

    /// Fraction of frame a's valid pixels (8-pixel grid) that land, through the poses, on a pixel of frame b whose
    /// depth agrees within 3 cm + 3 %. High with the right convention (T_W_C: p_W = T p_C); low if the poses were
    /// world-to-camera. `inverted` evaluates the wrong convention for comparison.
    func reprojectionAgreement(_ a: Frame, _ b: Frame, inverted: Bool = false) -> Double {
        let T_W_A = inverted ? a.T_W_C.inverse : a.T_W_C
        let T_B_W = inverted ? b.T_W_C : b.T_W_C.inverse
        var hits = 0, tried = 0
        for y in stride(from: 0, to: a.depth.height, by: 8) {
            for x in stride(from: 0, to: a.depth.width, by: 8) {
                let z = Double(a.depth[x, y])
                guard z > 0 else { continue }
                let p_B = T_B_W * (T_W_A * a.intrinsics.unproject(u: Double(x), v: Double(y), depth: z))
                guard let uv = b.intrinsics.project(p_B) else { continue }
                let u = Int(uv.x.rounded()), v = Int(uv.y.rounded())
                guard u >= 0, v >= 0, u < b.depth.width, v < b.depth.height, b.depth[u, v] > 0 else { continue }
                tried += 1
                if abs(Double(b.depth[u, v]) - p_B.z) < 0.03 + 0.03 * p_B.z { hits += 1 }
            }
        }
        return tried < 100 ? 0 : Double(hits) / Double(tried)
    }

    /// The poses are camera-to-world: depth of frame i reprojected through them agrees with frame j (and does not
    /// when the poses are read as world-to-camera).
    func assertCameraToWorld(_ r: any SequenceReader, _ i: Int, _ j: Int, file: StaticString = #filePath,
                             line: UInt = #line) throws {
        let a = try r.frame(at: i), b = try r.frame(at: j)
        let right = reprojectionAgreement(a, b), wrong = reprojectionAgreement(a, b, inverted: true)
        print("\(r.info.name) frames \(i), \(j): depth agreement camera-to-world \(right), world-to-camera \(wrong)")
        XCTAssertGreaterThan(right, 0.8, file: file, line: line)
        XCTAssertGreaterThan(right, wrong + 0.4, file: file, line: line)
    }

    func threeDMatch() throws -> SevenScenesReader {
        let root = try sharedData("3dmatch-sample")
        XCTAssertEqual(SequenceFormats.detect(root), .sevenScenes)
        return try XCTUnwrap(try SequenceFormats.open(root) as? SevenScenesReader)
    }

    /// 3dmatch-sample: 50 frames frame-000008 ... frame-000057 in rgbd-frames/, 640x480, K fx = fy = 585,
    /// cx 320, cy 240 (camera-intrinsics.txt one level up); pose files are CRLF with tabs and 3-digit exponents;
    /// depth medians 1.71 ... 1.90 m.
    func testThreeDMatchSampleLayoutAndFirstHalf() throws {
        let r = try threeDMatch()
        XCTAssertEqual(r.info.frameCount, 50)
        XCTAssertEqual(r.frameNumbers, Array(8...57))
        XCTAssertEqual(r.info.intrinsics, Intrinsics(fx: 585, fy: 585, cx: 320, cy: 240, width: 640, height: 480))
        let medians = try readAndValidate(r, 0..<25)
        print("3dmatch medians 0..<25", medians)
        XCTAssertTrue(medians.allSatisfy { $0 > 1.5 && $0 < 2.1 }, "\(medians)")
    }

    func testThreeDMatchSampleSecondHalfAndPoseConvention() throws {
        let r = try threeDMatch()
        let medians = try readAndValidate(r, 25..<50)
        print("3dmatch medians 25..<50", medians)
        XCTAssertTrue(medians.allSatisfy { $0 > 1.5 && $0 < 2.1 }, "\(medians)")
        // First and last frame: 95 % of depths agree through camera-to-world poses, 14 % the other way round.
        try assertCameraToWorld(r, 0, 49)
    }

    /// redwood-5: RGBD/color/00000...00004.jpg, RGBD/depth/*.png (mm), trajectory.log blocks "i i i+1" + 4x4
    /// camera-to-world; camera_primesense.json beside RGBD/ (525, 525, 319.5, 239.5; column-major).
    func testRedwoodFive() throws {
        let root = try sharedData("redwood-5")
        XCTAssertEqual(SequenceFormats.detect(root), .redwood)
        let r = try XCTUnwrap(try SequenceFormats.open(root) as? RedwoodReader)
        XCTAssertEqual(r.info.frameCount, 5)
        XCTAssertEqual(r.frameNumbers, [0, 1, 2, 3, 4])
        XCTAssertEqual(r.info.intrinsics, Intrinsics(fx: 525, fy: 525, cx: 319.5, cy: 239.5, width: 640, height: 480))
        XCTAssertTrue(r.intrinsicsSource.hasSuffix("camera_primesense.json"))
        let medians = try readAndValidate(r, 0..<5)
        print("redwood medians", medians)
        XCTAssertTrue(medians.allSatisfy { abs($0 - 1.861) < 0.05 }, "\(medians)")  // 1.861 m in all five
        // 97 % agreement camera-to-world, 43 % world-to-camera (the five frames barely move).
        try assertCameraToWorld(r, 0, 4)
    }

    /// label-fusion: 15 frames frame-000000 ... 000014 each; depth = (raw >> 3) / 10000 m with per-frame medians
    /// 0.41 ... 0.46 m (labels, median of medians 0.44) and 0.40 ... 0.62 m (masks); segm ids present: 0, 48, 132;
    /// masks 0/255. Poses camera-to-world (neighbours agree 86 % / 99.6 %, 0 % read the other way).
    func testLabelFusionLabels() throws {
        let root = try sharedData("label-fusion/labels")
        XCTAssertEqual(SequenceFormats.detect(root), .labelFusion)
        let r = try XCTUnwrap(try SequenceFormats.open(root) as? LabelFusionReader)
        XCTAssertEqual(r.info.frameCount, 15)
        XCTAssertEqual(r.frameNumbers, Array(0..<15))
        XCTAssertEqual(r.labels, .segmentation)
        XCTAssertEqual(r.info.intrinsics.fx, 611.68573, accuracy: 1e-6)
        XCTAssertEqual(r.info.intrinsics.cx, 317.676056, accuracy: 1e-6)
        XCTAssertEqual(r.info.intrinsics.cy, 243.15184, accuracy: 1e-6)
        let medians = try readAndValidate(r, 0..<15)
        print("label-fusion labels medians", medians)
        let sorted = medians.sorted()
        XCTAssertEqual(sorted[7], 0.44, accuracy: 0.02)
        var classes = Set<UInt16>()
        for i in [0, 7, 14] { classes.formUnion(try XCTUnwrap(try r.groundTruth(at: i)).semantic.data) }
        XCTAssertEqual(classes, [0, 48, 132])
        try assertCameraToWorld(r, 5, 6)
    }

    /// Two real label-fusion frames converted to our format and read back: same images, generic vocabulary of the
    /// ids present (48, 132), masks valid.
    func testLabelFusionConversion() throws {
        let root = try sharedData("label-fusion/labels")
        let source = try LabelFusionReader(directory: root)
        let out = try makeTemp().appendingPathComponent("lf")
        let report = try SequenceConverter.convert(source, to: out, options: .init(frames: 0..<2, seed: 3))
        XCTAssertEqual(report.vocabulary?.classes.map(\.name), ["class_48", "class_132"])
        let back = try PanoSequenceReader(directory: out)
        let validator = FrameValidator(vocabulary: back.info.vocabulary)
        for i in 0..<2 {
            let a = try source.frame(at: i), b = try back.frame(at: i)
            XCTAssertEqual(b.rgb, a.rgb)
            XCTAssertEqual(b.depth, a.depth)
            XCTAssertEqual(b.T_W_C, a.T_W_C)
            try validator.validate(b)
            XCTAssertEqual(b.masks?.segments.map(\.classID).sorted(), [48, 132])
        }
    }

    func testLabelFusionMasks() throws {
        let root = try sharedData("label-fusion/masks")
        XCTAssertEqual(SequenceFormats.detect(root), .labelFusion)
        let r = try XCTUnwrap(try SequenceFormats.open(root) as? LabelFusionReader)
        XCTAssertEqual(r.info.frameCount, 15)
        XCTAssertEqual(r.labels, .objectMask)
        let medians = try readAndValidate(r, 0..<15)
        print("label-fusion masks medians", medians)
        XCTAssertTrue(medians.allSatisfy { $0 > 0.3 && $0 < 0.8 }, "\(medians)")
        let gt = try XCTUnwrap(try r.groundTruth(at: 0))
        XCTAssertEqual(Set(gt.semantic.data), [0, 1])
        // Frames orbit the table about 12 degrees apart: compare neighbours.
        try assertCameraToWorld(r, 0, 1)
    }
}
