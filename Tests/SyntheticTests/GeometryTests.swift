import MapCore
import Synthetic
import TestSupport
import XCTest

final class GeometryTests: XCTestCase {
    let room = SyntheticRoom()

    func testSceneContentsMeetTheBrief() {
        let v = room.vocabulary
        XCTAssertNoThrow(try v.validate(source: "synthetic"))
        XCTAssertEqual(Set(v.stuffIDs.compactMap { v.class(id: $0)?.name }), ["wall", "floor", "ceiling"])
        XCTAssertGreaterThanOrEqual(Set(room.objects.map(\.classID)).count, 4)
        XCTAssertGreaterThanOrEqual(room.objects.count, 6)
        XCTAssertEqual(room.objects.map(\.instanceID), Array(1...room.objects.count))
        for o in room.objects { XCTAssertTrue(v.class(id: o.classID)!.isThing, o.name) }
        let perClass = Dictionary(grouping: room.objects, by: \.classID)
        XCTAssertTrue(perClass.values.contains { $0.count >= 2 }, "some class needs two instances")
        // Size of the room: about 5 x 4 x 2.6 m.
        XCTAssertEqual(room.interiorMax - room.interiorMin, Vec3(5, 4, 2.6))
    }

    /// Touching pairs: box on table (thing-thing), things on the floor and against walls (thing-stuff).
    func testContacts() {
        func minDistance(_ a: SyntheticObject, _ sdf: (Vec3) -> Double) -> Double {
            // Sample a's surface densely and take the smallest distance to the other solid.
            var g = SeededRNG(seed: 5)
            var best = Double.infinity
            for part in a.parts {
                for _ in 0..<4000 {
                    let b = part.bounds
                    let p = Vec3(g.uniform(b.lo.x, b.hi.x), g.uniform(b.lo.y, b.hi.y), g.uniform(b.lo.z, b.hi.z))
                    guard part.sdf(p) <= 0 else { continue }
                    best = min(best, sdf(p))
                }
            }
            return best
        }
        let table = room.objects.first { $0.name == "table" }!, box = room.objects.first { $0.name == "box" }!
        // The box rests on the table: its bottom is at the table top height and it does not penetrate.
        XCTAssertEqual(box.boundsMin.z, table.boundsMax.z, accuracy: 1e-12)
        XCTAssertGreaterThan(minDistance(box, table.sdf), -1e-9)
        XCTAssertLessThan(table.sdf(Vec3((box.boundsMin.x + box.boundsMax.x) / 2,
                                         (box.boundsMin.y + box.boundsMax.y) / 2, box.boundsMin.z)), 1e-9)
        // Floor contacts and wall contacts.
        let onFloor = room.objects.filter { abs($0.boundsMin.z) < 1e-12 }
        XCTAssertGreaterThanOrEqual(onFloor.count, 5)
        let againstWall = room.objects.filter {
            abs($0.boundsMax.y - room.interiorMax.y) < 1e-9 || abs($0.boundsMin.y - room.interiorMin.y) < 1e-9
        }
        XCTAssertGreaterThanOrEqual(againstWall.count, 2)
        // No two different objects overlap (interiors disjoint).
        for a in room.objects {
            for b in room.objects where b.instanceID > a.instanceID {
                XCTAssertGreaterThan(minDistance(a, b.sdf), -1e-9, "\(a.name) \(a.instanceID) overlaps \(b.name)")
            }
        }
    }

    func testSDFSignsAndLabels() {
        XCTAssertGreaterThan(room.sdf(Vec3(0, 0, 1.5)), 0)  // free space above the table
        XCTAssertLessThan(room.sdf(Vec3(0, 0, -0.1)), 0)  // below the floor
        XCTAssertLessThan(room.sdf(Vec3(3, 0, 1)), 0)  // behind a wall
        XCTAssertEqual(room.sdf(Vec3(0, 0, 2.6 - 0.5)), 0.5, accuracy: 1e-12)
        XCTAssertEqual(room.label(at: Vec3(0.5, -1.5, 0.001)).semantic, SyntheticRoom.floorClass)
        XCTAssertEqual(room.label(at: Vec3(0, 0, 2.599)).semantic, SyntheticRoom.ceilingClass)
        XCTAssertEqual(room.label(at: Vec3(-2.499, 0, 1.5)).semantic, SyntheticRoom.wallClass)
        XCTAssertEqual(room.label(at: Vec3(-2.499, 0, 1.5)).instance, 0)
        let ball = room.objects.first { $0.name == "ball" }!
        let c = (ball.boundsMin + ball.boundsMax) / 2
        XCTAssertEqual(room.label(at: c).instance, ball.instanceID)
        XCTAssertEqual(room.label(at: c).semantic, SyntheticRoom.ballClass)
    }

