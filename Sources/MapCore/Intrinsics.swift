/// Pinhole intrinsics of a rectified camera (no distortion), in pixels, for an image of `width` x `height`.
/// Pixel centres are at integer coordinates: pixel (u, v) looks along ((u - cx) / fx, (v - cy) / fy, 1) in the
/// OpenCV camera frame (+z forward, +x right, +y down).
public struct Intrinsics: Sendable, Equatable, Codable {
    public var fx: Double
    public var fy: Double
    public var cx: Double
    public var cy: Double
    public var width: Int
    public var height: Int

    public init(fx: Double, fy: Double, cx: Double, cy: Double, width: Int, height: Int) {
        self.fx = fx; self.fy = fy; self.cx = cx; self.cy = cy; self.width = width; self.height = height
    }

    public var size: ImageSize { ImageSize(width: width, height: height) }

    /// The same camera for an image resized to `w` x `h` (pixel-centre convention kept).
    public func scaled(toWidth w: Int, height h: Int) -> Intrinsics {
        let sx = Double(w) / Double(width), sy = Double(h) / Double(height)
        return Intrinsics(fx: fx * sx, fy: fy * sy, cx: (cx + 0.5) * sx - 0.5, cy: (cy + 0.5) * sy - 0.5,
                          width: w, height: h)
    }

    /// Back-projects pixel (u, v) with depth z (metres) into the camera frame.
    @inlinable public func unproject(u: Double, v: Double, depth z: Double) -> Vec3 {
        Vec3((u - cx) / fx * z, (v - cy) / fy * z, z)
    }

    /// Projects a camera-frame point; nil behind the camera.
    @inlinable public func project(_ p_C: Vec3) -> SIMD2<Double>? {
        guard p_C.z > 1e-9 else { return nil }
        return SIMD2(fx * p_C.x / p_C.z + cx, fy * p_C.y / p_C.z + cy)
    }

    /// Checks the numbers are usable; the error names `source` (a file) and says what to fix.
    public func validate(source: String) throws {
        let values = [fx, fy, cx, cy]
        guard values.allSatisfy({ $0.isFinite }) else {
            throw MapError(.badCalibration, "intrinsics contain a non-finite number (\(self))", file: source,
                           hint: "check the calibration values")
        }
        guard fx > 0, fy > 0 else {
            throw MapError(.badCalibration, "focal lengths must be positive (fx \(fx), fy \(fy))", file: source,
                           hint: "check the calibration values")
        }
        guard width > 0, height > 0 else {
            throw MapError(.badCalibration, "image size \(width)x\(height) is not positive", file: source,
                           hint: "give the image width and height of the calibrated camera")
        }
        guard cx > -0.5 * Double(width), cx < 1.5 * Double(width), cy > -0.5 * Double(height), cy < 1.5 * Double(height)
        else {
            throw MapError(.badCalibration, "principal point (\(cx), \(cy)) is far outside the \(width)x\(height) image",
                           file: source, hint: "check that cx, cy are in pixels of this image size")
        }
    }
}
