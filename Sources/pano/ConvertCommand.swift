import ArgumentParser
import Foundation
import IO
import MapCore
import Synthetic

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a dataset (ScanNet, Replica, TUM, 7-Scenes/3DMatch, label-fusion, Redwood) to our sequence format.",
        discussion: """
            Ground-truth label/instance images (ScanNet label-filt/instance-filt, label-fusion segm) become our masks
            with ids shuffled per frame, so that the mapper sees them like a 2D segmenter's output.
            """)

    @Argument(help: "Source dataset directory.")
    var source: String

    @Option(help: "Output sequence directory.")
    var out: String

    @Option(help: "Source layout instead of detecting it.")
    var format: String?

    @Option(help: "First source frame (0-based position).")
    var first: Int = 0

    @Option(help: "Number of source frames to take (default: all).")
    var count: Int?

    @Option(help: "Take every n-th frame.")
    var stride: Int = 1

    @Option(help: "Colour format of the output: png (lossless) or jpg.")
    var rgb = "png"

    @Flag(help: "Do not write masks even when the source has ground truth.")
    var noMasks = false

    @Flag(help: "Make the masks noisy like a real 2D segmenter (misses, wrong labels, over/under-segmentation, eroded boundaries).")
    var maskNoise = false

    @Option(help: "Seed of the per-frame id shuffling and of the mask noise.")
    var seed: UInt64 = 0

    func run() throws {
        try reportingErrors {
            let reader = try SequenceFormats.open(URL(fileURLWithPath: source), format: format)
            let n = reader.info.frameCount
            let last = min(n, first + (count ?? n))
            let options = SequenceConverter.Options(frames: first..<last, stride: stride, rgbFormat: rgb,
                                                    masks: !noMasks, seed: seed,
                                                    maskMaker: maskNoise ? MaskNoiseModel.maskMaker(config: .noisy, seed: seed) : nil)
            let progress = Progress("convert", total: Swift.stride(from: first, to: last, by: max(1, stride)).underestimatedCount)
            let report = try SequenceConverter.convert(reader, to: URL(fileURLWithPath: out), options: options) { done, _ in
                progress.update(done)
            }
            print("converted \(report.sourceIndices.count) frames of \(reader.info.name) (\(reader.info.format)) into \(out)"
                  + (report.wroteMasks ? " with masks (\(report.vocabulary?.classes.count ?? 0) classes)" : ", no masks"))
            if !report.unknownClassIDs.isEmpty {
                log.warning("ground-truth class ids not in the vocabulary (left unlabelled): \(report.unknownClassIDs)")
            }
        }
    }
}
