import MapCore

/// Batched SDF evaluation: reads `count` positions (x, y, z interleaved, metres, world frame) from `positions` and
/// writes `count` signed distances (metres, negative inside) to `out`. `BlockMesher` may call it from several threads
/// at once (one call per thread at a time), and relies on it being a pure function of each position: the same
/// position must give the same value whatever batch it comes in, or blocks that share a face may disagree (cracks).
public typealias SDFEvaluator = @Sendable (_ positions: UnsafePointer<Float>, _ count: Int,
                                           _ out: UnsafeMutablePointer<Float>) -> Void

/// Index of a block of the fixed world grid: block `k` covers voxels `k * B ..< (k + 1) * B` along each axis.
public struct BlockKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var x: Int32, y: Int32, z: Int32
    public init(_ x: Int, _ y: Int, _ z: Int) { self.x = Int32(x); self.y = Int32(y); self.z = Int32(z) }
    public var vector: SIMD3<Int> { SIMD3(Int(x), Int(y), Int(z)) }
    /// z, then y, then x (the order blocks are assembled in).
    public static func < (a: BlockKey, b: BlockKey) -> Bool { (a.z, a.y, a.x) < (b.z, b.y, b.x) }
    public var description: String { "(\(x), \(y), \(z))" }
}

/// The fixed world grid of SDF samples that blocks are cut from. Global sample (i, j, k) sits at
/// `origin + voxelSize * (i, j, k)`; block `key` owns the cubes between samples `key * B` and `key * B + B`
/// (so it reads (B + 1)³ samples, sharing its faces' samples with its neighbours).
public struct BlockGrid: Sendable, Equatable {
    /// World position (metres) of global sample (0, 0, 0).
    public var origin: SIMD3<Float>
    /// Sample spacing in metres.
    public var voxelSize: Float
    /// Voxels per block edge (B).
    public var blockVoxels: Int

    public init(origin: SIMD3<Float> = .zero, voxelSize: Float, blockVoxels: Int = 16) {
        self.origin = origin; self.voxelSize = voxelSize; self.blockVoxels = blockVoxels
    }

    /// Global sample indices are kept within ±2^19 so that an edge id fits in 62 bits.
    public static let sampleLimit = 1 << 19

    /// Block side in metres.
    public var blockSize: Float { Float(blockVoxels) * voxelSize }

    /// World position of global sample `s` (the one formula every mesher uses).
    @inline(__always) public func position(sample s: SIMD3<Int>) -> SIMD3<Float> {
        origin + SIMD3<Float>(Float(s.x), Float(s.y), Float(s.z)) * voxelSize
    }

    /// Every block whose cubes meet the world box [lo, hi].
    public func blocks(covering lo: SIMD3<Float>, _ hi: SIMD3<Float>) -> [BlockKey] {
        blockRange(lo, hi, margin: 0)
    }

    /// Every block whose mesh can change when the SDF changes inside the world box [lo, hi]: the block reads samples
    /// on its closed box and evaluates normals up to `normalStep` beyond its vertices, so the box is grown by that.
    public func blocks(touching lo: SIMD3<Float>, _ hi: SIMD3<Float>, normalStep: Float) -> [BlockKey] {
        blockRange(lo, hi, margin: normalStep)
    }

    private func blockRange(_ lo: SIMD3<Float>, _ hi: SIMD3<Float>, margin: Float) -> [BlockKey] {
        let b = blockSize
        func key(_ p: SIMD3<Float>, _ round: (Float) -> Float) -> SIMD3<Int> {
            let q = (p - origin) / b
            return SIMD3(Int(round(q.x)), Int(round(q.y)), Int(round(q.z)))
        }
        // A block's closed box is [k b, (k + 1) b]; it meets [lo - m, hi + m] when k ≤ (hi + m)/b and k + 1 ≥ (lo - m)/b.
        let kLo = key(lo - margin) { ($0 - 1).rounded(.up) }, kHi = key(hi + margin) { $0.rounded(.down) }
        guard kLo.x <= kHi.x, kLo.y <= kHi.y, kLo.z <= kHi.z else { return [] }
        var out: [BlockKey] = []
        for z in kLo.z...kHi.z { for y in kLo.y...kHi.y { for x in kLo.x...kHi.x { out.append(BlockKey(x, y, z)) } } }
        return out
    }

