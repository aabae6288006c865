import MapCore
import Synthetic
import TestSupport
import XCTest

final class TrajectoryAndGroundTruthTests: XCTestCase {
    func testDefaultIntrinsics() throws {
        let scene = try SyntheticScene()
        let K = scene.intrinsics
        XCTAssertEqual(K.width, 320); XCTAssertEqual(K.height, 240)
        XCTAssertEqual(K.fx, 256); XCTAssertEqual(K.fy, 256)
        XCTAssertEqual(K.cx, 159.5); XCTAssertEqual(K.cy, 119.5)
        XCTAssertEqual(2 * atan(160 / K.fx) * 180 / Double.pi, 64, accuracy: 1)
        XCTAssertEqual(scene.frameCount, 60)
        XCTAssertEqual(scene.trajectory.poses.count, 60)
    }

    func testTrajectoryIsSmoothAndInsideTheRoom() throws {
        let scene = try SyntheticScene()
        let poses = scene.trajectory.poses
        for (i, T) in poses.enumerated() {
            XCTAssertTrue(T.isRigid(tolerance: 1e-9), "pose \(i)")
            XCTAssertGreaterThan(scene.sdf(T.translation), 0.25, "camera \(i) too close to a surface")
            let z = T.translation.z
            XCTAssertTrue((1.3...1.6).contains(z), "camera height \(z)")
        }
        for i in 1..<poses.count {
            let a = poses[i - 1], b = poses[i]
            XCTAssertLessThan(length(b.translation - a.translation), 0.2, "step \(i)")
            XCTAssertLessThan((a.inverse * b).rotationAngle, 10 * Double.pi / 180, "rotation step \(i)")
            // C1: consecutive steps change little (second differences of position and heading).
            let c = poses[(i + 1) % poses.count]
            let acc = c.translation - 2 * b.translation + a.translation
            XCTAssertLessThan(length(acc), 0.03, "acceleration at \(i)")
            let turn1 = (a.inverse * b).rotationAngle, turn2 = (b.inverse * c).rotationAngle
            XCTAssertLessThan(abs(turn2 - turn1), 3 * Double.pi / 180, "angular acceleration at \(i)")
        }
        // Continuous in the phase: a tiny phase change gives a tiny pose change.
        let p0 = scene.trajectory.pose(phase: 0.3), p1 = scene.trajectory.pose(phase: 0.3 + 1e-6)
        XCTAssertLessThan(length(p1.translation - p0.translation), 1e-4)
        XCTAssertLessThan((p0.inverse * p1).rotationAngle, 1e-4)
    }

    /// Over the default loop every thing instance and every stuff class is seen (at low resolution).
    func testTrajectorySeesEverything() throws {
        var cfg = SyntheticSceneConfig.small(width: 40, height: 30, frameCount: 60)
        cfg.parallelRendering = false
        let scene = try SyntheticScene(config: cfg)
        var instancePixels: [Int: Int] = [:], semanticPixels: [Int: Int] = [:]
        for i in 0..<scene.frameCount {
            let r = scene.render(T_W_C: scene.trajectory.pose(frame: i))
            for v in r.instance.data { instancePixels[Int(v), default: 0] += 1 }
            for v in r.semantic.data { semanticPixels[Int(v), default: 0] += 1 }
        }
        for o in scene.room.objects {
            XCTAssertGreaterThan(instancePixels[o.instanceID] ?? 0, 20, "\(o.name) \(o.instanceID) barely seen")
        }
        for c in scene.vocabulary.classes {
            XCTAssertGreaterThan(semanticPixels[c.id] ?? 0, 20, "\(c.name) barely seen")
        }
        XCTAssertNil(semanticPixels[0], "every ray must hit something in the closed room")
    }

    func testGroundTruthImagesAreConsistent() throws {
        let scene = Fixtures.small
        let f = try scene.frame(2)
        let table = scene.segmentTable
        XCTAssertEqual(table.segments.count, scene.vocabulary.stuffIDs.count + scene.room.objects.count)
        XCTAssertEqual(Set(table.segments.map(\.id)).count, table.segments.count)
        for i in 0..<f.panoptic.data.count {
            let seg = table.segment(id: Int(f.panoptic.data[i]))!
            XCTAssertEqual(seg.classID, Int(f.semantic.data[i]))
            XCTAssertEqual(seg.instance, Int(f.instance.data[i]))
            XCTAssertEqual(seg.isThing, f.instance.data[i] != 0)
            XCTAssertEqual(scene.vocabulary.class(id: seg.classID)!.isThing, seg.isThing)
        }
        // The table is JSON round-trippable.
        let back = try JSONDecoder().decode(PanopticSegmentTable.self, from: table.jsonData())
        XCTAssertEqual(back, table)
        XCTAssertTrue(String(decoding: table.jsonData(), as: UTF8.self).contains("\"thing\""))
        // RGB is 3-channel, textured (not flat) and the frame passes the mapper's validator.
        XCTAssertEqual(f.frame.rgb.channels, 3)
        XCTAssertGreaterThan(Set(f.frame.rgb.data).count, 60)
        XCTAssertNoThrow(try FrameValidator(vocabulary: scene.vocabulary).validate(f.frame))
    }

