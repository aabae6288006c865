import Evaluation
import Foundation
import IO
import Kernels
import MapCore
import TestSupport
import XCTest

final class GeometryMetricsTests: XCTestCase {
    /// GT: a 10 x 10 grid (10 cm pitch) on z = 0. Reconstruction: the same grid lifted by 1 cm (60 points) and 7 cm
    /// (40 points), plus 25 outliers 50 cm above. Every nearest neighbour is the point straight above/below (the next
    /// candidate is ≥ 10 cm away), so: accuracy = (60·1 + 40·7 + 25·50) / 125 cm = 12.72 cm, precision = 60/125,
    /// completion = (60·1 + 40·7) / 100 cm = 3.4 cm, recall = 60/100.
    func testHandComputedOffsets() throws {
        var gt: [SIMD3<Float>] = [], rec: [SIMD3<Float>] = []
        for j in 0..<10 { for i in 0..<10 {
            let p = SIMD3<Float>(Float(i) * 0.1, Float(j) * 0.1, 0)
            gt.append(p)
            rec.append(p + SIMD3(0, 0, j * 10 + i < 60 ? 0.01 : 0.07))
        } }
        for i in 0..<25 { rec.append(SIMD3(Float(i % 5) * 0.2, Float(i / 5) * 0.2, 0.5)) }
        for threads in [1, 2] {
            let m = try GeometryMetrics.compute(reconstruction: rec, groundTruth: gt, threshold: 0.05, threads: threads)
            XCTAssertEqual(m.accuracy, (60 * 0.01 + 40 * 0.07 + 25 * 0.5) / 125, accuracy: 1e-6)
            XCTAssertEqual(m.completion, (60 * 0.01 + 40 * 0.07) / 100, accuracy: 1e-6)
            XCTAssertEqual(m.chamferL1, (0.1272 + 0.034) / 2, accuracy: 1e-6)
            XCTAssertEqual(m.precision, 60.0 / 125)
            XCTAssertEqual(m.recall, 0.6)
            XCTAssertEqual(m.f1, 2 * 0.48 * 0.6 / 1.08, accuracy: 1e-12)
        }
        let text = try GeometryMetrics.compute(reconstruction: rec, groundTruth: gt).text
        XCTAssertTrue(text.contains("Accuracy    12.720 cm"), text)
        XCTAssertTrue(text.contains("Recall      60.00 %"), text)
        XCTAssertThrowsError(try GeometryMetrics.compute(reconstruction: [], groundTruth: gt)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badArgument)
        }
    }

    func testKDTreeEqualsBruteForce() {
        var rng = SeededRNG(seed: 9)
        func r() -> Float { Float(rng.uniform(-1, 1)) }
        // Uniform points, a dense cluster, points on a plane (many equal z) and exact duplicates.
        var points = (0..<2000).map { _ in SIMD3(r(), r(), r()) }
        points += (0..<500).map { _ in SIMD3(0.3 + 0.01 * r(), 0.01 * r(), -0.2 + 0.01 * r()) }
        points += (0..<500).map { _ in SIMD3(r(), r(), 0.25) }
        points += Array(points[0..<100])
        let queries = (0..<1500).map { _ in SIMD3(1.3 * r(), 1.3 * r(), 1.3 * r()) } + Array(points[1000..<1200])
        let expected = ReferenceGeometry.nearestDistances(queries: queries, points: points)
        for leaf in [1, 4, 10, 64] {
            let tree = PointKDTree(points: points, leafSize: leaf)
            XCTAssertEqual(tree.nearestDistances(queries, threads: 1), expected, "leaf \(leaf)")
            XCTAssertEqual(tree.nearestDistances(queries, threads: 2), expected, "leaf \(leaf)")
            for (q, d) in zip(queries.prefix(200), expected) {
                let n = tree.nearest(q)!
                let p = points[n.index] - q
                XCTAssertEqual((p.x * p.x + p.y * p.y + p.z * p.z).squareRoot(), d)
                XCTAssertEqual(n.distance, d)
            }
        }
        XCTAssertNil(PointKDTree(points: []).nearest(.zero))
        XCTAssertEqual(PointKDTree(points: [SIMD3(1, 2, 3)]).nearestDistances([SIMD3(1, 2, 5)]), [2])
    }

    /// Two triangles of areas 1 m² and 3 m²: a quarter of the samples land on the first; each lies inside its
    /// triangle and their mean is the triangle's centroid.
    func testMeshSamplingIsAreaWeighted() throws {
        let mesh = TriangleMesh(vertices: [SIMD3(0, 0, 0), SIMD3(1, 0, 0), SIMD3(0, 2, 0),
                                           SIMD3(0, 0, 1), SIMD3(3, 0, 1), SIMD3(0, 2, 1),
                                           SIMD3(5, 5, 5)], // unused vertex
                                triangles: [SIMD3(0, 1, 2), SIMD3(3, 4, 5), SIMD3(0, 0, 1)]) // + a degenerate one
        XCTAssertEqual(mesh.area(), 4, accuracy: 1e-12)
        let n = 40_000
        let samples = try MeshSampler.sample(mesh, count: n, seed: 7)
        XCTAssertEqual(samples, try MeshSampler.sample(mesh, count: n, seed: 7))
        XCTAssertNotEqual(samples, try MeshSampler.sample(mesh, count: n, seed: 8))
        let first = samples.filter { $0.z == 0 }, second = samples.filter { $0.z == 1 }
        XCTAssertEqual(first.count + second.count, n)
        // Binomial(40000, 1/4): sd 0.0022; 4.5 sd.
        XCTAssertEqual(Double(first.count) / Double(n), 0.25, accuracy: 0.01)
        for p in first { XCTAssertTrue(p.x >= 0 && p.y >= 0 && p.x + p.y / 2 <= 1 + 1e-6) }
        for p in second { XCTAssertTrue(p.x >= 0 && p.y >= 0 && p.x / 3 + p.y / 2 <= 1 + 1e-6) }
        func mean(_ s: [SIMD3<Float>]) -> SIMD3<Double> { s.reduce(SIMD3<Double>.zero) { $0 + SIMD3<Double>($1) } / Double(s.count) }
        let m1 = mean(first), m2 = mean(second)
        XCTAssertEqual(m1.x, 1.0 / 3, accuracy: 0.01); XCTAssertEqual(m1.y, 2.0 / 3, accuracy: 0.015)
        XCTAssertEqual(m2.x, 1.0, accuracy: 0.015); XCTAssertEqual(m2.y, 2.0 / 3, accuracy: 0.01)
        XCTAssertThrowsError(try MeshSampler.sample(TriangleMesh(vertices: [.zero], triangles: [SIMD3(0, 0, 0)]), count: 5, seed: 1))
    }

    func testTriangleMeshPLYRoundTrip() throws {
        let mesh = TriangleMesh(vertices: [SIMD3(0, 0, 0), SIMD3(1, 0, 0), SIMD3(0, 1, 0)],
                                normals: [SIMD3(0, 0, 1), SIMD3(0, 0, 1), SIMD3(0, 0, 1)],
                                colors: [SIMD3(1, 2, 3), SIMD3(4, 5, 6), SIMD3(7, 8, 9)],
                                labels: [(name: "semantic", values: [1, 2, 3]), (name: "instance", values: [0, -1, 7])],
                                triangles: [SIMD3(0, 1, 2)])
        let back = try TriangleMesh(ply: try PLY.decode(try PLY.encode(mesh.plyData), source: "memory"), source: "memory")
        XCTAssertEqual(back, mesh)
        XCTAssertThrowsError(try TriangleMesh(ply: PLYData(positions: [.zero], faces: [SIMD3(0, 1, 2)]), source: "x.ply")) {
            XCTAssertEqual(($0 as? MapError)?.file, "x.ply")
        }
    }
}