    /// Id of the grid edge starting at global sample `s` along `axis` (unique over the whole grid).
    @inline(__always) public static func edgeID(sample s: SIMD3<Int>, axis: Int) -> UInt64 {
        let b = sampleLimit
        let x = UInt64(s.x + b), y = UInt64(s.y + b), z = UInt64(s.z + b)
        return (((z << 20 | y) << 20 | x) << 2) | UInt64(axis)
    }

    /// Inverse of `edgeID`.
    @inline(__always) public static func edgeSample(_ id: UInt64) -> (sample: SIMD3<Int>, axis: Int) {
        let mask: UInt64 = (1 << 20) - 1, b = sampleLimit
        let x = Int((id >> 2) & mask) - b, y = Int((id >> 22) & mask) - b, z = Int((id >> 42) & mask) - b
        return (SIMD3(x, y, z), Int(id & 3))
    }
}

/// The mesh of one block: one vertex per crossed grid edge of the block (keyed by its global edge id, so vertices on
/// faces shared with a neighbour block weld), and triangles indexing the block's own vertices.
public struct BlockMesh: Sendable, Equatable {
    public var edgeIDs: [UInt64]
    public var vertices: [SIMD3<Float>]
    public var normals: [SIMD3<Float>]
    public var triangles: [SIMD3<UInt32>]
}

/// Block-wise marching cubes over an SDF given as a batched evaluator, keeping each block's mesh so that only dirty
/// blocks are re-meshed (the snapshot writer's path).
///
/// Skip rule (the coarse test): before sampling a block densely, it is sampled on a coarse lattice of stride `s`
/// voxels over its closed box (s divides B; the lattice includes both faces). Every point of the box is within
/// r = s·voxel·√3/2 of a lattice point, so if the SDF is L-Lipschitz, |f(x) − iso| ≥ |f(lattice) − iso| − L·r. The block
/// is skipped when all coarse values lie on one side of iso and all are farther than L·r from it: then no sample of
/// the block can differ in sign, so the dense pass would find no crossing. An exact SDF has L = 1; the default
/// L = 1.5 is the safety margin for learned SDFs whose gradient norm drifts above 1 (the eikonal loss only pulls it
/// towards 1). A block that passes the coarse test but has no crossing costs one dense sampling and yields nothing.
public struct BlockMesher: Sendable {
    public struct Config: Sendable, Equatable {
        public var grid: BlockGrid
        /// Iso level (metres of SDF).
        public var iso: Float = 0
        /// Coarse-test lattice stride in voxels (must divide `grid.blockVoxels`); 0 disables the coarse test.
        public var coarseStride: Int = 4
        /// Lipschitz bound assumed by the coarse test (1 for an exact SDF).
        public var lipschitz: Float = 1.5
        /// Central-difference step for vertex normals, in voxels.
        public var normalStepVoxels: Float = 0.5
        /// Most positions per evaluator call.
        public var maxBatch: Int = 1 << 16
        /// Worker threads (blocks are split into fixed contiguous chunks; results do not depend on the count).
        public var threads: Int = Parallel.defaultThreads

        public init(grid: BlockGrid) { self.grid = grid }

        /// Normal step in metres.
        public var normalStep: Float { normalStepVoxels * grid.voxelSize }

