import Evaluation
import Fields
import Foundation
import IO
import Kernels
import MapCore

/// Settings of an online mapping run (units in the names or comments). Saved with every checkpoint; a resumed run
/// uses the saved one.
public struct OnlineMapperConfig: Sendable, Codable, Equatable {
    public var seed: UInt64 = 1
    /// Half-size (metres) of the mapped cube, centred on the first camera (the hash grids need bounds up front).
    public var extent: Float = 4
    /// Hash grids of all fields.
    public var levels = 8
    public var log2Table = 16
    /// Finest hash-grid cell (metres).
    public var finestCell: Float = 0.02
    /// Mesh voxel (metres).
    public var voxel: Float = 0.02
    public var keyframes = KeyframePolicy()
    /// Optimiser budget per new keyframe (iterations, so that a run is reproducible).
    public var geometryStepsPerKeyframe = 60
    public var panopticStepsPerKeyframe = 30
    /// Schedule by keyframe age: a keyframe joins the semantic / instance steps once it has been in this many
    /// geometry steps (geometry first).
    public var panopticMinAge = 60
    /// Refinement over all keyframes when the source ends.
    public var finalGeometrySteps = 2500
    public var finalPanopticSteps = 1666
    /// Train the panoptic fields (needs masks and a vocabulary with a thing class).
    public var panoptic = true
    /// Appearance: 3D Gaussians seeded from keyframe depth, `appearanceStepsPerKeyframe` steps on the window per
    /// keyframe and `finalAppearanceSteps` over all keyframes at the end.
    public var appearance = true
    public var appearanceStepsPerKeyframe = 20
    public var finalAppearanceSteps = 1000
    public var raysPerStep = 1024

    public init() {}

    public func validate() throws {
        try keyframes.validate()
        guard extent > 0, finestCell > 0, voxel > 0, levels >= 1, log2Table >= 8, raysPerStep >= 1,
              geometryStepsPerKeyframe >= 0, panopticStepsPerKeyframe >= 0, panopticMinAge >= 0,
              finalGeometrySteps >= 0, finalPanopticSteps >= 0, appearanceStepsPerKeyframe >= 0,
              finalAppearanceSteps >= 0 else {
            throw MapError(.badArgument, "online mapper config: sizes and step counts must be positive",
                           hint: "check the command-line options")
        }
    }
}

/// The parameters of a hash grid + MLP core (no optimiser state: outputs do not need it).
struct FieldParams: Sendable {
    var grid: [Float]
    var mlp: [Float]

    init(_ core: HashMLPField) { grid = core.gridParams; mlp = core.mlpParams }

    func load(into core: HashMLPField, what: String) throws {
        guard grid.count == core.gridParams.count, mlp.count == core.mlpParams.count else {
            throw MapError(.sizeMismatch, "\(what) parameters do not fit the replica field", hint: "use one snapshot builder per session")
        }
        core.gridParams = grid
        core.mlpParams = mlp
    }
}

/// A copy of the mapper's output-relevant state at one moment (see `OnlineMapper.takeView`), sent to the snapshot
/// writer so that meshing, labelling and rendering run there while the optimizer goes on.
struct MapView: Sendable {
    var bounds: SceneBounds
    var observed: SceneBounds
    var dirty: [BlockKey]
    var keyframes: [Frame]
    var geometry: FieldParams
    var logXi: Float
    var semantic: FieldParams?
    var instance: FieldParams?
    var panoptic: PanopticTrainerState?
    var gaussians: GaussianSet?
}

/// What integrating one keyframe did.
public struct IntegrationReport: Sendable {
    public var keyframes: Int
    public var geometry: GeometryStepStats
    public var panoptic: PanopticStepStats?
    public var appearance: GaussianStepStats?
    public var seconds: Double
}

