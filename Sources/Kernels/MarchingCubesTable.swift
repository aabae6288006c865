/// The marching-cubes case table, generated (not copied) at first use from the cube's geometry.
///
/// Conventions (shared by every marching-cubes kernel here):
/// - Corner `c` (0..<8) sits at offset (c & 1, (c >> 1) & 1, (c >> 2) & 1) of the cube's lowest sample.
/// - A corner is *inside* when its value is < iso (negative SDF); the case index has bit `c` set for inside corners.
/// - Edge `e` (0..<12) runs along axis `a = e / 4` from its start corner (bit `a` clear) to the corner one step along
///   `a`; with the other two axes in increasing order (x: y,z; y: x,z; z: x,y), bit 0 of `e % 4` is the offset along
///   the first of them and bit 1 the offset along the second.
///
/// Generation, per case: on each of the 6 faces, the corners' signs give 0, 2 or 4 crossed face edges. Two crossings
/// give one iso-line segment; four (the ambiguous face, diagonal corners alike) are resolved by one fixed rule that
/// depends on that face's four signs only — by default *separate the inside corners* (each inside corner is cut off by
/// its own segment) — so the two cubes sharing a face draw the same segments and the surface has no cracks. Each segment
/// is directed so that, with the face's outward normal n, (b − a) × n points to the inside side; then every crossed cube
/// edge is the end of exactly one segment and the start of exactly one other, the segments chain into closed loops,
/// and each loop is triangulated (a fan where possible) without diagonals lying in a cube face, so the mesh is a closed
/// 2-manifold, with right-hand normals pointing to positive SDF.
public struct MarchingCubesTable: Sendable, Equatable {
    /// How an ambiguous face (two diagonal corners inside, two outside) is cut.
    public enum AmbiguityRule: Sendable, Equatable {
        /// Each inside corner gets its own segment (the inside is not connected across the face).
        case separateInside
        /// Each outside corner gets its own segment (the inside is connected across the face).
        case separateOutside
    }

    public let rule: AmbiguityRule
    /// Per case, its closed loops of cube edges, in the order generated (each loop starts at its smallest edge).
    public let loops: [[[UInt8]]]
    /// Per case, triangles as cube-edge triples (flattened, 3 per triangle), from `triangleOffsets[c]` to
    /// `triangleOffsets[c + 1]`.
    public let triangleEdges: [UInt8]
    public let triangleOffsets: [Int]

    /// The table every extractor uses, generated once at first use.
    public static let shared = MarchingCubesTable(rule: .separateInside)

    public init(rule: AmbiguityRule) {
        self.rule = rule
        var loops: [[[UInt8]]] = [], edges: [UInt8] = [], offsets = [0]
        for c in 0..<256 {
            let l = Self.caseLoops(case: c, rule: rule)
            loops.append(l)
            for loop in l {
                guard let t = Self.triangulate(loop) else {
                    preconditionFailure("marching-cubes case \(c): loop \(loop) has no triangulation off the faces")
                }
                edges += t
            }
            offsets.append(edges.count)
        }
        self.loops = loops; triangleEdges = edges; triangleOffsets = offsets
    }

    /// Triangulates a loop (oriented polygon of cube edges) so that no added diagonal joins two cube edges of one face.
    /// Such a diagonal would lie in that face, and the neighbouring cube (whose loop crosses the same ambiguous face)
    /// could draw it too, making an edge of four triangles. Prefers a fan from the earliest possible apex; falls back
    /// to splitting along the first admissible diagonal. Nil when no such triangulation exists (never, for the 256
    /// cases under either rule; the tests check it).
    static func triangulate(_ loop: [UInt8]) -> [UInt8]? {
        let n = loop.count
        if n == 3 { return loop }
        func admissible(_ i: Int, _ j: Int) -> Bool { !shareFace(Int(loop[i]), Int(loop[j])) }
        for apex in 0..<n {
            let others = (2..<(n - 1)).map { (apex + $0) % n }
            guard others.allSatisfy({ admissible(apex, $0) }) else { continue }
            var out: [UInt8] = []
            for k in 1..<(n - 1) { out += [loop[apex], loop[(apex + k) % n], loop[(apex + k + 1) % n]] }
            return out
        }
        for i in 0..<n {
            for j in (i + 2)..<n where !(i == 0 && j == n - 1) && admissible(i, j) {
                if let a = triangulate(Array(loop[i...j])), let b = triangulate(Array(loop[j...] + loop[...i])) {
                    return a + b
                }
            }
        }
        return nil
    }

    /// Whether cube edges `e1` and `e2` lie on a common face.
    static func shareFace(_ e1: Int, _ e2: Int) -> Bool {
        func faces(_ e: Int) -> [Int] {
            let (a, o) = edgeStart(e)
            let (u, v) = otherAxes(a)
            return [2 * u + o[u], 2 * v + o[v]]
        }
        return !Set(faces(e1)).isDisjoint(with: faces(e2))
    }

    /// The triangles (cube-edge triples) of case `c`.
    public func triangles(case c: Int) -> ArraySlice<UInt8> { triangleEdges[triangleOffsets[c]..<triangleOffsets[c + 1]] }

    // MARK: cube geometry

