import MapCore

/// Minimum-cost assignment (linear sum assignment) for rectangular cost matrices.
///
/// Used once per frame to match the N rendered instance-token masks to the M 2D masks of that frame, with cost
/// dice(eps = 1) + BCE (see DESIGN.md, "Instances": "Per frame: Hungarian matching of rendered token masks ...").
///
/// Method: shortest augmenting paths with dual potentials (Kuhn–Munkres in the Jonker–Volgenant form), O(k^2 * l)
/// for k = min(rows, cols), l = max(rows, cols); all arithmetic is in Double. The smaller side is the one that gets
/// fully matched: when rows > cols the problem is solved on the transpose.
///
/// Algorithm (written from its textbook description): the "short" side is inserted one element at a time. Each
/// insertion grows a Dijkstra-like alternating tree over the long side using reduced costs c(i, j) - u(i) - v(j) >= 0,
/// always extending the tree by the long-side element with the smallest tentative distance, and updating the
/// potentials by that distance, until a free long-side element is reached; the path found is then flipped
/// (augmented). Potentials keep all reduced costs non-negative, so each path is a shortest one and the final
/// matching is optimal.
///
/// Deterministic tie-breaking: short-side elements are inserted in increasing index order, and when several
/// long-side elements share the smallest tentative distance the one with the **lowest index** is taken (strict `<`
/// scan in index order). The result is a pure function of (costs, rows, cols): no randomness, no threads, no
/// dependence on memory layout. Note that a matrix and its transpose may resolve ties differently (both are optimal).
///
/// Non-finite costs (`solve`): NaN and +inf mean "forbidden pair", -inf means "preferred over any finite pair".
/// They are replaced by finite stand-ins `maxFinite + M` and `minFinite - M` with M > k * (finite range), so the
/// optimum first minimises the number of forbidden pairs (a forbidden pair is used only when every assignment of
/// the required size needs it, e.g. a row whose costs are all NaN still gets a column when cols >= rows), then the
/// finite cost. Use `checkedSolve` to reject such matrices with a `MapError` instead.
public enum Hungarian {
    /// Minimum-cost assignment of rows to columns for a `rows` x `cols` row-major cost matrix (any shape, including
    /// 0 x n and n x 0). Returns, for each row, its column or -1. When rows > cols exactly rows - cols rows stay
    /// unassigned (-1); when cols >= rows every row is assigned a distinct column.
    ///
    /// Preconditions (programmer errors, not data errors): rows >= 0, cols >= 0, costs.count == rows * cols.
    /// Non-finite costs are handled as documented on the type (NaN / +inf forbidden, -inf preferred).
    public static func solve(costs: [Float], rows: Int, cols: Int) -> [Int] {
        precondition(rows >= 0 && cols >= 0, "Hungarian.solve: negative size \(rows) x \(cols)")
        precondition(costs.count == rows * cols,
                     "Hungarian.solve: costs.count = \(costs.count) but rows * cols = \(rows) x \(cols) = \(rows * cols)")
        if rows == 0 { return [] }
        if cols == 0 { return [Int](repeating: -1, count: rows) }

        let transposed = rows > cols
        let n = transposed ? cols : rows  // short side: every element gets matched
        let m = transposed ? rows : cols  // long side

        // Finite range, for the stand-ins of non-finite entries.
        var lo = Double.infinity, hi = -Double.infinity
        var nonFinite = false
        for c in costs {
            if c.isFinite { let d = Double(c); if d < lo { lo = d }; if d > hi { hi = d } } else { nonFinite = true }
        }
        if lo > hi { lo = 0; hi = 0 }  // no finite entry at all
        let bigM = (hi - lo + 1) * Double(n + 1)
        let forbidden = hi + bigM, preferred = lo - bigM

        // Short-side-major Double copy a[i * m + j] (i short, j long).
        var a = [Double](repeating: 0, count: n * m)
        a.withUnsafeMutableBufferPointer { a in
            costs.withUnsafeBufferPointer { c in
                for r in 0..<rows {
                    for q in 0..<cols {
                        let x = c[r * cols + q]
                        let d: Double
                        if !nonFinite || x.isFinite { d = Double(x) } else if x == -.infinity { d = preferred } else { d = forbidden }
                        if transposed { a[q * m + r] = d } else { a[r * m + q] = d }
                    }
                }
            }
        }

        // Long-side arrays use index 0 as a virtual "root" column; real long-side element j lives at j + 1.
        var u = [Double](repeating: 0, count: n + 1)        // potentials of short-side elements (1-based)
        var v = [Double](repeating: 0, count: m + 1)        // potentials of long-side elements (1-based, 0 = root)
        var owner = [Int](repeating: 0, count: m + 1)       // short-side element (1-based) matched to j, 0 = free
        var via = [Int](repeating: 0, count: m + 1)         // predecessor of j in the current alternating tree
        var dist = [Double](repeating: 0, count: m + 1)     // tentative reduced distance to j
        var inTree = [Bool](repeating: false, count: m + 1)

        a.withUnsafeBufferPointer { a in
        u.withUnsafeMutableBufferPointer { u in
        v.withUnsafeMutableBufferPointer { v in
        owner.withUnsafeMutableBufferPointer { owner in
        via.withUnsafeMutableBufferPointer { via in
        dist.withUnsafeMutableBufferPointer { dist in
        inTree.withUnsafeMutableBufferPointer { inTree in
            for i in 1...n {
                owner[0] = i
                var j0 = 0
                for j in 0...m { dist[j] = .infinity; inTree[j] = false }
                // Grow the tree until a free long-side element is reached.
                repeat {
                    inTree[j0] = true
                    let i0 = owner[j0]
                    let row = (i0 - 1) * m
                    let ui0 = u[i0]
                    var delta = Double.infinity
                    var j1 = 0
                    for j in 1...m where !inTree[j] {
                        let reduced = a[row + j - 1] - ui0 - v[j]
                        if reduced < dist[j] { dist[j] = reduced; via[j] = j0 }
                        if dist[j] < delta { delta = dist[j]; j1 = j }  // strict: lowest index wins ties
                    }
                    // Update potentials so tree edges stay tight and reduced costs stay >= 0.
                    for j in 0...m {
                        if inTree[j] { u[owner[j]] += delta; v[j] -= delta } else { dist[j] -= delta }
                    }
                    j0 = j1
                } while owner[j0] != 0
                // Augment: flip the alternating path back to the root.
                repeat {
                    let j1 = via[j0]
                    owner[j0] = owner[j1]
                    j0 = j1
                } while j0 != 0
            }
        }}}}}}}

        var result = [Int](repeating: -1, count: rows)
        for j in 1...m where owner[j] != 0 {
            let i = owner[j] - 1, jj = j - 1
            if transposed { result[jj] = i } else { result[i] = jj }
        }
        return result
    }

