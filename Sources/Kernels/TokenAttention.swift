#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import MapCore

/// Gaussian-modulated token attention of the instance field (PanopticRecon++ Sec. IV-B, DESIGN.md "Instances").
///
/// For K points (feature f_k, D floats; position p_k) and N tokens (feature f_i, mean mu_i, quaternion q_i = (w, x, y, z),
/// log-scales l_i):
///   S_ik = sigmoid(f_i . f_k)                                         // feature similarity, Eq. (7)
///   G_ik = N(p_k | mu_i, Sigma_i) / N(mu_i | mu_i, Sigma_i)           // spatial prior, Eq. (8)
///        = exp(-0.5 |u|^2),  u = diag(exp(-l_i)) R_i^T (p_k - mu_i),  Sigma_i = R_i diag(exp(l_i))^2 R_i^T
///   A_ik = exp(beta S_ik G_ik) / sum_j exp(beta S_jk G_jk)            // attention map, Eq. (6), softmax over tokens
/// beta (`sharpness`, default 1) is not in the paper's Eq. (6), which is beta = 1. Since S G lies in [0, 1], with
/// beta = 1 no token can take more than e / (e + N - 1) of a point (0.13 for N = 20), so rendered token masks can
/// never approach the 0/1 targets of L_ins; the trainer uses a larger beta (see `InstanceTrainerConfig`).
/// R_i is the rotation of q_i / |q_i| (the normalisation is part of the function: gradients flow through it; a zero
/// quaternion is read as the identity with zero gradient).
///
/// Layouts (row-major, Float): point features K x D, positions K x 3, token features N x D, means N x 3,
/// rotations N x 4, log-scales N x 3, attention / S / G K x N (row k = point k).
///
/// Work is done in fixed blocks of `blockSize` points; threads take contiguous runs of blocks
/// (`Parallel.forEachChunk`), and per-block token-gradient partials are summed in block order. So every output is
/// bit-identical for any thread count (not only for a given one).
public enum TokenAttention {
    /// Token parameters (borrowed pointers; the caller keeps them alive for the call).
    public struct Tokens {
        public var features: UnsafePointer<Float>   // N x D
        public var means: UnsafePointer<Float>      // N x 3
        public var rotations: UnsafePointer<Float>  // N x 4, (w, x, y, z), need not be normalised
        public var logScales: UnsafePointer<Float>  // N x 3
        public var count: Int                       // N
        public init(features: UnsafePointer<Float>, means: UnsafePointer<Float>, rotations: UnsafePointer<Float>,
                    logScales: UnsafePointer<Float>, count: Int) {
            self.features = features; self.means = means; self.rotations = rotations; self.logScales = logScales
            self.count = count
        }
    }

    /// Token gradients, accumulated (+=) by `backward`. Same shapes as `Tokens`.
    public struct TokenGradients {
        public var features: UnsafeMutablePointer<Float>
        public var means: UnsafeMutablePointer<Float>
        public var rotations: UnsafeMutablePointer<Float>
        public var logScales: UnsafeMutablePointer<Float>
        public init(features: UnsafeMutablePointer<Float>, means: UnsafeMutablePointer<Float>,
                    rotations: UnsafeMutablePointer<Float>, logScales: UnsafeMutablePointer<Float>) {
            self.features = features; self.means = means; self.rotations = rotations; self.logScales = logScales
        }
    }

    /// Points per block (the unit of work and of the deterministic reduction).
    public static let blockSize = 256

    /// Whether the feature products go through `BLAS.sgemm` (true) or plain loops. Measured with
    /// `TokenAttentionBenchmark` (65536 points, 32 tokens, width 16, release, 1 thread, loaded 2-core machine):
    /// sgemm 2.2e6 / 1.2e6-1.5e6 points/s (forward / forward+backward), loops 1.7e6 / 1.0e6. The per-pair exps
    /// (sigmoid, Gaussian, softmax) dominate either way; sgemm wins by ~25 %.
    /// Call with `BLAS.threads == 1` (as `pano` sets it) when `threads` > 1: the blocks already run concurrently.
    public static let defaultUseBLAS = true

    /// Floats of scratch `backward` needs: one gradient-of-logits block per thread, and the per-block token partials.
    public static func backwardScratchCount(points K: Int, tokens N: Int, featureWidth D: Int, threads: Int) -> Int {
        let blocks = (K + blockSize - 1) / blockSize
        return max(1, threads) * blockSize * N + blocks * N * partialWidth(D)
    }

