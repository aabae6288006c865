import Foundation
import MapCore
import Pipeline
import Synthetic
import TestSupport
import Tracking
import XCTest

/// `pano run --track`: the tracker's poses replace the given ones; frames it cannot place never reach the map.
final class TrackedSessionTests: XCTestCase {
    /// The synthetic room with the depth of frames `blind` wiped out (a covered sensor): untrackable.
    struct Blinded: FrameSource {
        let base: SyntheticSource
        let blind: Range<Int>
        var info: SourceInfo { base.info }
        var isPaced: Bool { false }
        func frame(at index: Int) throws -> Frame {
            var f = try base.frame(at: index)
            if blind.contains(index) { f.depth.data = [Float](repeating: 0, count: f.depth.data.count) }
            return f
        }
        func frames(from start: Int) -> IndexedFrames { framesReading(self, count: base.scene.frameCount, from: start) }
    }

    static func scene(frames: Int) throws -> SyntheticScene {
        var c = SyntheticSceneConfig.small(width: 160, height: 120, frameCount: 60, seed: 2)
        c.depthNoise = .none
        c.frameCount = 60 // the default trajectory; tests stream a prefix of it
        return try SyntheticScene(config: c)
    }

    func storedPoseError(_ dir: URL, scene: SyntheticScene) throws -> (indices: [Int], ate: Double) {
        let store = KeyframeStore(directory: dir.appendingPathComponent("keyframes"))
        let indices = store.indices()
        let ate = RGBDTracker.ate(try indices.map { try store.read($0).T_W_C }, try indices.map { try scene.frame($0).frame.T_W_C })
        return (indices, ate)
    }

    func session(_ dir: URL, info: SourceInfo) throws -> MappingSession {
        var config = MappingSessionTests.config()
        config.storeKeyframes = true
        config.snapshotEveryKeyframes = 0
        config.checkpointEveryKeyframes = 4
        config.mapper.appearance = false
        return try MappingSession(config: config, info: info, directory: dir)
    }

    /// A short blackout: its frames are withheld and counted, tracking picks up after it, the map completes.
    func testShortLossIsWithheldAndTrackingContinues() async throws {
        let tmp = try TempDirectory("pano-track-short")
        defer { tmp.remove() }
        let scene = try Self.scene(frames: 60)
        let base = Blinded(base: SyntheticSource(scene: scene), blind: 8..<11)
        let monitor = TrackingMonitor()
        let source = TrackedSource(base: Prefix(base: base, count: 20), anchor: try scene.frame(0).frame.T_W_C,
                                   monitor: monitor)
        let result = try await session(tmp.url, info: source.info).run(source)
        XCTAssertEqual(result.stage, "done")
        XCTAssertEqual(monitor.lost, 3)
        XCTAssertEqual(monitor.tracked, 17)
        let (indices, ate) = try storedPoseError(tmp.url, scene: scene)
        XCTAssertTrue(indices.allSatisfy { !(8..<11).contains($0) }, "no blind frame became a keyframe: \(indices)")
        XCTAssertLessThan(ate, 0.015, "tracked keyframe poses")
    }

    /// A long blackout: relocalisation fails, the run stops with a clear error, and what was mapped is saved intact.
    func testLongLossStopsWithTheSessionSaved() async throws {
        let tmp = try TempDirectory("pano-track-long")
        defer { tmp.remove() }
        let scene = try Self.scene(frames: 60)
        let base = Blinded(base: SyntheticSource(scene: scene), blind: 10..<60)
        var options = TrackingOptions()
        options.maxLostFrames = 5
        let source = TrackedSource(base: Prefix(base: base, count: 30), options: options,
                                   anchor: try scene.frame(0).frame.T_W_C)
        let s = try session(tmp.url, info: source.info)
        do {
            try await s.run(source)
            XCTFail("the run should stop when tracking is lost for good")
        } catch let e as MapError {
            XCTAssertEqual(e.kind, .trackingLost, "\(e)")
            XCTAssertEqual(e.frame, 14, "the 5th lost frame in a row")
            XCTAssertTrue(e.hint?.contains("pano resume") ?? false)
        }
        let resumed = try MappingSession(resuming: tmp.url, info: source.info, frames: { _ in
            throw MapError(.unsupported, "not re-readable")
        })
        let position = await resumed.currentProgress.position
        XCTAssertLessThanOrEqual(position, 10)
        let (indices, ate) = try storedPoseError(tmp.url, scene: scene)
        XCTAssertTrue(indices.allSatisfy { $0 < 10 }, "\(indices)")
        XCTAssertLessThan(ate, 0.015)
    }
}

/// The first `count` frames of a source.
struct Prefix<Base: FrameSource>: FrameSource {
    let base: Base
    let count: Int
    var info: SourceInfo {
        var i = base.info
        i.frameCount = count
        return i
    }
    var isPaced: Bool { false }
    func frame(at index: Int) throws -> Frame { try base.frame(at: index) }
    func frames(from start: Int) -> IndexedFrames { framesReading(base, count: count, from: start) }
}

/// Frames `start..<count` of a test source, read through its `frame(at:)`.
func framesReading<S: FrameSource>(_ source: S, count: Int, from start: Int) -> IndexedFrames {
    IndexedFrames(count: count, start: start) { i in
        do { return .success(try source.frame(at: i)) } catch {
            return .failure(error as? MapError ?? MapError(.badArgument, "\(error)", frame: i))
        }
    }
}
