import Foundation

/// Slow, obviously-correct image losses in Double: the definitions of `ImageLosses` as written. SSIM takes each
/// window's moments directly from a 2-D Gaussian (no separability) and its variances about the window mean.
public enum ReferenceImageLosses {
    /// 11, or the largest odd side <= min(width, height); 0 for an empty image.
    public static func windowSize(width: Int, height: Int) -> Int {
        var k = min(11, min(width, height))
        if k > 0 && k % 2 == 0 { k -= 1 }
        return max(0, k)
    }

    /// k x k Gaussian weights, sigma 1.5, centred, divided by their sum.
    public static func window(size k: Int) -> [[Double]] {
        let r = Double(k / 2), sigma = 1.5
        var w = (0..<k).map { a in
            (0..<k).map { b in
                exp(-((Double(a) - r) * (Double(a) - r) + (Double(b) - r) * (Double(b) - r)) / (2 * sigma * sigma))
            }
        }
        let total = w.joined().reduce(0, +)
        w = w.map { $0.map { $0 / total } }
        return w
    }

    /// Mean SSIM over the valid window positions and the channels (interleaved, row-major images).
    public static func ssim(_ x: [Double], _ y: [Double], width: Int, height: Int, channels: Int) -> Double {
        let k = windowSize(width: width, height: height)
        guard k > 0, channels > 0 else { return 1 }
        let w = window(size: k)
        let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        func at(_ image: [Double], _ row: Int, _ col: Int, _ ch: Int) -> Double {
            image[(row * width + col) * channels + ch]
        }
        var total = 0.0, count = 0
        for ch in 0..<channels {
            for i in 0...(height - k) {
                for j in 0...(width - k) {
                    var mx = 0.0, my = 0.0
                    for a in 0..<k {
                        for b in 0..<k {
                            mx += w[a][b] * at(x, i + a, j + b, ch)
                            my += w[a][b] * at(y, i + a, j + b, ch)
                        }
                    }
                    var vx = 0.0, vy = 0.0, cxy = 0.0
                    for a in 0..<k {
                        for b in 0..<k {
                            let dx = at(x, i + a, j + b, ch) - mx, dy = at(y, i + a, j + b, ch) - my
                            vx += w[a][b] * dx * dx
                            vy += w[a][b] * dy * dy
                            cxy += w[a][b] * dx * dy
                        }
                    }
                    total += (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
                    count += 1
                }
            }
        }
        return total / Double(count)
    }

    /// Mean absolute error (0 for no values).
    public static func l1(_ x: [Double], _ y: [Double]) -> Double {
        x.isEmpty ? 0 : zip(x, y).map { abs($0 - $1) }.reduce(0, +) / Double(x.count)
    }

    /// 10 log10(maxValue^2 / MSE); +infinity when MSE is 0.
    public static func psnr(_ x: [Double], _ y: [Double], maxValue: Double = 1) -> Double {
        let mse = x.isEmpty ? 0 : zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Double(x.count)
        return mse == 0 ? .infinity : 10 * log10(maxValue * maxValue / mse)
    }

    /// Mean |p - t| / t over pixels with finite t > 0 and finite p, and their count ((0, 0) if none).
    public static func depthAbsRel(predicted: [Double], truth: [Double]) -> (value: Double, pixels: Int) {
        let terms = zip(predicted, truth).filter { p, t in t.isFinite && t > 0 && p.isFinite }.map { p, t in abs(p - t) / t }
        return (terms.isEmpty ? 0 : terms.reduce(0, +) / Double(terms.count), terms.count)
    }
}
