import ArgumentParser
import Foundation
import IO
import MapCore

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read every frame of a sequence (any supported layout), validate it and print its figures.")

    @Argument(help: "Sequence directory (pano format, ScanNet, Replica, TUM, 7-Scenes/3DMatch, label-fusion, Redwood).")
    var sequence: String

    @Option(help: "Layout to assume instead of detecting it.")
    var format: String?

    @Flag(help: "Log and skip frames that fail to decode or validate (default: stop at the first).")
    var skipBadFrames = false

    func run() throws {
        try reportingErrors {
            let reader = try SequenceFormats.open(URL(fileURLWithPath: sequence), format: format)
            let progress = Progress("inspect", total: reader.info.frameCount)
            let report = try SequenceInspector(vocabulary: reader.info.vocabulary, skipBadFrames: skipBadFrames,
                                               progress: { done, _ in progress.update(done) }).run(reader)
            for (frame, e) in report.skipped { log.warning("skipped frame \(frame): \(e)") }
            print(report.text)
        }
    }
}
