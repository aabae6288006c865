import MapCore

/// What the panoptic optimisation keeps of a frame: depth, pose, intrinsics and its labelled pixels (valid depth in
/// [near, far], a non-zero mask id listed in the frame's segments whose class is in the vocabulary), each with its
/// class index and, for thing classes, the frame-local slot of its 2D instance mask. Mask ids are per frame and mean
/// nothing across frames; the slot is just the id's position among this frame's thing masks.
/// A frame without masks has no labelled pixels and is never sampled; a mask image of another size than the depth
/// image is resized (nearest) to it; ids without a segment, or whose class is not in the vocabulary, are skipped and
/// counted.
public struct PanopticTrainingFrame: Sendable {
    public var index: Int
    public var depth: [Float]
    public var T_W_C: RigidTransform
    public var intrinsics: Intrinsics
    /// Linear pixel indices (y * width + x) with a usable label, ascending.
    public var labelledPixels: [Int32]
    /// Class index (position in the vocabulary) of each labelled pixel.
    public var classes: [Int32]
    /// Thing-mask slot (0..<maskThingClasses.count) of each labelled pixel, -1 for stuff pixels.
    public var maskSlots: [Int32]
    /// Positions in `labelledPixels` of the thing pixels.
    public var thingPixels: [Int32]
    /// Positions in `labelledPixels` of each thing mask's pixels (one list per slot; may be empty).
    public var slotPixels: [[Int32]]
    /// Thing-class index (position among the vocabulary's thing classes) of each thing-mask slot.
    public var maskThingClasses: [Int32]
    /// Pixels with valid depth and a non-zero id that were skipped (no segment, or class not in the vocabulary).
    public var skippedPixels: Int

    /// `classIndex` maps a class id to its vocabulary index (nil = unknown); `thingIndex` maps a vocabulary index to
    /// its thing-class index (nil for stuff).
    public init(_ frame: Frame, near: Float, far: Float, classIndex: (Int) -> Int?, thingIndex: (Int) -> Int?) {
        index = frame.index
        depth = frame.depth.data
        T_W_C = frame.T_W_C
        intrinsics = frame.intrinsics
        labelledPixels = []; classes = []; maskSlots = []; thingPixels = []; maskThingClasses = []; slotPixels = []
        skippedPixels = 0
        guard let masks = frame.masks, !masks.segments.isEmpty,
              frame.depth.width > 0, frame.depth.height > 0, masks.ids.width > 0, masks.ids.height > 0 else { return }
        let ids = masks.ids.resizedNearest(width: frame.depth.width, height: frame.depth.height)
        // Per id: class index (-1 = unusable) and thing slot (-1 = stuff). The first segment of an id wins.
        var classOfID: [Int: Int32] = [:], slotOfID: [Int: Int32] = [:]
        for s in masks.segments where classOfID[s.id] == nil {
            guard let k = classIndex(s.classID) else { classOfID[s.id] = -1; continue }
            classOfID[s.id] = Int32(k)
            if let t = thingIndex(k) {
                slotOfID[s.id] = Int32(maskThingClasses.count)
                maskThingClasses.append(Int32(t))
            } else {
                slotOfID[s.id] = -1
            }
        }
        slotPixels = Array(repeating: [], count: maskThingClasses.count)
        for (i, d) in depth.enumerated() where d.isFinite && d >= near && d <= far {
            let id = Int(ids.data[i])
            guard id != 0 else { continue }
            guard let k = classOfID[id], k >= 0 else { skippedPixels += 1; continue }
            let slot = slotOfID[id] ?? -1
            if slot >= 0 {
                thingPixels.append(Int32(labelledPixels.count))
                slotPixels[Int(slot)].append(Int32(labelledPixels.count))
            }
            labelledPixels.append(Int32(i))
            classes.append(k)
            maskSlots.append(slot)
        }
    }
}
