import Foundation
import MapCore

/// Reader of the Redwood / Open3D RGB-D layout:
///
///     color/NNNNN.{jpg,png}    colour
///     depth/NNNNN.png          uint16 millimetres, 0 = invalid
///     trajectory.log           per frame: a header line "i j k", then 4 lines of a 4x4 camera-to-world
///     *.json                   Open3D intrinsics (`width`, `height`, `intrinsic_matrix` = 3x3 K column-major),
///                              beside the frames or one level up; PrimeSense 525, 525, 319.5, 239.5 if none
///
/// The directory may be the one holding color/ depth/ trajectory.log or its parent (with them in `RGBD/`).
/// The n-th trajectory block belongs to the n-th frame in numeric order. Other files (`odometry.log`,
/// `other_formats/`) are ignored.
public struct RedwoodReader: SequenceReader {
    public static let defaultIntrinsics = Intrinsics(fx: 525, fy: 525, cx: 319.5, cy: 239.5, width: 640, height: 480)

    public let info: SequenceInfo
    public let framesDirectory: URL
    public let frameNumbers: [Int]
    /// Where the intrinsics came from (a JSON path, "override" or "PrimeSense default").
    public let intrinsicsSource: String
    let colorNames: [String]
    let depthNames: [String]
    let poses: [RigidTransform]

    public init(directory: URL, intrinsics override: Intrinsics? = nil) throws {
        guard let dir = Self.framesDirectory(in: directory) else {
            throw MapError(.missingFile, "no color/, depth/ and trajectory.log found in the directory or its RGBD/",
                           file: directory.path, hint: "point at a Redwood / Open3D RGB-D directory")
        }
        let depthFiles = DatasetFiles.numbered(in: dir.appendingPathComponent("depth"), prefix: "", suffix: ".png")
        var colorFiles = DatasetFiles.numbered(in: dir.appendingPathComponent("color"), prefix: "", suffix: ".jpg")
        for (n, name) in DatasetFiles.numbered(in: dir.appendingPathComponent("color"), prefix: "", suffix: ".png")
        where colorFiles[n] == nil { colorFiles[n] = name }
        let numbers = depthFiles.keys.sorted()
        guard let firstNumber = numbers.first else {
            throw MapError(.missingFile, "no depth images NNNNN.png found", file: dir.appendingPathComponent("depth").path,
                           hint: "point at a Redwood / Open3D RGB-D directory")
        }
        let first = dir.appendingPathComponent("depth").appendingPathComponent(depthFiles[firstNumber] ?? "")
        let size = try DatasetFiles.pngSize(first, frame: 0, what: "depth image")

        let k: Intrinsics, source: String
        if let override {
            try override.validate(source: "intrinsics override")
            (k, source) = (override, "override")
        } else if let (found, url) = try Self.openIntrinsics(near: dir) {
            (k, source) = (found, url.path)
        } else {
            (k, source) = (Self.defaultIntrinsics, "PrimeSense default")
        }
        try DatasetFiles.checkSize(k, against: size, file: first.path, what: "the intrinsics (\(source))")

        let logURL = dir.appendingPathComponent("trajectory.log")
        let all = try Self.readLog(logURL)
        guard all.count >= numbers.count else {
            throw MapError(.badPose, "trajectory.log has \(all.count) poses but there are \(numbers.count) depth images",
                           file: logURL.path, frame: all.count, hint: "use the trajectory.log that belongs to these frames")
        }
        framesDirectory = dir
        frameNumbers = numbers
        intrinsicsSource = source
        depthNames = numbers.map { depthFiles[$0] ?? "" }
        // A missing colour file is reported when its frame is read; the name mirrors the depth name.
        colorNames = numbers.map { colorFiles[$0] ?? String((depthFiles[$0] ?? "").dropLast(4)) + ".jpg" }
        poses = Array(all.prefix(numbers.count))
        info = SequenceInfo(format: "redwood", name: directory.lastPathComponent, root: directory,
                            frameCount: numbers.count, intrinsics: k, depthUnitsPerMetre: 1000, frameRate: 30)
    }

