import Evaluation
import Fields
import Foundation
import IO
import Kernels
import MapCore

/// The panoptic part of `pano train`: semantic + instance fields and tokens on top of the trained geometry, then the
/// panoptic mesh labels, `legend.json`, held-out label renders and metrics. One variant per call (the ablation runs
/// several on the same geometry).
struct PanopticStage {
    var iterations: Int
    var seconds: Double
    var seed: UInt64
    var usePrior = true
    var usePanopticLoss = true
    /// Grid of the semantic and instance fields.
    var grid: HashGridConfig

    struct Result {
        var trainer: PanopticTrainer
        var legend: PanopticLegend
        var heldOut2D: PanopticMetrics?
        var mesh3D: PanopticMetrics?
        var seconds: Double
    }

    func config() -> PanopticTrainerConfig {
        var c = PanopticTrainerConfig()
        c.seed = seed
        c.usePrior = usePrior
        c.usePanopticLoss = usePanopticLoss
        // Schedule scaled to the run: semantics alone for the first 15 %, L_pan from 50 %.
        c.instanceStart = iterations * 15 / 100
        c.panopticStart = iterations / 2
        c.cloneUntil = iterations * 8 / 10
        return c
    }

    /// Trains the variant on `training` frames (geometry fixed).
    func train(reader: any SequenceReader, training: [Frame], geometry: GeometryField, label: String) throws
        -> PanopticTrainer
    {
        guard let vocabulary = reader.info.vocabulary, training.contains(where: { $0.masks != nil }) else {
            throw MapError(.badArgument, "--panoptic-iterations needs a sequence with masks and a vocabulary",
                           file: reader.info.root.path,
                           hint: "convert the dataset with masks (`pano convert`) or drop the option")
        }
        guard vocabulary.classes.contains(where: \.isThing) else {
            throw MapError(.badArgument, "the vocabulary has no thing class, so there are no instances to map",
                           file: reader.info.root.path, hint: "mark the countable classes \"thing\": true")
        }
        let semantic = try SemanticField(config: SemanticField.Config(grid: grid), vocabulary: vocabulary,
                                         seed: seed &+ 1)
        let instance = try InstanceField(config: InstanceField.Config(grid: grid), seed: seed &+ 2)
        let trainer = try PanopticTrainer(config: config(), geometry: geometry, semantic: semantic, instance: instance)
        for f in training { trainer.add(f) }
        let skipped = trainer.frames.reduce(0) { $0 + $1.skippedPixels }
        if skipped > 0 { log.warning("panoptic: \(skipped) mask pixels skipped (id without a segment, or class not in the vocabulary)") }
        let progress = Progress(label, total: iterations)
        trainer.train(iterations: iterations, seconds: seconds, reportEvery: 25) { step, s in
            progress.update(step, extra: String(format: "%@ L_sem %.3f L_ins %.3f L_c %.3f L_pan %.3f tokens %d",
                                                trainer.stage, s.semanticLoss, s.instanceLoss, s.classLoss,
                                                s.panopticLoss, s.tokens))
        }
        return trainer
    }

    /// Renders the held-out views' labels (sampled around their measured depth) into `directory` as
    /// `NNNNNN-semantic.png` / `NNNNNN-instance.png` (16-bit ids, the format `pano eval panoptic` reads) and
    /// `NNNNNN-panoptic-color.png` (legend colours, for viewing).
    static func renderHeldOut(_ t: PanopticTrainer, frames: [Frame], legend: PanopticLegend, into directory: URL) throws {
        try Files.createDirectory(directory)
        for f in frames {
            let l = t.renderLabels(T_W_C: f.T_W_C, intrinsics: f.intrinsics, depth: f.depth.data)
            let w = f.depth.width, h = f.depth.height
            let urls = PanopticEvaluation.predictionURLs(directory, frame: f.index)
            let sem = Gray16Image(width: w, height: h, channels: 1, data: l.semantic.map { UInt16(clamping: $0) })
            let ins = Gray16Image(width: w, height: h, channels: 1, data: l.instance.map { UInt16(clamping: $0) })
            try Files.writeAtomically(try PNGCodec.encodeGray16(sem), to: urls.semantic)
            try Files.writeAtomically(try PNGCodec.encodeGray16(ins), to: urls.instance)
            let color = legend.colorImage(l, width: w, height: h)
            try Files.writeAtomically(try PNGCodec.encodeRGB8(color),
                                      to: directory.appendingPathComponent("\(frameName(f.index))-panoptic-color.png"))
        }
    }
}