/// The mapping state and its step functions, owned by the optimizer actor (plain class, one owner at a time). Heavy
/// math only; no concurrency here. Keyframes are integrated in arrival order with a fixed iteration budget each, so a
/// run is a pure function of (config, source frames).
public final class OnlineMapper {
    public let config: OnlineMapperConfig
    public let info: SourceInfo
    public private(set) var geometry: GeometryTrainer?
    public private(set) var panoptic: PanopticTrainer?
    public private(set) var appearance: GaussianTrainer?
    /// Gaussians shown by a snapshot replica (`show`); the appearance trainer's otherwise.
    var shownGaussians: GaussianSet?
    /// The keyframes (full frames: colours and culling need them) and their source indices.
    public private(set) var keyframes: [Frame] = []
    /// Geometry steps each keyframe has been part of the window for (its age).
    public private(set) var ages: [Int] = []
    /// Box of everything observed so far (grows with every keyframe).
    public private(set) var observed: SceneBounds?
    /// The cube the fields cover.
    public private(set) var bounds: SceneBounds?
    var mesher: BlockMesher?
    /// Source indices of the keyframes in the order their masks became available (at integration, or later through
    /// `attachMasks`), and how many of these arrivals have had their panoptic round (see `panopticRounds`).
    public internal(set) var maskArrivals: [Int] = []
    public internal(set) var roundsDone = 0
    /// Per kept keyframe (source index): the source indices of the geometry window it was integrated with.
    public internal(set) var windows: [Int: [Int]] = [:]
    /// Blocks whose part of the field changed since the last snapshot.
    public private(set) var dirty: Set<BlockKey> = []
    var rng: SeededRNG

    public init(config: OnlineMapperConfig, info: SourceInfo) throws {
        try config.validate()
        self.config = config
        self.info = info
        rng = SeededRNG(seed: config.seed &+ 7)
    }

    var usesPanoptic: Bool {
        config.panoptic && (info.vocabulary?.classes.contains(where: \.isThing) ?? false)
    }

    /// Creates the fields around the first camera.
    func start(at frame: Frame) throws {
        let c = frame.T_W_C.translation
        let centre = SIMD3<Float>(Float(c.x), Float(c.y), Float(c.z))
        try start(bounds: SceneBounds(min: centre - config.extent, max: centre + config.extent))
    }

    /// Creates the fields (fresh parameters from the seed) and an empty mesher over the cube `b`.
    func start(bounds b: SceneBounds) throws {
        bounds = b
        let grid = HashGridConfig(boundsMin: b.min, boundsMax: b.max, levels: config.levels, featuresPerLevel: 2,
                                  log2TableSize: config.log2Table, baseResolution: 16,
                                  finestResolution: max(32, Int((2 * config.extent / config.finestCell).rounded())))
        var gc = GeometryTrainerConfig()
        gc.seed = config.seed
        gc.raysPerStep = config.raysPerStep
        geometry = try GeometryTrainer(config: gc, field: try GeometryField(config: GeometryField.Config(grid: grid),
                                                                            seed: config.seed))
        if usesPanoptic, let vocabulary = info.vocabulary {
            var pc = PanopticTrainerConfig()
            pc.seed = config.seed
            pc.instanceStart = 150
            pc.panopticStart = 600
            panoptic = try PanopticTrainer(
                config: pc, geometry: geometry!.field,
                semantic: try SemanticField(config: SemanticField.Config(grid: grid), vocabulary: vocabulary,
                                            seed: config.seed &+ 1),
                instance: try InstanceField(config: InstanceField.Config(grid: grid), seed: config.seed &+ 2))
        }
        if config.appearance {
            var ac = GaussianTrainerConfig()
            ac.seed = config.seed
            appearance = try GaussianTrainer(config: ac)
        }
        var mc = BlockMesher.Config(grid: BlockGrid(origin: b.min, voxelSize: config.voxel, blockVoxels: 16))
        mc.threads = 1
        mesher = try BlockMesher(config: mc)
    }

    /// Adds a keyframe and runs the per-keyframe budget on the window.
    @discardableResult
    public func integrate(_ frame: Frame) throws -> IntegrationReport {
        let t0 = Date()
        if geometry == nil { try start(at: frame) }
        guard let geometry else { preconditionFailure("fields exist after start") }
        let training = TrainingFrame(frame, near: geometry.config.near, far: geometry.config.far)
        geometry.add(training)
        panoptic?.add(frame)
        appearance?.add(frame)
        keyframes.append(frame)
        ages.append(0)
        grow(with: training)
        if let drop = config.keyframes.redundantKeyframe(poses: keyframes.map(\.T_W_C)) {
            windows[keyframes[drop].index] = nil
            if let j = maskArrivals.firstIndex(of: keyframes[drop].index) {
                maskArrivals.remove(at: j)
                if j < roundsDone { roundsDone -= 1 }
            }
            keyframes.remove(at: drop)
            ages.remove(at: drop)
            geometry.remove(slot: drop)
            panoptic?.remove(slot: drop)
            appearance?.remove(slot: drop)
        }
        var report = IntegrationReport(keyframes: keyframes.count, geometry: GeometryStepStats(), panoptic: nil,
                                       appearance: nil, seconds: 0)
        let slots = config.keyframes.slots(count: keyframes.count, rng: &rng)
        for _ in 0..<config.geometryStepsPerKeyframe {
            report.geometry = geometry.step(slots: slots)
            for s in slots { ages[s] += 1 }
        }
        markDirty(slots)
        if frame.masks != nil { maskArrivals.append(frame.index) }
        windows[frame.index] = slots.map { keyframes[$0].index }
        report.panoptic = panopticRounds()
        if let appearance {
            for _ in 0..<config.appearanceStepsPerKeyframe { report.appearance = appearance.step(slots: slots) }
        }
        report.seconds = Date().timeIntervalSince(t0)
        return report
    }

