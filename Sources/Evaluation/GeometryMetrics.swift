import Foundation
import Kernels
import MapCore

/// Geometry metrics of a reconstruction against ground-truth surface samples (distances in metres, printed in cm).
public struct GeometryMetrics: Sendable, Equatable, Codable {
    /// Mean distance from reconstructed samples to the nearest GT sample.
    public var accuracy: Double
    /// Mean distance from GT samples to the nearest reconstructed sample.
    public var completion: Double
    /// (accuracy + completion) / 2.
    public var chamferL1: Double
    /// Share of reconstructed samples within `threshold` of GT, of GT samples within `threshold` of the reconstruction.
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var threshold: Double

    public init(accuracy: Double, completion: Double, precision: Double, recall: Double, threshold: Double) {
        self.accuracy = accuracy; self.completion = completion; self.chamferL1 = (accuracy + completion) / 2
        self.precision = precision; self.recall = recall; self.threshold = threshold
        self.f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
    }
}

extension GeometryMetrics {
    /// Accuracy, completion, Chamfer-L1 and precision / recall / F1 at `threshold` (metres) between two point sets:
    /// exact nearest-neighbour distances (KD-tree) in both directions, on `threads` threads. A distance counts as
    /// within the threshold when it is strictly less than it. Throws when either set is empty.
    public static func compute(reconstruction: [SIMD3<Float>], groundTruth: [SIMD3<Float>], threshold: Double = 0.05,
                               threads: Int = Parallel.defaultThreads) throws(MapError) -> GeometryMetrics {
        guard !reconstruction.isEmpty else {
            throw MapError(.badArgument, "the reconstruction has no points to evaluate",
                           hint: "check the mesh file, and that culling did not remove everything")
        }
        guard !groundTruth.isEmpty else {
            throw MapError(.badArgument, "the ground truth has no points to evaluate",
                           hint: "check the ground-truth file, and that culling did not remove everything")
        }
        guard threshold.isFinite, threshold > 0 else {
            throw MapError(.badArgument, "threshold \(threshold) m is not positive", hint: "give e.g. 0.05 (5 cm)")
        }
        let gtTree = PointKDTree(points: groundTruth), recTree = PointKDTree(points: reconstruction)
        let recToGT = gtTree.nearestDistances(reconstruction, threads: threads)
        let gtToRec = recTree.nearestDistances(groundTruth, threads: threads)
        return from(reconstructionToGT: recToGT, groundTruthToReconstruction: gtToRec, threshold: threshold)
    }

    /// The metrics from the two lists of nearest distances (metres); both must be non-empty.
    public static func from(reconstructionToGT: [Float], groundTruthToReconstruction: [Float], threshold: Double)
        -> GeometryMetrics {
        func summary(_ d: [Float]) -> (mean: Double, within: Double) {
            var sum = 0.0, within = 0
            for x in d { sum += Double(x); if Double(x) < threshold { within += 1 } }
            return (sum / Double(max(1, d.count)), Double(within) / Double(max(1, d.count)))
        }
        let acc = summary(reconstructionToGT), comp = summary(groundTruthToReconstruction)
        return GeometryMetrics(accuracy: acc.mean, completion: comp.mean, precision: acc.within, recall: comp.within,
                               threshold: threshold)
    }

    /// Lines for a terminal: distances in cm, ratios in %.
    public var text: String {
        func cm(_ m: Double) -> String { String(format: "%.3f cm", m * 100) }
        func pct(_ r: Double) -> String { String(format: "%.2f %%", r * 100) }
        return """
            Accuracy    \(cm(accuracy))
            Completion  \(cm(completion))
            Chamfer-L1  \(cm(chamferL1))
            Precision   \(pct(precision))   (@ \(String(format: "%g", threshold * 100)) cm)
            Recall      \(pct(recall))
            F1          \(pct(f1))
            """
    }
}
