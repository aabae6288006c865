import Foundation
import MapCore
import USBCamera
import XCTest

final class CalibrationTests: XCTestCase {
    /// `calibration/kinect-v1.json` of this repository.
    static let defaultFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("calibration/kinect-v1.json")

    /// The default file as a mutable JSON tree, to break one field at a time.
    func defaultTree() throws -> [String: Any] {
        let data = try Data(contentsOf: Self.defaultFile)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Decodes `tree` and returns the error, failing the test when it decodes.
    func refusal(_ tree: [String: Any], file: StaticString = #filePath, line: UInt = #line) throws -> MapError {
        let data = try JSONSerialization.data(withJSONObject: tree)
        return try refusal(data, file: file, line: line)
    }

    func refusal(_ data: Data, file: StaticString = #filePath, line: UInt = #line) throws -> MapError {
        do {
            _ = try DeviceCalibration.decode(data, source: "cams/test-cam.json")
            XCTFail("decoded a broken calibration", file: file, line: line)
            return MapError(.badCalibration, "none")
        } catch let e as MapError {
            XCTAssertEqual(e.kind, .badCalibration, "\(e)", file: file, line: line)
            XCTAssertEqual(e.file, "cams/test-cam.json", file: file, line: line)
            XCTAssertNotNil(e.hint, "every refusal says what to do: \(e)", file: file, line: line)
            return e
        }
    }

    func assertNames(_ e: MapError, _ parts: String..., file: StaticString = #filePath, line: UInt = #line) {
        for p in parts { XCTAssertTrue(e.description.contains(p), "'\(p)' not in: \(e)", file: file, line: line) }
    }

    // MARK: the default file

    func testDefaultFileLoadsWithThePublishedValues() throws {
        let cal = try DeviceCalibration.load(from: Self.defaultFile)
        XCTAssertEqual(cal, DeviceCalibration.kinectV1Default)
        XCTAssertEqual(cal.device.vendorID, 0x045E)
        XCTAssertEqual(cal.device.productID, 0x02AE)
        // The device is the one `pano devices` matches.
        XCTAssertTrue(CameraModel.supported.contains { $0.vendorID == cal.device.vendorID && $0.productID == cal.device.productID })
        XCTAssertEqual(cal.depthCamera.size, ImageSize(width: 640, height: 480))
        XCTAssertEqual(cal.colorCamera.size, ImageSize(width: 640, height: 480))
        // A Kinect's IR and colour cameras sit about 2.5 cm apart.
        XCTAssertEqual(length(cal.T_C_D.translation), 0.0228, accuracy: 0.003)
    }

    func testRoundTrip() throws {
        let cal = DeviceCalibration(
            device: .init(name: "Test cam", vendorID: 0x1234, productID: 0x00AB),
            depthCamera: Intrinsics(fx: 300.125, fy: 301.5, cx: 159.5, cy: 119.25, width: 320, height: 240),
            colorCamera: Intrinsics(fx: 1.0e3 / 3, fy: 333.75, cx: 320.1, cy: 240.9, width: 640, height: 480),
            T_C_D: RigidTransform(rotation: Mat3(axis: normalize(Vec3(0.2, 1, 0.1)), angle: 0.03),
                                  translation: Vec3(0.025, -0.001, 0.002)),
            depthModel: DepthModel(kind: .linear(metresPerUnit: 0.001), validRaw: 1...65535, minMetres: 0.1,
                                   maxMetres: 10))
        let back = try DeviceCalibration.decode(try cal.jsonData(), source: "mem")
        XCTAssertEqual(back, cal)
        let kinect = try DeviceCalibration.decode(try DeviceCalibration.kinectV1Default.jsonData(), source: "mem")
        XCTAssertEqual(kinect, .kinectV1Default)
    }

    // MARK: refusals

    func testMissingFieldIsNamed() throws {
        var t = try defaultTree()
        var cam = try XCTUnwrap(t["depth_camera"] as? [String: Any])
        cam["fx"] = nil
        t["depth_camera"] = cam
        assertNames(try refusal(t), "depth_camera.fx", "missing", "test-cam.json")

        var t2 = try defaultTree()
        t2["depth_model"] = nil
        assertNames(try refusal(t2), "depth_model", "missing")
    }

    func testMisspeltFieldIsNamedWithTheLikelyIntent() throws {
        var t = try defaultTree()
        t["colour_camera"] = t["color_camera"]
        t["color_camera"] = nil
        assertNames(try refusal(t), "colour_camera", "not part of the schema", "did you mean 'color_camera'")

        var t2 = try defaultTree()
        var model = try XCTUnwrap(t2["depth_model"] as? [String: Any])
        model["max_metres"] = 5.0
        t2["depth_model"] = model
        assertNames(try refusal(t2), "depth_model.max_metres", "not part of the schema")
    }

    func testNonFiniteAndWrongTypedNumbersAreRefused() throws {
        // JSON has no NaN / Infinity literals; an overflowing literal or a string in their place must be refused.
        let text = try String(contentsOf: Self.defaultFile, encoding: .utf8)
        let overflow = text.replacingOccurrences(of: "\"fx\": 594.21434211923247", with: "\"fx\": 1e999")
        XCTAssertNotEqual(overflow, text)
        assertNames(try refusal(Data(overflow.utf8)), "field 'depth_camera.fx' is not a finite number")
        let inArray = text.replacingOccurrences(of: "0.99984628826577793,", with: "-1e400,")
        XCTAssertNotEqual(inArray, text)
        assertNames(try refusal(Data(inArray.utf8)), "field 'depth_to_color.rotation[0]' is not a finite number")

        var t = try defaultTree()
        var cam = try XCTUnwrap(t["color_camera"] as? [String: Any])
        cam["cy"] = "NaN"
        t["color_camera"] = cam
        assertNames(try refusal(t), "color_camera.cy", "a string", "expected a number")

        var t2 = try defaultTree()
        var ext = try XCTUnwrap(t2["depth_to_color"] as? [String: Any])
        ext["translation_m"] = [0.02, "inf", 0.0]
        t2["depth_to_color"] = ext
        assertNames(try refusal(t2), "depth_to_color.translation_m[1]")
    }

    func testNonRotationIsRefused() throws {
        for bad: [Double] in [[1.1, 0, 0, 0, 1, 0, 0, 0, 1],          // scaled
                              [1, 0, 0, 0, 1, 0, 0, 0, -1],           // reflection
                              [1, 0.2, 0, 0, 1, 0, 0, 0, 1]] {        // sheared
            var t = try defaultTree()
            var ext = try XCTUnwrap(t["depth_to_color"] as? [String: Any])
            ext["rotation"] = bad
            t["depth_to_color"] = ext
            assertNames(try refusal(t), "depth_to_color.rotation", "not a rotation", "orthonormal")
        }
    }

    func testBadSizesAreRefused() throws {
        var t = try defaultTree()
        var ext = try XCTUnwrap(t["depth_to_color"] as? [String: Any])
        ext["rotation"] = [1, 0, 0, 0, 1, 0, 0, 0]
        t["depth_to_color"] = ext
        assertNames(try refusal(t), "depth_to_color.rotation", "has 8 numbers, expected 9", "row-major")

        for (field, value) in [("width", 0.0), ("height", -480.0), ("width", 640.5)] {
            var t2 = try defaultTree()
            var cam = try XCTUnwrap(t2["depth_camera"] as? [String: Any])
            cam[field] = value
            t2["depth_camera"] = cam
            assertNames(try refusal(t2), "depth_camera.\(field)")
        }

        var t3 = try defaultTree()
        var cam = try XCTUnwrap(t3["color_camera"] as? [String: Any])
        cam["fx"] = -529.0
        t3["color_camera"] = cam
        assertNames(try refusal(t3), "color_camera.fx", "> 0")

        var t4 = try defaultTree()
        var cam4 = try XCTUnwrap(t4["color_camera"] as? [String: Any])
        cam4["cx"] = 5000.0
        t4["color_camera"] = cam4
        assertNames(try refusal(t4), "color_camera", "principal point")
    }

    func testHeaderDeviceAndDepthModelChecks() throws {
        var t = try defaultTree()
        t["format"] = "pano-sequence"
        assertNames(try refusal(t), "format", "pano-calibration")

        var t2 = try defaultTree()
        t2["version"] = 3
        assertNames(try refusal(t2), "version", "update pano")

        var t3 = try defaultTree()
        t3["device"] = ["name": "Kinect", "vendor_id": "0x45e", "product_id": "02ae"]
        assertNames(try refusal(t3), "device.vendor_id", "4 hexadecimal digits")

        var t4 = try defaultTree()
        var m4 = try XCTUnwrap(t4["depth_model"] as? [String: Any])
        m4["kind"] = "kinect-tangent"
        t4["depth_model"] = m4
        assertNames(try refusal(t4), "depth_model.kind", "kinect-disparity, linear")

        var t5 = try defaultTree()
        var m5 = try XCTUnwrap(t5["depth_model"] as? [String: Any])
        m5["valid_raw"] = [0, 2047]
        t5["depth_model"] = m5
        assertNames(try refusal(t5), "depth_model.valid_raw", "2047")

        var t6 = try defaultTree()
        var m6 = try XCTUnwrap(t6["depth_model"] as? [String: Any])
        m6["min_m"] = 6.0
        t6["depth_model"] = m6
        assertNames(try refusal(t6), "depth_model", "min_m")

        var t7 = try defaultTree()
        var m7 = try XCTUnwrap(t7["depth_model"] as? [String: Any])
        m7["coefficients"] = ["a": -0.003]
        t7["depth_model"] = m7
        assertNames(try refusal(t7), "depth_model.coefficients.b", "missing")

        assertNames(try refusal(Data("{\"format\": ".utf8)), "not valid JSON")
        assertNames(try refusal(Data("[1, 2]".utf8)), "top level", "an object")
    }

    func testMissingFileIsAClearError() {
        XCTAssertThrowsError(try DeviceCalibration.load(from: URL(fileURLWithPath: "/nonexistent/cam.json"))) { e in
            let m = e as? MapError
            XCTAssertEqual(m?.kind, .missingFile)
            XCTAssertEqual(m?.file, "/nonexistent/cam.json")
        }
    }

    // MARK: depth model

    func testKinectDisparityModel() {
        let m = DeviceCalibration.kinectV1Default.depthModel
        // z = 1 / (a raw + b), computed here by hand for raw 600: a·600 + b = 3.3309495161 - 1.84266096 = 1.4882885561.
        XCTAssertEqual(Double(m.metres(raw: 600)), 1 / 1.4882885561, accuracy: 1e-6)
        XCTAssertEqual(Double(m.metres(raw: 800)), 1 / (-0.0030711016 * 800 + 3.3309495161), accuracy: 1e-6)
        XCTAssertEqual(m.metres(raw: 2047), 0, "2047 is the Kinect's no-measurement value")
        XCTAssertEqual(m.metres(raw: 1084), 0, "outside valid_raw (the denominator is about 0 here)")
        XCTAssertEqual(m.metres(raw: 1200), 0, "negative denominator")
        XCTAssertEqual(m.metres(raw: 100), 0, "1/(3.02) = 0.33 m is nearer than min_m 0.4")
        XCTAssertEqual(m.metres(raw: -1), 0)
        // Farther with larger raw, inside the range.
        XCTAssertGreaterThan(m.metres(raw: 900), m.metres(raw: 500))
        XCTAssertLessThanOrEqual(m.metres(raw: 1083), 5)
        // Table conversion agrees with the per-sample function for every 11-bit value and ignores junk above.
        let raw = Gray16Image(width: 2050, height: 1, data: (0..<2048).map { UInt16($0) } + [4095, 65535])
        let depth = m.depthImage(fromRaw: raw)
        for r in 0..<2048 { XCTAssertEqual(depth.data[r], m.metres(raw: r), "raw \(r)") }
        XCTAssertEqual(depth.data[2048], 0)
        XCTAssertEqual(depth.data[2049], 0)
    }

    func testLinearModel() {
        let m = DepthModel(kind: .linear(metresPerUnit: 0.001), validRaw: 1...65535, minMetres: 0.2, maxMetres: 8)
        XCTAssertEqual(m.metres(raw: 1500), 1.5)
        XCTAssertEqual(m.metres(raw: 0), 0)
        XCTAssertEqual(m.metres(raw: 100), 0)
        XCTAssertEqual(m.metres(raw: 9000), 0)
        let depth = m.depthImage(fromRaw: Gray16Image(width: 3, height: 1, data: [0, 2500, 60000]))
        XCTAssertEqual(depth.data, [0, 2.5, 0])
    }
}
