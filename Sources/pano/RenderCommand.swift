import ArgumentParser
import Foundation
import IO
import MapCore
import Pipeline

/// `pano render`: novel views of every branch of a session's map.
struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render every branch of a session's map (RGB and depth from the Gaussians; semantic, instance and panoptic from the fields) at given poses.",
        discussion: """
            Poses: --frames (the source's poses of those frames), --poses FILE (one pose per line: r00 r01 r02 tx \
            r10 r11 r12 ty r20 r21 r22 tz, T_W_C, camera +z forward, +x right, +y down; `#` starts a comment), or \
            --between A,B with --count N (N views on the path from frame A's pose to frame B's: translation linear, \
            rotation slerp). Per view: NAME-rgb.png, -depth.png (16-bit mm), -depth-color.png, -semantic-color.png, \
            -instance-color.png, -panoptic-color.png; with --ids also -semantic.png / -instance.png (16-bit ids). \
            Intrinsics are the source's (--width scales them).
            """)

    @Argument(help: "Session directory of `pano run`.")
    var directory: String

    @Option(help: "Output directory (default DIRECTORY/views).")
    var out: String?

    @Option(help: "Comma-separated frame numbers whose poses to render at.")
    var frames: String?

    @Option(help: "File of poses (12 numbers per line, T_W_C row-major 3x4).")
    var poses: String?

    @Option(help: "Two frame numbers A,B: an interpolated trajectory between their poses.")
    var between: String?

    @Option(help: "Views on the --between trajectory (including both ends).")
    var count = 5

    @Option(help: "Image width (height keeps the aspect ratio; default the source's).")
    var width: Int?

    @Flag(help: "Also write 16-bit semantic / instance id images.")
    var ids = false

    func run() throws {
        try reportingErrors {
            let dir = URL(fileURLWithPath: directory)
            let config = try MappingSession.savedConfig(dir)
            let source = try openSource(config.source)
            var k = source.info.intrinsics
            if let width {
                guard width >= 8 else { throw ValidationError("--width must be at least 8") }
                k = k.scaled(toWidth: width, height: max(1, (k.height * width + k.width / 2) / k.width))
            }
            var views: [(name: String, T_W_C: RigidTransform)] = []
            func framePose(_ i: Int) throws -> RigidTransform {
                guard i >= 0, source.info.frameCount.map({ i < $0 }) ?? true else {
                    throw MapError(.badArgument, "frame \(i) is not in the source (\(source.info.frameCount ?? 0) frames)",
                                   hint: "give frame numbers of the session's sequence")
                }
                return try source.frame(at: i).T_W_C
            }
            for i in try Self.integers(frames, what: "--frames") { views.append((frameName(i), try framePose(i))) }
            if let between {
                let ab = try Self.integers(between, what: "--between")
                guard ab.count == 2, count >= 2 else {
                    throw ValidationError("--between takes two frame numbers A,B and --count at least 2")
                }
                let a = try framePose(ab[0]), b = try framePose(ab[1])
                for j in 0..<count {
                    views.append((String(format: "path-%03d", j), a.interpolated(to: b, fraction: Double(j) / Double(count - 1))))
                }
            }
            if let poses {
                for (j, p) in try Self.readPoses(URL(fileURLWithPath: poses)).enumerated() {
                    views.append((String(format: "pose-%03d", j), p))
                }
            }
            guard !views.isEmpty else { throw ValidationError("give --frames, --between or --poses") }
            let session = try MappingSession(resuming: dir, info: source.info, frames: { try source.frame(at: $0) })
            let target = out.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("views")
            let progress = Progress("render", total: views.count)
            var written = 0
            for (n, v) in views.enumerated() {
                written += try blockingRun { [ids, k] in
                    try await session.writeViews([v], intrinsics: k, into: target, ids: ids).count
                }
                progress.update(n + 1)
            }
            print("rendered \(views.count) views (\(written) PNGs, \(k.width)x\(k.height)) → \(target.path)")
        }
    }

    static func integers(_ list: String?, what: String) throws -> [Int] {
        guard let list else { return [] }
        return try list.split(separator: ",").map {
            guard let i = Int($0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(what): '\($0)' is not a frame number")
            }
            return i
        }
    }

    /// Reads a pose list: 12 numbers per non-empty line (T_W_C, row-major 3x4); the rotation must be rigid.
    static func readPoses(_ url: URL) throws -> [RigidTransform] {
        let text = try Files.readText(url, what: "pose list")
        var out: [RigidTransform] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
            if fields.isEmpty { continue }
            let values = fields.compactMap { Double($0) }
            guard values.count == 12, fields.count == 12, values.allSatisfy(\.isFinite) else {
                throw MapError(.badPose, "line \(n + 1) needs 12 finite numbers (r00 r01 r02 tx ... r20 r21 r22 tz), has \(fields.count) fields",
                               file: url.path, hint: "write one 3x4 camera-to-world matrix per line")
            }
            let pose = RigidTransform(rowMajor: values)
            guard pose.isRigid() else {
                throw MapError(.badPose, "line \(n + 1): the rotation is not a rotation matrix", file: url.path,
                               hint: "orthonormalise the rotation (det +1)")
            }
            out.append(pose)
        }
        guard !out.isEmpty else {
            throw MapError(.badPose, "no poses in the file", file: url.path, hint: "write one 3x4 matrix per line")
        }
        return out
    }
}
