import Fields
import Kernels
import MapCore
import Synthetic
import XCTest

/// The appearance branch on a small synthetic room: seeding, fitting held-out views, densify / prune rules,
/// determinism and state round trips. Sized for an optimised test build.
final class GaussianTrainerTests: XCTestCase {
    static func frames(count: Int = 16, width: Int = 96, height: Int = 72) throws -> [Frame] {
        var config = SyntheticSceneConfig.small(width: width, height: height, frameCount: count, seed: 5)
        config.depthNoise = .none
        let scene = try SyntheticScene(config: config)
        return try (0..<count).map { try scene.frame($0).frame }
    }

    static func config(seed: UInt64 = 1) -> GaussianTrainerConfig {
        var c = GaussianTrainerConfig()
        c.seed = seed
        c.threads = 2
        return c
    }

    func meanPSNR(_ t: GaussianTrainer, _ frames: [Frame]) -> Double {
        var sum = 0.0
        for f in frames {
            let r = t.render(T_W_C: f.T_W_C, intrinsics: f.intrinsics)
            sum += ImageLosses.psnr(r.color.map { max(0, min(1, $0)) }, f.rgb.data.map { Float($0) / 255 })
        }
        return sum / Double(frames.count)
    }

    func testSeedingCoversAFrameOnceAndOnlyAddsUnexplainedSurface() throws {
        let frames = try Self.frames(count: 2)
        let t = try GaussianTrainer(config: Self.config())
        t.add(frames[0])
        let valid = (0..<(72 / 3)).reduce(0) { n, j in
            n + (0..<(96 / 3)).filter { i in frames[0].depth[3 * i + 1, 3 * j + 1] > 0 }.count
        }
        XCTAssertEqual(t.gaussians.count, valid, "one Gaussian per seeded pixel with depth")
        // Its own view is explained by what was just seeded: adding the same frame again adds (almost) nothing.
        let before = t.gaussians.count
        t.add(frames[0])
        XCTAssertLessThan(t.gaussians.count - before, before / 10, "re-adding a seen view must add < 10 %")
        // The seeded Gaussians reproduce the frame's depth where they cover it.
        let r = t.render(T_W_C: frames[0].T_W_C, intrinsics: frames[0].intrinsics)
        var err: [Float] = []
        for p in 0..<(96 * 72) where r.alpha[p] > 0.5 && frames[0].depth.data[p] > 0 {
            err.append(abs(r.depth[p] / r.alpha[p] - frames[0].depth.data[p]))
        }
        XCTAssertGreaterThan(err.count, 96 * 72 / 2)
        XCTAssertLessThan(err.sorted()[err.count / 2], 0.02, "median depth error of the seeded Gaussians")
    }

    func testTrainingFitsHeldOutViews() throws {
        let frames = try Self.frames(count: 40)
        let train = frames.enumerated().filter { $0.offset % 4 != 3 }.map(\.element)
        let heldOut = frames.enumerated().filter { $0.offset % 4 == 3 }.map(\.element)
        let t = try GaussianTrainer(config: Self.config())
        for f in train { t.add(f) }
        let before = meanPSNR(t, heldOut)
        var first = GaussianStepStats(), last = first
        for i in 0..<500 {
            let s = t.step()
            if i == 0 { first = s }
            last = s
        }
        let after = meanPSNR(t, heldOut)
        XCTAssertLessThan(last.total, first.total * 0.8, "the loss must fall (\(first.total) -> \(last.total))")
        XCTAssertGreaterThan(after, before + 2, "held-out PSNR must rise (\(before) -> \(after) dB)")
        XCTAssertGreaterThan(after, 27, "held-out PSNR \(after) dB")
    }