    /// Each primitive: ray hits agree with sphere tracing its own SDF; SDF is 0 at the hit; normals are unit.
    func testPrimitiveIntersectionsMatchSphereTracing() {
        let prims: [Primitive] = [
            .box(center: Vec3(0.3, -0.2, 0.5), size: Vec3(0.6, 0.3, 0.4), yaw: 0.7),
            .sphere(center: Vec3(-0.2, 0.1, 0.4), radius: 0.25),
            .cylinder(x: 0.1, y: 0.2, zBottom: 0.1, zTop: 0.9, radius: 0.2),
        ]
        var g = SeededRNG(seed: 11)
        for prim in prims {
            var hits = 0
            for _ in 0..<300 {
                let o = Vec3(g.uniform(-2, 2), g.uniform(-2, 2), g.uniform(-1, 2))
                guard prim.sdf(o) > 0.05 else { continue }
                let target = prim.center + Vec3(g.uniform(-0.5, 0.5), g.uniform(-0.5, 0.5), g.uniform(-0.5, 0.5))
                let d = (target - o) * g.uniform(0.5, 2)  // deliberately not unit length
                let analytic = prim.intersect(origin: o, direction: d, tMin: 0, tMax: .infinity)
                let traced = SyntheticReference.sphereTrace(prim.sdf, origin: o, direction: d, maxDistance: 10)
                if let a = analytic {
                    hits += 1
                    XCTAssertNotNil(traced, "\(prim.kind): analytic hit, tracer missed")
                    if let s = traced { XCTAssertEqual(a.t * length(d), s, accuracy: 1e-6, "\(prim.kind)") }
                    XCTAssertEqual(prim.sdf(o + a.t * d), 0, accuracy: 1e-9)
                    XCTAssertEqual(length(a.normal), 1, accuracy: 1e-12)
                    XCTAssertLessThan(dot(a.normal, d), 0, "normal must face the ray")
                } else if let s = traced {
                    // A sphere-traced hit that analytic missed can only be a numerically grazing ray.
                    let p = o + s * normalize(d)
                    XCTAssertLessThan(abs(prim.sdf(p)), 1e-8)
                    XCTFail("\(prim.kind): tracer hit at \(p), analytic missed")
                }
            }
            XCTAssertGreaterThan(hits, 50, "\(prim.kind)")
        }
    }

    /// The renderer against the reference twin: depth within 1 mm, points on the surface, normals = SDF gradient.
    func testRenderMatchesSphereTracingReference() {
        let scene = Fixtures.small
        let K = scene.intrinsics
        var checked = 0, normalsChecked = 0, normalsAgree = 0
        for i in [0, 4, 8] {
            let T = scene.trajectory.pose(frame: i)
            let r = scene.render(T_W_C: T)
            for v in stride(from: 0, to: K.height, by: 2) {
                for u in stride(from: 0, to: K.width, by: 2) {
                    let z = Double(r.depth[u, v])
                    guard let ref = SyntheticReference.depth(scene.sdf, T_W_C: T, intrinsics: K, u: u, v: v) else {
                        XCTFail("reference tracer found no surface at (\(u), \(v)) of pose \(i)"); continue
                    }
                    XCTAssertEqual(z, ref, accuracy: 1e-3, "pixel (\(u), \(v)) of pose \(i)")
                    checked += 1
                    let p = SyntheticReference.backProject(u: u, v: v, depth: z, T_W_C: T, intrinsics: K)
                    XCTAssertLessThan(abs(scene.sdf(p)), 1e-6, "pixel (\(u), \(v)) of pose \(i) is off the surface")
                    let n = Vec3(Double(r.normals[u, v, 0]), Double(r.normals[u, v, 1]), Double(r.normals[u, v, 2]))
                    let grad = SyntheticReference.gradient(scene.sdf, at: p + 1e-4 * n)
                    normalsChecked += 1
                    if dot(normalize(grad), n) > 0.999 { normalsAgree += 1 }
                }
            }
        }
        XCTAssertEqual(checked, 3 * 32 * 24)
        // Only pixels within ~0.1 mm of an edge or a contact may disagree.
        XCTAssertGreaterThan(Double(normalsAgree) / Double(normalsChecked), 0.98)
    }

