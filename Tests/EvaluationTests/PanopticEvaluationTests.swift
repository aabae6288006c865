import Evaluation
import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class PanopticEvaluationTests: XCTestCase {
    static let wall = 1, chair = 2
    let vocabulary = Vocabulary(classes: [
        SemanticClass(id: wall, name: "wall", isThing: false, color: [200, 200, 200]),
        SemanticClass(id: chair, name: "chair", isThing: true, color: [255, 0, 0]),
    ])
    var tmp: TempDirectory!
    override func setUpWithError() throws { tmp = try TempDirectory("pano-paneval") }
    override func tearDown() { tmp.remove() }

    var sequence: URL { tmp.appending("seq") }
    var predictions: URL { tmp.appending("map/heldout") }

    /// A 4x4 image from 4 rows of 4 values.
    func image(_ rows: [[Int]]) -> Gray16Image {
        Gray16Image(width: rows[0].count, height: rows.count, channels: 1, data: rows.flatMap { $0.map { UInt16($0) } })
    }
    func write(_ img: Gray16Image, _ url: URL) throws { try Files.writeAtomically(try PNGCodec.encodeGray16(img), to: url) }

    /// GT of two frames (indices 0 and 5), 4x4 each: rows 0-1 wall; frame 0: row 2 chair #1, row 3 chair #2;
    /// frame 5: row 2 chair #2, row 3 chair #1. Each chair has 8 pixels over the two frames, the wall 16.
    func writeGroundTruth() throws {
        let w = Self.wall, c = Self.chair
        let sem = image([[w, w, w, w], [w, w, w, w], [c, c, c, c], [c, c, c, c]])
        for (f, inst) in [(0, [1, 2]), (5, [2, 1])] {
            let g = PanopticEvaluation.groundTruthURLs(sequence, frame: f)
            try write(sem, g.semantic)
            try write(image([[0, 0, 0, 0], [0, 0, 0, 0], Array(repeating: inst[0], count: 4),
                             Array(repeating: inst[1], count: 4)]), g.instance)
        }
    }

    /// Predicted frame: GT classes, with the chair rows' instance ids given.
    func writePrediction(frame: Int, row2: [Int], row3: [Int]) throws {
        let w = Self.wall, c = Self.chair
        let p = PanopticEvaluation.predictionURLs(predictions, frame: frame)
        try write(image([[w, w, w, w], [w, w, w, w], [c, c, c, c], [c, c, c, c]]), p.semantic)
        try write(image([[0, 0, 0, 0], [0, 0, 0, 0], row2, row3]), p.instance)
    }

    func evaluate() throws -> (metrics: PanopticMetrics, frames: [Int]) {
        try PanopticEvaluation.evaluate2D(predictions: predictions, sequence: sequence, vocabulary: vocabulary)
    }

    /// Predicted ids differ from GT (#1 -> 20, #2 -> 10) but are the same in both frames: every segment matches with
    /// IoU 1, so PQ = SQ = RQ = 1 and everything else is perfect too.
    func testConsistentRenamedInstancesArePerfect() throws {
        try writeGroundTruth()
        try writePrediction(frame: 0, row2: [20, 20, 20, 20], row3: [10, 10, 10, 10])
        try writePrediction(frame: 5, row2: [10, 10, 10, 10], row3: [20, 20, 20, 20])
        try Files.writeAtomically("ignored", to: predictions.appendingPathComponent("notes.txt"))
        let (m, frames) = try evaluate()
        XCTAssertEqual(frames, [0, 5])
        XCTAssertEqual(m.elementCount, 32)
        for v in [m.pq, m.sq, m.rq, m.things.pq, m.stuff.pq, m.mIoU, m.mAcc, m.mCov, m.mWCov] { XCTAssertEqual(v, 1) }
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [3, 0, 0])
        XCTAssertEqual(m.instanceCount, 2)
    }

    /// Ids that are consistent within a frame but swapped between frames (as a per-frame segmenter's are) fail the
    /// scene-level evaluation: predicted #10 covers half of each chair, IoU 4 / (8 + 8 - 4) = 1/3 with either.
    /// Chairs: TP 0, FP 2, FN 2, PQ 0; wall PQ 1; overall PQ 1/2. Semantics stay perfect; mCov = 1/3.
    func testIdsSwappedBetweenFramesDoNotMatch() throws {
        try writeGroundTruth()
        try writePrediction(frame: 0, row2: [10, 10, 10, 10], row3: [20, 20, 20, 20])
        try writePrediction(frame: 5, row2: [10, 10, 10, 10], row3: [20, 20, 20, 20])
        let m = try evaluate().metrics
        XCTAssertEqual(m.pq, 0.5, accuracy: 1e-12)
        XCTAssertEqual(m.things.pq, 0)
        XCTAssertEqual(m.stuff.pq, 1)
        XCTAssertEqual([m.things.truePositives, m.things.falsePositives, m.things.falseNegatives], [0, 2, 2])
        XCTAssertEqual(m.mIoU, 1)
        XCTAssertEqual(m.mCov, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(m.mWCov, 1.0 / 3, accuracy: 1e-12)
    }

    /// Chair #1 split: predicted #5 on 6 of its 8 pixels, #6 on the other 2; chair #2 predicted whole as #7.
    /// Chair: TP #1–#5 (IoU 6/8) and #2–#7 (IoU 1), FP #6: PQ = 1.75 / (2 + 0.5) = 0.7, SQ 0.875, RQ 0.8.
    /// Wall PQ 1. Overall: PQ 0.85, SQ 0.9375, RQ 0.9. mCov (0.75 + 1) / 2 = 0.875 = mW-Cov (equal sizes).
    func testSplitInstance() throws {
        try writeGroundTruth()
        try writePrediction(frame: 0, row2: [5, 5, 5, 5], row3: [7, 7, 7, 7])
        try writePrediction(frame: 5, row2: [7, 7, 7, 7], row3: [5, 5, 6, 6])
        let m = try evaluate().metrics
        XCTAssertEqual(m.things.pq, 0.7, accuracy: 1e-12)
        XCTAssertEqual(m.things.sq, 0.875, accuracy: 1e-12)
        XCTAssertEqual(m.things.rq, 0.8, accuracy: 1e-12)
        XCTAssertEqual(m.pq, 0.85, accuracy: 1e-12)
        XCTAssertEqual(m.sq, 0.9375, accuracy: 1e-12)
        XCTAssertEqual(m.rq, 0.9, accuracy: 1e-12)
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [3, 1, 0])
        XCTAssertEqual(m.mCov, 0.875, accuracy: 1e-12)
        XCTAssertEqual(m.mWCov, 0.875, accuracy: 1e-12)
        XCTAssertEqual(m.mIoU, 1)
    }

    func assertMapError(_ kind: MapError.Kind, file: URL?, contains text: String = "",
                        line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), line: line) { e in
            guard let e = e as? MapError else { return XCTFail("not a MapError: \(e)", line: line) }
            XCTAssertEqual(e.kind, kind, e.description, line: line)
            if let file { XCTAssertEqual(e.file, file.path, e.description, line: line) }
            XCTAssertTrue(text.isEmpty || e.message.contains(text), e.description, line: line)
            XCTAssertNotNil(e.hint, line: line)
        }
    }

    func test2DErrors() throws {
        try writeGroundTruth()
        assertMapError(.missingFile, file: predictions, contains: "does not exist") { _ = try evaluate() }
        try Files.createDirectory(predictions)
        assertMapError(.missingFile, file: predictions, contains: "no predicted") { _ = try evaluate() }

        // A predicted frame without GT.
        try writePrediction(frame: 7, row2: [1, 1, 1, 1], row3: [2, 2, 2, 2])
        assertMapError(.missingFile, file: PanopticEvaluation.groundTruthURLs(sequence, frame: 7).semantic) { _ = try evaluate() }
        try FileManager.default.removeItem(at: PanopticEvaluation.predictionURLs(predictions, frame: 7).semantic)
        try FileManager.default.removeItem(at: PanopticEvaluation.predictionURLs(predictions, frame: 7).instance)

        // A semantic image without its instance partner.
        try writePrediction(frame: 0, row2: [1, 1, 1, 1], row3: [2, 2, 2, 2])
        let p0 = PanopticEvaluation.predictionURLs(predictions, frame: 0)
        try FileManager.default.removeItem(at: p0.instance)
        assertMapError(.missingFile, file: p0.instance) { _ = try evaluate() }

        // Size mismatch with the GT.
        try write(Gray16Image(width: 4, height: 3, channels: 1, repeating: 0), p0.instance)
        try write(Gray16Image(width: 4, height: 3, channels: 1, repeating: 1), p0.semantic)
        assertMapError(.sizeMismatch, file: PanopticEvaluation.groundTruthURLs(sequence, frame: 0).semantic) { _ = try evaluate() }

        // A class the vocabulary lacks, named with its pixel.
        try writePrediction(frame: 0, row2: [1, 1, 1, 1], row3: [2, 2, 2, 2])
        var bad = try ImageFiles.readGray16(p0.semantic)
        bad.data[6] = 9
        try write(bad, p0.semantic)
        assertMapError(.unknownClass, file: p0.semantic, contains: "pixel (2, 1)") { _ = try evaluate() }
    }

    // 3D. GT points: wall at x = 0...3 (y = 0); chair #1 at (0, 5), (1, 5); chair #2 at (0, 10), (1, 10).
    let gtPoints = PLYData(
        positions: [SIMD3(0, 0, 0), SIMD3(1, 0, 0), SIMD3(2, 0, 0), SIMD3(3, 0, 0),
                    SIMD3(0, 5, 0), SIMD3(1, 5, 0), SIMD3(0, 10, 0), SIMD3(1, 10, 0)],
        labels: [("semantic", [1, 1, 1, 1, 2, 2, 2, 2]), ("instance", [0, 0, 0, 0, 1, 1, 2, 2])])

    /// Mesh vertices near those points: 4 near the wall (3 predicted wall, 1 unlabelled), 3 near chair #1 (all #7),
    /// 2 near chair #2 (one #8, one #9: a split into halves).
    /// Wall: IoU 3/4, TP: PQ = SQ = 0.75. Chair: #1–#7 IoU 1 TP; #2 with #8 or #9 IoU 1/2 (not > 1/2): FN, two FP;
    /// PQ = 1 / (1 + 1.5) = 0.4, SQ 1, RQ 0.4. Overall PQ 0.575. mIoU = mAcc = (3/4 + 1) / 2 = 0.875.
    /// mCov (1 + 0.5) / 2 = 0.75; mW-Cov (3·1 + 2·0.5) / 5 = 0.8.
    let mesh = PLYData(
        positions: [SIMD3(0.1, 0, 0), SIMD3(1.1, 0, 0), SIMD3(2.1, 0, 0), SIMD3(2.9, 0.1, 0),
                    SIMD3(0, 5.1, 0), SIMD3(1, 5.1, 0), SIMD3(0.4, 5.2, 0.1), SIMD3(0, 10.1, 0), SIMD3(1, 9.9, 0)],
        labels: [("semantic", [1, 1, 1, 0, 2, 2, 2, 2, 2]), ("instance", [0, 0, 0, 0, 7, 7, 7, 8, 9])],
        faces: [SIMD3(0, 1, 2)])

    func test3DNearestGroundTruthLabels() throws {
        try PLY.write(mesh, to: tmp.appending("mesh.ply"))
        try PLY.write(gtPoints, to: tmp.appending("surface.ply"))
        let m = try PanopticEvaluation.evaluate3D(mesh: tmp.appending("mesh.ply"), groundTruth: tmp.appending("surface.ply"),
                                                  vocabulary: vocabulary)
        XCTAssertEqual(m.elementCount, 9)
        XCTAssertEqual(m.stuff.pq, 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.things.pq, 0.4, accuracy: 1e-12)
        XCTAssertEqual(m.things.sq, 1, accuracy: 1e-12)
        XCTAssertEqual(m.pq, 0.575, accuracy: 1e-12)
        XCTAssertEqual([m.overall.truePositives, m.overall.falsePositives, m.overall.falseNegatives], [2, 2, 1])
        XCTAssertEqual(m.mIoU, 0.875, accuracy: 1e-12)
        XCTAssertEqual(m.mAcc, 0.875, accuracy: 1e-12)
        XCTAssertEqual(m.mCov, 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.mWCov, 0.8, accuracy: 1e-12)
        // One thread or two: the same.
        let one = try PanopticEvaluation.evaluate3D(mesh: mesh, groundTruth: gtPoints, vocabulary: vocabulary,
                                                    meshSource: "m", groundTruthSource: "g", threads: 1)
        XCTAssertEqual(one, m)
    }

    func test3DErrors() throws {
        let meshURL = tmp.appending("mesh.ply"), gtURL = tmp.appending("surface.ply")
        try PLY.write(gtPoints, to: gtURL)
        assertMapError(.missingFile, file: meshURL) {
            _ = try PanopticEvaluation.evaluate3D(mesh: meshURL, groundTruth: gtURL, vocabulary: vocabulary)
        }
        var noInstance = mesh
        noInstance.labels.removeLast()
        try PLY.write(noInstance, to: meshURL)
        assertMapError(.badFormat, file: meshURL, contains: "'instance'") {
            _ = try PanopticEvaluation.evaluate3D(mesh: meshURL, groundTruth: gtURL, vocabulary: vocabulary)
        }
        var noSemantic = gtPoints
        noSemantic.labels.removeFirst()
        try PLY.write(mesh, to: meshURL)
        try PLY.write(noSemantic, to: gtURL)
        assertMapError(.badFormat, file: gtURL, contains: "'semantic'") {
            _ = try PanopticEvaluation.evaluate3D(mesh: meshURL, groundTruth: gtURL, vocabulary: vocabulary)
        }
        var unknown = mesh
        unknown.labels[0].values[4] = 42
        try PLY.write(gtPoints, to: gtURL)
        try PLY.write(unknown, to: meshURL)
        assertMapError(.unknownClass, file: meshURL, contains: "vertex 4") {
            _ = try PanopticEvaluation.evaluate3D(mesh: meshURL, groundTruth: gtURL, vocabulary: vocabulary)
        }
    }
}
