import Kernels
import MapCore
import TestSupport
import XCTest

final class MarchingCubesTests: XCTestCase {
    // MARK: case table

    func testEveryCaseClosesIntoLoopsCoveringEachCrossedEdgeOnce() {
        for rule in [MarchingCubesTable.AmbiguityRule.separateInside, .separateOutside] {
            let table = MarchingCubesTable(rule: rule)
            for c in 0..<256 {
                var crossed = Set<Int>()
                for e in 0..<12 {
                    let (c0, c1) = MarchingCubesTable.edgeCorners(e)
                    if (c >> c0) & 1 != (c >> c1) & 1 { crossed.insert(e) }
                }
                let onLoops = table.loops[c].flatMap { $0 }.map(Int.init)
                XCTAssertEqual(onLoops.count, crossed.count, "case \(c): an edge is on two loops")
                XCTAssertEqual(Set(onLoops), crossed, "case \(c)")
                XCTAssertTrue(table.loops[c].allSatisfy { $0.count >= 3 }, "case \(c)")
                // The case's triangles form disks bounded by the loops: directed boundary = the loop segments.
                var directed: [SIMD2<Int>: Int] = [:]
                let tri = Array(table.triangles(case: c)).map(Int.init)
                XCTAssertEqual(tri.count / 3, table.loops[c].reduce(0) { $0 + $1.count - 2 }, "case \(c)")
                for t in stride(from: 0, to: tri.count, by: 3) {
                    for q in 0..<3 { directed[SIMD2(tri[t + q], tri[t + (q + 1) % 3]), default: 0] += 1 }
                }
                var boundary = Set<SIMD2<Int>>()
                for (e, n) in directed {
                    XCTAssertEqual(n, 1, "case \(c): edge \(e) used twice the same way")
                    if directed[SIMD2(e.y, e.x)] == nil { boundary.insert(e) }
                }
                let segments = Set(MarchingCubesTable.faceSegments(case: c, rule: rule).map { SIMD2(Int($0.0), Int($0.1)) })
                XCTAssertEqual(boundary, segments, "case \(c)")
                // No added diagonal lies in a cube face (the neighbour could draw the same one: a 4-triangle edge).
                for e in directed.keys where !boundary.contains(e) {
                    XCTAssertTrue(Set(faces(e.x)).isDisjoint(with: faces(e.y)), "case \(c): diagonal \(e) lies in a face")
                }
            }
        }
    }

    /// The two faces (2·axis + side) that cube edge `e` lies on.
    private func faces(_ e: Int) -> [Int] {
        let (c0, c1) = MarchingCubesTable.edgeCorners(e)
        let o = MarchingCubesTable.cornerOffset(c0), a = (c0 ^ c1) == 1 ? 0 : (c0 ^ c1) == 2 ? 1 : 2
        return (0..<3).filter { $0 != a }.map { 2 * $0 + o[$0] }
    }

    /// Complementary symmetry: flipping every sign flips the orientation of every loop. With a fixed ambiguity rule
    /// the complement also swaps the rule on ambiguous faces (which is why the classic complement-symmetric table
    /// cracks); so case c under `separateInside` equals case ~c under `separateOutside` reversed, for all 256, and
    /// cases without an ambiguous face are complement-symmetric under one rule.
    func testComplementarySymmetry() {
        let inside = MarchingCubesTable(rule: .separateInside), outside = MarchingCubesTable(rule: .separateOutside)
        func cycles(_ loops: [[UInt8]], reversed: Bool) -> Set<[UInt8]> {
            Set(loops.map { loop in
                let l = reversed ? Array(loop.reversed()) : loop
                let s = l.firstIndex(of: l.min()!)!
                return Array(l[s...] + l[..<s])
            })
        }
        var unambiguous = 0
        for c in 0..<256 {
            XCTAssertEqual(cycles(inside.loops[c], reversed: false), cycles(outside.loops[255 - c], reversed: true), "case \(c)")
            if inside.loops[c] == outside.loops[c] {
                unambiguous += 1
                XCTAssertEqual(cycles(inside.loops[c], reversed: false), cycles(inside.loops[255 - c], reversed: true), "case \(c)")
            }
        }
        // 256 minus the cases with at least one face of the form (in, out, in, out).
        XCTAssertEqual(unambiguous, 256 - ambiguousCaseCount())
        XCTAssertEqual(MarchingCubesTable.shared, inside)
    }

