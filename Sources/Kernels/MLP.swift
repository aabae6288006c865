import Dispatch
import MapCore

// Small fully-connected networks (1–3 hidden layers, 32–128 wide) evaluated on whole batches: every layer is one
// `BLAS.sgemm` plus one fused elementwise pass (bias + activation forward; activation derivative + bias gradient
// backward). Batches are row-major `count x width`.
//
// Parameter layout (one flat Float buffer, `MLP.parameterCount` floats), for each layer l = 0 ..< layerCount in order:
//   W_l  row-major  out_l x in_l   (at `weightOffset(l)`; row o holds the weights into output unit o)
//   b_l             out_l          (at `biasOffset(l)`, directly after W_l)
// with in_0 = inputs, out_l = in_{l+1} = hidden[l], out_last = outputs. The same layout is used by
// `ReferenceMLP` (TestSupport) and by the gradient buffer of `backward`.

/// Elementwise nonlinearity after a layer.
public enum Activation: Sendable, Codable, Equatable {
    /// Identity.
    case none
    /// max(z, 0); derivative taken as 1 for z > 0, else 0.
    case relu
    /// log(1 + exp(beta z)) / beta (beta > 0; NeuS uses beta = 100). Computed as max(z,0) + log1p(exp(-|beta z|))/beta,
    /// which is stable for any z; its derivative is sigmoid(beta z). exp(-|beta z|) below 2.7e-33 (|beta z| > 75) is
    /// flushed to 0, so e.g. softplus(-1) with beta 100 is 0 rather than 3.7e-46.
    case softplus(beta: Float)
    /// 1 / (1 + exp(-z)); values below 2.7e-33 (z < -75) are flushed to 0.
    case sigmoid
}

/// Shape of an `MLP`. Sizes are unit counts.
public struct MLPConfig: Sendable, Codable, Equatable {
    /// Input width (e.g. 32 hash-grid features + extra inputs).
    public var inputs: Int
    /// Hidden layer widths, first to last (0 or more layers; typically 1–3 of 32–128 units).
    public var hidden: [Int]
    /// Output width (e.g. 1 SDF + a few features, or C class logits).
    public var outputs: Int
    /// Activation after every hidden layer.
    public var activation: Activation = .relu
    /// Activation after the output layer.
    public var outputActivation: Activation = .none

    public init(inputs: Int, hidden: [Int], outputs: Int, activation: Activation = .relu,
                outputActivation: Activation = .none) {
        self.inputs = inputs; self.hidden = hidden; self.outputs = outputs
        self.activation = activation; self.outputActivation = outputActivation
    }

    private enum CodingKeys: String, CodingKey { case inputs, hidden, outputs, activation, outputActivation }

    /// Activations may be omitted in JSON and then take their defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inputs = try c.decode(Int.self, forKey: .inputs)
        hidden = try c.decode([Int].self, forKey: .hidden)
        outputs = try c.decode(Int.self, forKey: .outputs)
        activation = try c.decodeIfPresent(Activation.self, forKey: .activation) ?? .relu
        outputActivation = try c.decodeIfPresent(Activation.self, forKey: .outputActivation) ?? .none
    }

    /// Throws `MapError.badArgument` naming the bad field.
    public func validate() throws {
        func bad(_ what: String) -> MapError {
            MapError(.badArgument, "MLP config: \(what)", hint: "use positive layer widths and softplus beta > 0")
        }
        if inputs < 1 { throw bad("inputs = \(inputs), must be >= 1") }
        if outputs < 1 { throw bad("outputs = \(outputs), must be >= 1") }
        for (i, h) in hidden.enumerated() where h < 1 { throw bad("hidden[\(i)] = \(h), must be >= 1") }
        for (name, a) in [("activation", activation), ("outputActivation", outputActivation)] {
            if case .softplus(let beta) = a, !(beta > 0 && beta.isFinite) {
                throw bad("\(name) softplus beta = \(beta), must be finite and > 0")
            }
        }
    }
}

/// A small MLP: the shape and the parameter layout. Parameters live in caller-owned buffers (see the layout above).
public struct MLP: Sendable {
    public let config: MLPConfig
    /// Layer widths [inputs, hidden..., outputs].
    public let widths: [Int]
    /// Number of weight layers (hidden.count + 1).
    public var layerCount: Int { widths.count - 1 }
    /// Floats in the flat parameter (and gradient) buffer.
    public let parameterCount: Int
    private let weightOffsets: [Int]
    private let biasOffsets: [Int]
    /// Widest layer output (hidden or output), the row width of the backward scratch buffers.
    let maxOutWidth: Int

    public init(config: MLPConfig) throws {
        try config.validate()
        self.config = config
        widths = [config.inputs] + config.hidden + [config.outputs]
        var w: [Int] = [], b: [Int] = [], off = 0
        for l in 0..<(widths.count - 1) {
            w.append(off); off += widths[l + 1] * widths[l]
            b.append(off); off += widths[l + 1]
        }
        weightOffsets = w; biasOffsets = b; parameterCount = off
        maxOutWidth = widths.dropFirst().max()!
    }

