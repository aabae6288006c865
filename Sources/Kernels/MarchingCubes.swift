/// Marching cubes over a dense grid of SDF samples (table: `MarchingCubesTable`, generated at first use).
///
/// One vertex per crossed grid edge (welded), placed by linear interpolation of the two samples; a sample is inside
/// when its value is < iso. For a surface that is closed inside the grid the mesh is watertight (every edge in exactly
/// two triangles, consistently oriented) with right-hand normals pointing to positive SDF.
public enum MarchingCubes {
    /// Extracts the iso-surface of `sdf` sampled on `dims` points (x fastest, then y, then z); sample (i, j, k) sits
    /// at `origin + voxelSize * (i, j, k)`. Normals are the normalised central-difference gradient of the grid
    /// (one-sided at its border), interpolated along the edge, pointing to positive SDF.
    public static func extract(sdf: UnsafePointer<Float>, dims: SIMD3<Int>, origin: SIMD3<Float>, voxelSize: Float,
                               iso: Float = 0) -> TriangleMesh {
        var extractor = CrossingExtractor()
        extractor.run(sdf: sdf, dims: dims, iso: iso)
        let nx = dims.x, plane = dims.x * dims.y
        var vertices = [SIMD3<Float>](), normals = [SIMD3<Float>]()
        vertices.reserveCapacity(extractor.crossings.count); normals.reserveCapacity(extractor.crossings.count)
        func gradient(_ i: Int, _ j: Int, _ k: Int) -> SIMD3<Float> {
            let idx = k * plane + j * nx + i
            func d(_ c: Int, _ n: Int, _ stride: Int) -> Float {
                let lo = c > 0 ? idx - stride : idx, hi = c < n - 1 ? idx + stride : idx
                return hi == lo ? 0 : (sdf[hi] - sdf[lo]) / Float((hi - lo) / stride)
            }
            return SIMD3(d(i, dims.x, 1), d(j, dims.y, nx), d(k, dims.z, plane))
        }
        for c in extractor.crossings {
            let s = Int(c.sample), a = Int(c.axis)
            let g0 = SIMD3(s % nx, (s / nx) % dims.y, s / plane)
            vertices.append(vertexPosition(grid: g0, axis: a, t: c.t, origin: origin, voxelSize: voxelSize))
            var g1 = g0; g1[a] += 1
            let grad = gradient(g0.x, g0.y, g0.z) * (1 - c.t) + gradient(g1.x, g1.y, g1.z) * c.t
            normals.append(unitNormal(grad, axis: a, rising: c.rising))
        }
        return TriangleMesh(vertices: vertices, normals: normals, triangles: extractor.triangles)
    }

    /// Position of the vertex on the grid edge starting at global sample `grid` along `axis`, at fraction `t`.
    /// Every extractor (dense and block-wise) places vertices with this one formula from global sample indices, so
    /// vertices on edges shared between blocks are bit-identical.
    @inline(__always)
    public static func vertexPosition(grid: SIMD3<Int>, axis: Int, t: Float, origin: SIMD3<Float>,
                                      voxelSize: Float) -> SIMD3<Float> {
        var c = SIMD3<Float>(Float(grid.x), Float(grid.y), Float(grid.z))
        c[axis] += t
        return origin + c * voxelSize
    }

    /// Normalised `g`; when it vanishes (flat samples), the edge direction towards the positive sample.
    @inline(__always)
    static func unitNormal(_ g: SIMD3<Float>, axis: Int, rising: Bool) -> SIMD3<Float> {
        let l2 = (g * g).sum()
        if l2 > 1e-30, l2.isFinite { return g / l2.squareRoot() }
        var n = SIMD3<Float>(repeating: 0)
        n[axis] = rising ? 1 : -1
        return n
    }
}

/// One crossed grid edge: its start sample (linear index into the grid handed to `CrossingExtractor.run`), axis and
/// the interpolation fraction along it.
public struct EdgeCrossing: Sendable, Equatable {
    public var sample: Int32
    public var axis: UInt8
    /// True when the value rises along the edge (start inside, end outside).
    public var rising: Bool
    /// Fraction in [0, 1] from the start sample.
    public var t: Float
}

/// The marching-cubes core over a dense sample grid: crossed edges (vertices, in order of their start sample, then
/// axis) and triangles indexing them. Works slab by slab (two layers of edge indices), so memory is O(nx·ny) beyond
/// the outputs; keeps its buffers between runs so a per-thread instance does not allocate per block.
public struct CrossingExtractor: Sendable {
    public private(set) var crossings: [EdgeCrossing] = []
    public private(set) var triangles: [SIMD3<UInt32>] = []
    private var cur: [Int32] = [], next: [Int32] = [], zEdges: [Int32] = []

    public init() {}

    /// Per cube edge: axis and start-corner offset, flattened (a, dx, dy, dz).
    private static let edgeInfo: [Int] = (0..<12).flatMap { e -> [Int] in
        let (a, o) = MarchingCubesTable.edgeStart(e)
        return [a, o.x, o.y, o.z]
    }

