import MapCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Linear RGB in [0, 1].
public typealias Colour = SIMD3<Double>

/// A view-independent surface appearance: two colours mixed by a procedural pattern in world coordinates, modulated
/// by smooth value noise, so photometric metrics have texture to work with. Shading is Lambertian (`Lighting`).
public struct Material: Sendable, Equatable {
    public enum Pattern: Sendable, Equatable {
        /// 3D checker with cells of `size` metres.
        case checker(size: Double)
        /// Soft stripes across the world direction `axis`, `period` metres apart.
        case stripes(axis: Vec3, period: Double)
        /// Base colour only (the noise still applies).
        case plain
    }

    public var base: Colour
    public var accent: Colour
    public var pattern: Pattern
    /// Spatial frequency of the modulating value noise (1/m) and its strength (0 = none, 0.5 = +-25 %).
    public var noiseFrequency: Double
    public var noiseAmount: Double

    public init(base: Colour, accent: Colour, pattern: Pattern, noiseFrequency: Double = 4, noiseAmount: Double = 0.3) {
        self.base = base; self.accent = accent; self.pattern = pattern
        self.noiseFrequency = noiseFrequency; self.noiseAmount = noiseAmount
    }

    /// Albedo at world point `p`.
    @inlinable public func albedo(at p: Vec3) -> Colour {
        // A fixed off-lattice offset keeps pattern edges away from the exact planes of the scene (z = 0, ...).
        let q = p + Vec3(0.1234, 0.2345, 0.3456)
        let mix: Double
        switch pattern {
        case .checker(let size):
            let i = Int(floor(q.x / size)) &+ Int(floor(q.y / size)) &+ Int(floor(q.z / size))
            mix = i & 1 == 0 ? 0 : 1
        case .stripes(let axis, let period):
            let s = sin(2 * Double.pi * dot(q, axis) / period)
            mix = min(1, max(0, 0.5 + 1.5 * s))
        case .plain:
            mix = 0
        }
        let c = base + (accent - base) * mix
        let n = ValueNoise.fractal(q * noiseFrequency)
        return c * (1 + noiseAmount * (n - 0.5))
    }
}

/// Fixed directional lights + ambient; colour = albedo * (ambient + sum_k intensity_k * max(0, n . l_k)).
public enum Lighting {
    public static let ambient = 0.35
    /// Unit directions towards the lights (world) and their intensities.
    public static let lights: [(direction: Vec3, intensity: Double)] = [
        (normalize(Vec3(0.35, 0.25, 1.0)), 0.55),
        (normalize(Vec3(-0.6, 0.7, 0.25)), 0.3),
    ]

    @inlinable public static func shade(albedo: Colour, normal n: Vec3) -> Colour {
        let l0 = lights[0], l1 = lights[1]
        let s = ambient + l0.intensity * max(0, dot(n, l0.direction)) + l1.intensity * max(0, dot(n, l1.direction))
        return albedo * s
    }
}

/// Smooth lattice value noise in [0, 1] (trilinear interpolation of hashed lattice values with a smoothstep fade).
public enum ValueNoise {
    @inlinable static func lattice(_ x: Int, _ y: Int, _ z: Int) -> Double {
        var h = (UInt64(bitPattern: Int64(x)) &* 0x9E37_79B9_7F4A_7C15)
            ^ (UInt64(bitPattern: Int64(y)) &* 0xC2B2_AE3D_27D4_EB4F)
            ^ (UInt64(bitPattern: Int64(z)) &* 0x1656_67B1_9E37_79F9)
        h ^= h >> 31; h = h &* 0xBF58_476D_1CE4_E5B9; h ^= h >> 29
        return Double(h >> 11) * 0x1p-53
    }

    @inlinable public static func noise(_ p: Vec3) -> Double {
        let fx = floor(p.x), fy = floor(p.y), fz = floor(p.z)
        let ix = Int(fx), iy = Int(fy), iz = Int(fz)
        var tx = p.x - fx, ty = p.y - fy, tz = p.z - fz
        tx = tx * tx * (3 - 2 * tx); ty = ty * ty * (3 - 2 * ty); tz = tz * tz * (3 - 2 * tz)
        func lerp(_ a: Double, _ b: Double, _ t: Double) -> Double { a + (b - a) * t }
        let c00 = lerp(lattice(ix, iy, iz), lattice(ix + 1, iy, iz), tx)
        let c10 = lerp(lattice(ix, iy + 1, iz), lattice(ix + 1, iy + 1, iz), tx)
        let c01 = lerp(lattice(ix, iy, iz + 1), lattice(ix + 1, iy, iz + 1), tx)
        let c11 = lerp(lattice(ix, iy + 1, iz + 1), lattice(ix + 1, iy + 1, iz + 1), tx)
        return lerp(lerp(c00, c10, ty), lerp(c01, c11, ty), tz)
    }

    /// Two octaves (weights 2/3 and 1/3).
    @inlinable public static func fractal(_ p: Vec3) -> Double {
        (2 * noise(p) + noise(p * 2.03 + Vec3(17.1, 5.3, 9.7))) / 3
    }
}
