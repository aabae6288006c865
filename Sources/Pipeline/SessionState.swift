import Fields
import Foundation
import IO
import Kernels
import MapCore

/// What a checkpoint holds and how it maps onto the mapper. Blobs: `geometry.bin`, `semantic.bin`, `instance.bin`
/// (hash grid + MLP parameters and Adam moments, binary), `gaussians.bin` (the Gaussians, their Adam moments,
/// densification statistics, step count and random generator, binary) and `state.json` (session config, trainer states incl.
/// random generators, tokens and their Adam moments, class head, token usage, keyframe set as source indices with
/// their ages, observed box, keyframe-manager state, source position, counters). Keyframe images are not stored:
/// they are re-read from the source by index on resume (replay and synthetic sources are random access).
enum SessionState {
    struct Core: Codable {
        var config: SessionConfig
        var geometry: GeometryTrainerState?
        var panoptic: PanopticTrainerState?
        var keyframeIndices: [Int]
        var ages: [Int]
        var observed: SceneBounds?
        var mapperRNG: SeededRNG
        var keyframeState: KeyframeManagerState
        var position: Int
        var progress: SessionProgress
        var snapshotSequence: Int
        var final: Bool
        /// Mask arrival order and panoptic rounds done (see `OnlineMapper.panopticRounds`); absent in older states.
        var maskArrivals: [Int]?
        var panopticRoundsDone: Int?
        var panopticWindows: [Int: [Int]]?
    }

    static func checkpoint(sequence: Int, config: SessionConfig, mapper: OnlineMapper,
                           keyframeState: KeyframeManagerState, position: Int, progress: SessionProgress,
                           snapshotSequence: Int, final: Bool) throws -> Checkpoint {
        let core = Core(config: config, geometry: mapper.geometry?.state, panoptic: mapper.panoptic?.state,
                        keyframeIndices: mapper.keyframes.map(\.index), ages: mapper.ages, observed: mapper.observed,
                        mapperRNG: mapper.rng, keyframeState: keyframeState, position: position, progress: progress,
                        snapshotSequence: snapshotSequence, final: final, maskArrivals: mapper.maskArrivals,
                        panopticRoundsDone: mapper.roundsDone, panopticWindows: mapper.windows)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var blobs: [String: [UInt8]] = ["state.json": Array(try enc.encode(core))]
        if let g = mapper.geometry { blobs["geometry.bin"] = encode(g.field.core.state) }
        if let a = mapper.appearance { blobs["gaussians.bin"] = encode(a.state) }
        if let p = mapper.panoptic {
            blobs["semantic.bin"] = encode(p.semantic.core.state)
            blobs["instance.bin"] = encode(p.instance.core.state)
        }
        return Checkpoint(sequence: sequence,
                          metadata: ["position": String(position), "keyframes": String(mapper.keyframes.count),
                                     "final": String(final)],
                          blobs: blobs)
    }

    struct Restored {
        var config: SessionConfig
        var mapper: OnlineMapper
        var keyframeState: KeyframeManagerState
        var position: Int
        var progress: SessionProgress
        var snapshotSequence: Int
        /// The checkpoint was written after the final refinement: only the export is left to do.
        var final: Bool
    }

