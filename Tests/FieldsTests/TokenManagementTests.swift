import Fields
import Foundation
import XCTest

/// Dynamic token adjustment rules (PanopticRecon++ Sec. IV-C) on small constructed cases; expected answers are
/// worked out by hand in the comments.
final class TokenManagementTests: XCTestCase {
    // MARK: helpers

    /// P x N scores: token t's mask is the union of `masks[t]` (point index ranges). In-mask points alternate between
    /// exactly the threshold (0.5, which counts) and 0.9; the others score 0.1.
    static func scores(points P: Int, masks: [[Range<Int>]]) -> [Float] {
        let n = masks.count
        var s = [Float](repeating: 0.1, count: P * n)
        for (t, ranges) in masks.enumerated() {
            for r in ranges { for p in r { s[p * n + t] = p % 2 == 0 ? 0.5 : 0.9 } }
        }
        return s
    }

    /// Usage with `observations` frames recorded, token t assigned in the first `assigned[t]` of them.
    static func usage(observations: Int, assigned: [Int]) -> TokenUsage {
        let n = assigned.count
        var u = TokenUsage(tokens: n)
        for f in 0..<observations {
            // One mask per token (L = N); mask t prefers token t and is assigned to it while f < assigned[t].
            var costs = [Float](repeating: 1, count: n * n)
            for t in 0..<n { costs[t * n + t] = 0 }
            u.record(costs: costs, masks: n, assignment: (0..<n).map { f < assigned[$0] ? $0 : -1 })
        }
        return u
    }

    // MARK: config

    func testConfigValidation() throws {
        try TokenManagementConfig().validate()
        var c = TokenManagementConfig(); c.minAssignmentRate = 1.5
        XCTAssertThrowsError(try c.validate())
        c = TokenManagementConfig(); c.maskThreshold = .nan
        XCTAssertThrowsError(try c.validate())
        c = TokenManagementConfig(); c.iomThreshold = 0
        XCTAssertThrowsError(try c.validate())
        c = TokenManagementConfig(); c.splitPatience = 0
        XCTAssertThrowsError(try c.validate())
        c = TokenManagementConfig(); c.maxTokens = 0
        XCTAssertThrowsError(try c.validate())
    }

    // MARK: useless

    func testRecordCountsObservationsAndAssignments() {
        var u = TokenUsage(tokens: 3)
        // 2 masks x 3 tokens; mask 0 -> token 1, mask 1 unassigned.
        u.record(costs: [0.5, 0.1, 0.9, 0.2, 0.8, 0.3], masks: 2, assignment: [1, -1])
        XCTAssertEqual(u.observations, [1, 1, 1])
        XCTAssertEqual(u.assignments, [0, 1, 0])
        XCTAssertEqual(u.splitSignals, [0, 0, 0])
        // A frame without thing masks has no matching: nothing recorded.
        u.record(costs: [], masks: 0, assignment: [])
        XCTAssertEqual(u.observations, [1, 1, 1])
    }

    func testUselessTokens() {
        let config = TokenManagementConfig()   // 40 observations, 5 %
        // 40 observations: 0/40 and 1/40 (2.5 %) are < 5 % -> useless; 2/40 is exactly 5 % (not below) and 3/40 is
        // 7.5 % -> kept; 40/40 kept.
        let u = Self.usage(observations: 40, assigned: [0, 1, 2, 3, 40])
        XCTAssertEqual(u.observations, [40, 40, 40, 40, 40])
        XCTAssertEqual(u.assignments, [0, 1, 2, 3, 40])
        XCTAssertEqual(TokenManagement.useless(u, config: config), [0, 1])
    }

    func testUselessNotJudgedBeforeMinObservations() {
        // 10 (and 39) observations < 40: never judged, even when never assigned.
        let config = TokenManagementConfig()
        XCTAssertEqual(TokenManagement.useless(Self.usage(observations: 10, assigned: [2, 0]), config: config), [])
        XCTAssertEqual(TokenManagement.useless(Self.usage(observations: 39, assigned: [0]), config: config), [])
    }