    /// Per token and block: dL/df_i (D), dL/dM (9, M = diag(exp(-l)) R^T), sum of dL/du (3).
    @inlinable static func partialWidth(_ D: Int) -> Int { D + 12 }

    /// Per-token geometry for the hot loop: M = diag(exp(-l)) R^T (9, row-major) then mu (3).
    static let geometryWidth = 12

    /// attention (K x N) = A. If `savedS` / `savedG` are given (K x N each) they receive S and G for `backward`.
    public static func forward(pointFeatures: UnsafePointer<Float>, positions: UnsafePointer<Float>, count K: Int,
                               featureWidth D: Int, tokens: Tokens, attention: UnsafeMutablePointer<Float>,
                               savedS: UnsafeMutablePointer<Float>?, savedG: UnsafeMutablePointer<Float>?,
                               sharpness: Float = 1, threads: Int, useBLAS: Bool = defaultUseBLAS) {
        let N = tokens.count
        precondition(K >= 0 && N >= 0 && D >= 1, "TokenAttention.forward: bad sizes K=\(K) N=\(N) D=\(D)")
        if K == 0 || N == 0 { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: N * geometryWidth) { geo in
            let geometry = geo.baseAddress!
            prepareGeometry(tokens, geometry)
            let blocks = (K + blockSize - 1) / blockSize
            Parallel.forEachChunk(count: blocks, threads: threads) { _, blockRange in
                for b in blockRange {
                    let lo = b * blockSize, hi = min(K, lo + blockSize)
                    forwardBlock(pointFeatures, positions, lo, hi, D, tokens, geometry, attention, savedS, savedG,
                                 sharpness, useBLAS)
                }
            }
        }
    }

    /// From dL/dA (K x N) to dL/dpointFeatures (K x D, written) and the token gradients (accumulated +=).
    /// `attention`, `savedS`, `savedG` are the forward's outputs for the same inputs; `scratch` holds
    /// `backwardScratchCount(points:tokens:featureWidth:threads:)` floats.
    public static func backward(pointFeatures: UnsafePointer<Float>, positions: UnsafePointer<Float>, count K: Int,
                                featureWidth D: Int, tokens: Tokens, attention: UnsafePointer<Float>,
                                savedS: UnsafePointer<Float>, savedG: UnsafePointer<Float>,
                                gradAttention: UnsafePointer<Float>, gradPointFeatures: UnsafeMutablePointer<Float>,
                                gradTokens: TokenGradients, scratch: UnsafeMutablePointer<Float>,
                                sharpness: Float = 1, threads: Int, useBLAS: Bool = defaultUseBLAS) {
        let N = tokens.count
        precondition(K >= 0 && N >= 0 && D >= 1, "TokenAttention.backward: bad sizes K=\(K) N=\(N) D=\(D)")
        if K == 0 { return }
        if N == 0 {
            gradPointFeatures.update(repeating: 0, count: K * D)
            return
        }
        let T = max(1, threads)
        let W = partialWidth(D)
        let blocks = (K + blockSize - 1) / blockSize
        let partials = scratch + T * blockSize * N
        withUnsafeTemporaryAllocation(of: Float.self, capacity: N * geometryWidth) { geo in
            let geometry = geo.baseAddress!
            prepareGeometry(tokens, geometry)
            Parallel.forEachChunk(count: blocks, threads: T) { chunk, blockRange in
                let gz = scratch + chunk * blockSize * N
                for b in blockRange {
                    let lo = b * blockSize, hi = min(K, lo + blockSize)
                    backwardBlock(pointFeatures, positions, lo, hi, D, tokens, geometry, attention, savedS, savedG,
                                  gradAttention, gradPointFeatures, gz, partials + b * N * W, sharpness, useBLAS)
                }
            }
        }
        reducePartials(partials, blocks: blocks, D: D, tokens: tokens, gradTokens: gradTokens)
    }

    // MARK: - Blocks