    /// Gives keyframe `index` the masks that arrived for it (the mask inbox): they join the panoptic steps from the
    /// next one on. Returns the updated keyframe, or nil when `index` is not a kept keyframe or already has masks.
    public func attachMasks(_ masks: FrameMasks, toKeyframe index: Int) -> Frame? {
        guard let slot = keyframes.firstIndex(where: { $0.index == index }), keyframes[slot].masks == nil else { return nil }
        keyframes[slot].masks = masks
        panoptic?.replace(slot: slot, with: keyframes[slot])
        maskArrivals.append(index)
        return keyframes[slot]
    }

    /// The panoptic budget of every keyframe whose masks arrived since the last call: per arrival,
    /// `panopticStepsPerKeyframe` steps on the geometry window that keyframe was integrated with (the keyframes of it
    /// still kept, with masks and past `panopticMinAge` geometry steps). With masks arriving with their frames this
    /// is each keyframe's own window at once; with masks arriving late the same windows come later, so the panoptic
    /// steps see the same frames in the same order (against a geometry field that has moved on).
    public func panopticRounds() -> PanopticStepStats? {
        guard let panoptic else { roundsDone = maskArrivals.count; return nil }
        var stats: PanopticStepStats?
        while roundsDone < maskArrivals.count {
            let index = maskArrivals[roundsDone]
            var window = windows[index] ?? []
            if !window.contains(index) { window.append(index) }
            let ready = window.compactMap { i -> Int? in
                guard let slot = keyframes.firstIndex(where: { $0.index == i }), keyframes[slot].masks != nil,
                      ages[slot] >= config.panopticMinAge else { return nil }
                return slot
            }
            if !ready.isEmpty {
                for _ in 0..<config.panopticStepsPerKeyframe { stats = panoptic.step(slots: ready) }
            }
            roundsDone += 1
        }
        return stats
    }

    /// Kept keyframes without masks yet, by source index, with their image size.
    public var keyframesAwaitingMasks: [Int: ImageSize] {
        Dictionary(uniqueKeysWithValues: keyframes.filter { $0.masks == nil }.map { ($0.index, $0.depth.size) })
    }

    /// Refinement over all keyframes once the source has ended (every block becomes dirty).
    public func finish(progress: ((String, Int, Int) -> Void)? = nil) {
        guard let geometry else { return }
        for i in 0..<config.finalGeometrySteps {
            geometry.step()
            progress?("refine geometry", i + 1, config.finalGeometrySteps)
        }
        if let panoptic {
            for i in 0..<config.finalPanopticSteps {
                panoptic.step()
                progress?("refine panoptic", i + 1, config.finalPanopticSteps)
            }
        }
        if let appearance {
            for i in 0..<config.finalAppearanceSteps {
                appearance.step()
                progress?("refine appearance", i + 1, config.finalAppearanceSteps)
            }
        }
        markDirty(Array(keyframes.indices))
    }

    func grow(with f: TrainingFrame) {
        let b = SceneBounds.enclosing([f], stride: 8, margin: 0.2)
        guard let bounds else { return }
        let lo = pointwiseMax(b.min, bounds.min), hi = pointwiseMin(b.max, bounds.max)
        if let o = observed {
            observed = SceneBounds(min: pointwiseMin(o.min, lo), max: pointwiseMax(o.max, hi))
        } else {
            observed = SceneBounds(min: lo, max: hi)
        }
    }

