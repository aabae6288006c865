import Foundation
import IO
import MapCore

/// A synthetic scene written as one of our sequence directories (see `SequenceWriter`), plus its ground truth:
///
///     gt/semantic/NNNNNN.png   16-bit class ids (0 = none)
///     gt/instance/NNNNNN.png   16-bit global instance ids (0 = stuff/none)
///     gt/panoptic/NNNNNN.png   16-bit panoptic segment ids, see gt/segments.json
///     gt/depth/NNNNNN.png      16-bit clean depth, same depth scale as depth/
///     gt/segments.json         panoptic segment id -> class, instance, thing
///     gt/surface.ply           surface samples: x y z, nx ny nz, semantic, instance, panoptic
///     gt/synthetic.json        the SyntheticSceneConfig that produced the directory
///
/// The same config writes byte-identical files.
public struct SyntheticSequence: Sendable {
    public let scene: SyntheticScene
    /// Depth units per metre of the 16-bit depth PNGs (1000 = millimetres).
    public var depthScale: Double = 1000

    public init(scene: SyntheticScene) { self.scene = scene }

    /// Writes all frames and the ground truth into `directory` (created if needed). `progress` gets each frame index
    /// after it is written.
    public func write(to directory: URL, progress: ((Int) -> Void)? = nil) throws {
        let cfg = scene.config
        let writer = try SequenceWriter(directory: directory, name: "synthetic-room-seed\(cfg.seed)",
                                        intrinsics: scene.intrinsics, depthScale: depthScale,
                                        frameRate: cfg.framesPerSecond, rgbFormat: "png", vocabulary: scene.vocabulary)
        let gt = directory.appendingPathComponent("gt")
        for sub in ["semantic", "instance", "panoptic", "depth"] {
            try Files.createDirectory(gt.appendingPathComponent(sub))
        }
        func url(_ sub: String, _ i: Int) -> URL {
            gt.appendingPathComponent(sub).appendingPathComponent(frameName(i) + ".png")
        }
        for i in 0..<scene.frameCount {
            let f = try scene.frame(i)
            try writer.write(f.frame)
            try Files.writeAtomically(try PNGCodec.encodeGray16(f.semantic), to: url("semantic", i))
            try Files.writeAtomically(try PNGCodec.encodeGray16(f.instance), to: url("instance", i))
            try Files.writeAtomically(try PNGCodec.encodeGray16(f.panoptic), to: url("panoptic", i))
            let raw = ImageFiles.depthRaw(f.cleanDepth, unitsPerMetre: depthScale)
            try Files.writeAtomically(try PNGCodec.encodeGray16(raw), to: url("depth", i))
            progress?(i)
        }
        try writer.finish()
        try Files.writeAtomically(scene.segmentTable.jsonData(), to: gt.appendingPathComponent("segments.json"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(try enc.encode(cfg), to: gt.appendingPathComponent("synthetic.json"))
        try PLY.write(surfacePLY(scene.surfaceSamples()), to: gt.appendingPathComponent("surface.ply"))
    }

    /// Surface samples as a PLY point cloud with normals and `semantic`, `instance`, `panoptic` vertex properties.
    public func surfacePLY(_ samples: [SurfaceSample]) -> PLYData {
        let table = scene.segmentTable
        return PLYData(
            positions: samples.map { SIMD3<Float>(Float($0.position.x), Float($0.position.y), Float($0.position.z)) },
            normals: samples.map { SIMD3<Float>(Float($0.normal.x), Float($0.normal.y), Float($0.normal.z)) },
            labels: [("semantic", samples.map { Int32($0.semantic) }),
                     ("instance", samples.map { Int32($0.instance) }),
                     ("panoptic", samples.map { Int32(table.panopticID(semantic: $0.semantic, instance: $0.instance)) })])
    }
}
