import Foundation
import IO
import Kernels
import MapCore

/// `pano eval panoptic` without the command line: panoptic / semantic / instance metrics (`PanopticMetrics`) of
/// predicted label images against a sequence's GT images (2D), and of a labelled mesh or point cloud against labelled
/// GT points (3D). Both are scene-level: all frames (or all vertices) go into one `PanopticEvaluator`, so predicted
/// instance ids must be consistent across frames, as a map's are.
public enum PanopticEvaluation {
    /// Predicted label images: `NNNNNN-semantic.png` (16-bit class id per pixel, 0 = no prediction) and
    /// `NNNNNN-instance.png` (16-bit instance id, 0 for stuff / none), NNNNNN = `frameName(index)`.
    public static func predictionURLs(_ directory: URL, frame: Int) -> (semantic: URL, instance: URL) {
        (directory.appendingPathComponent("\(frameName(frame))-semantic.png"),
         directory.appendingPathComponent("\(frameName(frame))-instance.png"))
    }

    /// The sequence's GT label images of a frame: `gt/semantic/NNNNNN.png` and `gt/instance/NNNNNN.png`.
    public static func groundTruthURLs(_ sequence: URL, frame: Int) -> (semantic: URL, instance: URL) {
        (sequence.appendingPathComponent("gt/semantic/\(frameName(frame)).png"),
         sequence.appendingPathComponent("gt/instance/\(frameName(frame)).png"))
    }

    /// Frame indices with a `NNNNNN-semantic.png` or `NNNNNN-instance.png` in `directory`, ascending.
    public static func predictedFrames(in directory: URL) -> [Int] {
        var frames = Set<Int>()
        for name in Files.list(directory) {
            for suffix in ["-semantic.png", "-instance.png"] where name.hasSuffix(suffix) {
                let stem = name.dropLast(suffix.count)
                if stem.count >= 6, stem.allSatisfy(\.isASCII), stem.allSatisfy(\.isNumber), let i = Int(stem) { frames.insert(i) }
            }
        }
        return frames.sorted()
    }

    /// Compares every predicted pair in `predictions` with the GT images of `sequence` (see `predictionURLs`,
    /// `groundTruthURLs`), all frames in one evaluator. Returns the metrics and the frames evaluated.
    public static func evaluate2D(predictions: URL, sequence: URL, vocabulary: Vocabulary) throws
        -> (metrics: PanopticMetrics, frames: [Int]) {
        let frames = predictedFrames(in: predictions)
        guard !frames.isEmpty else {
            let what = Files.exists(predictions) ? "no predicted label images (NNNNNN-semantic.png, NNNNNN-instance.png)"
                                                 : "the predictions directory does not exist"
            throw MapError(.missingFile, what, file: predictions.path,
                           hint: "write 16-bit PNGs NNNNNN-semantic.png (class ids) and NNNNNN-instance.png (instance ids) per frame")
        }
        let classes = ClassTable(vocabulary)
        var evaluator = PanopticEvaluator(vocabulary: vocabulary)
        for f in frames {
            let p = predictionURLs(predictions, frame: f), g = groundTruthURLs(sequence, frame: f)
            for u in [p.semantic, p.instance] where !Files.exists(u) {
                throw MapError(.missingFile, "predicted label image is missing (its partner exists)", file: u.path, frame: f,
                               hint: "write both NNNNNN-semantic.png and NNNNNN-instance.png for every predicted frame")
            }
            for u in [g.semantic, g.instance] where !Files.exists(u) {
                throw MapError(.missingFile, "no GT label image for predicted frame \(f)", file: u.path, frame: f,
                               hint: "predict only frames the sequence has gt/semantic and gt/instance images for")
            }
            let ps = try ImageFiles.readGray16(p.semantic, frame: f, what: "predicted semantic image")
            let pi = try ImageFiles.readGray16(p.instance, frame: f, what: "predicted instance image")
            let gs = try ImageFiles.readGray16(g.semantic, frame: f, what: "GT semantic image")
            let gi = try ImageFiles.readGray16(g.instance, frame: f, what: "GT instance image")
            for (img, u) in [(pi, p.instance), (gs, g.semantic), (gi, g.instance)] where img.size != ps.size {
                throw MapError(.sizeMismatch, "image is \(img.size), the predicted semantic image \(ps.size)",
                               file: u.path, frame: f, hint: "render predictions at the sequence's image size")
            }
            for (img, u, role) in [(ps, p.semantic, "predicted"), (gs, g.semantic, "GT")] {
                if let k = classes.firstUnknown(img.data) {
                    throw MapError(.unknownClass, "\(role) class id \(img.data[k]) at pixel (\(k % img.width), "
                                   + "\(k / img.width)) is not in the vocabulary", file: u.path, frame: f,
                                   hint: "check that the vocabulary matches the labels")
                }
            }
            try evaluator.add(predictedClass: ps.data, predictedInstance: pi.data, gtClass: gs.data, gtInstance: gi.data)
        }
        return (try evaluator.result(), frames)
    }

