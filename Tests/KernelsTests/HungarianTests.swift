import Foundation
import Kernels
import MapCore
import TestSupport
import XCTest

final class HungarianTests: XCTestCase {
    private func check(_ costs: [Float], _ rows: Int, _ cols: Int, tolerance: Double = 0,
                       file: StaticString = #filePath, line: UInt = #line) {
        let a = Hungarian.solve(costs: costs, rows: rows, cols: cols)
        XCTAssertTrue(ReferenceAssignment.isValid(a, rows: rows, cols: cols), "invalid \(a) for \(rows)x\(cols)",
                      file: file, line: line)
        let got = Hungarian.totalCost(costs: costs, rows: rows, cols: cols, assignment: a)
        let want = ReferenceAssignment.bruteForce(costs: costs, rows: rows, cols: cols).cost
        XCTAssertEqual(got, want, accuracy: tolerance * max(1, abs(want)), "\(rows)x\(cols) costs \(costs)",
                       file: file, line: line)
    }

    func testRandomMatricesOfAllShapesMatchBruteForce() {
        var rng = SeededRNG(seed: 42)
        var count = 0
        for rows in 1...7 {
            for cols in 1...7 {
                for _ in 0..<6 {
                    let costs = (0..<rows * cols).map { _ in Float(rng.uniform(-1, 3)) }
                    check(costs, rows, cols, tolerance: 1e-9)
                    count += 1
                }
            }
        }
        // Extra weight on the strongly rectangular shapes.
        for (rows, cols) in [(3, 7), (7, 3), (1, 7), (7, 1), (2, 6), (6, 2)] {
            for _ in 0..<20 {
                let costs = (0..<rows * cols).map { _ in Float(rng.uniform(0, 2)) }
                check(costs, rows, cols, tolerance: 1e-9)
                count += 1
            }
        }
        XCTAssertEqual(count, 414)
    }

    func testIntegerCostsWithManyTiesMatchBruteForceExactly() {
        var rng = SeededRNG(seed: 7)
        for rows in 1...7 {
            for cols in 1...7 {
                for range in [2, 4] {
                    for _ in 0..<3 {
                        let costs = (0..<rows * cols).map { _ in Float(rng.next() % UInt64(range)) }
                        check(costs, rows, cols)  // integers: exact
                    }
                }
            }
        }
    }

    func testHandWorked3x3() {
        // Candidates: (0,1)(1,0)(2,2) = 1+2+2 = 5 is the unique optimum (next best: 6).
        let costs: [Float] = [4, 1, 3,
                              2, 0, 5,
                              3, 2, 2]
        let a = Hungarian.solve(costs: costs, rows: 3, cols: 3)
        XCTAssertEqual(a, [1, 0, 2])
        XCTAssertEqual(Hungarian.totalCost(costs: costs, rows: 3, cols: 3, assignment: a), 5)
        // The same matrix transposed has the transposed optimum.
        let t: [Float] = [4, 2, 3,
                          1, 0, 2,
                          3, 5, 2]
        XCTAssertEqual(Hungarian.solve(costs: t, rows: 3, cols: 3), [1, 0, 2])
    }

    func testDegenerateShapes() {
        XCTAssertEqual(Hungarian.solve(costs: [], rows: 0, cols: 0), [])
        XCTAssertEqual(Hungarian.solve(costs: [], rows: 0, cols: 5), [])
        XCTAssertEqual(Hungarian.solve(costs: [], rows: 4, cols: 0), [-1, -1, -1, -1])
        XCTAssertEqual(Hungarian.totalCost(costs: [], rows: 4, cols: 0, assignment: [-1, -1, -1, -1]), 0)
        XCTAssertEqual(Hungarian.solve(costs: [3.5], rows: 1, cols: 1), [0])
        XCTAssertEqual(Hungarian.solve(costs: [3, 1, 2], rows: 1, cols: 3), [1])
        XCTAssertEqual(Hungarian.solve(costs: [3, 1, 2], rows: 3, cols: 1), [-1, 0, -1])
    }

    func testAllEqualCostsUseLowestIndexTieBreaking() {
        for (rows, cols) in [(1, 1), (4, 4), (3, 6), (6, 3), (7, 7), (50, 20)] {
            let costs = [Float](repeating: 0.25, count: rows * cols)
            let a = Hungarian.solve(costs: costs, rows: rows, cols: cols)
            XCTAssertTrue(ReferenceAssignment.isValid(a, rows: rows, cols: cols))
            XCTAssertEqual(Hungarian.totalCost(costs: costs, rows: rows, cols: cols, assignment: a),
                           0.25 * Double(min(rows, cols)))
            // Documented tie-breaking: the short side, in order, takes the lowest free index of the long side.
            let k = min(rows, cols)
            let expected = (0..<rows).map { $0 < k ? $0 : -1 }
            XCTAssertEqual(a, expected, "\(rows)x\(cols)")
        }
    }

