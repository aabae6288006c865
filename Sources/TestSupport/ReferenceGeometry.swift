import Kernels
import MapCore

/// Slow, obviously-correct twins and checkers for marching cubes and the geometry metrics.
public enum ReferenceGeometry {
    // MARK: analytic fields

    /// Exact SDF of a sphere (metres).
    public static func sphere(center: SIMD3<Float>, radius: Float) -> @Sendable (SIMD3<Float>) -> Float {
        { p in let d = p - center; return (d.x * d.x + d.y * d.y + d.z * d.z).squareRoot() - radius }
    }

    /// Exact SDF of an axis-aligned box.
    public static func box(center: SIMD3<Float>, halfExtents h: SIMD3<Float>) -> @Sendable (SIMD3<Float>) -> Float {
        { p in
            let l = p - center
            let q = SIMD3(abs(l.x), abs(l.y), abs(l.z)) - h
            let o = pointwiseMax(q, .zero)
            return (o.x * o.x + o.y * o.y + o.z * o.z).squareRoot() + min(max(q.x, max(q.y, q.z)), 0)
        }
    }

    /// A batched evaluator over a point function.
    public static func evaluator(_ f: @escaping @Sendable (SIMD3<Float>) -> Float) -> SDFEvaluator {
        { positions, count, out in
            for i in 0..<count { out[i] = f(SIMD3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])) }
        }
    }

    /// Samples `f` on `dims` points (x fastest) at `origin + voxelSize * (i, j, k)`, with the same Float formula as
    /// `BlockGrid.position`, so a dense grid and a block mesher see bit-identical values.
    public static func sampleGrid(dims: SIMD3<Int>, origin: SIMD3<Float>, voxelSize: Float,
                                  _ f: (SIMD3<Float>) -> Float) -> [Float] {
        var out = [Float](); out.reserveCapacity(dims.x * dims.y * dims.z)
        for k in 0..<dims.z { for j in 0..<dims.y { for i in 0..<dims.x {
            out.append(f(origin + SIMD3<Float>(Float(i), Float(j), Float(k)) * voxelSize))
        } } }
        return out
    }

    // MARK: marching-cubes checkers

    /// Edge-use census of a triangle list: undirected edges used once (holes), more than twice (non-manifold), and
    /// edges whose two uses run the same way (inconsistent orientation).
    public struct EdgeCensus: Sendable, Equatable {
        public var edges = 0
        public var boundary = 0
        public var nonManifold = 0
        public var inconsistent = 0
        /// Triangles with a repeated vertex index.
        public var degenerate = 0
        public var isClosedAndOriented: Bool { boundary == 0 && nonManifold == 0 && inconsistent == 0 && degenerate == 0 }
    }

    public static func edgeCensus(_ triangles: [SIMD3<UInt32>]) -> EdgeCensus {
        var directed: [SIMD2<UInt32>: Int] = [:]
        var census = EdgeCensus()
        for t in triangles {
            if t.x == t.y || t.y == t.z || t.x == t.z { census.degenerate += 1; continue }
            for (a, b) in [(t.x, t.y), (t.y, t.z), (t.z, t.x)] { directed[SIMD2(a, b), default: 0] += 1 }
        }
        var seen = Set<SIMD2<UInt32>>()
        for e in directed.keys {
            let key = SIMD2(min(e.x, e.y), max(e.x, e.y))
            if !seen.insert(key).inserted { continue }
            census.edges += 1
            let forward = directed[key] ?? 0, backward = directed[SIMD2(key.y, key.x)] ?? 0
            let total = forward + backward
            if total == 1 { census.boundary += 1 } else if total > 2 { census.nonManifold += 1 }
            else if forward != 1 || backward != 1 { census.inconsistent += 1 }
        }
        return census
    }

    /// Per-cube marching cubes without welding: every cube of the grid, every triangle of its case, each corner
    /// interpolated on its own. Triangles as position triples.
    public static func triangleSoup(sdf: [Float], dims: SIMD3<Int>, origin: SIMD3<Float>, voxelSize: Float,
                                    iso: Float = 0) -> [[SIMD3<Float>]] {
        let table = MarchingCubesTable.shared
        func value(_ g: SIMD3<Int>) -> Float { sdf[(g.z * dims.y + g.y) * dims.x + g.x] }
        var soup: [[SIMD3<Float>]] = []
        for k in 0..<(dims.z - 1) { for j in 0..<(dims.y - 1) { for i in 0..<(dims.x - 1) {
            let g = SIMD3(i, j, k)
            var cfg = 0
            for c in 0..<8 where value(g &+ MarchingCubesTable.cornerOffset(c)) < iso { cfg |= 1 << c }
            let edges = Array(table.triangles(case: cfg))
            for t in stride(from: 0, to: edges.count, by: 3) {
                soup.append((0..<3).map { q in
                    let (a, o) = MarchingCubesTable.edgeStart(Int(edges[t + q]))
                    var g1 = g &+ o; g1[a] += 1
                    let f0 = value(g &+ o), f1 = value(g1)
                    var u = (iso - f0) / (f1 - f0)
                    if !u.isFinite { u = 0.5 }
                    u = min(1, max(0, u))
                    return MarchingCubes.vertexPosition(grid: g &+ o, axis: a, t: u, origin: origin, voxelSize: voxelSize)
                })
            }
        } } }
        return soup
    }

    /// A triangle as a comparable key, rotated so its smallest corner (lexicographically) comes first; orientation is
    /// kept.
    public static func canonical(_ t: [SIMD3<Float>]) -> [Float] {
        func less(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> Bool { (a.x, a.y, a.z) < (b.x, b.y, b.z) }
        var start = 0
        for q in 1..<3 where less(t[q], t[start]) { start = q }
        return (0..<3).flatMap { q -> [Float] in let p = t[(start + q) % 3]; return [p.x, p.y, p.z] }
    }

    // MARK: metrics twins

    /// Exact nearest distance (metres) from every query to `points`, by brute force (same Float formula as the tree).
    public static func nearestDistances(queries: [SIMD3<Float>], points: [SIMD3<Float>]) -> [Float] {
        queries.map { q in
            var best = Float.infinity
            for p in points {
                let d = p - q
                best = min(best, d.x * d.x + d.y * d.y + d.z * d.z)
            }
            return best.squareRoot()
        }
    }

    /// Whether a camera (pose T_W_C, intrinsics, depth image in metres) sees `p_W`: in front, projecting inside the
    /// image onto a pixel with valid depth, and no farther than that depth plus `margin`. Written in Double, from the
    /// definitions.
    public static func sees(_ p_W: SIMD3<Float>, T_W_C: RigidTransform, intrinsics K: Intrinsics, depth: DepthImage,
                            margin: Double) -> Bool {
        let p_C = T_W_C.inverse * Vec3(Double(p_W.x), Double(p_W.y), Double(p_W.z))
        guard p_C.z > 0 else { return false }
        let u = K.fx * p_C.x / p_C.z + K.cx, v = K.fy * p_C.y / p_C.z + K.cy
        let px = Int((u + 0.5).rounded(.down)), py = Int((v + 0.5).rounded(.down))
        guard px >= 0, py >= 0, px < depth.width, py < depth.height else { return false }
        let d = Double(depth[px, py])
        guard d > 0, d.isFinite else { return false }
        return p_C.z <= d + margin
    }
}