    /// Forward for points lo..<hi.
    @inline(__always)
    static func forwardBlock(_ pf: UnsafePointer<Float>, _ pos: UnsafePointer<Float>, _ lo: Int, _ hi: Int, _ D: Int,
                             _ tokens: Tokens, _ geo: UnsafePointer<Float>, _ att: UnsafeMutablePointer<Float>,
                             _ savedS: UnsafeMutablePointer<Float>?, _ savedG: UnsafeMutablePointer<Float>?,
                             _ beta: Float, _ useBLAS: Bool) {
        let N = tokens.count
        let tf = tokens.features
        // Logits f_i . f_k for the block: (rows x D) * (D x N), written into the attention rows.
        if useBLAS {
            BLAS.sgemm(transB: true, m: hi - lo, n: N, k: D, a: pf + lo * D, lda: D, b: tf, ldb: D, beta: 0,
                       c: att + lo * N, ldc: N)
        } else {
            for k in lo..<hi {
                let fk = pf + k * D, row = att + k * N
                for i in 0..<N {
                    let fi = tf + i * D
                    var acc: Float = 0
                    for c in 0..<D { acc += fi[c] * fk[c] }
                    row[i] = acc
                }
            }
        }
        for k in lo..<hi {
            let row = att + k * N
            let px = pos[3 * k], py = pos[3 * k + 1], pz = pos[3 * k + 2]
            var mx = -Float.infinity
            for i in 0..<N {
                let s = 1 / (1 + expf(-row[i]))                     // S = sigmoid(f_i . f_k)
                let g = gaussian(geo + i * geometryWidth, px, py, pz) // G = exp(-0.5 d^T Sigma^-1 d)
                let x = beta * s * g
                row[i] = x
                if let savedS { savedS[k * N + i] = s }
                if let savedG { savedG[k * N + i] = g }
                mx = max(mx, x)
            }
            // Numerically stable softmax over tokens.
            var sum: Float = 0
            for i in 0..<N {
                let e = expf(row[i] - mx)
                row[i] = e
                sum += e
            }
            let inv = 1 / sum
            for i in 0..<N { row[i] *= inv }
        }
    }

    /// G for one token (geometry record `g`) and one point.
    @inline(__always)
    static func gaussian(_ g: UnsafePointer<Float>, _ px: Float, _ py: Float, _ pz: Float) -> Float {
        let dx = px - g[9], dy = py - g[10], dz = pz - g[11]
        let u0 = g[0] * dx + g[1] * dy + g[2] * dz
        let u1 = g[3] * dx + g[4] * dy + g[5] * dz
        let u2 = g[6] * dx + g[7] * dy + g[8] * dz
        return expf(-0.5 * (u0 * u0 + u1 * u1 + u2 * u2))
    }

    /// Backward for points lo..<hi: writes dL/df_k for the block, and the block's token partials (overwritten).
    @inline(__always)
    static func backwardBlock(_ pf: UnsafePointer<Float>, _ pos: UnsafePointer<Float>, _ lo: Int, _ hi: Int,
                              _ D: Int, _ tokens: Tokens, _ geo: UnsafePointer<Float>, _ att: UnsafePointer<Float>,
                              _ sS: UnsafePointer<Float>, _ sG: UnsafePointer<Float>, _ gA: UnsafePointer<Float>,
                              _ gpf: UnsafeMutablePointer<Float>, _ gz: UnsafeMutablePointer<Float>,
                              _ part: UnsafeMutablePointer<Float>, _ beta: Float, _ useBLAS: Bool) {
        let N = tokens.count
        let W = partialWidth(D)
        let tf = tokens.features
        part.update(repeating: 0, count: N * W)
        for k in lo..<hi {
            let r = k - lo
            let a = att + k * N, ga = gA + k * N, sr = sS + k * N, gr = sG + k * N, gzr = gz + r * N
            var dot: Float = 0
            for i in 0..<N { dot += a[i] * ga[i] }
            let px = pos[3 * k], py = pos[3 * k + 1], pz = pos[3 * k + 2]
            for i in 0..<N {
                let gx = beta * a[i] * (ga[i] - dot)   // softmax backward: dL/d(S G)
                let s = sr[i], g = gr[i]
                gzr[i] = gx * g * s * (1 - s)          // dL/d(f_i . f_k)
                // dL/du = dL/dG * dG/du = (gx s) * (-G u)
                let c = -gx * s * g
                if c == 0 { continue }
                let m = geo + i * geometryWidth
                let dx = px - m[9], dy = py - m[10], dz = pz - m[11]
                let gu0 = c * (m[0] * dx + m[1] * dy + m[2] * dz)
                let gu1 = c * (m[3] * dx + m[4] * dy + m[5] * dz)
                let gu2 = c * (m[6] * dx + m[7] * dy + m[8] * dz)
                let p = part + i * W + D
                // dL/dM += gu d^T (u = M d), and sum of gu (for dL/dmu = -M^T sum gu).
                p[0] += gu0 * dx; p[1] += gu0 * dy; p[2] += gu0 * dz
                p[3] += gu1 * dx; p[4] += gu1 * dy; p[5] += gu1 * dz
                p[6] += gu2 * dx; p[7] += gu2 * dy; p[8] += gu2 * dz
                p[9] += gu0; p[10] += gu1; p[11] += gu2
            }
        }
        let rows = hi - lo
        if useBLAS {
            // dL/df_k = gz (rows x N) * F_tok (N x D); token partial dL/df_i = gz^T (N x rows) * F_pts (rows x D).
            BLAS.sgemm(m: rows, n: D, k: N, a: gz, lda: N, b: tf, ldb: D, beta: 0, c: gpf + lo * D, ldc: D)
            BLAS.sgemm(transA: true, m: N, n: D, k: rows, a: gz, lda: N, b: pf + lo * D, ldb: D, beta: 0,
                       c: part, ldc: W)
        } else {
            for r in 0..<rows {
                let k = lo + r
                let gzr = gz + r * N, out = gpf + k * D, fk = pf + k * D
                for c in 0..<D { out[c] = 0 }
                for i in 0..<N {
                    let w = gzr[i]
                    let fi = tf + i * D, pi = part + i * W
                    for c in 0..<D {
                        out[c] += w * fi[c]
                        pi[c] += w * fk[c]
                    }
                }
            }
        }
    }