    /// Marks the blocks around the observed surface of the given keyframes (every 16th valid pixel, +- the
    /// truncation band) as dirty.
    func markDirty(_ slots: [Int]) {
        guard let mesher, let geometry, let bounds else { return }
        let grid = mesher.config.grid
        let tau = geometry.config.losses.truncation
        for s in slots where geometry.frames.indices.contains(s) {
            let f = geometry.frames[s], k = f.intrinsics
            for j in stride(from: 0, to: f.validPixels.count, by: 16) {
                let p = Int(f.validPixels[j])
                let q = f.T_W_C * k.unproject(u: Double(p % k.width), v: Double(p / k.width), depth: Double(f.depth[p]))
                let c = SIMD3<Float>(Float(q.x), Float(q.y), Float(q.z))
                let lo = pointwiseMax(c - tau, bounds.min), hi = pointwiseMin(c + tau, bounds.max)
                guard lo.x <= hi.x, lo.y <= hi.y, lo.z <= hi.z else { continue }
                for key in grid.blocks(covering: lo, hi) { dirty.insert(key) }
            }
        }
    }

    /// Every block of the observed box becomes dirty (a full re-mesh at the next `map()`).
    public func markAllDirty() {
        guard let mesher, let observed else { return }
        for key in mesher.config.grid.blocks(covering: observed.min, observed.max) { dirty.insert(key) }
    }

    /// Rebuilds the mapper around saved keyframes (fields re-created as `start` does; their parameters are restored
    /// by the caller) and marks everything dirty.
    func restore(keyframes frames: [Frame], ages: [Int], observed: SceneBounds?, rng: SeededRNG) throws {
        guard let first = frames.first else { return }
        try start(at: first)
        guard let geometry else { return }
        for f in frames {
            geometry.add(TrainingFrame(f, near: geometry.config.near, far: geometry.config.far))
            panoptic?.add(f)
            appearance?.add(f, seeding: false) // the Gaussians come from the checkpoint
        }
        keyframes = frames
        self.ages = ages
        self.observed = observed
        self.rng = rng
        markAllDirty()
    }

    // MARK: - Outputs

    /// Forgets every block mesh (the next `map()` meshes from scratch). The export does this before and after, so
    /// the final map does not depend on which snapshots came before and the mesher holds nothing afterwards.
    public func releaseMeshes() {
        guard let mesher else { return }
        self.mesher = try? BlockMesher(config: mesher.config)
    }

    /// Bytes held by the long-lived buffers (array capacities): keyframe images, the trainers' per-keyframe data,
    /// field parameters and optimiser state, block meshes. Bounded by the keyframe budget and the scene.
    public var footprint: [(what: String, bytes: Int)] {
        func bytes<T>(_ a: [T]) -> Int { a.capacity * MemoryLayout<T>.stride }
        var images = 0
        for f in keyframes {
            images += bytes(f.rgb.data) + bytes(f.depth.data)
            if let m = f.masks { images += bytes(m.ids.data) }
        }
        var training = 0
        for f in geometry?.frames ?? [] { training += bytes(f.validPixels) } // depth is the keyframe's (shared)
        var fields = 0
        for core in [geometry?.field.core, panoptic?.semantic.core, panoptic?.instance.core].compactMap({ $0 }) {
            fields += bytes(core.gridParams) + bytes(core.mlpParams) + bytes(core.gridAdamState.m)
                + bytes(core.gridAdamState.v) + bytes(core.mlpAdamState.m) + bytes(core.mlpAdamState.v)
        }
        var meshes = 0
        for b in mesher?.blocks.values.map({ $0 }) ?? [] {
            meshes += bytes(b.vertices) + bytes(b.normals) + bytes(b.triangles) + bytes(b.edgeIDs)
        }
        var gaussians = 0
        if let a = appearance {
            let g = a.gaussians
            gaussians = bytes(g.means) + bytes(g.logScales) + bytes(g.rotations) + bytes(g.opacityLogits)
                + bytes(g.colors)
            for m in a.state.adam { gaussians += bytes(m.m) + bytes(m.v) } // frames share the keyframes' pixels
        }
        return [("keyframe images (\(keyframes.count))", images), ("ray pixels", training), ("fields", fields),
                ("block meshes", meshes), ("Gaussians + Adam moments", gaussians)]
    }

    /// Blocks with a mesh in the mesher.
    public var meshedBlockCount: Int { mesher?.blocks.count ?? 0 }

