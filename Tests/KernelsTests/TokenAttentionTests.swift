import Foundation
import Kernels
import MapCore
import TestSupport
import XCTest

final class TokenAttentionTests: XCTestCase {
    /// One random problem in Float (the kernel's precision).
    struct Case {
        var K: Int, N: Int, D: Int
        var pointFeatures: [Float], positions: [Float]
        var features: [Float], means: [Float], rotations: [Float], logScales: [Float]

        var reference: ReferenceTokenAttention.Tokens {
            .init(features: features.map(Double.init), means: means.map(Double.init),
                  rotations: rotations.map(Double.init), logScales: logScales.map(Double.init), count: N)
        }
    }

    /// Points in [-1.5, 1.5]^3, token means in [-1, 1]^3, scales 0.5..1.5 (so G is neither ~0 nor ~1 everywhere),
    /// features uniform in [-featureScale, featureScale], quaternions uniform in [-1, 1]^4 (not normalised).
    static func makeCase(seed: UInt64, K: Int, N: Int, D: Int, featureScale: Double = 0.6) -> Case {
        var rng = SeededRNG(seed: seed)
        func r(_ n: Int, _ lo: Double, _ hi: Double) -> [Float] { (0..<n).map { _ in Float(rng.uniform(lo, hi)) } }
        return Case(K: K, N: N, D: D, pointFeatures: r(K * D, -featureScale, featureScale),
                    positions: r(K * 3, -1.5, 1.5), features: r(N * D, -featureScale, featureScale),
                    means: r(N * 3, -1, 1), rotations: r(N * 4, -1, 1), logScales: r(N * 3, log(0.5), log(1.5)))
    }

    struct Run {
        var attention: [Float], S: [Float], G: [Float]
        var gradPointFeatures: [Float]
        var gradFeatures: [Float], gradMeans: [Float], gradRotations: [Float], gradLogScales: [Float]
    }

    /// Forward, then backward of dL/dA = gradAttention (if given), on the kernel. Token gradients start from `start`
    /// (accumulation) or zero.
    static func run(_ c: Case, gradAttention: [Float]?, threads: Int, useBLAS: Bool,
                    start: Float = 0, sharpness: Float = 1) -> Run {
        let K = c.K, N = c.N, D = c.D
        var out = Run(attention: .init(repeating: .nan, count: K * N), S: .init(repeating: .nan, count: K * N),
                      G: .init(repeating: .nan, count: K * N), gradPointFeatures: .init(repeating: .nan, count: K * D),
                      gradFeatures: .init(repeating: start, count: N * D), gradMeans: .init(repeating: start, count: N * 3),
                      gradRotations: .init(repeating: start, count: N * 4),
                      gradLogScales: .init(repeating: start, count: N * 3))
        var scratch = [Float](repeating: .nan, count: TokenAttention.backwardScratchCount(points: K, tokens: N,
                                                                                          featureWidth: D,
                                                                                          threads: threads))
        c.pointFeatures.withUnsafeBufferPointer { pf in c.positions.withUnsafeBufferPointer { pos in
        c.features.withUnsafeBufferPointer { tf in c.means.withUnsafeBufferPointer { mu in
        c.rotations.withUnsafeBufferPointer { rot in c.logScales.withUnsafeBufferPointer { ls in
            let tokens = TokenAttention.Tokens(features: tf.baseAddress!, means: mu.baseAddress!,
                                               rotations: rot.baseAddress!, logScales: ls.baseAddress!, count: N)
            out.attention.withUnsafeMutableBufferPointer { a in out.S.withUnsafeMutableBufferPointer { s in
            out.G.withUnsafeMutableBufferPointer { g in
                TokenAttention.forward(pointFeatures: pf.baseAddress!, positions: pos.baseAddress!, count: K,
                                       featureWidth: D, tokens: tokens, attention: a.baseAddress!,
                                       savedS: s.baseAddress!, savedG: g.baseAddress!, sharpness: sharpness,
                                       threads: threads, useBLAS: useBLAS)
                guard let gradAttention else { return }
                gradAttention.withUnsafeBufferPointer { ga in scratch.withUnsafeMutableBufferPointer { sc in
                out.gradPointFeatures.withUnsafeMutableBufferPointer { gpf in
                out.gradFeatures.withUnsafeMutableBufferPointer { gtf in out.gradMeans.withUnsafeMutableBufferPointer { gmu in
                out.gradRotations.withUnsafeMutableBufferPointer { grot in
                out.gradLogScales.withUnsafeMutableBufferPointer { gls in
                    let grads = TokenAttention.TokenGradients(features: gtf.baseAddress!, means: gmu.baseAddress!,
                                                              rotations: grot.baseAddress!,
                                                              logScales: gls.baseAddress!)
                    TokenAttention.backward(pointFeatures: pf.baseAddress!, positions: pos.baseAddress!, count: K,
                                            featureWidth: D, tokens: tokens, attention: a.baseAddress!,
                                            savedS: s.baseAddress!, savedG: g.baseAddress!,
                                            gradAttention: ga.baseAddress!, gradPointFeatures: gpf.baseAddress!,
                                            gradTokens: grads, scratch: sc.baseAddress!, sharpness: sharpness,
                                            threads: threads, useBLAS: useBLAS)
                } } } } } } }
            } } }
        } } } } } }
        return out
    }

