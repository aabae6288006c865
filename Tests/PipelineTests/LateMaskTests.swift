import Evaluation
import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import TestSupport
import XCTest

/// Masks from an external segmenter arriving through the inbox seconds after their frames give the same map as masks
/// arriving with the frames.
final class LateMaskTests: XCTestCase {
    /// The synthetic room without masks in the frames (a live camera's view of it).
    struct WithoutMasks: FrameSource {
        let base: SyntheticSource
        var info: SourceInfo { base.info }
        var isPaced: Bool { false }
        func frame(at index: Int) throws -> Frame {
            var f = try base.frame(at: index)
            f.masks = nil
            return f
        }
        func frames(from start: Int) -> IndexedFrames { framesReading(self, count: base.scene.frameCount, from: start) }
    }

    /// A stand-in for an external segmenter: watches the session's keyframe previews and, `delay` seconds after one
    /// appears, writes that frame's masks into the inbox (image, then JSON, each renamed into place).
    final class DelayedSegmenter: @unchecked Sendable {
        // Only the segmenter's own task touches `due` / `written`.
        let scene: SyntheticScene
        let keyframes: URL
        let inbox: URL
        let delay: Double
        var due: [Int: Date] = [:]
        var written = Set<Int>()
        init(scene: SyntheticScene, keyframes: URL, inbox: URL, delay: Double) {
            self.scene = scene; self.keyframes = keyframes; self.inbox = inbox; self.delay = delay
        }

        func run() async {
            while !Task.isCancelled {
                for name in Files.list(keyframes) where name.hasSuffix(".png") {
                    guard let i = Int(name.dropLast(4)), due[i] == nil else { continue }
                    due[i] = Date().addingTimeInterval(delay)
                }
                for (i, t) in due where t <= Date() && !written.contains(i) {
                    guard let masks = try? scene.frame(i).frame.masks else { continue }
                    try? MaskFiles.write(masks, image: inbox.appendingPathComponent(frameName(i) + ".png"),
                                         segments: inbox.appendingPathComponent(frameName(i) + ".json"))
                    written.insert(i)
                }
                try? await Task.sleep(nanoseconds: 50_000_000)
            }
        }
    }

    static func scene() throws -> SyntheticScene {
        var c = SyntheticSceneConfig.small(width: 128, height: 96, frameCount: 24, seed: 2)
        c.depthNoise = .none
        c.surfaceSampleCount = 100_000
        return try SyntheticScene(config: c)
    }

    func panopticQuality(_ map: URL, scene: SyntheticScene) throws -> Double {
        let gt = SyntheticSequence(scene: scene).surfacePLY(scene.surfaceSamples())
        let m = try PanopticEvaluation.evaluate3D(mesh: try PLY.read(map.appendingPathComponent("mesh.ply")),
                                                  groundTruth: gt, vocabulary: scene.vocabulary,
                                                  meshSource: "mesh", groundTruthSource: "gt")
        return m.pq
    }

    func testLateMasksGiveTheSamePanopticQuality() async throws {
        let tmp = try TempDirectory("pano-late-masks")
        defer { tmp.remove() }
        let scene = try Self.scene()
        var config = MappingSessionTests.config()
        config.snapshotEveryKeyframes = 0
        // As in the default configuration, the final refinement over all keyframes outweighs the online steps.
        config.mapper.finalPanopticSteps = 300
        config.mapper.voxel = 0.03

        // Masks with the frames.
        let onTime = try MappingSession(config: config, info: SyntheticSource(scene: scene).info,
                                        directory: tmp.appending("on-time"))
        try await onTime.run(SyntheticSource(scene: scene))

        // The same frames without masks; masks arrive through the inbox 1.5 s after each keyframe was stored.
        var late = config
        late.storeKeyframes = true
        late.maskInbox = tmp.appending("inbox").path
        late.maskWaitSeconds = 20
        let source = WithoutMasks(base: SyntheticSource(scene: scene))
        let session = try MappingSession(config: late, info: source.info, directory: tmp.appending("late"))
        let segmenter = DelayedSegmenter(scene: scene, keyframes: tmp.appending("late/keyframes"),
                                         inbox: tmp.appending("inbox"), delay: 1.5)
        let segmenterTask = Task { await segmenter.run() }
        final class Lag: @unchecked Sendable { var maxLag = 0 } // written by the report closure only
        let lag = Lag()
        let result = try await session.run(source) { p in
            lag.maxLag = max(lag.maxLag, p.keyframesIntegrated - p.masksReceived)
        }
        segmenterTask.cancel()
        _ = await segmenterTask.value
        let pqOnTime = try panopticQuality(tmp.appending("on-time/map"), scene: scene)
        let pqLate = try panopticQuality(tmp.appending("late/map"), scene: scene)

        XCTAssertEqual(result.stage, "done")
        XCTAssertGreaterThanOrEqual(lag.maxLag, 3, "masks arrived several keyframes after their frames")
        XCTAssertEqual(result.masksReceived, result.keyframes, "every kept keyframe got its masks before refinement")
        XCTAssertGreaterThan(pqOnTime, 0.3, "the on-time map is panoptic at all")
        XCTAssertLessThanOrEqual(abs(pqLate - pqOnTime), 0.05 * pqOnTime, "PQ late \(pqLate) vs on time \(pqOnTime)")
        print("late masks: PQ on time \(pqOnTime), late \(pqLate), max lag \(lag.maxLag) keyframes")
    }
}
