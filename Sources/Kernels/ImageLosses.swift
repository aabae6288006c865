import Foundation

/// Image losses and metrics: SSIM (value and gradient, for the photometric loss), L1 (value and gradient), PSNR and
/// depth AbsRel (metrics). Images are plain Float arrays, row-major with interleaved channels: value (row, column,
/// channel) is at `(row * width + column) * channels + channel`; colour values are nominally in [0, 1].
///
/// SSIM (Wang et al. 2004), per channel, on the "valid" region (positions whose whole window lies inside the image):
///     g_a = exp(-(a - r)^2 / (2 sigma^2)) / sum_b exp(-(b - r)^2 / (2 sigma^2)),  a = 0..<k, r = k / 2, sigma = 1.5
///     G = g g^T (k x k, separable, sums to 1); * below is the valid-region correlation with G
///     mu_x = G * x,  mu_y = G * y,  s_xx = G * x^2 - mu_x^2,  s_yy = G * y^2 - mu_y^2,  s_xy = G * (x y) - mu_x mu_y
///     S = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_xx + s_yy + C2)),  C1 = 0.01^2, C2 = 0.03^2
///     ssim = mean of S over the (height - k + 1) x (width - k + 1) valid positions and all channels    // SSIM
/// The window is k = 11; an image with fewer than 11 rows or columns uses the largest odd k <= min(width, height)
/// (same sigma, taps renormalised), so every non-empty image has at least one window and nothing traps. An empty
/// image (width, height or channels 0) has SSIM 1 and zero gradient.
///
/// Gradient with respect to x (y is the fixed target). With A1 = 2 mu_x mu_y + C1, A2 = 2 s_xy + C2,
/// B1 = mu_x^2 + mu_y^2 + C1, B2 = s_xx + s_yy + C2 and the mean's factor n = 1 / (valid positions * channels):
///     dS/dmu_x     = 2 (mu_y (A2 - A1) - mu_x S (B2 - B1)) / (B1 B2)
///     dS/d(G*x^2)  = -S / B2
///     dS/d(G*xy)   = 2 A1 / (B1 B2)
///     dssim/dx_p   = F_mu(p) + 2 x_p F_xx(p) + y_p F_xy(p),   F_. = G^T (n dS/d.)      // SSIM backward
/// where G^T, the adjoint of the valid-region correlation, is the full-region scatter of each valid position's value
/// back over its window (done separably: horizontally per output row, then vertically per input row).
///
/// Precision: moments are Float sums of 121 products, and s_xx = G*x^2 - mu_x^2 cancels where a window is nearly
/// flat, so there S carries rounding error of up to ~1e-4 relative (e.g. constant 0.2 vs 0.6: 0.60017 for 0.60010);
/// on textured images the mean agrees with a Double evaluation to ~1e-6.
///
/// Work: all channels of a row at once (a row of `width * channels` floats; horizontal taps are `channels` apart),
/// 8 lanes at a time with a scalar tail. Rows are split across threads (`Parallel.forEachChunk`); each output value
/// is computed the same way whatever the split and the per-row sums are added in row order, so value and gradient
/// are bit-identical for any thread count.
public enum ImageLosses {
    /// SSIM's stabilising constants, (K1 L)^2 and (K2 L)^2 with L = 1.
    public static let ssimC1: Float = 0.01 * 0.01
    public static let ssimC2: Float = 0.03 * 0.03
    /// Standard deviation of the Gaussian window, pixels.
    public static let ssimSigma: Double = 1.5
    /// Window side for images at least this large in both dimensions.
    public static let ssimMaxWindow = 11

    /// The SSIM window side for an image: 11, or the largest odd number <= min(width, height) for smaller images;
    /// 0 for an empty image.
    public static func ssimWindowSize(width: Int, height: Int) -> Int {
        let m = min(min(width, height), ssimMaxWindow)
        return m <= 0 ? 0 : (m % 2 == 1 ? m : m - 1)
    }