    /// Offset of layer l's weight matrix (out_l x in_l, row-major) in the parameter buffer.
    public func weightOffset(_ layer: Int) -> Int { weightOffsets[layer] }
    /// Offset of layer l's bias vector (out_l floats).
    public func biasOffset(_ layer: Int) -> Int { biasOffsets[layer] }
    /// Activation applied after layer l.
    public func activation(ofLayer layer: Int) -> Activation {
        layer == layerCount - 1 ? config.outputActivation : config.activation
    }

    /// Fresh parameters, deterministic in `seed`. Weights are uniform: Kaiming (He) bound sqrt(6 / in) for layers
    /// followed by relu or softplus, Xavier (Glorot) bound sqrt(6 / (in + out)) for layers followed by none / sigmoid.
    /// Biases are 0 except the output layer's, which is `outputBias` when given (count == outputs), e.g. the SDF
    /// geometric-init offset. Other schemes can overwrite ranges via `weightOffset` / `biasOffset`.
    public func initialParameters(seed: UInt64, outputBias: [Float]? = nil) -> [Float] {
        var rng = SeededRNG(seed: seed)
        var p = [Float](repeating: 0, count: parameterCount)
        for l in 0..<layerCount {
            let fanIn = widths[l], fanOut = widths[l + 1]
            let bound: Double
            switch activation(ofLayer: l) {
            case .relu, .softplus: bound = (6.0 / Double(fanIn)).squareRoot()
            case .none, .sigmoid: bound = (6.0 / Double(fanIn + fanOut)).squareRoot()
            }
            for i in 0..<(fanIn * fanOut) { p[weightOffsets[l] + i] = Float(rng.uniform(-bound, bound)) }
        }
        if let outputBias {
            precondition(outputBias.count == config.outputs, "initialParameters: outputBias needs \(config.outputs) values")
            for o in 0..<config.outputs { p[biasOffsets[layerCount - 1] + o] = outputBias[o] }
        }
        return p
    }

    /// Row chunks a batch of `count` is split into: `workspace.threads` when OpenBLAS is single-threaded
    /// (`BLAS.threads == 1`) and every chunk gets at least 256 rows, else 1 (then OpenBLAS threads the GEMMs itself).
    func chunkCount(_ count: Int, _ workspace: MLPWorkspace) -> Int {
        let t = workspace.threads
        if t <= 1 || count < 256 * t || BLAS.threads != 1 { return 1 }
        return t
    }

    /// output (count x outputs) = MLP(input (count x inputs)). Saves the activations in `workspace` (which grows to
    /// `count` rows if needed) for a following `backward` with the same input.
    ///
    /// Threads: with `workspace.threads` = T > 1 and `BLAS.threads == 1`, the batch is split into T row chunks that
    /// run concurrently (each chunk's GEMMs on one OpenBLAS thread); otherwise one chunk, whose GEMMs OpenBLAS threads
    /// over `BLAS.threads`. The first is faster on small MLPs (see `MLPBenchmark`). Results are deterministic for a
    /// given chunk count.
    public func forward(params: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int,
                        workspace: MLPWorkspace, output: UnsafeMutablePointer<Float>) {
        precondition(count >= 0, "MLP.forward: negative count")
        precondition(workspace.widths == widths, "MLP.forward: workspace was made for another MLP shape")
        workspace.ensureCapacity(count)
        workspace.savedCount = count
        if count == 0 { return }
        let chunks = chunkCount(count, workspace)
        if chunks == 1 {
            forwardRows(params, input, 0..<count, workspace, output)
            return
        }
        let pp = SendablePointer(UnsafeMutablePointer(mutating: params))
        let xp = SendablePointer(UnsafeMutablePointer(mutating: input)), yp = SendablePointer(output)
        let ws = SendableWorkspace(workspace)
        Parallel.forEachChunk(count: count, threads: chunks) { _, rows in
            forwardRows(UnsafePointer(pp.p), UnsafePointer(xp.p), rows, ws.w, yp.p)
        }
    }

    /// Forward over the rows `rows` of the batch (all pointers are to row 0 of the whole batch).
    private func forwardRows(_ params: UnsafePointer<Float>, _ input: UnsafePointer<Float>, _ rows: Range<Int>,
                             _ workspace: MLPWorkspace, _ output: UnsafeMutablePointer<Float>) {
        let r0 = rows.lowerBound, n = rows.count
        var prev = input + r0 * widths[0]
        for l in 0..<layerCount {
            let inW = widths[l], outW = widths[l + 1]
            let last = l == layerCount - 1
            let z = (last ? output : workspace.activations[l]) + r0 * outW
            // Z = A_{l-1} W_l^T : (n x in) (in x out); the batch is the long dimension m.
            BLAS.sgemm(transA: false, transB: true, m: n, n: outW, k: inW, a: prev, lda: inW,
                       b: params + weightOffsets[l], ldb: inW, beta: 0, c: z, ldc: outW)
            let act = activation(ofLayer: l)
            // What backward needs besides A_l: softplus keeps its derivative, other activations of the output layer
            // keep a copy of the output (the caller owns `output`).
            let deriv = workspace.derivatives[l].map { $0 + r0 * outW }
            let keep = last && deriv == nil && act != .none ? workspace.activations[l] + r0 * outW : nil
            MLPElementwise.biasActivate(z, count: n, width: outW, bias: params + biasOffsets[l], activation: act,
                                        copy: keep, derivative: deriv)
            prev = UnsafePointer(z)
        }
    }