    private func ambiguousCaseCount() -> Int {
        let faces: [[Int]] = [[0, 2, 6, 4], [1, 3, 7, 5], [0, 4, 5, 1], [2, 6, 7, 3], [0, 1, 3, 2], [4, 5, 7, 6]]
        return (0..<256).filter { c in
            faces.contains { f in
                let s = f.map { (c >> $0) & 1 }
                return s[0] == s[2] && s[1] == s[3] && s[0] != s[1]
            }
        }.count
    }

    func testSingleCornerCasesFacePositiveSide() {
        // One inside corner: the triangle's right-hand normal points away from it (towards positive SDF).
        let table = MarchingCubesTable.shared
        for corner in 0..<8 {
            for (c, sign) in [(1 << corner, 1.0), (255 - (1 << corner), -1.0)] {
                let e = Array(table.triangles(case: c)).map(Int.init)
                XCTAssertEqual(e.count, 3)
                let p = e.map { edge -> SIMD3<Double> in
                    let (a, b) = MarchingCubesTable.edgeCorners(edge)
                    return (SIMD3<Double>(MarchingCubesTable.cornerOffset(a)) + SIMD3<Double>(MarchingCubesTable.cornerOffset(b))) / 2
                }
                let n = cross(p[1] - p[0], p[2] - p[0])
                let away = p[0] - SIMD3<Double>(MarchingCubesTable.cornerOffset(corner))
                XCTAssertGreaterThan(dot(n, away) * sign, 0, "case \(c)")
            }
        }
    }

    // MARK: dense extraction

    /// Sphere r = 0.5 m at 1 cm voxels (111³ samples). Marching cubes errs by O(voxel²/r) here, far inside 1%.
    func testSphereAreaVolumeWatertightAndOutwardNormals() {
        let r: Float = 0.5, vs: Float = 0.01, n = 111
        let origin = SIMD3<Float>(repeating: -0.55)
        let f = ReferenceGeometry.sphere(center: .zero, radius: r)
        let grid = ReferenceGeometry.sampleGrid(dims: SIMD3(repeating: n), origin: origin, voxelSize: vs, f)
        let mesh = grid.withUnsafeBufferPointer {
            MarchingCubes.extract(sdf: $0.baseAddress!, dims: SIMD3(repeating: n), origin: origin, voxelSize: vs)
        }
        let area = mesh.area(), volume = mesh.enclosedVolume()
        let r2 = Double(r) * Double(r)
        let trueArea = 4 * Double.pi * r2, trueVolume = 4 / 3 * Double.pi * r2 * Double(r)
        print("sphere r 0.5 m @ 1 cm: \(mesh.vertexCount) vertices, \(mesh.triangleCount) triangles, area error \(String(format: "%.3f", 100 * (area / trueArea - 1)))%, volume error \(String(format: "%.3f", 100 * (volume / trueVolume - 1)))%")
        XCTAssertEqual(area, trueArea, accuracy: 0.01 * trueArea)
        XCTAssertEqual(volume, trueVolume, accuracy: 0.01 * trueVolume)
        let census = ReferenceGeometry.edgeCensus(mesh.triangles)
        XCTAssertTrue(census.isClosedAndOriented, "\(census)")
        XCTAssertEqual(mesh.vertexCount - census.edges + mesh.triangleCount, 2, "Euler characteristic of a sphere")
        let normals = mesh.normals!
        var worst: Float = 1
        for (v, nrm) in zip(mesh.vertices, normals) {
            XCTAssertEqual(simd_length(v), r, accuracy: 0.002)
            worst = min(worst, simd_dot(nrm, v / simd_length(v)))
        }
        XCTAssertGreaterThan(worst, 0.99, "vertex normals point outwards")
        // Right-hand triangle normals point outwards too.
        for t in mesh.triangles {
            let a = mesh.vertices[Int(t.x)], b = mesh.vertices[Int(t.y)], c = mesh.vertices[Int(t.z)]
            let nrm = simd_cross(b - a, c - a)
            if simd_length(nrm) > 1e-9 { XCTAssertGreaterThan(simd_dot(nrm, a + b + c), 0) }
        }
    }