    /// Back-project pixels of frame i with the clean depth, project into frame j: where the point is visible in j
    /// (depth agrees), the semantic and instance ids agree.
    func testGroundTruthConsistentAcrossFrames() throws {
        let scene = Fixtures.small
        let K = scene.intrinsics
        let frames = try (0..<4).map { try scene.frame($0) }
        var checked = 0
        for (a, b) in [(0, 1), (1, 3), (0, 2), (2, 3)] {
            let fa = frames[a], fb = frames[b]
            let T_Cb_W = fb.frame.T_W_C.inverse
            for v in 1..<(K.height - 1) {
                for u in 1..<(K.width - 1) {
                    guard uniform(fa, u, v) else { continue }
                    let p_W = SyntheticReference.backProject(u: u, v: v, depth: Double(fa.cleanDepth[u, v]),
                                                             T_W_C: fa.frame.T_W_C, intrinsics: K)
                    let p_C = T_Cb_W * p_W
                    guard let uv = K.project(p_C) else { continue }
                    let ub = Int(uv.x.rounded()), vb = Int(uv.y.rounded())
                    guard ub >= 1, vb >= 1, ub < K.width - 1, vb < K.height - 1, uniform(fb, ub, vb) else { continue }
                    guard abs(Double(fb.cleanDepth[ub, vb]) - p_C.z) < 0.02 else { continue }  // occluded in b
                    XCTAssertEqual(fa.semantic[u, v], fb.semantic[ub, vb], "frame \(a) (\(u),\(v)) -> \(b)")
                    XCTAssertEqual(fa.instance[u, v], fb.instance[ub, vb], "frame \(a) (\(u),\(v)) -> \(b)")
                    XCTAssertEqual(fa.panoptic[u, v], fb.panoptic[ub, vb])
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    /// 3x3 neighbourhood has one panoptic id (away from label boundaries).
    private func uniform(_ f: SyntheticFrame, _ u: Int, _ v: Int) -> Bool {
        let c = f.panoptic[u, v]
        for dv in -1...1 { for du in -1...1 where f.panoptic[u + du, v + dv] != c { return false } }
        return true
    }

    func testDepthNoiseModel() throws {
        let scene = Fixtures.small
        let f = try scene.frame(1)
        let r = scene.render(T_W_C: f.frame.T_W_C)
        XCTAssertEqual(f.cleanDepth, r.depth)
        // Noise-free config: noisy == clean.
        var g = SeededRNG(seed: 1)
        XCTAssertEqual(DepthNoiseModel(config: .none).apply(clean: r.depth, viewCosine: r.viewCosine, rng: &g), r.depth)
        // Gaussian only: normalised residuals have unit variance.
        var gaussOnly = DepthNoiseConfig.none
        gaussOnly.sigmaPerSquareMetre = 0.01
        var sum2 = 0.0, count = 0
        for k in 0..<10 {
            var rng = SeededRNG(seed: UInt64(k))
            let noisy = DepthNoiseModel(config: gaussOnly).apply(clean: r.depth, viewCosine: r.viewCosine, rng: &rng)
            for i in 0..<noisy.data.count {
                let z = Double(r.depth.data[i])
                let e = (Double(noisy.data[i]) - z) / (0.01 * z * z)
                sum2 += e * e; count += 1
            }
        }
        XCTAssertEqual((sum2 / Double(count)).squareRoot(), 1, accuracy: 0.05)
        // Grazing dropout: exactly the pixels below the threshold are invalid.
        var grazing = DepthNoiseConfig.none
        grazing.grazingCosineThreshold = 0.3
        let dropped = DepthNoiseModel(config: grazing).apply(clean: r.depth, viewCosine: r.viewCosine, rng: &g)
        for i in 0..<dropped.data.count {
            XCTAssertEqual(dropped.data[i] == 0, r.viewCosine.data[i] < 0.3)
        }
        // Holes: some frames of the default config have invalid blobs.
        var holesOnly = DepthNoiseConfig.none
        holesOnly.maxHolesPerFrame = 3
        var framesWithHoles = 0
        for k in 0..<20 {
            var rng = SeededRNG(seed: UInt64(100 + k))
            let h = DepthNoiseModel(config: holesOnly).apply(clean: r.depth, viewCosine: r.viewCosine, rng: &rng)
            let zeros = h.data.filter { $0 == 0 }.count
            if zeros > 0 { framesWithHoles += 1 }
            XCTAssertLessThan(zeros, h.data.count / 3)
        }
        XCTAssertGreaterThan(framesWithHoles, 8)
        XCTAssertLessThan(framesWithHoles, 20)
        // The default noisy frame differs from clean but stays close.
        var diff = 0
        for i in 0..<f.frame.depth.data.count where f.frame.depth.data[i] > 0 {
            XCTAssertEqual(f.frame.depth.data[i], f.cleanDepth.data[i], accuracy: 0.1)
            if f.frame.depth.data[i] != f.cleanDepth.data[i] { diff += 1 }
        }
        XCTAssertGreaterThan(diff, f.frame.depth.data.count / 2)
    }
}
