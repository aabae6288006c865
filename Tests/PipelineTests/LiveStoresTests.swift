import Foundation
import IO
import MapCore
import Pipeline
import Synthetic
import TestSupport
import XCTest

/// The keyframe store and the mask inbox on constructed cases.
final class LiveStoresTests: XCTestCase {
    static func frame(masks: Bool) throws -> Frame {
        var c = SyntheticSceneConfig.small(width: 32, height: 24, frameCount: 4, seed: 3)
        c.depthNoise = .none
        var f = try SyntheticScene(config: c).frame(2).frame
        if !masks { f.masks = nil }
        f.timestamp = 0.25
        return f
    }

    func testKeyframeStoreRoundTripsBitExactAndRefusesCorruption() throws {
        let tmp = try TempDirectory("pano-kfstore")
        defer { tmp.remove() }
        let store = KeyframeStore(directory: tmp.url, colourPreviews: true)
        let f = try Self.frame(masks: true)
        XCTAssertNotNil(f.masks)
        try store.write(f)
        XCTAssertEqual(try store.read(f.index), f)
        XCTAssertEqual(store.indices(), [f.index])
        XCTAssertTrue(Files.exists(store.previewURL(f.index)), "colour preview for the segmenter")
        var g = f
        g.masks = nil
        g.index = 7
        g.timestamp = nil
        try store.write(g)
        XCTAssertEqual(try store.read(7), g)

        // One flipped byte, a cut file, a missing file: typed errors naming the file.
        var bytes = try Files.read(store.url(7))
        bytes[bytes.count / 2] ^= 0x40
        try Files.writeAtomically(bytes, to: store.url(7))
        XCTAssertThrowsError(try store.read(7)) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
            XCTAssertEqual((e as? MapError)?.file, store.url(7).path)
        }
        try Files.writeAtomically(Array(bytes[0..<100]), to: store.url(7))
        XCTAssertThrowsError(try store.read(7)) { XCTAssertEqual(($0 as? MapError)?.kind, .badFormat) }
        XCTAssertThrowsError(try store.read(9)) { XCTAssertEqual(($0 as? MapError)?.kind, .missingFile) }

        store.prune(keeping: [f.index])
        XCTAssertEqual(store.indices(), [f.index])
    }

    func testInboxDeliversValidMasksOnceAndRefusesBadOnes() throws {
        let tmp = try TempDirectory("pano-inbox")
        defer { tmp.remove() }
        let f = try Self.frame(masks: true)
        let masks = try XCTUnwrap(f.masks)
        var c = SyntheticSceneConfig.small(width: 32, height: 24, frameCount: 4, seed: 3)
        c.depthNoise = .none
        let vocabulary = try SyntheticScene(config: c).vocabulary
        let inbox = try MaskInbox(directory: tmp.url, vocabulary: vocabulary)
        let size = f.depth.size
        XCTAssertTrue(inbox.poll(wanted: [2: size]).isEmpty, "nothing arrived yet")

        // An image without its JSON is not complete yet.
        try Files.writeAtomically(try PNGCodec.encodeGray16(masks.ids), to: inbox.imageURL(2))
        XCTAssertTrue(inbox.poll(wanted: [2: size]).isEmpty)
        try MaskFiles.write(masks, image: inbox.imageURL(2), segments: inbox.segmentsURL(2))
        let got = inbox.poll(wanted: [2: size])
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.index, 2)
        XCTAssertEqual(got.first?.masks, masks)

        // Masks at twice the keyframe size are reduced to it (the id at each 2x2 block's centre).
        let big = FrameMasks(ids: Gray16Image(width: 2 * size.width, height: 2 * size.height,
                                              data: (0..<(4 * size.width * size.height)).map { i in
                                                  masks.ids.data[((i / (2 * size.width)) / 2) * size.width + (i % (2 * size.width)) / 2]
                                              }), segments: masks.segments)
        try MaskFiles.write(big, image: inbox.imageURL(3), segments: inbox.segmentsURL(3))
        XCTAssertEqual(inbox.poll(wanted: [3: size]).first?.masks, masks)

        // A class outside the vocabulary: refused (logged, counted), not re-read until rewritten.
        var bad = masks
        bad.segments[0].classID = 999
        try MaskFiles.write(bad, image: inbox.imageURL(4), segments: inbox.segmentsURL(4))
        XCTAssertTrue(inbox.poll(wanted: [4: size]).isEmpty)
        XCTAssertEqual(inbox.refusedCount, 1)
        XCTAssertTrue(inbox.poll(wanted: [4: size]).isEmpty)
        XCTAssertEqual(inbox.refusedCount, 1, "a refused pair is not read again until its JSON changes")
        // A truncated PNG is refused too, never a crash.
        try Files.writeAtomically([0x89, 0x50, 0x4E, 0x47], to: inbox.imageURL(5))
        try Files.writeAtomically("{\"segments\": []}", to: inbox.segmentsURL(5))
        XCTAssertTrue(inbox.poll(wanted: [5: size]).isEmpty)
        XCTAssertEqual(inbox.refusedCount, 2)
        XCTAssertEqual(inbox.delivered, 2)
    }
}
