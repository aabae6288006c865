import Kernels
import MapCore
import TestSupport
import XCTest

final class ImageLossesTests: XCTestCase {
    /// A random image in [0, 1] (smooth blobs plus noise, so windows have structure) and a target that is a noisy,
    /// shifted copy of it (SSIM well inside (0, 1)).
    func randomPair(_ rng: inout SeededRNG, width: Int, height: Int, channels: Int,
                    noise: Double = 0.15) -> (x: [Float], y: [Float]) {
        let fx = rng.uniform(0.1, 0.6), fy = rng.uniform(0.1, 0.6)
        var x: [Float] = [], y: [Float] = []
        for r in 0..<height {
            for col in 0..<width {
                for ch in 0..<channels {
                    let base = 0.5 + 0.3 * sin(fx * Double(col) + Double(ch)) * cos(fy * Double(r))
                    x.append(Float(min(1, max(0, base + 0.1 * rng.gaussian()))))
                    y.append(Float(min(1, max(0, base + 0.05 + noise * rng.gaussian()))))
                }
            }
        }
        return (x, y)
    }

    func refSSIM(_ x: [Float], _ y: [Float], _ w: Int, _ h: Int, _ c: Int) -> Double {
        ReferenceImageLosses.ssim(x.map(Double.init), y.map(Double.init), width: w, height: h, channels: c)
    }