    /// Forward-only evaluation of any number of rows in chunks of the workspace's current capacity (the workspace
    /// does not grow): for inference over millions of points. Leaves the workspace's saved activations meaningless.
    public func infer(params: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int,
                      workspace: MLPWorkspace, output: UnsafeMutablePointer<Float>) {
        let chunk = max(1, workspace.capacity)
        var start = 0
        while start < count {
            let n = min(chunk, count - start)
            forward(params: params, input: input + start * widths[0], count: n, workspace: workspace,
                    output: output + start * widths[layerCount])
            start += n
        }
    }

    /// Backward pass for the last `forward` (same params, input and count) through `workspace`.
    /// Accumulates dL/dparams into `gradParams` (+=, same layout as params) and writes dL/dinput (count x inputs,
    /// overwritten) when `gradInput` is non-nil. `gradOutput` is dL/doutput (count x outputs).
    /// Threads as in `forward`; with several chunks each chunk sums its parameter gradient separately and the
    /// partial sums are added in chunk order.
    public func backward(params: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int, workspace: MLPWorkspace,
                         gradOutput: UnsafePointer<Float>, gradParams: UnsafeMutablePointer<Float>,
                         gradInput: UnsafeMutablePointer<Float>?) {
        precondition(workspace.widths == widths, "MLP.backward: workspace was made for another MLP shape")
        precondition(count == workspace.savedCount, "MLP.backward: count \(count) differs from the last forward's \(workspace.savedCount)")
        if count == 0 { return }
        let chunks = chunkCount(count, workspace)
        if chunks == 1 {
            backwardRows(params, input, 0..<count, workspace, gradOutput, gradParams, gradInput, chunk: 0)
            return
        }
        let pp = SendablePointer(UnsafeMutablePointer(mutating: params))
        let xp = SendablePointer(UnsafeMutablePointer(mutating: input))
        let gop = SendablePointer(UnsafeMutablePointer(mutating: gradOutput))
        let gip = gradInput.map(SendablePointer.init)
        let partial = SendablePointer(workspace.partialGrads)
        let ws = SendableWorkspace(workspace)
        let pc = parameterCount
        Parallel.forEachChunk(count: count, threads: chunks) { c, rows in
            let target = partial.p + c * pc
            target.update(repeating: 0, count: pc)
            backwardRows(UnsafePointer(pp.p), UnsafePointer(xp.p), rows, ws.w, UnsafePointer(gop.p), target, gip?.p,
                         chunk: c)
        }
        for c in 0..<chunks {
            let src = workspace.partialGrads + c * pc
            for i in 0..<pc { gradParams[i] += src[i] }
        }
    }

    /// Backward over the rows `rows` (pointers to row 0 of the whole batch), accumulating into `gradParams`;
    /// `chunk` selects the column-sum scratch.
    private func backwardRows(_ params: UnsafePointer<Float>, _ input: UnsafePointer<Float>, _ rows: Range<Int>,
                              _ workspace: MLPWorkspace, _ gradOutput: UnsafePointer<Float>,
                              _ gradParams: UnsafeMutablePointer<Float>, _ gradInput: UnsafeMutablePointer<Float>?,
                              chunk: Int) {
        let r0 = rows.lowerBound, n = rows.count
        let L = layerCount
        let outW = widths[L]
        let accD = workspace.partialD + chunk * workspace.partialWidth
        let accF = workspace.partialF + chunk * workspace.partialWidth
        // This chunk's part of the scratch buffers: rows r0 ..< r0 + n at the widest row stride, so chunks never
        // overlap whatever the width of the layer a buffer holds at the moment.
        let scratch0 = workspace.gradBuffers[0] + r0 * maxOutWidth, scratch1 = workspace.gradBuffers[1] + r0 * maxOutWidth
        // dZ of the output layer.
        var dz: UnsafePointer<Float>
        var scratch = 0
        if config.outputActivation == .none {
            dz = gradOutput + r0 * outW
            MLPElementwise.columnSums(dz, count: n, width: outW, into: gradParams + biasOffsets[L - 1], accD, accF)
        } else {
            let buf = scratch0
            buf.update(from: gradOutput + r0 * outW, count: n * outW)
            MLPElementwise.activationBackward(buf, saved: workspace.saved(L - 1) + r0 * outW, count: n, width: outW,
                                              activation: config.outputActivation,
                                              biasGrad: gradParams + biasOffsets[L - 1], accD, accF)
            dz = UnsafePointer(buf)
            scratch = 1
        }
        for l in stride(from: L - 1, through: 0, by: -1) {
            let inW = widths[l], oW = widths[l + 1]
            let prevA = l == 0 ? input + r0 * inW : UnsafePointer(workspace.activations[l - 1] + r0 * inW)
            // dW_l += dZ_l^T A_{l-1} : (out x n) (n x in); the batch is the reduction dimension k.
            BLAS.sgemm(transA: true, transB: false, m: oW, n: inW, k: n, a: dz, lda: oW, b: prevA, ldb: inW,
                       beta: 1, c: gradParams + weightOffsets[l], ldc: inW)
            if l > 0 {
                // dA_{l-1} = dZ_l W_l : (n x out) (out x in).
                let da = scratch == 0 ? scratch0 : scratch1
                BLAS.sgemm(transA: false, transB: false, m: n, n: inW, k: oW, a: dz, lda: oW,
                           b: params + weightOffsets[l], ldb: inW, beta: 0, c: da, ldc: inW)
                MLPElementwise.activationBackward(da, saved: workspace.saved(l - 1) + r0 * inW, count: n, width: inW,
                                                  activation: config.activation,
                                                  biasGrad: gradParams + biasOffsets[l - 1], accD, accF)
                dz = UnsafePointer(da)
                scratch ^= 1
            } else if let gradInput {
                BLAS.sgemm(transA: false, transB: false, m: n, n: inW, k: oW, a: dz, lda: oW,
                           b: params + weightOffsets[0], ldb: inW, beta: 0, c: gradInput + r0 * inW, ldc: inW)
            }
        }
    }

