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

    @Option(help: "Steps of the semantic field after the geometry (0 = none; needs masks and a vocabulary). Adds a per-vertex `semantic` label to the mesh and, with --hold-out and GT label images (gt/semantic/), the held-out mIoU.")
    var semanticIterations = 0

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

            // 3b. Semantics on top of the trained geometry.
            var semantics: SemanticTrainer?
            if semanticIterations > 0 {
                semantics = try trainSemantics(reader: reader, training: training, bounds: bounds, geometry: field)
            }

            // 4. Mesh.
            let meshStart = Date()
            var mesh = try GeometryMeshing.mesh(field: field, bounds: bounds, voxelSize: voxel)
            let (colors, observable) = VertexColoring.colors(vertices: mesh.vertices, frames: training)
            mesh.colors = colors
            if !keepUnobserved { mesh = mesh.keeping(observable) }
            if let semantics {
                let logits = semantics.field.logits(mesh.vertices)
                let c = semantics.field.classCount
                let ids = logits.withUnsafeBufferPointer { z in
                    (0..<mesh.vertices.count).map { Int32(semantics.field.classID(ofIndex: SemanticRendering.argmax(z.baseAddress! + $0 * c, classes: c))) }
                }
                mesh.labels.append((name: "semantic", values: ids))
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
            if let semantics, !heldOut.isEmpty {
                report.heldOutSemantic = try heldOutSemantics(semantics, frames: heldOut, sequence: seqURL)
            }
            let gtURL = groundTruth.map { URL(fileURLWithPath: $0) } ?? seqURL.appendingPathComponent("gt/surface.ply")
            if Files.exists(gtURL) {
                var options = GeometryEvaluation.Options()
                options.seed = seed
                let r = try GeometryEvaluation.run(reconstruction: meshURL, groundTruth: gtURL, sequence: seqURL,
                                                   format: format, options: options)
                report.geometry = r.metrics
                print(r.metrics.text)
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

    func trainSemantics(reader: any SequenceReader, training: [Frame], bounds: SceneBounds,
                        geometry: GeometryField) throws -> SemanticTrainer {
        guard let vocabulary = reader.info.vocabulary, training.contains(where: { $0.masks != nil }) else {
            throw MapError(.badArgument, "--semantic-iterations needs a sequence with masks and a vocabulary",
                           file: reader.info.root.path, hint: "convert the dataset with masks (`pano convert`) or drop the option")
        }
        var tc = SemanticTrainerConfig()
        tc.seed = seed
        let semantic = try SemanticField(config: SemanticField.Config(grid: fieldConfig(bounds).grid), vocabulary: vocabulary,
                                         seed: seed &+ 1)
        let trainer = try SemanticTrainer(config: tc, field: semantic, geometry: geometry)
        for f in training { trainer.add(f) }
        let progress = Progress("semantics", total: semanticIterations)
        trainer.train(iterations: semanticIterations, seconds: seconds, reportEvery: 25) { step, s in
            progress.update(step, extra: String(format: "L_sem %.3f acc %.1f%%", s.loss, s.accuracy * 100))
        }
        return trainer
    }

    /// Semantic labels rendered at the held-out views (sampled around their measured depth) against the GT label
    /// images of our format (`gt/semantic/NNNNNN.png`); nil when there are none.
    func heldOutSemantics(_ t: SemanticTrainer, frames: [Frame], sequence: URL) throws -> PanopticMetrics? {
        var evaluator = PanopticEvaluator(vocabulary: t.field.vocabulary)
        var used = 0
        for f in frames {
            let url = sequence.appendingPathComponent("gt/semantic/\(frameName(f.index)).png")
            guard Files.exists(url) else { continue }
            let gt = try ImageFiles.readGray16(url, frame: f.index, what: "GT semantic image")
            guard gt.size == f.depth.size else { continue }
            let pixels = (0..<Int32(f.depth.data.count)).map { $0 }
            let idx = t.renderClassIndices(T_W_C: f.T_W_C, intrinsics: f.intrinsics, pixels: pixels, depth: f.depth.data)
            let predicted = idx.map { $0 < 0 ? Int32(0) : Int32(t.field.classID(ofIndex: $0)) }
            let zeros = [Int32](repeating: 0, count: predicted.count)
            try evaluator.add(predictedClass: predicted, predictedInstance: zeros, gtClass: gt.data.map { Int32($0) },
                              gtInstance: zeros)
            used += 1
        }
        guard used > 0 else { return nil }
        let m = try evaluator.result()
        print(String(format: "held-out semantics     mIoU %.1f %%, mAcc %.1f %% over %d frames", m.mIoU * 100, m.mAcc * 100, used))
        return m
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
    var heldOutSemantic: PanopticMetrics?
    var geometry: GeometryMetrics?
}
