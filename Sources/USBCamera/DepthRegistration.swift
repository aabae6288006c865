import MapCore

/// Registers a depth image (metres, depth camera `D`) into the colour camera `C`: each depth pixel is back-projected
/// with the depth intrinsics, moved by `T_C_D`, projected into the colour image and splatted to the nearest colour
/// pixel; where several land on one pixel the nearest (smallest z in `C`) wins. The output has the colour camera's
/// size; pixels no depth sample reached are 0 (no measurement). Output depths are z in the colour camera's frame.
///
/// The per-pixel ray R·K_D⁻¹·(u, v, 1) is computed once here; `register` then costs one multiply-add, a projection
/// and a compare per depth pixel, and allocates nothing.
public struct DepthRegistration: Sendable {
    public let depthCamera: Intrinsics
    public let colorCamera: Intrinsics
    public let T_C_D: RigidTransform
    /// Per depth pixel, the colour-frame direction of its ray per metre of depth: p_C = z · ray + t.
    private let rays: [SIMD3<Double>]

    public init(depthCamera: Intrinsics, colorCamera: Intrinsics, T_C_D: RigidTransform) {
        self.depthCamera = depthCamera; self.colorCamera = colorCamera; self.T_C_D = T_C_D
        var rays = [SIMD3<Double>]()
        rays.reserveCapacity(depthCamera.width * depthCamera.height)
        for v in 0..<depthCamera.height {
            for u in 0..<depthCamera.width {
                rays.append(T_C_D.rotation * depthCamera.unproject(u: Double(u), v: Double(v), depth: 1))
            }
        }
        self.rays = rays
    }

    public init(calibration c: DeviceCalibration) {
        self.init(depthCamera: c.depthCamera, colorCamera: c.colorCamera, T_C_D: c.T_C_D)
    }

    /// Registers `depth` (depth-camera size, row-major, metres, 0 = invalid) into `out` (colour-camera size), which
    /// is overwritten. Plain buffers, no allocation.
    public func register(depth: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>) {
        let wd = depthCamera.width, hd = depthCamera.height, wc = colorCamera.width, hc = colorCamera.height
        precondition(depth.count == wd * hd, "register: depth has \(depth.count) pixels, expected \(wd)x\(hd)")
        precondition(out.count == wc * hc, "register: output has \(out.count) pixels, expected \(wc)x\(hc)")
        let fx = colorCamera.fx, fy = colorCamera.fy, cx = colorCamera.cx, cy = colorCamera.cy
        let t = T_C_D.translation
        // Holes start as +inf so the z-buffer compare needs no special case; turned into 0 at the end.
        for i in 0..<out.count { out[i] = .infinity }
        rays.withUnsafeBufferPointer { rays in
            for i in 0..<wd * hd {
                let z = depth[i]
                guard z > 0, z.isFinite else { continue }
                let p_C = Double(z) * rays[i] + t
                guard p_C.z > 1e-9 else { continue }
                let u = (fx * p_C.x / p_C.z + cx).rounded(), v = (fy * p_C.y / p_C.z + cy).rounded()
                guard u >= 0, v >= 0, u < Double(wc), v < Double(hc) else { continue }
                let j = Int(v) * wc + Int(u)
                let zc = Float(p_C.z)
                if zc < out[j] { out[j] = zc }   // z-buffer: nearest wins
            }
        }
        for i in 0..<out.count where out[i] == .infinity { out[i] = 0 }
    }

    /// Registers a depth image (depth-camera size) into a new image of the colour camera's size.
    public func register(_ depth: DepthImage) -> DepthImage {
        precondition(depth.width == depthCamera.width && depth.height == depthCamera.height && depth.channels == 1,
                     "register: depth is \(depth.width)x\(depth.height), calibration says \(depthCamera.size)")
        var out = [Float](repeating: 0, count: colorCamera.width * colorCamera.height)
        depth.data.withUnsafeBufferPointer { d in
            out.withUnsafeMutableBufferPointer { o in register(depth: d, into: o) }
        }
        return DepthImage(width: colorCamera.width, height: colorCamera.height, data: out)
    }
}
