import Foundation
import MapCore

/// A point cloud or triangle mesh for PLY files: positions plus optional normals, colours and integer per-vertex
/// properties (labels such as `semantic`, `instance`, `panoptic`).
public struct PLYData: Sendable, Equatable {
    public var positions: [SIMD3<Float>]
    public var normals: [SIMD3<Float>]?
    public var colors: [SIMD3<UInt8>]?
    /// Extra per-vertex integer properties, written as 32-bit signed ints, in this order.
    public var labels: [(name: String, values: [Int32])]
    public var faces: [SIMD3<UInt32>]

    public init(positions: [SIMD3<Float>], normals: [SIMD3<Float>]? = nil, colors: [SIMD3<UInt8>]? = nil,
                labels: [(name: String, values: [Int32])] = [], faces: [SIMD3<UInt32>] = []) {
        self.positions = positions; self.normals = normals; self.colors = colors; self.labels = labels; self.faces = faces
    }

    public func label(_ name: String) -> [Int32]? { labels.first { $0.name == name }?.values }

    public static func == (a: PLYData, b: PLYData) -> Bool {
        a.positions == b.positions && a.normals == b.normals && a.colors == b.colors && a.faces == b.faces
            && a.labels.map(\.name) == b.labels.map(\.name) && a.labels.map(\.values) == b.labels.map(\.values)
    }
}

