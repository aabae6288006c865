import Foundation

// Dynamic token adjustment (PanopticRecon++ Sec. IV-C): prune useless tokens, prune duplicate tokens by 3D IoM
// (Eq. 9), split (clone) a token that two masks of one frame keep choosing. Pure value-type rules: the trainer keeps a
// `TokenUsage`, asks `TokenManagement.plan` for a `TokenPlan` and applies it to its own per-token parameters.

public struct TokenManagementConfig: Sendable, Codable, Equatable {
    /// Pruning, useless tokens: a token is "useless" when, after it has been observed in at least `minObservations`
    /// frame matchings, it was assigned in fewer than `minAssignmentRate` of them.
    public var minObservations = 40
    public var minAssignmentRate: Float = 0.05
    /// Per-token binary 3D mask: sample points whose score (S*G, in [0,1]) is >= maskThreshold.
    public var maskThreshold: Float = 0.5
    /// Pruning, duplicate tokens: tokens i, j are duplicates when IoM = |M_i ∩ M_j| / |M_smaller| >= iomThreshold
    /// (paper Eq. 9; keep the larger mask).
    public var iomThreshold: Float = 0.7
    /// Ignore 3D masks with fewer points than this in the duplicate test (too small to judge).
    public var minMaskPoints = 20
    /// Split: clone a token once the split signal has been seen this many times (without being reset).
    public var splitPatience = 10
    /// Upper bound on tokens (no clone beyond it).
    public var maxTokens = 64

    public init() {}

    /// Throws `ConfigError` for values that make no sense (non-positive counts, rates or thresholds outside [0, 1]).
    public func validate() throws {
        guard minObservations >= 1 else {
            throw ConfigError("token management: minObservations must be >= 1 (got \(minObservations))")
        }
        guard minAssignmentRate.isFinite, (0...1).contains(minAssignmentRate) else {
            throw ConfigError("token management: minAssignmentRate must be in [0, 1] (got \(minAssignmentRate))")
        }
        guard maskThreshold.isFinite, maskThreshold > 0, maskThreshold <= 1 else {
            throw ConfigError("token management: maskThreshold must be in (0, 1] (got \(maskThreshold))")
        }
        guard iomThreshold.isFinite, iomThreshold > 0, iomThreshold <= 1 else {
            throw ConfigError("token management: iomThreshold must be in (0, 1] (got \(iomThreshold))")
        }
        guard minMaskPoints >= 1 else {
            throw ConfigError("token management: minMaskPoints must be >= 1 (got \(minMaskPoints))")
        }
        guard splitPatience >= 1 else {
            throw ConfigError("token management: splitPatience must be >= 1 (got \(splitPatience))")
        }
        guard maxTokens >= 1 else {
            throw ConfigError("token management: maxTokens must be >= 1 (got \(maxTokens))")
        }
    }
}

/// Counters per token, kept by the trainer across steps; reorder/remove with the plan.
public struct TokenUsage: Sendable, Codable, Equatable {
    /// Frame matchings in which the token took part (the token existed).
    public private(set) var observations: [Int]
    /// Frame matchings in which the token was assigned to a mask.
    public private(set) var assignments: [Int]
    /// Times the paper's split signal was seen for the token since it was created or last cloned.
    public private(set) var splitSignals: [Int]

    /// Fresh counters (all zero) for `tokens` tokens.
    public init(tokens: Int) {
        precondition(tokens >= 0, "token count must be >= 0")
        observations = Array(repeating: 0, count: tokens)
        assignments = observations
        splitSignals = observations
    }

    /// Restores counters (e.g. from a session); throws `ConfigError` when the arrays differ in length, a count is
    /// negative or a token was assigned more often than observed.
    public init(observations: [Int], assignments: [Int], splitSignals: [Int]) throws {
        guard observations.count == assignments.count, observations.count == splitSignals.count else {
            throw ConfigError("token usage: counter arrays differ in length (\(observations.count), "
                + "\(assignments.count), \(splitSignals.count))")
        }
        for i in observations.indices {
            guard observations[i] >= 0, assignments[i] >= 0, splitSignals[i] >= 0,
                  assignments[i] <= observations[i] else {
                throw ConfigError("token usage: token \(i) has inconsistent counters (observed \(observations[i]), "
                    + "assigned \(assignments[i]), split signals \(splitSignals[i]))")
            }
        }
        self.observations = observations
        self.assignments = assignments
        self.splitSignals = splitSignals
    }

