/// The online mapper: frame sources, the actor pipeline (frontend → keyframe manager → optimizer → snapshot writer,
/// session store) and its persistent formats. See DESIGN.md "Pipeline".
public enum PipelineFormat {
    /// Version of the session checkpoint and snapshot layouts written by this build.
    public static let version = 1
}
