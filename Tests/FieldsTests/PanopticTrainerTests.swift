import Evaluation
import Fields
import Kernels
import MapCore
import Synthetic
import XCTest

/// End-to-end checks of the semantic and instance fields on a small synthetic room. Sized for an optimised test build
/// (`swift test -c release`); in a debug build they take much longer.
final class PanopticTrainerTests: XCTestCase {
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

    static func panopticTrainer(_ frames: [Frame], vocabulary: Vocabulary, geometry: GeometryField, seed: UInt64,
                                configure: (inout PanopticTrainerConfig) -> Void = { _ in }) throws -> PanopticTrainer {
        var fc = SemanticField.Config(grid: grid(frames))
        fc.threads = 2
        var ic = InstanceField.Config(grid: grid(frames))
        ic.threads = 2
        var tc = PanopticTrainerConfig()
        tc.framesPerStep = 2
        tc.raysPerFrame = 256
        tc.seed = seed
        configure(&tc)
        return try PanopticTrainer(config: tc, geometry: geometry,
                                   semantic: try SemanticField(config: fc, vocabulary: vocabulary, seed: seed),
                                   instance: try InstanceField(config: ic, seed: seed &+ 1))
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

        let t = try Self.panopticTrainer(frames, vocabulary: scene.vocabulary, geometry: geometry, seed: 1) {
            $0.instanceStart = 1000; $0.panopticStart = 1000 // semantics only
        }
        XCTAssertEqual(t.semantic.classCount, scene.vocabulary.classes.count)
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
        _ = (noMasksSlot, emptySlot)

        t0 = clock.now
        let first = t.step()
        t.train(iterations: 200)
        let last = t.step()
        let semanticTime = clock.now - t0
        XCTAssertLessThan(last.semanticLoss, first.semanticLoss * 0.5,
                          "L_sem must fall (\(first.semanticLoss) -> \(last.semanticLoss))")
        XCTAssertEqual(last.pairs, 0, "no instance stage before instanceStart")

        // Rendered argmax vs the GT semantic image at every pixel with valid depth and a GT class, 6 training views.
        var correct = 0, total = 0
        for i in stride(from: 0, to: scene.frameCount, by: 2) {
            let f = synthetic[i]
            let rendered = t.renderLabels(T_W_C: f.frame.T_W_C, intrinsics: f.frame.intrinsics,
                                          depth: f.frame.depth.data)
            for p in 0..<(Self.width * Self.height) {
                let d = f.frame.depth.data[p]
                guard d > 0.1, d < 8, t.semantic.classIndex(ofClassID: Int(f.semantic.data[p])) != nil else { continue }
                total += 1
                if rendered.semantic[p] == Int32(f.semantic.data[p]) { correct += 1 }
            }
        }
        XCTAssertGreaterThan(total, 6 * Self.width * Self.height / 2)
        let accuracy = Double(correct) / Double(total)
        XCTAssertGreaterThanOrEqual(accuracy, 0.9, "semantic accuracy \(accuracy) over \(total) pixels")
        print("PanopticTrainerTests (semantics): accuracy \(accuracy) over \(total) px; L_sem \(first.semanticLoss) -> \(last.semanticLoss); "
              + "geometry 300 steps \(geometryTime), semantic 202 steps \(semanticTime)")
    }