    /// Floating-point operations of the GEMMs of one forward (+ backward) over `count` rows, counting 2 m n k each.
    public func gemmFLOPs(count: Int, backward: Bool, inputGradient: Bool) -> Double {
        var f = 0.0
        for l in 0..<layerCount {
            let mnk = 2 * Double(count) * Double(widths[l]) * Double(widths[l + 1])
            f += mnk
            if backward { f += mnk; if l > 0 || inputGradient { f += mnk } }
        }
        return f
    }
}

/// Caller-owned buffers for `MLP.forward` / `backward`: the saved post-activations of every layer and the backward
/// scratch. Allocated for `maxBatch` rows up front and regrown (never shrunk) by a forward over more rows, so a
/// training loop with a fixed batch allocates nothing per call. One workspace per concurrent user (not Sendable).
public final class MLPWorkspace {
    /// Layer widths of the MLP this workspace serves.
    public let widths: [Int]
    /// Rows the buffers hold now.
    public private(set) var capacity: Int = 0
    /// Row chunks run concurrently when `BLAS.threads == 1` (see `MLP.forward`). Deterministic for a fixed value.
    public var threads: Int {
        didSet { threads = max(1, threads); ensurePartials() }
    }
    /// Rows of the last forward (what backward expects).
    var savedCount: Int = -1
    /// Post-activation of layer l, capacity x widths[l+1] (the output layer's only when it has an activation).
    var activations: [UnsafeMutablePointer<Float>] = []
    /// act'(Z_l), capacity x widths[l+1], for layers whose derivative is not cheap to get from A_l (softplus).
    var derivatives: [UnsafeMutablePointer<Float>?] = []
    /// Whether layer l keeps its derivative (softplus).
    private let keepsDerivative: [Bool]
    /// Two ping-pong buffers of capacity x maxOutWidth for dA / dZ.
    var gradBuffers: [UnsafeMutablePointer<Float>] = []
    /// Per-chunk column-sum accumulators: `partialWidth` Doubles and Floats per chunk.
    var partialD: UnsafeMutablePointer<Double>
    var partialF: UnsafeMutablePointer<Float>
    /// Per-chunk parameter gradients (threads x parameterCount) when a backward runs in several chunks.
    var partialGrads: UnsafeMutablePointer<Float>
    private var partialThreads = 0
    let partialWidth: Int
    let parameterCount: Int

    public init(mlp: MLP, maxBatch: Int, threads: Int = 1) {
        widths = mlp.widths
        keepsDerivative = (0..<mlp.layerCount).map {
            if case .softplus = mlp.activation(ofLayer: $0) { return true } else { return false }
        }
        partialWidth = (mlp.maxOutWidth + 7) / 8 * 8
        parameterCount = mlp.parameterCount
        self.threads = max(1, threads)
        partialD = .allocate(capacity: 1)
        partialF = .allocate(capacity: 1)
        partialGrads = .allocate(capacity: 1)
        ensurePartials()
        ensureCapacity(max(1, maxBatch))
    }

    deinit {
        release()
        partialD.deallocate(); partialF.deallocate(); partialGrads.deallocate()
    }

    private func release() {
        for p in activations { p.deallocate() }
        for p in gradBuffers { p.deallocate() }
        for p in derivatives { p?.deallocate() }
        activations = []; gradBuffers = []; derivatives = []
    }

    /// The buffer `MLPElementwise.activationBackward` reads for layer l: act'(Z_l) when kept, else A_l.
    func saved(_ l: Int) -> UnsafeMutablePointer<Float> { derivatives[l] ?? activations[l] }

    private func ensurePartials() {
        guard threads > partialThreads else { return }
        partialD.deallocate(); partialF.deallocate(); partialGrads.deallocate()
        partialD = .allocate(capacity: threads * partialWidth)
        partialF = .allocate(capacity: threads * partialWidth)
        partialGrads = .allocate(capacity: threads * parameterCount)
        partialThreads = threads
    }

