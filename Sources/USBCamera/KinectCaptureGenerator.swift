import MapCore

// The inverse of KinectCamera: RGB-D frames in, Kinect iso packets out (with endpoints and host times, as a live
// device would deliver them). Tests use it for ground truth; `pano` uses it to turn a synthetic scene into a capture
// that replays exactly like the device.
//
//   depth (metres, colour camera) ──splat with T_D_C = T_C_D⁻¹──▶ depth (metres, depth camera)
//        ──invert the depth model──▶ raw 11-bit disparity ──pack──▶ depth packets (endpoint 0x82)
//   RGB ──Bayer GRBG mosaic──▶ 8-bit mosaic ──▶ colour packets (endpoint 0x81)

extension DeviceCalibration {
    /// A calibration for synthetic captures: both cameras are `intrinsics` (which must be 640x480, the Kinect
    /// streams' size), the extrinsics are the identity, and the depth model is the Kinect v1 default. Under it the
    /// encoder and decoder are exact up to the depth model's quantisation. Throws `MapError(.badCalibration)` for
    /// another size or invalid intrinsics.
    public static func synthetic(intrinsics: Intrinsics) throws -> DeviceCalibration {
        try intrinsics.validate(source: "synthetic calibration")
        guard intrinsics.width == 640, intrinsics.height == 480 else {
            throw MapError(.badCalibration, "synthetic Kinect intrinsics are \(intrinsics.width)x\(intrinsics.height)",
                           hint: "give 640x480 intrinsics (Intrinsics.scaled(toWidth: 640, height: 480))")
        }
        let k = kinectV1Default
        return DeviceCalibration(device: Device(name: "Synthetic Kinect v1", vendorID: k.device.vendorID,
                                                productID: k.device.productID),
                                 depthCamera: intrinsics, colorCamera: intrinsics, T_C_D: .identity,
                                 depthModel: k.depthModel)
    }
}

/// USB endpoints of the Kinect v1 camera's iso streams.
public enum KinectEndpoint {
    /// The colour (Bayer) stream's endpoint.
    public static let colour: UInt8 = 0x81
    /// The depth (11-bit) stream's endpoint.
    public static let depth: UInt8 = 0x82
}

/// Encodes RGB-D frames (colour-registered depth in metres, RGB) into the packets a Kinect v1 would send for them.
/// Frame k's packets get host times from k / frameRate seconds on, spread over the frame interval; the depth and
/// colour packets are interleaved in proportion, as the two endpoints' transfers arrive. Both streams of a frame
/// carry the same device timestamp.
public struct KinectCaptureGenerator: Sendable {
    /// The device the packets pretend to come from.
    public let calibration: DeviceCalibration
    /// Frames per second (host times).
    public let frameRate: Double
    /// Sub-samples per colour pixel and axis when moving depth into the depth camera (2 → 4 samples per pixel).
    /// The depth camera's focal length is larger than the colour camera's on a Kinect, so one sample per pixel
    /// would leave holes; under identity calibrations every sample lands on its own pixel, so the result is exact.
    public var supersampling: Int = 2
    /// Frames encoded so far.
    public private(set) var frameCount = 0

    private var streams: KinectStreamGenerator
    private let T_D_C: RigidTransform
    /// Bayer layout of the colour stream.
    public static let pattern = BayerPattern.grbg

    /// Throws `MapError(.badArgument)` for a non-positive frame rate or stream formats that do not match the
    /// calibration's image sizes.
    public init(calibration: DeviceCalibration, frameRate: Double = 30,
                streamConfig: KinectStreamGenerator.Config = KinectStreamGenerator.Config()) throws {
        guard frameRate.isFinite, frameRate > 0 else {
            throw MapError(.badArgument, "frame rate \(frameRate) is not positive", hint: "give frames per second, e.g. 30")
        }
        try KinectCamera.checkFormats(depth: streamConfig.depth, colour: streamConfig.colour, calibration: calibration)
        do { streams = try KinectStreamGenerator(config: streamConfig) } catch {
            throw MapError(.badArgument, error.description, hint: "use the default 640x480 stream formats")
        }
        self.calibration = calibration
        self.frameRate = frameRate
        T_D_C = calibration.T_C_D.inverse
    }