/// Binary little-endian PLY writer and reader (the reader accepts what the writer writes plus the common
/// variations: float/double/uchar/short/ushort/int/uint properties in any order, `vertex_indices` or
/// `vertex_index` face lists with uchar/int counts).
public enum PLY {
    public static func encode(_ d: PLYData) throws -> [UInt8] {
        let n = d.positions.count
        if let normals = d.normals, normals.count != n { throw mismatch("normals", normals.count, n) }
        if let colors = d.colors, colors.count != n { throw mismatch("colours", colors.count, n) }
        for l in d.labels where l.values.count != n { throw mismatch("label '\(l.name)'", l.values.count, n) }
        var header = "ply\nformat binary_little_endian 1.0\ncomment written by pano\nelement vertex \(n)\n"
        header += "property float x\nproperty float y\nproperty float z\n"
        if d.normals != nil { header += "property float nx\nproperty float ny\nproperty float nz\n" }
        if d.colors != nil { header += "property uchar red\nproperty uchar green\nproperty uchar blue\n" }
        for l in d.labels { header += "property int \(l.name)\n" }
        if !d.faces.isEmpty { header += "element face \(d.faces.count)\nproperty list uchar int vertex_indices\n" }
        header += "end_header\n"
        var out = Array(header.utf8)
        let stride = 12 + (d.normals != nil ? 12 : 0) + (d.colors != nil ? 3 : 0) + 4 * d.labels.count
        out.reserveCapacity(out.count + n * stride + d.faces.count * 13)
        func put(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        func put(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for i in 0..<n {
            let p = d.positions[i]
            put(p.x); put(p.y); put(p.z)
            if let nn = d.normals?[i] { put(nn.x); put(nn.y); put(nn.z) }
            if let c = d.colors?[i] { out.append(c.x); out.append(c.y); out.append(c.z) }
            for l in d.labels { put(l.values[i]) }
        }
        for f in d.faces {
            guard f.x < n, f.y < n, f.z < n else {
                throw MapError(.badArgument, "face (\(f.x), \(f.y), \(f.z)) refers past the \(n) vertices")
            }
            out.append(3); put(Int32(f.x)); put(Int32(f.y)); put(Int32(f.z))
        }
        return out
    }

    public static func write(_ d: PLYData, to url: URL) throws {
        try Files.writeAtomically(try encode(d), to: url)
    }

    public static func read(_ url: URL) throws -> PLYData {
        try decode(try Files.read(url, what: "PLY file"), source: url.path)
    }

    private static func mismatch(_ what: String, _ got: Int, _ n: Int) -> MapError {
        MapError(.badArgument, "\(what) has \(got) entries for \(n) vertices")
    }

    enum Scalar: String {
        case char, uchar, short, ushort, int, uint, float, double
        case int8, uint8, int16, uint16, int32, uint32, float32, float64
        var size: Int {
            switch self {
            case .char, .uchar, .int8, .uint8: return 1
            case .short, .ushort, .int16, .uint16: return 2
            case .int, .uint, .float, .int32, .uint32, .float32: return 4
            case .double, .float64: return 8
            }
        }
    }

    struct Property { var name: String; var type: Scalar; var listCount: Scalar? }
    struct Element { var name: String; var count: Int; var properties: [Property] }

    public static func decode(_ bytes: [UInt8], source: String) throws -> PLYData {
        func bad(_ m: String) -> MapError { MapError(.badFormat, m, file: source, hint: "write a binary little-endian PLY") }
        guard bytes.count >= 4, bytes[0...2] == [0x70, 0x6C, 0x79] else { throw bad("not a PLY file (no 'ply' magic)") }
        guard let endRange = findHeaderEnd(bytes) else { throw bad("no 'end_header' line") }
        let header = String(decoding: bytes[0..<endRange], as: UTF8.self)
        var elements: [Element] = []
        for raw in header.split(separator: "\n") {
            let t = raw.split(separator: " ").map(String.init)
            guard let key = t.first else { continue }
            switch key {
            case "format":
                guard t.count >= 2, t[1] == "binary_little_endian" else { throw bad("only binary_little_endian PLY is read") }
            case "element":
                guard t.count == 3, let c = Int(t[2]), c >= 0 else { throw bad("bad element line '\(raw)'") }
                elements.append(Element(name: t[1], count: c, properties: []))
            case "property":
                guard !elements.isEmpty else { throw bad("property before any element") }
                if t.count == 5, t[1] == "list", let cnt = Scalar(rawValue: t[2]), let ty = Scalar(rawValue: t[3]) {
                    elements[elements.count - 1].properties.append(Property(name: t[4], type: ty, listCount: cnt))
                } else if t.count == 3, let ty = Scalar(rawValue: t[1]) {
                    elements[elements.count - 1].properties.append(Property(name: t[2], type: ty, listCount: nil))
                } else { throw bad("bad property line '\(raw)'") }
            default: continue
            }
        }
        var pos = endRange + "end_header\n".utf8.count
        func read(_ t: Scalar) throws -> Double {
            guard pos + t.size <= bytes.count else {
                throw MapError(.truncatedFile, "PLY data ends early", file: source, hint: "re-export the file")
            }
            defer { pos += t.size }
            return bytes.withUnsafeBytes { raw -> Double in
                let p = raw.baseAddress! + pos
                switch t {
                case .char, .int8: return Double(Int8(bitPattern: p.load(as: UInt8.self)))
                case .uchar, .uint8: return Double(p.load(as: UInt8.self))
                case .short, .int16: return Double(Int16(littleEndian: p.loadUnaligned(as: Int16.self)))
                case .ushort, .uint16: return Double(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
                case .int, .int32: return Double(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
                case .uint, .uint32: return Double(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
                case .float, .float32: return Double(Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))))
                case .double, .float64: return Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
                }
            }
        }
        var out = PLYData(positions: [])
        for e in elements {
            if e.name == "vertex" {
                let names = e.properties.map(\.name)
                guard ["x", "y", "z"].allSatisfy(names.contains) else { throw bad("vertex element lacks x, y, z") }
                let hasN = ["nx", "ny", "nz"].allSatisfy(names.contains)
                let hasC = ["red", "green", "blue"].allSatisfy(names.contains)
                let known: Set<String> = ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha"]
                let labelNames = e.properties.filter { !known.contains($0.name) && $0.listCount == nil }.map(\.name)
                var positions = [SIMD3<Float>](), normals = [SIMD3<Float>](), colors = [SIMD3<UInt8>]()
                var labels = [[Int32]](repeating: [], count: labelNames.count)
                positions.reserveCapacity(e.count)
                for _ in 0..<e.count {
                    var v: [String: Double] = [:]
                    for p in e.properties {
                        if let c = p.listCount {
                            let k = Int(try read(c)); for _ in 0..<max(0, k) { _ = try read(p.type) }
                        } else { v[p.name] = try read(p.type) }
                    }
                    positions.append(SIMD3(Float(v["x"]!), Float(v["y"]!), Float(v["z"]!)))
                    if hasN { normals.append(SIMD3(Float(v["nx"]!), Float(v["ny"]!), Float(v["nz"]!))) }
                    if hasC { colors.append(SIMD3(UInt8(clamping: Int(v["red"]!)), UInt8(clamping: Int(v["green"]!)), UInt8(clamping: Int(v["blue"]!)))) }
                    for (k, name) in labelNames.enumerated() { labels[k].append(Int32(clamping: Int(v[name]!))) }
                }
                out.positions = positions
                out.normals = hasN ? normals : nil
                out.colors = hasC ? colors : nil
                out.labels = zip(labelNames, labels).map { (name: $0, values: $1) }
            } else {
                for _ in 0..<e.count {
                    for p in e.properties {
                        if let c = p.listCount {
                            let k = Int(try read(c))
                            guard k >= 0 else { throw bad("negative list length") }
                            var idx: [UInt32] = []
                            for _ in 0..<k { idx.append(UInt32(clamping: Int(try read(p.type)))) }
                            if e.name == "face", p.name == "vertex_indices" || p.name == "vertex_index" {
                                // Fan-triangulate polygons.
                                if k >= 3 { for j in 1..<(k - 1) { out.faces.append(SIMD3(idx[0], idx[j], idx[j + 1])) } }
                            }
                        } else { _ = try read(p.type) }
                    }
                }
            }
        }
        for f in out.faces where max(f.x, f.y, f.z) >= out.positions.count {
            throw bad("a face refers to vertex \(max(f.x, f.y, f.z)) of \(out.positions.count)")
        }
        return out
    }

    private static func findHeaderEnd(_ bytes: [UInt8]) -> Int? {
        let marker = Array("end_header\n".utf8)
        let limit = min(bytes.count, 1 << 16)
        guard limit >= marker.count else { return nil }
        for i in 0...(limit - marker.count) where bytes[i] == marker[0] && Array(bytes[i..<(i + marker.count)]) == marker {
            return i
        }
        return nil
    }
}
