import MapCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thing instance of the scene: one or more primitives (union) sharing a class, an instance id and a material.
public struct SyntheticObject: Sendable, Equatable {
    /// Global, stable instance id (1...).
    public let instanceID: Int
    public let classID: Int
    public let name: String
    public let parts: [Primitive]
    public let material: Material
    /// World-space axis-aligned bounds of all parts.
    public let boundsMin: Vec3
    public let boundsMax: Vec3

    init(instanceID: Int, classID: Int, name: String, parts: [Primitive], material: Material) {
        self.instanceID = instanceID; self.classID = classID; self.name = name; self.parts = parts
        self.material = material
        var lo = Vec3(repeating: .infinity), hi = Vec3(repeating: -.infinity)
        for p in parts {
            let b = p.bounds
            lo = pointwiseMin(lo, b.lo); hi = pointwiseMax(hi, b.hi)
        }
        boundsMin = lo; boundsMax = hi
    }

    /// Signed distance (metres) to this object: the union (min) of its parts.
    @inlinable public func sdf(_ p: Vec3) -> Double {
        var d = Double.infinity
        for part in parts { d = min(d, part.sdf(p)) }
        return d
    }
}

/// The analytic ground-truth room: world frame z up, floor at z = 0, an axis-aligned 5 x 4 x 2.6 m interior centred
/// on x = y = 0, stuff (wall, floor, ceiling) and nine thing instances of seven classes. The scene is fixed; the
/// seed only drives noise and sampling. SDF convention: positive in free space, negative inside solids.
public struct SyntheticRoom: Sendable, Equatable {
    // Class ids of the vocabulary.
    public static let wallClass = 1, floorClass = 2, ceilingClass = 3
    public static let tableClass = 4, chairClass = 5, cabinetClass = 6, boxClass = 7, ballClass = 8
    public static let lampClass = 9, binClass = 10

    /// Interior bounds (metres).
    public let interiorMin = Vec3(-2.5, -2.0, 0.0)
    public let interiorMax = Vec3(2.5, 2.0, 2.6)
    public let vocabulary: Vocabulary
    /// Thing instances; `objects[k].instanceID == k + 1`.
    public let objects: [SyntheticObject]
    /// Materials of the stuff surfaces.
    public let wallMaterial: Material, floorMaterial: Material, ceilingMaterial: Material

    public init() {
        vocabulary = Vocabulary(classes: [
            SemanticClass(id: Self.wallClass, name: "wall", isThing: false, color: Vocabulary.paletteColor(1)),
            SemanticClass(id: Self.floorClass, name: "floor", isThing: false, color: Vocabulary.paletteColor(2)),
            SemanticClass(id: Self.ceilingClass, name: "ceiling", isThing: false, color: Vocabulary.paletteColor(3)),
            SemanticClass(id: Self.tableClass, name: "table", isThing: true, color: Vocabulary.paletteColor(4)),
            SemanticClass(id: Self.chairClass, name: "chair", isThing: true, color: Vocabulary.paletteColor(5)),
            SemanticClass(id: Self.cabinetClass, name: "cabinet", isThing: true, color: Vocabulary.paletteColor(6)),
            SemanticClass(id: Self.boxClass, name: "box", isThing: true, color: Vocabulary.paletteColor(7)),
            SemanticClass(id: Self.ballClass, name: "ball", isThing: true, color: Vocabulary.paletteColor(8)),
            SemanticClass(id: Self.lampClass, name: "lamp", isThing: true, color: Vocabulary.paletteColor(9)),
            SemanticClass(id: Self.binClass, name: "bin", isThing: true, color: Vocabulary.paletteColor(10)),
        ])
        wallMaterial = Material(base: Colour(0.80, 0.78, 0.70), accent: Colour(0.62, 0.68, 0.78),
                                pattern: .stripes(axis: Vec3(1, 1, 0) / 2.0.squareRoot(), period: 0.35),
                                noiseFrequency: 3, noiseAmount: 0.35)
        floorMaterial = Material(base: Colour(0.55, 0.38, 0.22), accent: Colour(0.72, 0.55, 0.34),
                                 pattern: .checker(size: 0.5), noiseFrequency: 9, noiseAmount: 0.4)
        ceilingMaterial = Material(base: Colour(0.93, 0.92, 0.88), accent: Colour(0.80, 0.82, 0.86),
                                   pattern: .checker(size: 0.6), noiseFrequency: 2.5, noiseAmount: 0.3)
        objects = Self.layout()
    }

