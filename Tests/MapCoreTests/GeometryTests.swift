import MapCore
import XCTest

final class GeometryTests: XCTestCase {
    func testQuaternionRotatesLikeAxisAngle() {
        // 90° about z maps +x to +y.
        let r = Mat3(quaternion: SIMD4(cos(.pi / 4), 0, 0, sin(.pi / 4)))
        let v = r * Vec3(1, 0, 0)
        XCTAssertEqual(v.x, 0, accuracy: 1e-12); XCTAssertEqual(v.y, 1, accuracy: 1e-12); XCTAssertEqual(v.z, 0, accuracy: 1e-12)
        XCTAssertEqual(Mat3(axis: Vec3(0, 0, 1), angle: .pi / 2), r)
        XCTAssertEqual(r.determinant, 1, accuracy: 1e-12)
    }

    func testMatrixToQuaternionRoundTripsAndInterpolationFollowsTheArc() {
        var rng = SeededRNG(seed: 4)
        for _ in 0..<200 {
            // Random rotations, including angles near pi (the branches of the conversion other than trace > 0).
            let axis = normalize(Vec3(rng.gaussian(), rng.gaussian(), rng.gaussian()))
            let angle = rng.uniform(0, .pi)
            let r = Mat3(axis: axis, angle: angle)
            let back = Mat3(quaternion: r.quaternion)
            for i in 0..<3 { for j in 0..<3 { XCTAssertEqual(back[i, j], r[i, j], accuracy: 1e-9) } }
            // Halfway between identity and r: the rotation by angle / 2 about the same axis; ends are exact.
            let a = RigidTransform(), b = RigidTransform(rotation: r, translation: Vec3(2, -4, 6))
            let mid = a.interpolated(to: b, fraction: 0.5)
            let expected = Mat3(axis: axis, angle: angle / 2)
            for i in 0..<3 { for j in 0..<3 { XCTAssertEqual(mid.rotation[i, j], expected[i, j], accuracy: 1e-9) } }
            XCTAssertEqual(mid.translation, Vec3(1, -2, 3))
            let end = a.interpolated(to: b, fraction: 1)
            for i in 0..<3 { for j in 0..<3 { XCTAssertEqual(end.rotation[i, j], r[i, j], accuracy: 1e-9) } }
        }
    }

    func testComposeAndInverse() {
        var rng = SeededRNG(seed: 3)
        for _ in 0..<20 {
            let a = RigidTransform(rotation: Mat3(quaternion: SIMD4(rng.gaussian(), rng.gaussian(), rng.gaussian(), rng.gaussian())),
                                   translation: Vec3(rng.gaussian(), rng.gaussian(), rng.gaussian()))
            let p = Vec3(rng.gaussian(), rng.gaussian(), rng.gaussian())
            let q = a.inverse * (a * p)
            XCTAssertLessThan(length(q - p), 1e-12)
            XCTAssertTrue(a.isRigid())
            let id = a * a.inverse
            XCTAssertLessThan(length(id.translation), 1e-12)
            XCTAssertEqual(RigidTransform(rowMajor: a.rowMajor4x4), a)
        }
    }

    func testRigidityCheckRefusesNaNScaleAndReflection() {
        var m = RigidTransform.identity.rowMajor4x4
        m[5] = .nan
        XCTAssertFalse(RigidTransform(rowMajor: m).isRigid())
        var s = RigidTransform.identity.rowMajor4x4
        s[0] = 1.1
        XCTAssertFalse(RigidTransform(rowMajor: s).isRigid())
        var r = RigidTransform.identity.rowMajor4x4
        r[10] = -1 // reflection, det -1
        XCTAssertFalse(RigidTransform(rowMajor: r).isRigid())
    }

    func testLookAtFollowsOpenCVConvention() {
        let T_W_C = RigidTransform.lookAt(eye: Vec3(0, 0, 1), target: Vec3(3, 0, 1))
        // +z of the camera points at the target, +y (down) points to world -z, +x (right) to world -y.
        let forward = T_W_C.rotation * Vec3(0, 0, 1), down = T_W_C.rotation * Vec3(0, 1, 0)
        XCTAssertLessThan(length(forward - Vec3(1, 0, 0)), 1e-12)
        XCTAssertLessThan(length(down - Vec3(0, 0, -1)), 1e-12)
        XCTAssertLessThan(length(T_W_C.rotation * Vec3(1, 0, 0) - Vec3(0, -1, 0)), 1e-12)
        XCTAssertTrue(T_W_C.isRigid())
    }

    func testIntrinsicsProjectUnprojectAndScale() throws {
        let k = Intrinsics(fx: 500, fy: 480, cx: 319.5, cy: 239.5, width: 640, height: 480)
        let p = k.unproject(u: 100, v: 50, depth: 2)
        let uv = try XCTUnwrap(k.project(p))
        XCTAssertEqual(uv.x, 100, accuracy: 1e-9); XCTAssertEqual(uv.y, 50, accuracy: 1e-9)
        XCTAssertNil(k.project(Vec3(0, 0, -1)))
        let half = k.scaled(toWidth: 320, height: 240)
        XCTAssertEqual(half.fx, 250); XCTAssertEqual(half.cx, 159.5); XCTAssertEqual(half.cy, 119.5)
        XCTAssertNoThrow(try k.validate(source: "k"))
        var bad = k; bad.fx = -1
        XCTAssertThrowsError(try bad.validate(source: "calib.json")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badCalibration); XCTAssertEqual((e as? MapError)?.file, "calib.json")
        }
        bad = k; bad.cy = .nan
        XCTAssertThrowsError(try bad.validate(source: "c"))
        bad = k; bad.cx = 5000
        XCTAssertThrowsError(try bad.validate(source: "c"))
    }

    func testSeededRNGIsDeterministicAndForksIndependently() {
        var a = SeededRNG(seed: 42), b = SeededRNG(seed: 42)
        XCTAssertEqual((0..<10).map { _ in a.next() }, (0..<10).map { _ in b.next() })
        let f1 = a.fork(1), f2 = a.fork(2)
        XCTAssertNotEqual(f1, f2)
        var g = SeededRNG(seed: 1)
        let xs = (0..<20000).map { _ in g.gaussian() }
        let mean = xs.reduce(0, +) / Double(xs.count)
        let variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(xs.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03); XCTAssertEqual(variance, 1, accuracy: 0.05)
        let us = (0..<20000).map { _ in g.uniform() }
        XCTAssertTrue(us.allSatisfy { $0 >= 0 && $0 < 1 })
    }

    func testResizeKeepsLabelsAndAveragesColour() {
        // Each output pixel takes the source pixel under its centre: the middle of each block of 3.
        let ids = Gray16Image(width: 6, height: 1, channels: 1, data: [10, 11, 12, 13, 14, 15])
        XCTAssertEqual(ids.resizedNearest(width: 2, height: 1).data, [11, 14])
        let rgb = RGBImage(width: 2, height: 1, channels: 3, data: [0, 0, 0, 200, 100, 50])
        let up = rgb.resizedBilinear(width: 4, height: 1)
        XCTAssertEqual(up.size, ImageSize(width: 4, height: 1))
        XCTAssertEqual(Array(up.data[0..<3]), [0, 0, 0]); XCTAssertEqual(Array(up.data[9..<12]), [200, 100, 50])
        XCTAssertEqual(up.data[3], 50) // a quarter of the way
    }
}