    // MARK: - Token geometry

    /// Writes each token's M = diag(exp(-l)) R(q/|q|)^T and mu (`geometryWidth` floats per token).
    static func prepareGeometry(_ t: Tokens, _ out: UnsafeMutablePointer<Float>) {
        for i in 0..<t.count {
            let (R, _, _) = rotation(t.rotations + 4 * i)
            let o = out + i * geometryWidth
            for a in 0..<3 {
                let s = exp(-Double(t.logScales[3 * i + a]))
                for b in 0..<3 { o[3 * a + b] = Float(s * R[3 * b + a]) }
            }
            for b in 0..<3 { o[9 + b] = t.means[3 * i + b] }
        }
    }

    /// Rotation matrix (row-major) of q/|q|, the normalised quaternion (w, x, y, z), and |q| (0 = identity used).
    static func rotation(_ q: UnsafePointer<Float>) -> ([Double], [Double], Double) {
        var w = Double(q[0]), x = Double(q[1]), y = Double(q[2]), z = Double(q[3])
        let n = (w * w + x * x + y * y + z * z).squareRoot()
        if !(n > 0) || !n.isFinite { return ([1, 0, 0, 0, 1, 0, 0, 0, 1], [1, 0, 0, 0], 0) }
        w /= n; x /= n; y /= n; z /= n
        let R = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
        return (R, [w, x, y, z], n)
    }

    /// Sums the per-block partials in block order (Double) and turns them into token gradients (+=).
    static func reducePartials(_ partials: UnsafePointer<Float>, blocks: Int, D: Int, tokens: Tokens,
                               gradTokens: TokenGradients) {
        let N = tokens.count, W = partialWidth(D)
        withUnsafeTemporaryAllocation(of: Double.self, capacity: W) { accBuf in
            let acc = accBuf.baseAddress!
            for i in 0..<N {
                for c in 0..<W { acc[c] = 0 }
                for b in 0..<blocks {
                    let p = partials + (b * N + i) * W
                    for c in 0..<W { acc[c] += Double(p[c]) }
                }
                for c in 0..<D { gradTokens.features[i * D + c] += Float(acc[c]) }
                let gM = acc + D, sgu = acc + D + 9
                let (R, qh, qn) = rotation(tokens.rotations + 4 * i)
                var s = [Double](repeating: 0, count: 3)
                for a in 0..<3 { s[a] = exp(-Double(tokens.logScales[3 * i + a])) }
                // mu: u = M (p - mu)  =>  dL/dmu = -M^T sum gu, M_ab = s_a R_ba.
                for b in 0..<3 {
                    var v = 0.0
                    for a in 0..<3 { v += s[a] * R[3 * b + a] * sgu[a] }
                    gradTokens.means[3 * i + b] -= Float(v)
                }
                // log-scales: dL/ds_a = sum_b gM_ab R_ba, s_a = exp(-l_a).
                var gR = [Double](repeating: 0, count: 9)
                for a in 0..<3 {
                    var gs = 0.0
                    for b in 0..<3 {
                        gs += gM[3 * a + b] * R[3 * b + a]
                        gR[3 * b + a] = gM[3 * a + b] * s[a]
                    }
                    gradTokens.logScales[3 * i + a] += Float(-s[a] * gs)
                }
                // Rotation: dL/dq_hat = sum over R entries of dL/dR * dR/dq_hat, then through q_hat = q / |q|.
                if qn > 0 {
                    let w = qh[0], x = qh[1], y = qh[2], z = qh[3]
                    let dw = [0, -2 * z, 2 * y, 2 * z, 0, -2 * x, -2 * y, 2 * x, 0]
                    let dx = [0, 2 * y, 2 * z, 2 * y, -4 * x, -2 * w, 2 * z, 2 * w, -4 * x]
                    let dy = [-4 * y, 2 * x, 2 * w, 2 * x, 0, 2 * z, -2 * w, 2 * z, -4 * y]
                    let dz = [-4 * z, -2 * w, 2 * x, 2 * w, -4 * z, 2 * y, 2 * x, 2 * y, 0]
                    var gq = [0.0, 0, 0, 0]
                    for e in 0..<9 {
                        gq[0] += gR[e] * dw[e]; gq[1] += gR[e] * dx[e]
                        gq[2] += gR[e] * dy[e]; gq[3] += gR[e] * dz[e]
                    }
                    let proj = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * z
                    for c in 0..<4 { gradTokens.rotations[4 * i + c] += Float((gq[c] - qh[c] * proj) / qn) }
                }
            }
        }
    }
}