    func testDeterministicAndTransposeConsistent() {
        var rng = SeededRNG(seed: 3)
        for _ in 0..<20 {
            let rows = 1 + Int(rng.next() % 30), cols = 1 + Int(rng.next() % 30)
            let costs = (0..<rows * cols).map { _ in Float(rng.next() % 5) }
            let a = Hungarian.solve(costs: costs, rows: rows, cols: cols)
            XCTAssertEqual(a, Hungarian.solve(costs: costs, rows: rows, cols: cols))
            var t = [Float](repeating: 0, count: rows * cols)
            for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = costs[r * cols + c] } }
            let b = Hungarian.solve(costs: t, rows: cols, cols: rows)
            XCTAssertTrue(ReferenceAssignment.isValid(b, rows: cols, cols: rows))
            XCTAssertEqual(Hungarian.totalCost(costs: costs, rows: rows, cols: cols, assignment: a),
                           Hungarian.totalCost(costs: t, rows: cols, cols: rows, assignment: b))
        }
    }

    func testLargeValues() {
        var rng = SeededRNG(seed: 11)
        for rows in 2...6 {
            for cols in 2...6 {
                // Large offset with small integer spreads (exact in Float below 2^24).
                let offset = (0..<rows * cols).map { _ in Float(10_000_000 + Int(rng.next() % 100)) }
                check(offset, rows, cols)
                // Huge magnitudes spanning many decades: relative agreement.
                let huge = (0..<rows * cols).map { _ in Float(pow(10, rng.uniform(20, 35))) }
                check(huge, rows, cols, tolerance: 1e-12)
                // Near Float.greatestFiniteMagnitude: Double arithmetic must not overflow.
                let extreme = (0..<rows * cols).map { _ in Float.greatestFiniteMagnitude * Float(rng.uniform(0.5, 1)) }
                check(extreme, rows, cols, tolerance: 1e-12)
            }
        }
    }

    func test100x80RandomIsValidAndBeatsGreedy() {
        var rng = SeededRNG(seed: 100)
        for (rows, cols) in [(100, 80), (80, 100), (100, 100)] {
            // Dice + BCE-like costs: positive, a few clearly good pairs on a noisy background.
            var costs = (0..<rows * cols).map { _ in Float(rng.uniform(0.8, 2.5)) }
            for r in 0..<min(rows, cols) where r % 3 == 0 { costs[r * cols + (r * 7) % cols] = Float(rng.uniform(0, 0.3)) }
            let a = Hungarian.solve(costs: costs, rows: rows, cols: cols)
            XCTAssertTrue(ReferenceAssignment.isValid(a, rows: rows, cols: cols))
            let got = Hungarian.totalCost(costs: costs, rows: rows, cols: cols, assignment: a)
            let g = ReferenceAssignment.greedy(costs: costs, rows: rows, cols: cols)
            XCTAssertTrue(ReferenceAssignment.isValid(g, rows: rows, cols: cols))
            let greedy = Hungarian.totalCost(costs: costs, rows: rows, cols: cols, assignment: g)
            XCTAssertLessThanOrEqual(got, greedy + 1e-9, "\(rows)x\(cols)")
            // No single swap of two assigned rows' columns (or move to a free column) improves the result.
            var free = Set(0..<cols); for c in a where c >= 0 { free.remove(c) }
            for r in 0..<rows where a[r] >= 0 {
                let cur = Double(costs[r * cols + a[r]])
                for c in free { XCTAssertGreaterThanOrEqual(Double(costs[r * cols + c]), cur - 1e-9) }
                for s in (r + 1)..<rows where a[s] >= 0 {
                    let before = cur + Double(costs[s * cols + a[s]])
                    let after = Double(costs[r * cols + a[s]]) + Double(costs[s * cols + a[r]])
                    XCTAssertGreaterThanOrEqual(after, before - 1e-9)
                }
            }
        }
    }

    func testNegativeCosts() {
        var rng = SeededRNG(seed: 5)
        for _ in 0..<30 {
            let rows = 1 + Int(rng.next() % 6), cols = 1 + Int(rng.next() % 6)
            let costs = (0..<rows * cols).map { _ in Float(rng.uniform(-100, -50)) }
            check(costs, rows, cols, tolerance: 1e-9)
        }
    }

    func testNonFiniteCostsAreForbiddenOrPreferred() throws {
        // NaN / +inf are used only when unavoidable.
        let n = Float.nan, i = Float.infinity
        XCTAssertEqual(Hungarian.solve(costs: [n, 5, 1, 9], rows: 2, cols: 2), [1, 0])
        XCTAssertEqual(Hungarian.solve(costs: [i, 5, 1, i], rows: 2, cols: 2), [1, 0])
        // Row 0 has only forbidden entries; with cols >= rows it still gets a column.
        let a = Hungarian.solve(costs: [n, n, n, 1, 2, 3], rows: 2, cols: 3)
        XCTAssertEqual(a[1], 0)
        XCTAssertTrue(ReferenceAssignment.isValid(a, rows: 2, cols: 3))
        // With rows > cols an all-NaN row is the one left out.
        XCTAssertEqual(Hungarian.solve(costs: [n, n, 1, 2, 2, 1], rows: 3, cols: 2), [-1, 0, 1])
        // -inf is preferred over any finite pair.
        XCTAssertEqual(Hungarian.solve(costs: [0, -i, 0, -100], rows: 2, cols: 2), [1, 0])
        // Everything non-finite: still a valid assignment.
        XCTAssertTrue(ReferenceAssignment.isValid(Hungarian.solve(costs: [n, i, -i, n], rows: 2, cols: 2), rows: 2, cols: 2))

        // checkedSolve rejects them with a MapError naming the entry.
        XCTAssertThrowsError(try Hungarian.checkedSolve(costs: [0, 1, n, 2], rows: 2, cols: 2)) { e in
            guard let e = e as? MapError else { return XCTFail("wrong error \(e)") }
            XCTAssertEqual(e.kind, .badArgument)
            XCTAssertTrue(e.message.contains("row 1, column 0"), e.message)
        }
        XCTAssertThrowsError(try Hungarian.checkedSolve(costs: [0, 1, 2], rows: 2, cols: 2))
        XCTAssertEqual(try Hungarian.checkedSolve(costs: [4, 1, 3, 2, 0, 5, 3, 2, 2], rows: 3, cols: 3), [1, 0, 2])
    }
}
