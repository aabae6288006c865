import Foundation
import IO
import Kernels
import MapCore

/// `pano eval geometry` without the command line: load a reconstruction (PLY mesh or point cloud) and a ground truth
/// (PLY point cloud or mesh), sample meshes by area, optionally cull both by a sequence's visibility, and compute
/// `GeometryMetrics`.
public enum GeometryEvaluation {
    public struct Options: Sendable, Equatable {
        /// Points sampled from a mesh (a point cloud is used as it is).
        public var samples = 1_000_000
        /// Precision / recall threshold in metres.
        public var threshold = 0.05
        public var seed: UInt64 = 1
        /// Occlusion margin of the visibility culling, metres.
        public var cullingMargin = 0.03
        /// Use every n-th frame of the sequence for culling.
        public var frameStride = 1
        /// Cull the reconstruction's samples too (the ground truth is always culled when a sequence is given).
        public var cullReconstruction = true
        public var threads = Parallel.defaultThreads
        public init() {}
    }

    /// Metrics plus what they were computed from.
    public struct Report: Sendable, Equatable, Codable {
        public var metrics: GeometryMetrics
        /// "mesh" (area-sampled) or "points", per input.
        public var reconstructionKind: String
        public var groundTruthKind: String
        /// Points before and after culling (equal without a sequence).
        public var reconstructionPoints: Int
        public var reconstructionPointsKept: Int
        public var groundTruthPoints: Int
        public var groundTruthPointsKept: Int
        /// Frames used for culling (0 without a sequence).
        public var cullingFrames: Int
        public var seconds: Double
    }

    /// Points of a PLY file: area-weighted samples of its faces when it has any, else its vertices.
    public static func loadPoints(_ url: URL, role: String, samples: Int, seed: UInt64) throws(MapError)
        -> (points: [SIMD3<Float>], kind: String) {
        let ply: PLYData
        do { ply = try PLY.read(url) } catch let e as MapError {
            if e.kind == .missingFile {
                throw MapError(.missingFile, "the \(role) file does not exist", file: url.path,
                               hint: "check the path; give a PLY mesh or point cloud")
            }
            throw e.at(file: url.path)
        } catch {
            throw MapError(.ioFailure, "cannot read the \(role): \(error)", file: url.path, hint: "check the file")
        }
        guard !ply.positions.isEmpty else {
            throw MapError(.badFormat, "the \(role) PLY has no vertices", file: url.path,
                           hint: "give a PLY mesh or point cloud with vertices")
        }
        for (i, p) in ply.positions.enumerated() where !(p.x.isFinite && p.y.isFinite && p.z.isFinite) {
            throw MapError(.corruptFile, "vertex \(i) of the \(role) is not finite (\(p))", file: url.path,
                           hint: "re-export the \(role)")
        }
        if ply.faces.isEmpty { return (ply.positions, "points") }
        let mesh = try TriangleMesh(ply: ply, source: url.path)
        return (try MeshSampler.sample(mesh, count: samples, seed: seed, source: url.path), "mesh")
    }

    public static func run(reconstruction: URL, groundTruth: URL, sequence: URL? = nil, format: String? = nil,
                           options: Options = Options(),
                           progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws(MapError) -> Report {
        let start = Date()
        guard options.samples > 0 else {
            throw MapError(.badArgument, "sample count \(options.samples) is not positive", hint: "give e.g. 200000")
        }
        // Different seeds for the two inputs, so that evaluating a mesh against itself is not a zero-distance match.
        let rec = try loadPoints(reconstruction, role: "reconstruction", samples: options.samples, seed: options.seed)
        let gt = try loadPoints(groundTruth, role: "ground truth", samples: options.samples,
                                seed: options.seed ^ 0x6774_5F73_616D_706C)
        var recKept = rec.points, gtKept = gt.points, frames = 0
        if let sequence {
            let reader: any SequenceReader
            do { reader = try SequenceFormats.open(sequence, format: format) } catch let e as MapError { throw e } catch {
                throw MapError(.ioFailure, "cannot open the sequence: \(error)", file: sequence.path, hint: "check the directory")
            }
            let culling = VisibilityCulling(margin: options.cullingMargin, threads: options.threads)
            // Cull both sets in one pass over the frames.
            let all = gt.points + (options.cullReconstruction ? rec.points : [])
            let mask = try culling.visibleMask(points: all, reader: reader, frameStride: options.frameStride,
                                               progress: progress)
            frames = (reader.info.frameCount + options.frameStride - 1) / options.frameStride
            gtKept = VisibilityCulling.filter(gt.points, Array(mask[0..<gt.points.count]))
            if options.cullReconstruction {
                recKept = VisibilityCulling.filter(rec.points, Array(mask[gt.points.count...]))
            }
            guard !gtKept.isEmpty else {
                throw MapError(.badArgument, "no ground-truth point is seen by any frame of the sequence", file: sequence.path,
                               hint: "check that the ground truth and the sequence's poses share one world frame")
            }
            guard !recKept.isEmpty else {
                throw MapError(.badArgument, "no reconstruction point is seen by any frame of the sequence", file: sequence.path,
                               hint: "check that the reconstruction and the sequence's poses share one world frame")
            }
        }
        let metrics = try GeometryMetrics.compute(reconstruction: recKept, groundTruth: gtKept,
                                                  threshold: options.threshold, threads: options.threads)
        return Report(metrics: metrics, reconstructionKind: rec.kind, groundTruthKind: gt.kind,
                      reconstructionPoints: rec.points.count, reconstructionPointsKept: recKept.count,
                      groundTruthPoints: gt.points.count, groundTruthPointsKept: gtKept.count, cullingFrames: frames,
                      seconds: Date().timeIntervalSince(start))
    }
}
