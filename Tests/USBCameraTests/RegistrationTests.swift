import Foundation
import MapCore
import USBCamera
import XCTest

/// Reference twin of `DepthRegistration`: the obvious per-pixel loop in Double with MapCore's own
/// unproject / transform / project, rounding to the nearest pixel, z-buffer by smallest colour-frame z.
func referenceRegister(_ depth: DepthImage, depthCamera: Intrinsics, colorCamera: Intrinsics,
                       T_C_D: RigidTransform) -> DepthImage {
    var best = [Double](repeating: .infinity, count: colorCamera.width * colorCamera.height)
    for v in 0..<depth.height {
        for u in 0..<depth.width {
            let z = Double(depth[u, v])
            if !(z > 0) || !z.isFinite { continue }
            let p_D = depthCamera.unproject(u: Double(u), v: Double(v), depth: z)
            let p_C = T_C_D * p_D
            guard let uv = colorCamera.project(p_C) else { continue }
            let uc = uv.x.rounded(), vc = uv.y.rounded()
            if uc < 0 || vc < 0 || uc >= Double(colorCamera.width) || vc >= Double(colorCamera.height) { continue }
            let j = Int(vc) * colorCamera.width + Int(uc)
            best[j] = min(best[j], p_C.z)
        }
    }
    return DepthImage(width: colorCamera.width, height: colorCamera.height,
                      data: best.map { $0.isFinite ? Float($0) : 0 })
}

/// Small deterministic generator (SplitMix64), so the tests need no other module.
struct SeededRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

final class RegistrationTests: XCTestCase {
    func testIdentityExtrinsicsAndEqualIntrinsicsGiveTheInput() {
        let k = Intrinsics(fx: 300, fy: 310, cx: 80.5, cy: 59, width: 160, height: 120)
        var rng = SeededRNG(state: 7)
        var data = [Float](repeating: 0, count: k.width * k.height)
        for i in data.indices where rng.uniform() > 0.1 { data[i] = Float(0.4 + 4 * rng.uniform()) }
        let depth = DepthImage(width: k.width, height: k.height, data: data)
        let out = DepthRegistration(depthCamera: k, colorCamera: k, T_C_D: .identity).register(depth)
        XCTAssertEqual(out, depth)
    }

    /// Ground truth: a plane z = Z0 in the colour camera, seen by a depth camera 2.5 cm to its left.
    func testFrontoParallelPlaneWithABaseline() {
        let k = Intrinsics(fx: 585, fy: 585, cx: 319.5, cy: 239.5, width: 640, height: 480)
        let z0 = 2.0, baseline = 0.025
        let T_C_D = RigidTransform(translation: Vec3(baseline, 0, 0))
        // The depth camera sees the plane at the same z everywhere (pure x translation).
        let depth = DepthImage(width: 640, height: 480, repeating: Float(z0))
        let out = DepthRegistration(depthCamera: k, colorCamera: k, T_C_D: T_C_D).register(depth)
        // Every depth pixel u lands at u + f b / Z0 = u + 7.3125 → rounded u + 7: colour columns 0..6 are holes, the
        // rest is covered with exactly the plane's depth.
        let shift = Int((k.fx * baseline / z0).rounded())
        XCTAssertEqual(shift, 7)
        for v in 0..<480 {
            for u in 0..<640 {
                if u < shift { XCTAssertEqual(out[u, v], 0, "(\(u), \(v)) should be a hole") }
                else { XCTAssertEqual(out[u, v], Float(z0), "(\(u), \(v))") }
            }
        }
    }

