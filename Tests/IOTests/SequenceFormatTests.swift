import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class SequenceFormatTests: XCTestCase {
    let k = Intrinsics(fx: 12, fy: 11, cx: 4.5, cy: 2.5, width: 10, height: 6)
    let vocabulary = Vocabulary(classes: [SemanticClass(id: 1, name: "floor", isThing: false, color: [10, 20, 30]),
                                          SemanticClass(id: 5, name: "chair", isThing: true, color: [200, 0, 0])])

    func makeFrame(_ i: Int, masks: Bool) -> Frame {
        var rng = SeededRNG(seed: UInt64(i + 1))
        let rgb = RGBImage(width: 10, height: 6, channels: 3, data: (0..<180).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let depth = DepthImage(width: 10, height: 6, channels: 1, data: (0..<60).map { j in j % 7 == 0 ? 0 : Float(500 + 37 * j + i) / 1000 })
        let pose = RigidTransform(rotation: Mat3(axis: Vec3(0.2, 1, 0.1), angle: 0.3 * Double(i)), translation: Vec3(Double(i), -0.5, 1.25))
        var fm: FrameMasks?
        if masks {
            var ids = Gray16Image(width: 10, height: 6, repeating: 0)
            for x in 0..<5 { ids[x, 2] = UInt16(100 + i) }
            for x in 5..<10 { ids[x, 4] = 7 }
            fm = FrameMasks(ids: ids, segments: [MaskSegment(id: 100 + i, classID: 5, score: 0.75), MaskSegment(id: 7, classID: 1, score: 1)])
        }
        return Frame(index: i, timestamp: 0.5 * Double(i), rgb: rgb, depth: depth, T_W_C: pose, intrinsics: k, masks: fm)
    }

    func write(_ dir: URL, rgbFormat: String = "png", masks: Bool = true, frames: Int = 3) throws {
        let w = try SequenceWriter(directory: dir, name: "fixture", intrinsics: k, depthScale: 1000, frameRate: 2,
                                   rgbFormat: rgbFormat, vocabulary: masks ? vocabulary : nil)
        for i in 0..<frames { try w.write(makeFrame(i, masks: masks)) }
        try w.finish()
    }

    func testRoundTripIsExactForPNG() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try write(tmp.url)
        let r = try PanoSequenceReader(directory: tmp.url)
        XCTAssertEqual(r.info.frameCount, 3)
        XCTAssertEqual(r.info.intrinsics, k)
        XCTAssertEqual(r.info.vocabulary, vocabulary)
        XCTAssertTrue(r.info.hasMasks)
        XCTAssertEqual(r.info.frameRate, 2)
        for i in 0..<3 {
            let f = try r.frame(at: i), g = makeFrame(i, masks: true)
            XCTAssertEqual(f.rgb, g.rgb)
            XCTAssertEqual(f.depth, g.depth, "depth in mm is exact to the millimetre")
            XCTAssertEqual(f.masks, g.masks)
            XCTAssertEqual(f.timestamp, g.timestamp)
            for (a, b) in zip(f.T_W_C.rowMajor4x4, g.T_W_C.rowMajor4x4) { XCTAssertEqual(a, b, accuracy: 1e-15) }
            try FrameValidator(vocabulary: r.info.vocabulary).validate(f)
        }
    }

    func testCalibrationFileGivesTheIntrinsics() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try write(tmp.url)
        let manifestURL = tmp.url.appendingPathComponent("sequence.json")
        func useCalibration(_ text: String) throws {
            try Data(text.utf8).write(to: tmp.url.appendingPathComponent("cal.json"))
            var m = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
            m["intrinsics"] = nil
            m["calibration"] = "cal.json"
            try JSONSerialization.data(withJSONObject: m).write(to: manifestURL)
        }
        // The intrinsics-only shape.
        try useCalibration(#"{"intrinsics": {"fx": 12, "fy": 11, "cx": 4.5, "cy": 2.5}, "width": 10, "height": 6}"#)
        XCTAssertEqual(try PanoSequenceReader(directory: tmp.url).info.intrinsics, k)
        // The repository's per-device file: the colour camera's intrinsics.
        let device = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("calibration/kinect-v1.json")
        try useCalibration(String(decoding: try Data(contentsOf: device), as: UTF8.self))
        let cal = try JSONSerialization.jsonObject(with: Data(contentsOf: device)) as! [String: Any]
        let colour = cal["color_camera"] as! [String: Any]
        let got = try PanoSequenceReader(directory: tmp.url).info.intrinsics
        XCTAssertEqual(got.fx, colour["fx"] as! Double)
        XCTAssertEqual(got.width, colour["width"] as! Int)
        // Neither shape: a typed error naming the file.
        try useCalibration(#"{"focal": 5}"#)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badCalibration)
        }
    }

    func testCRLFPoseFileReads() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try write(tmp.url)
        let url = tmp.appending("poses.txt")
        let text = try String(contentsOf: url, encoding: .utf8)
        try text.replacingOccurrences(of: "\n", with: "\r\n").write(to: url, atomically: true, encoding: .utf8)
        let r = try PanoSequenceReader(directory: tmp.url)
        XCTAssertEqual(try r.frame(at: 2).T_W_C.translation, makeFrame(2, masks: false).T_W_C.translation)
    }

    func testJPEGSequenceWithoutMasks() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try write(tmp.url, rgbFormat: "jpg", masks: false, frames: 2)
        let r = try PanoSequenceReader(directory: tmp.url)
        XCTAssertFalse(r.info.hasMasks)
        XCTAssertNil(r.info.vocabulary)
        let f = try r.frame(at: 1)
        XCTAssertNil(f.masks)
        XCTAssertEqual(f.rgb.size, ImageSize(width: 10, height: 6))
    }

    func testSameInputSameBytes() throws {
        let a = try TempDirectory(), b = try TempDirectory(); defer { a.remove(); b.remove() }
        try write(a.url); try write(b.url)
        for rel in ["sequence.json", "poses.txt", "vocabulary.json", "rgb/000001.png", "depth/000002.png", "masks/000000.png", "masks/000000.json"] {
            XCTAssertEqual(try Files.read(a.appending(rel)), try Files.read(b.appending(rel)), rel)
        }
    }

    func testBrokenSequencesGiveTypedErrors() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try write(tmp.url)
        // Missing depth file: named with its frame.
        try FileManager.default.removeItem(at: tmp.appending("depth/000001.png"))
        let r = try PanoSequenceReader(directory: tmp.url)
        XCTAssertThrowsError(try r.frame(at: 1)) { e in
            XCTAssertEqual((e as? MapError)?.kind, .missingFile); XCTAssertEqual((e as? MapError)?.frame, 1)
        }
        XCTAssertNoThrow(try r.frame(at: 0))
        XCTAssertThrowsError(try r.frame(at: 3)) { e in XCTAssertEqual((e as? MapError)?.kind, .badArgument) }
        // Truncated colour file.
        let rgbURL = tmp.appending("rgb/000002.png")
        let bytes = try Files.read(rgbURL)
        try Data(bytes[0..<(bytes.count / 2)]).write(to: rgbURL)
        XCTAssertThrowsError(try r.frame(at: 2)) { e in
            let m = e as? MapError
            XCTAssertTrue(m?.kind == .truncatedFile || m?.kind == .corruptFile, "\(e)")
            XCTAssertEqual(m?.frame, 2); XCTAssertEqual(m?.file, rgbURL.path)
        }
        // Broken mask JSON.
        try Data("{\"segments\": [{\"id\": 1}]}".utf8).write(to: tmp.appending("masks/000000.json"))
        XCTAssertThrowsError(try r.frame(at: 0)) { e in XCTAssertEqual((e as? MapError)?.kind, .badMask) }
        // Pose line with the wrong count, and a missing pose.
        try "0 0 1 0 0 0 0 1 0 0 0 0 1\n".write(to: tmp.appending("poses.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .badPose) }
        try "0 0 1 0 0 0 0 1 0 0 0 0 1 0\n".write(to: tmp.appending("poses.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badPose); XCTAssertEqual((e as? MapError)?.frame, 1)
        }
        // NaN pose: read, then refused by the validator for that frame only.
        try (0..<3).map { "\($0) 0 \($0 == 2 ? "nan" : "1") 0 0 0 0 1 0 0 0 0 1 0" }.joined(separator: "\n")
            .write(to: tmp.appending("poses.txt"), atomically: true, encoding: .utf8)
        try write(tmp.url) // restore files
        try (0..<3).map { "\($0) 0 \($0 == 2 ? "nan" : "1") 0 0 0 0 1 0 0 0 0 1 0" }.joined(separator: "\n")
            .write(to: tmp.appending("poses.txt"), atomically: true, encoding: .utf8)
        let r2 = try PanoSequenceReader(directory: tmp.url)
        XCTAssertNoThrow(try FrameValidator(vocabulary: r2.info.vocabulary).validate(try r2.frame(at: 0)))
        XCTAssertThrowsError(try FrameValidator(vocabulary: r2.info.vocabulary).validate(try r2.frame(at: 2))) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badPose); XCTAssertEqual((e as? MapError)?.frame, 2)
        }
    }

    func testManifestProblems() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .missingFile) }
        try write(tmp.url)
        let url = tmp.appending("sequence.json")
        let good = try String(contentsOf: url, encoding: .utf8)
        try good.replacingOccurrences(of: "\"fx\" : 12", with: "\"fx\" : -12").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .badCalibration) }
        try good.replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 99").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .unsupported) }
        try "{ not json".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .badFormat) }
        try good.write(to: url, atomically: true, encoding: .utf8)
        try "{\"classes\": [{\"id\": 1, \"name\": \"a\", \"thing\": true, \"color\": [1,2]}]}".write(
            to: tmp.appending("vocabulary.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PanoSequenceReader(directory: tmp.url)) { e in XCTAssertEqual((e as? MapError)?.kind, .badFormat) }
    }

    func testAtomicWriteLeavesNoTemporaryFiles() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        let url = tmp.appending("a/b/out.txt")
        try Files.writeAtomically("one", to: url)
        try Files.writeAtomically("two", to: url)
        XCTAssertEqual(try Files.readText(url), "two")
        XCTAssertEqual(Files.list(tmp.appending("a/b")), ["out.txt"])
    }
}
