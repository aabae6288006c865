import Kernels
import MapCore

/// Area-weighted uniform sampling of a triangle mesh's surface.
public enum MeshSampler {
    /// `count` points uniformly distributed over the mesh's area (a triangle is chosen with probability
    /// proportional to its area, then a uniform point inside it: barycentric (1 − √u, √u (1 − v), √u v)).
    /// Deterministic for a given seed. Throws when the mesh has no area.
    public static func sample(_ mesh: TriangleMesh, count: Int, seed: UInt64, source: String = "mesh") throws(MapError)
        -> [SIMD3<Float>] {
        guard count >= 0 else { throw MapError(.badArgument, "sample count \(count) is negative", hint: "give a positive count") }
        try mesh.validate(source: source)
        var cumulative = [Double](), total = 0.0
        cumulative.reserveCapacity(mesh.triangleCount)
        for a in mesh.triangleAreas() { total += a.isFinite ? a : 0; cumulative.append(total) }
        guard total > 0 else {
            throw MapError(.badFormat, "the mesh has no surface area (\(mesh.triangleCount) triangles)", file: source,
                           hint: "give a mesh with faces, or a point cloud")
        }
        var rng = SeededRNG(seed: seed)
        var out = [SIMD3<Float>]()
        out.reserveCapacity(count)
        for _ in 0..<count {
            let u = rng.uniform() * total
            // First triangle whose cumulative area exceeds u (zero-area triangles are never chosen).
            var lo = 0, hi = cumulative.count - 1
            while lo < hi { let m = (lo + hi) / 2; if cumulative[m] > u { hi = m } else { lo = m + 1 } }
            let t = mesh.triangles[lo]
            let a = SIMD3<Double>(mesh.vertices[Int(t.x)]), b = SIMD3<Double>(mesh.vertices[Int(t.y)])
            let c = SIMD3<Double>(mesh.vertices[Int(t.z)])
            let r = rng.uniform().squareRoot(), v = rng.uniform()
            out.append(SIMD3<Float>(a * (1 - r) + b * (r * (1 - v)) + c * (r * v)))
        }
        return out
    }
}
