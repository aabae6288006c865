import Foundation
import Kernels
import MapCore
import TestSupport
import XCTest

final class AdamTests: XCTestCase {
    /// Gradients with magnitudes spread over 1e-6 ... 1 and random signs.
    static func grads(_ n: Int, _ rng: inout SeededRNG) -> [Float] {
        (0..<n).map { _ in Float((rng.uniform() < 0.5 ? -1 : 1) * pow(10, rng.uniform(-6, 0))) }
    }

    func testDenseMatchesReferenceOverSeveralSteps() {
        for config in [AdamConfig(), AdamConfig(learningRate: 1e-2, beta1: 0.8, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1)] {
            var rng = SeededRNG(seed: 1)
            let n = 37
            var params = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
            var refParams = params.map(Double.init)
            var state = AdamState(parameterCount: n)
            var ref = ReferenceAdam(count: n)
            // m is a signed running mean and may cancel: compare it relative to the running mean of |g|.
            var mScale = [Double](repeating: 0, count: n)
            for _ in 0..<12 {
                let g = Self.grads(n, &rng)
                for i in 0..<n { mScale[i] = Double(config.beta1) * mScale[i] + (1 - Double(config.beta1)) * Double(abs(g[i])) }
                state.step += 1; ref.step += 1
                params.withUnsafeMutableBufferPointer { p in
                    g.withUnsafeBufferPointer { gp in
                        Adam.update(params: p.baseAddress!, grads: gp.baseAddress!, count: n, state: &state, config: config)
                    }
                }
                ref.update(params: &refParams, grads: g.map(Double.init), config: config)
                for i in 0..<n {
                    XCTAssertEqual(Double(params[i]), refParams[i], accuracy: 1e-6 * (abs(refParams[i]) + Double(config.learningRate)), "param \(i) step \(state.step)")
                    XCTAssertEqual(Double(state.m[i]), ref.m[i], accuracy: 1e-6 * mScale[i], "m \(i) step \(state.step)")
                    XCTAssertEqual(Double(state.v[i]), ref.v[i], accuracy: 1e-6 * abs(ref.v[i]), "v \(i) step \(state.step)")
                }
            }
        }
    }

