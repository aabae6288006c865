import ArgumentParser
import Evaluation
import Fields
import Foundation
import IO
import Kernels
import MapCore

/// Batch geometry training over a whole sequence: the recipe is read → train → mesh → evaluate.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the geometry field on a whole sequence (batch), write the mesh and report metrics.")

    @Argument(help: "Sequence directory (any supported layout).")
    var sequence: String

    @Option(help: "Output directory (mesh.ply, report.json).")
    var out = "out/train"

    @Option(help: "Layout instead of detecting it.")
    var format: String?

    @Option(help: "Optimisation steps. A run is reproducible bit for bit when this, not --seconds, ends it.")
    var iterations = 3000

    @Option(help: "Time budget in seconds (a safety cap; when it ends the run, the result depends on machine speed).")
    var seconds: Double = 280

    @Option(help: "Hold out every n-th frame (0 = none) and report the rendered-vs-measured depth error on them.")
    var holdOut = 0

    @Option(help: "Mesh voxel size in metres.")
    var voxel: Float = 0.02

    @Option(help: "Finest hash-grid cell in metres.")
    var finestCell: Float = 0.02

    @Option(help: "GT surface samples (PLY) for geometry metrics; default SEQUENCE/gt/surface.ply when present.")
    var groundTruth: String?

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    @Flag(help: "Keep mesh parts no training frame could see (behind observed surfaces or outside every view).")
    var keepUnobserved = false

    @Option(help: "Steps of the panoptic stage after the geometry (0 = none; needs masks and a vocabulary): semantic and instance fields, instance tokens, panoptic head. Adds per-vertex semantic / instance / panoptic labels to the mesh and legend.json; with --hold-out, label renders of the held-out views (heldout/) and, with GT label images (gt/), 2D and 3D panoptic metrics.")
    var panopticIterations = 0

    @Flag(help: "With --panoptic-iterations: also train the ablation variants (no spatial prior; prior without L_pan) on the same geometry and print their PQ next to the full method's.")
    var ablation = false

    @Option(help: "Steps of the appearance stage (3D Gaussians seeded from the training frames' depth; L1 + 0.2 (1 - SSIM) + 0.1 depth; densify / prune). With --hold-out: colour and depth renders of the held-out views (heldout/NNNNNN-rgb.png, -depth.png) and their PSNR / SSIM / depth AbsRel. 0 = none.")
    var appearanceIterations = 0

    @Option(help: "Rays per optimisation step.")
    var rays = GeometryTrainerConfig().raysPerStep

    @Option(help: "Samples per ray over [near, depth + truncation].")
    var uniformSamples = GeometryTrainerConfig().uniformSamples

    @Option(help: "Samples per ray inside the truncation band.")
    var bandSamples = GeometryTrainerConfig().surfaceSamples

    @Option(help: "Hash-grid levels.")
    var levels = 8

    @Option(help: "log2 of the hash-grid table size per level.")
    var log2Table = 16

    @Flag(help: "Log and skip frames that fail to decode or validate.")
    var skipBadFrames = false

    func run() throws {
        try reportingErrors {
            let seqURL = URL(fileURLWithPath: sequence)
            let reader = try SequenceFormats.open(seqURL, format: format)
            let outDir = URL(fileURLWithPath: out)
            try Files.createDirectory(outDir)

            // 1. Frames (validated), split into training and held-out.
            let (training, heldOut) = try loadFrames(reader)
            log.info("train: \(training.count) training frames, \(heldOut.count) held out, \(reader.info.intrinsics.size)")

            // 2. Field over the observed space.
            var trainerConfig = GeometryTrainerConfig()
            trainerConfig.seed = seed
            trainerConfig.raysPerStep = rays
            trainerConfig.uniformSamples = uniformSamples
            trainerConfig.surfaceSamples = bandSamples
            let trainingFrames = training.map { TrainingFrame($0, near: trainerConfig.near, far: trainerConfig.far) }
            let bounds = SceneBounds.enclosing(trainingFrames)
            let field = try GeometryField(config: fieldConfig(bounds), seed: seed)
            let trainer = try GeometryTrainer(config: trainerConfig, field: field)
            for f in trainingFrames { trainer.add(f) }

            // 3. Optimise.
            let progress = Progress("train", total: iterations)
            let start = Date()
            let last = trainer.train(iterations: iterations, seconds: seconds, reportEvery: 25) { step, s in
                progress.update(step, extra: String(format: "sdf %.4f eik %.4f depth %.4f |dD| %.1f cm xi %.0f",
                                                    s.sdf, s.eikonal, s.depth, s.depthError * 100, s.xi))
            }
            let trainSeconds = Date().timeIntervalSince(start)

            // 3b. Panoptic fields on top of the trained geometry (and the ablation variants, each on the same geometry).
            let stage = PanopticStage(iterations: panopticIterations, seconds: seconds, seed: seed,
                                      grid: fieldConfig(bounds).grid)
            var panoptic: PanopticTrainer?
            var ablationRows: [(name: String, metrics: PanopticMetrics?)] = []
            if panopticIterations > 0 {
                if ablation {
                    for (name, prior, pan) in [("no-prior", false, false), ("prior", true, false)] {
                        var variant = stage
                        variant.usePrior = prior; variant.usePanopticLoss = pan
                        let t = try variant.train(reader: reader, training: training, geometry: field, label: name)
                        ablationRows.append((name, try heldOutPanoptic(t, frames: heldOut, sequence: seqURL,
                                                                       into: outDir.appendingPathComponent("ablation/\(name)"))))
                    }
                }
                panoptic = try stage.train(reader: reader, training: training, geometry: field, label: "panoptic")
            }

            // 3c. Appearance: Gaussians on the training frames (independent of the fields).
            var appearance: GaussianTrainer?
            if appearanceIterations > 0 {
                var c = GaussianTrainerConfig()
                c.seed = seed
                let t = try GaussianTrainer(config: c)
                for f in training { t.add(f) }
                let p = Progress("appearance", total: appearanceIterations)
                for i in 0..<appearanceIterations {
                    let s = t.step()
                    if (i + 1) % 25 == 0 || i + 1 == appearanceIterations {
                        p.update(i + 1, extra: String(format: "L1 %.4f ssim %.4f depth %.4f, %d Gaussians", s.l1,
                                                      s.ssim, s.depth, s.gaussians))
                    }
                }
                appearance = t
            }

            // 4. Mesh.
            let meshStart = Date()
            var mesh = try GeometryMeshing.mesh(field: field, bounds: bounds, voxelSize: voxel)
            let (colors, observable) = VertexColoring.colors(vertices: mesh.vertices, frames: training)
            mesh.colors = colors
            if !keepUnobserved { mesh = mesh.keeping(observable) }
            if let panoptic {
                let legend = panoptic.legend()
                panoptic.label(&mesh, legend: legend)
                try legend.write(to: outDir.appendingPathComponent("legend.json"))
                var points = mesh // the labelled point cloud: the mesh's vertices without faces
                points.triangles = []
                try PLY.write(points.plyData, to: outDir.appendingPathComponent("points.ply"))
            }
            let meshURL = outDir.appendingPathComponent("mesh.ply")
            try PLY.write(mesh.plyData, to: meshURL)
            log.info("mesh: \(mesh.vertices.count) vertices, \(mesh.triangles.count) triangles in \(String(format: "%.1f", Date().timeIntervalSince(meshStart))) s → \(meshURL.path)")

            // 5. Evaluate.
            var report = TrainReport(steps: trainer.steps, trainSeconds: trainSeconds, lastLoss: last.total,
                                     vertices: mesh.vertices.count, triangles: mesh.triangles.count)
            if !heldOut.isEmpty {
                report.heldOutDepthErrorMetres = try heldOutDepthError(field: field, frames: heldOut,
                                                                       picture: outDir.appendingPathComponent("heldout-depth.png"))
                print(String(format: "held-out depth error   %.2f cm (mean |rendered - measured| over %d frames)",
                             report.heldOutDepthErrorMetres! * 100, heldOut.count))
            }
            if let appearance, !heldOut.isEmpty {
                let dir = outDir.appendingPathComponent("heldout")
                for f in heldOut {
                    let v = BranchRendering.render(T_W_C: f.T_W_C, intrinsics: f.intrinsics, geometry: nil,
                                                   gaussians: appearance.gaussians, panoptic: nil, legend: nil)
                    try BranchRendering.write(v, frame: f.index, into: dir, names: ["rgb", "depth"])
                }
                let (m, _) = try ImageEvaluation.evaluate(predictions: dir, sequence: seqURL)
                report.heldOutImages = m
                print("held-out appearance (\(appearance.gaussians.count) Gaussians): \(m.text)")
            }
            if let panoptic, !heldOut.isEmpty {
                report.heldOutPanoptic = try heldOutPanoptic(panoptic, frames: heldOut, sequence: seqURL, into: outDir)
                if ablation {
                    ablationRows.append(("prior+L_pan", report.heldOutPanoptic))
                    printAblation(ablationRows)
                }
            }
            let gtURL = groundTruth.map { URL(fileURLWithPath: $0) } ?? seqURL.appendingPathComponent("gt/surface.ply")
            if Files.exists(gtURL) {
                var options = GeometryEvaluation.Options()
                options.seed = seed
                let r = try GeometryEvaluation.run(reconstruction: meshURL, groundTruth: gtURL, sequence: seqURL,
                                                   format: format, options: options)
                report.geometry = r.metrics
                print(r.metrics.text)
                if let panoptic, let vocabulary = reader.info.vocabulary {
                    let m = try PanopticEvaluation.evaluate3D(mesh: meshURL, groundTruth: gtURL, vocabulary: vocabulary)
                    report.meshPanoptic = m
                    print("panoptic mesh (vertices vs nearest GT point, \(panoptic.tokens.count) tokens):\n\(m.text)")
                }
            }
            print(String(format: "trained %d steps in %.1f s", trainer.steps, trainSeconds))
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try Files.writeAtomically(try enc.encode(report), to: outDir.appendingPathComponent("report.json"))
        }
    }

    func fieldConfig(_ bounds: SceneBounds) -> GeometryField.Config {
        let longest = max(bounds.size.x, bounds.size.y, bounds.size.z)
        let grid = HashGridConfig(boundsMin: bounds.min, boundsMax: bounds.max, levels: levels, featuresPerLevel: 2,
                                  log2TableSize: log2Table, baseResolution: 16,
                                  finestResolution: max(32, Int((longest / finestCell).rounded())))
        return GeometryField.Config(grid: grid)
    }

    /// Renders the held-out views' labels into `directory`/heldout and evaluates them against the sequence's GT label
    /// images (`gt/semantic`, `gt/instance`); nil when the sequence has none.
    func heldOutPanoptic(_ t: PanopticTrainer, frames: [Frame], sequence: URL, into directory: URL) throws
        -> PanopticMetrics?
    {
        guard !frames.isEmpty else { return nil }
        let dir = directory.appendingPathComponent("heldout")
        try PanopticStage.renderHeldOut(t, frames: frames, legend: t.legend(), into: dir)
        let haveGT = frames.allSatisfy { f in
            let u = PanopticEvaluation.groundTruthURLs(sequence, frame: f.index)
            return Files.exists(u.semantic) && Files.exists(u.instance)
        }
        guard haveGT else { return nil }
        let (m, used) = try PanopticEvaluation.evaluate2D(predictions: dir, sequence: sequence,
                                                           vocabulary: t.semantic.vocabulary)
        print("held-out panoptic (\(used.count) frames, \(t.tokens.count) tokens):\n\(m.text)")
        return m
    }

    func printAblation(_ rows: [(name: String, metrics: PanopticMetrics?)]) {
        print("ablation (held-out views, same geometry and seed):")
        print("  variant        PQ     SQ     RQ     mIoU   mCov")
        for r in rows {
            guard let m = r.metrics else { print("  \(r.name): no GT"); continue }
            print("  " + r.name.padding(toLength: 12, withPad: " ", startingAt: 0)
                  + String(format: " %5.1f  %5.1f  %5.1f  %5.1f  %5.1f", m.pq * 100, m.sq * 100, m.rq * 100,
                           m.mIoU * 100, m.mCov * 100))
        }
    }

    func loadFrames(_ reader: any SequenceReader) throws -> ([Frame], [Frame]) {
        let validator = FrameValidator(vocabulary: reader.info.vocabulary)
        var training: [Frame] = [], heldOut: [Frame] = []
        let progress = Progress("load", total: reader.info.frameCount)
        for i in 0..<reader.info.frameCount {
            do {
                let f = try reader.frame(at: i)
                try validator.validate(f, files: reader.files(at: i))
                if holdOut > 0 && i % holdOut == holdOut - 1 { heldOut.append(f) } else { training.append(f) }
            } catch let e as MapError {
                guard skipBadFrames else { throw e.at(frame: i) }
                log.warning("skipped frame \(i): \(e)")
            }
            progress.update(i + 1)
        }
        guard !training.isEmpty else {
            throw MapError(.badArgument, "no usable training frames", file: reader.info.root.path,
                           hint: "check the sequence with `pano inspect`")
        }
        return (training, heldOut)
    }

    /// Mean |rendered - measured| depth over the held-out frames' pixels where both exist; writes the first frame's
    /// measured (left) and rendered (right) depth side by side to `picture` (grey, near = bright).
    func heldOutDepthError(field: GeometryField, frames: [Frame], picture: URL) throws -> Double {
        var raycaster = SDFRaycaster()
        raycaster.far = 10
        var total = 0.0, count = 0
        for (n, f) in frames.enumerated() {
            let rendered = raycaster.depth(field: field, T_W_C: f.T_W_C, intrinsics: f.intrinsics)
            for (r, m) in zip(rendered.data, f.depth.data) where r > 0 && m > 0 {
                total += Double(abs(r - m)); count += 1
            }
            if n == 0 {
                let w = f.depth.width, h = f.depth.height
                let far = max(0.5, f.depth.data.max() ?? 1)
                var img = RGBImage(width: 2 * w, height: h, channels: 3, repeating: 0)
                for y in 0..<h {
                    for x in 0..<w {
                        for (side, d) in [(0, f.depth[x, y]), (1, rendered[x, y])] where d > 0 {
                            let g = UInt8(max(0, min(255, 255 * (1 - d / far))))
                            for c in 0..<3 { img[side * w + x, y, c] = g }
                        }
                    }
                }
                try Files.writeAtomically(try PNGCodec.encodeRGB8(img), to: picture)
            }
        }
        return count > 0 ? total / Double(count) : .nan
    }
}

struct TrainReport: Codable {
    var steps: Int
    var trainSeconds: Double
    var lastLoss: Float
    var vertices: Int
    var triangles: Int
    var heldOutDepthErrorMetres: Double?
    var heldOutPanoptic: PanopticMetrics?
    var heldOutImages: ImageMetrics?
    var meshPanoptic: PanopticMetrics?
    var geometry: GeometryMetrics?
}
