import Foundation
import Kernels

/// Slow, obviously-correct twin of `HashGrid`: Double arithmetic, plain loops over points, levels and corners, the
/// layout rules written out again from the documentation of `HashGridConfig` (not shared with the kernel).
public struct ReferenceHashGrid {
    public struct Level: Equatable {
        public var resolution: Int
        public var cells: [Int]          // n_x, n_y, n_z
        public var gridScale: [Double]   // R_a = N_l * E_a / E_max: grid coordinate of the box's upper face
        public var isDense: Bool
        public var entryOffset: Int
        public var entryCount: Int
    }

    public let config: HashGridConfig
    public let levels: [Level]
    public let entryCount: Int
    public var features: Int { config.featuresPerLevel }
    public var outputWidth: Int { config.levels * config.featuresPerLevel }
    public var parameterCount: Int { entryCount * features }

    public init(config: HashGridConfig) {
        self.config = config
        let lo = (0..<3).map { Double(config.boundsMin[$0]) }, hi = (0..<3).map { Double(config.boundsMax[$0]) }
        let extent = (0..<3).map { hi[$0] - lo[$0] }
        let longest = extent.max()!
        let tableSize = 1 << config.log2TableSize
        let nMin = Double(config.baseResolution), nMax = Double(config.finestResolution)
        var levels: [Level] = []
        var offset = 0
        for l in 0..<config.levels {
            let b = config.levels > 1 ? exp((log(nMax) - log(nMin)) / Double(config.levels - 1)) : 1
            let n = Int(floor(nMin * pow(b, Double(l)) + 1e-6))
            let h = longest / Double(n)
            let cells = extent.map { max(1, Int(ceil($0 / h - 1e-6))) }
            let corners = (cells[0] + 1) * (cells[1] + 1) * (cells[2] + 1)
            let dense = corners <= tableSize
            let count = dense ? corners : tableSize
            levels.append(Level(resolution: n, cells: cells, gridScale: extent.map { $0 / h }, isDense: dense,
                                entryOffset: offset, entryCount: count))
            offset += count
        }
        self.levels = levels
        entryCount = offset
    }

    /// The corners of the cell holding position p at level l: (global entry index, trilinear weight), corner c with
    /// bit 0 = +x, bit 1 = +y, bit 2 = +z.
    public func corners(_ p: SIMD3<Float>, level l: Int) -> [(entry: Int, weight: Double)] {
        let lv = levels[l]
        var cell = [0, 0, 0], frac = [0.0, 0.0, 0.0]
        for a in 0..<3 {
            let lo = Double(config.boundsMin[a]), hi = Double(config.boundsMax[a])
            var t = (Double(p[a]) - lo) / (hi - lo)
            if !(t > 0) { t = 0 }          // NaN counts as the lower bound
            if t > 1 { t = 1 }
            let x = t * lv.gridScale[a]
            cell[a] = min(Int(floor(x)), lv.cells[a] - 1)
            frac[a] = x - Double(cell[a])
        }
        var out: [(Int, Double)] = []
        for c in 0..<8 {
            let o = [c & 1, (c >> 1) & 1, (c >> 2) & 1]
            let x = cell[0] + o[0], y = cell[1] + o[1], z = cell[2] + o[2]
            var w = 1.0
            for a in 0..<3 { w *= o[a] == 1 ? frac[a] : 1 - frac[a] }
            let local: Int
            if lv.isDense {
                local = x + y * (lv.cells[0] + 1) + z * (lv.cells[0] + 1) * (lv.cells[1] + 1)
            } else {
                let h = UInt64(x) ^ (UInt64(y) &* 2_654_435_761) ^ (UInt64(z) &* 805_459_861)
                local = Int(h % UInt64(lv.entryCount))
            }
            out.append((lv.entryOffset + local, w))
        }
        return out
    }

    /// Encodings of the packed positions, count x outputWidth, level-major within a row.
    public func forward(params: [Float], positions: [Float]) -> [Double] {
        let count = positions.count / 3
        var out = [Double](repeating: 0, count: count * outputWidth)
        for i in 0..<count {
            let p = SIMD3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
            for l in 0..<levels.count {
                for (e, w) in corners(p, level: l) {
                    for k in 0..<features { out[i * outputWidth + l * features + k] += w * Double(params[e * features + k]) }
                }
            }
        }
        return out
    }

    /// d loss / d params given d loss / d output (dense, the parameters' layout).
    public func backward(positions: [Float], gradOutput: [Float]) -> [Double] {
        let count = positions.count / 3
        var grad = [Double](repeating: 0, count: parameterCount)
        for i in 0..<count {
            let p = SIMD3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
            for l in 0..<levels.count {
                for (e, w) in corners(p, level: l) {
                    for k in 0..<features {
                        grad[e * features + k] += w * Double(gradOutput[i * outputWidth + l * features + k])
                    }
                }
            }
        }
        return grad
    }

    /// Entries with a non-zero weight, level by level, in order of first touch (point, then corner): the order
    /// `HashGridTouched.entries` promises for one backward call.
    public func touchedEntries(positions: [Float]) -> [Int32] {
        var out: [Int32] = []
        var seen = Set<Int>()
        for l in 0..<levels.count {
            for i in 0..<(positions.count / 3) {
                let p = SIMD3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])
                for (e, w) in corners(p, level: l) where w != 0 && !seen.contains(e) {
                    seen.insert(e); out.append(Int32(e))
                }
            }
        }
        return out
    }
}
