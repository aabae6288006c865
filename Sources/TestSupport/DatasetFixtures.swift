import Foundation
import IO
import MapCore

/// Tiny on-disk fixtures of the dataset layouts the IO readers understand, with the values they hold, so tests can
/// read them back and compare. Images are 8x6 (depth resolution) unless stated; frame k's depth pixel (x, y) holds
/// `depthValue(k, x, y)` raw units and pixel (0, 0) is 0 (invalid). Poses are `pose(k)` (camera-to-world).
public enum DatasetFixtures {
    public static let width = 8
    public static let height = 6
    /// An 8x6 pinhole camera, passed as the intrinsics override to layouts without intrinsics files
    /// (Replica, TUM), whose default cameras are for bigger images.
    public static let smallCamera = Intrinsics(fx: 4, fy: 4, cx: 3.5, cy: 2.5, width: width, height: height)

    /// What a fixture wrote.
    public struct Written: Sendable {
        public var root: URL
        public var frameCount: Int
        /// Original frame numbers in the file names, by index.
        public var frameNumbers: [Int]
        /// Raw 16-bit depth as written, by index.
        public var depthRaw: [Gray16Image]
        /// Colour as encoded (before JPEG loss), by index.
        public var colors: [RGBImage]
        /// Camera-to-world poses as written, by index.
        public var poses: [RigidTransform]
        /// The intrinsics a reader should deliver.
        public var intrinsics: Intrinsics
        /// Ground truth at the depth resolution a reader should deliver (semantic, instance), when written.
        public var groundTruth: [(semantic: Gray16Image, instance: Gray16Image)]
        /// Timestamps a reader should deliver (TUM), by index.
        public var timestamps: [Double]
    }

    // MARK: - values

    public static func depthValue(_ frame: Int, _ x: Int, _ y: Int) -> UInt16 {
        x == 0 && y == 0 ? 0 : UInt16(1000 + 100 * frame + 10 * y + x)
    }

    public static func depthImage(_ frame: Int, width w: Int = width, height h: Int = height,
                                  value: (Int, Int, Int) -> UInt16 = depthValue) -> Gray16Image {
        var img = Gray16Image(width: w, height: h, repeating: 0)
        for y in 0..<h { for x in 0..<w { img[x, y] = value(frame, x, y) } }
        return img
    }

    /// Smooth colour (JPEG-friendly): constant in 2x2 blocks, varying with frame and position.
    public static func colorImage(_ frame: Int, width w: Int = width, height h: Int = height) -> RGBImage {
        var img = RGBImage(width: w, height: h, channels: 3, repeating: 0)
        for y in 0..<h {
            for x in 0..<w {
                img[x, y, 0] = UInt8(clamping: 40 + 20 * (x / 2) + 10 * frame)
                img[x, y, 1] = UInt8(clamping: 60 + 25 * (y / 2))
                img[x, y, 2] = UInt8(clamping: 200 - 15 * frame)
            }
        }
        return img
    }

    public static func pose(_ frame: Int) -> RigidTransform {
        RigidTransform(rotation: Mat3(axis: Vec3(0.3, -0.5, 0.8), angle: 0.2 + 0.15 * Double(frame)),
                       translation: Vec3(0.5 * Double(frame), -0.25, 1 + 0.1 * Double(frame)))
    }

    /// 4x4 row-major text, one row per line; `separator` and `lineEnd` vary the whitespace like the real files.
    public static func poseText(_ t: RigidTransform, separator: String = " ", lineEnd: String = "\n") -> String {
        let m = t.rowMajor4x4
        return (0..<4).map { r in (0..<4).map { "\(m[4 * r + $0])" }.joined(separator: separator) }
            .joined(separator: lineEnd) + lineEnd
    }