    private enum CodingKeys: String, CodingKey { case observations, assignments, splitSignals }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(observations: c.decode([Int].self, forKey: .observations),
                          assignments: c.decode([Int].self, forKey: .assignments),
                          splitSignals: c.decode([Int].self, forKey: .splitSignals))
        } catch let e as ConfigError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }

    public var count: Int { observations.count }

    /// Records one frame's matching. `costs` is L x N row-major (mask l, token n; lower = better), `assignment[l]`
    /// the token matched to mask l or -1. Every token's observation count +1; each assigned token's assignment
    /// count +1.
    ///
    /// Split signal (paper Sec. IV-C, "Split"): for each token i, if two or more masks have their minimum-cost token
    /// == i (argmin over the row, first on ties, NaN costs skipped) and at least one of those masks was assigned to a
    /// different token (or left unassigned), token i's split counter += 1. The counter is cumulative: it is reset
    /// only when the token is cloned (`apply`).
    ///
    /// A frame without thing masks (L == 0) has no matching and records nothing. Shapes must agree
    /// (`costs.count == L * count`, `assignment.count == L`, entries in -1..<count); violations are programming
    /// errors and trap.
    public mutating func record(costs: [Float], masks L: Int, assignment: [Int]) {
        let n = count
        precondition(L >= 0 && costs.count == L * n, "costs must be L x N (L = \(L), N = \(n), got \(costs.count))")
        precondition(assignment.count == L, "assignment must have one entry per mask")
        guard L > 0 else { return }
        var assigned = [Bool](repeating: false, count: n)
        for a in assignment {
            precondition(a >= -1 && a < n, "assignment entry \(a) out of range -1..<\(n)")
            if a >= 0 { assigned[a] = true }
        }
        // Per token: how many masks prefer it, and whether one of those masks went elsewhere.
        var preferredBy = [Int](repeating: 0, count: n)
        var lostOne = [Bool](repeating: false, count: n)
        for l in 0..<L {
            var best = -1
            var bestCost = Float.infinity
            for t in 0..<n {
                let c = costs[l * n + t]
                if c.isNaN { continue }
                if best < 0 || c < bestCost { best = t; bestCost = c }
            }
            guard best >= 0 else { continue }
            preferredBy[best] += 1
            if assignment[l] != best { lostOne[best] = true }
        }
        for t in 0..<n {
            observations[t] += 1
            if assigned[t] { assignments[t] += 1 }
            if preferredBy[t] >= 2 && lostOne[t] { splitSignals[t] += 1 }
        }
    }

    /// Applies a plan: drops the removed tokens' counters and appends fresh (zero) counters for clones; a surviving
    /// clone source restarts its split counter at 0. The new order is `plan.sourceIndices(oldCount: count)`.
    public mutating func apply(_ plan: TokenPlan) {
        let sources = plan.sourceIndices(oldCount: count)
        let survivors = sources.count - plan.clone.count
        var obs = [Int](), asg = [Int](), spl = [Int]()
        obs.reserveCapacity(sources.count); asg.reserveCapacity(sources.count); spl.reserveCapacity(sources.count)
        let cloned = Set(plan.clone)
        for (k, s) in sources.enumerated() {
            if k < survivors {
                obs.append(observations[s])
                asg.append(assignments[s])
                spl.append(cloned.contains(s) ? 0 : splitSignals[s])
            } else {
                obs.append(0); asg.append(0); spl.append(0)
            }
        }
        observations = obs
        assignments = asg
        splitSignals = spl
    }
}

/// One management round's changes to the token set, expressed in old token indices.
public struct TokenPlan: Sendable, Equatable {
    /// Token indices to remove (ascending, unique).
    public var remove: [Int]
    /// Token indices to clone (ascending); each clone is appended after the surviving tokens, in this order.
    public var clone: [Int]

    public init(remove: [Int] = [], clone: [Int] = []) {
        self.remove = remove
        self.clone = clone
    }

    public var isEmpty: Bool { remove.isEmpty && clone.isEmpty }

    /// For each new token index after applying the plan: the old index it comes from (a clone maps to its source).
    /// Survivors keep their relative order; clones follow. Indices outside 0..<oldCount trap.
    public func sourceIndices(oldCount: Int) -> [Int] {
        precondition(remove.allSatisfy { $0 >= 0 && $0 < oldCount }, "remove index out of range 0..<\(oldCount)")
        precondition(clone.allSatisfy { $0 >= 0 && $0 < oldCount }, "clone index out of range 0..<\(oldCount)")
        let removed = Set(remove)
        var out = (0..<oldCount).filter { !removed.contains($0) }
        out.append(contentsOf: clone)
        return out
    }
}

