import MapCore
import Synthetic
import XCTest

/// Shared, lazily built scenes and renders (debug builds are slow; render once, use in several tests).
enum Fixtures {
    /// 64 x 48, 12 frames over the loop.
    static let small: SyntheticScene = try! SyntheticScene(config: .small())

    /// 64 x 48, 40 frames over the loop, clean renders (for the mask-noise statistics).
    static let statsScene: SyntheticScene = try! SyntheticScene(config: .small(frameCount: 40))
    static let statsRenders: [SyntheticRender] = (0..<40).map {
        statsScene.render(T_W_C: statsScene.trajectory.pose(frame: $0))
    }
}

/// Per frame: pixel counts of (mask id, GT panoptic id) pairs, for reading noise effects off the images.
struct Overlap {
    /// mask id -> (gt id -> pixel count), mask id 0 included.
    var byMask: [Int: [Int: Int]] = [:]
    /// gt id -> (mask id -> pixel count).
    var byGT: [Int: [Int: Int]] = [:]
    var gtSize: [Int: Int] = [:]

    init(masks: FrameMasks, panoptic: Gray16Image) {
        for i in 0..<panoptic.data.count {
            let m = Int(masks.ids.data[i]), g = Int(panoptic.data[i])
            byMask[m, default: [:]][g, default: 0] += 1
            byGT[g, default: [:]][m, default: 0] += 1
            gtSize[g, default: 0] += 1
        }
    }

    /// GT segment ids with at least `minPixels` pixels.
    func gtSegments(minPixels: Int) -> [Int] { gtSize.filter { $0.key != 0 && $0.value >= minPixels }.map(\.key).sorted() }
    /// Non-zero mask ids over gt segment `g`.
    func masks(over g: Int) -> [Int] { (byGT[g] ?? [:]).keys.filter { $0 != 0 }.sorted() }
    /// GT ids under mask `m`.
    func gts(under m: Int) -> [Int] { (byMask[m] ?? [:]).keys.filter { $0 != 0 }.sorted() }
}

func assertRate(_ hits: Int, _ total: Int, _ rate: Double, tolerance: Double = 0.1, _ what: String,
                file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertGreaterThan(total, 100, "\(what): too few candidates to measure a rate", file: file, line: line)
    let measured = Double(hits) / Double(max(total, 1))
    XCTAssertEqual(measured, rate, accuracy: tolerance, "\(what): \(hits)/\(total)", file: file, line: line)
}