    func testWeldedMeshEqualsPerCubeReferenceAndIsDeterministic() {
        let n = 24, vs: Float = 0.05
        let origin = SIMD3<Float>(repeating: -0.6)
        let a = ReferenceGeometry.sphere(center: SIMD3(-0.12, 0.05, 0), radius: 0.331)
        let b = ReferenceGeometry.box(center: SIMD3(0.2, -0.1, 0.07), halfExtents: SIMD3(0.221, 0.153, 0.3))
        let grid = ReferenceGeometry.sampleGrid(dims: SIMD3(repeating: n), origin: origin, voxelSize: vs) { min(a($0), b($0)) }
        let mesh = grid.withUnsafeBufferPointer {
            MarchingCubes.extract(sdf: $0.baseAddress!, dims: SIMD3(repeating: n), origin: origin, voxelSize: vs)
        }
        let again = grid.withUnsafeBufferPointer {
            MarchingCubes.extract(sdf: $0.baseAddress!, dims: SIMD3(repeating: n), origin: origin, voxelSize: vs)
        }
        XCTAssertEqual(mesh, again)
        let soup = ReferenceGeometry.triangleSoup(sdf: grid, dims: SIMD3(repeating: n), origin: origin, voxelSize: vs)
        let welded = mesh.triangles.map { t in ReferenceGeometry.canonical([mesh.vertices[Int(t.x)], mesh.vertices[Int(t.y)], mesh.vertices[Int(t.z)]]) }
        XCTAssertEqual(welded.count, soup.count)
        XCTAssertEqual(welded.sorted { $0.lexicographicallyPrecedes($1) }, soup.map(ReferenceGeometry.canonical).sorted { $0.lexicographicallyPrecedes($1) })
        var crossed = 0
        for k in 0..<n { for j in 0..<n { for i in 0..<n {
            let s = (k * n + j) * n + i
            if i + 1 < n, (grid[s] < 0) != (grid[s + 1] < 0) { crossed += 1 }
            if j + 1 < n, (grid[s] < 0) != (grid[s + n] < 0) { crossed += 1 }
            if k + 1 < n, (grid[s] < 0) != (grid[s + n * n] < 0) { crossed += 1 }
        } } }
        XCTAssertEqual(mesh.vertexCount, crossed, "one vertex per crossed edge")
        XCTAssertEqual(Set(mesh.vertices).count, mesh.vertexCount, "no two vertices coincide (no sample is exactly 0 here)")
        XCTAssertTrue(ReferenceGeometry.edgeCensus(mesh.triangles).isClosedAndOriented)
    }

    /// Random sign fields (every ambiguous configuration occurs) with a positive border: the surface is closed.
    func testRandomFieldsGiveClosedOrientedMeshes() {
        var rng = SeededRNG(seed: 5)
        for trial in 0..<60 {
            let n = 9
            var grid = [Float](repeating: 1, count: n * n * n)
            for k in 1..<(n - 1) { for j in 1..<(n - 1) { for i in 1..<(n - 1) {
                grid[(k * n + j) * n + i] = Float(rng.uniform(-1, 1)) + (trial % 2 == 0 ? 0 : 0.3)
            } } }
            let mesh = grid.withUnsafeBufferPointer {
                MarchingCubes.extract(sdf: $0.baseAddress!, dims: SIMD3(repeating: n), origin: .zero, voxelSize: 1)
            }
            let census = ReferenceGeometry.edgeCensus(mesh.triangles)
            XCTAssertTrue(census.isClosedAndOriented, "trial \(trial): \(census)")
        }
    }