        public func validate() throws(MapError) {
            func bad(_ m: String) -> MapError { MapError(.badArgument, "block mesher: \(m)", hint: "fix BlockMesher.Config") }
            guard grid.voxelSize.isFinite, grid.voxelSize > 0 else { throw bad("voxel size \(grid.voxelSize) m is not positive") }
            guard (grid.origin * 0) == .zero else { throw bad("grid origin \(grid.origin) is not finite") }
            guard (1...256).contains(grid.blockVoxels) else { throw bad("block size \(grid.blockVoxels) voxels is not in 1...256") }
            guard coarseStride >= 0, coarseStride == 0 || grid.blockVoxels % coarseStride == 0 else {
                throw bad("coarse stride \(coarseStride) does not divide the block size \(grid.blockVoxels)")
            }
            guard lipschitz.isFinite, lipschitz >= 1 else { throw bad("Lipschitz bound \(lipschitz) must be >= 1") }
            guard normalStepVoxels.isFinite, normalStepVoxels > 0 else { throw bad("normal step \(normalStepVoxels) voxels is not positive") }
            guard maxBatch >= 1, threads >= 1 else { throw bad("maxBatch \(maxBatch) and threads \(threads) must be >= 1") }
        }
    }

    /// What one `remesh` call did.
    public struct Stats: Sendable, Equatable {
        public var requested = 0
        /// Blocks the coarse test proved empty (not sampled densely).
        public var skipped = 0
        /// Blocks sampled densely.
        public var sampled = 0
        /// Blocks that now hold triangles.
        public var nonEmpty = 0
        /// Positions handed to the evaluator.
        public var evaluations = 0
    }

    public let config: Config
    /// The current mesh of every non-empty block.
    public private(set) var blocks: [BlockKey: BlockMesh] = [:]

    public init(config: Config) throws(MapError) {
        try config.validate()
        self.config = config
    }

    /// Re-meshes `keys` (duplicates ignored) from `sdf`, replacing their previous meshes; blocks that come out empty
    /// are dropped. Other blocks are untouched. Deterministic for any thread count.
    @discardableResult
    public mutating func remesh(_ keys: some Sequence<BlockKey>, sdf: SDFEvaluator) throws(MapError) -> Stats {
        let keys = Array(Set(keys)).sorted()
        let B = config.grid.blockVoxels, lim = BlockGrid.sampleLimit - 2 * B - 2
        for k in keys where abs(Int(k.x)) * B > lim || abs(Int(k.y)) * B > lim || abs(Int(k.z)) * B > lim {
            throw MapError(.badArgument, "block \(k) lies outside the mesher's grid (±\(lim) samples)",
                           hint: "move the grid origin closer to the scene or use larger voxels")
        }
        var stats = Stats()
        stats.requested = keys.count
        let (active, coarse, coarseEvaluations) = coarseTest(keys, sdf: sdf)
        stats.evaluations += coarseEvaluations
        stats.skipped = keys.count - active.count
        stats.sampled = active.count
        let (meshes, denseEvaluations) = meshBlocks(active, coarse: coarse, sdf: sdf)
        stats.evaluations += denseEvaluations
        for k in keys { blocks[k] = nil }
        for (k, m) in zip(active, meshes) where !m.triangles.isEmpty { blocks[k] = m; stats.nonEmpty += 1 }
        return stats
    }

    /// Forgets the meshes of `keys` (e.g. space that left the map).
    public mutating func remove(_ keys: some Sequence<BlockKey>) { for k in keys { blocks[k] = nil } }