extension TokenPlan {
    /// Rows of `width` floats per token (N x width) rearranged by `sourceIndices`: survivors in order, then copies
    /// for clones. `rows.count` must be a multiple of `width` (> 0).
    public func applied(to rows: [Float], width: Int) -> [Float] {
        precondition(width > 0 && rows.count % width == 0, "rows must be N x width (width \(width), \(rows.count) floats)")
        let sources = sourceIndices(oldCount: rows.count / width)
        var out = [Float]()
        out.reserveCapacity(sources.count * width)
        for s in sources { out.append(contentsOf: rows[(s * width)..<((s + 1) * width)]) }
        return out
    }
}

/// The paper's token adjustment rules (Sec. IV-C), each a pure function of counters or scores.
public enum TokenManagement {
    /// Pruning, useless tokens ("never assigned or assigned only infrequently"): tokens observed in at least
    /// `minObservations` matchings and assigned in a share < `minAssignmentRate` of them. Ascending.
    public static func useless(_ usage: TokenUsage, config: TokenManagementConfig) -> [Int] {
        (0..<usage.count).filter { t in
            let o = usage.observations[t]
            return o >= config.minObservations && Float(usage.assignments[t]) / Float(o) < config.minAssignmentRate
        }
    }

    /// Pruning, duplicate tokens by 3D IoM (paper Eq. 9). `scores` is P x N row-major (P sample points on the
    /// observed surface, N tokens); masks M_i = {p : score >= maskThreshold}. Greedy, as the paper keeps "only the
    /// token with the largest mask": tokens sorted by mask size descending (ties: lower index first); a token is
    /// removed when its mask (of >= minMaskPoints points) lies inside a larger kept token's mask with
    /// IoM = |M_i ∩ M_j| / |M_i| >= iomThreshold. Returns removed indices ascending.
    public static func duplicates(scores: [Float], points P: Int, tokens N: Int,
                                  config: TokenManagementConfig) -> [Int] {
        precondition(P >= 0 && N >= 0 && scores.count == P * N, "scores must be P x N (P = \(P), N = \(N))")
        guard N >= 2, P > 0 else { return [] }
        // One bitset per token over the P points.
        let words = (P + 63) / 64
        var bits = [UInt64](repeating: 0, count: N * words)
        var size = [Int](repeating: 0, count: N)
        for p in 0..<P {
            let w = p >> 6, bit = UInt64(1) << UInt64(p & 63)
            for t in 0..<N where scores[p * N + t] >= config.maskThreshold {
                bits[t * words + w] |= bit
                size[t] += 1
            }
        }
        let order = (0..<N).sorted { size[$0] != size[$1] ? size[$0] > size[$1] : $0 < $1 }
        var kept = [Int]()
        var removed = [Int]()
        for t in order {
            let m = size[t]
            guard m > 0, m >= config.minMaskPoints else { kept.append(t); continue }
            var duplicate = false
            for k in kept {
                var inter = 0
                for w in 0..<words { inter += (bits[t * words + w] & bits[k * words + w]).nonzeroBitCount }
                // IoM (Eq. 9), over the smaller (this) mask.
                if Float(inter) / Float(m) >= config.iomThreshold { duplicate = true; break }
            }
            if duplicate { removed.append(t) } else { kept.append(t) }
        }
        return removed.sorted()
    }

    /// Split: tokens to clone, i.e. those whose split counter reached `splitPatience`, that are not in `removing`,
    /// while the token count after the round stays <= maxTokens (lowest index first). Ascending.
    public static func splits(_ usage: TokenUsage, removing: [Int], config: TokenManagementConfig) -> [Int] {
        let removed = Set(removing.filter { $0 >= 0 && $0 < usage.count })
        var budget = config.maxTokens - (usage.count - removed.count)
        var out = [Int]()
        for t in 0..<usage.count where budget > 0 {
            if usage.splitSignals[t] >= config.splitPatience && !removed.contains(t) {
                out.append(t)
                budget -= 1
            }
        }
        return out
    }

    /// The whole plan for one management round: useless ∪ duplicates removed, splits cloned. `usage.count` must be N.
    public static func plan(usage: TokenUsage, scores: [Float], points P: Int, tokens N: Int,
                            config: TokenManagementConfig) -> TokenPlan {
        precondition(usage.count == N, "usage has \(usage.count) tokens, scores \(N)")
        let remove = Set(useless(usage, config: config))
            .union(duplicates(scores: scores, points: P, tokens: N, config: config)).sorted()
        return TokenPlan(remove: remove, clone: splits(usage, removing: remove, config: config))
    }
}