    func testPlaneAndBox() {
        // Plane z = 0.123 over a 1 m x 0.8 m grid: flat, exact area, normals +z, vertices exactly at z.
        let vs: Float = 0.05, dims = SIMD3(21, 17, 6)
        let plane = ReferenceGeometry.sampleGrid(dims: dims, origin: .zero, voxelSize: vs) { $0.z - 0.123 }
        let mesh = plane.withUnsafeBufferPointer { MarchingCubes.extract(sdf: $0.baseAddress!, dims: dims, origin: .zero, voxelSize: vs) }
        XCTAssertEqual(mesh.area(), 1.0 * 0.8, accuracy: 1e-4)
        for v in mesh.vertices { XCTAssertEqual(v.z, 0.123, accuracy: 1e-5) }
        for nrm in mesh.normals! { XCTAssertEqual(nrm.z, 1, accuracy: 1e-5) }
        let census = ReferenceGeometry.edgeCensus(mesh.triangles)
        XCTAssertEqual(census.nonManifold + census.inconsistent, 0)
        XCTAssertEqual(census.boundary, 2 * (20 + 16), "open only along the grid border")

        // Box 0.4 x 0.3 x 0.2 m at 1 cm: closed; volume and area lose only the chamfered edges and corners.
        let h = SIMD3<Float>(0.2, 0.15, 0.1), bvs: Float = 0.01, bdims = SIMD3(46, 36, 26)
        let bOrigin = -SIMD3<Float>(0.2253, 0.1751, 0.1249)
        let boxSDF = ReferenceGeometry.box(center: .zero, halfExtents: h)
        let boxGrid = ReferenceGeometry.sampleGrid(dims: bdims, origin: bOrigin, voxelSize: bvs, boxSDF)
        let box = boxGrid.withUnsafeBufferPointer { MarchingCubes.extract(sdf: $0.baseAddress!, dims: bdims, origin: bOrigin, voxelSize: bvs) }
        XCTAssertTrue(ReferenceGeometry.edgeCensus(box.triangles).isClosedAndOriented)
        let v = 8 * Double(h.x * h.y * h.z), a = 8 * Double(h.x * h.y + h.y * h.z + h.x * h.z)
        print("box @ 1 cm: volume error \(String(format: "%.3f", 100 * (box.enclosedVolume() / v - 1)))%, area error \(String(format: "%.3f", 100 * (box.area() / a - 1)))%")
        XCTAssertEqual(box.enclosedVolume(), v, accuracy: 0.01 * v)
        // Each 90° box edge becomes a chamfer at most one voxel wide, losing at most (2 - √2) voxel of area per metre.
        XCTAssertEqual(box.area(), a, accuracy: (2 - 2.squareRoot()) * Double(bvs) * 4 * Double(h.x + h.y + h.z) * 2)
        XCTAssertLessThan(box.area(), a)
        for p in box.vertices { XCTAssertEqual(boxSDF(p), 0, accuracy: 3e-3) }
    }
}


final class BlockMesherMarchingCubesTests: XCTestCase {
    private let center = SIMD3<Float>(0.5, 0.5, 0.5)
    private func config(threads: Int) -> BlockMesher.Config {
        var c = BlockMesher.Config(grid: BlockGrid(origin: .zero, voxelSize: 0.02, blockVoxels: 8))
        c.threads = threads
        c.maxBatch = 5000 // several evaluator calls per thread
        return c
    }
    private var allBlocks: [BlockKey] {
        (0..<6).flatMap { z in (0..<6).flatMap { y in (0..<6).map { x in BlockKey(x, y, z) } } }
    }

    /// 6³ blocks of 8 voxels at 2 cm (0.96 m) against one dense 97³ grid over the same samples.
    func testBlockwiseEqualsDenseAndSkipsEmptyBlocks() throws {
        let f = ReferenceGeometry.sphere(center: center, radius: 0.25)
        var mesher = try BlockMesher(config: config(threads: 2))
        let stats = try mesher.remesh(allBlocks, sdf: ReferenceGeometry.evaluator(f))
        let blockwise = mesher.assemble()
        let n = 49, dims = SIMD3(repeating: 2 * n - 1)
        let grid = ReferenceGeometry.sampleGrid(dims: dims, origin: .zero, voxelSize: 0.02, f)
        let dense = grid.withUnsafeBufferPointer { MarchingCubes.extract(sdf: $0.baseAddress!, dims: dims, origin: .zero, voxelSize: 0.02) }
        XCTAssertEqual(stats.requested, 216)
        XCTAssertGreaterThan(stats.skipped, 50, "\(stats)")
        XCTAssertEqual(stats.sampled + stats.skipped, 216)
        XCTAssertEqual(blockwise.vertexCount, dense.vertexCount)
        XCTAssertEqual(Set(blockwise.vertices), Set(dense.vertices))
        XCTAssertEqual(blockwise.triangleCount, dense.triangleCount)
        func keys(_ m: TriangleMesh) -> [[Float]] {
            m.triangles.map { t in ReferenceGeometry.canonical([m.vertices[Int(t.x)], m.vertices[Int(t.y)], m.vertices[Int(t.z)]]) }
                .sorted { $0.lexicographicallyPrecedes($1) }
        }
        XCTAssertEqual(keys(blockwise), keys(dense))
        XCTAssertTrue(ReferenceGeometry.edgeCensus(blockwise.triangles).isClosedAndOriented)
        // Evaluator normals agree with the grid-gradient normals and point outwards.
        var denseNormal: [SIMD3<Float>: SIMD3<Float>] = [:]
        for (v, nrm) in zip(dense.vertices, dense.normals!) { denseNormal[v] = nrm }
        for (v, nrm) in zip(blockwise.vertices, blockwise.normals!) {
            XCTAssertGreaterThan(simd_dot(nrm, denseNormal[v]!), 0.995)
            XCTAssertGreaterThan(simd_dot(nrm, (v - center) / simd_length(v - center)), 0.999)
        }
    }