    /// Ground truth with a rotated depth camera of other intrinsics and resolution: a plane z = Z0 in the colour
    /// camera; the depth image is the ray–plane intersection; the registered depth equals Z0 wherever covered.
    func testTiltedDepthCameraSeesThePlaneAtItsDepth() {
        let kd = Intrinsics(fx: 594.2, fy: 591.0, cx: 339.3, cy: 242.7, width: 640, height: 480)
        let kc = Intrinsics(fx: 320, fy: 321, cx: 159.5, cy: 119.7, width: 320, height: 240)
        let T_C_D = RigidTransform(rotation: Mat3(axis: normalize(Vec3(0.3, 1, 0.2)), angle: 0.02),
                                   translation: Vec3(0.025, -0.001, -0.011))
        let z0 = 1.7
        var depth = DepthImage(width: 640, height: 480, repeating: 0)
        for v in 0..<480 {
            for u in 0..<640 {
                let d = kd.unproject(u: Double(u), v: Double(v), depth: 1)     // ray with d.z = 1
                let s = (z0 - T_C_D.translation.z) / (T_C_D.rotation * d).z   // (R s d + t).z = Z0
                depth[u, v] = Float(s)
            }
        }
        let out = DepthRegistration(depthCamera: kd, colorCamera: kc, T_C_D: T_C_D).register(depth)
        var covered = 0
        for z in out.data where z != 0 {
            covered += 1
            XCTAssertEqual(Double(z), z0, accuracy: 2e-6)
        }
        // The colour camera's field of view is inside the depth camera's: nearly every pixel is covered.
        XCTAssertGreaterThan(covered, out.pixelCount * 95 / 100, "covered \(covered) of \(out.pixelCount)")
    }

    func testMatchesTheReferenceTwinWithOcclusions() {
        let kd = Intrinsics(fx: 200, fy: 205, cx: 79.5, cy: 60.2, width: 160, height: 120)
        let kc = Intrinsics(fx: 230, fy: 228, cx: 84.1, cy: 63.9, width: 170, height: 130)
        let T_C_D = RigidTransform(rotation: Mat3(axis: normalize(Vec3(1, 2, 0.5)), angle: 0.05),
                                   translation: Vec3(0.06, 0.01, -0.02))
        var rng = SeededRNG(state: 42)
        // Background wall with foreground boxes (depth discontinuities make occlusions after the baseline shift),
        // noise and invalid pixels.
        var depth = DepthImage(width: 160, height: 120, repeating: 0)
        for v in 0..<120 {
            for u in 0..<160 {
                var z = 3.0 + 0.002 * Double(u) + 0.1 * rng.uniform()
                if (30..<70).contains(u) && (20..<90).contains(v) { z = 0.8 + 0.01 * rng.uniform() }
                if (100..<130).contains(u) && (50..<110).contains(v) { z = 1.5 }
                if rng.uniform() < 0.05 { z = 0 }
                depth[u, v] = Float(z)
            }
        }
        let out = DepthRegistration(depthCamera: kd, colorCamera: kc, T_C_D: T_C_D).register(depth)
        let ref = referenceRegister(depth, depthCamera: kd, colorCamera: kc, T_C_D: T_C_D)
        var mismatches = 0
        for i in out.data.indices {
            if (out.data[i] == 0) != (ref.data[i] == 0) { mismatches += 1; continue }
            XCTAssertEqual(out.data[i], ref.data[i], accuracy: 1e-6, "pixel \(i)")
        }
        // Only a sample landing exactly on a half-pixel could round differently (summation order); allow a handful.
        XCTAssertLessThanOrEqual(mismatches, 2)
        // The foreground box survives the z-buffer where it overlaps the wall.
        XCTAssertTrue(out.data.contains { $0 > 0 && $0 < 0.9 })
    }

    func testNearestSampleWinsTheZBuffer() {
        // A 1x1 colour camera with a tiny focal length sees every depth pixel in its one pixel.
        let kd = Intrinsics(fx: 100, fy: 100, cx: 1, cy: 0, width: 3, height: 1)
        let kc = Intrinsics(fx: 0.01, fy: 0.01, cx: 0, cy: 0, width: 1, height: 1)
        let reg = DepthRegistration(depthCamera: kd, colorCamera: kc, T_C_D: .identity)
        XCTAssertEqual(reg.register(DepthImage(width: 3, height: 1, data: [2.0, 0.7, 1.5])).data, [0.7])
        XCTAssertEqual(reg.register(DepthImage(width: 3, height: 1, data: [0, 0, 1.5])).data, [1.5])
        XCTAssertEqual(reg.register(DepthImage(width: 3, height: 1, data: [0, .nan, .infinity])).data, [0])
    }