    func testWideFramesAreReducedByAnIntegerFactor() {
        // 6x4 frame, max width 3 -> factor 2, 3x2 pixels; colour box-filtered; depth averaged unless a block spans
        // an edge (> 5 % apart) or has no usable value.
        let k = Intrinsics(fx: 10, fy: 12, cx: 2.5, cy: 1.5, width: 6, height: 4)
        var rgb = [UInt8](repeating: 0, count: 6 * 4 * 3)
        for p in 0..<24 { rgb[3 * p] = UInt8(10 * p); rgb[3 * p + 1] = 7; rgb[3 * p + 2] = 255 }
        var depth = [Float](repeating: 2, count: 24)
        depth[2] = 2.02            // block (1, 0): 2, 2.02, 2, 2 -> mean 2.005
        depth[4] = 3               // block (2, 0): 3 and 2 -> an edge -> 0
        depth[12] = 0; depth[13] = .nan; depth[18] = 0; depth[19] = 0  // block (0, 1): nothing usable -> 0
        let frame = Frame(index: 0, rgb: RGBImage(width: 6, height: 4, channels: 3, data: rgb),
                          depth: DepthImage(width: 6, height: 4, channels: 1, data: depth), T_W_C: .identity,
                          intrinsics: k)
        let g = GaussianFrame(frame, near: 0.1, far: 8, maxWidth: 3)
        XCTAssertEqual([g.camera.width, g.camera.height], [3, 2])
        XCTAssertEqual([g.camera.fx, g.camera.fy, g.camera.cx, g.camera.cy], [5, 6, 1, 0.5])
        // Red of block (0, 0) = mean of pixels 0, 1, 6, 7 -> 10 * 3.5 = 35; green / blue constant.
        XCTAssertEqual(Array(g.rgb[0..<3]), [35, 7, 255])
        XCTAssertEqual(g.depth[0], 2)
        XCTAssertEqual(g.depth[1], 2.005, accuracy: 1e-6)
        XCTAssertEqual(g.depth[2], 0)
        XCTAssertEqual(g.depth[3], 0)
        XCTAssertEqual(g.validDepth, 4)
        // Narrow frames keep their own arrays.
        let same = GaussianFrame(frame, near: 0.1, far: 8, maxWidth: 6)
        XCTAssertEqual(same.rgb, rgb)
        XCTAssertEqual(same.camera.width, 6)
    }

    func testDensifyClonesSmallSplitsLargeAndPrunes() throws {
        let t = try GaussianTrainer(config: Self.config())
        var g = GaussianSet()
        let opaque: Float = 2, clear: Float = -8  // opacities 0.88 and 0.0003
        g.append(mean: [0, 0, 1], logScale: SIMD3(repeating: log(0.01)), rotation: [1, 0, 0, 0], opacityLogit: opaque,
                 color: [1, 0, 0])  // small, large gradient -> cloned
        g.append(mean: [1, 0, 1], logScale: SIMD3(repeating: log(0.2)), rotation: [1, 0, 0, 0], opacityLogit: opaque,
                 color: [0, 1, 0])  // large, large gradient -> split in two
        g.append(mean: [2, 0, 1], logScale: SIMD3(repeating: log(0.01)), rotation: [1, 0, 0, 0], opacityLogit: opaque,
                 color: [0, 0, 1])  // small gradient -> kept as is
        g.append(mean: [3, 0, 1], logScale: SIMD3(repeating: log(0.01)), rotation: [1, 0, 0, 0], opacityLogit: clear,
                 color: [1, 1, 1])  // transparent -> pruned
        let moments = [3, 3, 4, 1, 3].map { AdamState(parameterCount: $0 * 4) }
        try t.restore(GaussianTrainerState(gaussians: g, adam: moments, gradientSum: [1, 1, 1e-6, 0],
                                           gradientCount: [1, 1, 1, 0], steps: 0, rng: SeededRNG(seed: 1)))
        t.densifyAndPrune()
        let colors = (0..<t.gaussians.count).map { t.gaussians.gaussian($0).color }
        XCTAssertEqual(colors.filter { $0 == [1, 0, 0] }.count, 2, "small Gaussian cloned")
        XCTAssertEqual(colors.filter { $0 == [0, 1, 0] }.count, 2, "large Gaussian replaced by two")
        XCTAssertEqual(colors.filter { $0 == [0, 0, 1] }.count, 1)
        XCTAssertEqual(colors.filter { $0 == [1, 1, 1] }.count, 0, "transparent Gaussian pruned")
        for i in 0..<t.gaussians.count where t.gaussians.gaussian(i).color == [0, 1, 0] {
            XCTAssertEqual(t.gaussians.gaussian(i).logScale.x, log(0.2) - log(1.6), accuracy: 1e-5)
        }
        XCTAssertEqual(t.state.adam[0].m.count, 3 * t.gaussians.count, "moments follow the Gaussians")
    }

    func testSeededRunsAreIdenticalAndStateRoundTrips() throws {
        let frames = Array(try Self.frames(count: 4))
        func run(_ steps: Int) throws -> GaussianTrainer {
            let t = try GaussianTrainer(config: Self.config(seed: 9))
            for f in frames { t.add(f) }
            for _ in 0..<steps { t.step() }
            return t
        }
        let a = try run(120), b = try run(120)
        XCTAssertTrue(a.state == b.state, "same seed, same Gaussians and moments")
        // Save at 60 steps, restore into a fresh trainer, continue: same as the uninterrupted run.
        let c = try run(60)
        let d = try GaussianTrainer(config: Self.config(seed: 9))
        for f in frames { d.add(f) }
        try d.restore(c.state)
        for _ in 0..<60 { d.step() }
        XCTAssertTrue(d.state == a.state, "resumed run equals the uninterrupted one")
        var broken = a.state
        broken.gradientSum.removeLast()
        XCTAssertThrowsError(try d.restore(broken))
    }
}
