import Foundation
import Kernels
import MapCore
import TestSupport
import XCTest

final class MLPTests: XCTestCase {
    static let activations: [Activation] = [.none, .relu, .softplus(beta: 1), .softplus(beta: 100), .sigmoid]

    /// Runs the kernel forward (+ backward when gradOutput is given) on Float copies.
    struct Run {
        var output: [Float]
        var gradParams: [Float]
        var gradInput: [Float]
    }

    static func run(_ mlp: MLP, params: [Float], input: [Float], count: Int, workspace: MLPWorkspace,
                    gradOutput: [Float]? = nil, gradParamsStart: [Float]? = nil) -> Run {
        var out = [Float](repeating: .nan, count: count * mlp.config.outputs)
        var gp = gradParamsStart ?? [Float](repeating: 0, count: mlp.parameterCount)
        var gi = [Float](repeating: .nan, count: count * mlp.config.inputs)
        params.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { y in
                    mlp.forward(params: p.baseAddress!, input: x.baseAddress!, count: count, workspace: workspace,
                                output: y.baseAddress!)
                }
                if let gradOutput {
                    gradOutput.withUnsafeBufferPointer { go in
                        gp.withUnsafeMutableBufferPointer { g in
                            gi.withUnsafeMutableBufferPointer { gin in
                                mlp.backward(params: p.baseAddress!, input: x.baseAddress!, count: count,
                                             workspace: workspace, gradOutput: go.baseAddress!,
                                             gradParams: g.baseAddress!, gradInput: gin.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
        return Run(output: out, gradParams: gp, gradInput: gi)
    }

    /// Random data: parameters from the initialiser with random biases (so relu/softplus kinks are not all at 0),
    /// inputs uniform in [-inputScale, inputScale], upstream gradients uniform in [-1, 1].
    static func data(_ mlp: MLP, count: Int, seed: UInt64, inputScale: Double = 1)
        -> (params: [Float], input: [Float], gradOutput: [Float]) {
        var rng = SeededRNG(seed: seed)
        var p = mlp.initialParameters(seed: seed)
        for l in 0..<mlp.layerCount {
            for o in 0..<mlp.widths[l + 1] { p[mlp.biasOffset(l) + o] = Float(rng.uniform(-0.3, 0.3)) }
        }
        let x = (0..<(count * mlp.config.inputs)).map { _ in Float(rng.uniform(-inputScale, inputScale)) }
        let g = (0..<(count * mlp.config.outputs)).map { _ in Float(rng.uniform(-1, 1)) }
        return (p, x, g)
    }

    /// |got - want| <= tol * (|want| + rms(want)) elementwise.
    static func assertClose(_ got: [Float], _ want: [Double], _ tol: Double, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let rms = (want.reduce(0) { $0 + $1 * $1 } / Double(max(1, want.count))).squareRoot()
        var worst = 0.0, at = -1
        for i in 0..<min(got.count, want.count) {
            let e = abs(Double(got[i]) - want[i]) / (abs(want[i]) + rms + 1e-30)
            if !(e <= worst) { worst = e; at = i }
        }
        XCTAssert(worst <= tol, "\(what): worst relative error \(worst) at \(at) (got \(at >= 0 ? got[at] : 0), want \(at >= 0 ? want[at] : 0))",
                  file: file, line: line)
    }

    static let shapes: [(inputs: Int, hidden: [Int], outputs: Int)] = [
        (5, [7], 3), (4, [9, 13], 1), (3, [8, 6, 5], 2), (32, [64], 16), (6, [], 4),
    ]

    func testForwardMatchesReference() throws {
        for (si, shape) in Self.shapes.enumerated() {
            for (ai, act) in Self.activations.enumerated() {
                for outAct in [Activation.none, act] {
                    let cfg = MLPConfig(inputs: shape.inputs, hidden: shape.hidden, outputs: shape.outputs,
                                        activation: act, outputActivation: outAct)
                    let mlp = try MLP(config: cfg)
                    let ws = MLPWorkspace(mlp: mlp, maxBatch: 4)
                    for count in [1, 19] {
                        let d = Self.data(mlp, count: count, seed: UInt64(100 * si + 10 * ai + count))
                        let got = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: ws).output
                        let want = ReferenceMLP.output(config: cfg, params: d.params.map(Double.init),
                                                       input: d.input.map(Double.init), count: count)
                        Self.assertClose(got, want, 1e-5, "forward \(shape) \(act)/\(outAct) count \(count)")
                    }
                }
            }
        }
    }

    func testBackwardMatchesReference() throws {
        for (si, shape) in Self.shapes.enumerated() {
            for (ai, act) in Self.activations.enumerated() {
                for outAct in [Activation.none, act] {
                    let cfg = MLPConfig(inputs: shape.inputs, hidden: shape.hidden, outputs: shape.outputs,
                                        activation: act, outputActivation: outAct)
                    let mlp = try MLP(config: cfg)
                    let ws = MLPWorkspace(mlp: mlp, maxBatch: 1)
                    for count in [1, 23] {
                        let d = Self.data(mlp, count: count, seed: UInt64(7 + 100 * si + 10 * ai + count))
                        let got = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: ws,
                                           gradOutput: d.gradOutput)
                        let want = ReferenceMLP.backward(config: cfg, params: d.params.map(Double.init),
                                                         input: d.input.map(Double.init), count: count,
                                                         gradOutput: d.gradOutput.map(Double.init))
                        Self.assertClose(got.gradParams, want.params, 2e-5, "dparams \(shape) \(act)/\(outAct) count \(count)")
                        Self.assertClose(got.gradInput, want.input, 2e-5, "dinput \(shape) \(act)/\(outAct) count \(count)")
                    }
                }
            }
        }
    }

    /// Kernel and twin gradients vs central differences of L = sum(c * output) through the Double twin forward.
    /// Step 1e-6 in Double: truncation ~ h^2 f''' (f''' ~ beta^2 = 1e4 for softplus beta 100 -> 1e-8) and rounding
    /// ~ 1e-16 / h stay far below the tolerance. Inputs are scaled so that many pre-activations sit within a few
    /// 1/beta of 0, where softplus(beta = 100) bends; relu kinks are at least h away with probability ~1.
    func testGradientsMatchFiniteDifferences() throws {
        for act in Self.activations {
            let cfg = MLPConfig(inputs: 4, hidden: [6, 5], outputs: 2, activation: act, outputActivation: act)
            let mlp = try MLP(config: cfg)
            let count = 5
            let inputScale: Double
            if case .softplus(let b) = act, b > 10 { inputScale = 0.05 } else { inputScale = 1 }
            let d = Self.data(mlp, count: count, seed: 31, inputScale: inputScale)
            let p = d.params.map(Double.init), x = d.input.map(Double.init), c = d.gradOutput.map(Double.init)
            func loss(_ p: [Double], _ x: [Double]) -> Double {
                zip(ReferenceMLP.output(config: cfg, params: p, input: x, count: count), c).reduce(0) { $0 + $1.0 * $1.1 }
            }
            let h = 1e-6
            var fdParams = [Double](repeating: 0, count: p.count)
            for i in 0..<p.count {
                var pp = p, pm = p
                pp[i] += h; pm[i] -= h
                fdParams[i] = (loss(pp, x) - loss(pm, x)) / (2 * h)
            }
            var fdInput = [Double](repeating: 0, count: x.count)
            for i in 0..<x.count {
                var xp = x, xm = x
                xp[i] += h; xm[i] -= h
                fdInput[i] = (loss(p, xp) - loss(p, xm)) / (2 * h)
            }
            let twin = ReferenceMLP.backward(config: cfg, params: p, input: x, count: count, gradOutput: c)
            for i in 0..<p.count { XCTAssertEqual(twin.params[i], fdParams[i], accuracy: 1e-6 * (1 + abs(fdParams[i])), "twin dparam \(i) \(act)") }
            for i in 0..<x.count { XCTAssertEqual(twin.input[i], fdInput[i], accuracy: 1e-6 * (1 + abs(fdInput[i])), "twin dinput \(i) \(act)") }
            let ws = MLPWorkspace(mlp: mlp, maxBatch: count)
            let got = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: ws, gradOutput: d.gradOutput)
            Self.assertClose(got.gradParams, fdParams, 1e-4, "kernel dparams vs FD \(act)")
            Self.assertClose(got.gradInput, fdInput, 1e-4, "kernel dinput vs FD \(act)")
        }
    }

    func testBackwardAccumulatesIntoGradParams() throws {
        let mlp = try MLP(config: MLPConfig(inputs: 3, hidden: [5], outputs: 2, activation: .softplus(beta: 10)))
        let ws = MLPWorkspace(mlp: mlp, maxBatch: 8)
        let d = Self.data(mlp, count: 8, seed: 5)
        let start = (0..<mlp.parameterCount).map { Float($0) * 0.01 }
        let fresh = Self.run(mlp, params: d.params, input: d.input, count: 8, workspace: ws, gradOutput: d.gradOutput)
        let acc = Self.run(mlp, params: d.params, input: d.input, count: 8, workspace: ws, gradOutput: d.gradOutput,
                           gradParamsStart: start)
        for i in 0..<mlp.parameterCount {
            XCTAssertEqual(acc.gradParams[i], start[i] + fresh.gradParams[i], accuracy: 1e-6)
        }
    }

    /// Batches split into concurrent row chunks (BLAS.threads == 1, workspace.threads 2 and 3) and one chunk with
    /// OpenBLAS on 2 threads: equal to the twin, and bit-identical across repeated calls.
    func testThreadedBatchesMatchReferenceAndAreDeterministic() throws {
        let cfg = MLPConfig(inputs: 8, hidden: [40, 13], outputs: 3, activation: .softplus(beta: 100), outputActivation: .sigmoid)
        let mlp = try MLP(config: cfg)
        let count = 800  // >= 256 rows per chunk for 2 and 3 chunks
        let d = Self.data(mlp, count: count, seed: 77, inputScale: 0.1)
        let want = ReferenceMLP.backward(config: cfg, params: d.params.map(Double.init), input: d.input.map(Double.init),
                                         count: count, gradOutput: d.gradOutput.map(Double.init))
        let wantOut = ReferenceMLP.output(config: cfg, params: d.params.map(Double.init), input: d.input.map(Double.init),
                                          count: count)
        let savedBLASThreads = BLAS.threads
        defer { BLAS.threads = savedBLASThreads }
        for (blasThreads, chunks) in [(1, 2), (1, 3), (2, 1)] {
            BLAS.threads = blasThreads
            let ws = MLPWorkspace(mlp: mlp, maxBatch: count, threads: chunks)
            let start = [Float](repeating: 0.5, count: mlp.parameterCount)
            let a = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: ws, gradOutput: d.gradOutput,
                             gradParamsStart: start)
            let b = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: ws, gradOutput: d.gradOutput,
                             gradParamsStart: start)
            let what = "BLAS threads \(blasThreads), chunks \(chunks)"
            XCTAssertEqual(a.output.map(\.bitPattern), b.output.map(\.bitPattern), what)
            XCTAssertEqual(a.gradParams.map(\.bitPattern), b.gradParams.map(\.bitPattern), what)
            XCTAssertEqual(a.gradInput.map(\.bitPattern), b.gradInput.map(\.bitPattern), what)
            Self.assertClose(a.output, wantOut, 1e-5, "forward, \(what)")
            Self.assertClose(a.gradParams.map { $0 - 0.5 }, want.params, 2e-5, "dparams (accumulated), \(what)")
            Self.assertClose(a.gradInput, want.input, 2e-5, "dinput, \(what)")
        }
    }