    /// The k normalised 1-D Gaussian taps (sigma `ssimSigma`, centred) of the separable window. The centre tap takes
    /// up the rounding so the Float taps sum to 1 within half an ulp: a window that does not sum to 1 makes
    /// G*x^2 - (G*x)^2 nonzero on flat regions, which C2 = 9e-4 would turn into visible SSIM error.
    public static func ssimTaps(size k: Int) -> [Float] {
        guard k > 0 else { return [] }
        let r = k / 2
        let e = (0..<k).map { exp(-Double(($0 - r) * ($0 - r)) / (2 * ssimSigma * ssimSigma)) }
        let s = e.reduce(0, +)
        var taps = e.map { Float($0 / s) }
        var others = 0.0
        for a in 0..<k where a != r { others += Double(taps[a]) }
        taps[r] = Float(1 - others)
        return taps
    }

    /// Mean SSIM between `x` and `y` (see the type's documentation for the window, constants and region).
    public static func ssim(_ x: [Float], _ y: [Float], width: Int, height: Int, channels: Int,
                            threads: Int = Parallel.defaultThreads) -> Float {
        checkSizes(x, y, width, height, channels, "ssim")
        return x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                ssim(x: xp.baseAddress, y: yp.baseAddress, width: width, height: height, channels: channels,
                     threads: threads, gradient: nil)
            }
        }
    }

    /// The same SSIM and its gradient with respect to x (y is the fixed target). To minimise a loss 1 - ssim, negate
    /// the gradient.
    public static func ssimWithGradient(_ x: [Float], _ y: [Float], width: Int, height: Int, channels: Int,
                                        threads: Int = Parallel.defaultThreads) -> (value: Float, gradient: [Float]) {
        checkSizes(x, y, width, height, channels, "ssimWithGradient")
        var gradient = [Float](repeating: 0, count: x.count)
        let value = x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                gradient.withUnsafeMutableBufferPointer { gp in
                    ssim(x: xp.baseAddress, y: yp.baseAddress, width: width, height: height, channels: channels,
                         threads: threads, gradient: gp.baseAddress)
                }
            }
        }
        return (value, gradient)
    }

    /// Buffer form of `ssim` / `ssimWithGradient`: if `gradient` is given (width * height * channels floats) it is
    /// overwritten with dssim/dx. Pointers may be nil only for an empty image.
    public static func ssim(x: UnsafePointer<Float>?, y: UnsafePointer<Float>?, width w: Int, height h: Int,
                            channels c: Int, threads: Int, gradient: UnsafeMutablePointer<Float>?) -> Float {
        precondition(w >= 0 && h >= 0 && c >= 0, "ImageLosses.ssim: negative size \(w) x \(h) x \(c)")
        let k = ssimWindowSize(width: w, height: h)
        guard k > 0, c > 0, let x, let y else { return 1 }
        let taps = ssimTaps(size: k)
        let rowLen = w * c, outLen = (w - k + 1) * c, hOut = h - k + 1, pad = (k - 1) * c
        var rowSums = [Double](repeating: 0, count: hOut)
        // Horizontally scattered gradient maps (mu, xx, xy) of each output row, full width: hOut x 3 x rowLen.
        let adjoint = gradient.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: hOut * 3 * rowLen) }
        defer { adjoint?.deallocate() }
        taps.withUnsafeBufferPointer { tp in
            rowSums.withUnsafeMutableBufferPointer { sp in
                let plan = SSIMPlan(x: x, y: y, taps: tp.baseAddress!, k: k, c: c, rowLen: rowLen, outLen: outLen,
                                    hOut: hOut, pad: pad, scale: Float(1 / Double(hOut * outLen)), adjoint: adjoint)
                let sums = sp.baseAddress!
                Parallel.forEachChunk(count: hOut, threads: threads) { _, rows in
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: plan.scratchCount)
                    defer { scratch.deallocate() }
                    scratch.update(repeating: 0, count: plan.scratchCount) // the gradient rows' zero padding
                    for i in rows { sums[i] = plan.forwardRow(i, scratch: scratch) }
                }
                if let gradient {
                    Parallel.forEachChunk(count: h, threads: threads) { _, rows in
                        for r in rows { plan.backwardRow(r, gradient: gradient) }
                    }
                }
            }
        }
        var total = 0.0
        for s in rowSums { total += s }
        return Float(total / Double(hOut * outLen))
    }

    /// Mean absolute error over all values, and its subgradient sign(x - y) / n (0 where x == y). Empty: (0, []).
    public static func l1WithGradient(_ x: [Float], _ y: [Float]) -> (value: Float, gradient: [Float]) {
        precondition(x.count == y.count, "ImageLosses.l1WithGradient: \(x.count) vs \(y.count) values")
        let n = x.count
        guard n > 0 else { return (0, []) }
        let inv = 1 / Float(n)
        var gradient = [Float](repeating: 0, count: n)
        var sum = 0.0
        for i in 0..<n {
            let d = x[i] - y[i]
            sum += Double(abs(d))
            gradient[i] = d > 0 ? inv : (d < 0 ? -inv : 0)
        }
        return (Float(sum / Double(n)), gradient)
    }

    /// Weighted L1 over pixels: sum_p w_p sum_c |x_pc - y_pc| / (channels * sum_p w_p), for per-pixel weights w_p >= 0
    /// (`pixelWeights`, one per pixel; a 0/1 mask selects pixels). Gradient w_p sign(x_pc - y_pc) / (channels sum_p w_p).
    /// All weights zero (or no pixels): (0, zero gradient).
    public static func l1WithGradient(_ x: [Float], _ y: [Float], pixelWeights: [Float],
                                      channels c: Int) -> (value: Float, gradient: [Float]) {
        precondition(x.count == y.count && c >= 1 && x.count == pixelWeights.count * c,
                     "ImageLosses.l1WithGradient: \(x.count) / \(y.count) values, \(pixelWeights.count) weights, \(c) channels")
        var totalWeight = 0.0
        for w in pixelWeights { totalWeight += Double(w) }
        var gradient = [Float](repeating: 0, count: x.count)
        guard totalWeight > 0 else { return (0, gradient) }
        let norm = 1 / (Double(c) * totalWeight), normF = Float(norm)
        var sum = 0.0
        for p in 0..<pixelWeights.count {
            let w = pixelWeights[p]
            guard w != 0 else { continue }
            let g = w * normF
            for i in (p * c)..<((p + 1) * c) {
                let d = x[i] - y[i]
                sum += Double(w) * Double(abs(d))
                gradient[i] = d > 0 ? g : (d < 0 ? -g : 0)
            }
        }
        return (Float(sum * norm), gradient)
    }

    /// PSNR in dB, 10 log10(maxValue^2 / MSE), MSE over all values. Values are taken as given (the caller clamps x
    /// to [0, maxValue] if it wants the usual display-referred figure). Identical (or empty) images: +infinity.
    public static func psnr(_ x: [Float], _ y: [Float], maxValue: Float = 1) -> Double {
        precondition(x.count == y.count, "ImageLosses.psnr: \(x.count) vs \(y.count) values")
        var sum = 0.0
        for i in 0..<x.count {
            let d = Double(x[i]) - Double(y[i])
            sum += d * d
        }
        guard sum > 0 || sum.isNaN else { return .infinity }
        let mse = sum / Double(x.count), m = Double(maxValue)
        return 10 * log10(m * m / mse)
    }

    /// Depth AbsRel: the mean of |predicted - truth| / truth over pixels whose truth is finite and > 0 and whose
    /// prediction is finite, and the number of such pixels. No such pixel: (0, 0).
    public static func depthAbsRel(predicted: [Float], truth: [Float]) -> (value: Double, pixels: Int) {
        precondition(predicted.count == truth.count,
                     "ImageLosses.depthAbsRel: \(predicted.count) predicted vs \(truth.count) true depths")
        var sum = 0.0, n = 0
        for i in 0..<truth.count {
            let t = truth[i], p = predicted[i]
            guard t.isFinite, t > 0, p.isFinite else { continue }
            sum += abs(Double(p) - Double(t)) / Double(t)
            n += 1
        }
        return (n > 0 ? sum / Double(n) : 0, n)
    }

    private static func checkSizes(_ x: [Float], _ y: [Float], _ w: Int, _ h: Int, _ c: Int, _ name: String) {
        precondition(w >= 0 && h >= 0 && c >= 0 && x.count == w * h * c && y.count == x.count,
                     "ImageLosses.\(name): \(x.count) and \(y.count) values for a \(w) x \(h) x \(c) image")
    }
}