    static func restore(_ c: Checkpoint, info: SourceInfo, frames: (Int) throws -> Frame) throws -> Restored {
        guard let json = c.blobs["state.json"] else {
            throw MapError(.badFormat, "checkpoint \(c.sequence) has no state.json", hint: "start a new run")
        }
        let core: Core
        do { core = try JSONDecoder().decode(Core.self, from: Data(json)) } catch {
            throw MapError(.badFormat, "checkpoint \(c.sequence): state.json does not decode: \(error)",
                           hint: "start a new run (the checkpoint was written by another version?)")
        }
        let mapper = try OnlineMapper(config: core.config.mapper, info: info)
        let keyframes = try core.keyframeIndices.map { try frames($0) }
        guard keyframes.count == core.ages.count else {
            throw MapError(.badFormat, "checkpoint \(c.sequence): \(keyframes.count) keyframes but \(core.ages.count) ages",
                           hint: "start a new run")
        }
        try mapper.restore(keyframes: keyframes, ages: core.ages, observed: core.observed, rng: core.mapperRNG)
        mapper.maskArrivals = core.maskArrivals ?? []
        // Keyframes whose masks arrived after this checkpoint was written (the store has them already) arrive now.
        let listed = Set(mapper.maskArrivals)
        mapper.maskArrivals += keyframes.filter { $0.masks != nil && !listed.contains($0.index) }.map(\.index)
        mapper.roundsDone = core.panopticRoundsDone ?? mapper.maskArrivals.count
        mapper.windows = core.panopticWindows ?? [:]
        if let g = mapper.geometry {
            guard let blob = c.blobs["geometry.bin"], let s = core.geometry else {
                throw MapError(.badFormat, "checkpoint \(c.sequence) lacks the geometry state", hint: "start a new run")
            }
            try g.field.core.restore(try decode(blob, name: "geometry.bin"), what: "geometry")
            g.restore(s)
        }
        if let p = mapper.panoptic {
            guard let sem = c.blobs["semantic.bin"], let ins = c.blobs["instance.bin"], let s = core.panoptic else {
                throw MapError(.badFormat, "checkpoint \(c.sequence) lacks the panoptic state", hint: "start a new run")
            }
            try p.semantic.core.restore(try decode(sem, name: "semantic.bin"), what: "semantic")
            try p.instance.core.restore(try decode(ins, name: "instance.bin"), what: "instance")
            try p.restore(s)
        }
        if let a = mapper.appearance {
            guard let blob = c.blobs["gaussians.bin"] else {
                throw MapError(.badFormat, "checkpoint \(c.sequence) lacks the Gaussians (gaussians.bin)",
                               hint: "resume from an older checkpoint or start a new run")
            }
            try a.restore(try decodeGaussians(blob, name: "gaussians.bin"))
        }
        return Restored(config: core.config, mapper: mapper, keyframeState: core.keyframeState, position: core.position,
                        progress: core.progress, snapshotSequence: core.snapshotSequence, final: core.final)
    }

    static func encode(_ s: HashMLPState) -> [UInt8] {
        var w = BlobWriter(capacity: 4 * 3 * (s.gridParams.count + s.mlpParams.count) + 256)
        for a in [s.gridParams, s.gridAdam.m, s.gridAdam.v, s.mlpParams, s.mlpAdam.m, s.mlpAdam.v] { w.write(a) }
        w.write(s.gridAdam.step)
        w.write(s.mlpAdam.step)
        return w.bytes
    }

    static func encode(_ s: GaussianTrainerState) -> [UInt8] {
        let g = s.gaussians
        var w = BlobWriter(capacity: 4 * 44 * g.count + 256)
        for a in [g.means, g.logScales, g.rotations, g.opacityLogits, g.colors] { w.write(a) }
        for a in s.adam {
            w.write(a.m)
            w.write(a.v)
            w.write(a.step)
        }
        w.write(s.gradientSum)
        w.write(s.gradientCount)
        w.write(s.steps)
        w.write(s.rng.state)
        return w.bytes
    }

    static func decodeGaussians(_ bytes: [UInt8], name: String) throws -> GaussianTrainerState {
        var r = BlobReader(bytes, name: name)
        let g = GaussianSet(means: try r.readFloats(), logScales: try r.readFloats(), rotations: try r.readFloats(),
                            opacityLogits: try r.readFloats(), colors: try r.readFloats())
        var adam: [AdamState] = []
        for _ in 0..<5 {
            var a = AdamState(parameterCount: 0)
            a.m = try r.readFloats(); a.v = try r.readFloats(); a.step = try r.readInt()
            adam.append(a)
        }
        let sum = try r.readFloats(), count = try r.readFloats(), steps = try r.readInt()
        let rng = SeededRNG(seed: try r.readUInt64())
        try r.finish()
        return GaussianTrainerState(gaussians: g, adam: adam, gradientSum: sum, gradientCount: count, steps: steps,
                                    rng: rng)
    }

    static func decode(_ bytes: [UInt8], name: String) throws -> HashMLPState {
        var r = BlobReader(bytes, name: name)
        let gp = try r.readFloats(), gm = try r.readFloats(), gv = try r.readFloats()
        let mp = try r.readFloats(), mm = try r.readFloats(), mv = try r.readFloats()
        var ga = AdamState(parameterCount: 0), ma = AdamState(parameterCount: 0)
        ga.m = gm; ga.v = gv; ga.step = try r.readInt()
        ma.m = mm; ma.v = mv; ma.step = try r.readInt()
        try r.finish()
        return HashMLPState(gridParams: gp, mlpParams: mp, gridAdam: ga, mlpAdam: ma)
    }
}