    /// |got - want| <= tol * (|want| + rms(want)) + abs elementwise.
    static func assertClose(_ got: [Float], _ want: [Double], _ tol: Double, abs: Double = 1e-7, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let rms = (want.reduce(0) { $0 + $1 * $1 } / Double(max(1, want.count))).squareRoot()
        var worst = 0.0, at = -1
        for j in 0..<min(got.count, want.count) {
            let err = Swift.abs(Double(got[j]) - want[j]) - (tol * (Swift.abs(want[j]) + rms) + abs)
            if !(err <= worst) { worst = err.isNaN ? .infinity : err; at = j }
        }
        if at >= 0 {
            XCTFail("\(what): element \(at) got \(got[at]) want \(want[at]) (rms \(rms))", file: file, line: line)
        }
    }

    func testForwardMatchesReference() {
        var rng = SeededRNG(seed: 1)
        for trial in 0..<24 {
            let K = Int(rng.next() % 50) + 1, N = Int(rng.next() % 8) + 1, D = Int(rng.next() % 13) + 4
            let c = Self.makeCase(seed: 100 + UInt64(trial), K: K, N: N, D: D)
            let beta: Float = trial % 2 == 0 ? 1 : 7.5
            let ref = ReferenceTokenAttention.forward(pointFeatures: c.pointFeatures.map(Double.init),
                                                      positions: c.positions.map(Double.init), count: K,
                                                      featureWidth: D, tokens: c.reference, sharpness: Double(beta))
            for useBLAS in [true, false] {
                let r = Self.run(c, gradAttention: nil, threads: 2, useBLAS: useBLAS, sharpness: beta)
                let tag = "K=\(K) N=\(N) D=\(D) blas=\(useBLAS) beta=\(beta)"
                for (got, want, name) in [(r.attention, ref.attention, "A"), (r.S, ref.similarity, "S"),
                                          (r.G, ref.spatial, "G")] {
                    for j in 0..<want.count {
                        XCTAssertEqual(Double(got[j]), want[j], accuracy: 1e-5, "\(name)[\(j)] \(tag)")
                    }
                }
            }
        }
    }