// MARK: - SSIM rows

/// Geometry and buffers of one SSIM call. Rows of `rowLen = width * channels` floats; output rows (valid positions)
/// have `outLen = (width - k + 1) * channels`; horizontal tap a of output value n reads input value n + a * channels.
private struct SSIMPlan {
    let x: UnsafePointer<Float>, y: UnsafePointer<Float>, taps: UnsafePointer<Float>
    let k: Int, c: Int, rowLen: Int, outLen: Int, hOut: Int, pad: Int
    /// dssim/dS = 1 / (valid positions * channels).
    let scale: Float
    /// hOut x 3 x rowLen: per output row, the horizontal scatter (G^T along the row) of n dS/dmu_x, n dS/d(G*x^2),
    /// n dS/d(G*xy). Nil when no gradient is wanted.
    let adjoint: UnsafeMutablePointer<Float>?

    /// Per chunk: 5 vertically filtered rows (x, y, x^2, y^2, xy), then 3 padded gradient rows
    /// (pad zeros, outLen values, pad zeros) so the horizontal scatter can be written as a gather.
    var scratchCount: Int { 5 * rowLen + 3 * paddedLen }
    var paddedLen: Int { outLen + 2 * pad }

    /// SSIM of output row i: the sum of S over its outLen values; with a gradient also fills adjoint row i.
    @inline(__always)
    func forwardRow(_ i: Int, scratch: UnsafeMutablePointer<Float>) -> Double {
        var m = 0
        while m + 8 <= rowLen { vertical(SIMD8<Float>.self, i, m, scratch); m += 8 }
        while m < rowLen { vertical(Float.self, i, m, scratch); m += 1 }
        let g = scratch + 5 * rowLen + pad
        var sum = 0.0, n = 0
        while n + 8 <= outLen { sum += Double(horizontal(SIMD8<Float>.self, n, scratch, g)); n += 8 }
        while n < outLen { sum += Double(horizontal(Float.self, n, scratch, g)); n += 1 }
        if let adjoint {
            let out = adjoint + i * 3 * rowLen
            m = 0
            while m + 8 <= rowLen { scatterRow(SIMD8<Float>.self, m, g, out); m += 8 }
            while m < rowLen { scatterRow(Float.self, m, g, out); m += 1 }
        }
        return sum
    }