    func testSameSeedSameParameters() throws {
        let scene = try Self.scene()
        var frames: [Frame] = []
        for i in 0..<4 { frames.append(try scene.frame(i).frame) }
        let geometry = try Self.geometry(frames, seed: 2, iterations: 3)
        func run(_ seed: UInt64) throws -> PanopticTrainer {
            let t = try Self.panopticTrainer(frames, vocabulary: scene.vocabulary, geometry: geometry, seed: seed) {
                $0.instanceStart = 2; $0.panopticStart = 4; $0.manageEvery = 3
            }
            for f in frames { t.add(f) }
            t.train(iterations: 6)
            return t
        }
        let a = try run(5), b = try run(5), c = try run(6)
        XCTAssertEqual(a.semantic.gridParams, b.semantic.gridParams)
        XCTAssertEqual(a.semantic.mlpParams, b.semantic.mlpParams)
        XCTAssertEqual(a.instance.core.gridParams, b.instance.core.gridParams)
        XCTAssertEqual(a.instance.core.mlpParams, b.instance.core.mlpParams)
        XCTAssertEqual(a.tokens.features, b.tokens.features)
        XCTAssertEqual(a.tokens.means, b.tokens.means)
        XCTAssertEqual(a.classHead.params, b.classHead.params)
        XCTAssertNotEqual(a.semantic.mlpParams, c.semantic.mlpParams)
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
        let t = try Self.panopticTrainer([f], vocabulary: scene.vocabulary, geometry: geometry, seed: 3) {
            $0.instanceStart = 0
        }
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
        XCTAssertEqual(t.step(), PanopticStepStats(), "nothing to learn from: no-op")
        // Only stuff masks: the instance stage runs without tokens (no thing mask to seed them from).
        var stuffOnly = f
        let things = Set(scene.vocabulary.thingIDs)
        stuffOnly.masks?.segments = f.masks!.segments.filter { !things.contains($0.classID) }
        t.add(stuffOnly)
        var stats = t.step()
        XCTAssertEqual(stats.rays, 512)
        XCTAssertTrue(stats.semanticLoss.isFinite)
        XCTAssertEqual(stats.tokens, 0)
        let slot = t.add(small)
        XCTAssertGreaterThan(t.frames[slot].labelledPixels.count, 0, "a smaller mask image is resized to the depth")
        XCTAssertGreaterThan(t.frames[slot].slotPixels.count, 0, "thing masks get slots")
        for _ in 0..<3 { stats = t.step() }
        XCTAssertTrue(stats.semanticLoss.isFinite && stats.instanceLoss.isFinite && stats.classLoss.isFinite)
        XCTAssertGreaterThan(stats.tokens, 0, "tokens are seeded once a frame with thing masks is there")
    }

    /// The instance stage on clean masks whose ids are shuffled per frame: one consistent 3D instance map comes out.
    /// Scene-level PQ over the training views (rendered labels vs GT), and the two chairs (same class) must carry
    /// different instance ids.
    func testInstancesAreConsistentAcrossFrames() throws {
        var config = SyntheticSceneConfig.small(width: 160, height: 120, frameCount: 16, seed: 4)
        config.depthNoise = .none
        config.maskNoise = .clean
        let scene = try SyntheticScene(config: config)
        var synthetic: [SyntheticFrame] = []
        for i in 0..<scene.frameCount { synthetic.append(try scene.frame(i)) }
        let frames = synthetic.map(\.frame)
        let geometry = try Self.geometry(frames, seed: 1, iterations: 400)
        let t = try Self.panopticTrainer(frames, vocabulary: scene.vocabulary, geometry: geometry, seed: 1) {
            $0.instanceStart = 100; $0.panopticStart = 400; $0.cloneUntil = 560; $0.manageEvery = 80
        }
        for f in frames { t.add(f) }
        t.train(iterations: 700)
        var evaluator = PanopticEvaluator(vocabulary: scene.vocabulary)
        let chairs = scene.room.objects.filter { $0.classID == SyntheticRoom.chairClass }.map(\.instanceID)
        var votes: [Int: [Int32: Int]] = [:]
        for f in synthetic {
            let l = t.renderLabels(T_W_C: f.frame.T_W_C, intrinsics: f.frame.intrinsics, depth: f.frame.depth.data)
            try evaluator.add(predictedClass: l.semantic, predictedInstance: l.instance,
                              gtClass: f.semantic.data.map { Int32($0) }, gtInstance: f.instance.data.map { Int32($0) })
            for (p, gt) in f.instance.data.enumerated() where chairs.contains(Int(gt)) {
                votes[Int(gt), default: [:]][l.instance[p], default: 0] += 1
            }
        }
        let m = try evaluator.result()
        print("PanopticTrainerTests (instances): \(t.tokens.count) tokens\n\(m.text)")
        XCTAssertGreaterThanOrEqual(m.pq, 0.7, "scene-level PQ on the training views")
        XCTAssertGreaterThanOrEqual(m.mIoU, 0.8)
        let majority = chairs.map { c in votes[c]?.max { $0.value < $1.value }?.key ?? 0 }
        XCTAssertEqual(majority.count, 2)
        XCTAssertTrue(majority.allSatisfy { $0 > 0 }, "both chairs are instances: \(majority)")
        XCTAssertNotEqual(majority[0], majority[1], "the two chairs carry different instance ids")
    }
}