    func testRowsSumToOne() {
        let c = Self.makeCase(seed: 9, K: 700, N: 7, D: 12, featureScale: 2)
        let r = Self.run(c, gradAttention: nil, threads: 2, useBLAS: true)
        for k in 0..<c.K {
            let row = r.attention[(k * c.N)..<((k + 1) * c.N)]
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5, "row \(k)")
            XCTAssertTrue(row.allSatisfy { $0 > 0 && $0 < 1 }, "row \(k)")
        }
    }

    /// A point at token 0's mean with tiny scales: G = 1 for token 0; token 1 (tiny scales, 1 m away) gives G ~ 0;
    /// token 2 (same mean as the point, but anisotropic and rotated) still gives G = 1.
    func testPointAtMeanAndFarTokens() {
        var c = Self.makeCase(seed: 5, K: 2, N: 3, D: 4)
        c.positions = [0.3, -0.2, 0.7, 0.3, -0.2, 0.9]
        c.means = [0.3, -0.2, 0.7, 1.3, -0.2, 0.7, 0.3, -0.2, 0.7]
        c.logScales = [Float](repeating: log(0.01), count: 6) + [log(0.01), log(2), log(0.1)]
        let r = Self.run(c, gradAttention: nil, threads: 1, useBLAS: true)
        XCTAssertEqual(r.G[0], 1, accuracy: 1e-6)
        XCTAssertEqual(r.G[1], 0, accuracy: 1e-12)
        XCTAssertEqual(r.G[2], 1, accuracy: 1e-6)
        XCTAssertEqual(r.G[3], 0, accuracy: 1e-12, "point 1 is 0.2 m (20 sigma) from token 0")
        // With G = 0 the token's logit S G is 0, so its attention is exp(0) / sum.
        let x0 = r.S[0], x2 = r.S[2]
        let sum = exp(x0) + 1 + exp(x2)
        XCTAssertEqual(r.attention[1], 1 / sum, accuracy: 1e-6)
    }

    /// Gradients w.r.t. every input against central finite differences of L = sum c_ki A_ki on the Double twin.
    func testGradientsMatchFiniteDifferences() {
        var rng = SeededRNG(seed: 3)
        let shapes = [(K: 1, N: 1, D: 4), (K: 13, N: 3, D: 5), (K: 30, N: 5, D: 8), (K: 17, N: 8, D: 16),
                      (K: 45, N: 2, D: 4)]
        for (trial, shape) in shapes.enumerated() {
            let c = Self.makeCase(seed: 200 + UInt64(trial), K: shape.K, N: shape.N, D: shape.D, featureScale: 0.8)
            let weights = (0..<(c.K * c.N)).map { _ in rng.uniform(-1, 1) }
            let tokens = c.reference
            let beta: Float = trial % 2 == 0 ? 1 : 6
            let pf = c.pointFeatures.map(Double.init), pos = c.positions.map(Double.init)
            func L(_ pf: [Double], _ t: ReferenceTokenAttention.Tokens) -> Double {
                ReferenceTokenAttention.loss(weights: weights, pointFeatures: pf, positions: pos, count: c.K,
                                             featureWidth: c.D, tokens: t, sharpness: Double(beta))
            }
            let h = 1e-6
            func fd(_ n: Int, _ eval: (Int, Double) -> Double) -> [Double] {
                (0..<n).map { j in (eval(j, h) - eval(j, -h)) / (2 * h) }
            }
            let wantPF = fd(pf.count) { j, e in var p = pf; p[j] += e; return L(p, tokens) }
            let wantTF = fd(tokens.features.count) { j, e in var t = tokens; t.features[j] += e; return L(pf, t) }
            let wantMu = fd(tokens.means.count) { j, e in var t = tokens; t.means[j] += e; return L(pf, t) }
            let wantRot = fd(tokens.rotations.count) { j, e in var t = tokens; t.rotations[j] += e; return L(pf, t) }
            let wantLS = fd(tokens.logScales.count) { j, e in var t = tokens; t.logScales[j] += e; return L(pf, t) }
            for useBLAS in [true, false] {
                let r = Self.run(c, gradAttention: weights.map(Float.init), threads: 2, useBLAS: useBLAS,
                                 sharpness: beta)
                let tag = "K=\(c.K) N=\(c.N) D=\(c.D) blas=\(useBLAS) beta=\(beta)"
                Self.assertClose(r.gradPointFeatures, wantPF, 2e-3, "dL/dpointFeatures \(tag)")
                Self.assertClose(r.gradFeatures, wantTF, 2e-3, "dL/dtokenFeatures \(tag)")
                Self.assertClose(r.gradMeans, wantMu, 2e-3, "dL/dmeans \(tag)")
                Self.assertClose(r.gradRotations, wantRot, 2e-3, "dL/drotations \(tag)")
                Self.assertClose(r.gradLogScales, wantLS, 2e-3, "dL/dlogScales \(tag)")
            }
        }
    }

    /// Token gradients are accumulated (+=), point-feature gradients written.
    func testTokenGradientsAccumulate() {
        let c = Self.makeCase(seed: 11, K: 40, N: 4, D: 6)
        var rng = SeededRNG(seed: 12)
        let gA = (0..<(c.K * c.N)).map { _ in Float(rng.uniform(-1, 1)) }
        let zero = Self.run(c, gradAttention: gA, threads: 2, useBLAS: true)
        let acc = Self.run(c, gradAttention: gA, threads: 2, useBLAS: true, start: 0.5)
        XCTAssertEqual(acc.gradPointFeatures, zero.gradPointFeatures)
        for (a, z) in [(acc.gradFeatures, zero.gradFeatures), (acc.gradMeans, zero.gradMeans),
                       (acc.gradRotations, zero.gradRotations), (acc.gradLogScales, zero.gradLogScales)] {
            for j in 0..<a.count { XCTAssertEqual(a[j], z[j] + 0.5, accuracy: 1e-5) }
        }
    }

    /// Outputs are bit-identical for 1, 2 and 3 threads (fixed blocks, reduction in block order), both GEMM paths.
    func testThreadCountDoesNotChangeBits() {
        let c = Self.makeCase(seed: 21, K: 1234, N: 6, D: 16)
        var rng = SeededRNG(seed: 22)
        let gA = (0..<(c.K * c.N)).map { _ in Float(rng.uniform(-1, 1)) }
        for useBLAS in [true, false] {
            let one = Self.run(c, gradAttention: gA, threads: 1, useBLAS: useBLAS)
            for t in [2, 3] {
                let other = Self.run(c, gradAttention: gA, threads: t, useBLAS: useBLAS)
                let tag = "threads \(t) blas=\(useBLAS)"
                XCTAssertEqual(one.attention, other.attention, tag)
                XCTAssertEqual(one.gradPointFeatures, other.gradPointFeatures, tag)
                XCTAssertEqual(one.gradFeatures, other.gradFeatures, tag)
                XCTAssertEqual(one.gradMeans, other.gradMeans, tag)
                XCTAssertEqual(one.gradRotations, other.gradRotations, tag)
                XCTAssertEqual(one.gradLogScales, other.gradLogScales, tag)
            }
        }
    }

    /// BLAS and loop paths agree (up to summation order).
    func testBLASAndLoopPathsAgree() {
        let c = Self.makeCase(seed: 31, K: 600, N: 9, D: 10)
        var rng = SeededRNG(seed: 32)
        let gA = (0..<(c.K * c.N)).map { _ in Float(rng.uniform(-1, 1)) }
        let a = Self.run(c, gradAttention: gA, threads: 2, useBLAS: true)
        let b = Self.run(c, gradAttention: gA, threads: 2, useBLAS: false)
        Self.assertClose(a.attention, b.attention.map(Double.init), 1e-5, "A")
        Self.assertClose(a.gradPointFeatures, b.gradPointFeatures.map(Double.init), 1e-4, "dL/dpf")
        Self.assertClose(a.gradFeatures, b.gradFeatures.map(Double.init), 1e-4, "dL/dtf")
    }

    /// Smoke run of the benchmark; timings are printed, not asserted. Set TOKEN_ATTENTION_BENCH=1 for the full size.
    func testBenchmarkRuns() {
        let full = ProcessInfo.processInfo.environment["TOKEN_ATTENTION_BENCH"] != nil
        let points = full ? 65536 : 2048
        for threads in full ? [1, 2] : [2] {
            for useBLAS in [true, false] {
                let r = TokenAttentionBenchmark.run(points: points, tokens: 32, width: 16, threads: threads,
                                                    useBLAS: useBLAS, rounds: full ? 7 : 1)
                XCTAssertGreaterThan(r.forwardPointsPerSecond, 0)
                print(String(format: "TokenAttention %d pts, 32 tokens, D 16, threads %d, %@: forward %.3g pts/s, "
                             + "forward+backward %.3g pts/s", points, threads, useBLAS ? "sgemm" : "loops",
                             r.forwardPointsPerSecond, r.forwardBackwardPointsPerSecond))
            }
        }
    }
}