    /// Vertical pass for output row i, values m..<m+lanes: G-column sums of x, y, x^2, y^2, xy over rows i..<i+k.
    @inline(__always)
    func vertical<V: Lanes>(_: V.Type, _ i: Int, _ m: Int, _ v: UnsafeMutablePointer<Float>) {
        var sx = V(broadcast: 0), sy = sx, sxx = sx, syy = sx, sxy = sx
        var px = x + i * rowLen + m, py = y + i * rowLen + m
        for a in 0..<k {
            let w = V(broadcast: taps[a]), xv = V.load(px), yv = V.load(py)
            let wx = w * xv, wy = w * yv
            sx = sx + wx; sy = sy + wy
            sxx = sxx + wx * xv; syy = syy + wy * yv; sxy = sxy + wx * yv
            px += rowLen; py += rowLen
        }
        sx.store(v + m); sy.store(v + rowLen + m); sxx.store(v + 2 * rowLen + m)
        syy.store(v + 3 * rowLen + m); sxy.store(v + 4 * rowLen + m)
    }

    /// Horizontal pass and the SSIM map for output values n..<n+lanes; returns their sum of S. With a gradient,
    /// writes n dS/dmu_x, n dS/d(G*x^2), n dS/d(G*xy) to the three padded rows at `g` (stride `paddedLen`).
    @inline(__always)
    func horizontal<V: Lanes>(_: V.Type, _ n: Int, _ v: UnsafeMutablePointer<Float>,
                              _ g: UnsafeMutablePointer<Float>) -> Float {
        var mx = V(broadcast: 0), my = mx, exx = mx, eyy = mx, exy = mx
        for a in 0..<k {
            let w = V(broadcast: taps[a]), o = v + n + a * c
            mx = mx + w * V.load(o); my = my + w * V.load(o + rowLen)
            exx = exx + w * V.load(o + 2 * rowLen); eyy = eyy + w * V.load(o + 3 * rowLen)
            exy = exy + w * V.load(o + 4 * rowLen)
        }
        // SSIM map, Wang et al. Eq. (13), with the moments of the Gaussian window.
        let two = V(broadcast: 2), c1 = V(broadcast: ImageLosses.ssimC1), c2 = V(broadcast: ImageLosses.ssimC2)
        let mxx = mx * mx, myy = my * my, mxy = mx * my
        let a1 = two * mxy + c1, a2 = two * (exy - mxy) + c2
        let b1 = mxx + myy + c1, b2 = (exx - mxx) + (eyy - myy) + c2
        let invB = V(broadcast: 1) / (b1 * b2)
        let s = a1 * a2 * invB
        if adjoint != nil {
            let ts = V(broadcast: 2 * scale) * invB
            (ts * (my * (a2 - a1) - mx * s * (b2 - b1))).store(g + n)
            (V(broadcast: -scale) * s * b1 * invB).store(g + paddedLen + n)
            (ts * a1).store(g + 2 * paddedLen + n)
        }
        return s.laneSum
    }

