#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The parameter-free Bayes panoptic head (paper Sec. V-B, Eq. 18; DESIGN.md "Panoptic head"), at pixel level.
/// Plain buffers, no allocation; one pixel at a time.
///
/// For a pixel with rendered semantic distribution u (C classes, sums to 1, from `SemanticRendering`) and rendered
/// instance distribution m (N tokens, non-negative, from `InstanceRendering`), with S stuff classes s_0..s_{S-1} and
/// the thing classes:
///     P_thing = sum over thing classes c of u_c
///     l_P = [ u_{s_0}, ..., u_{s_{S-1}},  P_thing m_0 / (sum_j m_j + eps), ..., P_thing m_{N-1} / (sum_j m_j + eps) ]
///                                                                                        // panoptic head, Eq. 18
/// (S + N outputs: stuff classes in the order given, then tokens). When stuff and thing classes together cover all
/// C classes and sum_j m_j >> eps, l_P sums to 1 (Eq. 19-21); with m = 0 the thing mass is lost (the row sums to the
/// stuff mass). eps (default `defaultEpsilon`) only keeps a pixel that no token reaches finite.
///     L_pan = (1 / N_l) sum over the N_l pixels with target t >= 0 of -log(l_P[t] + 1e-12)   // L_pan
///
/// Gradients (g = -1 / (N_l (l_P[t] + 1e-12)), D = sum_j m_j + eps):
///     t = stuff s:          dL/du_{c_s} = g
///     t = S + i (token i):  dL/du_c = g m_i / D for every thing class c;
///                           dL/dm_j = g P_thing (delta_ij / D - m_i / D^2)
public enum PanopticHead {
    /// Epsilon added to the pixel's total instance mass (see the type's documentation).
    public static let defaultEpsilon: Float = 1e-6
    /// Added inside the log of L_pan.
    public static let logFloor: Float = 1e-12

    /// panoptic: P x (S + N) written; S = stuffClasses.count. stuffClasses/thingClasses: class indices into 0..<C
    /// (disjoint; together usually all C).
    public static func forward(semantic: UnsafePointer<Float>, instance: UnsafePointer<Float>, pixels P: Int,
                               classes C: Int, tokens N: Int, stuffClasses: UnsafePointer<Int32>, stuffCount S: Int,
                               thingClasses: UnsafePointer<Int32>, thingCount T: Int,
                               epsilon: Float = defaultEpsilon, panoptic: UnsafeMutablePointer<Float>) {
        precondition(P >= 0 && C >= 0 && N >= 0 && S >= 0 && T >= 0, "PanopticHead.forward: negative size")
        checkClasses(stuffClasses, S, thingClasses, T, C)
        let width = S + N
        for p in 0..<P {
            let u = semantic + p * C, m = instance + p * N, out = panoptic + p * width
            for s in 0..<S { out[s] = u[Int(stuffClasses[s])] }
            var thing: Float = 0
            for t in 0..<T { thing += u[Int(thingClasses[t])] }
            var mass: Float = 0
            for i in 0..<N { mass += m[i] }
            let scale = thing / (mass + epsilon)
            for i in 0..<N { out[S + i] = scale * m[i] }
        }
    }

    /// L_pan and its gradients: returns (loss, labelled) and, when non-nil, WRITES gradSemantic (P x C) and
    /// gradInstance (P x N) (zero rows for unlabelled pixels). `panoptic` is forward's output for the same inputs.
    /// targets: P entries in -1..<(S + N) (negative: no label).
    public static func loss(semantic: UnsafePointer<Float>, instance: UnsafePointer<Float>, pixels P: Int,
                            classes C: Int, tokens N: Int, stuffClasses: UnsafePointer<Int32>, stuffCount S: Int,
                            thingClasses: UnsafePointer<Int32>, thingCount T: Int, epsilon: Float = defaultEpsilon,
                            panoptic: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                            gradSemantic: UnsafeMutablePointer<Float>?,
                            gradInstance: UnsafeMutablePointer<Float>?) -> (loss: Float, labelled: Int) {
        precondition(P >= 0 && C >= 0 && N >= 0 && S >= 0 && T >= 0, "PanopticHead.loss: negative size")
        checkClasses(stuffClasses, S, thingClasses, T, C)
        let width = S + N
        gradSemantic?.update(repeating: 0, count: P * C)
        gradInstance?.update(repeating: 0, count: P * N)
        var labelled = 0
        for p in 0..<P where targets[p] >= 0 {
            precondition(Int(targets[p]) < width, "PanopticHead.loss: target \(targets[p]) of pixel \(p) outside -1..<\(width)")
            labelled += 1
        }
        guard labelled > 0 else { return (0, 0) }
        let norm = 1 / Float(labelled)
        var total: Double = 0
        for p in 0..<P where targets[p] >= 0 {
            let t = Int(targets[p])
            let value = panoptic[p * width + t] + logFloor
            total -= Double(logf(value))
            let g = -norm / value
            if t < S {
                gradSemantic?[p * C + Int(stuffClasses[t])] += g
                continue
            }
            let i = t - S
            let u = semantic + p * C, m = instance + p * N
            var mass: Float = 0
            for j in 0..<N { mass += m[j] }
            let d = mass + epsilon
            if let gu = gradSemantic {
                let gt = g * m[i] / d
                for k in 0..<T { gu[p * C + Int(thingClasses[k])] += gt }
            }
            if let gm = gradInstance {
                var thing: Float = 0
                for k in 0..<T { thing += u[Int(thingClasses[k])] }
                let a = g * thing / d
                let b = -a * m[i] / d
                let row = gm + p * N
                for j in 0..<N { row[j] = b }
                row[i] += a
            }
        }
        return (Float(total / Double(labelled)), labelled)
    }

    /// Inference: index of the largest of the S + N outputs of one pixel (first on ties).
    @inline(__always)
    public static func argmax(_ row: UnsafePointer<Float>, count: Int) -> Int {
        var best = 0
        for k in 1..<max(count, 1) where row[k] > row[best] { best = k }
        return best
    }

    private static func checkClasses(_ stuff: UnsafePointer<Int32>, _ S: Int, _ things: UnsafePointer<Int32>,
                                     _ T: Int, _ C: Int) {
        for s in 0..<S {
            precondition(stuff[s] >= 0 && Int(stuff[s]) < C, "PanopticHead: stuff class \(stuff[s]) outside 0..<\(C)")
        }
        for t in 0..<T {
            precondition(things[t] >= 0 && Int(things[t]) < C, "PanopticHead: thing class \(things[t]) outside 0..<\(C)")
        }
    }
}