    // MARK: duplicates

    func testNestedDuplicateRemovesSmaller() {
        // Token 0: points 0..<50 (50). Token 1: 30..<55 (25), of which 30..<50 (20) inside token 0: IoM = 20/25 = 0.8
        // >= 0.7 -> removed. Token 2: 60..<90 (30), disjoint -> kept.
        let s = Self.scores(points: 100, masks: [[0..<50], [30..<55], [60..<90]])
        XCTAssertEqual(TokenManagement.duplicates(scores: s, points: 100, tokens: 3, config: .init()), [1])
    }

    func testPartialOverlapKeepsBoth() {
        // Token 0: 0..<50 (50). Token 1: 41..<71 (30), overlap 41..<50 (9): IoM = 9/30 = 0.3 < 0.7 -> both kept.
        let s = Self.scores(points: 100, masks: [[0..<50], [41..<71]])
        XCTAssertEqual(TokenManagement.duplicates(scores: s, points: 100, tokens: 2, config: .init()), [])
    }

    func testThreeNestedOnlyLargestSurvives() {
        // Sizes 30, 60, 100 (token 2 largest); 0 ⊂ 1 ⊂ 2. Order 2, 1, 0: token 1 inside kept 2 (IoM 1) -> removed;
        // token 0 inside kept 2 (IoM 1) -> removed.
        let s = Self.scores(points: 100, masks: [[0..<30], [0..<60], [0..<100]])
        XCTAssertEqual(TokenManagement.duplicates(scores: s, points: 100, tokens: 3, config: .init()), [0, 1])
    }

    func testTinyMasksIgnoredAndTiesKeepLowerIndex() {
        // Token 1: 10 points inside token 0, but 10 < minMaskPoints (20) -> not judged.
        let s = Self.scores(points: 100, masks: [[0..<50], [0..<10]])
        XCTAssertEqual(TokenManagement.duplicates(scores: s, points: 100, tokens: 2, config: .init()), [])
        var c = TokenManagementConfig(); c.minMaskPoints = 5
        XCTAssertEqual(TokenManagement.duplicates(scores: s, points: 100, tokens: 2, config: c), [1])
        // Two identical masks of 30 points: equal size, the lower index comes first and is kept.
        let same = Self.scores(points: 40, masks: [[5..<35], [5..<35]])
        XCTAssertEqual(TokenManagement.duplicates(scores: same, points: 40, tokens: 2, config: .init()), [1])
    }

    // MARK: split

    /// 3 masks x 4 tokens: masks 0 and 1 both have argmin token 2 (0.1, 0.2); mask 1 was assigned to token 3.
    /// Mask 2 prefers token 0 alone. So only token 2 gets a split signal.
    static let splitCosts: [Float] = [0.9, 0.8, 0.1, 0.7,
                                      0.9, 0.8, 0.2, 0.3,
                                      0.1, 0.9, 0.9, 0.9]
    static let splitAssignment = [2, 3, 0]

    func testSplitCloneAfterPatience() {
        let config = TokenManagementConfig()   // patience 10
        var u = TokenUsage(tokens: 4)
        for _ in 0..<config.splitPatience { u.record(costs: Self.splitCosts, masks: 3, assignment: Self.splitAssignment) }
        XCTAssertEqual(u.splitSignals, [0, 0, 10, 0])
        XCTAssertEqual(TokenManagement.splits(u, removing: [], config: config), [2])
        // Not when the token is being removed.
        XCTAssertEqual(TokenManagement.splits(u, removing: [2], config: config), [])
    }

