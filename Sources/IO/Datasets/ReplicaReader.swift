import Foundation
import MapCore

/// Reader of Replica in the NICE-SLAM layout:
///
///     results/frameNNNNNN.jpg    colour
///     results/depthNNNNNN.png    uint16, 6553.5 units per metre, 0 = invalid
///     traj.txt                   line N = T_W_C of frame N, 16 numbers (4x4 row-major)
///
/// The files carry no intrinsics: NICE-SLAM's Replica camera is the default (`ReplicaReader.niceSLAMCamera`),
/// and the images must match its size unless an override is given.
public struct ReplicaReader: SequenceReader {
    /// NICE-SLAM's Replica camera: 1200x680, fx = fy = 600, cx = 599.5, cy = 339.5.
    public static let niceSLAMCamera = Intrinsics(fx: 600, fy: 600, cx: 599.5, cy: 339.5, width: 1200, height: 680)
    public static let depthUnitsPerMetre = 6553.5

    public let info: SequenceInfo
    /// The file number NNNNNN of each frame, by index (also its line in traj.txt, counting from 0).
    public let frameNumbers: [Int]
    let poses: [RigidTransform]
    /// The digits of each frame's file names, as written (e.g. "000012").
    let digits: [String]

    public init(directory: URL, intrinsics override: Intrinsics? = nil) throws {
        let results = directory.appendingPathComponent("results")
        let depthFiles = DatasetFiles.numbered(in: results, prefix: "depth", suffix: ".png")
        guard !depthFiles.isEmpty else {
            throw MapError(.missingFile, "no depth images depthNNNNNN.png found", file: results.path,
                           hint: "point at a Replica scene in the NICE-SLAM layout (results/, traj.txt)")
        }
        let numbers = depthFiles.keys.sorted()
        let first = results.appendingPathComponent(depthFiles[numbers[0]] ?? "")
        let size = try DatasetFiles.pngSize(first, frame: 0, what: "depth image")
        let k = override ?? Self.niceSLAMCamera
        try k.validate(source: override == nil ? "NICE-SLAM Replica camera" : "intrinsics override")
        try DatasetFiles.checkSize(k, against: size, file: first.path,
                                   what: override == nil ? "the default NICE-SLAM Replica intrinsics" : "the intrinsics override")

        let trajURL = directory.appendingPathComponent("traj.txt")
        let text = try Files.readText(trajURL, what: "trajectory")
        var all: [RigidTransform] = []
        for (n, line) in DatasetText.lines(text) where !DatasetText.isBlankOrComment(line) {
            let v = try DatasetText.numbers(line, file: trajURL.path, line: n)
            all.append(try DatasetFiles.pose(v, file: trajURL.path, frame: all.count, line: n))
        }
        var poses: [RigidTransform] = []
        for (i, number) in numbers.enumerated() {
            guard number < all.count else {
                throw MapError(.badPose, "traj.txt has \(all.count) poses but frame \(number) needs line \(number + 1)",
                               file: trajURL.path, frame: i, hint: "use the traj.txt that belongs to these frames")
            }
            poses.append(all[number])
        }
        self.poses = poses
        frameNumbers = numbers
        digits = numbers.map { String((depthFiles[$0] ?? "").dropFirst("depth".count).dropLast(".png".count)) }
        info = SequenceInfo(format: "replica", name: directory.lastPathComponent, root: directory,
                            frameCount: numbers.count, intrinsics: k, depthUnitsPerMetre: Self.depthUnitsPerMetre,
                            frameRate: nil)
    }

    func url(_ kind: String, _ i: Int, _ ext: String) -> URL {
        info.root.appendingPathComponent("results").appendingPathComponent(kind + digits[i] + "." + ext)
    }

    public func files(at i: Int) -> String {
        guard i >= 0 && i < frameNumbers.count else { return info.root.path }
        return info.root.appendingPathComponent("results/{frame,depth}\(digits[i]).*").path
    }

    public func frame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeFrame(at: i) }
    }

    func decodeFrame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        let raw = try ImageFiles.readGray16(url("depth", i, "png"), frame: i, what: "depth image")
        let rgb = try ImageFiles.readColor(url("frame", i, "jpg"), frame: i, jpeg: JPEGCodec())
        return Frame(index: i, rgb: rgb,
                     depth: DepthModel.linear(unitsPerMetre: Self.depthUnitsPerMetre, invalidValue: nil).metres(raw),
                     T_W_C: poses[i], intrinsics: info.intrinsics)
    }
}