    func testBehindTheColourCameraIsDropped() {
        let k = Intrinsics(fx: 100, fy: 100, cx: 1, cy: 1, width: 3, height: 3)
        // The colour camera is 1 m in front of the depth camera: samples nearer than 1 m are behind it.
        let reg = DepthRegistration(depthCamera: k, colorCamera: k, T_C_D: RigidTransform(translation: Vec3(0, 0, -1)))
        let out = reg.register(DepthImage(width: 3, height: 3, data: [0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5]))
        XCTAssertEqual(out.data, [Float](repeating: 0, count: 9))
        let out2 = reg.register(DepthImage(width: 3, height: 3, repeating: 0).with(centre: 3))
        XCTAssertEqual(out2[1, 1], 2)
    }
}

private extension DepthImage {
    func with(centre z: Float) -> DepthImage {
        var d = self
        d[width / 2, height / 2] = z
        return d
    }
}

final class BayerDemosaicTests: XCTestCase {
    /// GRBG mosaic of an RGB image: keep, per pixel, the channel its filter passes.
    func mosaic(of rgb: RGBImage, pattern: BayerPattern = .grbg) -> Image<UInt8> {
        var m = Image<UInt8>(width: rgb.width, height: rgb.height, repeating: 0)
        for y in 0..<rgb.height { for x in 0..<rgb.width { m[x, y] = rgb[x, y, pattern.channel(x: x, y: y)] } }
        return m
    }

    func testPatternLayout() {
        // GRBG: row 0 = G R, row 1 = B G.
        XCTAssertEqual([0, 1, 2, 3].map { BayerPattern.grbg.channel(x: $0 % 2, y: $0 / 2) }, [1, 0, 2, 1])
        XCTAssertEqual([0, 1, 2, 3].map { BayerPattern.rggb.channel(x: $0 % 2, y: $0 / 2) }, [0, 1, 1, 2])
        XCTAssertEqual([0, 1, 2, 3].map { BayerPattern.gbrg.channel(x: $0 % 2, y: $0 / 2) }, [1, 2, 0, 1])
        XCTAssertEqual([0, 1, 2, 3].map { BayerPattern.bggr.channel(x: $0 % 2, y: $0 / 2) }, [2, 1, 1, 0])
        XCTAssertEqual(BayerPattern.grbg.channel(x: 5, y: 2), 0)
        XCTAssertEqual(BayerPattern.grbg.channel(x: 4, y: 7), 2)
    }

    func testConstantColourEverywhereIncludingBorders() {
        for (w, h) in [(7, 5), (8, 6), (2, 2), (1, 1), (3, 1)] {
            for pattern in BayerPattern.allCases {
                let colour: [UInt8] = [200, 90, 17]
                let rgb = RGBImage(width: w, height: h, channels: 3,
                                   data: (0..<w * h).flatMap { _ in colour })
                let m = mosaic(of: rgb, pattern: pattern)
                let out = BayerDemosaic.demosaic(m, pattern: pattern)
                if w >= 2 && h >= 2 {
                    XCTAssertEqual(out, rgb, "\(w)x\(h) \(pattern)")
                } else {
                    // A single row or pixel lacks some colours entirely; the ones it has are kept.
                    for y in 0..<h { for x in 0..<w {
                        XCTAssertEqual(out[x, y, pattern.channel(x: x, y: y)], colour[pattern.channel(x: x, y: y)])
                    } }
                }
            }
        }
    }