    func testSplitSignalNotReached() {
        let config = TokenManagementConfig()
        var u = TokenUsage(tokens: 4)
        for _ in 0..<(config.splitPatience - 1) {
            u.record(costs: Self.splitCosts, masks: 3, assignment: Self.splitAssignment)
        }
        XCTAssertEqual(u.splitSignals, [0, 0, 9, 0])
        XCTAssertEqual(TokenManagement.splits(u, removing: [], config: config), [])
        // One mask per token argmin (ties -> first): [0.1, 0.1, ...] prefers token 0, the other mask token 1: no signal.
        var v = TokenUsage(tokens: 3)
        v.record(costs: [0.1, 0.1, 0.5, 0.9, 0.2, 0.9], masks: 2, assignment: [1, 2])
        XCTAssertEqual(v.splitSignals, [0, 0, 0])
    }

    func testSplitRespectsMaxTokens() throws {
        // Tokens 1 and 2 ready to split, 4 tokens.
        let u = try TokenUsage(observations: [5, 5, 5, 5], assignments: [5, 5, 5, 5], splitSignals: [0, 10, 12, 3])
        var c = TokenManagementConfig()
        c.maxTokens = 5   // room for one clone: lowest index first
        XCTAssertEqual(TokenManagement.splits(u, removing: [], config: c), [1])
        XCTAssertEqual(TokenManagement.splits(u, removing: [0], config: c), [1, 2])   // 3 survivors + 2 = 5
        c.maxTokens = 4
        XCTAssertEqual(TokenManagement.splits(u, removing: [], config: c), [])
    }

    // MARK: plan

    func testPlanApplication() throws {
        let plan = TokenPlan(remove: [1, 3], clone: [0, 4])
        XCTAssertFalse(plan.isEmpty)
        XCTAssertTrue(TokenPlan().isEmpty)
        XCTAssertEqual(plan.sourceIndices(oldCount: 5), [0, 2, 4, 0, 4])
        // 5 rows of width 2: row t = [10t, 10t + 1].
        let rows: [Float] = (0..<5).flatMap { [Float(10 * $0), Float(10 * $0 + 1)] }
        XCTAssertEqual(plan.applied(to: rows, width: 2), [0, 1, 20, 21, 40, 41, 0, 1, 40, 41])

        var u = try TokenUsage(observations: [10, 11, 12, 13, 14], assignments: [1, 2, 3, 4, 5],
                               splitSignals: [7, 0, 8, 0, 9])
        u.apply(plan)
        // Survivors 0, 2, 4 keep their counters (split reset for sources 0 and 4); clones start at zero.
        XCTAssertEqual(u.observations, [10, 12, 14, 0, 0])
        XCTAssertEqual(u.assignments, [1, 3, 5, 0, 0])
        XCTAssertEqual(u.splitSignals, [0, 8, 0, 0, 0])
    }

    func testWholePlan() throws {
        // 4 tokens: token 3 useless (0/40), token 1 ready to split, token 2's mask inside token 0's (IoM 1).
        let u = try TokenUsage(observations: [40, 40, 40, 40], assignments: [20, 20, 20, 0],
                               splitSignals: [0, 10, 0, 0])
        let s = Self.scores(points: 100, masks: [[0..<50], [60..<90], [10..<40], [90..<100]])
        let plan = TokenManagement.plan(usage: u, scores: s, points: 100, tokens: 4, config: .init())
        XCTAssertEqual(plan, TokenPlan(remove: [2, 3], clone: [1]))
        XCTAssertEqual(plan.sourceIndices(oldCount: 4), [0, 1, 1])
    }

    func testUsageCodableRoundTripAndCorruption() throws {
        var u = TokenUsage(tokens: 2)
        u.record(costs: [0.2, 0.4], masks: 1, assignment: [0])
        let data = try JSONEncoder().encode(u)
        XCTAssertEqual(try JSONDecoder().decode(TokenUsage.self, from: data), u)
        let bad = Data(#"{"observations":[1,1],"assignments":[1],"splitSignals":[0,0]}"#.utf8)
        XCTAssertThrowsError(try JSONDecoder().decode(TokenUsage.self, from: bad))
    }
}
