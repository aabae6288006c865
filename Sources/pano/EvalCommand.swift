import ArgumentParser
import Evaluation
import Foundation
import IO
import Kernels
import MapCore
import Synthetic
#if canImport(Glibc)
import Glibc
#endif

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate reconstructions against ground truth.",
        subcommands: [EvalGeometry.self, EvalPanoptic.self, EvalImages.self, EvalTrajectory.self, EvalBench.self])
}

struct EvalGeometry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "geometry",
        abstract: "Accuracy, Completion, Chamfer-L1 (cm) and Precision / Recall / F1 (%) of a mesh or point cloud against GT points.",
        discussion: """
            Meshes (PLY with faces) are sampled uniformly by area; point clouds are used as they are. With --sequence, \
            points no frame of that sequence sees (outside every frustum, or behind the observed depth by more than \
            the margin) are dropped from both sets before the metrics.
            """)

    @Argument(help: "Reconstruction: PLY mesh (faces) or point cloud.")
    var mesh: String

    @Argument(help: "Ground truth: PLY point cloud (e.g. a synthetic sequence's gt/surface.ply) or mesh.")
    var gt: String

    @Option(help: "Sequence whose frames define what was visible (culling).")
    var sequence: String?

    @Option(help: "Layout of --sequence instead of detecting it.")
    var format: String?

    @Option(help: "Points sampled from a mesh.")
    var samples: Int = 1_000_000

    @Option(help: "Precision / recall threshold in metres.")
    var threshold: Double = 0.05

    @Option(help: "Random seed of the mesh sampling.")
    var seed: UInt64 = 1

    @Option(help: "Culling occlusion margin in metres.")
    var margin: Double = 0.03

    @Option(help: "Use every n-th frame for culling.")
    var frameStride: Int = 1

    @Flag(help: "Cull only the ground truth, not the reconstruction.")
    var keepUnseenReconstruction = false

    @Flag(help: "Print the report as JSON (metres and ratios).")
    var json = false

    func run() throws {
        try reportingErrors {
            var options = GeometryEvaluation.Options()
            options.samples = samples; options.threshold = threshold; options.seed = seed
            options.cullingMargin = margin; options.frameStride = frameStride
            options.cullReconstruction = !keepUnseenReconstruction
            var bar: Progress?
            let report = try GeometryEvaluation.run(
                reconstruction: URL(fileURLWithPath: mesh), groundTruth: URL(fileURLWithPath: gt),
                sequence: sequence.map { URL(fileURLWithPath: $0) }, format: format, options: options,
                progress: { done, total in
                    if bar == nil { bar = Progress("culling", total: total) }
                    bar?.update(done)
                })
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(report), as: UTF8.self))
            } else {
                var lines = ["reconstruction  \(report.reconstructionKind), \(report.reconstructionPointsKept) of \(report.reconstructionPoints) points evaluated",
                             "ground truth    \(report.groundTruthKind), \(report.groundTruthPointsKept) of \(report.groundTruthPoints) points evaluated"]
                if report.cullingFrames > 0 {
                    lines.append("culling         \(report.cullingFrames) frames, margin \(String(format: "%g", margin * 100)) cm")
                }
                print(lines.joined(separator: "\n"))
                print(report.metrics.text)
            }
        }
    }
}

struct EvalImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "PSNR / SSIM of rendered colour views and AbsRel of rendered depth against a sequence.",
        discussion: """
            Reads DIR/NNNNNN-rgb.png (8-bit RGB) and NNNNNN-depth.png (16-bit millimetres, 0 = none) for every \
            rendered frame and compares them with the sequence's colour image and depth (gt/depth when the sequence \
            has clean depth, else the sensor depth). Means over frames; AbsRel over pixels where both depths exist.
            """)

    @Argument(help: "Directory of rendered views, e.g. a map's heldout/.")
    var views: String

    @Option(help: "Sequence the views were rendered for.")
    var sequence: String

    @Flag(help: "Print the metrics as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let (m, _) = try ImageEvaluation.evaluate(predictions: URL(fileURLWithPath: views),
                                                      sequence: URL(fileURLWithPath: sequence))
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(m), as: UTF8.self))
            } else {
                print(m.text)
            }
        }
    }
}