    /// What the outputs (`map()`, `renders`) read, copied out for a snapshot built elsewhere (see `SnapshotBuilder`):
    /// field parameters, token state, keyframes, observed box and the dirty blocks, which are then cleared. Arrays are
    /// shared copy-on-write, so taking a view costs no copy; the optimizer's next step copies each parameter array
    /// it writes once. Nil before the first keyframe.
    func takeView() -> MapView? {
        guard let geometry, let bounds, let observed else { return nil }
        let view = MapView(
            bounds: bounds, observed: observed, dirty: dirty.sorted(), keyframes: keyframes,
            geometry: .init(geometry.field.core), logXi: geometry.field.logXi,
            semantic: panoptic.map { .init($0.semantic.core) }, instance: panoptic.map { .init($0.instance.core) },
            panoptic: panoptic?.state, gaussians: appearance?.gaussians)
        dirty.removeAll()
        return view
    }

    /// Makes this mapper (a replica made with the same config and source info) show `view`: the fields get its
    /// parameters (created around `view.bounds` the first time), the keyframes, observed box and dirty blocks are
    /// its. The block meshes of earlier views are kept, so only dirty blocks are re-meshed.
    func show(_ view: MapView) throws {
        if geometry == nil { try start(bounds: view.bounds) }
        guard let geometry, bounds == view.bounds else {
            throw MapError(.badArgument, "map view over \(view.bounds) does not fit the replica's \(String(describing: bounds))",
                           hint: "use one snapshot builder per session")
        }
        try view.geometry.load(into: geometry.field.core, what: "geometry")
        geometry.field.logXi = view.logXi
        if let panoptic {
            guard let s = view.semantic, let i = view.instance, let p = view.panoptic else {
                throw MapError(.badArgument, "map view has no panoptic state", hint: "use one snapshot builder per session")
            }
            try s.load(into: panoptic.semantic.core, what: "semantic")
            try i.load(into: panoptic.instance.core, what: "instance")
            try panoptic.restore(p)
        }
        shownGaussians = view.gaussians
        keyframes = view.keyframes
        observed = view.observed
        dirty.formUnion(view.dirty)
    }

    /// Drops the keyframes a `show` brought in (a replica should not keep frames alive between snapshots).
    func forgetKeyframes() { keyframes = [] }

    /// The map so far: re-meshes the dirty blocks only, then assembles, crops to the observed box, colours and culls
    /// by the keyframes, and labels (when the panoptic fields exist). Clears the dirty set.
    public func map() throws -> (mesh: TriangleMesh, legend: PanopticLegend?, remeshedBlocks: Int) {
        guard var mesher, let geometry, let observed else {
            return (TriangleMesh(vertices: [], triangles: []), nil, 0)
        }
        let keys = dirty.sorted()
        try mesher.remesh(keys, sdf: geometry.field.evaluator())
        self.mesher = mesher
        dirty.removeAll()
        var mesh = mesher.assemble().cropped(to: observed.min, observed.max)
        let (colors, observable) = VertexColoring.colors(vertices: mesh.vertices, frames: keyframes)
        mesh.colors = colors
        mesh = mesh.keeping(observable)
        var legend: PanopticLegend?
        if let panoptic, panoptic.tokens.count > 0 {
            let l = panoptic.legend()
            panoptic.label(&mesh, legend: l)
            legend = l
        }
        return (mesh, legend, keys.count)
    }

    /// Width (pixels) of the snapshot renders; larger views are scaled down.
    static let renderWidth = 320

    /// Renders of the latest keyframe's view (scaled to `renderWidth`) of every branch: colour and depth from the
    /// Gaussians, semantic / instance / panoptic colour-coded images from the fields (`BranchViews.pngs`).
    public func renders(legend: PanopticLegend?) throws -> [(name: String, png: [UInt8])] {
        guard let f = keyframes.last else { return [] }
        // Previews: at most `renderWidth` pixels wide (sphere tracing a full 640x480 view costs seconds).
        var k = f.intrinsics
        if k.width > Self.renderWidth {
            k = k.scaled(toWidth: Self.renderWidth, height: max(1, (k.height * Self.renderWidth + k.width / 2) / k.width))
        }
        return try views(T_W_C: f.T_W_C, intrinsics: k, legend: legend).pngs()
    }

    /// Every branch rendered at any pose (see `BranchRendering`).
    public func views(T_W_C: RigidTransform, intrinsics k: Intrinsics, legend: PanopticLegend?) -> BranchViews {
        BranchRendering.render(T_W_C: T_W_C, intrinsics: k, geometry: geometry?.field,
                               gaussians: shownGaussians ?? appearance?.gaussians, panoptic: panoptic, legend: legend)
    }
}
