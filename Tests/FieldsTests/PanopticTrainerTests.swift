import Fields
import Kernels
import MapCore
import Synthetic
import XCTest

/// End-to-end checks of the semantic field on a small synthetic room. Sized for an optimised test build
/// (`swift test -c release`); in a debug build they take much longer.
final class SemanticFieldTests: XCTestCase {
    static let width = 80, height = 60

    static func scene() throws -> SyntheticScene {
        var config = SyntheticSceneConfig.small(width: width, height: height, frameCount: 12, seed: 3)
        config.depthNoise = .none
        config.maskNoise = .clean
        return try SyntheticScene(config: config)
    }

    static func grid(_ frames: [Frame]) -> HashGridConfig {
        let bounds = SceneBounds.enclosing(frames.map { TrainingFrame($0, near: 0.1, far: 8) })
        var grid = HashGridConfig(boundsMin: bounds.min, boundsMax: bounds.max)
        grid.levels = 8; grid.log2TableSize = 15; grid.finestResolution = 256
        return grid
    }

    static func geometry(_ frames: [Frame], seed: UInt64, iterations: Int) throws -> GeometryField {
        var tc = GeometryTrainerConfig()
        tc.raysPerStep = 512
        tc.seed = seed
        var fc = GeometryField.Config(grid: grid(frames))
        fc.threads = 2
        let t = try GeometryTrainer(config: tc, field: try GeometryField(config: fc, seed: seed))
        for f in frames { t.add(f) }
        t.train(iterations: iterations)
        return t.field
    }

    static func semanticTrainer(_ frames: [Frame], vocabulary: Vocabulary, geometry: GeometryField,
                                seed: UInt64) throws -> SemanticTrainer {
        var fc = SemanticField.Config(grid: grid(frames))
        fc.threads = 2
        var tc = SemanticTrainerConfig()
        tc.raysPerStep = 512
        tc.seed = seed
        return try SemanticTrainer(config: tc, field: try SemanticField(config: fc, vocabulary: vocabulary, seed: seed),
                                   geometry: geometry)
    }

    /// Frame `f` with a segment relabelled to a class outside the vocabulary and a block of pixels given an id that
    /// no segment lists.
    static func corrupted(_ f: Frame) -> Frame {
        var g = f
        guard var masks = g.masks, !masks.segments.isEmpty else { return g }
        masks.segments[0].classID = 999
        for y in 0..<10 { for x in 0..<10 { masks.ids[x, y] = 4321 } }
        g.masks = masks
        return g
    }

    func testRenderedLabelsMatchGroundTruth() throws {
        let clock = ContinuousClock()
        let scene = try Self.scene()
        var synthetic: [SyntheticFrame] = []
        for i in 0..<scene.frameCount { synthetic.append(try scene.frame(i)) }
        let frames = synthetic.map(\.frame)
        var t0 = clock.now
        let geometry = try Self.geometry(frames, seed: 1, iterations: 300)
        let geometryTime = clock.now - t0

        let t = try Self.semanticTrainer(frames, vocabulary: scene.vocabulary, geometry: geometry, seed: 1)
        XCTAssertEqual(t.field.classCount, scene.vocabulary.classes.count)
        for (i, f) in frames.enumerated() { t.add(i == 1 ? Self.corrupted(f) : f) }
        // Skipped inputs: no masks, empty segment list, a mask id not listed / a class not in the vocabulary.
        var noMasks = frames[2]; noMasks.masks = nil
        var emptyMasks = frames[3]; emptyMasks.masks?.segments = []
        let noMasksSlot = t.add(noMasks), emptySlot = t.add(emptyMasks)
        XCTAssertTrue(t.frames[noMasksSlot].labelledPixels.isEmpty)
        XCTAssertTrue(t.frames[emptySlot].labelledPixels.isEmpty)
        XCTAssertGreaterThan(t.frames[1].skippedPixels, 0)
        XCTAssertLessThan(t.frames[1].labelledPixels.count, t.frames[0].labelledPixels.count + Self.width * Self.height)
        XCTAssertTrue(t.frames[1].labelledPixels.allSatisfy { p in
            let x = Int(p) % Self.width, y = Int(p) / Self.width
            return !(x < 10 && y < 10)
        }, "pixels of unlisted ids are never labelled")
        XCTAssertEqual(t.step(slots: [noMasksSlot, emptySlot]), SemanticStepStats(), "nothing to learn from: no-op")

        t0 = clock.now
        let first = t.step()
        t.train(iterations: 200)
        let last = t.step()
        let semanticTime = clock.now - t0
        XCTAssertLessThan(last.loss, first.loss * 0.5, "L_sem must fall (\(first.loss) -> \(last.loss))")

        // Rendered argmax vs the GT semantic image at every pixel with valid depth and a GT class, 6 training views.
        var correct = 0, total = 0
        for i in stride(from: 0, to: scene.frameCount, by: 2) {
            let f = synthetic[i]
            var pixels: [Int32] = [], depth: [Float] = [], truth: [Int] = []
            for p in 0..<(Self.width * Self.height) {
                let d = f.frame.depth.data[p]
                guard d > 0.1, d < 8, let k = t.field.classIndex(ofClassID: Int(f.semantic.data[p])) else { continue }
                pixels.append(Int32(p)); depth.append(d); truth.append(k)
            }
            let rendered = t.renderClassIndices(T_W_C: f.frame.T_W_C, intrinsics: f.frame.intrinsics, pixels: pixels,
                                                depth: depth)
            correct += zip(rendered, truth).filter { $0 == $1 }.count
            total += truth.count
        }
        XCTAssertGreaterThan(total, 6 * Self.width * Self.height / 2)
        let accuracy = Double(correct) / Double(total)
        XCTAssertGreaterThanOrEqual(accuracy, 0.9, "semantic accuracy \(accuracy) over \(total) pixels")
        print("SemanticFieldTests: accuracy \(accuracy) over \(total) px; L_sem \(first.loss) -> \(last.loss); "
              + "geometry 300 steps \(geometryTime), semantic 202 steps \(semanticTime)")
    }

