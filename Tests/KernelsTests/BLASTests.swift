import Kernels
import MapCore
import TestSupport
import XCTest

final class BLASTests: XCTestCase {
    func testSgemmMatchesReferenceForAllTransposes() {
        var rng = SeededRNG(seed: 11)
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = 7, n = 5, k = 9
            let lda = (transA ? m : k) + 2, ldb = (transB ? k : n) + 1, ldc = n + 3
            let a = (0..<((transA ? k : m) * lda)).map { _ in Float(rng.gaussian()) }
            let b = (0..<((transB ? n : k) * ldb)).map { _ in Float(rng.gaussian()) }
            let c0 = (0..<(m * ldc)).map { _ in Float(rng.gaussian()) }
            var expected = c0, got = c0
            ReferenceKernels.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b,
                                  ldb: ldb, beta: 2, c: &expected, ldc: ldc)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    got.withUnsafeMutableBufferPointer { pc in
                        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: pa.baseAddress!,
                                   lda: lda, b: pb.baseAddress!, ldb: ldb, beta: 2, c: pc.baseAddress!, ldc: ldc)
                    }
                }
            }
            for i in 0..<got.count { XCTAssertEqual(got[i], expected[i], accuracy: 1e-4, "trans \(transA) \(transB) at \(i)") }
        }
    }
}
