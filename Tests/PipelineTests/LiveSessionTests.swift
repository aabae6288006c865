import Evaluation
import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import TestSupport
import Tracking
import USBCamera
import XCTest

/// Live sessions end to end on the synthetic room recorded as a Kinect capture: packets → driver → parser → decoded
/// frames → tracker → pipeline, with a scripted USB device standing in for the camera.
final class LiveSessionTests: XCTestCase {
    /// Hands the camera opener a value made on the test's task (the opener runs on the pipeline's).
    final class Box<T>: @unchecked Sendable { // read once, by the opener
        let value: T
        init(_ value: T) { self.value = value }
    }

    static let reduction = 4
    static let frames = 18

    static func scene() throws -> SyntheticScene {
        // The default trajectory (60 frames over the room); the test streams its first `frames`.
        var c = SyntheticSceneConfig.small(width: 64, height: 48, frameCount: 60, seed: 2)
        c.depthNoise = .none
        return try SyntheticCapture.scene(c)
    }

    func live(_ scene: SyntheticScene, open: @escaping @Sendable () throws -> any RGBDCamera) throws -> LiveSource {
        LiveSource(name: "scripted Kinect", intrinsics: try SyntheticCapture.calibration(scene).colorCamera,
                   frameRate: scene.config.framesPerSecond, vocabulary: scene.vocabulary, reduction: Self.reduction,
                   paced: false, isReplay: false, open: open)
    }

    /// Each frame's packets cut into 4 transfers.
    static func batches(_ perFrame: [[CapturedPacket]]) -> [[CapturedPacket]] {
        perFrame.flatMap { p in stride(from: 0, to: p.count, by: (p.count + 3) / 4).map { Array(p[$0..<min($0 + (p.count + 3) / 4, p.count)]) } }
    }

    func testUnpluggedCameraSavesTheSessionAndResumeContinues() async throws {
        let tmp = try TempDirectory("pano-live-unplug")
        defer { tmp.remove() }
        let scene = try Self.scene()
        let calibration = try SyntheticCapture.calibration(scene)
        let perFrame = try SyntheticCapture.packets(scene, frames: 0..<Self.frames)
        let anchor = try scene.frame(0).frame.T_W_C
        var config = MappingSessionTests.config()
        config.storeKeyframes = true
        config.snapshotEveryKeyframes = 0
        config.checkpointEveryKeyframes = 3
        config.skipBadFrames = true // skips unreadable frames, never a lost camera

        // The camera delivers 9 frames, then is unplugged (LIBUSB_ERROR_NO_DEVICE on the next transfer).
        let transport = Box(ScriptedTransport(batches: Self.batches(perFrame), failAfterBatches: 9 * 4))
        let source = TrackedSource(base: try live(scene) {
            let device = KinectDevice(transport: transport.value)
            try device.start()
            return try KinectCamera(source: device, calibration: calibration)
        }, anchor: anchor)
        let session = try MappingSession(config: config, info: source.info, directory: tmp.url)
        do {
            try await session.run(source)
            XCTFail("the run should stop when the camera is unplugged")
        } catch let e as MapError {
            XCTAssertEqual(e.kind, .deviceLost, "\(e)")
            XCTAssertTrue(e.description.contains("LIBUSB_ERROR_NO_DEVICE"), "\(e)")
            XCTAssertTrue(e.hint?.contains("pano resume") ?? false, "\(e)")
        }
        XCTAssertTrue(transport.value.hasFailed)
        XCTAssertGreaterThanOrEqual(transport.value.stopCount, 1, "the driver stopped its streams")

        // The session was saved: it resumes from its keyframe store, with every keyframe mapped before the unplug.
        let info = source.info
        let resumed = try MappingSession(resuming: tmp.url, info: info, frames: { i in
            throw MapError(.unsupported, "a live source cannot give frame \(i) back")
        })
        let saved = await resumed.currentProgress
        XCTAssertGreaterThan(saved.position, 3)
        XCTAssertLessThanOrEqual(saved.position, 9)
        let kept = await resumed.keyframeCount
        XCTAssertGreaterThan(kept, 1)
        let last = await resumed.lastKeyframe
        let seed = try XCTUnwrap(last)
        XCTAssertEqual(seed.index, saved.position - 1)

        // Plugged in again: the camera numbers its frames on from the saved position; tracking continues from the
        // last keyframe, and the run ends with a map.
        let rest = Box(Array(perFrame[saved.position...]))
        let continued = TrackedSource(base: try live(scene) {
            try KinectCamera(source: ListPacketSource(rest.value.flatMap { $0 }), calibration: calibration)
        }, seed: seed)
        let result = try await resumed.run(continued)
        XCTAssertEqual(result.stage, "done")
        XCTAssertEqual(result.position, Self.frames)
        XCTAssertTrue(Files.exists(tmp.appending("map/mesh.ply")))

        // Every stored keyframe's pose is the tracker's, within 2 cm of the truth.
        let store = KeyframeStore(directory: tmp.appending("keyframes"))
        let stored = store.indices()
        XCTAssertFalse(stored.isEmpty)
        let estimated = try stored.map { try store.read($0).T_W_C }
        let truth = try stored.map { try scene.frame($0).frame.T_W_C }
        XCTAssertLessThan(RGBDTracker.ate(estimated, truth), 0.02)
    }