/// Throughput of `TokenAttention` on random data: points uniform in a 4 m box, tokens spread over it with scales
/// 0.3..1 m, features uniform in [-0.5, 0.5].
public enum TokenAttentionBenchmark {
    public struct Result: Sendable {
        public var forwardPointsPerSecond: Double
        public var forwardBackwardPointsPerSecond: Double
    }

    /// Best of `rounds` timed repetitions of forward alone and of forward + backward.
    public static func run(points: Int = 65536, tokens: Int = 32, width: Int = 16, threads: Int,
                           useBLAS: Bool = TokenAttention.defaultUseBLAS, rounds: Int = 5) -> Result {
        let K = max(1, points), N = max(1, tokens), D = max(1, width)
        // As in `pano` (Pano.swift): the kernel splits points over threads itself, so OpenBLAS runs single-threaded
        // inside each block's GEMM (a threaded OpenBLAS under our threads only oversubscribes the cores).
        let savedBLASThreads = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = savedBLASThreads }
        var rng = SeededRNG(seed: 77)
        var owned: [UnsafeMutablePointer<Float>] = []
        defer { for p in owned { p.deallocate() } }
        func buffer(_ n: Int, _ lo: Double = 0, _ hi: Double = 0) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            for j in 0..<n { p[j] = lo == hi ? lo == 0 ? 0 : Float(lo) : Float(rng.uniform(lo, hi)) }
            owned.append(p)
            return p
        }
        let pf = buffer(K * D, -0.5, 0.5), pos = buffer(K * 3, 0, 4)
        let tf = buffer(N * D, -0.5, 0.5), mu = buffer(N * 3, 0, 4), rot = buffer(N * 4, -1, 1)
        let ls = buffer(N * 3, log(0.3), 0), gA = buffer(K * N, -1, 1)
        let att = buffer(K * N), S = buffer(K * N), G = buffer(K * N), gpf = buffer(K * D)
        let scratch = buffer(TokenAttention.backwardScratchCount(points: K, tokens: N, featureWidth: D,
                                                                 threads: threads))
        let toks = TokenAttention.Tokens(features: tf, means: mu, rotations: rot, logScales: ls, count: N)
        let grads = TokenAttention.TokenGradients(features: buffer(N * D), means: buffer(N * 3),
                                                  rotations: buffer(N * 4), logScales: buffer(N * 3))
        func fwd() {
            TokenAttention.forward(pointFeatures: pf, positions: pos, count: K, featureWidth: D, tokens: toks,
                                   attention: att, savedS: S, savedG: G, threads: threads, useBLAS: useBLAS)
        }
        func bwd() {
            TokenAttention.backward(pointFeatures: pf, positions: pos, count: K, featureWidth: D, tokens: toks,
                                    attention: att, savedS: S, savedG: G, gradAttention: gA, gradPointFeatures: gpf,
                                    gradTokens: grads, scratch: scratch, threads: threads, useBLAS: useBLAS)
        }
        var bestF = Double.infinity, bestFB = Double.infinity
        fwd(); bwd() // warm-up
        for _ in 0..<max(1, rounds) {
            let t0 = now()
            fwd()
            let t1 = now()
            fwd(); bwd()
            let t2 = now()
            bestF = min(bestF, t1 - t0); bestFB = min(bestFB, t2 - t1)
        }
        return Result(forwardPointsPerSecond: Double(K) / bestF, forwardBackwardPointsPerSecond: Double(K) / bestFB)
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}
