import MapCore
import XCTest

final class FrameValidatorTests: XCTestCase {
    let k = Intrinsics(fx: 10, fy: 10, cx: 3.5, cy: 2.5, width: 8, height: 6)
    let vocabulary = Vocabulary(classes: [SemanticClass(id: 1, name: "wall", isThing: false, color: [1, 2, 3]),
                                          SemanticClass(id: 2, name: "chair", isThing: true, color: [4, 5, 6])])

    func frame(masks: FrameMasks? = nil) -> Frame {
        Frame(index: 4, rgb: RGBImage(width: 8, height: 6, channels: 3, repeating: 9),
              depth: DepthImage(width: 8, height: 6, repeating: 1.5), T_W_C: .identity, intrinsics: k, masks: masks)
    }

    func expect(_ f: Frame, _ kind: MapError.Kind, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try FrameValidator(vocabulary: vocabulary).validate(f, files: "f.png"), file: file, line: line) { e in
            let m = e as? MapError
            XCTAssertEqual(m?.kind, kind, "\(e)", file: file, line: line)
            XCTAssertEqual(m?.frame, 4, file: file, line: line)
            XCTAssertNotNil(m?.hint, file: file, line: line)
        }
    }

    func testGoodFramePasses() throws {
        var ids = Gray16Image(width: 8, height: 6, repeating: 0)
        ids[1, 1] = 7
        try FrameValidator(vocabulary: vocabulary).validate(frame(masks: FrameMasks(ids: ids, segments: [MaskSegment(id: 7, classID: 2)])))
    }

    func testBadPoses() {
        var f = frame()
        var m = f.T_W_C.rowMajor4x4; m[3] = .nan
        f.T_W_C = RigidTransform(rowMajor: m)
        expect(f, .badPose)
        f = frame(); m = f.T_W_C.rowMajor4x4; m[0] = 2
        f.T_W_C = RigidTransform(rowMajor: m)
        expect(f, .badPose)
        f = frame(); f.T_W_C = RigidTransform(rowMajor: [Double](repeating: -.infinity, count: 16)) // ScanNet's invalid pose
        expect(f, .badPose)
    }

    func testSizeMismatches() {
        var f = frame(); f.depth = DepthImage(width: 4, height: 3, repeating: 1)
        expect(f, .sizeMismatch)
        f = frame(); f.intrinsics = k.scaled(toWidth: 16, height: 12)
        expect(f, .sizeMismatch)
        f = frame(masks: FrameMasks(ids: Gray16Image(width: 2, height: 2, repeating: 0), segments: []))
        expect(f, .sizeMismatch)
    }

    func testBadCalibration() {
        var f = frame(); f.intrinsics.fx = 0
        expect(f, .badCalibration)
    }

    func testMaskProblems() {
        var ids = Gray16Image(width: 8, height: 6, repeating: 0)
        ids[0, 0] = 3
        expect(frame(masks: FrameMasks(ids: ids, segments: [MaskSegment(id: 3, classID: 99)])), .unknownClass)
        expect(frame(masks: FrameMasks(ids: ids, segments: [])), .badMask) // id 3 not listed
        expect(frame(masks: FrameMasks(ids: ids, segments: [MaskSegment(id: 3, classID: 1), MaskSegment(id: 3, classID: 2)])), .badMask)
        // Empty masks and listed-but-absent ids are fine.
        XCTAssertNoThrow(try FrameValidator(vocabulary: vocabulary).validate(
            frame(masks: FrameMasks(ids: Gray16Image(width: 8, height: 6, repeating: 0), segments: [MaskSegment(id: 5, classID: 1)]))))
    }

    func testVocabularyValidation() {
        XCTAssertThrowsError(try Vocabulary(classes: [SemanticClass(id: 0, name: "x", isThing: true, color: [0, 0, 0])]).validate(source: "v"))
        XCTAssertThrowsError(try Vocabulary(classes: [SemanticClass(id: 1, name: "x", isThing: true, color: [0, 0, 0]),
                                                      SemanticClass(id: 1, name: "y", isThing: true, color: [0, 0, 0])]).validate(source: "v"))
        XCTAssertThrowsError(try Vocabulary(classes: [SemanticClass(id: 1, name: "x", isThing: true, color: [0])]).validate(source: "v"))
        XCTAssertEqual(vocabulary.thingIDs, [2]); XCTAssertEqual(vocabulary.stuffIDs, [1])
    }

    func testErrorDescriptionNamesEverything() {
        let e = MapError(.badPose, "pose has NaN", file: "poses.txt", frame: 12, hint: "fix it")
        XCTAssertEqual(e.description, "bad pose: pose has NaN [frame 12] [poses.txt] — fix it")
    }
}
