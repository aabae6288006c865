/// Integer-factor reduction of RGB-D images (live frames mapped at a lower resolution, Gaussians trained on wide
/// frames): colour is box-filtered over f x f blocks; depth is the mean of a block's usable values (in [near, far])
/// when they span at most 5 % of it, else 0 (no depth across an edge, where a mean would float between surfaces).
public enum FrameReduction {
    /// The reduced colour (interleaved RGB) and depth of `rgb` / `depth` (`width` x `height` at full size).
    public static func reduce(rgb: [UInt8], depth: [Float], width W: Int, height H: Int, factor f: Int,
                              near: Float, far: Float) -> (rgb: [UInt8], depth: [Float]) {
        let w = W / f, h = H / f
        var outRGB = [UInt8](repeating: 0, count: 3 * w * h), outDepth = [Float](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                var c = SIMD3<Int>(repeating: 0), sum: Float = 0, n: Float = 0
                var lo = Float.infinity, hi: Float = 0
                for j in 0..<f {
                    for i in 0..<f {
                        let p = (y * f + j) * W + x * f + i
                        c &+= SIMD3(Int(rgb[3 * p]), Int(rgb[3 * p + 1]), Int(rgb[3 * p + 2]))
                        let d = depth[p]
                        if d.isFinite && d >= near && d <= far { sum += d; n += 1; lo = min(lo, d); hi = max(hi, d) }
                    }
                }
                let q = y * w + x, area = f * f
                for ch in 0..<3 { outRGB[3 * q + ch] = UInt8((c[ch] + area / 2) / area) }
                if n > 0, hi - lo <= 0.05 * (sum / n) { outDepth[q] = sum / n }
            }
        }
        return (outRGB, outDepth)
    }
}

extension Intrinsics {
    /// The intrinsics of the image reduced by `factor` (pixel centres: (c + 0.5) / f − 0.5).
    public func reduced(by f: Int) -> Intrinsics {
        let s = Double(f)
        return Intrinsics(fx: fx / s, fy: fy / s, cx: (cx + 0.5) / s - 0.5, cy: (cy + 0.5) / s - 0.5,
                          width: width / f, height: height / f)
    }
}

extension Frame {
    /// This frame reduced by an integer `factor` (see `FrameReduction`); masks take the id at each block's centre
    /// pixel. Depth outside [near, far] counts as missing.
    public func reduced(by factor: Int, near: Float = 0, far: Float = .greatestFiniteMagnitude) -> Frame {
        guard factor > 1 else { return self }
        let k = intrinsics.reduced(by: factor)
        let r = FrameReduction.reduce(rgb: rgb.data, depth: depth.data, width: intrinsics.width,
                                      height: intrinsics.height, factor: factor, near: near, far: far)
        var out = Frame(index: index, timestamp: timestamp, rgb: RGBImage(width: k.width, height: k.height, channels: 3,
                                                                          data: r.rgb),
                        depth: DepthImage(width: k.width, height: k.height, data: r.depth), T_W_C: T_W_C, intrinsics: k)
        if let masks { out.masks = masks.reduced(by: factor) }
        return out
    }
}

extension FrameMasks {
    /// The id at the centre pixel of each `factor` x `factor` block (segments unchanged).
    public func reduced(by f: Int) -> FrameMasks {
        guard f > 1 else { return self }
        let w = ids.width / f, h = ids.height / f
        var data = [UInt16](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { data[y * w + x] = ids[x * f + f / 2, y * f + f / 2] } }
        return FrameMasks(ids: Gray16Image(width: w, height: h, data: data), segments: segments)
    }
}