final class VisibilityCullingTests: XCTestCase {
    /// Camera at the origin looking along +z; a wall fills its depth image at 2 m, except an invalid (0) pixel block.
    static let K = Intrinsics(fx: 50, fy: 50, cx: 31.5, cy: 23.5, width: 64, height: 48)
    static func wallView(depth z: Float = 2) -> DepthView {
        var depth = DepthImage(width: 64, height: 48, repeating: z)
        for y in 0..<4 { for x in 0..<4 { depth[x, y] = 0 } }
        return DepthView(T_W_C: .identity, intrinsics: K, depth: depth)
    }

    func testKeepsExactlyWhatTheCameraSees() {
        let points: [SIMD3<Float>] = [
            SIMD3(0, 0, 1),        // in front of the wall: kept
            SIMD3(0.1, -0.2, 2.02), // on the wall, within the 3 cm margin: kept
            SIMD3(0, 0, 3),        // behind the wall: dropped
            SIMD3(0, 0, 2.05),     // 5 cm behind the observed depth: dropped
            SIMD3(0, 0, -1),       // behind the camera: dropped
            SIMD3(5, 0, 1),        // outside the frustum (u = 281.5): dropped
            SIMD3(-1.2, -0.88, 2), // projects to pixel (1.5→2, 1.5→2), whose depth is invalid: dropped
        ]
        let culling = VisibilityCulling(margin: 0.03, threads: 2)
        XCTAssertEqual(culling.visibleMask(points: points, views: [Self.wallView()]),
                       [true, true, false, false, false, false, false])
        // A second camera at z = 6 looking back at the wall's far side sees the point behind the wall.
        let back = DepthView(T_W_C: .lookAt(eye: Vec3(0, 0, 6), target: .zero, up: Vec3(0, 1, 0)), intrinsics: Self.K,
                             depth: DepthImage(width: 64, height: 48, repeating: 4))
        XCTAssertEqual(culling.visibleMask(points: points, views: [Self.wallView(), back]),
                       [true, true, true, true, false, false, true])
    }

