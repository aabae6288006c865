import Foundation
import IO
import MapCore
import Synthetic
@testable import Tracking
import XCTest

/// RGB-D tracking (given poses ignored) against the given poses: ATE on the synthetic room (noisy depth) and on the real
/// 3DMatch sample; the failure detector on a frame that does not fit.
final class RGBDTrackerTests: XCTestCase {
    func track(_ frames: [Frame]) -> (poses: [RigidTransform], lost: Int) {
        var tracker = RGBDTracker()
        var poses: [RigidTransform] = [], lost = 0
        let start = Date()
        defer { print(String(format: "tracked %d frames at %.1f frames/s", frames.count, Double(frames.count) / Date().timeIntervalSince(start))) }
        for f in frames {
            let r = tracker.track(depth: f.depth, rgb: f.rgb, intrinsics: f.intrinsics, initialPose: frames[0].T_W_C)
            poses.append(r.T_W_C)
            if r.lost { lost += 1; if lost < 3 { print("lost", f.index, r.inlierFraction, r.residual) } }
        }
        return (poses, lost)
    }

    func testSyntheticRoomATEBelowOneCentimetre() throws {
        // The default room's trajectory and frame count (60 frames: ~0.12 m and ~7 degrees between frames), at
        // 160x120 with the default depth noise.
        let config = SyntheticSceneConfig.small(width: 160, height: 120, frameCount: 60, seed: 2)
        let scene = try SyntheticScene(config: config)
        let frames = try (0..<60).map { try scene.frame($0).frame }
        let (poses, lost) = track(frames)
        let ate = RGBDTracker.ate(poses, frames.map(\.T_W_C))
        print(String(format: "synthetic room: ATE %.2f cm over %d frames, %d lost", ate * 100, frames.count, lost))
        XCTAssertEqual(lost, 0)
        XCTAssertLessThan(ate, 0.01)
    }