    /// Grows the buffers to hold `rows` rows (contents are not kept).
    public func ensureCapacity(_ rows: Int) {
        guard rows > capacity else { return }
        release()
        let maxOut = widths.dropFirst().max()!
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            return p
        }
        for l in 1..<widths.count {
            activations.append(buffer(rows * widths[l]))
            derivatives.append(keepsDerivative[l - 1] ? buffer(rows * widths[l]) : nil)
        }
        gradBuffers = [buffer(rows * maxOut), buffer(rows * maxOut)]
        capacity = rows
        savedCount = -1
    }
}

/// The workspace handed to concurrent row chunks. @unchecked Sendable is safe because the chunks touch disjoint rows
/// of its buffers and their own per-chunk scratch, and `Parallel.forEachChunk` returns after all of them finished.
struct SendableWorkspace: @unchecked Sendable {
    let w: MLPWorkspace
    init(_ w: MLPWorkspace) { self.w = w }
}

// MARK: - Elementwise passes

/// The fused elementwise passes around the GEMMs, over row-major count x width blocks, in SIMD8 groups of columns
/// (a zero-padded group for the last width % 8 columns). Single-threaded: the callers split the batch.
enum MLPElementwise {
    /// z[r, j] = act(z[r, j] + bias[j]) in place; also into `copy` (same shape) when given; act'(z + bias) into
    /// `derivative` (required for softplus, ignored otherwise).
    static func biasActivate(_ z: UnsafeMutablePointer<Float>, count n: Int, width: Int, bias: UnsafePointer<Float>,
                             activation: Activation, copy: UnsafeMutablePointer<Float>?,
                             derivative: UnsafeMutablePointer<Float>?) {
        switch activation {
        case .none: mapRows(z, n, width, bias, copy, IdentityOp())
        case .relu: mapRows(z, n, width, bias, copy, ReluOp())
        case .sigmoid: mapRows(z, n, width, bias, copy, SigmoidOp())
        case .softplus(let beta): mapRowsWithDerivative(z, n, width, bias, derivative!, SoftplusOp(beta: beta))
        }
    }

    @inline(__always)
    private static func mapRows<Op: SIMDActivation>(_ z: UnsafeMutablePointer<Float>, _ rows: Int, _ width: Int,
                                                    _ bias: UnsafePointer<Float>, _ copy: UnsafeMutablePointer<Float>?,
                                                    _ op: Op) {
        let full = width / 8 * 8, tail = width - full
        var tailBias = SIMD8<Float>(repeating: 0)
        for j in 0..<tail { tailBias[j] = bias[full + j] }
        for r in 0..<rows {
            let row = z + r * width
            var j = 0
            while j < full {
                let v = op.value(load8(row + j) + load8(bias + j))
                store8(v, row + j)
                if let copy { store8(v, copy + r * width + j) }
                j += 8
            }
            if tail > 0 {
                var t = SIMD8<Float>(repeating: 0)
                for q in 0..<tail { t[q] = row[full + q] }
                let v = op.value(t + tailBias)
                for q in 0..<tail { row[full + q] = v[q] }
                if let copy { for q in 0..<tail { copy[r * width + full + q] = v[q] } }
            }
        }
    }

    /// Like `mapRows`, also storing act'(z) (for activations whose derivative comes from the forward pass).
    @inline(__always)
    private static func mapRowsWithDerivative(_ z: UnsafeMutablePointer<Float>, _ rows: Int, _ width: Int,
                                              _ bias: UnsafePointer<Float>, _ deriv: UnsafeMutablePointer<Float>,
                                              _ op: SoftplusOp) {
        let full = width / 8 * 8, tail = width - full
        var tailBias = SIMD8<Float>(repeating: 0)
        for j in 0..<tail { tailBias[j] = bias[full + j] }
        for r in 0..<rows {
            let row = z + r * width, drow = deriv + r * width
            var j = 0
            while j < full {
                let (v, d) = op.valueAndDerivative(load8(row + j) + load8(bias + j))
                store8(v, row + j)
                store8(d, drow + j)
                j += 8
            }
            if tail > 0 {
                var t = SIMD8<Float>(repeating: 0)
                for q in 0..<tail { t[q] = row[full + q] }
                let (v, d) = op.valueAndDerivative(t + tailBias)
                for q in 0..<tail { row[full + q] = v[q]; drow[full + q] = d[q] }
            }
        }
    }

    /// g[r, j] *= act'(z[r, j]) in place, where `saved` holds act'(z) for softplus and the post-activations a
    /// otherwise; adds the column sums of the result (the bias gradient) into `biasGrad`. `accD` / `accF` are
    /// scratch of at least width rounded up to 8.
    static func activationBackward(_ g: UnsafeMutablePointer<Float>, saved: UnsafePointer<Float>, count n: Int,
                                   width: Int, activation: Activation, biasGrad: UnsafeMutablePointer<Float>,
                                   _ accD: UnsafeMutablePointer<Double>, _ accF: UnsafeMutablePointer<Float>) {
        switch activation {
        case .none: derivRows(g, saved, n, width, accD, accF, IdentityOp())
        case .relu: derivRows(g, saved, n, width, accD, accF, ReluOp())
        case .sigmoid: derivRows(g, saved, n, width, accD, accF, SigmoidOp())
        case .softplus: derivRows(g, saved, n, width, accD, accF, SavedDerivativeOp())
        }
        for j in 0..<width { biasGrad[j] += Float(accD[j]) }
    }