    /// The welded mesh of all blocks: blocks in key order, each block's vertices in its order, a vertex on an edge
    /// shared by several blocks taken once (from the first block in key order).
    public func assemble() -> TriangleMesh {
        let keys = blocks.keys.sorted()
        let B = config.grid.blockVoxels
        var vertexTotal = 0, triangleTotal = 0
        for k in keys { vertexTotal += blocks[k]!.vertices.count; triangleTotal += blocks[k]!.triangles.count }
        var vertices = [SIMD3<Float>](), normals = [SIMD3<Float>](), triangles = [SIMD3<UInt32>]()
        vertices.reserveCapacity(vertexTotal); normals.reserveCapacity(vertexTotal); triangles.reserveCapacity(triangleTotal)
        var shared: [UInt64: UInt32] = [:]
        var remap: [UInt32] = []
        for k in keys {
            let b = blocks[k]!
            let base = k.vector &* B
            remap.removeAll(keepingCapacity: true)
            for v in 0..<b.vertices.count {
                let id = b.edgeIDs[v]
                let (s, a) = BlockGrid.edgeSample(id)
                let l = s &- base
                // On a face of the block (a coordinate across the edge at 0 or B): other blocks may hold it too.
                let (u, w) = MarchingCubesTable.otherAxes(a)
                if l[u] == 0 || l[u] == B || l[w] == 0 || l[w] == B {
                    if let g = shared[id] { remap.append(g); continue }
                    shared[id] = UInt32(vertices.count)
                }
                remap.append(UInt32(vertices.count))
                vertices.append(b.vertices[v]); normals.append(b.normals[v])
            }
            for t in b.triangles { triangles.append(SIMD3(remap[Int(t.x)], remap[Int(t.y)], remap[Int(t.z)])) }
        }
        return TriangleMesh(vertices: vertices, normals: normals, triangles: triangles)
    }

    // MARK: steps

