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