    /// The furniture. Contacts: everything stands on the floor (z = 0) except the box, which stands on the table top,
    /// and the small ball, which lies on the cabinet; the cabinet stands against the wall y = +2, the bin against y = -2.
    static func layout() -> [SyntheticObject] {
        var objects: [SyntheticObject] = []
        func add(_ classID: Int, _ name: String, _ parts: [Primitive], _ material: Material) {
            objects.append(SyntheticObject(instanceID: objects.count + 1, classID: classID, name: name, parts: parts,
                                           material: material))
        }
        func rotate(_ v: SIMD2<Double>, _ yaw: Double) -> SIMD2<Double> {
            SIMD2(cos(yaw) * v.x - sin(yaw) * v.y, sin(yaw) * v.x + cos(yaw) * v.y)
        }

        // Table: 1.2 x 0.7 m top (4 cm thick, surface at 0.75 m) on four 5 cm legs.
        let tableC = SIMD2<Double>(0.2, -0.1), tableYaw = 0.25, tableTop = 0.75
        var table = [Primitive.box(x: tableC.x, y: tableC.y, zBottom: tableTop - 0.04, zTop: tableTop,
                                   sizeX: 1.2, sizeY: 0.7, yaw: tableYaw)]
        for sx in [-1.0, 1.0] {
            for sy in [-1.0, 1.0] {
                let c = tableC + rotate(SIMD2(sx * 0.53, sy * 0.28), tableYaw)
                table.append(.box(x: c.x, y: c.y, zBottom: 0, zTop: tableTop - 0.04, sizeX: 0.05, sizeY: 0.05,
                                  yaw: tableYaw))
            }
        }
        add(tableClass, "table", table,
            Material(base: Colour(0.58, 0.40, 0.24), accent: Colour(0.42, 0.28, 0.16),
                     pattern: .stripes(axis: Vec3(-sin(tableYaw), cos(tableYaw), 0), period: 0.06),
                     noiseFrequency: 12, noiseAmount: 0.3))

        // Box standing on the table top.
        let boxC = tableC + rotate(SIMD2(0.15, 0.05), tableYaw)
        add(boxClass, "box", [.box(x: boxC.x, y: boxC.y, zBottom: tableTop, zTop: tableTop + 0.2, sizeX: 0.3,
                                   sizeY: 0.22, yaw: 0.6)],
            Material(base: Colour(0.74, 0.57, 0.36), accent: Colour(0.35, 0.25, 0.15),
                     pattern: .stripes(axis: Vec3(0, 0, 1), period: 0.1), noiseFrequency: 25, noiseAmount: 0.35))

        // Two chairs of the same model: 0.44 m seat at 0.48 m, four legs, a back rest opposite the table.
        func chair(at c: SIMD2<Double>, yaw: Double) -> [Primitive] {
            var parts = [Primitive.box(x: c.x, y: c.y, zBottom: 0.44, zTop: 0.48, sizeX: 0.44, sizeY: 0.44, yaw: yaw)]
            for sx in [-1.0, 1.0] {
                for sy in [-1.0, 1.0] {
                    let l = c + rotate(SIMD2(sx * 0.19, sy * 0.19), yaw)
                    parts.append(.box(x: l.x, y: l.y, zBottom: 0, zTop: 0.44, sizeX: 0.04, sizeY: 0.04, yaw: yaw))
                }
            }
            let b = c + rotate(SIMD2(0, -0.2), yaw)
            parts.append(.box(x: b.x, y: b.y, zBottom: 0.48, zTop: 0.93, sizeX: 0.44, sizeY: 0.04, yaw: yaw))
            return parts
        }
        let chairMaterial = Material(base: Colour(0.22, 0.33, 0.62), accent: Colour(0.45, 0.58, 0.80),
                                     pattern: .checker(size: 0.08), noiseFrequency: 10, noiseAmount: 0.3)
        add(chairClass, "chair", chair(at: tableC + rotate(SIMD2(-0.2, -0.7), tableYaw), yaw: tableYaw), chairMaterial)
        add(chairClass, "chair", chair(at: tableC + rotate(SIMD2(0.95, 0.0), tableYaw), yaw: tableYaw + Double.pi / 2),
            Material(base: Colour(0.62, 0.24, 0.30), accent: Colour(0.85, 0.55, 0.45), pattern: .checker(size: 0.08),
                     noiseFrequency: 10, noiseAmount: 0.3))

        // Cabinet against the wall y = +2.
        add(cabinetClass, "cabinet", [.box(x: -1.0, y: 2.0 - 0.225, zBottom: 0, zTop: 1.1, sizeX: 1.0, sizeY: 0.45)],
            Material(base: Colour(0.86, 0.85, 0.80), accent: Colour(0.50, 0.52, 0.50),
                     pattern: .stripes(axis: Vec3(0, 0, 1), period: 0.27), noiseFrequency: 6, noiseAmount: 0.25))

        // A ball on the floor and a smaller one lying on the cabinet.
        add(ballClass, "ball", [.sphere(center: Vec3(-1.1, -1.1, 0.16), radius: 0.16)],
            Material(base: Colour(0.85, 0.20, 0.15), accent: Colour(0.95, 0.90, 0.80),
                     pattern: .stripes(axis: Vec3(0, 0, 1), period: 0.1), noiseFrequency: 8, noiseAmount: 0.2))
        add(ballClass, "ball", [.sphere(center: Vec3(-0.7, 1.78, 1.1 + 0.12), radius: 0.12)],
            Material(base: Colour(0.30, 0.70, 0.25), accent: Colour(0.95, 0.85, 0.20),
                     pattern: .stripes(axis: Vec3(1, 0, 0), period: 0.08), noiseFrequency: 8, noiseAmount: 0.2))

        // Floor lamp in the corner: base disc, pole, shade.
        add(lampClass, "lamp", [
            .cylinder(x: 2.1, y: 1.6, zBottom: 0, zTop: 0.03, radius: 0.16),
            .cylinder(x: 2.1, y: 1.6, zBottom: 0.03, zTop: 1.5, radius: 0.02),
            .cylinder(x: 2.1, y: 1.6, zBottom: 1.5, zTop: 1.75, radius: 0.2),
        ], Material(base: Colour(0.25, 0.25, 0.28), accent: Colour(0.95, 0.85, 0.55),
                    pattern: .stripes(axis: Vec3(0, 0, 1), period: 0.5), noiseFrequency: 7, noiseAmount: 0.3))

        // Bin against the wall y = -2.
        add(binClass, "bin", [.cylinder(x: 1.2, y: -2.0 + 0.15, zBottom: 0, zTop: 0.38, radius: 0.15)],
            Material(base: Colour(0.25, 0.55, 0.45), accent: Colour(0.15, 0.30, 0.25), pattern: .checker(size: 0.05),
                     noiseFrequency: 10, noiseAmount: 0.3))
        return objects
    }