    static func framesDirectory(in dir: URL) -> URL? {
        for u in [dir, dir.appendingPathComponent("RGBD")] {
            if DatasetFiles.isDirectory(u.appendingPathComponent("depth")), DatasetFiles.isDirectory(u.appendingPathComponent("color")),
               Files.exists(u.appendingPathComponent("trajectory.log")) { return u }
        }
        return nil
    }

    /// Open3D's PinholeCameraIntrinsic JSON.
    struct Open3DIntrinsics: Decodable {
        var width: Int
        var height: Int
        var intrinsic_matrix: [Double]
    }

    /// The first `*.json` beside the frames or one level up that is an Open3D intrinsics file.
    static func openIntrinsics(near dir: URL) throws -> (Intrinsics, URL)? {
        for d in [dir, dir.deletingLastPathComponent()] {
            for name in Files.list(d) where name.hasSuffix(".json") {
                let url = d.appendingPathComponent(name)
                guard let bytes = try? Files.read(url),
                      let j = try? JSONDecoder().decode(Open3DIntrinsics.self, from: Data(bytes)) else { continue }
                guard j.intrinsic_matrix.count == 9 else {
                    throw MapError(.badCalibration, "intrinsic_matrix has \(j.intrinsic_matrix.count) numbers, expected 9",
                                   file: url.path, hint: "write the 3x3 K column-major: fx 0 0 0 fy 0 cx cy 1")
                }
                let m = j.intrinsic_matrix  // column-major: m[0]=fx, m[4]=fy, m[6]=cx, m[7]=cy
                let k = Intrinsics(fx: m[0], fy: m[4], cx: m[6], cy: m[7], width: j.width, height: j.height)
                try k.validate(source: url.path)
                return (k, url)
            }
        }
        return nil
    }

    /// Redwood .log: blocks of one header line (3 integers) and 4 rows of 4 numbers.
    static func readLog(_ url: URL) throws -> [RigidTransform] {
        let text = try Files.readText(url, what: "trajectory log")
        var lines: [(Int, Substring)] = []
        for (n, line) in DatasetText.lines(text) where !DatasetText.isBlankOrComment(line) { lines.append((n, line)) }
        guard lines.count % 5 == 0 else {
            throw MapError(.badPose, "\(lines.count) non-empty lines is not a multiple of 5 (header + 4x4 per frame)",
                           file: url.path, frame: lines.count / 5, hint: "fix or regenerate trajectory.log")
        }
        var poses: [RigidTransform] = []
        for b in 0..<(lines.count / 5) {
            let (hn, header) = lines[5 * b]
            let h = try DatasetText.numbers(header, file: url.path, line: hn)
            guard h.count == 3 else {
                throw MapError(.badPose, "line \(hn) should be a block header of 3 integers, has \(h.count) numbers",
                               file: url.path, frame: b, hint: "fix or regenerate trajectory.log")
            }
            var m: [Double] = []
            for r in 1...4 {
                let (n, line) = lines[5 * b + r]
                let v = try DatasetText.numbers(line, file: url.path, line: n)
                guard v.count == 4 else {
                    throw MapError(.badPose, "line \(n) has \(v.count) numbers, expected 4 (a row of the 4x4 pose)",
                                   file: url.path, frame: b, hint: "fix or regenerate trajectory.log")
                }
                m += v
            }
            poses.append(try DatasetFiles.pose(m, file: url.path, frame: b))
        }
        return poses
    }

    public func files(at i: Int) -> String {
        guard i >= 0 && i < depthNames.count else { return framesDirectory.path }
        return framesDirectory.appendingPathComponent("{color/\(colorNames[i]),depth/\(depthNames[i])}").path
    }

    public func frame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeFrame(at: i) }
    }

    func decodeFrame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        let raw = try ImageFiles.readGray16(framesDirectory.appendingPathComponent("depth/" + depthNames[i]), frame: i,
                                            what: "depth image")
        let rgb = try ImageFiles.readColor(framesDirectory.appendingPathComponent("color/" + colorNames[i]), frame: i,
                                           jpeg: JPEGCodec())
        return Frame(index: i, timestamp: Double(frameNumbers[i]) / 30, rgb: DatasetFiles.colorAtDepthSize(rgb, raw.size),
                     depth: DepthModel.linear(unitsPerMetre: 1000, invalidValue: nil).metres(raw), T_W_C: poses[i],
                     intrinsics: info.intrinsics)
    }
}
