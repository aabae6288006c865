import ArgumentParser
import Dispatch
import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import USBCamera
#if canImport(Glibc)
import Glibc
#endif

/// `pano live`: maps from a USB RGB-D camera, or from a recorded capture replayed through the same parser.
struct Live: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Map live from a USB RGB-D camera (--device) or a recorded capture (--replay FILE), tracking the camera.",
        discussion: """
            Frames are decoded (depth registered to colour, Bayer demosaiced), reduced to --map-width, tracked (RGB-D \
            odometry; lost frames are withheld, relocalisation is tried, else the run stops with the session saved) \
            and mapped online. OUT gets what `pano run` writes plus keyframes/ (the keyframes, and their colour as \
            NNNNNN.png for a segmenter). Masks arrive through --mask-inbox (see README, "Masks arriving late"); \
            without it the map is geometry + appearance only. Ctrl-C, or the camera being unplugged, saves the \
            session; `pano resume OUT` continues.
            """)

    @Flag(help: "Read the connected camera (see `pano devices`).")
    var device = false

    @Option(help: "Replay a capture file (`pano record`) instead of a camera.")
    var replay: String?

    @Option(help: "Output (session) directory.")
    var out = "out/live"

    @Option(help: "Device calibration (pano-calibration JSON). Default: the capture's own, or calibration/kinect-v1.json's values for a device.")
    var calibration: String?

    @Option(help: "Mask inbox directory: an external segmenter writes NNNNNN.png + NNNNNN.json there for frame N.")
    var maskInbox: String?

    @Option(help: "Vocabulary of the masks (default: MASK_INBOX/vocabulary.json).")
    var vocabulary: String?

    @Option(help: "When the stream ends, wait up to this many seconds for masks still missing.")
    var maskWait: Double = 30

    @Option(help: "Width frames are mapped and tracked at (an integer fraction of the camera's 640).")
    var mapWidth = 320

    @Option(help: "Place the first frame at the first pose of this sequence (default: the world frame is the first camera).")
    var initialPoseFrom: String?

    @Flag(help: "Replay at the recorded pace (frames are dropped when the mapper falls behind), as a device would.")
    var realtime = false

    @Option(help: .hidden) // fault injection: the camera reports LIBUSB_ERROR_NO_DEVICE after this many frames
    var unplugAfterFrames: Int?

    @OptionGroup var mapping: MappingOptions

    func validate() throws {
        guard device != (replay != nil) else { throw ValidationError("give either --device or --replay FILE") }
        guard mapping.holdOut == 0 else {
            throw ValidationError("--hold-out needs frames that can be read again; a live stream cannot (evaluate with `pano eval trajectory` or a posed sequence)")
        }
        guard mapWidth > 0, SyntheticCapture.width % mapWidth == 0 else {
            throw ValidationError("--map-width must divide 640 (640, 320, 160)")
        }
    }

    func run() throws {
        try reportingErrors {
            var config = mapping.sessionConfig()
            config.storeKeyframes = true
            config.maskInbox = maskInbox.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            config.maskWaitSeconds = maskInbox == nil ? 0 : maskWait
            var d: [String: String] = [
                "kind": device ? "live-device" : "live-replay", "track": "1",
                "reduction": String(SyntheticCapture.width / mapWidth),
                "calibration": calibration.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "",
                "realtime": realtime ? "1" : "0",
            ]
            if let replay { d["path"] = URL(fileURLWithPath: replay).standardizedFileURL.path }
            if let inbox = config.maskInbox {
                d["vocabulary"] = vocabulary.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
                    ?? URL(fileURLWithPath: inbox).appendingPathComponent("vocabulary.json").path
            }
            if let initialPoseFrom {
                let reader = try SequenceFormats.open(URL(fileURLWithPath: initialPoseFrom), format: nil)
                d["anchor"] = Array(try reader.frame(at: 0).T_W_C.rowMajor4x4[0..<12]).map { "\($0)" }.joined(separator: " ")
            }
            if let unplugAfterFrames { d["unplug-after"] = String(unplugAfterFrames) }
            config.source = d
            let source = try openSource(d)
            let session = try MappingSession(config: config, info: source.info, directory: URL(fileURLWithPath: out))
            try runSession(session, source: source, label: "live")
        }
    }
}

/// The live source a session description names (`pano live`, `pano resume` of a live session).
func openLiveSource(_ d: [String: String]) throws -> LiveSource {
    let reduction = Int(d["reduction"] ?? "") ?? 2
    var vocabulary: Vocabulary?
    if let v = d["vocabulary"], !v.isEmpty { vocabulary = try Vocabulary.load(from: URL(fileURLWithPath: v)) }
    let calibrationPath = d["calibration"].flatMap { $0.isEmpty ? nil : $0 }
    let override = try calibrationPath.map { try DeviceCalibration.load(from: URL(fileURLWithPath: $0)) }
    let unplugAfter = d["unplug-after"].flatMap { Int($0) }
    if d["kind"] == "live-device" {
        let calibration = override ?? .kinectV1Default
        var source = LiveSource(name: calibration.device.name, intrinsics: calibration.colorCamera, frameRate: 30,
                                vocabulary: vocabulary, reduction: reduction, paced: true, isReplay: false) {
            let device = try KinectDevice.open()
            try device.start()
            return FailingCamera.wrap(try KinectCamera(source: device, calibration: calibration), after: unplugAfter)
        }
        source.firstIndex = Int(d["first-index"] ?? "") ?? 0
        return source
    }
    guard let path = d["path"] else {
        throw MapError(.badFormat, "session.json names no capture file", hint: "start a new session")
    }
    let url = URL(fileURLWithPath: path)
    let metadata = try CaptureReader(url: url).metadata // checks the file before the session starts
    let calibration = override ?? metadata.calibration
    let paced = d["realtime"] == "1"
    return LiveSource(name: "\(metadata.cameraModel) capture \(url.lastPathComponent)", intrinsics: calibration.colorCamera,
                      frameRate: metadata.frameRate, vocabulary: vocabulary, reduction: reduction, paced: paced,
                      isReplay: true) {
        FailingCamera.wrap(try KinectCamera(source: try CaptureReader(url: url, paced: paced), calibration: calibration),
                               after: unplugAfter)
    }
}