    /// A capture of the synthetic room replayed through the parser and tracked maps as well as the posed run of the
    /// same frames (Chamfer-L1 within 20 %; the acceptance run is `pano live --replay` at 320x240, see README).
    func testTrackedReplayMapsLikeThePosedRun() async throws {
        let tmp = try TempDirectory("pano-live-chamfer")
        defer { tmp.remove() }
        var c = SyntheticSceneConfig.small(width: 64, height: 48, frameCount: 60, seed: 2)
        c.depthNoise = .none
        c.surfaceSampleCount = 200_000
        let capture = try SyntheticCapture.scene(c)
        c.width = 640 / Self.reduction
        c.height = 480 / Self.reduction
        let posed = try SyntheticScene(config: c)
        let calibration = try SyntheticCapture.calibration(capture)
        let packets = Box(try SyntheticCapture.packets(capture, frames: 0..<Self.frames))
        var config = MappingSessionTests.config()
        config.mapper.panoptic = false
        config.mapper.appearance = false
        config.snapshotEveryKeyframes = 0
        config.checkpointEveryKeyframes = 0
        config.storeKeyframes = true

        let replay = TrackedSource(base: LiveSource(
            name: "capture", intrinsics: calibration.colorCamera, frameRate: 10, vocabulary: nil,
            reduction: Self.reduction, paced: false, isReplay: true) {
                try KinectCamera(source: ListPacketSource(packets.value.flatMap { $0 }), calibration: calibration)
            }, anchor: try posed.frame(0).frame.T_W_C)
        try await MappingSession(config: config, info: replay.info, directory: tmp.appending("live")).run(replay)
        var posedConfig = config
        posedConfig.storeKeyframes = false
        let source = Prefix(base: SyntheticSource(scene: posed), count: Self.frames)
        try await MappingSession(config: posedConfig, info: source.info, directory: tmp.appending("posed")).run(source)

        // Ground truth, and the streamed frames as a sequence: both sides are culled to what those frames see.
        try PLY.write(SyntheticSequence(scene: posed).surfacePLY(posed.surfaceSamples()), to: tmp.appending("gt.ply"))
        let writer = try SequenceWriter(directory: tmp.appending("seen"), name: "seen", intrinsics: posed.intrinsics)
        for i in 0..<Self.frames {
            var f = try posed.frame(i).frame
            f.masks = nil
            try writer.write(f)
        }
        try writer.finish()
        func chamfer(_ run: String) throws -> Double {
            try GeometryEvaluation.run(reconstruction: tmp.appending("\(run)/map/mesh.ply"), groundTruth: tmp.appending("gt.ply"),
                                       sequence: tmp.appending("seen")).metrics.chamferL1
        }
        let live = try chamfer("live"), reference = try chamfer("posed")
        print(String(format: "tracked replay Chamfer-L1 %.2f cm, posed %.2f cm", 100 * live, 100 * reference))
        XCTAssertLessThanOrEqual(live, 1.2 * reference)
    }
}
