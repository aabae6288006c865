import Foundation
import Kernels
import MapCore
import TestSupport
import XCTest

final class HashGridTests: XCTestCase {
    /// 4 levels, N = 4, 8, 16, 32 over a 2.5 x 1.5 x 1 m box, T = 2^10: levels 0-1 dense (60 and 270 corners),
    /// levels 2-3 hashed (1496 and more corners > 1024).
    static func mixed(features: Int = 2) -> HashGridConfig {
        HashGridConfig(boundsMin: SIMD3(-1, -0.5, 0), boundsMax: SIMD3(1.5, 1, 1), levels: 4, featuresPerLevel: features,
                       log2TableSize: 10, baseResolution: 4, finestResolution: 32, initRange: 0.5)
    }

    // MARK: helpers

    func forward(_ grid: HashGrid, _ params: [Float], _ positions: [Float], threads: Int = 1) -> [Float] {
        let n = positions.count / 3
        var out = [Float](repeating: .nan, count: n * grid.outputWidth)
        params.withUnsafeBufferPointer { p in
            positions.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { o in
                    grid.forward(params: p.baseAddress!, positions: x.baseAddress!, count: n, output: o.baseAddress!,
                                 threads: threads)
                }
            }
        }
        return out
    }

    func backward(_ grid: HashGrid, _ positions: [Float], _ gradOutput: [Float], into grad: inout [Float],
                  touched: inout HashGridTouched, threads: Int = 1) {
        positions.withUnsafeBufferPointer { x in
            gradOutput.withUnsafeBufferPointer { go in
                grad.withUnsafeMutableBufferPointer { g in
                    grid.backward(positions: x.baseAddress!, count: positions.count / 3, gradOutput: go.baseAddress!,
                                  gradParams: g.baseAddress!, touched: &touched, threads: threads)
                }
            }
        }
    }

    /// Random points: inside the box, outside it (clamped), on the box faces and corners, and on cell boundaries of
    /// random levels. `boundaries: false` leaves out the interior cell boundaries (where Float and Double may pick
    /// neighbouring cells, with an exactly-zero weight on one side only).
    func points(_ grid: HashGrid, count: Int, rng: inout SeededRNG, boundaries: Bool = true) -> [Float] {
        let lo = grid.config.boundsMin, hi = grid.config.boundsMax
        var out: [Float] = []
        for i in 0..<count {
            var p = SIMD3<Float>()
            for a in 0..<3 { p[a] = Float(rng.uniform(Double(lo[a]), Double(hi[a]))) }
            switch i % 10 {
            case 0, 1: // outside on some axes
                for a in 0..<3 where rng.next() % 2 == 0 {
                    let e = Double(hi[a] - lo[a])
                    p[a] = rng.next() % 2 == 0 ? lo[a] - Float(rng.uniform(0, e)) : hi[a] + Float(rng.uniform(0, e))
                }
            case 2: // on faces / corners of the box
                for a in 0..<3 where rng.next() % 3 != 0 { p[a] = rng.next() % 2 == 0 ? lo[a] : hi[a] }
            case 3, 4: // on cell boundaries of a random level
                guard boundaries else { break }
                let lv = grid.levels[Int(rng.next() % UInt64(grid.levels.count))]
                for a in 0..<3 where rng.next() % 3 != 0 {
                    let k = Double(rng.next() % UInt64(lv.cells[a] + 1))
                    p[a] = min(hi[a], Float(Double(lo[a]) + k * lv.cellSize))
                }
            default: break
            }
            out += [p.x, p.y, p.z]
        }
        return out
    }

    func randoms(_ n: Int, _ rng: inout SeededRNG, range: Double = 1) -> [Float] {
        (0..<n).map { _ in Float(rng.uniform(-range, range)) }
    }

    // MARK: layout

    func testLayoutMatchesReferenceAndDocumentation() throws {
        for config in [Self.mixed(), Self.mixed(features: 3)] {
            let grid = try HashGrid(config: config)
            let ref = ReferenceHashGrid(config: config)
            XCTAssertEqual(grid.levels.map(\.resolution), [4, 8, 16, 32])
            XCTAssertEqual(grid.levels.map(\.isDense), [true, true, false, false])
            XCTAssertEqual(grid.levels.map(\.entryCount), [60, 270, 1024, 1024])
            XCTAssertEqual(grid.levels[1].cells, SIMD3(8, 5, 4))
            XCTAssertEqual(grid.levels.map(\.resolution), ref.levels.map(\.resolution))
            XCTAssertEqual(grid.levels.map(\.isDense), ref.levels.map(\.isDense))
            XCTAssertEqual(grid.levels.map(\.entryOffset), ref.levels.map(\.entryOffset))
            XCTAssertEqual(grid.levels.map(\.entryCount), ref.levels.map(\.entryCount))
            XCTAssertEqual(grid.levels.map { [Int($0.cells.x), Int($0.cells.y), Int($0.cells.z)] }, ref.levels.map(\.cells))
            var offset = 0
            for lv in grid.levels { XCTAssertEqual(lv.entryOffset, offset); offset += lv.entryCount }
            XCTAssertEqual(grid.entryCount, offset)
            XCTAssertEqual(grid.parameterCount, offset * config.featuresPerLevel)
            XCTAssertEqual(grid.outputWidth, 4 * config.featuresPerLevel)
        }
    }

    func testDefaultConfigOverARoom() throws {
        let grid = try HashGrid(config: HashGridConfig(boundsMin: SIMD3(0, 0, 0), boundsMax: SIMD3(5, 4, 3)))
        XCTAssertEqual(grid.levels.count, 16)
        XCTAssertEqual(grid.levels.first?.resolution, 16)
        XCTAssertEqual(grid.levels.last?.resolution, 2048)
        XCTAssertEqual(grid.levels.first?.cells, SIMD3(16, 13, 10))
        XCTAssertEqual(grid.outputWidth, 32)
        // Resolutions grow geometrically; dense levels come first, then hashed ones of 2^19 entries.
        let dense = grid.levels.filter(\.isDense).count
        XCTAssertTrue(dense >= 1 && dense < 16)
        XCTAssertTrue(grid.levels.prefix(dense).allSatisfy(\.isDense))
        XCTAssertTrue(grid.levels.dropFirst(dense).allSatisfy { !$0.isDense && $0.entryCount == 1 << 19 })
        XCTAssertEqual(grid.levels.map(\.resolution), ReferenceHashGrid(config: grid.config).levels.map(\.resolution))
    }

    // MARK: forward / backward against the reference

    func testForwardMatchesReference() throws {
        var rng = SeededRNG(seed: 1)
        for f in [1, 2, 3, 4, 8] {
            let config = Self.mixed(features: f)
            let grid = try HashGrid(config: config)
            let ref = ReferenceHashGrid(config: config)
            let params = grid.initialParameters(seed: 5)
            let pos = points(grid, count: 300, rng: &rng)
            let got = forward(grid, params, pos)
            let expected = ref.forward(params: params, positions: pos)
            var worst = 0.0
            for i in 0..<got.count { worst = max(worst, abs(Double(got[i]) - expected[i])) }
            XCTAssertLessThan(worst, 1e-5, "F = \(f)")
        }
    }

    func testBackwardMatchesReferenceAndFiniteDifferences() throws {
        var rng = SeededRNG(seed: 2)
        for f in [2, 3] {
            let config = Self.mixed(features: f)
            let grid = try HashGrid(config: config)
            let ref = ReferenceHashGrid(config: config)
            let params = grid.initialParameters(seed: 6)
            let pos = points(grid, count: 200, rng: &rng)
            // Loss = sum(output * weights): d loss / d output = weights.
            let weights = randoms(pos.count / 3 * grid.outputWidth, &rng)
            var grad = [Float](repeating: 0, count: grid.parameterCount)
            var touched = HashGridTouched(grid: grid)
            backward(grid, pos, weights, into: &grad, touched: &touched)
            let expected = ref.backward(positions: pos, gradOutput: weights)
            var worst = 0.0
            for i in 0..<grad.count { worst = max(worst, abs(Double(grad[i]) - expected[i])) }
            XCTAssertLessThan(worst, 1e-5, "F = \(f)")

            func loss(_ p: [Float]) -> Double {
                zip(forward(grid, p, pos), weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
            }
            func referenceLoss(_ p: [Float]) -> Double {
                zip(ref.forward(params: p, positions: pos), weights).reduce(0) { $0 + $1.0 * Double($1.1) }
            }
            for _ in 0..<8 {
                let e = Int(touched.entries[Int(rng.next() % UInt64(touched.count))])
                let k = e * f + Int(rng.next() % UInt64(f))
                var plus = params, minus = params
                let eps: Float = 0.01
                plus[k] += eps; minus[k] -= eps
                let step = Double(plus[k]) - Double(minus[k])
                let fd = (loss(plus) - loss(minus)) / step
                XCTAssertEqual(Double(grad[k]), fd, accuracy: 2e-3 * max(1, abs(fd)), "kernel FD, parameter \(k)")
                let fdRef = (referenceLoss(plus) - referenceLoss(minus)) / step
                XCTAssertEqual(Double(grad[k]), fdRef, accuracy: 1e-5 * max(1, abs(fdRef)), "reference FD, parameter \(k)")
            }
        }
    }

    // MARK: touched set

    func testTouchedEntriesAreExactlyTheNonZeroGradients() throws {
        var rng = SeededRNG(seed: 3)
        for config in [Self.mixed(), Self.mixed(features: 3)] {
            let grid = try HashGrid(config: config)
            let f = config.featuresPerLevel
            let pos = points(grid, count: 150, rng: &rng)
            let gout = randoms(pos.count / 3 * grid.outputWidth, &rng)
            var grad = [Float](repeating: 0, count: grid.parameterCount)
            var touched = HashGridTouched(grid: grid)
            backward(grid, pos, gout, into: &grad, touched: &touched)
            // Dense scan of the gradient.
            let nonZero = (0..<grid.entryCount).filter { e in (0..<f).contains { grad[e * f + $0] != 0 } }
            XCTAssertEqual(Set(touched.entries.map(Int.init)), Set(nonZero))
            XCTAssertEqual(touched.count, Set(touched.entries).count, "duplicates")
            XCTAssertEqual(touched.count, nonZero.count)
            XCTAssertLessThan(nonZero.count, grid.entryCount, "the test should leave entries untouched")
            for e in 0..<grid.entryCount { XCTAssertEqual(touched.contains(entry: e), nonZero.contains(e)) }
        }
    }

    func testTouchedOrderIsLevelThenFirstTouch() throws {
        var rng = SeededRNG(seed: 4)
        let grid = try HashGrid(config: Self.mixed())
        let ref = ReferenceHashGrid(config: grid.config)
        let pos = points(grid, count: 200, rng: &rng, boundaries: false)
        let gout = randoms(pos.count / 3 * grid.outputWidth, &rng)
        var touched = HashGridTouched(grid: grid)
        var grad = [Float](repeating: 0, count: grid.parameterCount)
        backward(grid, pos, gout, into: &grad, touched: &touched, threads: 2)
        XCTAssertEqual(touched.entries, ref.touchedEntries(positions: pos))
    }

    func testResetForgetsOnlyInTouchedTime() throws {
        var rng = SeededRNG(seed: 5)
        let grid = try HashGrid(config: Self.mixed())
        let ref = ReferenceHashGrid(config: grid.config)
        let a = points(grid, count: 120, rng: &rng, boundaries: false)
        let b = points(grid, count: 40, rng: &rng, boundaries: false)
        let ga = randoms(a.count / 3 * grid.outputWidth, &rng), gb = randoms(b.count / 3 * grid.outputWidth, &rng)
        var touched = HashGridTouched(grid: grid)
        var grad = [Float](repeating: 0, count: grid.parameterCount)
        backward(grid, a, ga, into: &grad, touched: &touched)
        let first = touched.entries
        XCTAssertFalse(first.isEmpty)
        // Sparse clearing leaves an all-zero gradient.
        grad.withUnsafeMutableBufferPointer { touched.zeroGradients($0.baseAddress!) }
        XCTAssertTrue(grad.allSatisfy { $0 == 0 })
        touched.reset()
        XCTAssertTrue(touched.isEmpty)
        XCTAssertTrue(first.allSatisfy { !touched.contains(entry: Int($0)) })
        // After the reset only the new batch's entries are recorded, in its own order.
        backward(grid, b, gb, into: &grad, touched: &touched)
        XCTAssertEqual(touched.entries, ref.touchedEntries(positions: b))
        // A second batch without reset appends only entries not seen yet.
        let before = touched.entries
        backward(grid, a, ga, into: &grad, touched: &touched)
        XCTAssertEqual(Array(touched.entries.prefix(before.count)), before)
        XCTAssertEqual(Set(touched.entries), Set(first).union(before))
        XCTAssertEqual(touched.count, Set(touched.entries).count)
    }

    // MARK: determinism

    func testThreadCountDoesNotChangeBits() throws {
        var rng = SeededRNG(seed: 6)
        for config in [Self.mixed(), Self.mixed(features: 3)] {
            let grid = try HashGrid(config: config)
            let params = grid.initialParameters(seed: 9)
            let pos = points(grid, count: 500, rng: &rng)
            let gout = randoms(pos.count / 3 * grid.outputWidth, &rng)
            var results: [([UInt32], [UInt32], [Int32])] = []
            for threads in [1, 2, 3] {
                let out = forward(grid, params, pos, threads: threads)
                var grad = [Float](repeating: 0, count: grid.parameterCount)
                var touched = HashGridTouched(grid: grid)
                backward(grid, pos, gout, into: &grad, touched: &touched, threads: threads)
                results.append((out.map(\.bitPattern), grad.map(\.bitPattern), touched.entries))
            }
            for r in results.dropFirst() {
                XCTAssertEqual(r.0, results[0].0, "forward bits")
                XCTAssertEqual(r.1, results[0].1, "gradient bits")
                XCTAssertEqual(r.2, results[0].2, "touched order")
            }
        }
    }

    // MARK: known answer

    /// Filling a dense level from a linear function of the corner positions makes trilinear interpolation reproduce
    /// that function exactly, for points inside and (clamped) outside the box.
    func testInterpolationReproducesALinearFunctionOnDenseLevels() throws {
        let config = Self.mixed()
        let grid = try HashGrid(config: config)
        let f = config.featuresPerLevel
        let slopes: [SIMD3<Double>] = [SIMD3(0.3, -0.7, 1.1), SIMD3(-0.2, 0.5, 0.25)]
        let offsets = [0.4, -1.3]
        let lo = SIMD3<Double>(config.boundsMin), hi = SIMD3<Double>(config.boundsMax)
        var params = grid.initialParameters(seed: 1)
        for lv in grid.levels where lv.isDense {
            let n = SIMD3<Int>(truncatingIfNeeded: lv.cells)
            for z in 0...n.z { for y in 0...n.y { for x in 0...n.x {
                let corner = lo + SIMD3(Double(x), Double(y), Double(z)) * lv.cellSize
                let e = lv.entryOffset + x + y * (n.x + 1) + z * (n.x + 1) * (n.y + 1)
                for k in 0..<f { params[e * f + k] = Float((slopes[k] * corner).sum() + offsets[k]) }
            } } }
        }
        var rng = SeededRNG(seed: 7)
        let pos = points(grid, count: 300, rng: &rng)
        let out = forward(grid, params, pos)
        for i in 0..<(pos.count / 3) {
            let p = SIMD3<Double>(SIMD3(pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]))
            let clamped = p.clamped(lowerBound: lo, upperBound: hi)
            for (l, lv) in grid.levels.enumerated() where lv.isDense {
                for k in 0..<f {
                    let expected = (slopes[k] * clamped).sum() + offsets[k]
                    XCTAssertEqual(Double(out[i * grid.outputWidth + l * f + k]), expected, accuracy: 1e-5,
                                   "point \(p), level \(l), feature \(k)")
                }
            }
        }
    }

    func testNonFinitePositionsAreClampedNotFatal() throws {
        let grid = try HashGrid(config: Self.mixed())
        let params = grid.initialParameters(seed: 3)
        let lo = grid.config.boundsMin, hi = grid.config.boundsMax
        let pos: [Float] = [.nan, .nan, .nan, lo.x, lo.y, lo.z, .infinity, -.infinity, .nan, hi.x, lo.y, lo.z]
        let out = forward(grid, params, pos)
        let w = grid.outputWidth
        XCTAssertEqual(Array(out[0..<w]), Array(out[w..<(2 * w)]))
        XCTAssertEqual(Array(out[(2 * w)..<(3 * w)]), Array(out[(3 * w)..<(4 * w)]))
        var grad = [Float](repeating: 0, count: grid.parameterCount)
        var touched = HashGridTouched(grid: grid)
        backward(grid, pos, [Float](repeating: 1, count: out.count), into: &grad, touched: &touched)
        XCTAssertTrue(grad.allSatisfy(\.isFinite))
        XCTAssertEqual(touched.count, 2 * grid.levels.count, "each clamped point sits on a box corner: one entry per level")
    }

    // MARK: config and initialisation

    func testConfigValidation() throws {
        let good = Self.mixed()
        XCTAssertNoThrow(try good.validate())
        XCTAssertNoThrow(try HashGridConfig(boundsMin: SIMD3(0, 0, 0), boundsMax: SIMD3(5, 4, 3)).validate())
        var one = good; one.levels = 1; one.finestResolution = one.baseResolution
        XCTAssertEqual(try HashGrid(config: one).levels.map(\.resolution), [4])
        let broken: [(String, (inout HashGridConfig) -> Void)] = [
            ("levels 0", { $0.levels = 0 }),
            ("levels 65", { $0.levels = 65 }),
            ("features 0", { $0.featuresPerLevel = 0 }),
            ("table 2^3", { $0.log2TableSize = 3 }),
            ("table 2^31", { $0.log2TableSize = 31 }),
            ("too many entries", { $0.levels = 64; $0.log2TableSize = 30 }),
            ("base 0", { $0.baseResolution = 0 }),
            ("finest < base", { $0.finestResolution = 2 }),
            ("finest too fine", { $0.finestResolution = HashGridConfig.maxResolution + 1 }),
            ("empty box", { $0.boundsMax.y = $0.boundsMin.y }),
            ("inverted box", { $0.boundsMax.z = -5 }),
            ("NaN box", { $0.boundsMin.x = .nan }),
            ("infinite box", { $0.boundsMax.x = .infinity }),
            ("negative init", { $0.initRange = -1 }),
            ("NaN init", { $0.initRange = .nan }),
        ]
        for (name, breakIt) in broken {
            var c = good
            breakIt(&c)
            XCTAssertThrowsError(try c.validate(), name) { error in
                XCTAssertEqual((error as? MapError)?.kind, .badArgument, name)
            }
            XCTAssertThrowsError(try HashGrid(config: c), name)
        }
        let data = try JSONEncoder().encode(good)
        XCTAssertEqual(try JSONDecoder().decode(HashGridConfig.self, from: data), good)
    }

    func testInitialParametersAreSeededAndInRange() throws {
        let grid = try HashGrid(config: Self.mixed())
        let a = grid.initialParameters(seed: 11), b = grid.initialParameters(seed: 11), c = grid.initialParameters(seed: 12)
        XCTAssertEqual(a.count, grid.parameterCount)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertTrue(a.allSatisfy { abs($0) <= grid.config.initRange })
        XCTAssertGreaterThan(a.map { abs($0) }.max()!, 0.9 * grid.config.initRange)
    }

    func testTouchedRejectsAnotherLayout() throws {
        // Guards against mixing grids: a touched set is only valid with the grid it was made for.
        let a = try HashGrid(config: Self.mixed()), b = try HashGrid(config: Self.mixed(features: 3))
        XCTAssertEqual(HashGridTouched(grid: a).featuresPerLevel, 2)
        XCTAssertEqual(HashGridTouched(grid: b).levelEntryOffsets, b.levels.map(\.entryOffset) + [b.entryCount])
    }
}
