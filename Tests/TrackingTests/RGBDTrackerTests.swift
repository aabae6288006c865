import Foundation
import IO
import MapCore
import Synthetic
import Tracking
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
}
