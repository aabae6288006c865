import ArgumentParser
import Foundation
import IO
import MapCore
import Synthetic

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate the synthetic room sequence (no download) and run the pipeline that exists so far on it.")

    @Option(help: "Output directory.")
    var out = "out/demo"

    @Option(help: "Random seed (same seed, same bytes).")
    var seed: UInt64 = 1

    @Option(help: "Number of frames.")
    var frames: Int = 60

    @Option(help: "Image width in pixels (height is 3/4 of it).")
    var width: Int = 320

    @Flag(help: "Clean masks (ids still shuffled per frame) and noise-free depth.")
    var clean = false

    @Option(help: "Geometry optimisation steps of the mapping stage.")
    var iterations = 3000

    @Option(help: "Steps of the panoptic stage (semantic and instance fields, tokens, panoptic head).")
    var panopticIterations = 1500

    @Flag(help: "Only generate and ingest the sequence; skip mapping.")
    var noTrain = false

    func run() throws {
        try reportingErrors {
            var config = SyntheticSceneConfig()
            config.seed = seed
            config.frameCount = frames
            config.width = width
            config.height = width * 3 / 4
            if clean { config.depthNoise = .none; config.maskNoise = .clean }
            try config.validate()
            let root = URL(fileURLWithPath: out)
            let sequenceDir = root.appendingPathComponent("sequence")
            log.info("demo: generating the synthetic room (\(config.width)x\(config.height), \(frames) frames, seed \(seed)) into \(sequenceDir.path)")
            let scene = try SyntheticScene(config: config)
            let progress = Progress("generate", total: frames)
            try SyntheticSequence(scene: scene).write(to: sequenceDir) { i in progress.update(i + 1) }

            // The ingest path of the mapper: read every frame back through the reader and the validator.
            let reader = try PanoSequenceReader(directory: sequenceDir)
            let ingest = Progress("ingest", total: reader.info.frameCount)
            let report = try SequenceInspector(vocabulary: reader.info.vocabulary, skipBadFrames: false,
                                               progress: { done, _ in ingest.update(done) }).run(reader)
            print(report.text)
            print("ground truth \(sequenceDir.appendingPathComponent("gt").path) (semantic/instance/panoptic images, surface.ply)")

            // Mapping stage so far: batch geometry (SDF field) → mesh → metrics against the ground truth.
            guard !noTrain else { return }
            let mapDir = root.appendingPathComponent("map")
            log.info("demo: training the geometry field (\(iterations) steps) and the panoptic fields into \(mapDir.path)")
            // Every 5th frame is held out: depth and panoptic labels are reported on views the fields never trained on.
            let train = try Train.parse([sequenceDir.path, "--out", mapDir.path, "--iterations", String(iterations),
                                         "--seed", String(seed), "--hold-out", "5", "--panoptic-iterations", String(panopticIterations)])
            try train.run()
            print("mesh         \(mapDir.appendingPathComponent("mesh.ply").path) (open it in any PLY viewer)")
        }
    }
}
