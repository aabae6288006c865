import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class ConversionTests: DatasetTestCase {
    /// All files under `dir` by relative path.
    func contents(_ dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let base = dir.standardizedFileURL.path
        let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil)
        while let u = e?.nextObject() as? URL {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: u.path, isDirectory: &isDir), !isDir.boolValue else { continue }
            out[String(u.standardizedFileURL.path.dropFirst(base.count))] = try Data(contentsOf: u)
        }
        return out
    }

    func testScanNetRoundTripWithShuffledMasks() throws {
        let tmp = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: tmp.appendingPathComponent("scene"))
        let source = try ScanNetReader(directory: fx.root)
        let out = tmp.appendingPathComponent("converted")
        let report = try SequenceConverter.convert(source, to: out, options: .init(seed: 42))
        XCTAssertEqual(report.sourceIndices, [0, 1, 2])
        XCTAssertTrue(report.wroteMasks)
        XCTAssertEqual(report.unknownClassIDs, [])  // ScanNet id 300 was already unlabelled by the reader

        let back = try PanoSequenceReader(directory: out)
        XCTAssertEqual(back.info.frameCount, 3)
        XCTAssertEqual(back.info.intrinsics, source.info.intrinsics)
        XCTAssertEqual(back.info.vocabulary, NYU40.vocabulary)
        XCTAssertTrue(back.info.hasMasks)
        let validator = FrameValidator(vocabulary: back.info.vocabulary)
        var idsOfWall: [Int] = []
        for i in 0..<3 {
            let a = try source.frame(at: i), b = try back.frame(at: i)
            XCTAssertEqual(b.rgb, a.rgb)
            XCTAssertEqual(b.depth, a.depth)
            XCTAssertEqual(b.T_W_C, a.T_W_C)
            XCTAssertEqual(b.timestamp ?? -1, a.timestamp ?? -2, accuracy: 1e-12)
            XCTAssertNoThrow(try validator.validate(b))
            let masks = try XCTUnwrap(b.masks)
            let gt = try XCTUnwrap(try source.groundTruth(at: i))
            // Each mask id stands for exactly one GT segment (stuff class or thing instance) and vice versa.
            var keyOfID: [UInt16: Int] = [:], idOfKey: [Int: UInt16] = [:]
            for p in 0..<masks.ids.data.count {
                let id = masks.ids.data[p], c = Int(gt.semantic.data[p])
                let key: Int? = c == 0 ? nil : (NYU40.stuffIDs.contains(c) ? -c : Int(gt.instance.data[p]))
                guard let key else { XCTAssertEqual(id, 0); continue }
                XCTAssertNotEqual(id, 0)
                XCTAssertEqual(keyOfID[id, default: key], key)
                XCTAssertEqual(idOfKey[key, default: id], id)
                keyOfID[id] = key; idOfKey[key] = id
                XCTAssertEqual(masks.segment(id: Int(id))?.classID, c)
            }
            XCTAssertEqual(Set(masks.segments.map(\.id)), Set(keyOfID.keys.map(Int.init)))
            // Frame 0: wall (stuff), chair instance 7, table instance 9; frames 1, 2: wall and one chair.
            XCTAssertEqual(masks.segments.count, i == 0 ? 3 : 2)
            idsOfWall.append(Int(idOfKey[-1] ?? 0))
        }
        // Ids do not agree across frames (the wall is one GT segment in every frame).
        XCTAssertGreaterThan(Set(idsOfWall).count, 1, "\(idsOfWall)")
    }

    func testSameSeedGivesIdenticalBytesAndAnotherSeedOtherIds() throws {
        let tmp = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: tmp.appendingPathComponent("scene"))
        let source = try ScanNetReader(directory: fx.root)
        for (name, seed) in [("a", UInt64(7)), ("b", UInt64(7)), ("c", UInt64(8))] {
            try SequenceConverter.convert(source, to: tmp.appendingPathComponent(name), options: .init(seed: seed))
        }
        let a = try contents(tmp.appendingPathComponent("a")), b = try contents(tmp.appendingPathComponent("b"))
        let c = try contents(tmp.appendingPathComponent("c"))
        XCTAssertEqual(a.count, 3 * 4 + 3)  // rgb, depth, mask png + json per frame; poses, sequence, vocabulary
        XCTAssertEqual(a, b)
        XCTAssertEqual(a["/rgb/000001.png"], c["/rgb/000001.png"])
        XCTAssertNotEqual(a["/masks/000001.png"], c["/masks/000001.png"])
    }

    func testLabelFusionGetsAGenericVocabulary() throws {
        let tmp = try makeTemp()
        let fx = try DatasetFixtures.labelFusion(in: tmp.appendingPathComponent("lf"), kind: .segmentation)
        let source = try LabelFusionReader(directory: fx.root)
        let report = try SequenceConverter.convert(source, to: tmp.appendingPathComponent("out"))
        XCTAssertEqual(report.vocabulary?.classes.map(\.name), ["class_3", "class_12"])
        XCTAssertEqual(report.vocabulary?.classes.map(\.isThing), [true, true])
        let back = try PanoSequenceReader(directory: tmp.appendingPathComponent("out"))
        XCTAssertEqual(back.info.depthUnitsPerMetre, 10000)
        for i in 0..<3 {
            let a = try source.frame(at: i), b = try back.frame(at: i)
            XCTAssertEqual(b.depth, a.depth)  // written at 10000 units per metre: exact
            let masks = try XCTUnwrap(b.masks)
            XCTAssertEqual(masks.segments.map(\.classID).sorted(), [3, 12])
            XCTAssertNoThrow(try FrameValidator(vocabulary: back.info.vocabulary).validate(b))
        }
    }

    func testRangeStrideAndExactReplicaDepth() throws {
        let tmp = try makeTemp()
        let fx = try DatasetFixtures.replica(in: tmp.appendingPathComponent("room"), frames: 5)
        let source = try ReplicaReader(directory: fx.root, intrinsics: DatasetFixtures.smallCamera)
        let report = try SequenceConverter.convert(source, to: tmp.appendingPathComponent("out"),
                                                   options: .init(frames: 1..<5, stride: 2, name: "sub"))
        XCTAssertEqual(report.sourceIndices, [1, 3])
        XCTAssertNil(report.vocabulary)
        let back = try PanoSequenceReader(directory: tmp.appendingPathComponent("out"))
        XCTAssertEqual(back.info.name, "sub")
        XCTAssertEqual(back.info.frameCount, 2)
        XCTAssertFalse(back.info.hasMasks)
        XCTAssertEqual(back.info.depthUnitsPerMetre, 6553.5)
        for (out, src) in [(0, 1), (1, 3)] {
            let a = try source.frame(at: src), b = try back.frame(at: out)
            XCTAssertEqual(b.index, out)
            XCTAssertEqual(b.depth, a.depth)  // 6553.5 units survive float metres and back exactly
            XCTAssertEqual(b.rgb, a.rgb)
            XCTAssertEqual(b.T_W_C, a.T_W_C)
        }
        expectMapError(.badArgument) {
            try SequenceConverter.convert(source, to: tmp.appendingPathComponent("bad"), options: .init(frames: 3..<9))
        }
        expectMapError(.badArgument) {
            try SequenceConverter.convert(source, to: tmp.appendingPathComponent("bad"), options: .init(stride: 0))
        }
    }

    func testInjectedMaskMaker() throws {
        let tmp = try makeTemp()
        let fx = try DatasetFixtures.scanNet(in: tmp.appendingPathComponent("scene"))
        let source = try ScanNetReader(directory: fx.root)
        // One segment covering every labelled pixel, class = chair; records the frame index in the score.
        let maker: MaskMaker = { semantic, instance, frameIndex, vocabulary in
            XCTAssertEqual(semantic.size, instance.size)
            XCTAssertEqual(vocabulary, NYU40.vocabulary)
            let ids = Gray16Image(width: semantic.width, height: semantic.height, channels: 1,
                                  data: semantic.data.map { $0 == 0 ? 0 : 5 })
            return FrameMasks(ids: ids, segments: [MaskSegment(id: 5, classID: 5, score: Double(frameIndex) / 10)])
        }
        try SequenceConverter.convert(source, to: tmp.appendingPathComponent("out"),
                                      options: .init(frames: 1..<3, maskMaker: maker))
        let back = try PanoSequenceReader(directory: tmp.appendingPathComponent("out"))
        XCTAssertEqual(try back.frame(at: 0).masks?.segments, [MaskSegment(id: 5, classID: 5, score: 0.1)])
        XCTAssertEqual(try back.frame(at: 1).masks?.segments, [MaskSegment(id: 5, classID: 5, score: 0.2)])
        // A failing maker's error names the frame.
        let failing: MaskMaker = { _, _, _, _ in throw MapError(.badMask, "noise model refused") }
        let e = expectMapError(.badMask) {
            try SequenceConverter.convert(source, to: tmp.appendingPathComponent("out2"),
                                          options: .init(frames: 2..<3, maskMaker: failing))
        }
        XCTAssertEqual(e?.frame, 2)
        XCTAssertNotNil(e?.file)
    }

    func testShuffledMasksDirectly() throws {
        // 5x1: stuff wall, chair instance 3 (two pixels, one labelled table: majority chair), thing without instance.
        let semantic = Gray16Image(width: 5, height: 1, channels: 1, data: [1, 5, 5, 7, 5])
        let instance = Gray16Image(width: 5, height: 1, channels: 1, data: [0, 3, 3, 3, 0])
        let m = try GroundTruthMasks.masks(semantic: semantic, instance: instance, frameIndex: 4,
                                           vocabulary: NYU40.vocabulary, seed: 1)
        XCTAssertEqual(m.segments.count, 2)
        XCTAssertEqual(m.ids.data[4], 0)
        XCTAssertEqual(m.ids.data[1], m.ids.data[3])
        XCTAssertEqual(m.segment(id: Int(m.ids.data[1]))?.classID, 5)
        XCTAssertEqual(m.segment(id: Int(m.ids.data[0]))?.classID, 1)
        let again = try GroundTruthMasks.masks(semantic: semantic, instance: instance, frameIndex: 4,
                                               vocabulary: NYU40.vocabulary, seed: 1)
        XCTAssertEqual(m, again)
        expectMapError(.sizeMismatch) {
            _ = try GroundTruthMasks.masks(semantic: semantic, instance: Gray16Image(width: 2, height: 1, repeating: 0),
                                           frameIndex: 0, vocabulary: NYU40.vocabulary, seed: 1)
        }
    }
}
