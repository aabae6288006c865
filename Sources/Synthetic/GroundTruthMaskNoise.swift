import IO
import MapCore

extension MaskNoiseModel {
    /// A `MaskMaker` for `SequenceConverter` that turns a dataset's ground truth (semantic + instance images) into
    /// masks with this noise model, frame `i` drawing from `SeededRNG(seed:).fork(i)`.
    public static func maskMaker(config: MaskNoiseConfig, seed: UInt64) -> MaskMaker {
        { semantic, instance, frameIndex, vocabulary in
            let gt = try GroundTruthMasks.segmentation(semantic: semantic, instance: instance, frameIndex: frameIndex,
                                                       vocabulary: vocabulary)
            let table = PanopticSegmentTable(segments: gt.segments.map {
                PanopticSegment(id: $0.id, classID: $0.classID, instance: $0.instance, isThing: $0.isThing)
            })
            var rng = SeededRNG(seed: seed).fork(UInt64(truncatingIfNeeded: frameIndex))
            return MaskNoiseModel(config: config, vocabulary: vocabulary, segmentTable: table)
                .apply(panoptic: gt.ids, rng: &rng).masks
        }
    }
}