    func testRemeshingADirtyBlockChangesOnlyThatBlock() throws {
        let f = ReferenceGeometry.sphere(center: center, radius: 0.25)
        // A bump of compact support (radius rho) at a surface point near the middle of block (4, 2, 3).
        let c = SIMD3<Float>(0.72, 0.5 - 0.1025, 0.56), rho: Float = 0.04
        let f2: @Sendable (SIMD3<Float>) -> Float = { p in
            let d = p - c, q = max(0, 1 - (d * d).sum() / (rho * rho))
            return f(p) - 0.02 * q * q
        }
        var mesher = try BlockMesher(config: config(threads: 2))
        try mesher.remesh(allBlocks, sdf: ReferenceGeometry.evaluator(f))
        let before = mesher.blocks
        let dirty = mesher.config.grid.blocks(touching: c - rho, c + rho, normalStep: mesher.config.normalStep)
        XCTAssertEqual(dirty, [BlockKey(4, 2, 3)])
        let stats = try mesher.remesh(dirty, sdf: ReferenceGeometry.evaluator(f2))
        XCTAssertEqual(stats.requested, 1)
        for (k, m) in mesher.blocks where k != dirty[0] { XCTAssertEqual(m, before[k], "block \(k)") }
        XCTAssertEqual(Set(mesher.blocks.keys), Set(before.keys))
        XCTAssertNotEqual(mesher.blocks[dirty[0]], before[dirty[0]])
        // Same as meshing everything from scratch with the changed SDF.
        var fresh = try BlockMesher(config: config(threads: 1))
        try fresh.remesh(allBlocks, sdf: ReferenceGeometry.evaluator(f2))
        XCTAssertEqual(mesher.blocks, fresh.blocks)
        let mesh = mesher.assemble()
        XCTAssertEqual(mesh, fresh.assemble())
        XCTAssertTrue(ReferenceGeometry.edgeCensus(mesh.triangles).isClosedAndOriented)
    }

    func testDeterministicAcrossThreadCountsAndRuns() throws {
        let a = ReferenceGeometry.sphere(center: center, radius: 0.2)
        let b = ReferenceGeometry.box(center: SIMD3(0.6, 0.45, 0.5), halfExtents: SIMD3(0.2, 0.1, 0.15))
        let f: @Sendable (SIMD3<Float>) -> Float = { min(a($0), b($0)) }
        var one = try BlockMesher(config: config(threads: 1)), two = try BlockMesher(config: config(threads: 2))
        let s1 = try one.remesh(allBlocks, sdf: ReferenceGeometry.evaluator(f))
        let s2 = try two.remesh(allBlocks.reversed(), sdf: ReferenceGeometry.evaluator(f))
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(one.blocks, two.blocks)
        XCTAssertEqual(one.assemble(), two.assemble())
        var again = try BlockMesher(config: config(threads: 2))
        try again.remesh(allBlocks, sdf: ReferenceGeometry.evaluator(f))
        XCTAssertEqual(again.assemble(), two.assemble())
    }

    func testConfigAndKeyErrorsAreTyped() throws {
        var c = config(threads: 1)
        c.coarseStride = 3
        XCTAssertThrowsError(try BlockMesher(config: c)) { XCTAssertEqual(($0 as? MapError)?.kind, .badArgument) }
        var m = try BlockMesher(config: config(threads: 1))
        XCTAssertThrowsError(try m.remesh([BlockKey(1 << 17, 0, 0)], sdf: ReferenceGeometry.evaluator { _ in 1 })) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badArgument)
        }
        XCTAssertEqual(BlockGrid.edgeSample(BlockGrid.edgeID(sample: SIMD3(-5, 7, -300_000), axis: 2)).sample, SIMD3(-5, 7, -300_000))
    }
}

@inline(__always) private func simd_length(_ v: SIMD3<Float>) -> Float { (v * v).sum().squareRoot() }
@inline(__always) private func simd_dot(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> Float { (a * b).sum() }
@inline(__always) private func simd_cross(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> SIMD3<Float> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}