    /// The double-precision hit itself lies on the surface to ~1e-9 m.
    func testRayCastHitsAreOnTheSurface() {
        var g = SeededRNG(seed: 3)
        for _ in 0..<2000 {
            let o = Vec3(g.uniform(-1.5, 1.5), g.uniform(-1.2, 1.2), g.uniform(1.2, 2.0))
            guard room.sdf(o) > 0.05 else { continue }
            let d = Vec3(g.gaussian(), g.gaussian(), g.gaussian())
            let hit = room.castRay(origin: o, direction: d)
            let p = o + hit.t * d
            XCTAssertLessThan(abs(room.sdf(p)), 1e-9)
            XCTAssertEqual(length(hit.normal), 1, accuracy: 1e-12)
            let label = room.label(at: p + 1e-6 * -hit.normal)
            let owner = room.ownerInfo(hit.owner)
            XCTAssertEqual(label.semantic, owner.semantic)
            XCTAssertEqual(label.instance, owner.instance)
        }
    }

    func testSurfaceSamplesLieOnVisibleSurfaces() {
        let scene = Fixtures.small
        let samples = scene.surfaceSamples(count: 12_000)
        XCTAssertEqual(samples.count, 12_000)
        var labelAgree = 0, normalAgree = 0
        for s in samples {
            XCTAssertLessThan(abs(scene.sdf(s.position)), 1e-6)
            XCTAssertGreaterThan(scene.sdf(s.position + 1e-3 * s.normal), 0, "sample inside another solid")
            let l = scene.label(at: s.position - 1e-6 * s.normal)
            if l.semantic == s.semantic && l.instance == s.instance { labelAgree += 1 }
            let grad = SyntheticReference.gradient(scene.sdf, at: s.position + 1e-4 * s.normal)
            if dot(normalize(grad), s.normal) > 0.999 { normalAgree += 1 }
        }
        XCTAssertGreaterThan(Double(labelAgree) / 12_000, 0.995)
        XCTAssertGreaterThan(Double(normalAgree) / 12_000, 0.99)
        // Every instance and every stuff class is sampled.
        XCTAssertEqual(Set(samples.map(\.instance)), Set([0] + scene.room.objects.map(\.instanceID)))
        XCTAssertEqual(Set(samples.filter { $0.instance == 0 }.map(\.semantic)), Set(scene.vocabulary.stuffIDs))
        // Area weighting: the ceiling (20 m^2) and the free wall x = -2.5 (10.4 m^2) are fully visible.
        let ceiling = samples.filter { $0.semantic == SyntheticRoom.ceilingClass }.count
        let wallXMin = samples.filter { $0.semantic == SyntheticRoom.wallClass && $0.position.x == -2.5 }.count
        XCTAssertEqual(Double(ceiling) / Double(wallXMin), 20 / 10.4, accuracy: 0.25)
        // The bottom of the box (on the table) and the back of the cabinet (on the wall) are never sampled.
        let box = scene.room.objects.first { $0.name == "box" }!
        XCTAssertFalse(samples.contains { $0.instance == box.instanceID && $0.normal.z < -0.5 })
        let cabinet = scene.room.objects.first { $0.name == "cabinet" }!
        XCTAssertFalse(samples.contains { $0.instance == cabinet.instanceID && $0.normal.y > 0.5 })
    }

    func testSurfaceSamplesAreDeterministic() {
        let a = Fixtures.small.surfaceSamples(count: 9000)
        let b = try! SyntheticScene(config: .small()).surfaceSamples(count: 9000)
        XCTAssertEqual(a, b)
        let single = SurfaceSampler(room: SyntheticRoom()).samples(count: 9000, rng: SeededRNG(seed: 9), threads: 1)
        let multi = SurfaceSampler(room: SyntheticRoom()).samples(count: 9000, rng: SeededRNG(seed: 9), threads: 2)
        XCTAssertEqual(single, multi)
        let other = try! SyntheticScene(config: .small(seed: 2)).surfaceSamples(count: 9000)
        XCTAssertNotEqual(a, other)
    }
}