struct EvalPanoptic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "panoptic",
        abstract: "PQ / SQ / RQ (things, stuff), mIoU, mAcc, mCov, mW-Cov of a map in 2D (held-out views) and 3D (mesh vertices).",
        discussion: """
            2D: MAPDIR/heldout/NNNNNN-semantic.png and NNNNNN-instance.png (16-bit class and instance ids) against the \
            sequence's gt/semantic and gt/instance images. 3D: every vertex of MAPDIR/mesh.ply (int vertex properties \
            semantic, instance) against the labels of its nearest ground-truth point. Each part runs when its inputs \
            exist; all frames (or vertices) are evaluated together, scene-level.
            """)

    @Argument(help: "Map directory (snapshot): heldout/ and/or mesh.ply.")
    var map: String

    @Option(help: "Sequence with the ground truth and the vocabulary.")
    var sequence: String

    @Option(help: "Layout of --sequence instead of detecting it.")
    var format: String?

    @Option(help: "Labelled GT points for 3D (default: SEQUENCE/gt/surface.ply).")
    var groundTruth: String?

    @Flag(help: "Print the report as JSON (ratios).")
    var json = false

    struct Report: Codable {
        struct TwoD: Codable { var directory: String; var frames: [Int]; var metrics: PanopticMetrics }
        struct ThreeD: Codable { var mesh: String; var groundTruth: String; var vertices: Int; var metrics: PanopticMetrics }
        var heldout: TwoD?
        var mesh: ThreeD?
    }

    func run() throws {
        try reportingErrors {
            let mapURL = URL(fileURLWithPath: map), seqURL = URL(fileURLWithPath: sequence)
            guard let vocabulary = try SequenceFormats.open(seqURL, format: format).info.vocabulary else {
                throw MapError(.badArgument, "the sequence has no vocabulary", file: seqURL.path,
                               hint: "give a sequence with a vocabulary.json (e.g. a synthetic one from `pano demo`)")
            }
            var report = Report()
            let heldout = mapURL.appendingPathComponent("heldout")
            if Files.exists(heldout) {
                let r = try PanopticEvaluation.evaluate2D(predictions: heldout, sequence: seqURL, vocabulary: vocabulary)
                report.heldout = .init(directory: heldout.path, frames: r.frames, metrics: r.metrics)
            }
            let meshURL = mapURL.appendingPathComponent("mesh.ply")
            if Files.exists(meshURL) {
                let mesh = try PanopticEvaluation.readPLY(meshURL, role: "mesh")
                if PanopticEvaluation.hasLabels(mesh) {
                    let gtURL = groundTruth.map { URL(fileURLWithPath: $0) } ?? seqURL.appendingPathComponent("gt/surface.ply")
                    guard Files.exists(gtURL) else {
                        throw MapError(.missingFile, "no labelled ground-truth points for the 3D metrics", file: gtURL.path,
                                       hint: "give --ground-truth FILE (PLY with int vertex properties semantic, instance)")
                    }
                    let gt = try PanopticEvaluation.readPLY(gtURL, role: "ground truth")
                    let m = try PanopticEvaluation.evaluate3D(mesh: mesh, groundTruth: gt, vocabulary: vocabulary,
                                                              meshSource: meshURL.path, groundTruthSource: gtURL.path)
                    report.mesh = .init(mesh: meshURL.path, groundTruth: gtURL.path, vertices: mesh.positions.count, metrics: m)
                } else {
                    log.notice("3D skipped: \(meshURL.path) lacks the vertex properties semantic and instance")
                }
            }
            guard report.heldout != nil || report.mesh != nil else {
                throw MapError(.missingFile, "nothing to evaluate: no heldout/ directory and no mesh.ply with panoptic labels",
                               file: mapURL.path, hint: "give a map directory written with panoptic outputs")
            }
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try enc.encode(report), as: UTF8.self))
            } else {
                var parts: [String] = []
                if let h = report.heldout {
                    parts.append("2D: \(h.frames.count) held-out frames (\(h.directory))\n" + h.metrics.text)
                }
                if let m = report.mesh {
                    parts.append("3D: \(m.vertices) vertices of \(m.mesh) against \(m.groundTruth)\n" + m.metrics.text)
                }
                print(parts.joined(separator: "\n\n"))
            }
        }
    }
}