    func testThreeDMatchSampleATEBelowFiveCentimetres() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/3dmatch-sample")
        guard FileManager.default.fileExists(atPath: root.path) else {
            throw XCTSkip("real data not found at \(root.path) (../shared/data/3dmatch-sample)")
        }
        let reader = try SequenceFormats.open(root)
        let frames = try (0..<reader.info.frameCount).map { try reader.frame(at: $0) }
        let (poses, lost) = track(frames)
        let ate = RGBDTracker.ate(poses, frames.map(\.T_W_C))
        print(String(format: "3dmatch-sample: ATE %.2f cm over %d frames, %d lost", ate * 100, frames.count, lost))
        XCTAssertLessThan(ate, 0.05)
    }

    func testAFrameOfAnotherPlaceIsReportedLostAndLeavesTheReference() throws {
        // The default trajectory (60 frames), so the good frame is one step (~0.12 m, ~7 degrees) from the reference.
        var config = SyntheticSceneConfig.small(width: 80, height: 60, frameCount: 60, seed: 2)
        config.depthNoise = .none
        let scene = try SyntheticScene(config: config)
        let f0 = try scene.frame(0).frame, f1 = try scene.frame(1).frame
        var tracker = RGBDTracker()
        _ = tracker.track(depth: f0.depth, rgb: f0.rgb, intrinsics: f0.intrinsics, initialPose: f0.T_W_C)
        // A flat wall 0.3 m away filling the view: nothing of the reference fits it.
        let wall = DepthImage(width: 80, height: 60, channels: 1, repeating: 0.3)
        let bad = tracker.track(depth: wall, rgb: f0.rgb, intrinsics: f0.intrinsics)
        XCTAssertTrue(bad.lost, "inliers \(bad.inlierFraction), residual \(bad.residual)")
        XCTAssertFalse(bad.newKeyframe)
        // The next good frame is still tracked against the untouched reference.
        let good = tracker.track(depth: f1.depth, rgb: f1.rgb, intrinsics: f1.intrinsics)
        XCTAssertFalse(good.lost)
        XCTAssertLessThan(length(good.T_W_C.translation - f1.T_W_C.translation), 0.01)
    }

    /// The fast step (Float buffers, row chunks, threads) against its reference twin: same pyramid (up to Float
    /// rounding) and the same Gauss-Newton step at every level, within tiny numerical differences.
    func testStepMatchesReferenceTwin() throws {
        let config = SyntheticSceneConfig.small(width: 160, height: 120, frameCount: 60, seed: 2)
        let scene = try SyntheticScene(config: config)
        let f0 = try scene.frame(0).frame, f1 = try scene.frame(1).frame
        var tc = RGBDTracker.Config()
        tc.threads = 2
        let levels = tc.iterations.count
        let fast0 = RGBDTracker.Pyramid(depth: f0.depth, rgb: f0.rgb, intrinsics: f0.intrinsics, levels: levels,
                                        near: tc.near, far: tc.far, threads: 2)
        let fast1 = RGBDTracker.Pyramid(depth: f1.depth, rgb: f1.rgb, intrinsics: f1.intrinsics, levels: levels,
                                        near: tc.near, far: tc.far, threads: 2)
        let ref0 = ReferenceRGBD.Pyramid(depth: f0.depth, rgb: f0.rgb, intrinsics: f0.intrinsics, levels: levels,
                                         near: tc.near, far: tc.far)
        let ref1 = ReferenceRGBD.Pyramid(depth: f1.depth, rgb: f1.rgb, intrinsics: f1.intrinsics, levels: levels,
                                         near: tc.near, far: tc.far)
        for (fast, ref) in [(fast0, ref0), (fast1, ref1)] {
            for l in 0..<levels {
                let a = fast.levels[l], b = ref.levels[l]
                XCTAssertEqual(a.intrinsics, b.intrinsics)
                XCTAssertEqual(a.intensity, b.intensity)
                var normalMismatches = 0
                for i in 0..<a.vertices.count {
                    XCTAssertEqual(a.mask[i] & 1 != 0, b.vertices[i].z > 0, "level \(l) pixel \(i)")
                    XCTAssertLessThan(length(SIMD3<Double>(a.vertices[i]) - b.vertices[i]), 1e-5)
                    if (a.mask[i] & 2 != 0) != (b.normals[i] != .zero) { normalMismatches += 1; continue }
                    XCTAssertLessThan(length(SIMD3<Double>(a.normals[i]) - b.normals[i]), 1e-3)
                    XCTAssertEqual(a.image[i].y, b.gradX[i]); XCTAssertEqual(a.image[i].z, b.gradY[i])
                }
                XCTAssertLessThanOrEqual(normalMismatches, a.vertices.count / 1000, "level \(l)")
            }
        }
        // A pose near the truth (a few mm and a fraction of a degree off), at every level.
        let truth = f0.T_W_C.inverse * f1.T_W_C
        let T_R_C = RigidTransform(rotation: Mat3(axis: normalize(Vec3(1, 2, 3)), angle: 0.005), translation: Vec3(0.004, -0.003, 0.002)) * truth
        let minCos = cos(tc.maxNormalAngle * .pi / 180)
        for l in 0..<levels {
            let sigma = tc.geometricSigma * pow(tc.geometricSigmaGrowth, Double(l)), dist = tc.maxDistance * pow(2, Double(l))
            let a = RGBDTracker.solveStep(current: fast1.levels[l], reference: fast0.levels[l], T_R_C: T_R_C,
                                          maxDistance: dist, minCos: minCos, config: tc, geometricSigma: sigma)
            let b = ReferenceRGBD.solveStep(current: ref1.levels[l], reference: ref0.levels[l], T_R_C: T_R_C,
                                            maxDistance: dist, minCos: minCos, config: tc, geometricSigma: sigma)
            XCTAssertEqual(a.inlierFraction, b.inlierFraction, accuracy: 2e-3, "level \(l)")
            if b.rms.isFinite { XCTAssertEqual(a.rms, b.rms, accuracy: 1e-3 * b.rms, "level \(l)") } else { XCTAssertEqual(a.rms, b.rms) }
            let xa = try XCTUnwrap(a.xi), xb = try XCTUnwrap(b.xi)
            let scale = xb.map(abs).max()!
            for m in 0..<6 { XCTAssertEqual(xa[m], xb[m], accuracy: 1e-3 * scale, "level \(l) xi[\(m)]") }
        }
    }

    /// Sums run over a fixed number of row chunks in order, so the thread count does not change any bit.
    func testThreadCountDoesNotChangeTheResult() throws {
        let config = SyntheticSceneConfig.small(width: 80, height: 60, frameCount: 60, seed: 2)
        let scene = try SyntheticScene(config: config)
        let frames = try (0..<4).map { try scene.frame($0).frame }
        var poses: [[RigidTransform]] = []
        for threads in [1, 3] {
            var c = RGBDTracker.Config()
            c.threads = threads
            var tracker = RGBDTracker(config: c)
            poses.append(frames.map {
                tracker.track(depth: $0.depth, rgb: $0.rgb, intrinsics: $0.intrinsics, initialPose: frames[0].T_W_C).T_W_C
            })
        }
        XCTAssertEqual(poses[0], poses[1])
    }
}