    public var instanceCount: Int { objects.count }

    // MARK: SDF and labels

    /// Signed distance (metres) to the room shell alone (exact: minus the box SDF of the interior).
    @inlinable public func roomSDF(_ p: Vec3) -> Double {
        let c = (interiorMin + interiorMax) / 2, h = (interiorMax - interiorMin) / 2
        let l = p - c
        let q = Vec3(abs(l.x), abs(l.y), abs(l.z)) - h
        return -(length(pointwiseMax(q, .zero)) + min(max(q.x, max(q.y, q.z)), 0))
    }

    /// Signed distance (metres) to the whole scene: union (min) of the room shell and all objects.
    @inlinable public func sdf(_ p: Vec3) -> Double {
        var d = roomSDF(p)
        for o in objects { d = min(d, o.sdf(p)) }
        return d
    }

    /// The stuff class of the shell surface nearest to `p` (the plane with the smallest signed distance).
    public func stuffClass(at p: Vec3) -> Int {
        let distances = [(p.z - interiorMin.z, Self.floorClass), (interiorMax.z - p.z, Self.ceilingClass),
                         (p.x - interiorMin.x, Self.wallClass), (interiorMax.x - p.x, Self.wallClass),
                         (p.y - interiorMin.y, Self.wallClass), (interiorMax.y - p.y, Self.wallClass)]
        return distances.min { $0.0 < $1.0 }!.1
    }

