import Fields
import Kernels
import MapCore
import Synthetic
import XCTest

/// End-to-end checks of the geometry field on a small synthetic room. Sized for an optimised test build
/// (`swift test -c release`); in a debug build they take tens of seconds.
final class GeometryTrainerTests: XCTestCase {
    static func scene() throws -> SyntheticScene {
        var config = SyntheticSceneConfig.small(width: 80, height: 60, frameCount: 12, seed: 3)
        config.depthNoise = .none
        return try SyntheticScene(config: config)
    }

    static func trainer(scene: SyntheticScene, seed: UInt64, threads: Int = 2) throws -> GeometryTrainer {
        var frames: [Frame] = []
        for i in 0..<scene.frameCount { frames.append(try scene.frame(i).frame) }
        var tc = GeometryTrainerConfig()
        tc.raysPerStep = 512
        tc.seed = seed
        let bounds = SceneBounds.enclosing(frames.map { TrainingFrame($0, near: tc.near, far: tc.far) })
        var grid = HashGridConfig(boundsMin: bounds.min, boundsMax: bounds.max)
        grid.levels = 8; grid.log2TableSize = 15; grid.finestResolution = 256
        var fc = GeometryField.Config(grid: grid)
        fc.threads = threads
        let t = try GeometryTrainer(config: tc, field: try GeometryField(config: fc, seed: seed))
        for f in frames { t.add(f) }
        return t
    }

    func testFieldLearnsTheRoomSurface() throws {
        let scene = try Self.scene()
        let t = try Self.trainer(scene: scene, seed: 1)
        let first = t.step()
        t.train(iterations: 400)
        let last = t.step()
        XCTAssertLessThan(last.sdf, first.sdf * 0.6, "L_sdf must fall")
        // The zero level set sits on the true surface: |s| at GT surface samples is small, and points 15 cm in front
        // of the surface (along the outward normal) are clearly positive.
        let samples = scene.surfaceSamples(count: 3000)
        let visible = samples.filter { s in
            // keep samples seen by some frame (others were never observed)
            (0..<scene.frameCount).contains { i in
                let f = try! scene.frame(i)
                let p_C = f.frame.T_W_C.inverse * s.position
                guard let uv = f.frame.intrinsics.project(p_C) else { return false }
                let x = Int(uv.x.rounded()), y = Int(uv.y.rounded())
                guard x >= 0, y >= 0, x < 80, y < 60 else { return false }
                return abs(Double(f.cleanDepth[x, y]) - p_C.z) < 0.02
            }
        }
        XCTAssertGreaterThan(visible.count, 500)
        let onSurface = t.field.sdf(visible.map { SIMD3<Float>(Float($0.position.x), Float($0.position.y), Float($0.position.z)) })
        let inFront = t.field.sdf(visible.map {
            let q = $0.position + 0.15 * $0.normal
            return SIMD3<Float>(Float(q.x), Float(q.y), Float(q.z))
        })
        let medianAbs = onSurface.map(abs).sorted()[onSurface.count / 2]
        XCTAssertLessThan(medianAbs, 0.03, "median |s| on the surface \(medianAbs) m")
        let positive = inFront.filter { $0 > 0.05 }.count
        XCTAssertGreaterThan(Double(positive) / Double(inFront.count), 0.8)

        // Sphere-traced depth of a training view agrees with the clean depth.
        let f = try scene.frame(5)
        var caster = SDFRaycaster()
        caster.far = 10
        let d = caster.depth(field: t.field, T_W_C: f.frame.T_W_C, intrinsics: f.frame.intrinsics)
        var err: [Float] = []
        for (a, b) in zip(d.data, f.cleanDepth.data) where a > 0 && b > 0 { err.append(abs(a - b)) }
        XCTAssertGreaterThan(err.count, 80 * 60 / 2)
        XCTAssertLessThan(err.sorted()[err.count / 2], 0.05)
    }

    func testSameSeedSameParameters() throws {
        let scene = try Self.scene()
        let a = try Self.trainer(scene: scene, seed: 7), b = try Self.trainer(scene: scene, seed: 7)
        a.train(iterations: 5); b.train(iterations: 5)
        XCTAssertEqual(a.field.gridParams, b.field.gridParams)
        XCTAssertEqual(a.field.mlpParams, b.field.mlpParams)
        XCTAssertEqual(a.field.logXi, b.field.logXi)
        // ... and the same mesh, bit for bit.
        let g = a.field.config.grid
        let box = SceneBounds(min: g.boundsMin, max: g.boundsMax)
        let meshA = try GeometryMeshing.mesh(field: a.field, bounds: box, voxelSize: 0.1)
        let meshB = try GeometryMeshing.mesh(field: b.field, bounds: box, voxelSize: 0.1)
        XCTAssertGreaterThan(meshA.triangles.count, 0)
        XCTAssertEqual(meshA, meshB)
        let c = try Self.trainer(scene: scene, seed: 8)
        c.train(iterations: 5)
        XCTAssertNotEqual(a.field.mlpParams, c.field.mlpParams)
    }

    func testMeshOfTrainedFieldIsNonEmptyAndInsideBounds() throws {
        let scene = try Self.scene()
        let t = try Self.trainer(scene: scene, seed: 2)
        t.train(iterations: 150)
        let b = t.field.config.grid
        let mesh = try GeometryMeshing.mesh(field: t.field, bounds: SceneBounds(min: b.boundsMin, max: b.boundsMax), voxelSize: 0.08)
        XCTAssertGreaterThan(mesh.triangles.count, 1000)
        for v in mesh.vertices {
            XCTAssertTrue(all(v .>= b.boundsMin - 0.1) && all(v .<= b.boundsMax + 0.1))
        }
    }
}
