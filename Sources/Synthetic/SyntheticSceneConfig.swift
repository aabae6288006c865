import MapCore

/// Depth sensor noise: Gaussian noise growing with the square of depth, random elliptical holes, and dropout at
/// grazing angles. `DepthNoiseConfig.none` gives the clean depth.
public struct DepthNoiseConfig: Sendable, Equatable, Codable {
    /// Noise standard deviation per squared metre: sigma = k * z^2 (1/m). 0 disables.
    public var sigmaPerSquareMetre: Double = 0.0015
    /// Largest number of holes per frame; each frame draws a count uniformly in 0...max.
    public var maxHolesPerFrame: Int = 3
    /// Range of the hole semi-axes as a fraction of the image width.
    public var holeRadiusMinFraction: Double = 0.01
    public var holeRadiusMaxFraction: Double = 0.05
    /// Pixels whose |cos| between the surface normal and the viewing ray is below this are set to 0 (0 disables).
    public var grazingCosineThreshold: Double = 0.1

    public init() {}

    /// No noise at all: the noisy depth equals the clean depth.
    public static var none: DepthNoiseConfig {
        var c = DepthNoiseConfig()
        c.sigmaPerSquareMetre = 0; c.maxHolesPerFrame = 0; c.grazingCosineThreshold = 0
        return c
    }
    /// The default, a structured-light-like sensor.
    public static var realistic: DepthNoiseConfig { DepthNoiseConfig() }
}

/// Errors of a 2D segmenter applied to the ground-truth panoptic image. Rates are probabilities per segment.
public struct MaskNoiseConfig: Sendable, Equatable, Codable {
    /// Probability that a segment is not detected (removed).
    public var missRate: Double = 0.05
    /// Probability that a segment gets another class of the same kind (thing -> thing, stuff -> stuff).
    public var wrongLabelRate: Double = 0.05
    /// Probability that a segment is split in two by a random line through its centroid.
    public var overSegmentationRate: Double = 0.05
    /// Probability that a thing segment is merged with a touching thing segment (the result keeps one of the classes).
    public var underSegmentationRate: Double = 0.05
    /// Pixels within this many pixels (Chebyshev distance) of a segment boundary are set to 0.
    public var erosionRadiusPixels: Int = 1
    /// Ground-truth regions with fewer pixels than this are not segments (never reported).
    public var minSegmentPixels: Int = 50
    /// Scores are uniform in [minScore, 1].
    public var minScore: Double = 0.5

    public init() {}

    /// The default: a moderately noisy segmenter.
    public static var noisy: MaskNoiseConfig { MaskNoiseConfig() }
    /// A perfect segmenter: no errors, scores 1; ids are still random per frame.
    public static var clean: MaskNoiseConfig {
        var c = MaskNoiseConfig()
        c.missRate = 0; c.wrongLabelRate = 0; c.overSegmentationRate = 0; c.underSegmentationRate = 0
        c.erosionRadiusPixels = 0; c.minScore = 1
        return c
    }
}

/// Everything that defines a synthetic sequence. Same config (including the seed) -> identical output.
public struct SyntheticSceneConfig: Sendable, Equatable, Codable {
    /// Seed of all randomness (depth noise, mask noise, surface samples). Geometry and trajectory are fixed.
    public var seed: UInt64 = 1
    /// Image size in pixels.
    public var width: Int = 320
    public var height: Int = 240
    /// Focal length as a multiple of the image width: fx = fy = focalLengthPerWidth * width pixels (0.8 = ~64° hfov).
    public var focalLengthPerWidth: Double = 0.8
    /// Number of frames of the sequence (one loop around the room whatever the count).
    public var frameCount: Int = 60
    /// Frame rate (Hz), for the frame timestamps.
    public var framesPerSecond: Double = 10
    public var trajectory = TrajectoryConfig()
    public var depthNoise = DepthNoiseConfig.realistic
    public var maskNoise = MaskNoiseConfig.noisy
    /// Number of ground-truth surface samples `surfaceSamples()` returns.
    public var surfaceSampleCount: Int = 1_000_000
    /// Render with two threads (rows split in halves; the result is identical either way).
    public var parallelRendering: Bool = true

    public init() {}

    /// Small, fast settings for tests (64 x 48 px, few frames; noise settings unchanged).
    public static func small(width: Int = 64, height: Int = 48, frameCount: Int = 12, seed: UInt64 = 1)
        -> SyntheticSceneConfig
    {
        var c = SyntheticSceneConfig()
        c.width = width; c.height = height; c.frameCount = frameCount; c.seed = seed
        c.maskNoise.minSegmentPixels = max(1, 50 * width * height / (320 * 240))
        c.surfaceSampleCount = 5_000
        return c
    }