    func testAgreesWithReferenceOnRandomPoints() {
        var rng = SeededRNG(seed: 3)
        var depth = DepthImage(width: 64, height: 48, repeating: 0)
        for y in 0..<48 { for x in 0..<64 { depth[x, y] = x % 7 == 0 ? 0 : Float(1 + rng.uniform()) } }
        let pose = RigidTransform.lookAt(eye: Vec3(0.3, -0.2, 0.1), target: Vec3(1, 1, 2), up: Vec3(0, 0, 1))
        let view = DepthView(T_W_C: pose, intrinsics: Self.K, depth: depth)
        // Half the points back-projected from random (sub)pixels at depths 0.5 to 3 m, half anywhere.
        var points: [SIMD3<Float>] = (0..<2500).map { _ in
            let p_C = Self.K.unproject(u: rng.uniform(-5, 69), v: rng.uniform(-5, 53), depth: rng.uniform(0.5, 3))
            return SIMD3<Float>(pose * p_C)
        }
        points += (0..<2500).map { _ in SIMD3<Float>(Float(rng.uniform(-2, 3)), Float(rng.uniform(-2, 3)), Float(rng.uniform(-1, 4))) }
        let got = VisibilityCulling(margin: 0.03).visibleMask(points: points, views: [view])
        let expected = points.map { ReferenceGeometry.sees($0, T_W_C: pose, intrinsics: Self.K, depth: depth, margin: 0.03) }
        XCTAssertEqual(got, expected)
        XCTAssertGreaterThan(got.filter { $0 }.count, 500)
    }

