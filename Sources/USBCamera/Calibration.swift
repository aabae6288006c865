import Foundation
import MapCore

/// Per-device calibration of an RGB-D camera: both cameras' pinhole intrinsics, the rigid transform from the depth
/// camera to the colour camera, and the model turning raw depth samples into metres. Read from a JSON file whose
/// schema is documented in `calibration/README.md` (format `pano-calibration`, version 2).
///
/// Frames: `D` is the depth (IR) camera, `C` the colour camera, both OpenCV cameras (+z forward, +x right, +y down).
/// `T_C_D` maps depth-camera points into the colour camera: p_C = R p_D + t.
public struct DeviceCalibration: Sendable, Equatable {
    public static let formatName = "pano-calibration"
    public static let currentVersion = 2

    public struct Device: Sendable, Equatable {
        public var name: String
        public var vendorID: UInt16
        public var productID: UInt16
        public init(name: String, vendorID: UInt16, productID: UInt16) {
            self.name = name; self.vendorID = vendorID; self.productID = productID
        }
    }

    public var device: Device
    /// Intrinsics of the depth (IR) camera, for the raw depth image's size.
    public var depthCamera: Intrinsics
    /// Intrinsics of the colour camera, for the demosaiced colour image's size.
    public var colorCamera: Intrinsics
    /// Depth camera → colour camera (p_C = R p_D + t, t in metres).
    public var T_C_D: RigidTransform
    public var depthModel: DepthModel

    public init(device: Device, depthCamera: Intrinsics, colorCamera: Intrinsics, T_C_D: RigidTransform,
                depthModel: DepthModel) {
        self.device = device; self.depthCamera = depthCamera; self.colorCamera = colorCamera; self.T_C_D = T_C_D
        self.depthModel = depthModel
    }

    /// Typical published values for a Microsoft Kinect v1 (045e:02ae) at 640x480: intrinsics and depth→colour
    /// extrinsics from Nicolas Burrus' Kinect calibration page, depth model 1 / (a·raw + b) from the ROS / OpenKinect
    /// fit. Lens distortion is ignored (rectified model). Mirrors `calibration/kinect-v1.json`.
    public static let kinectV1Default = DeviceCalibration(
        device: Device(name: "Microsoft Kinect v1", vendorID: 0x045E, productID: 0x02AE),
        depthCamera: Intrinsics(fx: 594.21434211923247, fy: 591.04053696870778, cx: 339.30780975300314,
                                cy: 242.73913761751615, width: 640, height: 480),
        colorCamera: Intrinsics(fx: 529.21508098293293, fy: 525.56393630057437, cx: 328.94272028759258,
                                cy: 267.48068171871557, width: 640, height: 480),
        T_C_D: RigidTransform(
            rotation: Mat3(rows: Vec3(0.99984628826577793, 0.0012635359098409581, -0.017487233004436643),
                           Vec3(-0.0014779096108364480, 0.99992385683542895, -0.012251380107679535),
                           Vec3(0.017470421412464927, 0.012275341476520762, 0.99977202419716948)),
            translation: Vec3(0.019985242312092553, -0.00074423738761617583, -0.010916736334336222)),
        depthModel: DepthModel(kind: .kinectDisparity(a: -0.0030711016, b: 3.3309495161), validRaw: 0...1083,
                               minMetres: 0.4, maxMetres: 5.0))

    // MARK: loading