    static func write(_ bytes: [UInt8], _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    static func write(_ text: String, _ url: URL) throws { try write(Array(text.utf8), url) }

    static func jpeg(_ img: RGBImage) throws -> [UInt8] { try JPEGCodec().encode(img, quality: 95) }

    // MARK: - layouts

    /// ScanNet export: frames numbered `numbers` (default 0, 2, 10: numeric order differs from text order),
    /// colour 16x12 JPEG, depth 8x6 mm, 4x4 intrinsics (depth: fx 7, fy 6, cx 3.5, cy 2.5; colour twice that),
    /// optional label-filt (NYU40 ids at 16x12, 16-bit or, with `labels8Bit`, 8-bit; one 2x2 block has the
    /// non-NYU40 id 300, or 200 in 8-bit) and instance-filt (8-bit at 16x12), and frame `infPoseFrame`'s pose all -inf.
    public static func scanNet(in root: URL, numbers: [Int] = [0, 2, 10], labels: Bool = true, labels8Bit: Bool = false,
                               infPoseFrame: Int? = nil) throws -> Written {
        let k = Intrinsics(fx: 7, fy: 6, cx: 3.5, cy: 2.5, width: width, height: height)
        try write("\(k.fx) 0 \(k.cx) 0\n0 \(k.fy) \(k.cy) 0\n0 0 1 0\n0 0 0 1\n",
                  root.appendingPathComponent("intrinsic/intrinsic_depth.txt"))
        try write("14 0 7.5 0\n0 12 5.5 0\n0 0 1 0\n0 0 0 1\n", root.appendingPathComponent("intrinsic/intrinsic_color.txt"))
        var out = Written(root: root, frameCount: numbers.count, frameNumbers: numbers, depthRaw: [], colors: [], poses: [],
                          intrinsics: k, groundTruth: [], timestamps: [])
        for (i, n) in numbers.enumerated() {
            let depth = depthImage(i)
            let color = colorImage(i, width: 2 * width, height: 2 * height)
            try write(try PNGCodec.encodeGray16(depth), root.appendingPathComponent("depth/\(n).png"))
            try write(try jpeg(color), root.appendingPathComponent("color/\(n).jpg"))
            let p = pose(i)
            let text = i == infPoseFrame ? String(repeating: "-inf -inf -inf -inf\n", count: 4) : poseText(p)
            try write(text, root.appendingPathComponent("pose/\(n).txt"))
            out.depthRaw.append(depth); out.colors.append(color); out.poses.append(p)
            if labels {
                // Left half: wall (1, stuff) with instance 1; right half: chair (5) instance 7+i, bottom row: table (7)
                // instance 9 in frame 0 only; one pixel of an id outside NYU40 (300).
                var sem = Gray16Image(width: 2 * width, height: 2 * height, repeating: 0)
                var inst = Image<UInt8>(width: 2 * width, height: 2 * height, repeating: 0)
                for y in 0..<(2 * height) {
                    for x in 0..<(2 * width) {
                        if x < width { sem[x, y] = 1; inst[x, y] = 1 } else { sem[x, y] = 5; inst[x, y] = UInt8(7 + i) }
                        if y >= 2 * height - 2 && i == 0 { sem[x, y] = 7; inst[x, y] = 9 }
                    }
                }
                for y in 0..<2 { for x in 0..<2 { sem[x, y] = labels8Bit ? 200 : 300 } }  // -> depth pixel (0, 0)
                let labelBytes = labels8Bit
                    ? try PNGCodec.encodeGray8(Image<UInt8>(width: sem.width, height: sem.height, channels: 1,
                                                            data: sem.data.map { UInt8(truncatingIfNeeded: $0) }))
                    : try PNGCodec.encodeGray16(sem)
                try write(labelBytes, root.appendingPathComponent("label-filt/\(n).png"))
                try write(try PNGCodec.encodeGray8(inst), root.appendingPathComponent("instance-filt/\(n).png"))
                var semExp = sem.resizedNearest(width: width, height: height)
                for k in 0..<semExp.data.count where semExp.data[k] > 40 { semExp.data[k] = 0 }
                let inst16 = Gray16Image(width: inst.width, height: inst.height, channels: 1, data: inst.data.map { UInt16($0) })
                out.groundTruth.append((semExp, inst16.resizedNearest(width: width, height: height)))
            }
        }
        return out
    }

    /// Replica (NICE-SLAM layout), 3 frames, 8x6; the intrinsics returned must be passed as the override.
    public static func replica(in root: URL, frames: Int = 3) throws -> Written {
        let k = smallCamera
        var out = Written(root: root, frameCount: frames, frameNumbers: Array(0..<frames), depthRaw: [], colors: [],
                          poses: [], intrinsics: k, groundTruth: [], timestamps: [])
        var traj = ""
        for i in 0..<frames {
            // Values beyond 6553.5 (1 m) up to ~65535 (10 m) exercise the scale.
            let depth = depthImage(i) { f, x, y in x == 0 && y == 0 ? 0 : UInt16(6000 + 7000 * y + 100 * x + f) }
            let color = colorImage(i)
            let name = String(format: "%06d", i)
            try write(try PNGCodec.encodeGray16(depth), root.appendingPathComponent("results/depth\(name).png"))
            try write(try jpeg(color), root.appendingPathComponent("results/frame\(name).jpg"))
            let p = pose(i)
            traj += p.rowMajor4x4.map { "\($0)" }.joined(separator: " ") + "\n"
            out.depthRaw.append(depth); out.colors.append(color); out.poses.append(p)
        }
        try write(traj, root.appendingPathComponent("traj.txt"))
        return out
    }

    /// TUM RGB-D fixture in `root` (name it e.g. "rgbd_dataset_freiburg2_x"). Depth times 1.0 ... 1.5 (step 0.1),
    /// colour times 1.005, 1.108, 1.25, 1.299, 1.41, 1.515, ground truth at 1.05, 1.125, 1.25, 1.35, 1.45 rotating
    /// about the axis (1, 2, 3) by angle = ground-truth time and translating by (t, 2t, -t).
    /// Kept: depth 1.1 (between gt 1.05 and 1.125, s = 2/3), 1.3 (s = 1/2), 1.4 (s = 1/2); dropped: 1.2 (no colour
    /// within 0.02 s), 1.0 and 1.5 (outside the ground truth).
    public static func tum(in root: URL) throws -> Written {
        let k = smallCamera
        let depthTimes = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
        let rgbTimes = [1.005, 1.108, 1.25, 1.299, 1.41, 1.515]
        let gtTimes = [1.05, 1.125, 1.25, 1.35, 1.45]
        var depthList = "# depth maps\n# file: 'fixture'\n# timestamp filename\n"
        var rgbList = "# color images\n# timestamp filename\n"
        for (j, t) in depthTimes.enumerated() {
            let name = "depth/\(String(format: "%.6f", t)).png"
            try write(try PNGCodec.encodeGray16(depthImage(j)), root.appendingPathComponent(name))
            depthList += "\(String(format: "%.6f", t)) \(name)\n"
        }
        for (j, t) in rgbTimes.enumerated() {
            let name = "rgb/\(String(format: "%.6f", t)).png"
            try write(try PNGCodec.encodeRGB8(colorImage(j)), root.appendingPathComponent(name))
            rgbList += "\(String(format: "%.6f", t)) \(name)\n"
        }
        var gt = "# ground truth trajectory\n# timestamp tx ty tz qx qy qz qw\n"
        let axis = normalize(Vec3(1, 2, 3))
        for t in gtTimes {
            let h = sin(t / 2)
            gt += "\(t) \(t) \(2 * t) \(-t) \(axis.x * h) \(axis.y * h) \(axis.z * h) \(cos(t / 2))\n"
        }
        try write(depthList, root.appendingPathComponent("depth.txt"))
        try write(rgbList, root.appendingPathComponent("rgb.txt"))
        try write(gt, root.appendingPathComponent("groundtruth.txt"))
        let kept = [1, 3, 4]  // depth indices
        let colorOf = [1: 1, 3: 3, 4: 4]
        return Written(root: root, frameCount: 3, frameNumbers: kept, depthRaw: kept.map { depthImage($0) },
                       colors: kept.map { colorImage(colorOf[$0] ?? 0) },
                       poses: kept.map { j in
                           let t = depthTimes[j]
                           return RigidTransform(rotation: Mat3(axis: axis, angle: t), translation: Vec3(t, 2 * t, -t))
                       },
                       intrinsics: k, groundTruth: [], timestamps: kept.map { depthTimes[$0] })
    }

    /// 7-Scenes / 3DMatch: frames numbered from `first` (default 8) in `root/rgbd-frames/`, camera-intrinsics.txt
    /// (3x3, tab-separated) in `root`, pose files with leading spaces, tabs and CRLF like the 3DMatch sample;
    /// depth pixel (1, 0) is 65535 (7-Scenes' invalid marker).
    public static func sevenScenes(in root: URL, first: Int = 8, frames: Int = 3, colorExtension: String = "png") throws -> Written {
        let k = Intrinsics(fx: 6, fy: 6.5, cx: 3.5, cy: 2.25, width: width, height: height)
        try write("\(k.fx)\t0\t\(k.cx)\t\n0\t\(k.fy)\t\(k.cy)\t\n0\t0\t1\t\n", root.appendingPathComponent("camera-intrinsics.txt"))
        let dir = root.appendingPathComponent("rgbd-frames")
        var out = Written(root: root, frameCount: frames, frameNumbers: Array(first..<(first + frames)), depthRaw: [],
                          colors: [], poses: [], intrinsics: k, groundTruth: [], timestamps: [])
        for i in 0..<frames {
            let name = String(format: "frame-%06d", first + i)
            var depth = depthImage(i)
            depth[1, 0] = 65535
            let color = colorImage(i)
            try write(try PNGCodec.encodeGray16(depth), dir.appendingPathComponent(name + ".depth.png"))
            try write(colorExtension == "jpg" ? try jpeg(color) : try PNGCodec.encodeRGB8(color),
                      dir.appendingPathComponent(name + ".color." + colorExtension))
            let p = pose(i)
            let m = p.rowMajor4x4
            let text = (0..<4).map { r in (0..<4).map { String(format: "  %.16e", m[4 * r + $0]) }.joined(separator: "\t") }
                .joined(separator: "\t\r\n") + "\t\r\n"
            try write(text, dir.appendingPathComponent(name + ".pose.txt"))
            depth[1, 0] = 0
            out.depthRaw.append(depth); out.colors.append(color); out.poses.append(p)
        }
        return out
    }

    public enum LabelFusionKind: Sendable { case segmentation, objectMask }

    /// label-fusion: 3 frames in `root` with packed depth (raw = metres * 10000 << 3 | low bits 5), colour PNG,
    /// camera-intrinsics.color.txt, and `.segm.png` (classes 3 left half, 12 right half, 0 top row) or `.mask.png`
    /// (255 in the right half). `depthRaw` holds the unpacked value (raw >> 3).
    public static func labelFusion(in root: URL, kind: LabelFusionKind, frames: Int = 3) throws -> Written {
        let k = Intrinsics(fx: 6.1, fy: 6.2, cx: 3.4, cy: 2.6, width: width, height: height)
        try write("\(k.fx) 0 \(k.cx)\n0 \(k.fy) \(k.cy)\n0 0 1\n", root.appendingPathComponent("camera-intrinsics.color.txt"))
        var out = Written(root: root, frameCount: frames, frameNumbers: Array(0..<frames), depthRaw: [], colors: [],
                          poses: [], intrinsics: k, groundTruth: [], timestamps: [])
        for i in 0..<frames {
            let name = String(format: "frame-%06d", i)
            let unpacked = depthImage(i) { f, x, y in x == 0 && y == 0 ? 0 : UInt16(4000 + 100 * f + 10 * y + x) }
            let packed = Gray16Image(width: width, height: height, channels: 1,
                                     data: unpacked.data.map { $0 == 0 ? 0 : ($0 << 3) | 5 })
            try write(try PNGCodec.encodeGray16(packed), root.appendingPathComponent(name + ".depth.png"))
            let color = colorImage(i)
            try write(try PNGCodec.encodeRGB8(color), root.appendingPathComponent(name + ".color.png"))
            let p = pose(i)
            try write(poseText(p), root.appendingPathComponent(name + ".pose.txt"))
            var sem = Gray16Image(width: width, height: height, repeating: 0)
            switch kind {
            case .segmentation:
                var segm = Image<UInt8>(width: width, height: height, repeating: 0)
                for y in 1..<height { for x in 0..<width { segm[x, y] = x < width / 2 ? 3 : 12 } }
                try write(try PNGCodec.encodeGray8(segm), root.appendingPathComponent(name + ".segm.png"))
                sem = Gray16Image(width: width, height: height, channels: 1, data: segm.data.map { UInt16($0) })
            case .objectMask:
                var mask = Image<UInt8>(width: width, height: height, repeating: 0)
                for y in 0..<height { for x in (width / 2)..<width { mask[x, y] = 255 } }
                try write(try PNGCodec.encodeGray8(mask), root.appendingPathComponent(name + ".mask.png"))
                sem = Gray16Image(width: width, height: height, channels: 1, data: mask.data.map { $0 == 255 ? 1 : 0 })
            }
            out.depthRaw.append(unpacked); out.colors.append(color); out.poses.append(p)
            out.groundTruth.append((sem, sem))
        }
        return out
    }

    /// Redwood / Open3D: `root/RGBD/{color/NNNNN.jpg, depth/NNNNN.png, trajectory.log, other_formats/TUM_*.png}`
    /// and `root/camera.json` (Open3D intrinsics, K column-major: fx 6.5, fy 5.5, cx 3.25, cy 2.75).
    public static func redwood(in root: URL, frames: Int = 3) throws -> Written {
        let k = Intrinsics(fx: 6.5, fy: 5.5, cx: 3.25, cy: 2.75, width: width, height: height)
        try write("""
            {
            \t"width" : \(width),
            \t"height" : \(height),
            \t"intrinsic_matrix" : [ \(k.fx), 0, 0, 0, \(k.fy), 0, \(k.cx), \(k.cy), 1 ]
            }
            """, root.appendingPathComponent("camera.json"))
        let dir = root.appendingPathComponent("RGBD")
        var out = Written(root: root, frameCount: frames, frameNumbers: Array(0..<frames), depthRaw: [], colors: [],
                          poses: [], intrinsics: k, groundTruth: [], timestamps: [])
        var log = ""
        for i in 0..<frames {
            let name = String(format: "%05d", i)
            let depth = depthImage(i)
            let color = colorImage(i)
            try write(try PNGCodec.encodeGray16(depth), dir.appendingPathComponent("depth/\(name).png"))
            try write(try jpeg(color), dir.appendingPathComponent("color/\(name).jpg"))
            let p = pose(i)
            log += "\(i) \(i) \(i + 1)\n" + poseText(p)
            out.depthRaw.append(depth); out.colors.append(color); out.poses.append(p)
        }
        try write(log, dir.appendingPathComponent("trajectory.log"))
        // A TUM-format frame that the reader must ignore.
        try write(try PNGCodec.encodeGray16(depthImage(9)), dir.appendingPathComponent("other_formats/TUM_depth.png"))
        try write(try PNGCodec.encodeRGB8(colorImage(9)), dir.appendingPathComponent("other_formats/TUM_color.png"))
        return out
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