    /// Coarse test of every block: returns the blocks that need dense sampling (in `keys` order), their coarse
    /// values (flattened, (B/s + 1)³ per block, x fastest) and the evaluation count.
    func coarseTest(_ keys: [BlockKey], sdf: SDFEvaluator) -> ([BlockKey], [Float], Int) {
        let stride = config.coarseStride
        guard stride > 0, !keys.isEmpty else { return (keys, [], 0) }
        let grid = config.grid, B = grid.blockVoxels, n = B / stride + 1, per = n * n * n
        let total = keys.count * per
        var values = [Float](repeating: 0, count: total)
        let batch = max(per, config.maxBatch / per * per)
        let batches = (total + batch - 1) / batch
        values.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            Parallel.forEachChunk(count: batches, threads: config.threads) { _, range in
                var positions = [Float](repeating: 0, count: 3 * batch)
                for bi in range {
                    let lo = bi * batch, hi = min(total, lo + batch)
                    for p in lo..<hi {
                        let key = keys[p / per], q = p % per
                        let s = key.vector &* B &+ SIMD3(q % n, (q / n) % n, q / (n * n)) &* stride
                        let w = grid.position(sample: s)
                        positions[3 * (p - lo)] = w.x; positions[3 * (p - lo) + 1] = w.y; positions[3 * (p - lo) + 2] = w.z
                    }
                    positions.withUnsafeBufferPointer { sdf($0.baseAddress!, hi - lo, out + lo) }
                }
            }
        }
        let bound = config.lipschitz * Float(stride) * grid.voxelSize * Float(3).squareRoot() / 2
        let iso = config.iso
        var active: [BlockKey] = [], activeValues: [Float] = []
        for (b, key) in keys.enumerated() {
            let v = values[(b * per)..<((b + 1) * per)]
            if !Self.provablyEmpty(v, iso: iso, bound: bound) { active.append(key); activeValues += v }
        }
        return (active, activeValues, total)
    }

    /// The skip rule: all values on one side of iso (`< iso` is inside, as in the extractor) and farther than
    /// `bound` from it (NaN counts as near).
    @inline(__always)
    static func provablyEmpty(_ values: some Sequence<Float>, iso: Float, bound: Float) -> Bool {
        var allAbove = true, allBelow = true
        for f in values {
            if !(f - iso > bound) { allAbove = false }
            if !(iso - f > bound) { allBelow = false }
        }
        return allAbove || allBelow
    }

    /// Dense sampling and marching cubes of `keys`, with normals from central differences through `sdf`.
    ///
    /// Inside a block, the skip rule is applied again per coarse cell (s³ voxels, its 8 coarse corners; the same
    /// bound holds since every point of the cell is within s·voxel·√3/2 of a corner): only samples on the closed box
    /// of a cell that may hold the surface are evaluated. Every other sample lies only in provably empty cells, whose
    /// cubes cannot be crossed; it gets the coarse value of a corner of such a cell (same side of iso), so the
    /// extractor classifies its cubes exactly as with full sampling and never interpolates towards it.
    func meshBlocks(_ keys: [BlockKey], coarse: [Float], sdf: SDFEvaluator) -> ([BlockMesh], Int) {
        guard !keys.isEmpty else { return ([], 0) }
        let grid = config.grid, B = grid.blockVoxels, n = B + 1, per = n * n * n
        let s = config.coarseStride, cells = s > 0 ? B / s : 0, nc = cells + 1, perCoarse = nc * nc * nc
        let bound = config.lipschitz * Float(s) * grid.voxelSize * Float(3).squareRoot() / 2
        let iso = config.iso, h = config.normalStep, maxBatch = config.maxBatch
        let group = max(1, maxBatch / per)
        let results = UnsafeMutableBufferPointer<BlockMesh>.allocate(capacity: keys.count)
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: keys.count)
        results.initialize(repeating: BlockMesh(edgeIDs: [], vertices: [], normals: [], triangles: []))
        counts.initialize(repeating: 0)
        defer { results.deinitialize(); results.deallocate(); counts.deallocate() }

        Parallel.forEachChunk(count: keys.count, threads: config.threads) { _, range in
            var extractor = CrossingExtractor()
            var positions = [Float](), values = [Float](), blockValues = [Float](repeating: 0, count: per)
            var needed = [Bool](repeating: false, count: per), neededIndex: [Int32] = [], neededStart: [Int] = []
            let cornerOffsets = [0, 1, nc, nc + 1, nc * nc, nc * nc + 1, nc * nc + nc, nc * nc + nc + 1]
            var g0 = range.lowerBound
            while g0 < range.upperBound {
                let g1 = min(range.upperBound, g0 + group)
                // 1. The samples the coarse test cannot rule out, for the group's blocks, in one evaluator call.
                positions.removeAll(keepingCapacity: true)
                neededIndex.removeAll(keepingCapacity: true); neededStart.removeAll(keepingCapacity: true)
                for b in g0..<g1 {
                    neededStart.append(neededIndex.count)
                    if s > 0 {
                        for q in 0..<per { needed[q] = false }
                        let cv = coarse[(b * perCoarse)..<((b + 1) * perCoarse)]
                        let c0 = cv.startIndex
                        for cz in 0..<cells { for cy in 0..<cells { for cx in 0..<cells {
                            let q = c0 + (cz * nc + cy) * nc + cx
                            var allAbove = true, allBelow = true // the skip rule on the cell's 8 corners
                            for d in cornerOffsets {
                                let f = cv[q + d]
                                if !(f - iso > bound) { allAbove = false }
                                if !(iso - f > bound) { allBelow = false }
                            }
                            if allAbove || allBelow { continue }
                            for k in (cz * s)...(cz * s + s) { for j in (cy * s)...(cy * s + s) { for i in (cx * s)...(cx * s + s) {
                                needed[(k * n + j) * n + i] = true
                            } } }
                        } } }
                    }
                    for q in 0..<per where s == 0 || needed[q] { neededIndex.append(Int32(q)) }
                    let base = keys[b].vector &* B
                    for q in neededIndex[neededStart[neededStart.count - 1]...] {
                        let q = Int(q)
                        let w = grid.position(sample: base &+ SIMD3(q % n, (q / n) % n, q / (n * n)))
                        positions.append(w.x); positions.append(w.y); positions.append(w.z)
                    }
                }
                neededStart.append(neededIndex.count)
                let count = neededIndex.count
                if values.count < count { values = [Float](repeating: 0, count: count) }
                positions.withUnsafeBufferPointer { p in values.withUnsafeMutableBufferPointer { sdf(p.baseAddress!, count, $0.baseAddress!) } }
                counts[g0] += count
                // 2. Marching cubes per block.
                for b in g0..<g1 {
                    if s > 0 {
                        // Unevaluated samples: the coarse value at the lowest corner of their (empty) cell.
                        let c0 = b * perCoarse
                        for k in 0..<n { for j in 0..<n { for i in 0..<n {
                            let cx = min(i / s, cells - 1), cy = min(j / s, cells - 1), cz = min(k / s, cells - 1)
                            blockValues[(k * n + j) * n + i] = coarse[c0 + (cz * nc + cy) * nc + cx]
                        } } }
                    }
                    let off = neededStart[b - g0]
                    for r in off..<neededStart[b - g0 + 1] { blockValues[Int(neededIndex[r])] = values[r] }
                    blockValues.withUnsafeBufferPointer { v in
                        extractor.run(sdf: v.baseAddress!, dims: SIMD3(repeating: n), iso: iso)
                    }
                    let base = keys[b].vector &* B
                    var mesh = BlockMesh(edgeIDs: [], vertices: [], normals: [], triangles: extractor.triangles)
                    if !mesh.triangles.isEmpty {
                        mesh.edgeIDs.reserveCapacity(extractor.crossings.count)
                        mesh.vertices.reserveCapacity(extractor.crossings.count)
                        mesh.normals.reserveCapacity(extractor.crossings.count)
                        for c in extractor.crossings {
                            let s = Int(c.sample)
                            let g = base &+ SIMD3(s % n, (s / n) % n, s / (n * n))
                            mesh.edgeIDs.append(BlockGrid.edgeID(sample: g, axis: Int(c.axis)))
                            mesh.vertices.append(MarchingCubes.vertexPosition(grid: g, axis: Int(c.axis), t: c.t,
                                                                              origin: grid.origin, voxelSize: grid.voxelSize))
                            // Fallback normal (used if the gradient vanishes): along the edge, towards positive SDF.
                            mesh.normals.append(MarchingCubes.unitNormal(.zero, axis: Int(c.axis), rising: c.rising))
                        }
                    }
                    results[b] = mesh
                }
                // 3. Normals: central differences through the evaluator at every vertex of the group (6 per vertex).
                var ids: [(block: Int, vertex: Int)] = []
                for b in g0..<g1 { for v in 0..<results[b].vertices.count { ids.append((b, v)) } }
                var v0 = 0
                let perCall = max(1, maxBatch / 6)
                while v0 < ids.count {
                    let v1 = min(ids.count, v0 + perCall), m = (v1 - v0) * 6
                    positions.removeAll(keepingCapacity: true)
                    for (b, v) in ids[v0..<v1] {
                        let p = results[b].vertices[v]
                        for a in 0..<3 {
                            var d = SIMD3<Float>(repeating: 0); d[a] = h
                            let plus = p + d, minus = p - d
                            positions.append(plus.x); positions.append(plus.y); positions.append(plus.z)
                            positions.append(minus.x); positions.append(minus.y); positions.append(minus.z)
                        }
                    }
                    if values.count < m { values = [Float](repeating: 0, count: m) }
                    positions.withUnsafeBufferPointer { p in values.withUnsafeMutableBufferPointer { sdf(p.baseAddress!, m, $0.baseAddress!) } }
                    counts[g0] += m
                    for (r, (b, v)) in ids[v0..<v1].enumerated() {
                        let q = r * 6
                        let g = SIMD3(values[q] - values[q + 1], values[q + 2] - values[q + 3], values[q + 4] - values[q + 5])
                        let l2 = (g * g).sum()
                        if l2 > 1e-30, l2.isFinite { results[b].normals[v] = g / l2.squareRoot() }
                    }
                    v0 = v1
                }
                g0 = g1
            }
        }
        return (Array(results), counts.reduce(0, +))
    }
}
