import Foundation
import IO
import MapCore
import Synthetic
import USBCamera

/// The synthetic room as a Kinect v1 would record it: every frame rendered at 640x480, encoded into the camera's
/// packets (11-bit disparity, Bayer colour; `KinectCaptureGenerator`) and written as a capture file that replays
/// exactly like the device. The frames' masks can go to a mask inbox directory (what a segmenter would write) and
/// the posed frames to a sequence directory (the posed run to compare with, and the ground truth).
public enum SyntheticCapture {
    /// The Kinect's image size.
    public static let width = 640, height = 480

    /// `config` at the Kinect's image size.
    public static func scene(_ config: SyntheticSceneConfig) throws -> SyntheticScene {
        var c = config
        c.width = width
        c.height = height
        return try SyntheticScene(config: c)
    }

    /// The calibration of the synthetic camera (depth and colour cameras coincide; Kinect depth model).
    public static func calibration(_ scene: SyntheticScene) throws -> DeviceCalibration {
        try DeviceCalibration.synthetic(intrinsics: scene.intrinsics)
    }

    /// The packets of every frame, in order (for tests that feed a scripted device).
    public static func packets(_ scene: SyntheticScene, frames: Range<Int>? = nil) throws -> [[CapturedPacket]] {
        var generator = try KinectCaptureGenerator(calibration: try calibration(scene),
                                                   frameRate: scene.config.framesPerSecond)
        return try (frames ?? 0..<scene.frameCount).map { i in
            let f = try scene.frame(i).frame
            return try generator.packets(for: CameraFrame(rgb: f.rgb, depth: f.depth, intrinsics: f.intrinsics,
                                                          timestamp: f.timestamp ?? 0))
        }
    }

    /// Writes the capture to `url` (renamed into place when complete); with `masks`, each frame's masks into that
    /// directory as a mask inbox expects them (`NNNNNN.png` + `NNNNNN.json`, plus `vocabulary.json`).
    public static func write(_ scene: SyntheticScene, to url: URL, masks: URL? = nil,
                             progress: ((Int) -> Void)? = nil) throws {
        let calibration = try calibration(scene)
        var generator = try KinectCaptureGenerator(calibration: calibration, frameRate: scene.config.framesPerSecond)
        let writer = try CaptureWriter(
            url: url, metadata: KinectCaptureGenerator.metadata(calibration: calibration,
                                                                frameRate: scene.config.framesPerSecond,
                                                                note: "synthetic room, seed \(scene.config.seed)"))
        if let masks {
            try Files.createDirectory(masks)
            try Files.writeAtomically(scene.vocabulary.jsonData(), to: masks.appendingPathComponent("vocabulary.json"))
        }
        for i in 0..<scene.frameCount {
            let f = try scene.frame(i).frame
            try writer.append(try generator.packets(for: CameraFrame(rgb: f.rgb, depth: f.depth, intrinsics: f.intrinsics,
                                                                      timestamp: f.timestamp ?? 0)))
            if let masks, let m = f.masks {
                try MaskFiles.write(m, image: masks.appendingPathComponent(frameName(i) + ".png"),
                                    segments: masks.appendingPathComponent(frameName(i) + ".json"))
            }
            progress?(i + 1)
        }
        try writer.finish()
    }
}
