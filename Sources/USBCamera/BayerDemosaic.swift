import MapCore

/// The colour filter layout of a Bayer sensor, named by its top-left 2x2 block read row by row
/// (GRBG: row 0 = G R G R ..., row 1 = B G B G ...; the Kinect v1 colour stream).
public enum BayerPattern: Sendable, Equatable, CaseIterable {
    case rggb, grbg, gbrg, bggr

    /// Channel (0 = R, 1 = G, 2 = B) sampled at pixel (x, y).
    @inlinable public func channel(x: Int, y: Int) -> Int {
        let odd = (x ^ y) & 1   // G sits where x + y has the parity of the pattern's G cells
        switch self {
        case .rggb, .bggr:
            if odd == 1 { return 1 }
            let redRow = (self == .rggb) == (y & 1 == 0)
            return redRow ? 0 : 2
        case .grbg, .gbrg:
            if odd == 0 { return 1 }
            let redRow = (self == .grbg) == (y & 1 == 0)
            return redRow ? 0 : 2
        }
    }
}

/// Bilinear demosaicing of an 8-bit Bayer mosaic into interleaved 8-bit RGB.
///
/// Each output channel is the sample itself where the pixel carries that colour, otherwise the mean of the pixels
/// of that colour in its 3x3 neighbourhood: for the standard patterns that is exactly bilinear interpolation (G at
/// R/B sites from the 4 edge neighbours, R/B at G sites from the 2 neighbours in the row or column, R at B sites
/// and B at R sites from the 4 diagonals). At the image border, neighbours outside the image are left out of the
/// mean, so a constant mosaic stays constant everywhere. Means are rounded to nearest.
public enum BayerDemosaic {
    /// Demosaics `mosaic` (`width` x `height`, one byte per pixel) into `rgb` (3 bytes per pixel). No allocation.
    public static func demosaic(_ mosaic: UnsafeBufferPointer<UInt8>, width: Int, height: Int, pattern: BayerPattern,
                                into rgb: UnsafeMutableBufferPointer<UInt8>) {
        precondition(width >= 1 && height >= 1 && mosaic.count == width * height,
                     "demosaic: mosaic has \(mosaic.count) bytes, expected \(width)x\(height)")
        precondition(rgb.count == width * height * 3, "demosaic: output has \(rgb.count) bytes, expected \(width * height * 3)")
        // Channel of each cell of the 2x2 tile, indexed (y & 1) * 2 + (x & 1).
        let tile = (pattern.channel(x: 0, y: 0), pattern.channel(x: 1, y: 0),
                    pattern.channel(x: 0, y: 1), pattern.channel(x: 1, y: 1))
        @inline(__always) func channelAt(_ x: Int, _ y: Int) -> Int {
            switch (y & 1) * 2 + (x & 1) {
            case 0: return tile.0
            case 1: return tile.1
            case 2: return tile.2
            default: return tile.3
            }
        }
        for y in 0..<height {
            let y0 = max(0, y - 1), y1 = min(height - 1, y + 1)
            let interior = y > 0 && y < height - 1
            for x in 0..<width {
                let own = channelAt(x, y)
                var sum: (Int, Int, Int) = (0, 0, 0), count: (Int, Int, Int) = (0, 0, 0)
                if interior && x > 0 && x < width - 1 {
                    // Interior: the 3x3 window's colour layout is fixed by the centre's cell.
                    let up = (y - 1) * width + x, mid = y * width + x, down = (y + 1) * width + x
                    let edgeH = Int(mosaic[mid - 1]) + Int(mosaic[mid + 1])
                    let edgeV = Int(mosaic[up]) + Int(mosaic[down])
                    let diag = Int(mosaic[up - 1]) + Int(mosaic[up + 1]) + Int(mosaic[down - 1]) + Int(mosaic[down + 1])
                    let centre = Int(mosaic[mid])
                    let hCh = channelAt(x + 1, y), vCh = channelAt(x, y + 1), dCh = channelAt(x + 1, y + 1)
                    var out = SIMD3<Int>.zero
                    if hCh == vCh {
                        // R or B site: G from the 4 edge neighbours, the other colour from the 4 diagonals.
                        out[hCh] = (edgeH + edgeV + 2) >> 2
                        out[dCh] = (diag + 2) >> 2
                    } else {
                        // G site: the row neighbours give one colour, the column neighbours the other.
                        out[hCh] = (edgeH + 1) >> 1
                        out[vCh] = (edgeV + 1) >> 1
                    }
                    out[own] = centre
                    let o = (y * width + x) * 3
                    rgb[o] = UInt8(out.x); rgb[o + 1] = UInt8(out.y); rgb[o + 2] = UInt8(out.z)
                    continue
                }
                // Border: mean over the in-image part of the 3x3 window, per colour.
                for yy in y0...y1 {
                    for xx in max(0, x - 1)...min(width - 1, x + 1) {
                        let v = Int(mosaic[yy * width + xx])
                        switch channelAt(xx, yy) {
                        case 0: sum.0 += v; count.0 += 1
                        case 1: sum.1 += v; count.1 += 1
                        default: sum.2 += v; count.2 += 1
                        }
                    }
                }
                let centre = Int(mosaic[y * width + x])
                func mean(_ s: Int, _ n: Int, _ c: Int) -> UInt8 {
                    if c == own { return UInt8(centre) }
                    return n == 0 ? 0 : UInt8((s + n / 2) / n)
                }
                let o = (y * width + x) * 3
                rgb[o] = mean(sum.0, count.0, 0)
                rgb[o + 1] = mean(sum.1, count.1, 1)
                rgb[o + 2] = mean(sum.2, count.2, 2)
            }
        }
    }

    /// Demosaics a one-channel mosaic image into a new RGB image.
    public static func demosaic(_ mosaic: Image<UInt8>, pattern: BayerPattern = .grbg) -> RGBImage {
        precondition(mosaic.channels == 1, "demosaic: the mosaic has one channel")
        var out = [UInt8](repeating: 0, count: mosaic.width * mosaic.height * 3)
        mosaic.data.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { o in
                demosaic(m, width: mosaic.width, height: mosaic.height, pattern: pattern, into: o)
            }
        }
        return RGBImage(width: mosaic.width, height: mosaic.height, channels: 3, data: out)
    }
}