    /// Reads and validates a calibration file; every problem is a `MapError(.badCalibration)` naming the file and
    /// the field.
    public static func load(from url: URL) throws -> DeviceCalibration {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw MapError(.missingFile, "cannot read the calibration file (\(error.localizedDescription))",
                           file: url.path, hint: "check the path; calibration/kinect-v1.json is the default")
        }
        return try decode(data, source: url.path)
    }

    /// Parses and validates calibration JSON; `source` names the file in errors.
    public static func decode(_ data: Data, source: String) throws -> DeviceCalibration {
        let root: JSONValue
        do { root = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            if case DecodingError.dataCorrupted(let ctx) = error, ctx.debugDescription == "not a finite number" {
                let path = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                let name = path.hasPrefix(".") ? String(path.dropFirst()) : path
                throw MapError(.badCalibration, "field '\(name)' is not a finite number", file: source,
                               hint: "give a finite decimal number")
            }
            throw MapError(.badCalibration, "not valid JSON (\(error))", file: source,
                           hint: "fix the JSON syntax; see calibration/README.md")
        }
        let top = try Field(value: root, path: "", source: source).object(
            required: ["format", "version", "device", "depth_camera", "color_camera", "depth_to_color", "depth_model"])
        let format = try top["format"].string()
        guard format == formatName else {
            throw top["format"].error("is '\(format)', expected '\(formatName)'",
                                      hint: "this is not a pano calibration file")
        }
        let version = try top["version"].int()
        guard version == currentVersion else {
            throw top["version"].error("is \(version); this build reads version \(currentVersion)",
                                       hint: version > currentVersion ? "update pano"
                                           : "convert the file to the schema in calibration/README.md")
        }
        let dev = try top["device"].object(required: ["name", "vendor_id", "product_id"])
        let name = try dev["name"].string()
        guard !name.isEmpty else { throw dev["name"].error("is empty", hint: "give the camera's name") }
        let device = Device(name: name, vendorID: try dev["vendor_id"].usbID(), productID: try dev["product_id"].usbID())
        let depthCamera = try top["depth_camera"].intrinsics()
        let colorCamera = try top["color_camera"].intrinsics()

        let ext = try top["depth_to_color"].object(required: ["rotation", "translation_m"])
        let r = try ext["rotation"].numbers(count: 9)
        let t = try ext["translation_m"].numbers(count: 3)
        let R = Mat3(rows: Vec3(r[0], r[1], r[2]), Vec3(r[3], r[4], r[5]), Vec3(r[6], r[7], r[8]))
        let orthoError = maxAbsDifference(R * R.transposed, .identity)
        guard orthoError < 1e-4, abs(R.determinant - 1) < 1e-4 else {
            throw ext["rotation"].error(
                "is not a rotation (|R Rᵀ - I| max \(orthoError), det \(R.determinant))",
                hint: "give an orthonormal 3x3 matrix with determinant +1, row-major, mapping depth-camera axes into "
                    + "the colour camera")
        }
        guard length(Vec3(t[0], t[1], t[2])) < 1.0 else {
            throw ext["translation_m"].error("is \(length(Vec3(t[0], t[1], t[2]))) m long",
                                             hint: "the translation is in metres (a few centimetres for one device)")
        }
        let T_C_D = RigidTransform(rotation: R, translation: Vec3(t[0], t[1], t[2]))

        let dm = try top["depth_model"].object(required: ["kind", "coefficients", "valid_raw", "min_m", "max_m"])
        let kindName = try dm["kind"].string()
        let kind: DepthModel.Kind
        switch kindName {
        case "kinect-disparity":
            let c = try dm["coefficients"].object(required: ["a", "b"])
            kind = .kinectDisparity(a: try c["a"].number(), b: try c["b"].number())
        case "linear":
            let c = try dm["coefficients"].object(required: ["metres_per_unit"])
            let s = try c["metres_per_unit"].number()
            guard s > 0 else { throw c["metres_per_unit"].error("is \(s), must be > 0", hint: "e.g. 0.001 for mm") }
            kind = .linear(metresPerUnit: s)
        default:
            throw dm["kind"].error("'\(kindName)' is not a known depth model",
                                   hint: "use one of: \(DepthModel.Kind.names.joined(separator: ", "))")
        }
        let range = try dm["valid_raw"].numbers(count: 2)
        guard range.allSatisfy({ $0 == $0.rounded() }), range[0] >= 0, range[1] <= 65535, range[0] <= range[1] else {
            throw dm["valid_raw"].error("is \(range)", hint: "give [first, last] raw values, integers, 0 ≤ first ≤ last ≤ 65535")
        }
        let minM = try dm["min_m"].number(), maxM = try dm["max_m"].number()
        guard minM >= 0, maxM > minM else {
            throw dm["max_m"].error("range [\(minM), \(maxM)] m is empty or negative",
                                    hint: "give 0 ≤ min_m < max_m in metres")
        }
        let model = DepthModel(kind: kind, validRaw: Int(range[0])...Int(range[1]), minMetres: minM, maxMetres: maxM)
        if case .kinectDisparity = kind, model.validRaw.upperBound > DepthModel.kinectInvalidRaw - 1 {
            throw dm["valid_raw"].error("ends at \(model.validRaw.upperBound); Kinect raw depth is 11-bit and "
                                        + "\(DepthModel.kinectInvalidRaw) means no measurement",
                                        hint: "end valid_raw at \(DepthModel.kinectInvalidRaw - 1) or below")
        }
        return DeviceCalibration(device: device, depthCamera: depthCamera, colorCamera: colorCamera, T_C_D: T_C_D,
                                 depthModel: model)
    }

    /// The calibration as JSON of the documented schema (pretty-printed, keys sorted); `decode` reads it back equal.
    public func jsonData() throws -> Data {
        func cam(_ k: Intrinsics) -> [String: Any] {
            ["fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height]
        }
        let R = T_C_D.rotation, t = T_C_D.translation
        let kindName: String, coefficients: [String: Any]
        switch depthModel.kind {
        case .kinectDisparity(let a, let b): kindName = "kinect-disparity"; coefficients = ["a": a, "b": b]
        case .linear(let s): kindName = "linear"; coefficients = ["metres_per_unit": s]
        }
        let root: [String: Any] = [
            "format": Self.formatName, "version": Self.currentVersion,
            "device": ["name": device.name, "vendor_id": hex4(device.vendorID), "product_id": hex4(device.productID)],
            "depth_camera": cam(depthCamera), "color_camera": cam(colorCamera),
            "depth_to_color": ["rotation": [R.r0.x, R.r0.y, R.r0.z, R.r1.x, R.r1.y, R.r1.z, R.r2.x, R.r2.y, R.r2.z],
                               "translation_m": [t.x, t.y, t.z]],
            "depth_model": ["kind": kindName, "coefficients": coefficients,
                            "valid_raw": [depthModel.validRaw.lowerBound, depthModel.validRaw.upperBound],
                            "min_m": depthModel.minMetres, "max_m": depthModel.maxMetres],
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
    }
}

/// Raw depth sample → metres. Invalid samples (outside `validRaw`, the Kinect's 2047, or a result outside
/// [minMetres, maxMetres]) give 0, the mapper's "no measurement".
public struct DepthModel: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Structured-light disparity (Kinect v1): z = 1 / (a·raw + b) metres.
        case kinectDisparity(a: Double, b: Double)
        /// Depth already in fixed units: z = raw · metresPerUnit (e.g. a UVC depth camera in millimetres).
        case linear(metresPerUnit: Double)

        static let names = ["kinect-disparity", "linear"]
    }

    /// The Kinect v1's "no measurement" raw value (all 11 bits set).
    public static let kinectInvalidRaw = 2047

    public var kind: Kind
    public var validRaw: ClosedRange<Int>
    public var minMetres: Double
    public var maxMetres: Double

    public init(kind: Kind, validRaw: ClosedRange<Int>, minMetres: Double, maxMetres: Double) {
        self.kind = kind; self.validRaw = validRaw; self.minMetres = minMetres; self.maxMetres = maxMetres
    }

    /// Metres for one raw sample (0 = invalid).
    @inlinable public func metres(raw: Int) -> Float {
        guard validRaw.contains(raw) else { return 0 }
        let z: Double
        switch kind {
        case .kinectDisparity(let a, let b):
            // Kinect v1 disparity model: z = 1 / (a·raw + b)
            let d = a * Double(raw) + b
            guard d > 0 else { return 0 }
            z = 1 / d
        case .linear(let s):
            z = Double(raw) * s
        }
        guard z.isFinite, z >= minMetres, z <= maxMetres else { return 0 }
        return Float(z)
    }

    /// A table of `metres(raw:)` for raw 0..<count (2048 for the Kinect's 11 bits), for `convert`.
    public func lookupTable(count: Int = 2048) -> [Float] {
        (0..<count).map { metres(raw: $0) }
    }

    /// Converts raw samples to metres through `table` (from `lookupTable`); raw values beyond the table give 0.
    /// Plain buffers, no allocation.
    public static func convert(raw: UnsafeBufferPointer<UInt16>, table: UnsafeBufferPointer<Float>,
                               into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count >= raw.count, "DepthModel.convert: output holds \(out.count) of \(raw.count) samples")
        let n = table.count
        for i in 0..<raw.count {
            let r = Int(raw[i])
            out[i] = r < n ? table[r] : 0
        }
    }

    /// Converts a raw depth image (one sample per pixel) to metres.
    public func depthImage(fromRaw raw: Gray16Image) -> DepthImage {
        precondition(raw.channels == 1, "raw depth has one channel")
        let table = lookupTable(count: max(2048, validRaw.upperBound + 1))
        var out = [Float](repeating: 0, count: raw.data.count)
        raw.data.withUnsafeBufferPointer { r in
            table.withUnsafeBufferPointer { t in
                out.withUnsafeMutableBufferPointer { o in Self.convert(raw: r, table: t, into: o) }
            }
        }
        return DepthImage(width: raw.width, height: raw.height, data: out)
    }
}

