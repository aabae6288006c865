import Foundation

/// Slow, obviously-correct twin of `Kernels.TokenAttention` in Double: builds Sigma = R diag(exp(l))^2 R^T explicitly,
/// inverts it by cofactors, and evaluates each equation literally. Same layouts and parameterisation (quaternion
/// (w, x, y, z) normalised here, a zero quaternion read as the identity).
public enum ReferenceTokenAttention {
    /// Token parameters in Double (flat, row-major: features N x D, means N x 3, rotations N x 4, logScales N x 3).
    public struct Tokens: Sendable {
        public var features: [Double]
        public var means: [Double]
        public var rotations: [Double]
        public var logScales: [Double]
        public var count: Int
        public init(features: [Double], means: [Double], rotations: [Double], logScales: [Double], count: Int) {
            self.features = features; self.means = means; self.rotations = rotations; self.logScales = logScales
            self.count = count
        }
    }

    /// S, G and A, each K x N row-major.
    public struct Output: Sendable {
        public var similarity: [Double]
        public var spatial: [Double]
        public var attention: [Double]
    }

    /// Rotation matrix [row][col] of the normalised quaternion (w, x, y, z).
    public static func rotationMatrix(_ q: [Double]) -> [[Double]] {
        let n = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]).squareRoot()
        if !(n > 0) { return [[1, 0, 0], [0, 1, 0], [0, 0, 1]] }
        let w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n
        return [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    }

    /// Sigma = R Lambda Lambda^T R^T with Lambda = diag(exp(l)).
    public static func covariance(rotation q: [Double], logScales l: [Double]) -> [[Double]] {
        let R = rotationMatrix(q)
        var s = [[Double]](repeating: [0, 0, 0], count: 3)
        for r in 0..<3 {
            for c in 0..<3 {
                var v = 0.0
                for a in 0..<3 { v += R[r][a] * exp(2 * l[a]) * R[c][a] }
                s[r][c] = v
            }
        }
        return s
    }

    /// Inverse of a 3x3 matrix by cofactors.
    public static func inverse(_ m: [[Double]]) -> [[Double]] {
        let c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1]
        let c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2]
        let c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0]
        let det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02
        let inv = [[c00, m[0][2] * m[2][1] - m[0][1] * m[2][2], m[0][1] * m[1][2] - m[0][2] * m[1][1]],
                   [c01, m[0][0] * m[2][2] - m[0][2] * m[2][0], m[0][2] * m[1][0] - m[0][0] * m[1][2]],
                   [c02, m[0][1] * m[2][0] - m[0][0] * m[2][1], m[0][0] * m[1][1] - m[0][1] * m[1][0]]]
        return inv.map { $0.map { $0 / det } }
    }

    /// Forward: S_ik = sigmoid(f_i . f_k), G_ik = exp(-0.5 d^T Sigma_i^-1 d) (d = p_k - mu_i), A = softmax_i(beta S G).
    public static func forward(pointFeatures: [Double], positions: [Double], count K: Int, featureWidth D: Int,
                               tokens t: Tokens, sharpness beta: Double = 1) -> Output {
        let N = t.count
        var S = [Double](repeating: 0, count: K * N), G = S, A = S
        let inverses = (0..<N).map { i in
            inverse(covariance(rotation: Array(t.rotations[(4 * i)..<(4 * i + 4)]),
                               logScales: Array(t.logScales[(3 * i)..<(3 * i + 3)])))
        }
        for k in 0..<K {
            for i in 0..<N {
                var dot = 0.0
                for c in 0..<D { dot += t.features[i * D + c] * pointFeatures[k * D + c] }
                S[k * N + i] = 1 / (1 + exp(-dot))
                let d = (0..<3).map { positions[3 * k + $0] - t.means[3 * i + $0] }
                var q = 0.0
                for r in 0..<3 { for c in 0..<3 { q += d[r] * inverses[i][r][c] * d[c] } }
                G[k * N + i] = exp(-0.5 * q)
            }
            let x = (0..<N).map { beta * S[k * N + $0] * G[k * N + $0] }
            let mx = x.max() ?? 0
            let e = x.map { exp($0 - mx) }
            let sum = e.reduce(0, +)
            for i in 0..<N { A[k * N + i] = e[i] / sum }
        }
        return Output(similarity: S, spatial: G, attention: A)
    }

    /// Scalar test loss L = sum_k sum_i c_ki A_ki (c is K x N like A).
    public static func loss(weights c: [Double], pointFeatures: [Double], positions: [Double], count K: Int,
                            featureWidth D: Int, tokens: Tokens, sharpness: Double = 1) -> Double {
        let A = forward(pointFeatures: pointFeatures, positions: positions, count: K, featureWidth: D,
                        tokens: tokens, sharpness: sharpness).attention
        var l = 0.0
        for j in 0..<A.count { l += c[j] * A[j] }
        return l
    }
}
