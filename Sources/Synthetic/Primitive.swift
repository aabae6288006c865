import MapCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A solid with an exact signed distance function and an exact ray intersection: a box rotated about the vertical
/// axis (yaw), a sphere, or a vertical capped cylinder. All lengths in metres, world frame z up.
public struct Primitive: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, Codable { case box, sphere, cylinder }

    public let kind: Kind
    /// Box: centre; sphere: centre; cylinder: centre of its axis segment.
    public let center: Vec3
    /// Box: half sizes along its local axes; sphere: (r, r, r); cylinder: (r, r, half height).
    public let halfExtents: Vec3
    /// Rotation about +z (radians); boxes only (0 otherwise).
    public let yaw: Double
    @usableFromInline let cosYaw: Double
    @usableFromInline let sinYaw: Double

    init(kind: Kind, center: Vec3, halfExtents: Vec3, yaw: Double) {
        self.kind = kind; self.center = center; self.halfExtents = halfExtents; self.yaw = yaw
        cosYaw = cos(yaw); sinYaw = sin(yaw)
    }

    /// A box of full `size` (metres) centred at `center`, rotated by `yaw` radians about +z.
    public static func box(center: Vec3, size: Vec3, yaw: Double = 0) -> Primitive {
        Primitive(kind: .box, center: center, halfExtents: size / 2, yaw: yaw)
    }
    /// A box given by its footprint centre (x, y), its bottom and top heights, its footprint size and yaw.
    public static func box(x: Double, y: Double, zBottom: Double, zTop: Double, sizeX: Double, sizeY: Double,
                           yaw: Double = 0) -> Primitive {
        box(center: Vec3(x, y, (zBottom + zTop) / 2), size: Vec3(sizeX, sizeY, zTop - zBottom), yaw: yaw)
    }
    public static func sphere(center: Vec3, radius: Double) -> Primitive {
        Primitive(kind: .sphere, center: center, halfExtents: Vec3(radius, radius, radius), yaw: 0)
    }
    /// A vertical cylinder with axis through (x, y), from `zBottom` to `zTop`, capped with flat discs.
    public static func cylinder(x: Double, y: Double, zBottom: Double, zTop: Double, radius: Double) -> Primitive {
        Primitive(kind: .cylinder, center: Vec3(x, y, (zBottom + zTop) / 2),
                  halfExtents: Vec3(radius, radius, (zTop - zBottom) / 2), yaw: 0)
    }

    // MARK: local frame (boxes)

    @inlinable func toLocal(_ v: Vec3) -> Vec3 {
        Vec3(cosYaw * v.x + sinYaw * v.y, -sinYaw * v.x + cosYaw * v.y, v.z)
    }
    @inlinable func toWorld(_ v: Vec3) -> Vec3 {
        Vec3(cosYaw * v.x - sinYaw * v.y, sinYaw * v.x + cosYaw * v.y, v.z)
    }

    // MARK: signed distance

    /// Exact signed distance (metres): negative inside the solid, positive outside.
    @inlinable public func sdf(_ p: Vec3) -> Double {
        switch kind {
        case .box:
            let l = toLocal(p - center)
            let q = Vec3(abs(l.x), abs(l.y), abs(l.z)) - halfExtents
            let outside = pointwiseMax(q, Vec3.zero)
            return length(outside) + min(max(q.x, max(q.y, q.z)), 0)
        case .sphere:
            return length(p - center) - halfExtents.x
        case .cylinder:
            let dx = p.x - center.x, dy = p.y - center.y
            let radial = (dx * dx + dy * dy).squareRoot() - halfExtents.x
            let axial = abs(p.z - center.z) - halfExtents.z
            let ox = max(radial, 0), oz = max(axial, 0)
            return min(max(radial, axial), 0) + (ox * ox + oz * oz).squareRoot()
        }
    }

    // MARK: ray intersection

    /// First entry of the ray `origin + t * direction` (direction need not be unit length) into the solid with
    /// `tMin < t < tMax`, with the outward unit normal there; nil when there is none. Rays starting inside the solid
    /// are not reported (the camera is always in free space).
    @inlinable public func intersect(origin o: Vec3, direction d: Vec3, tMin: Double, tMax: Double)
        -> (t: Double, normal: Vec3)?
    {
        switch kind {
        case .box:
            let ol = toLocal(o - center), dl = toLocal(d), h = halfExtents
            var tNear = -Double.infinity, tFar = Double.infinity, axis = 0
            for a in 0..<3 {
                if abs(dl[a]) < 1e-300 {
                    if abs(ol[a]) > h[a] { return nil }
                    continue
                }
                let inv = 1 / dl[a]
                var t0 = (-h[a] - ol[a]) * inv, t1 = (h[a] - ol[a]) * inv
                if t0 > t1 { swap(&t0, &t1) }
                if t0 > tNear { tNear = t0; axis = a }
                if t1 < tFar { tFar = t1 }
                if tNear > tFar { return nil }
            }
            guard tNear > tMin, tNear < tMax else { return nil }
            var nl = Vec3.zero
            nl[axis] = dl[axis] > 0 ? -1 : 1
            return (tNear, toWorld(nl))
        case .sphere:
            let r = halfExtents.x
            let oc = o - center
            let a = dot(d, d), b = dot(oc, d), c = dot(oc, oc) - r * r
            let disc = b * b - a * c
            guard disc >= 0 else { return nil }
            let t = (-b - disc.squareRoot()) / a
            guard t > tMin, t < tMax else { return nil }
            return (t, (o + t * d - center) / r)
        case .cylinder:
            let r = halfExtents.x, zLo = center.z - halfExtents.z, zHi = center.z + halfExtents.z
            var best = tMax
            var normal = Vec3.zero
            var found = false
            // Curved side: (ox + t dx)^2 + (oy + t dy)^2 = r^2 with the hit height inside [zLo, zHi].
            let ox = o.x - center.x, oy = o.y - center.y
            let a = d.x * d.x + d.y * d.y
            if a > 1e-300 {
                let b = ox * d.x + oy * d.y, c = ox * ox + oy * oy - r * r
                let disc = b * b - a * c
                if disc >= 0 {
                    let t = (-b - disc.squareRoot()) / a
                    let z = o.z + t * d.z
                    if t > tMin, t < best, z >= zLo, z <= zHi {
                        best = t; found = true
                        normal = Vec3((ox + t * d.x) / r, (oy + t * d.y) / r, 0)
                    }
                }
            }
            // The cap facing the ray origin.
            if d.z != 0 {
                let zCap = d.z < 0 ? zHi : zLo
                let t = (zCap - o.z) / d.z
                if t > tMin, t < best {
                    let x = ox + t * d.x, y = oy + t * d.y
                    if x * x + y * y <= r * r {
                        best = t; found = true
                        normal = Vec3(0, 0, d.z < 0 ? 1 : -1)
                    }
                }
            }
            return found ? (best, normal) : nil
        }
    }

    // MARK: bounds and surface

    /// Axis-aligned bounding box in world coordinates.
    public var bounds: (lo: Vec3, hi: Vec3) {
        switch kind {
        case .box:
            let h = halfExtents
            let ex = abs(cosYaw) * h.x + abs(sinYaw) * h.y, ey = abs(sinYaw) * h.x + abs(cosYaw) * h.y
            let e = Vec3(ex, ey, h.z)
            return (center - e, center + e)
        case .sphere, .cylinder:
            return (center - halfExtents, center + halfExtents)
        }
    }

    /// The surface as patches (faces) with their areas (m^2), for area-weighted sampling.
    var surfacePatches: [(patch: Int, area: Double)] {
        let h = halfExtents
        switch kind {
        case .box:
            let ax = 4 * h.y * h.z, ay = 4 * h.x * h.z, az = 4 * h.x * h.y
            return [(0, ax), (1, ax), (2, ay), (3, ay), (4, az), (5, az)]
        case .sphere:
            return [(0, 4 * Double.pi * h.x * h.x)]
        case .cylinder:
            let cap = Double.pi * h.x * h.x
            return [(0, 2 * Double.pi * h.x * 2 * h.z), (1, cap), (2, cap)]
        }
    }

    /// A uniformly distributed point on surface patch `patch` (see `surfacePatches`) with its outward normal.
    func samplePatch(_ patch: Int, _ rng: inout SeededRNG) -> (point: Vec3, normal: Vec3) {
        let h = halfExtents
        switch kind {
        case .box:
            let axis = patch / 2, sign: Double = patch % 2 == 0 ? -1 : 1
            var pl = Vec3(rng.uniform(-h.x, h.x), rng.uniform(-h.y, h.y), rng.uniform(-h.z, h.z))
            pl[axis] = sign * h[axis]
            var nl = Vec3.zero
            nl[axis] = sign
            return (center + toWorld(pl), toWorld(nl))
        case .sphere:
            let z = rng.uniform(-1, 1), phi = rng.uniform(0, 2 * Double.pi)
            let s = max(0, 1 - z * z).squareRoot()
            let n = Vec3(s * cos(phi), s * sin(phi), z)
            return (center + h.x * n, n)
        case .cylinder:
            let phi = rng.uniform(0, 2 * Double.pi)
            if patch == 0 {
                let n = Vec3(cos(phi), sin(phi), 0)
                return (Vec3(center.x + h.x * n.x, center.y + h.x * n.y, rng.uniform(center.z - h.z, center.z + h.z)), n)
            }
            let rr = h.x * rng.uniform().squareRoot()
            let top = patch == 2
            return (Vec3(center.x + rr * cos(phi), center.y + rr * sin(phi), top ? center.z + h.z : center.z - h.z),
                    Vec3(0, 0, top ? 1 : -1))
        }
    }
}