    func testWindowSizeAndTaps() {
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 640, height: 480), 11)
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 11, height: 30), 11)
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 10, height: 30), 9)
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 30, height: 7), 7)
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 1, height: 1), 1)
        XCTAssertEqual(ImageLosses.ssimWindowSize(width: 0, height: 5), 0)
        for k in [1, 3, 7, 11] {
            let t = ImageLosses.ssimTaps(size: k)
            XCTAssertEqual(t.reduce(0, +), 1, accuracy: 1e-6)
            XCTAssertEqual(t, t.reversed(), "symmetric")
            XCTAssertEqual(t.max(), t[k / 2])
        }
    }

    /// Value against the Double twin: square, non-square, barely bigger than the window, smaller than the window.
    func testSSIMMatchesReference() {
        var rng = SeededRNG(seed: 21)
        let sizes = [(11, 11, 1), (12, 13, 3), (40, 23, 3), (23, 40, 1), (37, 29, 3), (9, 30, 3), (30, 8, 1),
                     (5, 5, 2), (1, 1, 3), (160, 120, 3)]
        for (w, h, c) in sizes {
            let (x, y) = randomPair(&rng, width: w, height: h, channels: c)
            let value = ImageLosses.ssim(x, y, width: w, height: h, channels: c)
            let ref = refSSIM(x, y, w, h, c)
            XCTAssertEqual(Double(value), ref, accuracy: 1e-5, "\(w) x \(h) x \(c)")
            XCTAssertGreaterThan(ref, 0.05, "\(w) x \(h) x \(c): a non-trivial case"); XCTAssertLessThan(ref, 0.99)
            let withGradient = ImageLosses.ssimWithGradient(x, y, width: w, height: h, channels: c)
            XCTAssertEqual(withGradient.value, value, "same value with and without the gradient")
        }
    }

    func testIdenticalAndConstantImages() {
        var rng = SeededRNG(seed: 22)
        for (w, h, c) in [(16, 13, 3), (64, 48, 1), (7, 9, 3)] {
            let (x, _) = randomPair(&rng, width: w, height: h, channels: c)
            let out = ImageLosses.ssimWithGradient(x, x, width: w, height: h, channels: c)
            XCTAssertEqual(out.value, 1, accuracy: 1e-6, "\(w) x \(h) x \(c)")
            // The maximum: zero gradient up to rounding (a real gradient here is ~1 / (valid values) ~ 1e-3).
            XCTAssertLessThan(out.gradient.map { abs($0) }.max()!, 1e-7, "\(w) x \(h) x \(c)")
        }
        // Constant images: S = (2ab + C1) / (a^2 + b^2 + C1) at every position.
        let a: Float = 0.2, b: Float = 0.6
        let value = ImageLosses.ssim([Float](repeating: a, count: 20 * 15 * 3), [Float](repeating: b, count: 20 * 15 * 3),
                                     width: 20, height: 15, channels: 3)
        // Flat windows are the Float moments' worst case (see `ImageLosses`, "Precision"): ~1e-4 relative.
        XCTAssertEqual(Double(value), (2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4), accuracy: 2e-4)
        let ref = ReferenceImageLosses.ssim([Double](repeating: 0.2, count: 20 * 15 * 3),
                                            [Double](repeating: 0.6, count: 20 * 15 * 3), width: 20, height: 15, channels: 3)
        XCTAssertEqual(ref, (2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4), accuracy: 1e-12)
        // Empty image: 1, empty gradient.
        let empty = ImageLosses.ssimWithGradient([], [], width: 0, height: 4, channels: 3)
        XCTAssertEqual(empty.value, 1); XCTAssertTrue(empty.gradient.isEmpty)
    }

    /// dssim/dx against central differences of the Double twin, for every value of small images.
    func testSSIMGradientMatchesFiniteDifferences() {
        var rng = SeededRNG(seed: 23)
        for (w, h, c) in [(16, 13, 3), (8, 9, 1), (12, 25, 1)] {
            let (x, y) = randomPair(&rng, width: w, height: h, channels: c)
            let out = ImageLosses.ssimWithGradient(x, y, width: w, height: h, channels: c)
            let xd = x.map(Double.init), yd = y.map(Double.init), step = 1e-5
            var worst = 0.0
            for i in 0..<x.count {
                var p = xd, m = xd
                p[i] += step; m[i] -= step
                let fd = (ReferenceImageLosses.ssim(p, yd, width: w, height: h, channels: c)
                    - ReferenceImageLosses.ssim(m, yd, width: w, height: h, channels: c)) / (2 * step)
                worst = max(worst, abs(Double(out.gradient[i]) - fd))
                XCTAssertEqual(Double(out.gradient[i]), fd, accuracy: 2e-6 + 1e-3 * abs(fd), "\(w) x \(h) x \(c) value \(i)")
            }
            let scale = out.gradient.map { abs(Double($0)) }.max()!
            XCTAssertGreaterThan(scale, 1e-3, "not trivially zero")
            XCTAssertLessThan(worst / scale, 2e-3, "\(w) x \(h) x \(c)")
        }
    }

    /// Bigger image, window fully inside: random probes against finite differences of the twin.
    func testSSIMGradientProbesOnLargerImage() {
        var rng = SeededRNG(seed: 24)
        let (w, h, c) = (41, 27, 3)
        let (x, y) = randomPair(&rng, width: w, height: h, channels: c)
        let out = ImageLosses.ssimWithGradient(x, y, width: w, height: h, channels: c)
        let xd = x.map(Double.init), yd = y.map(Double.init), step = 1e-5
        let corners = [0, (w - 1) * c, ((h - 1) * w) * c + 2, x.count - 1]
        for i in corners + (0..<25).map({ _ in Int(rng.next() % UInt64(x.count)) }) {
            var p = xd, m = xd
            p[i] += step; m[i] -= step
            let fd = (ReferenceImageLosses.ssim(p, yd, width: w, height: h, channels: c)
                - ReferenceImageLosses.ssim(m, yd, width: w, height: h, channels: c)) / (2 * step)
            XCTAssertEqual(Double(out.gradient[i]), fd, accuracy: 2e-7 + 1e-3 * abs(fd), "value \(i)")
        }
    }

    /// Value and gradient are bit-identical for any thread count.
    func testThreadCountsGiveIdenticalResults() {
        var rng = SeededRNG(seed: 25)
        for (w, h, c) in [(97, 61, 3), (13, 40, 1)] {
            let (x, y) = randomPair(&rng, width: w, height: h, channels: c)
            let one = ImageLosses.ssimWithGradient(x, y, width: w, height: h, channels: c, threads: 1)
            for t in [2, 3, 8] {
                let many = ImageLosses.ssimWithGradient(x, y, width: w, height: h, channels: c, threads: t)
                XCTAssertEqual(one.value, many.value, "\(t) threads")
                XCTAssertEqual(one.gradient, many.gradient, "\(t) threads")
                XCTAssertEqual(ImageLosses.ssim(x, y, width: w, height: h, channels: c, threads: t), one.value)
            }
        }
    }

    func testL1() {
        let x: [Float] = [0.5, 0.2, 1.0, 0.0], y: [Float] = [0.25, 0.2, 0.5, 1.0]
        let out = ImageLosses.l1WithGradient(x, y)
        XCTAssertEqual(out.value, (0.25 + 0 + 0.5 + 1) / 4, accuracy: 1e-7)
        XCTAssertEqual(out.gradient, [0.25, 0, 0.25, -0.25])
        XCTAssertEqual(Double(out.value), ReferenceImageLosses.l1(x.map(Double.init), y.map(Double.init)), accuracy: 1e-7)
        let empty = ImageLosses.l1WithGradient([], [])
        XCTAssertEqual(empty.value, 0); XCTAssertTrue(empty.gradient.isEmpty)

        // Per-pixel weights, 2 channels: pixel 0 weight 1, pixel 1 weight 0 (ignored), pixel 2 weight 3.
        let xm: [Float] = [1, 0, 9, 9, 0.5, 0.5], ym: [Float] = [0, 0, 0, 0, 1, 0.25]
        let masked = ImageLosses.l1WithGradient(xm, ym, pixelWeights: [1, 0, 3], channels: 2)
        XCTAssertEqual(masked.value, 3.25 / 8, accuracy: 1e-7, "(1 * (1 + 0) + 3 * (0.5 + 0.25)) / (2 * (1 + 0 + 3))")
        XCTAssertEqual(masked.gradient, [0.125, 0, 0, 0, -0.375, 0.375])
        let none = ImageLosses.l1WithGradient(xm, ym, pixelWeights: [0, 0, 0], channels: 2)
        XCTAssertEqual(none.value, 0); XCTAssertEqual(none.gradient, [Float](repeating: 0, count: 6))
    }

    func testPSNR() {
        // MSE = 0.5^2 / 4 = 1 / 16: PSNR = 10 log10(16) = 12.0412 dB.
        let x: [Float] = [0, 0.5, 1, 1], y: [Float] = [0, 0.5, 0.5, 1]
        XCTAssertEqual(ImageLosses.psnr(x, y), 10 * log10(16.0), accuracy: 1e-9)
        XCTAssertEqual(ImageLosses.psnr(x, y), 12.0412, accuracy: 1e-4)
        // 8-bit range: MSE = (255^2 + 0) / 2, PSNR = 10 log10(2) = 3.0103 dB.
        XCTAssertEqual(ImageLosses.psnr([0, 7], [255, 7], maxValue: 255), 10 * log10(2.0), accuracy: 1e-9)
        XCTAssertEqual(ImageLosses.psnr(x, x), .infinity)
        XCTAssertEqual(ImageLosses.psnr([], []), .infinity)
        var rng = SeededRNG(seed: 26)
        let (a, b) = randomPair(&rng, width: 20, height: 10, channels: 3)
        XCTAssertEqual(ImageLosses.psnr(a, b), ReferenceImageLosses.psnr(a.map(Double.init), b.map(Double.init)),
                       accuracy: 1e-9)
    }

    func testDepthAbsRel() {
        // Valid: (3 vs 2) -> 0.5, (4 vs 4) -> 0, (0.5 vs 1) -> 0.5; others have truth 0, NaN, inf or negative,
        // or a non-finite prediction.
        let truth: [Float] = [2, 0, 4, .nan, 1, .infinity, 5, -1, 1]
        let pred: [Float] = [3, 7, 4, 1, .nan, 2, -.infinity, 1, 0.5]
        let out = ImageLosses.depthAbsRel(predicted: pred, truth: truth)
        XCTAssertEqual(out.pixels, 3)
        XCTAssertEqual(out.value, 1.0 / 3.0, accuracy: 1e-12)
        let ref = ReferenceImageLosses.depthAbsRel(predicted: pred.map(Double.init), truth: truth.map(Double.init))
        XCTAssertEqual(ref.pixels, 3); XCTAssertEqual(ref.value, out.value, accuracy: 1e-12)
        let none = ImageLosses.depthAbsRel(predicted: [1, 2], truth: [0, .nan])
        XCTAssertEqual(none.value, 0); XCTAssertEqual(none.pixels, 0)
    }
}
