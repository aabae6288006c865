import Kernels
import MapCore

/// Vertex colours for a geometry-only mesh: the mean colour of the frames that see each vertex (projected inside the
/// image, in front, and within `margin` of that frame's depth). Vertices no frame sees get grey. `observable` marks the
/// vertices that lie in some frame's view no deeper than its measured depth + margin: the others sit behind observed
/// surfaces or outside every view, where the field was never constrained.
public enum VertexColoring {
    /// A camera as plain numbers (no references, so the hot loop does no reference counting).
    struct View {
        var r: (Float, Float, Float, Float, Float, Float, Float, Float, Float)
        var t: SIMD3<Float>
        var fx: Float, fy: Float, cx: Float, cy: Float
        var width: Int, height: Int
        /// This frame's depth and colour pixels (valid inside `withPixels`).
        var depth: UnsafePointer<Float>
        var rgb: UnsafePointer<UInt8>
    }

    public static func colors(vertices: [SIMD3<Float>], frames: [Frame], margin: Float = 0.03,
                              threads: Int = Parallel.defaultThreads) -> (colors: [SIMD3<UInt8>], observable: [Bool]) {
        var out = [SIMD3<UInt8>](repeating: SIMD3(128, 128, 128), count: vertices.count)
        var observable = [Bool](repeating: false, count: vertices.count)
        // The frames' pixels are read in place (no concatenated copy: 64 keyframes at 640x480 would be ~140 MiB).
        withPixels(frames[...], views: []) { views in
        vertices.withUnsafeBufferPointer { vp in
        views.withUnsafeBufferPointer { vw in
        observable.withUnsafeMutableBufferPointer { ob in
        out.withUnsafeMutableBufferPointer { o in
            let shared = Shared(vertices: vp.baseAddress!, views: vw.baseAddress!, viewCount: vw.count,
                                seen: ob.baseAddress!, out: o.baseAddress!)
            Parallel.forEachChunk(count: vertices.count, threads: threads) { _, range in
                for i in range { shared.shade(i, margin: margin) }
            }
        } } } } }
        return (out, observable)
    }

    /// Calls `body` with a `View` per frame whose pixel pointers stay valid during the call (one nested
    /// `withUnsafeBufferPointer` per frame).
    static func withPixels(_ frames: ArraySlice<Frame>, views: [View], _ body: ([View]) -> Void) {
        guard let f = frames.first else { return body(views) }
        f.depth.data.withUnsafeBufferPointer { d in
            f.rgb.data.withUnsafeBufferPointer { c in
                let T_C_W = f.T_W_C.inverse
                let m = T_C_W.rotation, k = f.intrinsics
                let v = View(r: (Float(m.r0.x), Float(m.r0.y), Float(m.r0.z), Float(m.r1.x), Float(m.r1.y), Float(m.r1.z),
                                 Float(m.r2.x), Float(m.r2.y), Float(m.r2.z)),
                             t: SIMD3(Float(T_C_W.translation.x), Float(T_C_W.translation.y), Float(T_C_W.translation.z)),
                             fx: Float(k.fx), fy: Float(k.fy), cx: Float(k.cx), cy: Float(k.cy),
                             width: k.width, height: k.height, depth: d.baseAddress!, rgb: c.baseAddress!)
                withPixels(frames.dropFirst(), views: views + [v], body)
            }
        }
    }

    /// Raw pointers shared by the parallel chunks. @unchecked Sendable is safe: inputs are only read, and chunk i of
    /// `Parallel.forEachChunk` writes only `seen[i]` and `out[i]` for the indices of its own range; the buffers outlive
    /// the call because `forEachChunk` returns after all chunks finish.
    struct Shared: @unchecked Sendable {
        let vertices: UnsafePointer<SIMD3<Float>>
        let views: UnsafePointer<View>
        let viewCount: Int
        let seen: UnsafeMutablePointer<Bool>
        let out: UnsafeMutablePointer<SIMD3<UInt8>>

        @inline(__always) func shade(_ i: Int, margin: Float) {
            let p = vertices[i]
            var sum = SIMD3<Float>(repeating: 0), n: Float = 0
            for j in 0..<viewCount {
                let v = views[j]
                let z = v.r.6 * p.x + v.r.7 * p.y + v.r.8 * p.z + v.t.z
                guard z > 1e-3 else { continue }
                let x = v.r.0 * p.x + v.r.1 * p.y + v.r.2 * p.z + v.t.x
                let y = v.r.3 * p.x + v.r.4 * p.y + v.r.5 * p.z + v.t.y
                let uf = v.fx * x / z + v.cx, wf = v.fy * y / z + v.cy
                guard uf > -0.5, wf > -0.5, uf < Float(v.width) - 0.5, wf < Float(v.height) - 0.5 else { continue }
                let pix = Int(wf.rounded()) * v.width + Int(uf.rounded())
                let d = v.depth[pix]
                guard d > 0, z <= d + margin else { continue }
                seen[i] = true
                guard abs(d - z) <= margin else { continue }
                sum += SIMD3(Float(v.rgb[3 * pix]), Float(v.rgb[3 * pix + 1]), Float(v.rgb[3 * pix + 2]))
                n += 1
            }
            if n > 0 {
                let c = (sum / n).rounded(.toNearestOrEven)
                out[i] = SIMD3(UInt8(c.x), UInt8(c.y), UInt8(c.z))
            }
        }
    }
}