    func testSameSeedSameParameters() throws {
        let scene = try Self.scene()
        var frames: [Frame] = []
        for i in 0..<4 { frames.append(try scene.frame(i).frame) }
        let geometry = try Self.geometry(frames, seed: 2, iterations: 3)
        func run(_ seed: UInt64) throws -> SemanticField {
            let t = try Self.semanticTrainer(frames, vocabulary: scene.vocabulary, geometry: geometry, seed: seed)
            for f in frames { t.add(f) }
            t.train(iterations: 4)
            return t.field
        }
        let a = try run(5), b = try run(5), c = try run(6)
        XCTAssertEqual(a.gridParams, b.gridParams)
        XCTAssertEqual(a.mlpParams, b.mlpParams)
        XCTAssertNotEqual(a.mlpParams, c.mlpParams)
    }

    func testVocabularySizesAndClassIndices() throws {
        let grid = HashGridConfig(boundsMin: SIMD3(repeating: -1), boundsMax: SIMD3(repeating: 1), levels: 4,
                                  featuresPerLevel: 2, log2TableSize: 12, baseResolution: 4, finestResolution: 32)
        let config = SemanticField.Config(grid: grid)
        XCTAssertThrowsError(try SemanticField(config: config, vocabulary: Vocabulary(classes: []), seed: 1))
        for n in [1, 3, 40] {
            let vocabulary = Vocabulary(classes: (0..<n).map {
                SemanticClass(id: 10 + 3 * $0, name: "c\($0)", isThing: $0 % 2 == 0, color: [0, 0, 0])
            })
            let field = try SemanticField(config: config, vocabulary: vocabulary, seed: 1)
            XCTAssertEqual(field.classCount, n)
            XCTAssertEqual(field.classIndex(ofClassID: 10 + 3 * (n - 1)), n - 1)
            XCTAssertEqual(field.classID(ofIndex: n - 1), 10 + 3 * (n - 1))
            XCTAssertNil(field.classIndex(ofClassID: 11))
            XCTAssertNil(field.classIndex(ofClassID: 0))
            let z = field.logits([SIMD3(0, 0, 0), SIMD3(0.5, -0.2, 0.1), SIMD3(2, 2, 2)])
            XCTAssertEqual(z.count, 3 * n)
            XCTAssertTrue(z.allSatisfy { $0.isFinite })
            // Training output agrees with inference.
            let zt = field.forwardForTraining(positions: [0, 0, 0, 0.5, -0.2, 0.1, 2, 2, 2])
            for (a, b) in zip(z, zt) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
    }

    /// Frames without masks / with masks of another size / only unknown classes never crash a step.
    func testUnusableMasksAreSkipped() throws {
        let scene = try Self.scene()
        let f = try scene.frame(0).frame
        let geometry = try Self.geometry([f], seed: 3, iterations: 0)
        let t = try Self.semanticTrainer([f], vocabulary: scene.vocabulary, geometry: geometry, seed: 3)
        var none = f; none.masks = nil
        var unknown = f
        unknown.masks?.segments = f.masks!.segments.map { MaskSegment(id: $0.id, classID: 999) }
        var small = f
        small.masks?.ids = f.masks!.ids.resizedNearest(width: 40, height: 30)
        var emptyImage = f
        emptyImage.masks = FrameMasks(ids: Gray16Image(width: 0, height: 0, data: []), segments: f.masks!.segments)
        for g in [none, unknown, emptyImage] { t.add(g) }
        XCTAssertTrue(t.frames.allSatisfy { $0.labelledPixels.isEmpty })
        XCTAssertGreaterThan(t.frames[1].skippedPixels, 0)
        XCTAssertEqual(t.step(), SemanticStepStats())
        XCTAssertEqual(t.step(slots: [7, -1]), SemanticStepStats(), "unknown slots are ignored")
        let slot = t.add(small)
        XCTAssertGreaterThan(t.frames[slot].labelledPixels.count, 0, "a smaller mask image is resized to the depth")
        let stats = t.step()
        XCTAssertEqual(stats.rays, 512)
        XCTAssertTrue(stats.loss.isFinite)
    }
}