    /// Ground-truth label of the solid nearest to `p` (smallest SDF): semantic class id and instance id (0 for stuff).
    public func label(at p: Vec3) -> (semantic: Int, instance: Int) {
        var best = roomSDF(p), label = (semantic: stuffClass(at: p), instance: 0)
        for o in objects {
            let d = o.sdf(p)
            if d < best { best = d; label = (o.classID, o.instanceID) }
        }
        return label
    }

    // MARK: ray casting

    /// Owner codes of a ray hit: 0..<objects.count are object indices; then the three stuff surfaces.
    public var wallOwner: Int { objects.count }
    public var floorOwner: Int { objects.count + 1 }
    public var ceilingOwner: Int { objects.count + 2 }

    /// Nearest surface along `origin + t * direction` for an origin inside the room: ray parameter t, outward unit
    /// normal of the hit solid (pointing into free space) and the owner code. With a direction of camera-frame
    /// z = 1, t is the camera-frame depth.
    @inlinable public func castRay(origin o: Vec3, direction d: Vec3) -> (t: Double, normal: Vec3, owner: Int) {
        // Exit through the shell (always exists from inside the closed room).
        var best = Double.infinity, normal = Vec3.zero, owner = wallOwner
        for a in 0..<3 where d[a] != 0 {
            let bound = d[a] > 0 ? interiorMax[a] : interiorMin[a]
            let t = (bound - o[a]) / d[a]
            if t < best {
                best = t
                normal = .zero
                normal[a] = d[a] > 0 ? -1 : 1
                owner = a < 2 ? wallOwner : (d[a] > 0 ? ceilingOwner : floorOwner)
            }
        }
        for k in objects.indices {
            let obj = objects[k]
            guard Self.rayHitsBox(o, d, obj.boundsMin, obj.boundsMax, before: best) else { continue }
            for part in obj.parts {
                if let hit = part.intersect(origin: o, direction: d, tMin: 1e-9, tMax: best) {
                    best = hit.t; normal = hit.normal; owner = k
                }
            }
        }
        return (best, normal, owner)
    }

    /// Whether the ray meets the axis-aligned box [lo, hi] at some 0 <= t < tMax.
    @inlinable static func rayHitsBox(_ o: Vec3, _ d: Vec3, _ lo: Vec3, _ hi: Vec3, before tMax: Double) -> Bool {
        var tNear = 0.0, tFar = tMax
        for a in 0..<3 {
            if d[a] == 0 {
                if o[a] < lo[a] || o[a] > hi[a] { return false }
                continue
            }
            let inv = 1 / d[a]
            var t0 = (lo[a] - o[a]) * inv, t1 = (hi[a] - o[a]) * inv
            if t0 > t1 { swap(&t0, &t1) }
            tNear = max(tNear, t0); tFar = min(tFar, t1)
            if tNear > tFar { return false }
        }
        return true
    }

    /// Semantic class, instance id (0 for stuff) and material of an owner code from `castRay`.
    public func ownerInfo(_ owner: Int) -> (semantic: Int, instance: Int) {
        if owner < objects.count { return (objects[owner].classID, objects[owner].instanceID) }
        if owner == wallOwner { return (Self.wallClass, 0) }
        if owner == floorOwner { return (Self.floorClass, 0) }
        return (Self.ceilingClass, 0)
    }

    public func material(ofOwner owner: Int) -> Material {
        if owner < objects.count { return objects[owner].material }
        if owner == wallOwner { return wallMaterial }
        if owner == floorOwner { return floorMaterial }
        return ceilingMaterial
    }
}
