import ArgumentParser
import Foundation
import IO
import MapCore
import Tracking

struct TrackingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracking",
        abstract: "RGB-D tracking (ICP + photometric odometry) frames/s on the 3DMatch sample at 640x480 and 320x240: ms per frame for the pyramid and the alignment, and ATE against the given poses (only the first is used).")

    @Option(help: "Sequence to track (default: ../shared/data/3dmatch-sample).")
    var data: String?

    @Option(help: "Image sizes as halvings of the recorded size, comma-separated: 0 = as recorded (640x480), 1 = 320x240.")
    var halvings = "0,1"

    func run() throws {
        try reportingErrors {
            let parsed = halvings.split(separator: ",").compactMap { Int($0) }
            guard !parsed.isEmpty, parsed.count == halvings.split(separator: ",").count, parsed.allSatisfy({ (0...3).contains($0) }) else {
                throw ValidationError("--halvings must be a comma-separated list of 0...3, like 0,1")
            }
            let root = URL(fileURLWithPath: data ?? FileManager.default.currentDirectoryPath + "/../shared/data/3dmatch-sample")
                .standardizedFileURL
            let reader = try SequenceFormats.open(root)
            let frames = try (0..<reader.info.frameCount).map { try reader.frame(at: $0) }
            guard let first = frames.first else { throw ValidationError("no frames in \(root.path)") }
            print("bench tracking: \(root.lastPathComponent), \(frames.count) frames, default RGBDTracker.Config")
            for n in parsed {
                var scaled = frames
                for _ in 0..<n { scaled = scaled.map(Self.halved) }
                let (w, h) = (scaled[0].depth.width, scaled[0].depth.height)
                var tracker = RGBDTracker()
                var poses: [RigidTransform] = [], pyramid = 0.0, alignment = 0.0, lost = 0
                let start = DispatchTime.now().uptimeNanoseconds
                for f in scaled {
                    let r = tracker.track(depth: f.depth, rgb: f.rgb, intrinsics: f.intrinsics, initialPose: first.T_W_C)
                    poses.append(r.T_W_C)
                    if r.lost { lost += 1 }
                    pyramid += tracker.lastTiming.pyramid; alignment += tracker.lastTiming.alignment
                }
                let total = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                let count = Double(scaled.count)
                let ate = RGBDTracker.ate(poses, frames.map(\.T_W_C))
                print(String(format: "  %4dx%-4d %6.1f frames/s   %6.1f ms/frame = pyramid %6.1f + ICP %6.1f   ATE %.2f cm, %d lost%@",
                             w, h, count / total, 1e3 * total / count, 1e3 * pyramid / count, 1e3 * alignment / count,
                             ate * 100, lost, n == 1 ? "   (target >= 15 frames/s)" : ""))
            }
        }
    }

    /// The frame at half the size: depth by an edge-aware 2x2 mean (the mean of the valid depths when they agree
    /// within 3 %, else none), RGB by a 2x2 box filter, intrinsics scaled.
    static func halved(_ f: Frame) -> Frame {
        var out = f
        let d = f.depth, w = d.width / 2, h = d.height / 2
        var depth = [Float](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                var lo = Float.infinity, hi: Float = 0, sum: Float = 0, n: Float = 0
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let v = d.data[(2 * y + dy) * d.width + 2 * x + dx]
                    guard v.isFinite, v > 0 else { continue }
                    lo = min(lo, v); hi = max(hi, v); sum += v; n += 1
                }
                if n > 0, hi - lo <= 0.03 * lo { depth[y * w + x] = sum / n }
            }
        }
        out.depth = DepthImage(width: w, height: h, data: depth)
        let c = f.rgb, rw = c.width / 2, rh = c.height / 2, ch = c.channels
        var rgb = [UInt8](repeating: 0, count: rw * rh * ch)
        for y in 0..<rh {
            for x in 0..<rw {
                for k in 0..<ch {
                    let a = ((2 * y) * c.width + 2 * x) * ch + k, b = a + c.width * ch
                    let s = Int(c.data[a]) + Int(c.data[a + ch]) + Int(c.data[b]) + Int(c.data[b + ch])
                    rgb[(y * rw + x) * ch + k] = UInt8((s + 2) / 4)
                }
            }
        }
        out.rgb = RGBImage(width: rw, height: rh, channels: ch, data: rgb)
        out.intrinsics = f.intrinsics.scaled(toWidth: w, height: h)
        return out
    }
}
