import Foundation
import IO
import MapCore
import Synthetic
import TestSupport
import XCTest

final class DeterminismAndConfigTests: XCTestCase {
    func testSameSeedGivesIdenticalFrames() throws {
        let a = Fixtures.small
        let b = try SyntheticScene(config: .small())
        for i in [0, 5] {
            XCTAssertEqual(try a.frame(i), try b.frame(i))
        }
        // Frame i does not depend on other frames having been rendered, nor on threading.
        var single = SyntheticSceneConfig.small()
        single.parallelRendering = false
        let c = try SyntheticScene(config: single)
        XCTAssertEqual(try c.frame(5), try a.frame(5))
    }

    func testDifferentSeedGivesDifferentNoise() throws {
        let a = try Fixtures.small.frame(3)
        let b = try SyntheticScene(config: .small(seed: 99)).frame(3)
        XCTAssertEqual(a.frame.rgb, b.frame.rgb, "geometry and appearance do not depend on the seed")
        XCTAssertEqual(a.panoptic, b.panoptic)
        XCTAssertNotEqual(a.masks.ids, b.masks.ids)
        XCTAssertNotEqual(a.masks.segments.map(\.id), b.masks.segments.map(\.id))
        XCTAssertNotEqual(a.frame.depth, b.frame.depth)
    }

    func testFrameIndexOutOfRangeThrows() {
        XCTAssertThrowsError(try Fixtures.small.frame(-1)) { XCTAssertEqual(($0 as? MapError)?.kind, .badArgument) }
        XCTAssertThrowsError(try Fixtures.small.frame(12)) { XCTAssertEqual(($0 as? MapError)?.kind, .badArgument) }
    }

    func testConfigValidationRejectsBadValues() {
        XCTAssertNoThrow(try SyntheticSceneConfig().validate())
        let bad: [(String, (inout SyntheticSceneConfig) -> Void)] = [
            ("width 0", { $0.width = 0 }),
            ("height -3", { $0.height = -3 }),
            ("focal NaN", { $0.focalLengthPerWidth = .nan }),
            ("focal 0", { $0.focalLengthPerWidth = 0 }),
            ("no frames", { $0.frameCount = 0 }),
            ("fps 0", { $0.framesPerSecond = 0 }),
            ("negative samples", { $0.surfaceSampleCount = -1 }),
            ("sigma negative", { $0.depthNoise.sigmaPerSquareMetre = -0.1 }),
            ("sigma inf", { $0.depthNoise.sigmaPerSquareMetre = .infinity }),
            ("holes negative", { $0.depthNoise.maxHolesPerFrame = -1 }),
            ("hole radius order", { $0.depthNoise.holeRadiusMinFraction = 0.2; $0.depthNoise.holeRadiusMaxFraction = 0.1 }),
            ("grazing 1", { $0.depthNoise.grazingCosineThreshold = 1 }),
            ("miss 1.5", { $0.maskNoise.missRate = 1.5 }),
            ("wrong label -0.1", { $0.maskNoise.wrongLabelRate = -0.1 }),
            ("over NaN", { $0.maskNoise.overSegmentationRate = .nan }),
            ("under 2", { $0.maskNoise.underSegmentationRate = 2 }),
            ("erosion -1", { $0.maskNoise.erosionRadiusPixels = -1 }),
            ("min pixels 0", { $0.maskNoise.minSegmentPixels = 0 }),
            ("score 1.2", { $0.maskNoise.minScore = 1.2 }),
            ("camera through the wall", { $0.trajectory.radiusXMetres = 2.4 }),
            ("camera on the floor", { $0.trajectory.heightMetres = 0.1 }),
            ("camera into the ceiling", { $0.trajectory.heightMetres = 2.5 }),
            ("loops 0", { $0.trajectory.loops = 0 }),
            ("trajectory NaN", { $0.trajectory.lookSwayRadians = .nan }),
        ]
        for (name, mutate) in bad {
            var c = SyntheticSceneConfig()
            mutate(&c)
            XCTAssertThrowsError(try c.validate(), name) { error in
                guard let e = error as? MapError else { return XCTFail("\(name): \(error) is not a MapError") }
                XCTAssertEqual(e.kind, .badArgument, name)
                XCTAssertNotNil(e.hint, name)
            }
            XCTAssertThrowsError(try SyntheticScene(config: c), name)
        }
    }

    func testConfigIsCodable() throws {
        var c = SyntheticSceneConfig.small(seed: 42)
        c.maskNoise = .clean
        let back = try JSONDecoder().decode(SyntheticSceneConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(back, c)
    }

    /// Writing the same config twice gives byte-identical directories; the result reads back as a sequence.
    func testWrittenSequenceIsByteIdenticalAndReadable() throws {
        var cfg = SyntheticSceneConfig.small(width: 32, height: 24, frameCount: 3)
        cfg.surfaceSampleCount = 2000
        cfg.maskNoise.minSegmentPixels = 4
        let scene = try SyntheticScene(config: cfg)
        let d1 = try TempDirectory("synth-a"), d2 = try TempDirectory("synth-b")
        defer { d1.remove(); d2.remove() }
        try SyntheticSequence(scene: scene).write(to: d1.url)
        try SyntheticSequence(scene: try SyntheticScene(config: cfg)).write(to: d2.url)
        let files = try relativeFiles(d1.url)
        XCTAssertEqual(files, try relativeFiles(d2.url))
        for f in ["sequence.json", "poses.txt", "vocabulary.json", "gt/segments.json", "gt/surface.ply",
                  "gt/synthetic.json", "gt/semantic/000000.png", "gt/instance/000002.png", "gt/panoptic/000001.png",
                  "gt/depth/000000.png", "masks/000000.png", "masks/000000.json", "rgb/000002.png",
                  "depth/000002.png"] {
            XCTAssertTrue(files.contains(f), "missing \(f)")
        }
        for f in files {
            XCTAssertEqual(try Data(contentsOf: d1.url.appendingPathComponent(f)),
                           try Data(contentsOf: d2.url.appendingPathComponent(f)), "\(f) differs")
        }
        // GT images and surface read back.
        let f1 = try scene.frame(1)
        let pan = try PNGCodec.decodeGray16(try Files.read(d1.appending("gt/panoptic/000001.png")), source: "test")
        XCTAssertEqual(pan, f1.panoptic)
        let ply = try PLY.read(d1.appending("gt/surface.ply"))
        XCTAssertEqual(ply.positions.count, 2000)
        XCTAssertEqual(ply.label("instance")?.count, 2000)
        let table = try JSONDecoder().decode(PanopticSegmentTable.self,
                                             from: Data(contentsOf: d1.appending("gt/segments.json")))
        XCTAssertEqual(table, scene.segmentTable)
        // The sequence reader accepts it and gives back the masks.
        let reader = try PanoSequenceReader(directory: d1.url)
        let back = try reader.frame(at: 1)
        XCTAssertEqual(back.masks?.ids, f1.masks.ids)
        XCTAssertEqual(back.masks?.segments.map(\.id), f1.masks.segments.map(\.id))
        XCTAssertEqual(back.rgb, f1.frame.rgb)
    }

    private func relativeFiles(_ root: URL) throws -> [String] {
        let base = root.standardizedFileURL.path
        var out: [String] = []
        let e = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])!
        for case let u as URL in e where (try u.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            out.append(String(u.standardizedFileURL.path.dropFirst(base.count + 1)))
        }
        return out.sorted()
    }
}