/// Fault injection for trying the unplug path without unplugging: after `after` frames the camera throws what a
/// vanished USB device gives (LIBUSB_ERROR_NO_DEVICE).
final class FailingCamera: RGBDCamera {
    let camera: any RGBDCamera
    let after: Int
    var delivered = 0

    static func wrap(_ camera: any RGBDCamera, after: Int?) -> any RGBDCamera {
        guard let after else { return camera }
        return FailingCamera(camera: camera, after: after)
    }

    init(camera: any RGBDCamera, after: Int) { self.camera = camera; self.after = after }
    var intrinsics: Intrinsics { camera.intrinsics }
    var droppedFrames: Int { camera.droppedFrames }
    func close() { camera.close() }
    func nextFrame() throws -> CameraFrame? {
        guard delivered < after else { throw USBError.noDevice(operation: "isochronous transfer (simulated unplug)") }
        delivered += 1
        return try camera.nextFrame()
    }
}

/// `pano record`: the camera's raw packet stream (or the synthetic room as one) into a capture file.
struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record the camera's raw packets (--device) or generate the synthetic room as a capture (--synthetic).",
        discussion: """
            The capture (format: README, "Capture files") holds every isochronous packet with its endpoint and host \
            time, and the device calibration; `pano live --replay FILE` feeds it to the same parser as the device. \
            It is written as FILE.partial and renamed when complete (Ctrl-C ends a recording cleanly).
            """)

    @Option(help: "Capture file to write.")
    var out: String

    @Flag(help: "Record the connected camera.")
    var device = false

    @Option(help: "With --device: stop after this many seconds (default: until Ctrl-C).")
    var seconds: Double?

    @Option(help: "With --device: calibration to store in the capture (default: calibration/kinect-v1.json's values).")
    var calibration: String?

    @Flag(help: "Generate the synthetic room (640x480) as the Kinect would stream it.")
    var synthetic = false

    @Option(help: "With --synthetic: frames.")
    var frames = 60

    @Option(help: "With --synthetic: random seed of the room.")
    var seed: UInt64 = 1

    @Option(help: "With --synthetic: write every frame's masks here, as a mask inbox expects them (plus vocabulary.json).")
    var masks: String?

    @Option(help: "With --synthetic: also write the posed sequence (ground truth, the posed run's input) here.")
    var sequence: String?

    @Option(help: "With --sequence: its image width (height 3/4 of it).")
    var sequenceWidth = 320

    func validate() throws {
        guard device != synthetic else { throw ValidationError("give either --device or --synthetic") }
    }

    func run() throws {
        try reportingErrors {
            let url = URL(fileURLWithPath: out)
            if synthetic { try generate(url) } else { try record(url) }
        }
    }

    func generate(_ url: URL) throws {
        var c = SyntheticSceneConfig()
        c.seed = seed
        c.frameCount = frames
        let scene = try SyntheticCapture.scene(c)
        let progress = Progress("capture", total: frames)
        try SyntheticCapture.write(scene, to: url, masks: masks.map { URL(fileURLWithPath: $0) }) { progress.update($0) }
        print("capture of \(frames) frames (640x480) → \(url.path)" + (masks.map { "; masks → \($0)" } ?? ""))
        if let sequence {
            c.width = sequenceWidth
            c.height = sequenceWidth * 3 / 4
            let posed = try SyntheticScene(config: c)
            let p = Progress("sequence", total: frames)
            try SyntheticSequence(scene: posed).write(to: URL(fileURLWithPath: sequence)) { p.update($0) }
            print("posed sequence (\(c.width)x\(c.height), ground truth in gt/) → \(sequence)")
        }
    }

    func record(_ url: URL) throws {
        let cal = try calibration.map { try DeviceCalibration.load(from: URL(fileURLWithPath: $0)) } ?? .kinectV1Default
        let device = try KinectDevice.open()
        try device.start()
        let writer = try CaptureWriter(url: url, metadata: CaptureMetadata(
            cameraModel: cal.device.name, vendorID: cal.device.vendorID, productID: cal.device.productID,
            calibration: cal, frameRate: 30, note: "recorded by pano record"))
        let source = RecordingPacketSource(source: device, writer: writer)
        let stop = StopFlag()
        signal(SIGINT, SIG_IGN)
        let h = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        h.setEventHandler { stop.set() }
        h.resume()
        defer { h.cancel() }
        let start = Date()
        let progress = Progress("record", total: 0)
        var failure: (any Error)?
        while !stop.isSet, seconds.map({ Date().timeIntervalSince(start) < $0 }) ?? true {
            do { guard try source.nextPackets() != nil else { break } } catch { failure = error; break }
            progress.update(writer.recordCount, extra: "packets")
        }
        source.close() // finishes the capture: what was received is kept even when the camera went away
        if let e = source.finishError { throw e }
        print("recorded \(writer.recordCount) packets in \(String(format: "%.1f", Date().timeIntervalSince(start))) s → \(url.path)")
        if let failure { throw MapError(.deviceLost, "recording ended: \(failure)", file: url.path,
                                        hint: "the capture up to this point is complete and replayable") }
    }
}
