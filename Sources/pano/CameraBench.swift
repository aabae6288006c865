import ArgumentParser
import Foundation
import MapCore
import Pipeline
import Synthetic
import TestSupport
import USBCamera

/// `pano bench camera`: the live decode path on a generated Kinect stream, against the sensor's 30 frames/s.
struct CameraBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camera",
        abstract: "Kinect frames/s through the packet assembler alone and through the whole decode (assemble, pair, depth model, registration, demosaic), 1 vs 2 threads, on the synthetic room's packets held in memory; ratio to the sensor's 30 frames/s.")

    @Option(help: "Frames of the synthetic room to generate.")
    var frames = 20

    @Option(help: "Times the frames are decoded.")
    var repeats = 3

    func run() throws {
        try reportingErrors {
            var c = SyntheticSceneConfig()
            c.frameCount = frames
            let scene = try SyntheticCapture.scene(c)
            let calibration = try SyntheticCapture.calibration(scene)
            let perFrame = try SyntheticCapture.packets(scene)
            let packets = perFrame.flatMap { $0 }
            print("bench camera: \(frames) frames of the synthetic room as Kinect packets (640x480, \(packets.count / frames) packets per frame), \(repeats) passes")

            var router = try KinectPacketRouter()
            var assembled = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<repeats {
                for p in packets where router.consume(p.bytes) != nil { assembled += 1 }
            }
            let assembly = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            print(String(format: "  assembly only      %7.1f frames/s  (%.2f ms per depth+colour frame)  %6.1fx real time",
                         Double(assembled / 2) / assembly, 1000 * assembly / Double(assembled / 2),
                         Double(assembled / 2) / assembly / 30))
            for parallel in [false, true] {
                var config = KinectCamera.Config()
                config.parallelDecode = parallel
                var decoded = 0
                let t1 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<repeats {
                    let camera = try KinectCamera(source: ListPacketSource(packets, batch: 64), calibration: calibration, config: config)
                    while try camera.nextFrame() != nil { decoded += 1 }
                }
                let s = Double(DispatchTime.now().uptimeNanoseconds - t1) * 1e-9
                print(String(format: "  full decode, %d thread%@ %6.1f frames/s  (%.2f ms per frame)  %6.1fx real time",
                             parallel ? 2 : 1, parallel ? "s" : " ", Double(decoded) / s, 1000 * s / Double(decoded),
                             Double(decoded) / s / 30))
            }
        }
    }
}
