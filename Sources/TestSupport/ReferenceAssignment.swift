/// Slow, obviously-correct twin of `Kernels.Hungarian`: tries every injective assignment.
public enum ReferenceAssignment {
    /// Brute-force minimum-cost assignment of a rows x cols row-major matrix, in Double. Every element of the smaller
    /// side is matched (all rows when rows <= cols, otherwise all columns); the cost is the sum of matched entries.
    /// Enumerates min(rows, cols)-permutations of the larger side, so keep matrices small (about 7 x 7 or less:
    /// 7! = 5040 candidates). Ties: the first optimum in lexicographic order of the enumeration wins.
    /// Returns the optimal cost and, per row, its column or -1.
    public static func bruteForce(costs: [Float], rows: Int, cols: Int) -> (cost: Double, assignment: [Int]) {
        precondition(costs.count == rows * cols && rows >= 0 && cols >= 0)
        precondition(min(rows, cols) <= 8 && max(rows, cols) <= 10, "brute force is for small matrices only")
        if rows == 0 || cols == 0 { return (0, [Int](repeating: -1, count: rows)) }
        let transposed = rows > cols
        let n = transposed ? cols : rows, m = transposed ? rows : cols
        func cost(_ i: Int, _ j: Int) -> Double {  // i on the short side, j on the long side
            Double(transposed ? costs[j * cols + i] : costs[i * cols + j])
        }
        var best = Double.infinity
        var bestPick = [Int](repeating: -1, count: n)
        var pick = [Int](repeating: -1, count: n)
        var used = [Bool](repeating: false, count: m)
        func search(_ i: Int, _ sum: Double) {
            if i == n {
                if sum < best { best = sum; bestPick = pick }
                return
            }
            for j in 0..<m where !used[j] {
                used[j] = true; pick[i] = j
                search(i + 1, sum + cost(i, j))
                used[j] = false
            }
        }
        search(0, 0)
        var assignment = [Int](repeating: -1, count: rows)
        for i in 0..<n {
            if transposed { assignment[bestPick[i]] = i } else { assignment[i] = bestPick[i] }
        }
        return (best, assignment)
    }

    /// Greedy assignment (repeatedly take the globally cheapest entry whose row and column are both free; ties go to
    /// the lowest row-major index). A baseline the optimal solver must never lose to.
    public static func greedy(costs: [Float], rows: Int, cols: Int) -> [Int] {
        precondition(costs.count == rows * cols)
        let order = (0..<costs.count).sorted { (costs[$0], $0) < (costs[$1], $1) }
        var rowOf = [Int](repeating: -1, count: rows)
        var colUsed = [Bool](repeating: false, count: cols)
        var left = min(rows, cols)
        for k in order where left > 0 {
            let r = k / cols, c = k % cols
            if rowOf[r] == -1 && !colUsed[c] { rowOf[r] = c; colUsed[c] = true; left -= 1 }
        }
        return rowOf
    }

    /// True when `assignment` is a valid answer for a rows x cols matrix: one entry per row, each -1 or a column, no
    /// column used twice, and exactly min(rows, cols) rows assigned.
    public static func isValid(_ assignment: [Int], rows: Int, cols: Int) -> Bool {
        guard assignment.count == rows else { return false }
        var used = [Bool](repeating: false, count: cols)
        var assigned = 0
        for c in assignment {
            if c == -1 { continue }
            guard c >= 0 && c < cols && !used[c] else { return false }
            used[c] = true; assigned += 1
        }
        return assigned == min(rows, cols)
    }
}