    /// Metadata for a capture of generated frames.
    public static func metadata(calibration: DeviceCalibration, frameRate: Double = 30,
                                note: String = "synthetic") -> CaptureMetadata {
        CaptureMetadata(cameraModel: calibration.device.name, vendorID: calibration.device.vendorID,
                        productID: calibration.device.productID, calibration: calibration, frameRate: frameRate,
                        note: note)
    }

    /// The packets of one frame: `frame.depth` (metres, registered to the colour camera, 0 = none) and `frame.rgb`
    /// at the colour camera's size. `frame.timestamp` and `frame.intrinsics` are not used (host times come from the
    /// frame count). Throws `MapError(.sizeMismatch)` naming the frame when the images have the wrong size.
    public mutating func packets(for frame: CameraFrame) throws -> [CapturedPacket] {
        let c = calibration.colorCamera
        guard frame.rgb.width == c.width, frame.rgb.height == c.height, frame.rgb.channels == 3 else {
            throw MapError(.sizeMismatch, "colour is \(frame.rgb.width)x\(frame.rgb.height)x\(frame.rgb.channels), "
                           + "the colour camera is \(c.width)x\(c.height)x3", frame: frameCount,
                           hint: "render the frame with the calibration's colour camera")
        }
        guard frame.depth.width == c.width, frame.depth.height == c.height, frame.depth.channels == 1 else {
            throw MapError(.sizeMismatch, "depth is \(frame.depth.width)x\(frame.depth.height), the colour camera is "
                           + "\(c.width)x\(c.height)", frame: frameCount,
                           hint: "give depth registered to the colour camera")
        }
        let raw = rawDepth(depthCameraDepth(frame.depth))
        let bayer = Self.mosaic(frame.rgb, pattern: Self.pattern)
        let depthPackets: [[UInt8]], colourPackets: [[UInt8]]
        do {
            depthPackets = try streams.depthPackets(raw)
            colourPackets = try streams.colourPackets(bayer.data)
        } catch {
            throw MapError(.badArgument, error.description, frame: frameCount, hint: "check the stream formats")
        }
        let out = interleave(depth: depthPackets, colour: colourPackets, frame: frameCount)
        frameCount += 1
        return out
    }

    /// Merges the two streams in proportion (depth first) and stamps host times: frame k spans
    /// [k, k + 1) / frameRate seconds, packet q of M starting at k / frameRate + q / (M · frameRate).
    private func interleave(depth: [[UInt8]], colour: [[UInt8]], frame k: Int) -> [CapturedPacket] {
        let n = depth.count, m = colour.count, total = n + m
        let frameNanos = 1e9 / frameRate
        let start = (Double(k) * frameNanos).rounded()
        var out: [CapturedPacket] = []
        out.reserveCapacity(total)
        var i = 0, j = 0
        for q in 0..<total {
            let host = UInt64(start + (Double(q) * frameNanos / Double(total)).rounded(.down))
            // Take depth while it is not ahead of colour in its share of the frame: i/n <= j/m.
            if j >= m || (i < n && i * m <= j * n) {
                out.append(CapturedPacket(endpoint: KinectEndpoint.depth, hostNanoseconds: host, bytes: depth[i]))
                i += 1
            } else {
                out.append(CapturedPacket(endpoint: KinectEndpoint.colour, hostNanoseconds: host, bytes: colour[j]))
                j += 1
            }
        }
        return out
    }