struct EvalBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Timings: block-wise marching cubes of the synthetic 5 x 4 x 2.6 m room from its analytic SDF, and metrics on 200k vs 200k points.")

    @Option(parsing: .upToNextOption, help: "Voxel sizes in metres.")
    var voxel: [Float] = [0.02, 0.01]

    @Option(help: "Points per set for the metrics timing.")
    var points: Int = 200_000

    @Option(help: "Write the room mesh of the first voxel size to this PLY file (vertices, normals, faces).")
    var writeMesh: String?

    func run() throws {
        try reportingErrors {
            let room = SyntheticRoom()
            let full: SDFEvaluator = { p, n, out in
                for i in 0..<n { out[i] = Float(room.sdf(Vec3(Double(p[3 * i]), Double(p[3 * i + 1]), Double(p[3 * i + 2])))) }
            }
            let shellOnly: SDFEvaluator = { p, n, out in
                for i in 0..<n { out[i] = Float(room.roomSDF(Vec3(Double(p[3 * i]), Double(p[3 * i + 1]), Double(p[3 * i + 2])))) }
            }
            let lo = SIMD3<Float>(room.interiorMin) - 0.05, hi = SIMD3<Float>(room.interiorMax) + 0.05
            print("bench eval: machine has \(Parallel.defaultThreads) threads; wall and process CPU seconds (CPU ≈ 2 x wall means both cores worked)")
            // Cost of the analytic SDFs alone, at uniform points of the room's box.
            func nsPerEvaluation(_ f: SDFEvaluator) -> Double {
                let n = 200_000
                var rng = SeededRNG(seed: 1), probe = [Float](), sink = [Float](repeating: 0, count: n)
                for _ in 0..<n { for a in 0..<3 { probe.append(lo[a] + (hi[a] - lo[a]) * Float(rng.uniform())) } }
                let t = Date()
                probe.withUnsafeBufferPointer { p in sink.withUnsafeMutableBufferPointer { f(p.baseAddress!, n, $0.baseAddress!) } }
                return Date().timeIntervalSince(t) / Double(n) * 1e9
            }
            let nsFull = nsPerEvaluation(full), nsShell = nsPerEvaluation(shellOnly)
            print(String(format: "room SDF %.0f ns per evaluation, shell-only SDF %.0f ns (1 thread)", nsFull, nsShell))

            var meshForMetrics: TriangleMesh?
            for vs in voxel {
                for (name, sdf, ns) in [("room", full, nsFull), ("shell only", shellOnly, nsShell)] {
                    var wall: [Int: Double] = [:]
                    for threads in [1, 2] {
                        var config = BlockMesher.Config(grid: BlockGrid(origin: lo, voxelSize: vs, blockVoxels: 16))
                        config.threads = threads
                        config.lipschitz = 1 // exact analytic SDF
                        var mesher = try BlockMesher(config: config)
                        let keys = config.grid.blocks(covering: lo, hi)
                        let (stats, tMesh, cpuMesh) = try timed { try mesher.remesh(keys, sdf: sdf) }
                        let (mesh, tAssemble, _) = timed { mesher.assemble() }
                        wall[threads] = tMesh + tAssemble
                        let sdfSeconds = Double(stats.evaluations) * ns * 1e-9
                        print(String(format: "mesh %@ @ %g cm, %d thread(s): wall %.2f s (blocks %.2f s, CPU %.2f s; assemble %.2f s) | %d blocks, %d skipped by the coarse test, %.1fM SDF evaluations ≈ %.2f CPU s | %d vertices, %d triangles, area %.2f m²",
                                     name, vs * 100, threads, tMesh + tAssemble, tMesh, cpuMesh, tAssemble, stats.requested, stats.skipped,
                                     Double(stats.evaluations) / 1e6, sdfSeconds, mesh.vertexCount, mesh.triangleCount, mesh.area()))
                        if threads == 2 { print("  closed 2-manifold: \(ReferenceLikeCensus.closed(mesh))") }
                        if meshForMetrics == nil {
                            meshForMetrics = mesh
                            if let writeMesh {
                                try PLY.write(mesh.plyData, to: URL(fileURLWithPath: writeMesh))
                                print("  wrote \(writeMesh)")
                            }
                        }
                    }
                    print(String(format: "  ratio wall 2 threads / 1 thread: %.2f", wall[2]! / wall[1]!))
                }
                // The marching-cubes kernel alone on a dense grid of the room shell (no SDF in the loop).
                let dims = SIMD3<Int>(((hi - lo) / vs).rounded(.up)) &+ 1
                var grid = [Float](repeating: 0, count: dims.x * dims.y * dims.z)
                for k in 0..<dims.z { for j in 0..<dims.y { for i in 0..<dims.x {
                    let p = lo + SIMD3<Float>(Float(i), Float(j), Float(k)) * vs
                    grid[(k * dims.y + j) * dims.x + i] = Float(room.roomSDF(Vec3(SIMD3<Double>(p))))
                } } }
                let (dense, tDense, _) = timed { grid.withUnsafeBufferPointer { MarchingCubes.extract(sdf: $0.baseAddress!, dims: dims, origin: lo, voxelSize: vs) } }
                let cubes = Double((dims.x - 1) * (dims.y - 1) * (dims.z - 1))
                print(String(format: "  dense MarchingCubes.extract of the shell grid %dx%dx%d: %.3f s, %.0fM cubes/s, %d triangles",
                             dims.x, dims.y, dims.z, tDense, cubes / tDense / 1e6, dense.triangleCount))
            }

            // Metrics: GT = exact room surface samples; reconstruction = area samples of the first mesh above.
            let gt = SurfaceSampler(room: room).samples(count: points, rng: SeededRNG(seed: 3), threads: 2)
                .map { SIMD3<Float>($0.position) }
            let rec = try MeshSampler.sample(meshForMetrics!, count: points, seed: 4)
            var metricTimes: [Int: Double] = [:]
            for threads in [1, 2] {
                let (m, t, cpu) = try timed { try GeometryMetrics.compute(reconstruction: rec, groundTruth: gt, threshold: 0.05, threads: threads) }
                metricTimes[threads] = t
                print(String(format: "metrics %dk vs %dk points, %d thread(s): wall %.3f s, CPU %.3f s (2 tree builds + 2 x %dk exact NN queries); Chamfer-L1 %.3f cm, F1 %.2f %%",
                             points / 1000, points / 1000, threads, t, cpu, points / 1000, m.chamferL1 * 100, m.f1 * 100))
            }
            // Brute force on a subset, extrapolated, for the ratio.
            let sub = Array(rec.prefix(500))
            let (s, tb, _) = timed { () -> Float in
                var s: Float = 0
                for q in sub { var best = Float.infinity; for p in gt { let d = p - q; best = min(best, d.x * d.x + d.y * d.y + d.z * d.z) }; s += best }
                return s
            }
            let brute = tb / Double(sub.count) * Double(2 * points)
            print(String(format: "  ratio wall 2 threads / 1 thread: %.2f; brute force (extrapolated, 1 thread) %.1f s = %.0fx the tree (checksum %.3g)",
                         metricTimes[2]! / metricTimes[1]!, brute, brute / metricTimes[1]!, s))
        }
    }
}

/// Runs `body`, returning its result, wall seconds and process CPU seconds (all threads).
func timed<T>(_ body: () throws -> T) rethrows -> (T, Double, Double) {
    func cpu() -> Double {
        var u = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &u)
        #else
        getrusage(RUSAGE_SELF, &u)
        #endif
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
    }
    let c0 = cpu(), t0 = Date()
    let r = try body()
    return (r, Date().timeIntervalSince(t0), cpu() - c0)
}

/// Edge census for the bench line (closed, every edge in two oppositely oriented triangles).
enum ReferenceLikeCensus {
    static func closed(_ mesh: TriangleMesh) -> Bool {
        var directed = Set<UInt64>()
        directed.reserveCapacity(3 * mesh.triangleCount)
        for t in mesh.triangles {
            for (a, b) in [(t.x, t.y), (t.y, t.z), (t.z, t.x)] {
                if !directed.insert(UInt64(a) << 32 | UInt64(b)).inserted { return false }
            }
        }
        for e in directed where !directed.contains((e & 0xFFFF_FFFF) << 32 | e >> 32) { return false }
        return true
    }
}