    /// Adds the column sums of g (count x width) into `out`.
    static func columnSums(_ g: UnsafePointer<Float>, count n: Int, width: Int, into out: UnsafeMutablePointer<Float>,
                           _ accD: UnsafeMutablePointer<Double>, _ accF: UnsafeMutablePointer<Float>) {
        sumRows(g, n, width, accD, accF)
        for j in 0..<width { out[j] += Float(accD[j]) }
    }

    /// Rows per Float block before the block's column sums are flushed into Double (keeps the sums accurate over
    /// long batches while the inner loop stays in Float SIMD).
    private static let block = 64

    @inline(__always)
    private static func derivRows<Op: SIMDActivation>(_ g: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>,
                                                      _ rows: Int, _ width: Int, _ accD: UnsafeMutablePointer<Double>,
                                                      _ accF: UnsafeMutablePointer<Float>, _ op: Op) {
        let full = width / 8 * 8, tail = width - full
        let groups = (width + 7) / 8
        accD.initialize(repeating: 0, count: groups * 8)
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + block)
            accF.initialize(repeating: 0, count: groups * 8)
            for r in r0..<r1 {
                let gr = g + r * width, ar = a + r * width
                var j = 0
                while j < full {
                    let v = load8(gr + j) * op.derivative(output: load8(ar + j))
                    store8(v, gr + j)
                    store8(load8(accF + j) + v, accF + j)
                    j += 8
                }
                if tail > 0 {
                    var tg = SIMD8<Float>(repeating: 0), ta = SIMD8<Float>(repeating: 0)
                    for q in 0..<tail { tg[q] = gr[full + q]; ta[q] = ar[full + q] }
                    let v = tg * op.derivative(output: ta)
                    for q in 0..<tail { gr[full + q] = v[q]; accF[full + q] += v[q] }
                }
            }
            for j in 0..<width { accD[j] += Double(accF[j]) }
            r0 = r1
        }
    }

    @inline(__always)
    private static func sumRows(_ g: UnsafePointer<Float>, _ rows: Int, _ width: Int,
                                _ accD: UnsafeMutablePointer<Double>, _ accF: UnsafeMutablePointer<Float>) {
        let full = width / 8 * 8
        let groups = (width + 7) / 8
        accD.initialize(repeating: 0, count: groups * 8)
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + block)
            accF.initialize(repeating: 0, count: groups * 8)
            for r in r0..<r1 {
                let gr = g + r * width
                var j = 0
                while j < full { store8(load8(accF + j) + load8(gr + j), accF + j); j += 8 }
                while j < width { accF[j] += gr[j]; j += 1 }
            }
            for j in 0..<width { accD[j] += Double(accF[j]) }
            r0 = r1
        }
    }

    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) static func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
}

/// An activation on SIMD8 lanes, as a type so the row loops are specialised and inlined per activation
/// (closures were not inlined and cost a call per 8 values).
protocol SIMDActivation {
    /// act(z)
    func value(_ z: SIMD8<Float>) -> SIMD8<Float>
    /// act'(z) expressed through the output a = act(z) (the only thing the forward pass keeps).
    func derivative(output a: SIMD8<Float>) -> SIMD8<Float>
}

struct IdentityOp: SIMDActivation {
    @inline(__always) func value(_ z: SIMD8<Float>) -> SIMD8<Float> { z }
    @inline(__always) func derivative(output a: SIMD8<Float>) -> SIMD8<Float> { SIMD8(repeating: 1) }
}

struct ReluOp: SIMDActivation {
    @inline(__always) func value(_ z: SIMD8<Float>) -> SIMD8<Float> { z.replacing(with: 0, where: z .< 0) }
    /// 1 where a > 0 (z > 0), else 0.
    @inline(__always) func derivative(output a: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(repeating: 0).replacing(with: 1, where: a .> 0)
    }
}

struct SigmoidOp: SIMDActivation {
    @inline(__always) func value(_ z: SIMD8<Float>) -> SIMD8<Float> { SIMDMath.sigmoid(z) }
    @inline(__always) func derivative(output a: SIMD8<Float>) -> SIMD8<Float> { a * (1 - a) }
}

/// Softplus keeps its derivative sigmoid(beta z) from the forward pass, where it costs one division (it shares
/// exp(-|beta z|) with the value); recomputing it from a = softplus(z) as -expm1(-beta a) would cost another exp.
struct SoftplusOp {
    let beta: Float, invBeta: Float
    init(beta: Float) { self.beta = beta; invBeta = 1 / beta }
    @inline(__always) func valueAndDerivative(_ z: SIMD8<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
        SIMDMath.softplusAndSigmoid(z, beta: beta, invBeta: invBeta)
    }
}

