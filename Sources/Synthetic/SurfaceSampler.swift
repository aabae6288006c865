import Dispatch
import Foundation
import MapCore

/// A ground-truth point on a visible surface of the scene (for Accuracy / Completion / Chamfer and 3D labels).
public struct SurfaceSample: Sendable, Equatable {
    /// World position (metres), on the zero level set of the scene SDF.
    public var position: Vec3
    /// Outward unit normal (pointing into free space).
    public var normal: Vec3
    public var semantic: Int
    /// Global instance id, 0 for stuff.
    public var instance: Int

    public init(position: Vec3, normal: Vec3, semantic: Int, instance: Int) {
        self.position = position; self.normal = normal; self.semantic = semantic; self.instance = instance
    }
}

/// Area-weighted uniform samples on the boundary of the union of all solids: a point is drawn uniformly on the
/// surface of one primitive (or the room shell) chosen by area, and rejected unless the union SDF there is ~0 and
/// the space just outside it is free (so faces inside other solids, e.g. the bottom of the box on the table, are
/// not sampled). Deterministic for the generator: chunks of a fixed size use forked generators.
public struct SurfaceSampler: Sendable {
    public let room: SyntheticRoom
    /// Largest |SDF| (metres) accepted at a sample, and the normal offset (metres) tested for free space.
    public var tolerance = 1e-7
    public var probeOffset = 1e-3
    static let chunkSize = 4096

    struct Patch {
        var owner: Int  // object index, or -1...-6 for the shell faces (floor, ceiling, x-, x+, y-, y+)
        var part: Int
        var patch: Int
        var area: Double
    }
    let patches: [Patch]
    let cumulative: [Double]

    public init(room: SyntheticRoom) {
        self.room = room
        var p: [Patch] = []
        let size = room.interiorMax - room.interiorMin
        let shell = [size.x * size.y, size.x * size.y, size.y * size.z, size.y * size.z, size.x * size.z,
                     size.x * size.z]
        for (k, a) in shell.enumerated() { p.append(Patch(owner: -1 - k, part: 0, patch: 0, area: a)) }
        for (k, o) in room.objects.enumerated() {
            for (j, part) in o.parts.enumerated() {
                for s in part.surfacePatches { p.append(Patch(owner: k, part: j, patch: s.patch, area: s.area)) }
            }
        }
        patches = p
        var c: [Double] = [], total = 0.0
        for q in p { total += q.area; c.append(total) }
        cumulative = c
    }

    /// `count` samples, deterministic for `rng` (chunk c uses `rng.fork(c)`); `threads` does not change the result.
    public func samples(count: Int, rng: SeededRNG, threads: Int = 2) -> [SurfaceSample] {
        guard count > 0 else { return [] }
        let chunks = (count + Self.chunkSize - 1) / Self.chunkSize
        let store = ChunkStore(chunks: chunks)
        let work: @Sendable (Int) -> Void = { c in
            let n = min(Self.chunkSize, count - c * Self.chunkSize)
            var g = rng.fork(UInt64(c))
            store.put(c, self.sampleChunk(n, &g))
        }
        if threads > 1 && chunks > 1 {
            DispatchQueue.concurrentPerform(iterations: chunks, execute: work)
        } else {
            for c in 0..<chunks { work(c) }
        }
        return store.joined()
    }

    func sampleChunk(_ n: Int, _ rng: inout SeededRNG) -> [SurfaceSample] {
        var out: [SurfaceSample] = []
        out.reserveCapacity(n)
        let total = cumulative.last!
        var attempts = 0
        while out.count < n && attempts < 1000 * n + 1000 {
            attempts += 1
            // Patch by area (binary search in the cumulative areas).
            let x = rng.uniform() * total
            var lo = 0, hi = cumulative.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] > x { hi = mid } else { lo = mid + 1 }
            }
            let patch = patches[lo]
            let (p, nrm, semantic, instance) = samplePatch(patch, &rng)
            guard abs(room.sdf(p)) <= tolerance, room.sdf(p + probeOffset * nrm) > 0.5 * probeOffset else { continue }
            out.append(SurfaceSample(position: p, normal: nrm, semantic: semantic, instance: instance))
        }
        return out
    }

    func samplePatch(_ patch: Patch, _ rng: inout SeededRNG) -> (Vec3, Vec3, Int, Int) {
        if patch.owner >= 0 {
            let o = room.objects[patch.owner]
            let (p, n) = o.parts[patch.part].samplePatch(patch.patch, &rng)
            return (p, n, o.classID, o.instanceID)
        }
        let lo = room.interiorMin, hi = room.interiorMax
        var p = Vec3(rng.uniform(lo.x, hi.x), rng.uniform(lo.y, hi.y), rng.uniform(lo.z, hi.z))
        var n = Vec3.zero
        let face = -1 - patch.owner
        let axis = [2, 2, 0, 0, 1, 1][face]
        let atMax = face % 2 == 1
        p[axis] = atMax ? hi[axis] : lo[axis]
        n[axis] = atMax ? -1 : 1
        let semantic = face == 0 ? SyntheticRoom.floorClass : face == 1 ? SyntheticRoom.ceilingClass
            : SyntheticRoom.wallClass
        return (p, n, semantic, 0)
    }
}

/// Per-chunk results of a parallel loop. @unchecked Sendable is safe: every access goes through `lock`.
final class ChunkStore: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [[SurfaceSample]]

    init(chunks: Int) { results = Array(repeating: [], count: chunks) }

    func put(_ chunk: Int, _ samples: [SurfaceSample]) {
        lock.lock(); defer { lock.unlock() }
        results[chunk] = samples
    }

    func joined() -> [SurfaceSample] {
        lock.lock(); defer { lock.unlock() }
        return results.flatMap { $0 }
    }
}
