/// A row-major image with interleaved channels, stored in a flat array.
public struct Image<Pixel: Sendable & Equatable>: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var data: [Pixel]

    public init(width: Int, height: Int, channels: Int = 1, data: [Pixel]) {
        precondition(width >= 0 && height >= 0 && channels > 0 && data.count == width * height * channels,
                     "Image(\(width)x\(height)x\(channels)) given \(data.count) values")
        self.width = width; self.height = height; self.channels = channels; self.data = data
    }
    public init(width: Int, height: Int, channels: Int = 1, repeating value: Pixel) {
        self.init(width: width, height: height, channels: channels,
                  data: [Pixel](repeating: value, count: width * height * channels))
    }

    public var pixelCount: Int { width * height }
    public var size: ImageSize { ImageSize(width: width, height: height) }

    /// Value of channel `c` at pixel (x, y).
    @inlinable public subscript(x: Int, y: Int, c: Int = 0) -> Pixel {
        get { data[(y * width + x) * channels + c] }
        set { data[(y * width + x) * channels + c] = newValue }
    }
}

public struct ImageSize: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var width: Int
    public var height: Int
    public init(width: Int, height: Int) { self.width = width; self.height = height }
    public var description: String { "\(width)x\(height)" }
}

/// 8-bit RGB, 3 interleaved channels.
public typealias RGBImage = Image<UInt8>
/// 16-bit single channel (raw depth, instance ids).
public typealias Gray16Image = Image<UInt16>
/// Depth in metres; 0 marks an invalid measurement.
public typealias DepthImage = Image<Float>

extension Image {
    /// Nearest-neighbour resize: each output pixel takes the source pixel under its centre. The only resize for labels
    /// and ids, which must never be interpolated.
    public func resizedNearest(width w: Int, height h: Int) -> Image<Pixel> {
        if w == width && h == height { return self }
        var out: [Pixel] = []
        out.reserveCapacity(w * h * channels)
        for y in 0..<h {
            let sy = min(height - 1, Int((Double(y) + 0.5) * Double(height) / Double(h)))
            for x in 0..<w {
                let sx = min(width - 1, Int((Double(x) + 0.5) * Double(width) / Double(w)))
                for c in 0..<channels { out.append(data[(sy * width + sx) * channels + c]) }
            }
        }
        return Image(width: w, height: h, channels: channels, data: out)
    }
}

extension Image where Pixel == UInt8 {
    /// Bilinear resize of an 8-bit image (area-faithful enough for colour; masks must use `resizedNearest`).
    public func resizedBilinear(width w: Int, height h: Int) -> Image<UInt8> {
        if w == width && h == height { return self }
        var out = [UInt8](repeating: 0, count: w * h * channels)
        let sxScale = Double(width) / Double(w), syScale = Double(height) / Double(h)
        for y in 0..<h {
            let fy = max(0, min(Double(height - 1), (Double(y) + 0.5) * syScale - 0.5))
            let y0 = Int(fy), y1 = min(height - 1, y0 + 1), wy = fy - Double(y0)
            for x in 0..<w {
                let fx = max(0, min(Double(width - 1), (Double(x) + 0.5) * sxScale - 0.5))
                let x0 = Int(fx), x1 = min(width - 1, x0 + 1), wx = fx - Double(x0)
                for c in 0..<channels {
                    let a = Double(data[(y0 * width + x0) * channels + c]), b = Double(data[(y0 * width + x1) * channels + c])
                    let d = Double(data[(y1 * width + x0) * channels + c]), e = Double(data[(y1 * width + x1) * channels + c])
                    let v = (a * (1 - wx) + b * wx) * (1 - wy) + (d * (1 - wx) + e * wx) * wy
                    out[(y * w + x) * channels + c] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        return Image(width: w, height: h, channels: channels, data: out)
    }
}