// MARK: strict JSON reading

/// Any JSON value, decoded without losing which keys were present (so unknown keys can be refused).
enum JSONValue: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else {
            // An error deeper down (inside the array or object) is passed on with its own path; a type mismatch at
            // this level means "not this kind of value".
            let depth = decoder.codingPath.count
            func here(_ e: Error) -> Bool {
                if case DecodingError.typeMismatch(_, let ctx) = e { return ctx.codingPath.count == depth }
                return false
            }
            do { self = .array(try c.decode([JSONValue].self)); return } catch where here(error) {}
            do { self = .object(try c.decode([String: JSONValue].self)); return } catch where here(error) {}
            // Scalars that are none of the above: a number literal outside Double's range (1e999).
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a finite number")
        }
    }

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// One field of the calibration file being read, with its dotted path for error messages.
struct Field {
    let value: JSONValue
    let path: String
    let source: String

    func error(_ what: String, hint: String) -> MapError {
        MapError(.badCalibration, "field '\(path.isEmpty ? "(top level)" : path)' \(what)", file: source, hint: hint)
    }

    private func typeError(_ expected: String) -> MapError {
        error("is \(value.typeName), expected \(expected)", hint: "see calibration/README.md for the schema")
    }

    /// An object with exactly the `required` keys: an unknown key (typo) or a missing one is refused, unknown first so
    /// a misspelt key is reported with its likely intended name.
    func object(required: [String]) throws -> FieldObject {
        guard case .object(let dict) = value else { throw typeError("an object") }
        for key in dict.keys.sorted() where !required.contains(key) {
            let near = required.min { editDistance($0, key) < editDistance($1, key) }
            let guess = near.flatMap { editDistance($0, key) <= 3 ? " (did you mean '\($0)'?)" : nil } ?? ""
            throw MapError(.badCalibration, "field '\(child(key))' is not part of the schema\(guess)", file: source,
                           hint: "remove or rename it; allowed here: \(required.joined(separator: ", "))")
        }
        for key in required where dict[key] == nil {
            throw MapError(.badCalibration, "field '\(child(key))' is missing", file: source,
                           hint: "add it; see calibration/README.md for the schema")
        }
        return FieldObject(dict: dict, path: path, source: source)
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func string() throws -> String {
        guard case .string(let s) = value else { throw typeError("a string") }
        return s
    }

    func number() throws -> Double {
        guard case .number(let d) = value else { throw typeError("a number") }
        guard d.isFinite else {
            throw error("is not a finite number (\(d))", hint: "give a finite decimal number")
        }
        return d
    }

    func int() throws -> Int {
        let d = try number()
        guard d == d.rounded(), abs(d) < 1e9 else { throw error("is \(d), expected an integer", hint: "give a whole number") }
        return Int(d)
    }

    func numbers(count: Int) throws -> [Double] {
        guard case .array(let items) = value else { throw typeError("an array of \(count) numbers") }
        guard items.count == count else {
            throw error("has \(items.count) numbers, expected \(count)",
                        hint: count == 9 ? "give the 3x3 matrix as 9 numbers, row-major" : "give \(count) numbers")
        }
        return try items.enumerated().map { i, v in try Field(value: v, path: "\(path)[\(i)]", source: source).number() }
    }

    /// A USB id: a 4-digit hexadecimal string as `lsusb` prints it ("045e").
    func usbID() throws -> UInt16 {
        let s = try string()
        guard s.count == 4, let v = UInt16(s, radix: 16) else {
            throw error("is '\(s)', expected 4 hexadecimal digits", hint: "write the id as lsusb shows it, e.g. \"045e\"")
        }
        return v
    }

    func intrinsics() throws -> Intrinsics {
        let o = try object(required: ["fx", "fy", "cx", "cy", "width", "height"])
        let w = try o["width"].int(), h = try o["height"].int()
        guard w > 0, w <= 16384 else { throw o["width"].error("is \(w)", hint: "give the image width in pixels (1...16384)") }
        guard h > 0, h <= 16384 else { throw o["height"].error("is \(h)", hint: "give the image height in pixels (1...16384)") }
        let fx = try o["fx"].number(), fy = try o["fy"].number()
        guard fx > 0 else { throw o["fx"].error("is \(fx), must be > 0", hint: "focal length in pixels") }
        guard fy > 0 else { throw o["fy"].error("is \(fy), must be > 0", hint: "focal length in pixels") }
        let k = Intrinsics(fx: fx, fy: fy, cx: try o["cx"].number(), cy: try o["cy"].number(), width: w, height: h)
        do { try k.validate(source: source) } catch let e as MapError {
            throw error("is invalid: \(e.message)", hint: e.hint ?? "check the values")
        }
        return k
    }
}

struct FieldObject {
    let dict: [String: JSONValue]
    let path: String
    let source: String
    /// Keys were checked by `Field.object`, so the lookup succeeds for every required key.
    subscript(key: String) -> Field {
        Field(value: dict[key] ?? .null, path: path.isEmpty ? key : "\(path).\(key)", source: source)
    }
}

private func maxAbsDifference(_ a: Mat3, _ b: Mat3) -> Double {
    var m = 0.0
    for r in 0..<3 { for c in 0..<3 { m = max(m, abs(a[r, c] - b[r, c])) } }
    return m
}

private func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 4 - s.count) + s
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    var prev = Array(0...b.count), cur = prev
    for i in 1...a.count {
        cur[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