    func testDenseReadsButDoesNotClearGradients() {
        var p: [Float] = [1, 2, 3]
        let g: [Float] = [0.5, -0.5, 0]
        var state = AdamState(parameterCount: 3)
        state.step = 1
        p.withUnsafeMutableBufferPointer { pp in
            g.withUnsafeBufferPointer { gp in
                Adam.update(params: pp.baseAddress!, grads: gp.baseAddress!, count: 3, state: &state, config: AdamConfig(learningRate: 0.1))
            }
        }
        XCTAssertEqual(g, [0.5, -0.5, 0])
        // First step: m_hat / sqrt(v_hat) = sign(g), so each parameter moves by lr against its gradient.
        XCTAssertEqual(p[0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(p[1], 2.1, accuracy: 1e-6)
        XCTAssertEqual(p[2], 3)
    }

    func testSparseWithAllEntriesTouchedEqualsDense() {
        var rng = SeededRNG(seed: 2)
        let entries = 11, width = 3, n = entries * width
        let config = AdamConfig(learningRate: 1e-2, weightDecay: 0.01)
        var dense = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        var sparse = dense
        var ds = AdamState(parameterCount: n), ss = AdamState(parameterCount: n)
        for _ in 0..<6 {
            let g = Self.grads(n, &rng)
            var sg = g
            var order = (0..<Int32(entries)).map { $0 }
            order.shuffle(using: &rng)
            ds.step += 1; ss.step += 1
            dense.withUnsafeMutableBufferPointer { p in
                g.withUnsafeBufferPointer { gp in
                    Adam.update(params: p.baseAddress!, grads: gp.baseAddress!, count: n, state: &ds, config: config)
                }
            }
            sparse.withUnsafeMutableBufferPointer { p in
                sg.withUnsafeMutableBufferPointer { gp in
                    order.withUnsafeBufferPointer { e in
                        Adam.updateSparse(params: p.baseAddress!, grads: gp.baseAddress!, entries: e, width: width, state: &ss, config: config)
                    }
                }
            }
            XCTAssertEqual(sparse.map(\.bitPattern), dense.map(\.bitPattern))
            XCTAssertEqual(ss, ds)
            XCTAssert(sg.allSatisfy { $0 == 0 }, "touched gradients cleared")
        }
    }

    /// Untouched entries keep parameters, moments and gradients; touched entries follow the lazy twin (moments decay
    /// only when touched, bias correction by the global step); touched gradients are cleared.
    func testSparseLazyUpdateTouchesOnlyListedEntries() {
        var rng = SeededRNG(seed: 3)
        let entries = 9, width = 2, n = entries * width
        let config = AdamConfig(learningRate: 5e-3)
        var params = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        var refParams = params.map(Double.init)
        var state = AdamState(parameterCount: n)
        var ref = ReferenceAdam(count: n)
        var mScale = [Double](repeating: 0, count: n)
        for step in 0..<8 {
            let touched: [Int32] = (0..<Int32(entries)).filter { ($0 + Int32(step)) % 3 != 0 }
            var g = Self.grads(n, &rng)
            for e in touched {
                for k in 0..<width {
                    let i = Int(e) * width + k
                    mScale[i] = 0.9 * mScale[i] + 0.1 * Double(abs(g[i]))
                }
            }
            let gBefore = g
            let before = params, mBefore = state.m, vBefore = state.v
            state.step += 1; ref.step += 1
            params.withUnsafeMutableBufferPointer { p in
                g.withUnsafeMutableBufferPointer { gp in
                    touched.withUnsafeBufferPointer { e in
                        Adam.updateSparse(params: p.baseAddress!, grads: gp.baseAddress!, entries: e, width: width, state: &state, config: config)
                    }
                }
            }
            let idx = touched.flatMap { e in (0..<width).map { Int(e) * width + $0 } }
            ref.update(params: &refParams, grads: gBefore.map(Double.init), config: config, indices: idx)
            for e in 0..<entries {
                for k in 0..<width {
                    let i = e * width + k
                    if touched.contains(Int32(e)) {
                        XCTAssertEqual(g[i], 0, "gradient of touched \(i) cleared")
                        XCTAssertEqual(Double(params[i]), refParams[i], accuracy: 1e-6 * (abs(refParams[i]) + 1e-2))
                        XCTAssertEqual(Double(state.m[i]), ref.m[i], accuracy: 1e-6 * mScale[i])
                        XCTAssertEqual(Double(state.v[i]), ref.v[i], accuracy: 1e-6 * abs(ref.v[i]))
                    } else {
                        XCTAssertEqual(params[i].bitPattern, before[i].bitPattern, "untouched param \(i)")
                        XCTAssertEqual(state.m[i].bitPattern, mBefore[i].bitPattern, "untouched m \(i)")
                        XCTAssertEqual(state.v[i].bitPattern, vBefore[i].bitPattern, "untouched v \(i)")
                        XCTAssertEqual(g[i], gBefore[i], "untouched gradient \(i) kept")
                    }
                }
            }
        }
    }

    /// MLP 2 -> 16 -> 1 (softplus) fits y = sin(2 x0) + 0.5 x1 on 64 points with MSE, dense Adam, 300 steps.
    func testTinyRegressionConverges() throws {
        let mlp = try MLP(config: MLPConfig(inputs: 2, hidden: [16], outputs: 1, activation: .softplus(beta: 4)))
        var rng = SeededRNG(seed: 4)
        let count = 64
        let x = (0..<(count * 2)).map { _ in Float(rng.uniform(-1, 1)) }
        let y = (0..<count).map { sin(2 * x[2 * $0]) + 0.5 * x[2 * $0 + 1] }
        var params = mlp.initialParameters(seed: 5)
        var state = AdamState(parameterCount: mlp.parameterCount)
        let ws = MLPWorkspace(mlp: mlp, maxBatch: count)
        var out = [Float](repeating: 0, count: count), gOut = out
        var grads = [Float](repeating: 0, count: mlp.parameterCount)
        func lossAndGrads() -> Float {
            var loss: Float = 0
            params.withUnsafeBufferPointer { p in
                x.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBufferPointer { o in
                        mlp.forward(params: p.baseAddress!, input: xp.baseAddress!, count: count, workspace: ws, output: o.baseAddress!)
                    }
                    for i in 0..<count {
                        let r = out[i] - y[i]
                        loss += r * r / Float(count)
                        gOut[i] = 2 * r / Float(count)
                    }
                    for i in grads.indices { grads[i] = 0 }
                    gOut.withUnsafeBufferPointer { go in
                        grads.withUnsafeMutableBufferPointer { g in
                            mlp.backward(params: p.baseAddress!, input: xp.baseAddress!, count: count, workspace: ws,
                                         gradOutput: go.baseAddress!, gradParams: g.baseAddress!, gradInput: nil)
                        }
                    }
                }
            }
            return loss
        }
        let first = lossAndGrads()
        var last = first
        for _ in 0..<300 {
            state.step += 1
            params.withUnsafeMutableBufferPointer { p in
                grads.withUnsafeBufferPointer { g in
                    Adam.update(params: p.baseAddress!, grads: g.baseAddress!, count: mlp.parameterCount, state: &state,
                                config: AdamConfig(learningRate: 2e-2))
                }
            }
            last = lossAndGrads()
        }
        XCTAssertGreaterThan(first, 0.1)
        XCTAssertLessThan(last, 2e-3, "MSE \(first) -> \(last)")  // 2.36 -> 8.3e-4 as written
        XCTAssertLessThan(last, first / 1000)
    }

    func testStateAndConfigRoundTripAndValidation() throws {
        var s = AdamState(parameterCount: 3)
        s.m = [1, 2, 3]; s.v = [4, 5, 6]; s.step = 7
        XCTAssertEqual(try JSONDecoder().decode(AdamState.self, from: JSONEncoder().encode(s)), s)
        let c = AdamConfig(learningRate: 0.01, weightDecay: 1e-4)
        XCTAssertEqual(try JSONDecoder().decode(AdamConfig.self, from: JSONEncoder().encode(c)), c)
        XCTAssertNoThrow(try AdamConfig().validate())
        XCTAssertThrowsError(try AdamConfig(beta2: 1).validate())
        XCTAssertThrowsError(try AdamConfig(learningRate: 0).validate())
        XCTAssertThrowsError(try AdamConfig(epsilon: 0).validate())
    }
}