    /// End to end through files: a 2-frame sequence of the wall, GT points on the wall and behind it, and a
    /// reconstructed quad 1 cm in front of the wall.
    func testEvaluationFromFilesCullsByTheSequence() throws {
        let dir = try TempDirectory("pano-eval")
        defer { dir.remove() }
        let writer = try SequenceWriter(directory: dir.appending("seq"), name: "wall", intrinsics: Self.K)
        for i in 0..<2 {
            let view = Self.wallView()
            try writer.write(Frame(index: i, rgb: RGBImage(width: 64, height: 48, channels: 3, repeating: 128),
                                   depth: view.depth, T_W_C: .identity, intrinsics: Self.K))
        }
        try writer.finish()
        var gt: [SIMD3<Float>] = []
        for z: Float in [2, 3] { for j in 0...30 { for i in 0...30 { gt.append(SIMD3(Float(i) * 0.02 - 0.3, Float(j) * 0.02 - 0.3, z)) } } }
        try PLY.write(PLYData(positions: gt), to: dir.appending("gt.ply"))
        let quad = TriangleMesh(vertices: [SIMD3(-0.3, -0.3, 2.01), SIMD3(0.3, -0.3, 2.01), SIMD3(0.3, 0.3, 2.01), SIMD3(-0.3, 0.3, 2.01)],
                                triangles: [SIMD3(0, 1, 2), SIMD3(0, 2, 3)])
        try PLY.write(quad.plyData, to: dir.appending("mesh.ply"))
        var options = GeometryEvaluation.Options()
        options.samples = 5_000
        let culled = try GeometryEvaluation.run(reconstruction: dir.appending("mesh.ply"), groundTruth: dir.appending("gt.ply"),
                                                sequence: dir.appending("seq"), options: options)
        XCTAssertEqual(culled.groundTruthPoints, 2 * 961)
        XCTAssertEqual(culled.groundTruthPointsKept, 961, "the 961 points behind the wall are dropped")
        XCTAssertEqual(culled.reconstructionPointsKept, 5_000)
        XCTAssertEqual(culled.reconstructionKind, "mesh")
        XCTAssertEqual(culled.cullingFrames, 2)
        XCTAssertEqual(culled.metrics.precision, 1)
        XCTAssertEqual(culled.metrics.recall, 1)
        // Samples 1 cm above a 2 cm grid: 1 cm ≤ distance ≤ √(1 + 2) cm.
        XCTAssertTrue((0.01...0.0174).contains(culled.metrics.accuracy), "\(culled.metrics)")
        let all = try GeometryEvaluation.run(reconstruction: dir.appending("mesh.ply"), groundTruth: dir.appending("gt.ply"),
                                             options: options)
        XCTAssertEqual(all.metrics.recall, 0.5)
        XCTAssertEqual(all.metrics.accuracy, culled.metrics.accuracy)
        XCTAssertGreaterThan(all.metrics.completion, 0.45)
        let json = try JSONEncoder().encode(culled)
        XCTAssertEqual(try JSONDecoder().decode(GeometryEvaluation.Report.self, from: json), culled)

        // Clear errors for missing and corrupt inputs.
        XCTAssertThrowsError(try GeometryEvaluation.run(reconstruction: dir.appending("nope.ply"), groundTruth: dir.appending("gt.ply"))) {
            let e = $0 as? MapError
            XCTAssertEqual(e?.kind, .missingFile); XCTAssertEqual(e?.file, dir.appending("nope.ply").path)
        }
        try Files.writeAtomically(Array("ply\nformat ascii 1.0\nend_header\n".utf8), to: dir.appending("bad.ply"))
        XCTAssertThrowsError(try GeometryEvaluation.run(reconstruction: dir.appending("mesh.ply"), groundTruth: dir.appending("bad.ply"))) {
            let e = $0 as? MapError
            XCTAssertEqual(e?.kind, .badFormat); XCTAssertEqual(e?.file, dir.appending("bad.ply").path)
        }
        var truncated = try Files.read(dir.appending("gt.ply")); truncated.removeLast(10)
        try Files.writeAtomically(truncated, to: dir.appending("truncated.ply"))
        XCTAssertThrowsError(try GeometryEvaluation.run(reconstruction: dir.appending("mesh.ply"), groundTruth: dir.appending("truncated.ply"))) {
            XCTAssertEqual(($0 as? MapError)?.kind, .truncatedFile)
        }
        XCTAssertThrowsError(try GeometryEvaluation.run(reconstruction: dir.appending("mesh.ply"), groundTruth: dir.appending("gt.ply"),
                                                        sequence: dir.appending("missing-seq"))) {
            XCTAssertEqual(($0 as? MapError)?.kind, .missingFile)
        }
    }
}