    public mutating func run(sdf: UnsafePointer<Float>, dims: SIMD3<Int>, iso: Float,
                             table: MarchingCubesTable = .shared) {
        // Work on locals (buffers moved out of self and back) so that no access to self overlaps another.
        var crossings = self.crossings, triangles = self.triangles
        var cur = self.cur, next = self.next, zEdges = self.zEdges
        self.crossings = []; self.triangles = []; self.cur = []; self.next = []; self.zEdges = []
        defer {
            self.crossings = crossings; self.triangles = triangles; self.cur = cur; self.next = next; self.zEdges = zEdges
        }
        crossings.removeAll(keepingCapacity: true)
        triangles.removeAll(keepingCapacity: true)
        let nx = dims.x, ny = dims.y, nz = dims.z
        guard nx >= 2, ny >= 2, nz >= 2 else { return }
        let plane = nx * ny
        // x-edge indices in [0, plane), y-edge indices in [plane, 2 plane) of `cur` (layer k) and `next` (layer k+1).
        if cur.count < 2 * plane {
            cur = [Int32](repeating: -1, count: 2 * plane); next = cur; zEdges = [Int32](repeating: -1, count: plane)
        }

        @inline(__always) func add(_ s: Int, _ a: Int, _ f0: Float, _ f1: Float) -> Int32 {
            var t = (iso - f0) / (f1 - f0)
            if !t.isFinite { t = 0.5 }
            t = min(1, max(0, t))
            crossings.append(EdgeCrossing(sample: Int32(s), axis: UInt8(a), rising: f1 >= iso, t: t))
            return Int32(crossings.count - 1)
        }
        func fillXY(_ k: Int, _ buf: inout [Int32]) {
            buf.withUnsafeMutableBufferPointer { b in
                for j in 0..<ny {
                    for i in 0..<nx {
                        let s = k * plane + j * nx + i, f0 = sdf[s], in0 = f0 < iso
                        var ix: Int32 = -1, iy: Int32 = -1
                        if i + 1 < nx { let f1 = sdf[s + 1]; if in0 != (f1 < iso) { ix = add(s, 0, f0, f1) } }
                        if j + 1 < ny { let f1 = sdf[s + nx]; if in0 != (f1 < iso) { iy = add(s, 1, f0, f1) } }
                        b[j * nx + i] = ix; b[plane + j * nx + i] = iy
                    }
                }
            }
        }
        fillXY(0, &cur)
        let info = Self.edgeInfo
        for k in 0..<(nz - 1) {
            zEdges.withUnsafeMutableBufferPointer { z in
                for q in 0..<plane {
                    let s = k * plane + q, f0 = sdf[s], f1 = sdf[s + plane]
                    z[q] = (f0 < iso) != (f1 < iso) ? add(s, 2, f0, f1) : -1
                }
            }
            fillXY(k + 1, &next)
            cur.withUnsafeBufferPointer { c in
                next.withUnsafeBufferPointer { n in
                    zEdges.withUnsafeBufferPointer { z in
                        table.triangleEdges.withUnsafeBufferPointer { te in
                            table.triangleOffsets.withUnsafeBufferPointer { to in
                                info.withUnsafeBufferPointer { info in
                                    for j in 0..<(ny - 1) {
                                        for i in 0..<(nx - 1) {
                                            let s = k * plane + j * nx + i
                                            var cfg = 0
                                            if sdf[s] < iso { cfg |= 1 }
                                            if sdf[s + 1] < iso { cfg |= 2 }
                                            if sdf[s + nx] < iso { cfg |= 4 }
                                            if sdf[s + nx + 1] < iso { cfg |= 8 }
                                            if sdf[s + plane] < iso { cfg |= 16 }
                                            if sdf[s + plane + 1] < iso { cfg |= 32 }
                                            if sdf[s + plane + nx] < iso { cfg |= 64 }
                                            if sdf[s + plane + nx + 1] < iso { cfg |= 128 }
                                            let lo = to[cfg], hi = to[cfg + 1]
                                            if lo == hi { continue }
                                            @inline(__always) func vertex(_ e: UInt8) -> UInt32 {
                                                let e = Int(e) * 4
                                                let a = info[e], dx = info[e + 1], dy = info[e + 2], dz = info[e + 3]
                                                let q = (j + dy) * nx + i + dx
                                                switch a {
                                                case 0: return UInt32(bitPattern: dz == 0 ? c[q] : n[q])
                                                case 1: return UInt32(bitPattern: dz == 0 ? c[plane + q] : n[plane + q])
                                                default: return UInt32(bitPattern: z[q])
                                                }
                                            }
                                            var p = lo
                                            while p < hi {
                                                triangles.append(SIMD3(vertex(te[p]), vertex(te[p + 1]), vertex(te[p + 2])))
                                                p += 3
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            swap(&cur, &next)
        }
    }
}
