import ArgumentParser
import Foundation
import IO
import MapCore
import Pipeline
import Tracking

/// `pano eval trajectory`: the tracked keyframe poses of a live or tracked session against a sequence's poses.
struct EvalTrajectory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trajectory",
        abstract: "ATE of a tracked session's keyframe poses (OUT/keyframes/) against a sequence's poses, frame by frame index.")

    @Argument(help: "Session directory of `pano live` or `pano run --track`.")
    var session: String

    @Option(help: "Sequence with the reference poses (same frame indices).")
    var sequence: String

    @Option(help: "Layout of --sequence instead of detecting it.")
    var format: String?

    @Flag(help: "Print every keyframe's position error too.")
    var perFrame = false

    func run() throws {
        try reportingErrors {
            let store = KeyframeStore(directory: URL(fileURLWithPath: session).appendingPathComponent("keyframes"))
            let reader = try SequenceFormats.open(URL(fileURLWithPath: sequence), format: format)
            let indices = store.indices().filter { $0 < reader.info.frameCount }
            guard !indices.isEmpty else {
                throw MapError(.missingFile, "no stored keyframes", file: store.directory.path,
                               hint: "give the directory of a `pano live` or `pano run --track` session")
            }
            let estimated = try indices.map { try store.read($0).T_W_C }
            let reference = try indices.map { try reader.frame(at: $0).T_W_C }
            let errors = zip(estimated, reference).map { length($0.translation - $1.translation) }
            if perFrame {
                for (k, i) in indices.enumerated() {
                    let e = estimated[k].translation, r = reference[k].translation
                    print(String(format: "frame %6d  error %6.2f cm  tracked (%.3f, %.3f, %.3f)  reference (%.3f, %.3f, %.3f)",
                                 i, 100 * errors[k], e.x, e.y, e.z, r.x, r.y, r.z))
                }
            }
            let worst = errors.indices.max { errors[$0] < errors[$1] }!
            print(String(format: "%d keyframes  ATE %.2f cm  max %.2f cm (frame %d)", indices.count,
                         100 * RGBDTracker.ate(estimated, reference), 100 * errors[worst], indices[worst]))
        }
    }
}