    /// Depth registered to the colour camera → depth in the depth camera (metres, 0 = none): every colour pixel's
    /// `supersampling`² sub-samples are back-projected at the pixel's depth, moved by T_D_C, and splatted to the
    /// nearest depth pixel; the nearest surface wins.
    public func depthCameraDepth(_ colourDepth: DepthImage) -> DepthImage {
        let c = calibration.colorCamera, d = calibration.depthCamera
        var out = [Float](repeating: .infinity, count: d.width * d.height)
        let s = max(1, supersampling)
        let offsets = (0..<s).map { (Double($0) + 0.5) / Double(s) - 0.5 }
        let R = T_D_C.rotation, t = T_D_C.translation
        colourDepth.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for v in 0..<c.height {
                    for u in 0..<c.width {
                        let z = src[v * c.width + u]
                        guard z > 0, z.isFinite else { continue }
                        for oy in offsets {
                            for ox in offsets {
                                let p_C = c.unproject(u: Double(u) + ox, v: Double(v) + oy, depth: Double(z))
                                let p_D = R * p_C + t
                                guard p_D.z > 1e-9 else { continue }
                                let x = (d.fx * p_D.x / p_D.z + d.cx).rounded(), y = (d.fy * p_D.y / p_D.z + d.cy).rounded()
                                guard x >= 0, y >= 0, x < Double(d.width), y < Double(d.height) else { continue }
                                let i = Int(y) * d.width + Int(x)
                                let zd = Float(p_D.z)
                                if zd < dst[i] { dst[i] = zd }
                            }
                        }
                    }
                }
                for i in 0..<dst.count where dst[i] == .infinity { dst[i] = 0 }
            }
        }
        return DepthImage(width: d.width, height: d.height, data: out)
    }

    /// Raw samples for depth-camera depth in metres (see `rawDisparity`).
    public func rawDepth(_ depth: DepthImage) -> [UInt16] {
        let model = calibration.depthModel
        return depth.data.map { Self.rawDisparity(metres: $0, model: model) }
    }

    /// The raw sample whose depth is nearest `z` metres, by inverting the depth model: for the Kinect disparity
    /// model z = 1 / (a·raw + b), raw = round((1/z − b) / a). z = 0, non-finite, or a raw value the model does not
    /// map back into its valid range (outside `validRaw`, or outside [minMetres, maxMetres]) gives the invalid raw
    /// 2047.
    public static func rawDisparity(metres z: Float, model: DepthModel) -> UInt16 {
        let invalid = UInt16(DepthModel.kinectInvalidRaw)
        guard z > 0, z.isFinite else { return invalid }
        let r: Double
        switch model.kind {
        case .kinectDisparity(let a, let b): r = (1 / Double(z) - b) / a
        case .linear(let s): r = Double(z) / s
        }
        guard r.isFinite, r >= 0, r < Double(DepthModel.kinectInvalidRaw) else { return invalid }
        let raw = Int(r.rounded())
        guard raw < DepthModel.kinectInvalidRaw, model.validRaw.contains(raw), model.metres(raw: raw) > 0 else {
            return invalid
        }
        return UInt16(raw)
    }

    /// The 8-bit Bayer mosaic of an RGB image: each pixel keeps the one channel `pattern` samples there.
    public static func mosaic(_ rgb: RGBImage, pattern: BayerPattern = .grbg) -> Image<UInt8> {
        precondition(rgb.channels == 3, "mosaic: RGB has 3 channels")
        let w = rgb.width, h = rgb.height
        var out = [UInt8](repeating: 0, count: w * h)
        let tile = [pattern.channel(x: 0, y: 0), pattern.channel(x: 1, y: 0),
                    pattern.channel(x: 0, y: 1), pattern.channel(x: 1, y: 1)]
        rgb.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    for x in 0..<w {
                        let i = y * w + x
                        dst[i] = src[i * 3 + tile[(y & 1) * 2 + (x & 1)]]
                    }
                }
            }
        }
        return Image(width: w, height: h, channels: 1, data: out)
    }
}
