import Kernels
import MapCore

/// Exact nearest-neighbour search over 3D points: a balanced KD-tree (median splits on the widest axis of each
/// node's points, leaves of at most `leafSize` points) with branch-and-bound queries. Distances are computed as
/// `dx*dx + dy*dy + dz*dz` in Float, so results equal a brute-force scan with the same formula exactly.
public struct PointKDTree: Sendable {
    /// The points in tree order.
    public let points: [SIMD3<Float>]
    /// Original index of each entry of `points`.
    public let originalIndex: [Int32]
    private let nodes: [Node]

    struct Node: Sendable {
        var lo: Int32, hi: Int32
        /// Children (-1 for a leaf).
        var left: Int32, right: Int32
        var dim: Int32
        var split: Float
    }

    public var count: Int { points.count }

    public init(points input: [SIMD3<Float>], leafSize: Int = 10) {
        var pts = input
        var idx = (0..<input.count).map { Int32($0) }
        var nodes: [Node] = []
        nodes.reserveCapacity(max(1, 2 * input.count / max(1, leafSize / 2)))
        if !input.isEmpty {
            nodes.append(Node(lo: 0, hi: Int32(input.count), left: -1, right: -1, dim: 0, split: 0))
            var stack = [0]
            while let n = stack.popLast() {
                let lo = Int(nodes[n].lo), hi = Int(nodes[n].hi)
                if hi - lo <= max(1, leafSize) { continue }
                var bmin = pts[lo], bmax = pts[lo]
                for i in (lo + 1)..<hi { bmin = pointwiseMin(bmin, pts[i]); bmax = pointwiseMax(bmax, pts[i]) }
                let ext = bmax - bmin
                let dim = ext.x >= ext.y && ext.x >= ext.z ? 0 : (ext.y >= ext.z ? 1 : 2)
                if !(ext[dim] > 0) { continue } // all points equal: one leaf
                let mid = (lo + hi) / 2
                Self.select(&pts, &idx, lo, hi, mid, dim)
                let l = nodes.count
                nodes.append(Node(lo: Int32(lo), hi: Int32(mid), left: -1, right: -1, dim: 0, split: 0))
                nodes.append(Node(lo: Int32(mid), hi: Int32(hi), left: -1, right: -1, dim: 0, split: 0))
                nodes[n].left = Int32(l); nodes[n].right = Int32(l + 1)
                nodes[n].dim = Int32(dim); nodes[n].split = pts[mid][dim]
                stack.append(l + 1); stack.append(l)
            }
        }
        points = pts; originalIndex = idx; self.nodes = nodes
    }

    /// Reorders [lo, hi) so that entry `k` holds the value it would have if sorted along `dim`, smaller-or-equal ones
    /// before it and greater-or-equal ones after (Hoare quickselect, median-of-three pivot; deterministic).
    private static func select(_ p: inout [SIMD3<Float>], _ idx: inout [Int32], _ lo: Int, _ hi: Int, _ k: Int, _ dim: Int) {
        var l = lo, r = hi - 1
        p.withUnsafeMutableBufferPointer { p in
            idx.withUnsafeMutableBufferPointer { idx in
                @inline(__always) func swapAt(_ a: Int, _ b: Int) { p.swapAt(a, b); idx.swapAt(a, b) }
                while r > l {
                    let m = l + (r - l) / 2
                    if p[m][dim] < p[l][dim] { swapAt(m, l) }
                    if p[r][dim] < p[l][dim] { swapAt(r, l) }
                    if p[r][dim] < p[m][dim] { swapAt(r, m) }
                    let pivot = p[m][dim]
                    var i = l, j = r
                    while i <= j {
                        while p[i][dim] < pivot { i += 1 }
                        while p[j][dim] > pivot { j -= 1 }
                        if i <= j { swapAt(i, j); i += 1; j -= 1 }
                    }
                    if k <= j { r = j } else if k >= i { l = i } else { break }
                }
            }
        }
    }

    /// The nearest point to `q` (index into the input array) and its distance in metres; nil when the tree is empty.
    public func nearest(_ q: SIMD3<Float>) -> (index: Int, distance: Float)? {
        guard !points.isEmpty else { return nil }
        let (i, d2) = points.withUnsafeBufferPointer { p in
            nodes.withUnsafeBufferPointer { n in Self.query(q, p, n) }
        }
        return (Int(originalIndex[i]), d2.squareRoot())
    }

    /// Nearest distance (metres) from each query to the tree's points, on `threads` threads (fixed chunks; results do
    /// not depend on the count). Infinity for an empty tree.
    public func nearestDistances(_ queries: [SIMD3<Float>], threads: Int = Parallel.defaultThreads) -> [Float] {
        var out = [Float](repeating: .infinity, count: queries.count)
        guard !points.isEmpty else { return out }
        out.withUnsafeMutableBufferPointer { out in
            queries.withUnsafeBufferPointer { qs in
                points.withUnsafeBufferPointer { p in
                    nodes.withUnsafeBufferPointer { n in
                        Parallel.forEachChunk(count: qs.count, threads: threads, alignment: 64) { _, range in
                            for i in range { out[i] = Self.query(qs[i], p, n).1.squareRoot() }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Branch and bound: descend to the nearer side first; visit a far side only if its slab is closer than the best
    /// so far (the far side's points are at least |q[dim] − split| away).
    @inline(__always)
    private static func query(_ q: SIMD3<Float>, _ p: UnsafeBufferPointer<SIMD3<Float>>,
                              _ nodes: UnsafeBufferPointer<Node>) -> (Int, Float) {
        var best = Float.infinity, bestIndex = 0
        @inline(__always) func scan(_ leaf: Node) {
            for i in Int(leaf.lo)..<Int(leaf.hi) {
                let d = p[i] - q
                let d2 = d.x * d.x + d.y * d.y + d.z * d.z
                if d2 < best { best = d2; bestIndex = i }
            }
        }
        return withUnsafeTemporaryAllocation(of: (Int32, Float).self, capacity: 128) { stack in
            var top = 0
            stack[0] = (0, 0); top = 1
            while top > 0 {
                top -= 1
                let (ni, bound) = stack[top]
                if bound >= best { continue }
                var node = nodes[Int(ni)]
                // Walk down to a leaf, pushing far sides.
                while node.left >= 0 {
                    let diff = q[Int(node.dim)] - node.split
                    let near = diff < 0 ? node.left : node.right, far = diff < 0 ? node.right : node.left
                    let farBound = max(bound, diff * diff)
                    if farBound < best, top < 128 { stack[top] = (far, farBound); top += 1 }
                    else if farBound < best { // stack full (cannot happen for depth < 128): scan the far side
                        scan(nodes[Int(far)])
                    }
                    node = nodes[Int(near)]
                }
                scan(node)
            }
            return (bestIndex, best)
        }
    }
}
