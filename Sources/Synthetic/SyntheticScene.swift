import MapCore

/// One frame of a synthetic sequence: what a sensor + segmenter would deliver (`frame`: RGB, noisy depth, pose,
/// intrinsics, noisy masks) and the ground truth behind it.
public struct SyntheticFrame: Sendable, Equatable {
    /// The mapper's input: rgb, noisy depth (metres, 0 = invalid), T_W_C, intrinsics and the noisy 2D masks.
    public var frame: Frame
    /// Depth without sensor noise (metres, camera-frame z).
    public var cleanDepth: DepthImage
    /// World-frame unit normals (3 channels).
    public var normals: Image<Float>
    /// Ground-truth semantic class per pixel (0 = none).
    public var semantic: Gray16Image
    /// Ground-truth global instance id per pixel (0 for stuff).
    public var instance: Gray16Image
    /// Ground-truth panoptic segment id per pixel (see `SyntheticScene.segmentTable`).
    public var panoptic: Gray16Image
    /// What the mask noise did (which GT segments each mask id came from).
    public var maskLog: MaskNoiseLog

    public var index: Int { frame.index }
    public var masks: FrameMasks { frame.masks! }
}

/// The synthetic ground-truth scene: an analytic room, a camera loop, an exact renderer, sensor and segmenter noise.
/// Everything is deterministic for `config.seed`, and frame i depends only on (config, i).
public struct SyntheticScene: Sendable {
    public let config: SyntheticSceneConfig
    public let room: SyntheticRoom
    public let intrinsics: Intrinsics
    public let trajectory: SyntheticTrajectory
    public let segmentTable: PanopticSegmentTable
    public let renderer: SceneRenderer
    let rng: SeededRNG

    /// Validates `config` (throws `MapError(.badArgument)`) and sets the scene up; frames are rendered on demand.
    public init(config: SyntheticSceneConfig = SyntheticSceneConfig()) throws {
        try config.validate()
        self.config = config
        room = SyntheticRoom()
        let f = config.focalLengthPerWidth * Double(config.width)
        intrinsics = Intrinsics(fx: f, fy: f, cx: Double(config.width - 1) / 2, cy: Double(config.height - 1) / 2,
                                width: config.width, height: config.height)
        trajectory = SyntheticTrajectory(config: config.trajectory, frameCount: config.frameCount)
        segmentTable = PanopticSegmentTable(room: room)
        renderer = SceneRenderer(room: room, segmentTable: segmentTable)
        rng = SeededRNG(seed: config.seed)
    }

    public var vocabulary: Vocabulary { room.vocabulary }
    public var frameCount: Int { config.frameCount }

    /// Scene signed distance (metres; positive in free space).
    public func sdf(_ p: Vec3) -> Double { room.sdf(p) }
    /// Ground-truth label of the solid nearest to `p` (instance 0 for stuff).
    public func label(at p: Vec3) -> (semantic: Int, instance: Int) { room.label(at: p) }

    /// Noise-free render with ground truth from any pose (e.g. novel views for evaluation).
    public func render(T_W_C: RigidTransform, intrinsics K: Intrinsics? = nil) -> SyntheticRender {
        renderer.render(T_W_C: T_W_C, intrinsics: K ?? intrinsics, threads: config.parallelRendering ? 2 : 1)
    }

    /// The generator of frame `i` (independent of every other frame).
    func frameRNG(_ i: Int) -> SeededRNG { rng.fork(0x4652_414D_0000_0000 | UInt64(i)) }

    /// Frame `i` (0-based): rendered, with depth noise (stream fork(1) of the frame generator) and mask noise
    /// (stream fork(2)). Throws `MapError(.badArgument)` when `i` is out of range.
    public func frame(_ i: Int) throws -> SyntheticFrame {
        guard i >= 0 && i < config.frameCount else {
            throw MapError(.badArgument, "synthetic frame \(i) does not exist (the sequence has \(config.frameCount))",
                           frame: i, hint: "ask for a frame in 0..<\(config.frameCount)")
        }
        let T_W_C = trajectory.pose(frame: i)
        let r = render(T_W_C: T_W_C)
        let g = frameRNG(i)
        var depthRNG = g.fork(1), maskRNG = g.fork(2)
        let depth = DepthNoiseModel(config: config.depthNoise).apply(clean: r.depth, viewCosine: r.viewCosine,
                                                                     rng: &depthRNG)
        let (masks, log) = MaskNoiseModel(config: config.maskNoise, vocabulary: vocabulary, segmentTable: segmentTable)
            .apply(panoptic: r.panoptic, rng: &maskRNG)
        let frame = Frame(index: i, timestamp: Double(i) / config.framesPerSecond, rgb: r.rgb, depth: depth,
                          T_W_C: T_W_C, intrinsics: intrinsics, masks: masks)
        return SyntheticFrame(frame: frame, cleanDepth: r.depth, normals: r.normals, semantic: r.semantic,
                              instance: r.instance, panoptic: r.panoptic, maskLog: log)
    }

    /// Ground-truth surface samples on the visible surfaces (default `config.surfaceSampleCount`), deterministic
    /// for the seed.
    public func surfaceSamples(count: Int? = nil) -> [SurfaceSample] {
        SurfaceSampler(room: room).samples(count: count ?? config.surfaceSampleCount,
                                           rng: rng.fork(0x5355_5246_4143_4500), threads: 2)
    }
}