    /// Reads the mesh or point cloud and the GT points (PLY files with int vertex properties `semantic` and
    /// `instance`) and evaluates them with `evaluate3D(mesh:groundTruth:...)`.
    public static func evaluate3D(mesh: URL, groundTruth: URL, vocabulary: Vocabulary) throws -> PanopticMetrics {
        try evaluate3D(mesh: try readPLY(mesh, role: "mesh"), groundTruth: try readPLY(groundTruth, role: "ground truth"),
                       vocabulary: vocabulary, meshSource: mesh.path, groundTruthSource: groundTruth.path)
    }

    /// Every predicted vertex is one element: its (semantic, instance) against the labels of its nearest GT point
    /// (exact nearest neighbour). Vertices are not weighted by area, and a vertex far from every GT point still takes
    /// the nearest one's labels. `meshSource` / `groundTruthSource` name the inputs in errors.
    public static func evaluate3D(mesh: PLYData, groundTruth: PLYData, vocabulary: Vocabulary,
                                  meshSource: String, groundTruthSource: String,
                                  threads: Int = Parallel.defaultThreads) throws -> PanopticMetrics {
        let pred = try labels(mesh, role: "mesh", source: meshSource, vocabulary: vocabulary)
        let gt = try labels(groundTruth, role: "ground truth", source: groundTruthSource, vocabulary: vocabulary)
        let tree = PointKDTree(points: groundTruth.positions)
        var nearest = [Int](repeating: 0, count: mesh.positions.count)
        nearest.withUnsafeMutableBufferPointer { out in
            mesh.positions.withUnsafeBufferPointer { q in
                Parallel.forEachChunk(count: q.count, threads: threads, alignment: 64) { _, range in
                    for i in range { out[i] = tree.nearest(q[i])!.index }
                }
            }
        }
        var evaluator = PanopticEvaluator(vocabulary: vocabulary)
        try evaluator.add(predictedClass: pred.semantic, predictedInstance: pred.instance,
                          gtClass: nearest.map { gt.semantic[$0] }, gtInstance: nearest.map { gt.instance[$0] })
        return try evaluator.result()
    }

    /// Whether a PLY has both label properties `evaluate3D` needs.
    public static func hasLabels(_ ply: PLYData) -> Bool { ply.label("semantic") != nil && ply.label("instance") != nil }

    /// A PLY file with typed errors naming `role` and the file.
    public static func readPLY(_ url: URL, role: String) throws -> PLYData {
        do { return try PLY.read(url) } catch let e as MapError {
            if e.kind == .missingFile {
                throw MapError(.missingFile, "the \(role) file does not exist", file: url.path,
                               hint: "check the path; give a PLY with int vertex properties semantic and instance")
            }
            throw e.at(file: url.path)
        }
    }

    /// The `semantic` and `instance` properties of a PLY, checked: present, vertices present and finite, classes in
    /// the vocabulary (or 0).
    private static func labels(_ ply: PLYData, role: String, source: String,
                               vocabulary: Vocabulary) throws -> (semantic: [Int32], instance: [Int32]) {
        var found: [[Int32]] = []
        for name in ["semantic", "instance"] {
            guard let values = ply.label(name) else {
                let has = ply.labels.map(\.name)
                throw MapError(.badFormat, "the \(role) has no int vertex property '\(name)' (it has: "
                               + (has.isEmpty ? "none" : has.joined(separator: ", ")) + ")", file: source,
                               hint: role == "mesh" ? "export the map with panoptic labels (vertex properties semantic and instance)"
                                                    : "use a GT point cloud with labels, e.g. a synthetic sequence's gt/surface.ply")
            }
            found.append(values)
        }
        guard !ply.positions.isEmpty else {
            throw MapError(.badFormat, "the \(role) PLY has no vertices", file: source, hint: "give a non-empty PLY")
        }
        for (i, p) in ply.positions.enumerated() where !(p.x.isFinite && p.y.isFinite && p.z.isFinite) {
            throw MapError(.corruptFile, "vertex \(i) of the \(role) is not finite (\(p))", file: source,
                           hint: "re-export the \(role)")
        }
        if let k = ClassTable(vocabulary).firstUnknown(found[0]) {
            throw MapError(.unknownClass, "vertex \(k) of the \(role) has class id \(found[0][k]), not in the vocabulary",
                           file: source, hint: "check that the vocabulary matches the labels")
        }
        return (found[0], found[1])
    }
}

/// Which class ids are valid labels: 0 (none) and the vocabulary's, as a lookup table over 0...65535.
private struct ClassTable {
    var known = [Bool](repeating: false, count: 65536)

    init(_ vocabulary: Vocabulary) {
        known[0] = true
        for c in vocabulary.classes where c.id > 0 && c.id < known.count { known[c.id] = true }
    }

    /// Index of the first label that is not a valid class id, nil when all are.
    func firstUnknown<T: BinaryInteger>(_ labels: [T]) -> Int? {
        labels.firstIndex { $0 < 0 || $0 >= known.count || !known[Int($0)] }
    }
}