/// Backward through an activation whose derivative was stored by the forward pass: `output` is act'(z).
struct SavedDerivativeOp: SIMDActivation {
    @inline(__always) func value(_ z: SIMD8<Float>) -> SIMD8<Float> { z }
    @inline(__always) func derivative(output d: SIMD8<Float>) -> SIMD8<Float> { d }
}

/// A raw pointer handed to `Parallel.forEachChunk` workers. @unchecked Sendable is safe because every worker writes
/// only its own disjoint rows (or its own per-chunk accumulator) and the call returns after all workers finished.
struct SendablePointer<T>: @unchecked Sendable {
    let p: UnsafeMutablePointer<T>
    init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}

/// Vectorisable transcendental functions on SIMD8<Float> (range reduction + short polynomials, ~1e-7 relative).
enum SIMDMath {
    private static let log2e: Float = 1.442_695_04
    /// ln 2 split so that n * ln2Hi is exact for |n| < 2^9.
    private static let ln2Hi: Float = 0.693_359_375
    private static let ln2Lo: Float = -2.121_944_4e-4

    /// Arguments below this give exp(underflowBound) ~ 2.7e-33 from `expNonPositive`; callers flush those lanes to 0.
    /// Well above Float's denormal range (1.2e-38) so that no intermediate of softplus / sigmoid is denormal:
    /// denormal arithmetic takes microcode assists, and lanes with |beta z| > 87 are common (beta = 100).
    static let underflowBound: Float = -75

    /// exp(x) for x <= 0; arguments below `underflowBound` give exp(underflowBound).
    @inline(__always)
    static func expNonPositive(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // (compare + select: `clamped` / `pointwiseMin` are not inlined and run lane by lane)
        let x = x.replacing(with: underflowBound, where: x .< underflowBound)
        // n = round(x / ln 2) through the 1.5 * 2^23 trick: the low mantissa bits then hold n.
        let magic: Float = 12_582_912
        let shifted = x * log2e + magic
        let n = shifted - magic
        let r = x - n * ln2Hi - n * ln2Lo                              // |r| <= ln2 / 2
        // Degree-6 polynomial for exp(r), fitted (iteratively reweighted least squares towards minimax relative
        // error, constant term fixed to 1) on |r| <= ln2/2: relative error 2.2e-9 before Float rounding.
        // Estrin's scheme: the loop is latency-bound (SSE, two 4-lane chains per SIMD8), so short dependency chains
        // beat Horner's fewer operations.
        let r2 = r * r, r4 = r2 * r2
        let p01 = 1 + r, p23 = 0.499_999_94 + 0.166_664_21 * r, p45 = 4.166_772_2e-2 + 8.374_748e-3 * r
        let p = (p01 + r2 * p23) + r4 * (p45 + r2 * 1.385_938_3e-3)
        // SIMD has no bitPattern API; the casts reinterpret 8 x 32 bits.
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- Int32(bitPattern: magic.bitPattern)
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
        return p * scale
    }

    /// atanh(s) / s as a polynomial in s^2 for 0 <= s <= 1/3, so that log(1 + t) = 2 s P(s^2) with s = t / (2 + t)
    /// for 0 <= t <= 1. Degree 4, fitted like the exp polynomial (relative error 4.5e-9 before rounding; the Taylor
    /// coefficients 1, 1/3, 1/5, 1/7, ... would need two more terms). Estrin's scheme.
    @inline(__always)
    static func log1pPolynomial(_ s: SIMD8<Float>) -> SIMD8<Float> {
        let s2 = s * s, s4 = s2 * s2
        return (1 + 0.333_332_06 * s2) + s4 * ((0.200_108_07 + 0.140_004_46 * s2) + s4 * 0.140_075_15)
    }

    /// -|x| (sets the sign bit: one instruction instead of compare + select).
    @inline(__always)
    static func negativeAbs(_ x: SIMD8<Float>) -> SIMD8<Float> {
        unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) | 0x8000_0000, to: SIMD8<Float>.self)
    }

    /// (softplus, its derivative) = (log(1 + exp(beta z)) / beta, sigmoid(beta z)), from t = exp(-|beta z|):
    /// softplus = max(z, 0) + log1p(t) / beta; sigmoid = 1/(1+t) for z >= 0, t/(1+t) for z < 0.
    /// Where |beta z| > 75 the exp(-|beta z|) terms (< 2.7e-33) are flushed to 0.
    @inline(__always)
    static func softplusAndSigmoid(_ z: SIMD8<Float>, beta: Float, invBeta: Float) -> (SIMD8<Float>, SIMD8<Float>) {
        let bz = beta * z
        let negative = z .< 0
        let x = negativeAbs(bz)
        let underflow = x .< underflowBound
        let t = expNonPositive(x)
        // One division for both 1/(1+t) and s = t/(2+t) (divisions are the slowest part on SSE).
        let q = 1 / ((1 + t) * (2 + t))
        let r = (2 + t) * q
        let s = t * (1 + t) * q
        // The polynomial in s^2, s^4 of log1p only needs s to ~1e-9 (below, it is 1 to Float precision); clamping
        // keeps s^4 out of the denormal range.
        let sc = s.replacing(with: 1e-9, where: s .< 1e-9)
        let log1p = ((s + s) * log1pPolynomial(sc)).replacing(with: 0, where: underflow)
        let value = z.replacing(with: 0, where: negative) + log1p * invBeta
        let sigmoidNegative = (t * r).replacing(with: 0, where: underflow)
        return (value, r.replacing(with: sigmoidNegative, where: negative))
    }

    /// 1 / (1 + exp(-z)), from t = exp(-|z|): 1/(1+t) for z >= 0, t/(1+t) for z < 0.
    @inline(__always)
    static func sigmoid(_ z: SIMD8<Float>) -> SIMD8<Float> {
        let x = negativeAbs(z)
        let t = expNonPositive(x)
        let r = 1 / (1 + t)
        let negativeSide = (t * r).replacing(with: 0, where: x .< underflowBound)  // flush < 2.7e-33 to 0
        return r.replacing(with: negativeSide, where: z .< 0)
    }
}

