import MapCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shape of the camera path: an ellipse around the room centre with a gentle vertical oscillation, the camera
/// looking across the room at a target that sways sideways and up/down (so walls, floor, ceiling and every object
/// are seen over one loop). Lengths in metres, angles in radians. Smooth (C-infinity) in the sequence phase.
public struct TrajectoryConfig: Sendable, Equatable, Codable {
    /// Semi-axes of the camera ellipse along world x and y (metres), centred on the room centre.
    public var radiusXMetres: Double = 1.5
    public var radiusYMetres: Double = 1.1
    /// Mean camera height above the floor (metres) and the amplitude of its oscillation (metres, two periods per loop).
    public var heightMetres: Double = 1.45
    public var heightAmplitudeMetres: Double = 0.12
    /// Distance of the look-at target from the room centre on the far side (metres).
    public var targetRadiusMetres: Double = 0.7
    /// Mean height of the look-at target (metres) and its amplitude (metres, three periods per loop).
    public var targetHeightMetres: Double = 1.0
    public var targetHeightAmplitudeMetres: Double = 0.6
    /// Amplitude of the sideways sway of the viewing direction (radians, two periods per loop).
    public var lookSwayRadians: Double = 0.45
    /// Number of loops around the room over the whole sequence.
    public var loops: Double = 1

    public init() {}
}

/// The camera poses of a sequence (T_W_C, camera-to-world, OpenCV camera, built with `RigidTransform.lookAt`).
public struct SyntheticTrajectory: Sendable, Equatable {
    public let config: TrajectoryConfig
    public let frameCount: Int

    public init(config: TrajectoryConfig, frameCount: Int) {
        self.config = config; self.frameCount = frameCount
    }

    /// Eye and target at sequence phase `s` (0 = first frame, 1 = one full sequence; continuous in s).
    public func eyeAndTarget(phase s: Double) -> (eye: Vec3, target: Vec3) {
        let c = config
        let phi = 2 * Double.pi * c.loops * s
        let eye = Vec3(c.radiusXMetres * cos(phi), c.radiusYMetres * sin(phi),
                       c.heightMetres + c.heightAmplitudeMetres * sin(2 * phi))
        let psi = phi + Double.pi + c.lookSwayRadians * sin(2 * phi + 0.7)
        let target = Vec3(c.targetRadiusMetres * cos(psi), c.targetRadiusMetres * sin(psi),
                          c.targetHeightMetres + c.targetHeightAmplitudeMetres * sin(3 * phi + 0.4))
        return (eye, target)
    }

    /// Pose T_W_C at continuous sequence phase `s`.
    public func pose(phase s: Double) -> RigidTransform {
        let (eye, target) = eyeAndTarget(phase: s)
        return RigidTransform.lookAt(eye: eye, target: target, up: Vec3(0, 0, 1))
    }

    /// Pose T_W_C of frame `i` (phase i / frameCount).
    public func pose(frame i: Int) -> RigidTransform {
        pose(phase: Double(i) / Double(max(frameCount, 1)))
    }

    /// All frame poses in order.
    public var poses: [RigidTransform] { (0..<frameCount).map { pose(frame: $0) } }
}
