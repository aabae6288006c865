import Kernels
import MapCore

/// Marching cubes over the field, block-wise (so the online pipeline can re-mesh only dirty blocks).
public enum GeometryMeshing {
    /// A block mesher whose grid covers `bounds` at `voxelSize`, with the field as evaluator.
    public static func mesher(bounds: SceneBounds, voxelSize: Float) throws -> BlockMesher {
        var config = BlockMesher.Config(grid: BlockGrid(origin: bounds.min, voxelSize: voxelSize, blockVoxels: 16))
        config.threads = 1 // the field spreads each batch over the cores itself
        return try BlockMesher(config: config)
    }

    /// The whole mesh of the field inside `bounds` (blocks reach past the box, where the field only repeats its
    /// clamped border values, so the mesh is cropped to the box).
    public static func mesh(field: GeometryField, bounds: SceneBounds, voxelSize: Float) throws -> TriangleMesh {
        var m = try mesher(bounds: bounds, voxelSize: voxelSize)
        try m.remesh(m.config.grid.blocks(covering: bounds.min, bounds.max), sdf: field.evaluator())
        return m.assemble().cropped(to: bounds.min, bounds.max)
    }
}