// MARK: - Benchmark

/// Throughput of the SDF-sized MLP against bare sgemm, measured in the same run (for `pano bench kernels`).
public enum MLPBenchmark {
    /// How the MLP uses `threads` cores.
    public enum Threading: Sendable {
        /// `BLAS.threads = 1`, `MLPWorkspace.threads = threads`: the batch is split into row chunks run concurrently
        /// (the mode `MLP` is built for; OpenBLAS threads scale poorly on the batch-long reductions of dW).
        case splitBatch
        /// `BLAS.threads = threads`, one chunk: OpenBLAS threads each GEMM, the elementwise passes run on one core.
        case openBLAS
    }

    /// Forward + backward (with input gradient) GFLOP/s of MLP 32 -> 64 -> 64 -> 16 over `batch` rows, counting
    /// 2 m n k per GEMM (the elementwise passes count nothing), and sgemm 1024^3 GFLOP/s with OpenBLAS on `threads`
    /// threads, measured in the same run. Each figure is the mean over repeated calls for at least `seconds`.
    /// Restores the previous `BLAS.threads`.
    public static func run(batch: Int = 65536, threads: Int, seconds: Double, activation: Activation = .relu,
                           threading: Threading = .splitBatch) -> (mlpGFLOPS: Double, sgemmPeakGFLOPS: Double) {
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        BLAS.threads = threading == .splitBatch ? 1 : threads
        let mlp = try! MLP(config: MLPConfig(inputs: 32, hidden: [64, 64], outputs: 16, activation: activation))
        let ws = MLPWorkspace(mlp: mlp, maxBatch: batch, threads: threading == .splitBatch ? threads : 1)
        let params = mlp.initialParameters(seed: 1)
        var rng = SeededRNG(seed: 2)
        let input = (0..<(batch * 32)).map { _ in Float(rng.uniform(-1, 1)) }
        let gradOut = (0..<(batch * 16)).map { _ in Float(rng.uniform(-1, 1)) / Float(batch) }
        var out = [Float](repeating: 0, count: batch * 16)
        var grads = [Float](repeating: 0, count: mlp.parameterCount)
        var gradIn = [Float](repeating: 0, count: batch * 32)
        let mlpRate = params.withUnsafeBufferPointer { p in
            input.withUnsafeBufferPointer { x in
                gradOut.withUnsafeBufferPointer { go in
                    out.withUnsafeMutableBufferPointer { y in
                        grads.withUnsafeMutableBufferPointer { g in
                            gradIn.withUnsafeMutableBufferPointer { gi in
                                rate(seconds: seconds, flops: mlp.gemmFLOPs(count: batch, backward: true, inputGradient: true)) {
                                    mlp.forward(params: p.baseAddress!, input: x.baseAddress!, count: batch, workspace: ws,
                                                output: y.baseAddress!)
                                    mlp.backward(params: p.baseAddress!, input: x.baseAddress!, count: batch, workspace: ws,
                                                 gradOutput: go.baseAddress!, gradParams: g.baseAddress!,
                                                 gradInput: gi.baseAddress!)
                                }
                            }
                        }
                    }
                }
            }
        }
        BLAS.threads = threads
        let n = 1024
        let a = (0..<(n * n)).map { _ in Float(rng.uniform(-1, 1)) }
        let b = (0..<(n * n)).map { _ in Float(rng.uniform(-1, 1)) }
        var c = [Float](repeating: 0, count: n * n)
        let peak = a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    rate(seconds: seconds, flops: 2 * Double(n) * Double(n) * Double(n)) {
                        BLAS.sgemm(m: n, n: n, k: n, a: pa.baseAddress!, lda: n, b: pb.baseAddress!, ldb: n,
                                   c: pc.baseAddress!, ldc: n)
                    }
                }
            }
        }
        return (mlpRate, peak)
    }

    /// GFLOP/s of `body` (one warm-up call, then repeated for at least `seconds`; mean over the timed calls).
    static func rate(seconds: Double, flops: Double, _ body: () -> Void) -> Double {
        body()
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        var calls = 0
        repeat {
            body()
            calls += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < seconds || calls < 3
        return flops * Double(calls) / elapsed / 1e9
    }
}
