import ArgumentParser
import Evaluation
import Foundation
import IO
import MapCore
import Synthetic

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate the synthetic room sequence (no download) and map it with the online pipeline.")

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

    @Flag(help: "Only generate and ingest the sequence; skip mapping.")
    var noTrain = false

    @Option(help: "Hold out every n-th frame from mapping; the final map is evaluated on those views (0 = none).")
    var holdOut = 5

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

            // The online pipeline on the generated sequence: keyframes, sliding-window optimisation of the geometry
            // and panoptic fields, snapshots and checkpoints while mapping, then the final map and its metrics.
            guard !noTrain else { return }
            let session = root.appendingPathComponent("session")
            try? FileManager.default.removeItem(at: session)
            log.info("demo: mapping online into \(session.path) (snapshots in snapshots/, checkpoints in session/)")
            let run = try Run.parse([sequenceDir.path, "--out", session.path, "--seed", String(seed),
                                     "--hold-out", String(holdOut)])
            try run.run()
            let map = session.appendingPathComponent("map")
            let mesh = map.appendingPathComponent("mesh.ply"), gt = sequenceDir.appendingPathComponent("gt/surface.ply")
            var options = GeometryEvaluation.Options()
            options.seed = seed
            let g = try GeometryEvaluation.run(reconstruction: mesh, groundTruth: gt, sequence: sequenceDir, format: nil,
                                               options: options)
            print(g.metrics.text)
            let p = try PanopticEvaluation.evaluate3D(mesh: mesh, groundTruth: gt, vocabulary: reader.info.vocabulary!)
            print("panoptic map (mesh vertices vs nearest GT point):\n\(p.text)")
            let heldout = map.appendingPathComponent("heldout")
            if holdOut > 0 {
                let (m, _) = try PanopticEvaluation.evaluate2D(predictions: heldout, sequence: sequenceDir,
                                                               vocabulary: reader.info.vocabulary!)
                print("panoptic held-out views (rendered labels vs GT images):\n\(m.text)")
                if Files.exists(heldout.appendingPathComponent("\(frameName(holdOut - 1))-rgb.png")) {
                    print("appearance held-out views: \(try ImageEvaluation.evaluate(predictions: heldout, sequence: sequenceDir).metrics.text)")
                }
            }
            // One novel view of every branch: halfway between two distant frames' poses.
            let a = frames / 4, b = 3 * frames / 4
            try Render.parse([session.path, "--between", "\(a),\(b)", "--count", "3"]).run()
            let views = session.appendingPathComponent("views")
            print("novel view   \(views.path)/path-001-{rgb,depth-color,semantic-color,instance-color,panoptic-color}.png (halfway between frames \(a) and \(b))")
            print("map          \(mesh.path) (+ points.ply, legend.json; open in any PLY viewer)")
            if holdOut > 0 { print("held-out     \(heldout.path) (renders of every branch at the held-out frames)") }
            print("snapshots    \(session.appendingPathComponent("snapshots").path) (LATEST names the newest)")
        }
    }
}
