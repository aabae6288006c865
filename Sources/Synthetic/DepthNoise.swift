import MapCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Applies `DepthNoiseConfig` to a clean depth image. Deterministic in `rng`; consumes the same random numbers
/// whatever the image content, so a frame's noise does not depend on anything but its own generator.
public struct DepthNoiseModel: Sendable {
    public let config: DepthNoiseConfig

    public init(config: DepthNoiseConfig) { self.config = config }

    /// Noisy copy of `clean` (metres, 0 = invalid); `viewCosine` is |n . v| per pixel (see `SyntheticRender`).
    public func apply(clean: DepthImage, viewCosine: Image<Float>, rng: inout SeededRNG) -> DepthImage {
        let w = clean.width, h = clean.height
        var out = clean.data
        let k = config.sigmaPerSquareMetre
        let grazing = Float(config.grazingCosineThreshold)
        let holeCount = config.maxHolesPerFrame > 0 ? Int(rng.next() % UInt64(config.maxHolesPerFrame + 1)) : 0
        var holes: [(cx: Double, cy: Double, a: Double, b: Double, c: Double, s: Double)] = []
        for _ in 0..<holeCount {
            let rMin = config.holeRadiusMinFraction * Double(w), rMax = config.holeRadiusMaxFraction * Double(w)
            let angle = rng.uniform(0, Double.pi)
            holes.append((rng.uniform(0, Double(w)), rng.uniform(0, Double(h)), rng.uniform(rMin, rMax),
                           rng.uniform(rMin, rMax), cos(angle), sin(angle)))
        }
        clean.data.withUnsafeBufferPointer { src in
            viewCosine.data.withUnsafeBufferPointer { cosine in
                out.withUnsafeMutableBufferPointer { dst in
                    for i in 0..<(w * h) {
                        let z = src[i]
                        // Axial noise sigma = k z^2 (one Gaussian draw per pixel, valid or not).
                        let g = k > 0 ? rng.gaussian() : 0
                        guard z > 0 else { dst[i] = 0; continue }
                        if cosine[i] < grazing { dst[i] = 0; continue }
                        let zn = Double(z) + k * Double(z) * Double(z) * g
                        dst[i] = zn > 0 ? Float(zn) : 0
                    }
                    // Elliptical holes.
                    for hole in holes {
                        let r = max(hole.a, hole.b)
                        let y0 = max(0, Int(hole.cy - r)), y1 = min(h - 1, Int(hole.cy + r) + 1)
                        let x0 = max(0, Int(hole.cx - r)), x1 = min(w - 1, Int(hole.cx + r) + 1)
                        guard y0 <= y1, x0 <= x1 else { continue }
                        for y in y0...y1 {
                            for x in x0...x1 {
                                let dx = Double(x) - hole.cx, dy = Double(y) - hole.cy
                                let e1 = (hole.c * dx + hole.s * dy) / hole.a, e2 = (-hole.s * dx + hole.c * dy) / hole.b
                                if e1 * e1 + e2 * e2 <= 1 { dst[y * w + x] = 0 }
                            }
                        }
                    }
                }
            }
        }
        return Image(width: w, height: h, data: out)
    }
}