    /// `solve`, but rejects bad input with a `MapError` (kind `.badArgument`) instead of trapping or substituting:
    /// negative sizes, a size mismatch, or any NaN / infinite cost (the error names the first such row and column).
    public static func checkedSolve(costs: [Float], rows: Int, cols: Int) throws(MapError) -> [Int] {
        guard rows >= 0, cols >= 0, costs.count == rows * cols else {
            throw MapError(.badArgument, "Hungarian: cost matrix has \(costs.count) entries for \(rows) x \(cols)",
                           hint: "pass a row-major rows x cols matrix")
        }
        if let k = costs.firstIndex(where: { !$0.isFinite }) {
            throw MapError(.badArgument, "Hungarian: cost at row \(k / cols), column \(k % cols) is \(costs[k])",
                           hint: "clamp probabilities before dice / BCE so every matching cost is finite")
        }
        return solve(costs: costs, rows: rows, cols: cols)
    }

    /// Total cost (in Double) of an assignment as returned by `solve`: the sum of costs[r * cols + assignment[r]]
    /// over assigned rows (entries of -1 are skipped). Preconditions: costs.count == rows * cols,
    /// assignment.count == rows, every entry in -1..<cols.
    public static func totalCost(costs: [Float], rows: Int, cols: Int, assignment: [Int]) -> Double {
        precondition(costs.count == rows * cols, "Hungarian.totalCost: costs.count \(costs.count) != \(rows) x \(cols)")
        precondition(assignment.count == rows, "Hungarian.totalCost: \(assignment.count) entries for \(rows) rows")
        var s = 0.0
        for r in 0..<rows {
            let c = assignment[r]
            precondition(c >= -1 && c < cols, "Hungarian.totalCost: row \(r) assigned to column \(c) of \(cols)")
            if c >= 0 { s += Double(costs[r * cols + c]) }
        }
        return s
    }
}
