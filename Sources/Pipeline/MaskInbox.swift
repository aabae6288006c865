import Foundation
import IO
import MapCore

/// Masks from an external 2D segmenter arriving after their frames: a directory the segmenter writes into, keyed by
/// the session's frame index.
///
/// Protocol (documented in the README, "Masks arriving late"): for frame `N` the segmenter writes `NNNNNN.png`
/// (16-bit id image, 0 = no segment) and then `NNNNNN.json` (`{"segments": [{"id": 1, "class": 2, "score": 0.9}]}`,
/// classes from the session's vocabulary), each by writing a temporary name and renaming it into place; the JSON
/// appearing means the pair is complete. Frame indices and colour images of the keyframes waiting for masks are in
/// `OUT/keyframes/NNNNNN.png`. Masks may be the keyframe's size or an integer multiple of it (then reduced). Masks
/// for frames that are not (or no longer) keyframes are left alone; a pair that does not read or validate is logged
/// with the reason and read again only once its JSON changes.
public final class MaskInbox: @unchecked Sendable {
    // @unchecked: used by the optimizer alone (one owner at a time, like the mapper).
    public let directory: URL
    let validator: FrameValidator
    /// JSON modification dates of pairs that were refused, so a pair is not re-read (and re-logged) until rewritten.
    private var refused: [Int: Date] = [:]
    public private(set) var delivered = 0
    public private(set) var refusedCount = 0

    public init(directory: URL, vocabulary: Vocabulary?) throws {
        self.directory = directory
        validator = FrameValidator(vocabulary: vocabulary)
        try Files.createDirectory(directory)
    }

    public func imageURL(_ i: Int) -> URL { directory.appendingPathComponent(frameName(i) + ".png") }
    public func segmentsURL(_ i: Int) -> URL { directory.appendingPathComponent(frameName(i) + ".json") }

    /// The masks that have arrived for the frames in `wanted` (index → image size of the keyframe), validated and
    /// brought to the keyframe's size. Each index is returned at most once per arrival.
    public func poll(wanted: [Int: ImageSize]) -> [(index: Int, masks: FrameMasks)] {
        var out: [(Int, FrameMasks)] = []
        for (i, size) in wanted.sorted(by: { $0.key < $1.key }) {
            let json = segmentsURL(i)
            guard let date = (try? FileManager.default.attributesOfItem(atPath: json.path))?[.modificationDate] as? Date
            else { continue }
            if let seen = refused[i], seen == date { continue }
            do {
                out.append((i, try read(i, size: size)))
                refused[i] = nil
                delivered += 1
            } catch {
                refused[i] = date
                refusedCount += 1
                pipelineLog.warning("mask inbox: refused the masks of frame \(i): \(error)")
            }
        }
        return out
    }

    /// Reads and validates the pair of frame `i` for a keyframe of `size`.
    func read(_ i: Int, size: ImageSize) throws -> FrameMasks {
        var masks = try MaskFiles.read(image: imageURL(i), segments: segmentsURL(i), frame: i)
        let w = masks.ids.width, h = masks.ids.height
        if w != size.width, w % size.width == 0, h % size.height == 0, w / size.width == h / size.height {
            masks = masks.reduced(by: w / size.width)
        }
        try validator.validate(masks, frame: i, size: size, files: imageURL(i).path)
        return masks
    }
}
