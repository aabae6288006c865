import Dispatch
import MapCore

/// Throughput of the hash grid against the machine's limit for its memory pattern: a plain random-gather loop over a
/// table of the same size doing the same number of gathers per point (levels * 8 random reads of featuresPerLevel
/// floats, summed). Default config over a 5 x 4 x 3 m box, points uniform in the box (no spatial coherence, the
/// worst case for caches; real ray samples are more coherent).
public enum HashGridBenchmark {
    public static let benchmarkConfig = HashGridConfig(boundsMin: SIMD3(0, 0, 0), boundsMax: SIMD3(5, 4, 3))

    public struct Result: Sendable {
        public var points: Int
        public var threads: Int
        /// Forward alone, backward alone (with the touched bookkeeping and its reset), and both per step.
        public var forwardPointsPerSecond: Double
        public var backwardPointsPerSecond: Double
        public var forwardBackwardPointsPerSecond: Double
        /// The brief's baseline: per point, per level, 8 independent random reads of F floats, summed (point-major).
        public var gatherPointsPerSecond: Double
        /// The same reads level by level (all points at level 0, then level 1, ...), the order the grid itself uses:
        /// a stricter baseline, because each level's table then stays in the last-level cache.
        public var levelMajorGatherPointsPerSecond: Double
        /// Figure of merit: forward + backward against one bare gather pass (1 = same cost).
        public var ratio: Double { forwardBackwardPointsPerSecond / gatherPointsPerSecond }
        public var levelMajorRatio: Double { forwardBackwardPointsPerSecond / levelMajorGatherPointsPerSecond }
    }

    /// `forwardBackwardPointsPerSecond`: points per second through forward + backward (including the touched-set
    /// bookkeeping and its reset, as in a training step). `gatherPointsPerSecond`: points per second of the gather loop.
    public static func run(points: Int, threads: Int, seconds: Double) -> (forwardBackwardPointsPerSecond: Double,
                                                                           gatherPointsPerSecond: Double) {
        let r = runDetailed(points: points, threads: threads, seconds: seconds)
        return (r.forwardBackwardPointsPerSecond, r.gatherPointsPerSecond)
    }