    func testWorkspaceReuseAcrossBatchSizes() throws {
        let mlp = try MLP(config: MLPConfig(inputs: 5, hidden: [16, 9], outputs: 3, activation: .relu, outputActivation: .sigmoid))
        let shared = MLPWorkspace(mlp: mlp, maxBatch: 2)
        for (i, count) in [1, 10, 3, 37, 10, 1].enumerated() {
            let d = Self.data(mlp, count: count, seed: UInt64(50 + i))
            let reused = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: shared, gradOutput: d.gradOutput)
            let fresh = Self.run(mlp, params: d.params, input: d.input, count: count,
                                 workspace: MLPWorkspace(mlp: mlp, maxBatch: count), gradOutput: d.gradOutput)
            XCTAssertEqual(reused.output.map(\.bitPattern), fresh.output.map(\.bitPattern), "count \(count)")
            XCTAssertEqual(reused.gradParams.map(\.bitPattern), fresh.gradParams.map(\.bitPattern), "count \(count)")
            XCTAssertEqual(reused.gradInput.map(\.bitPattern), fresh.gradInput.map(\.bitPattern), "count \(count)")
        }
        XCTAssertEqual(shared.capacity, 37)
    }

    func testInferInChunksEqualsForward() throws {
        let mlp = try MLP(config: MLPConfig(inputs: 6, hidden: [12], outputs: 2, activation: .softplus(beta: 100)))
        let count = 29
        let d = Self.data(mlp, count: count, seed: 9)
        let full = Self.run(mlp, params: d.params, input: d.input, count: count, workspace: MLPWorkspace(mlp: mlp, maxBatch: count)).output
        let small = MLPWorkspace(mlp: mlp, maxBatch: 8)
        var chunked = [Float](repeating: .nan, count: count * 2)
        d.params.withUnsafeBufferPointer { p in
            d.input.withUnsafeBufferPointer { x in
                chunked.withUnsafeMutableBufferPointer { y in
                    mlp.infer(params: p.baseAddress!, input: x.baseAddress!, count: count, workspace: small, output: y.baseAddress!)
                }
            }
        }
        XCTAssertEqual(small.capacity, 8)
        XCTAssertEqual(chunked.map(\.bitPattern), full.map(\.bitPattern))
    }

    func testInitialParametersAndLayout() throws {
        let mlp = try MLP(config: MLPConfig(inputs: 32, hidden: [64, 64], outputs: 4, activation: .relu))
        XCTAssertEqual(mlp.parameterCount, 64 * 32 + 64 + 64 * 64 + 64 + 4 * 64 + 4)
        XCTAssertEqual(mlp.weightOffset(1), 64 * 32 + 64)
        XCTAssertEqual(mlp.biasOffset(2), mlp.parameterCount - 4)
        let a = mlp.initialParameters(seed: 3), b = mlp.initialParameters(seed: 3), c = mlp.initialParameters(seed: 4)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        let kaiming = Float((6.0 / 32).squareRoot()), xavier = Float((6.0 / 68).squareRoot())
        XCTAssert((0..<(64 * 32)).allSatisfy { abs(a[$0]) <= kaiming })
        XCTAssert((0..<(64 * 32)).contains { abs(a[$0]) > 0.9 * kaiming })
        XCTAssert((0..<(4 * 64)).allSatisfy { abs(a[mlp.weightOffset(2) + $0]) <= xavier })
        XCTAssert((0..<64).allSatisfy { a[mlp.biasOffset(0) + $0] == 0 })
        let biased = mlp.initialParameters(seed: 3, outputBias: [-0.5, 1, 2, 3])
        XCTAssertEqual(Array(biased[mlp.biasOffset(2)...]), [-0.5, 1, 2, 3])
    }

    func testConfigValidation() throws {
        XCTAssertThrowsError(try MLP(config: MLPConfig(inputs: 0, hidden: [8], outputs: 1)))
        XCTAssertThrowsError(try MLP(config: MLPConfig(inputs: 3, hidden: [8, 0], outputs: 1)))
        XCTAssertThrowsError(try MLP(config: MLPConfig(inputs: 3, hidden: [8], outputs: 0)))
        XCTAssertThrowsError(try MLP(config: MLPConfig(inputs: 3, hidden: [8], outputs: 1, activation: .softplus(beta: 0))))
        XCTAssertThrowsError(try MLP(config: MLPConfig(inputs: 3, hidden: [8], outputs: 1, outputActivation: .softplus(beta: .nan))))
        let cfg = MLPConfig(inputs: 3, hidden: [8], outputs: 1, activation: .softplus(beta: 100), outputActivation: .sigmoid)
        let decoded = try JSONDecoder().decode(MLPConfig.self, from: JSONEncoder().encode(cfg))
        XCTAssertEqual(decoded, cfg)
        let minimal = try JSONDecoder().decode(MLPConfig.self, from: Data(#"{"inputs":3,"hidden":[8],"outputs":1}"#.utf8))
        XCTAssertEqual(minimal, MLPConfig(inputs: 3, hidden: [8], outputs: 1))
    }

    /// The vectorised softplus / sigmoid used by the kernel, over a wide range of arguments, against Double.
    func testActivationsAccurateOverWideRange() throws {
        let zs: [Float] = (-400...400).map { Float($0) * 0.25 } + [-1e-3, -1e-6, 0, 1e-6, 1e-3, 88, -88, 200, -200]
        for act in [Activation.softplus(beta: 100), .softplus(beta: 1), .sigmoid] {
            let cfg = MLPConfig(inputs: 1, hidden: [], outputs: 1, outputActivation: act)
            let mlp = try MLP(config: cfg)
            let params: [Float] = [1, 0]  // identity weight, zero bias
            let ws = MLPWorkspace(mlp: mlp, maxBatch: zs.count)
            let got = Self.run(mlp, params: params, input: zs, count: zs.count, workspace: ws,
                               gradOutput: [Float](repeating: 1, count: zs.count))
            for (i, z) in zs.enumerated() {
                let want = ReferenceMLP.activate(act, Double(z))
                // exp(-|beta z|) terms below exp(-75) = 2.7e-33 are flushed to 0 (no denormal intermediates).
                XCTAssertEqual(Double(got.output[i]), want, accuracy: 3e-7 * abs(want) + 2.7e-33, "\(act)(\(z))")
                let dWant = ReferenceMLP.derivative(act, Double(z))
                // The derivative comes from the stored Float activation: relative accuracy ~1e-6 where it matters.
                XCTAssertEqual(Double(got.gradInput[i]), dWant, accuracy: 2e-6 * abs(dWant) + 1e-7, "\(act)'(\(z))")
            }
        }
    }
}