    /// Offset of corner `c` from the cube's lowest sample.
    @inlinable public static func cornerOffset(_ c: Int) -> SIMD3<Int> { SIMD3(c & 1, (c >> 1) & 1, (c >> 2) & 1) }

    /// The two axes other than `a`, in increasing order.
    @inlinable public static func otherAxes(_ a: Int) -> (Int, Int) { a == 0 ? (1, 2) : a == 1 ? (0, 2) : (0, 1) }

    /// Axis of edge `e` and the offset of its start corner from the cube's lowest sample.
    @inlinable public static func edgeStart(_ e: Int) -> (axis: Int, offset: SIMD3<Int>) {
        let a = e >> 2, r = e & 3
        let (u, v) = otherAxes(a)
        var o = SIMD3<Int>(repeating: 0)
        o[u] = r & 1; o[v] = r >> 1
        return (a, o)
    }

    /// The corners (start, end) of edge `e`.
    public static func edgeCorners(_ e: Int) -> (Int, Int) {
        let (a, o) = edgeStart(e)
        let c0 = o.x | (o.y << 1) | (o.z << 2)
        return (c0, c0 | (1 << a))
    }

    /// The cube edge joining corners `c0` and `c1` (which differ in one bit).
    static func edge(_ c0: Int, _ c1: Int) -> Int {
        let lo = min(c0, c1), d = c0 ^ c1
        let a = d == 1 ? 0 : d == 2 ? 1 : 2
        let o = cornerOffset(lo)
        let (u, v) = otherAxes(a)
        return a * 4 + o[u] + 2 * o[v]
    }

    /// Face `f` = 2·axis + side: its corners in cyclic order and its outward normal.
    static func face(_ f: Int) -> (corners: [Int], normal: SIMD3<Double>) {
        let a = f >> 1, s = f & 1
        let u = (a + 1) % 3, v = (a + 2) % 3
        let corners = [(0, 0), (1, 0), (1, 1), (0, 1)].map { (du, dv) in (s << a) | (du << u) | (dv << v) }
        var n = SIMD3<Double>(repeating: 0)
        n[a] = s == 0 ? -1 : 1
        return (corners, n)
    }

    static func cornerPoint(_ c: Int) -> SIMD3<Double> { SIMD3<Double>(cornerOffset(c)) }
    static func edgeMidpoint(_ e: Int) -> SIMD3<Double> {
        let (c0, c1) = edgeCorners(e)
        return (cornerPoint(c0) + cornerPoint(c1)) / 2
    }

    // MARK: generation

    /// The directed iso-line segments (start edge, end edge) of case `c` on all six faces.
    public static func faceSegments(case c: Int, rule: AmbiguityRule) -> [(UInt8, UInt8)] {
        func inside(_ corner: Int) -> Bool { c & (1 << corner) != 0 }
        var segments: [(UInt8, UInt8)] = []
        for f in 0..<6 {
            let (q, n) = face(f)
            let faceEdges = (0..<4).map { edge(q[$0], q[($0 + 1) & 3]) }
            let crossed = (0..<4).filter { inside(q[$0]) != inside(q[($0 + 1) & 3]) }
            // (edge a, edge b, a corner on the segment's side that it cuts off or bounds)
            var pairs: [(Int, Int, Int)] = []
            if crossed.count == 2 {
                let ref = q.first(where: inside)!
                pairs.append((faceEdges[crossed[0]], faceEdges[crossed[1]], ref))
            } else if crossed.count == 4 {
                let cutInside = rule == .separateInside
                for k in 0..<4 where inside(q[k]) == cutInside {
                    pairs.append((faceEdges[(k + 3) & 3], faceEdges[k], q[k]))
                }
            }
            for (ea, eb, ref) in pairs {
                let a = edgeMidpoint(ea), b = edgeMidpoint(eb)
                let side = dot(cross(b - a, n), cornerPoint(ref) - a)
                // Direct the segment so that (b - a) × n points to the inside side.
                let forward = (side > 0) == inside(ref)
                segments.append(forward ? (UInt8(ea), UInt8(eb)) : (UInt8(eb), UInt8(ea)))
            }
        }
        return segments
    }

    /// Chains the face segments of case `c` into closed loops of cube edges. Traps if they do not close (they always
    /// do; the tests check all 256 cases for both rules).
    static func caseLoops(case c: Int, rule: AmbiguityRule) -> [[UInt8]] {
        var next = [Int](repeating: -1, count: 12)
        for (a, b) in faceSegments(case: c, rule: rule) {
            precondition(next[Int(a)] == -1, "marching-cubes case \(c): edge \(a) starts two segments")
            next[Int(a)] = Int(b)
        }
        var used = [Bool](repeating: false, count: 12), loops: [[UInt8]] = []
        for start in 0..<12 where next[start] >= 0 && !used[start] {
            var loop: [UInt8] = [], e = start
            while !used[e] {
                used[e] = true; loop.append(UInt8(e))
                e = next[e]
                precondition(e >= 0, "marching-cubes case \(c): open loop")
            }
            precondition(e == start, "marching-cubes case \(c): loop does not return to its start")
            loops.append(loop)
        }
        return loops
    }
}

@inline(__always) private func dot(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double { (a * b).sum() }
@inline(__always) private func cross(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> SIMD3<Double> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}