    /// All figures. The measurements alternate in `rounds` rounds and each keeps its best round, so that a burst of
    /// other load on the machine does not decide the ratio. `seconds` is the budget per measurement.
    public static func runDetailed(points: Int, threads: Int, seconds: Double, rounds: Int = 4) -> Result {
        let grid = try! HashGrid(config: benchmarkConfig) // the constant config is valid
        let n = max(1, points)
        var rng = SeededRNG(seed: 2024)
        let lo = benchmarkConfig.boundsMin, hi = benchmarkConfig.boundsMax
        var positions = [Float](repeating: 0, count: 3 * n)
        for i in 0..<n {
            for a in 0..<3 { positions[3 * i + a] = Float(rng.uniform(Double(lo[a]), Double(hi[a]))) }
        }
        let params = grid.initialParameters(seed: 1)
        var grad = [Float](repeating: 0, count: grid.parameterCount)
        var output = [Float](repeating: 0, count: n * grid.outputWidth)
        let gradOutput = (0..<(n * grid.outputWidth)).map { _ in Float(rng.uniform(-1, 1)) }
        var touched = HashGridTouched(grid: grid)
        let f = grid.config.featuresPerLevel
        let levelOffsets = grid.levels.map { UInt64($0.entryOffset) }
        let levelCounts = grid.levels.map { UInt64($0.entryCount) }
        var sums = [Float](repeating: 0, count: n)

        var forwardTime = 0.0, backwardTime = 0.0
        func step() {
            params.withUnsafeBufferPointer { p in
                positions.withUnsafeBufferPointer { x in
                    let t0 = now()
                    output.withUnsafeMutableBufferPointer { o in
                        grid.forward(params: p.baseAddress!, positions: x.baseAddress!, count: n, output: o.baseAddress!,
                                     threads: threads)
                    }
                    let t1 = now()
                    gradOutput.withUnsafeBufferPointer { go in
                        grad.withUnsafeMutableBufferPointer { g in
                            grid.backward(positions: x.baseAddress!, count: n, gradOutput: go.baseAddress!,
                                          gradParams: g.baseAddress!, touched: &touched, threads: threads)
                        }
                    }
                    touched.reset()
                    let t2 = now()
                    forwardTime += t1 - t0; backwardTime += t2 - t1
                }
            }
        }
        // Per point and level, 8 reads of F floats at independent pseudo-random entries of the level (a counter
        // hash, so that the reads do not wait on each other), summed per point.
        @inline(__always) func entry(_ key: inout UInt64, _ l: Int) -> Int {
            key &+= 0xD1B5_4A32_D192_ED03
            let h = (key ^ (key >> 29)) &* 0xBF58_476D_1CE4_E5B9
            return Int(levelOffsets[l] &+ (((h >> 32) &* levelCounts[l]) >> 32))
        }
        func gather(levelMajor: Bool) {
            params.withUnsafeBufferPointer { p in
                sums.withUnsafeMutableBufferPointer { s in
                    let table = p.baseAddress!, sink = s.baseAddress!
                    Parallel.forEachChunk(count: n, threads: threads, alignment: 16) { _, range in
                        if levelMajor {
                            for i in range { sink[i] = 0 }
                            for l in 0..<levelOffsets.count {
                                for i in range {
                                    var key = UInt64(i &* 16 &+ l) &* 0x9E37_79B9_7F4A_7C15, acc: Float = 0
                                    for _ in 0..<8 {
                                        let row = table + entry(&key, l) &* f
                                        for k in 0..<f { acc += row[k] }
                                    }
                                    sink[i] += acc
                                }
                            }
                        } else {
                            for i in range {
                                var acc: Float = 0
                                for l in 0..<levelOffsets.count {
                                    var key = UInt64(i &* 16 &+ l) &* 0x9E37_79B9_7F4A_7C15
                                    for _ in 0..<8 {
                                        let row = table + entry(&key, l) &* f
                                        for k in 0..<f { acc += row[k] }
                                    }
                                }
                                sink[i] = acc
                            }
                        }
                    }
                }
            }
        }

        step(); gather(levelMajor: false); gather(levelMajor: true) // warm-up: page faults, caches
        var best = [0.0, 0.0, 0.0, 0.0, 0.0]
        let slice = max(seconds / Double(max(1, rounds)), 1e-3)
        for _ in 0..<max(1, rounds) {
            forwardTime = 0; backwardTime = 0
            let steps = measure(seconds: slice, step)
            best[0] = max(best[0], steps)
            best[1] = max(best[1], steps * (forwardTime + backwardTime) / max(forwardTime, 1e-12))
            best[2] = max(best[2], steps * (forwardTime + backwardTime) / max(backwardTime, 1e-12))
            best[3] = max(best[3], measure(seconds: slice) { gather(levelMajor: false) })
            best[4] = max(best[4], measure(seconds: slice) { gather(levelMajor: true) })
        }
        if sums.reduce(0, +).isNaN { print("") } // keeps the gathers observable
        let pts = Double(n)
        return Result(points: n, threads: threads, forwardPointsPerSecond: pts * best[1],
                      backwardPointsPerSecond: pts * best[2], forwardBackwardPointsPerSecond: pts * best[0],
                      gatherPointsPerSecond: pts * best[3], levelMajorGatherPointsPerSecond: pts * best[4])
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Runs per second of `body` over at least `seconds` (at least one run).
    static func measure(seconds: Double, _ body: () -> Void) -> Double {
        var runs = 0
        let start = now()
        var elapsed = 0.0
        repeat {
            body(); runs += 1
            elapsed = now() - start
        } while elapsed < seconds
        return Double(runs) / elapsed
    }
}