    /// Checks every value; throws `MapError(.badArgument)` naming the field and the accepted range.
    public func validate() throws {
        func bad(_ what: String, _ hint: String) -> MapError {
            MapError(.badArgument, "synthetic scene: \(what)", hint: hint)
        }
        func check(_ ok: Bool, _ what: String, _ hint: String) throws { if !ok { throw bad(what, hint) } }
        func rate(_ v: Double, _ name: String) throws {
            try check(v.isFinite && v >= 0 && v <= 1, "\(name) = \(v) is not a probability", "use a value in [0, 1]")
        }
        try check((8...8192).contains(width) && (8...8192).contains(height), "image size \(width)x\(height)",
                  "use a width and height in 8...8192 pixels")
        try check(focalLengthPerWidth.isFinite && focalLengthPerWidth > 0.05 && focalLengthPerWidth < 50,
                  "focalLengthPerWidth = \(focalLengthPerWidth)", "use a value in (0.05, 50); 0.8 gives ~64° hfov")
        try check(frameCount >= 1 && frameCount <= 1_000_000, "frameCount = \(frameCount)", "use 1...1000000 frames")
        try check(framesPerSecond.isFinite && framesPerSecond > 0, "framesPerSecond = \(framesPerSecond)",
                  "use a positive frame rate")
        try check(surfaceSampleCount >= 0 && surfaceSampleCount <= 50_000_000,
                  "surfaceSampleCount = \(surfaceSampleCount)", "use 0...50000000 samples")

        let d = depthNoise
        try check(d.sigmaPerSquareMetre.isFinite && d.sigmaPerSquareMetre >= 0 && d.sigmaPerSquareMetre < 1,
                  "depthNoise.sigmaPerSquareMetre = \(d.sigmaPerSquareMetre)", "use a value in [0, 1) per m (e.g. 0.0015)")
        try check(d.maxHolesPerFrame >= 0 && d.maxHolesPerFrame <= 1000, "depthNoise.maxHolesPerFrame = \(d.maxHolesPerFrame)",
                  "use 0...1000")
        try check(d.holeRadiusMinFraction.isFinite && d.holeRadiusMaxFraction.isFinite && d.holeRadiusMinFraction > 0
                  && d.holeRadiusMinFraction <= d.holeRadiusMaxFraction && d.holeRadiusMaxFraction <= 1,
                  "depthNoise hole radius range \(d.holeRadiusMinFraction)...\(d.holeRadiusMaxFraction)",
                  "use 0 < min <= max <= 1 (fractions of the image width)")
        try check(d.grazingCosineThreshold.isFinite && d.grazingCosineThreshold >= 0 && d.grazingCosineThreshold < 1,
                  "depthNoise.grazingCosineThreshold = \(d.grazingCosineThreshold)", "use a value in [0, 1)")

        let m = maskNoise
        try rate(m.missRate, "maskNoise.missRate")
        try rate(m.wrongLabelRate, "maskNoise.wrongLabelRate")
        try rate(m.overSegmentationRate, "maskNoise.overSegmentationRate")
        try rate(m.underSegmentationRate, "maskNoise.underSegmentationRate")
        try check(m.erosionRadiusPixels >= 0 && m.erosionRadiusPixels <= 16,
                  "maskNoise.erosionRadiusPixels = \(m.erosionRadiusPixels)", "use 0...16 pixels")
        try check(m.minSegmentPixels >= 1, "maskNoise.minSegmentPixels = \(m.minSegmentPixels)", "use at least 1 pixel")
        try check(m.minScore.isFinite && m.minScore >= 0 && m.minScore <= 1, "maskNoise.minScore = \(m.minScore)",
                  "use a value in [0, 1]")

        let t = trajectory
        let values = [t.radiusXMetres, t.radiusYMetres, t.heightMetres, t.heightAmplitudeMetres, t.targetRadiusMetres,
                      t.targetHeightMetres, t.targetHeightAmplitudeMetres, t.lookSwayRadians, t.loops]
        try check(values.allSatisfy(\.isFinite), "trajectory has a non-finite value", "use finite numbers")
        try check(t.radiusXMetres >= 0 && t.radiusYMetres >= 0 && t.heightAmplitudeMetres >= 0
                  && t.targetHeightAmplitudeMetres >= 0 && t.loops > 0,
                  "trajectory radii/amplitudes must be >= 0 and loops > 0", "fix the trajectory settings")
        // The camera must stay in free space, at least 0.25 m from any surface, and must not look straight up/down.
        let room = SyntheticRoom()
        let path = SyntheticTrajectory(config: t, frameCount: 256)
        for k in 0..<256 {
            let (eye, target) = path.eyeAndTarget(phase: Double(k) / 256)
            let clearance = room.sdf(eye)
            try check(clearance >= 0.25,
                      "trajectory passes \(clearance) m from a surface at \(eye) (needs >= 0.25 m of free space)",
                      "keep the radii below ~1.6 x 1.2 m and the height in ~1.2...2.0 m")
            let v = target - eye
            try check((v.x * v.x + v.y * v.y).squareRoot() > 0.2 * abs(v.z),
                      "trajectory looks (almost) vertically at \(eye)", "reduce the target height amplitude")
        }
    }
}
