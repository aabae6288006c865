import MapCore

/// An indexed triangle mesh: positions (metres, world frame), optional per-vertex normals, colours and named integer
/// labels (`semantic`, `instance`, `panoptic`, ...), and counter-clockwise triangles (right-hand normal = outward, i.e.
/// towards positive SDF for meshes from `MarchingCubes`).
///
/// The PLY conversion (`plyData`, `init(ply:)`) lives in module Evaluation, because Kernels does not depend on IO.
public struct TriangleMesh: Sendable, Equatable {
    public var vertices: [SIMD3<Float>]
    /// Unit vertex normals, one per vertex, or nil.
    public var normals: [SIMD3<Float>]?
    public var colors: [SIMD3<UInt8>]?
    /// Per-vertex integer properties by name, each with one value per vertex.
    public var labels: [(name: String, values: [Int32])]
    public var triangles: [SIMD3<UInt32>]

    public init(vertices: [SIMD3<Float>] = [], normals: [SIMD3<Float>]? = nil, colors: [SIMD3<UInt8>]? = nil,
                labels: [(name: String, values: [Int32])] = [], triangles: [SIMD3<UInt32>] = []) {
        self.vertices = vertices; self.normals = normals; self.colors = colors; self.labels = labels
        self.triangles = triangles
    }

    public var vertexCount: Int { vertices.count }
    public var triangleCount: Int { triangles.count }
    public var isEmpty: Bool { triangles.isEmpty }

    public func label(_ name: String) -> [Int32]? { labels.first { $0.name == name }?.values }

    public static func == (a: TriangleMesh, b: TriangleMesh) -> Bool {
        a.vertices == b.vertices && a.normals == b.normals && a.colors == b.colors && a.triangles == b.triangles
            && a.labels.map(\.name) == b.labels.map(\.name) && a.labels.map(\.values) == b.labels.map(\.values)
    }

    /// Checks that every per-vertex array has one entry per vertex and every triangle index is in range; the error
    /// names `source` (a file or producer).
    public func validate(source: String) throws(MapError) {
        let n = vertices.count
        func bad(_ m: String) -> MapError {
            MapError(.badFormat, m, file: source, hint: "re-export the mesh with one entry per vertex")
        }
        if let normals, normals.count != n { throw bad("\(normals.count) normals for \(n) vertices") }
        if let colors, colors.count != n { throw bad("\(colors.count) colours for \(n) vertices") }
        for l in labels where l.values.count != n { throw bad("label '\(l.name)' has \(l.values.count) values for \(n) vertices") }
        for (i, t) in triangles.enumerated() where Int(max(t.x, t.y, t.z)) >= n {
            throw bad("triangle \(i) refers to vertex \(max(t.x, t.y, t.z)) of \(n)")
        }
    }

    /// Area of each triangle (m²), in Double.
    public func triangleAreas() -> [Double] {
        triangles.map { t in
            let a = SIMD3<Double>(vertices[Int(t.x)]), b = SIMD3<Double>(vertices[Int(t.y)]), c = SIMD3<Double>(vertices[Int(t.z)])
            return 0.5 * length(cross(b - a, c - a))
        }
    }

    /// Total surface area (m²).
    public func area() -> Double { triangleAreas().reduce(0, +) }

    /// Signed enclosed volume (m³) by the divergence theorem: sum over triangles of a · (b × c) / 6. Positive for a
    /// closed mesh whose triangles face outwards; meaningful only for closed (watertight) meshes.
    public func enclosedVolume() -> Double {
        var v = 0.0
        for t in triangles {
            let a = SIMD3<Double>(vertices[Int(t.x)]), b = SIMD3<Double>(vertices[Int(t.y)]), c = SIMD3<Double>(vertices[Int(t.z)])
            v += dot(a, cross(b, c))
        }
        return v / 6
    }

    /// Axis-aligned bounds of the vertices, nil when there are none.
    public var bounds: (lo: SIMD3<Float>, hi: SIMD3<Float>)? {
        guard var lo = vertices.first else { return nil }
        var hi = lo
        for v in vertices { lo = pointwiseMin(lo, v); hi = pointwiseMax(hi, v) }
        return (lo, hi)
    }
}

extension TriangleMesh {
    /// The triangles whose three vertices lie inside the box [lo, hi], with unused vertices dropped (order kept).
    public func cropped(to lo: SIMD3<Float>, _ hi: SIMD3<Float>) -> TriangleMesh {
        keeping(vertices.map { all($0 .>= lo) && all($0 .<= hi) })
    }

    /// The triangles whose three vertices are marked in `inside`, with unused vertices dropped (order kept).
    public func keeping(_ inside: [Bool]) -> TriangleMesh {
        precondition(inside.count == vertices.count, "TriangleMesh.keeping: one flag per vertex")
        var remap = [Int32](repeating: -1, count: vertices.count)
        var kept: [Int] = []
        var tris: [SIMD3<UInt32>] = []
        tris.reserveCapacity(triangles.count)
        for t in triangles where inside[Int(t.x)] && inside[Int(t.y)] && inside[Int(t.z)] {
            var out = SIMD3<UInt32>()
            for k in 0..<3 {
                let v = Int(t[k])
                if remap[v] < 0 { remap[v] = Int32(kept.count); kept.append(v) }
                out[k] = UInt32(remap[v])
            }
            tris.append(out)
        }
        return TriangleMesh(vertices: kept.map { vertices[$0] }, normals: normals.map { n in kept.map { n[$0] } },
                            colors: colors.map { c in kept.map { c[$0] } },
                            labels: labels.map { label in (name: label.name, values: kept.map { label.values[$0] }) },
                            triangles: tris)
    }
}