    /// Horizontal adjoint for values m..<m+lanes of a full-width row: out_j[m] = sum_a g_a grad_j[m - a c], the
    /// padding supplying the zeros outside the valid columns.
    @inline(__always)
    func scatterRow<V: Lanes>(_: V.Type, _ m: Int, _ g: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        var s0 = V(broadcast: 0), s1 = s0, s2 = s0
        for a in 0..<k {
            let w = V(broadcast: taps[a]), p = g + m - a * c
            s0 = s0 + w * V.load(p); s1 = s1 + w * V.load(p + paddedLen); s2 = s2 + w * V.load(p + 2 * paddedLen)
        }
        s0.store(out + m); s1.store(out + rowLen + m); s2.store(out + 2 * rowLen + m)
    }

    /// Vertical adjoint and the chain rule for input row r: dssim/dx = F_mu + 2 x F_xx + y F_xy.
    @inline(__always)
    func backwardRow(_ r: Int, gradient: UnsafeMutablePointer<Float>) {
        let lo = max(0, r - hOut + 1), hi = min(k - 1, r)
        var m = 0
        while m + 8 <= rowLen { backward(SIMD8<Float>.self, r, m, lo, hi, gradient); m += 8 }
        while m < rowLen { backward(Float.self, r, m, lo, hi, gradient); m += 1 }
    }

    @inline(__always)
    func backward<V: Lanes>(_: V.Type, _ r: Int, _ m: Int, _ lo: Int, _ hi: Int,
                            _ gradient: UnsafeMutablePointer<Float>) {
        var fmu = V(broadcast: 0), fxx = fmu, fxy = fmu
        if lo <= hi, let adjoint {
            for a in lo...hi {
                let w = V(broadcast: taps[a]), p = adjoint + (r - a) * 3 * rowLen + m
                fmu = fmu + w * V.load(p); fxx = fxx + w * V.load(p + rowLen); fxy = fxy + w * V.load(p + 2 * rowLen)
            }
        }
        let o = r * rowLen + m
        (fmu + V(broadcast: 2) * V.load(x + o) * fxx + V.load(y + o) * fxy).store(gradient + o)
    }
}

// MARK: - Lanes

/// Float or SIMD8<Float>: the row loops are written once over this and run 8 values at a time, then a scalar tail.
private protocol Lanes {
    init(broadcast: Float)
    static func load(_ p: UnsafePointer<Float>) -> Self
    func store(_ p: UnsafeMutablePointer<Float>)
    var laneSum: Float { get }
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    static func * (a: Self, b: Self) -> Self
    static func / (a: Self, b: Self) -> Self
}

extension Float: Lanes {
    @inline(__always) init(broadcast v: Float) { self = v }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float { p.pointee }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { p.pointee = self }
    @inline(__always) var laneSum: Float { self }
}

extension SIMD8: Lanes where Scalar == Float {
    @inline(__always) init(broadcast v: Float) { self.init(repeating: v) }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self)
    }
    @inline(__always) var laneSum: Float { sum() }
}
