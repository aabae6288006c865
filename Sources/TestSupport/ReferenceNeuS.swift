import Foundation

/// Slow, obviously-correct NeuS rendering in Double: the equations as written, with Phi evaluated directly.
public enum ReferenceNeuS {
    public static func weights(sdf: [Double], xi: Double) -> [Double] {
        let phi = sdf.map { 1 / (1 + exp(-xi * $0)) }
        var w = [Double](repeating: 0, count: sdf.count)
        var t = 1.0
        for j in 0..<(sdf.count - 1) {
            let alpha = max((phi[j] - phi[j + 1]) / phi[j], 0)
            w[j] = t * alpha
            t *= 1 - alpha
        }
        return w
    }
}
