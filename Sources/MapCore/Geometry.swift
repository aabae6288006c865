/// Small fixed-size linear algebra for poses and points (double precision; hot loops use Float buffers elsewhere).
public typealias Vec3 = SIMD3<Double>

/// Row-major 3x3 matrix.
public struct Mat3: Sendable, Equatable, Codable {
    public var r0: Vec3, r1: Vec3, r2: Vec3

    public init(rows r0: Vec3, _ r1: Vec3, _ r2: Vec3) { self.r0 = r0; self.r1 = r1; self.r2 = r2 }
    public static let identity = Mat3(rows: Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(0, 0, 1))

    public var transposed: Mat3 {
        Mat3(rows: Vec3(r0.x, r1.x, r2.x), Vec3(r0.y, r1.y, r2.y), Vec3(r0.z, r1.z, r2.z))
    }
    public var determinant: Double {
        (r0 * cross(r1, r2)).sum()
    }
    public static func * (m: Mat3, v: Vec3) -> Vec3 {
        Vec3((m.r0 * v).sum(), (m.r1 * v).sum(), (m.r2 * v).sum())
    }
    public static func * (a: Mat3, b: Mat3) -> Mat3 {
        let bt = b.transposed
        return Mat3(rows: bt * a.r0, bt * a.r1, bt * a.r2)
    }
    /// Element (row, column).
    public subscript(row: Int, col: Int) -> Double {
        switch row { case 0: return r0[col]; case 1: return r1[col]; default: return r2[col] }
    }

    /// Rotation from a unit quaternion (w, x, y, z); the quaternion is normalised first.
    public init(quaternion q: SIMD4<Double>) {
        let n = (q * q).sum().squareRoot()
        let w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n
        self.init(rows: Vec3(1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
                  Vec3(2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
                  Vec3(2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)))
    }

    /// Rotation of `angle` radians about the unit `axis` (Rodrigues).
    public init(axis: Vec3, angle: Double) {
        let a = normalize(axis), h = sin(angle / 2)
        self.init(quaternion: SIMD4(cos(angle / 2), a.x * h, a.y * h, a.z * h))
    }
}

public func cross(_ a: Vec3, _ b: Vec3) -> Vec3 {
    Vec3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}
public func dot(_ a: Vec3, _ b: Vec3) -> Double { (a * b).sum() }
public func length(_ a: Vec3) -> Double { dot(a, a).squareRoot() }
public func normalize(_ a: Vec3) -> Vec3 { a / length(a) }

/// A rigid transform named by its frames: `T_A_B` maps points from frame B into frame A (p_A = R p_B + t).
public struct RigidTransform: Sendable, Equatable, Codable {
    public var rotation: Mat3
    public var translation: Vec3

    public init(rotation: Mat3 = .identity, translation: Vec3 = .zero) {
        self.rotation = rotation; self.translation = translation
    }
    public static let identity = RigidTransform()

    /// From 12 or 16 row-major numbers (the last row of a 4x4, if given, is not stored; see `isRigid`).
    public init(rowMajor m: [Double]) {
        precondition(m.count == 12 || m.count == 16, "RigidTransform needs 12 or 16 numbers")
        rotation = Mat3(rows: Vec3(m[0], m[1], m[2]), Vec3(m[4], m[5], m[6]), Vec3(m[8], m[9], m[10]))
        translation = Vec3(m[3], m[7], m[11])
    }
    /// Row-major 4x4.
    public var rowMajor4x4: [Double] {
        let r = rotation
        return [r.r0.x, r.r0.y, r.r0.z, translation.x,
                r.r1.x, r.r1.y, r.r1.z, translation.y,
                r.r2.x, r.r2.y, r.r2.z, translation.z,
                0, 0, 0, 1]
    }

    public static func * (a: RigidTransform, b: RigidTransform) -> RigidTransform {
        RigidTransform(rotation: a.rotation * b.rotation, translation: a.rotation * b.translation + a.translation)
    }
    public static func * (a: RigidTransform, p: Vec3) -> Vec3 { a.rotation * p + a.translation }

    public var inverse: RigidTransform {
        let rt = rotation.transposed
        return RigidTransform(rotation: rt, translation: -(rt * translation))
    }

    /// True when all entries are finite, R^T R = I and det R = +1 within `tolerance`.
    public func isRigid(tolerance: Double = 1e-3) -> Bool {
        let all = rowMajor4x4
        guard all.allSatisfy({ $0.isFinite }) else { return false }
        let p = rotation.transposed * rotation
        for i in 0..<3 {
            for j in 0..<3 where abs(p[i, j] - (i == j ? 1 : 0)) > tolerance { return false }
        }
        return abs(rotation.determinant - 1) <= tolerance
    }

    /// Camera pose looking from `eye` at `target`, OpenCV convention (+z forward, +x right, +y down), `up` the world up.
    public static func lookAt(eye: Vec3, target: Vec3, up: Vec3 = Vec3(0, 0, 1)) -> RigidTransform {
        let z = normalize(target - eye)
        var x = cross(z, up)
        if length(x) < 1e-9 { x = cross(z, Vec3(1, 0, 0)) }
        x = normalize(x)
        let y = cross(z, x)
        // Columns of R_W_C are the camera axes in world coordinates.
        let r = Mat3(rows: Vec3(x.x, y.x, z.x), Vec3(x.y, y.y, z.y), Vec3(x.z, y.z, z.z))
        return RigidTransform(rotation: r, translation: eye)
    }

    /// Rotation angle in radians of this transform.
    public var rotationAngle: Double {
        let tr = rotation.r0.x + rotation.r1.y + rotation.r2.z
        return acos(max(-1, min(1, (tr - 1) / 2)))
    }

    /// The pose a fraction `t` of the way to `other`: translation linear, rotation along the shorter great arc
    /// (quaternion slerp). t = 0 gives self, t = 1 gives other.
    public func interpolated(to other: RigidTransform, fraction t: Double) -> RigidTransform {
        let qa = rotation.quaternion
        var qb = other.rotation.quaternion
        var c = (qa * qb).sum()
        if c < 0 { qb = -qb; c = -c } // same rotation, shorter arc
        let q: SIMD4<Double>
        if c > 0.9995 {
            q = qa + t * (qb - qa) // nearly equal: linear is exact enough (normalised by Mat3)
        } else {
            let theta = acos(c)
            q = (sin((1 - t) * theta) * qa + sin(t * theta) * qb) / sin(theta)
        }
        return RigidTransform(rotation: Mat3(quaternion: q), translation: translation + t * (other.translation - translation))
    }
}

extension Mat3 {
    /// The unit quaternion (w, x, y, z) of this rotation, w >= 0 (Shepperd's method: largest diagonal term first).
    public var quaternion: SIMD4<Double> {
        let m = self, tr = m[0, 0] + m[1, 1] + m[2, 2]
        var q: SIMD4<Double>
        if tr > 0 {
            let s = (tr + 1).squareRoot() * 2
            q = SIMD4(s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
        } else if m[0, 0] > m[1, 1] && m[0, 0] > m[2, 2] {
            let s = (1 + m[0, 0] - m[1, 1] - m[2, 2]).squareRoot() * 2
            q = SIMD4((m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
        } else if m[1, 1] > m[2, 2] {
            let s = (1 + m[1, 1] - m[0, 0] - m[2, 2]).squareRoot() * 2
            q = SIMD4((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s)
        } else {
            let s = (1 + m[2, 2] - m[0, 0] - m[1, 1]).squareRoot() * 2
            q = SIMD4((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4)
        }
        q /= (q * q).sum().squareRoot()
        return q[0] < 0 ? -q : q
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