    /// A 4x4 GRBG mosaic with values 10, 20, ..., 160 row by row, demosaiced by hand:
    ///
    ///     G10  R20  G30  R40
    ///     B50  G60  B70  G80
    ///     G90  R100 G110 R120
    ///     B130 G140 B150 G160
    func testHandComputed4x4() {
        let m = Image<UInt8>(width: 4, height: 4, data: (1...16).map { UInt8($0 * 10) })
        let out = BayerDemosaic.demosaic(m, pattern: .grbg)
        func px(_ x: Int, _ y: Int) -> [UInt8] { [out[x, y, 0], out[x, y, 1], out[x, y, 2]] }
        // (0,0) G: R from its one row neighbour (20), B from its one column neighbour (50).
        XCTAssertEqual(px(0, 0), [20, 10, 50])
        // (1,0) R: G = (10 + 30 + 60) / 3 = 33.3 → 33; B = (50 + 70) / 2 = 60 (diagonals below).
        XCTAssertEqual(px(1, 0), [20, 33, 60])
        // (3,0) R at the corner: G = (30 + 80) / 2 = 55; B = 70 (one diagonal).
        XCTAssertEqual(px(3, 0), [40, 55, 70])
        // (1,1) G in a B row: R from the column (20 + 100) / 2 = 60, B from the row (50 + 70) / 2 = 60.
        XCTAssertEqual(px(1, 1), [60, 60, 60])
        // (2,1) B, interior: G = (30 + 110 + 60 + 80) / 4 = 70; R = (20 + 40 + 100 + 120) / 4 = 70.
        XCTAssertEqual(px(2, 1), [70, 70, 70])
        // (2,2) G in an R row: R = (100 + 120) / 2 = 110; B = (70 + 150) / 2 = 110.
        XCTAssertEqual(px(2, 2), [110, 110, 110])
        // (0,3) B: G = (90 + 140) / 2 = 115; R = 100 (one diagonal).
        XCTAssertEqual(px(0, 3), [100, 115, 130])
        // (3,3) G: R = 120 (above), B = 150 (left).
        XCTAssertEqual(px(3, 3), [120, 160, 150])
        // (0,1) B on the left edge: G = (10 + 90 + 60) / 3 = 53.3 → 53; R = (20 + 100) / 2 = 60.
        XCTAssertEqual(px(0, 1), [60, 53, 50])
    }

    func testSmoothImageIsRecovered() {
        let w = 96, h = 64
        var rgb = RGBImage(width: w, height: h, channels: 3, repeating: 0)
        for y in 0..<h {
            for x in 0..<w {
                let fx = Double(x), fy = Double(y)
                rgb[x, y, 0] = UInt8((128 + 50 * sin(2 * .pi * fx / 64 + 0.3) + 20 * cos(2 * .pi * fy / 48)).rounded())
                rgb[x, y, 1] = UInt8((120 + 60 * cos(2 * .pi * (fx + fy) / 80)).rounded())
                rgb[x, y, 2] = UInt8((100 + 0.8 * fx + 0.5 * fy).rounded())
            }
        }
        let out = BayerDemosaic.demosaic(mosaic(of: rgb), pattern: .grbg)
        var maxInterior = 0, maxAll = 0, sum = 0
        for y in 0..<h {
            for x in 0..<w {
                for c in 0..<3 {
                    let e = abs(Int(out[x, y, c]) - Int(rgb[x, y, c]))
                    sum += e
                    maxAll = max(maxAll, e)
                    if x > 0 && y > 0 && x < w - 1 && y < h - 1 { maxInterior = max(maxInterior, e) }
                }
            }
        }
        let mean = Double(sum) / Double(w * h * 3)
        XCTAssertLessThanOrEqual(maxInterior, 2, "interior bilinear error")
        // At the border a missing colour comes from a neighbour one pixel (or one diagonal) away, so the error is up to
        // |∂x| + |∂y| of the image: for red 50·2π/64 + 20·2π/48 ≈ 7.5 per pixel.
        XCTAssertLessThanOrEqual(maxAll, 8, "border (one-sided) error")
        XCTAssertLessThan(mean, 0.8)
    }

    func testBufferAPIAgreesWithImageAPI() {
        var rng = SeededRNG(state: 3)
        let m = Image<UInt8>(width: 13, height: 9, data: (0..<117).map { _ in UInt8(rng.next() & 0xFF) })
        var out = [UInt8](repeating: 1, count: 13 * 9 * 3)
        m.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                BayerDemosaic.demosaic(src, width: 13, height: 9, pattern: .grbg, into: dst)
            }
        }
        XCTAssertEqual(out, BayerDemosaic.demosaic(m).data)
        // Own samples are kept exactly.
        for y in 0..<9 { for x in 0..<13 { XCTAssertEqual(out[(y * 13 + x) * 3 + BayerPattern.grbg.channel(x: x, y: y)], m[x, y]) } }
    }
}
