import IO
import Kernels
import MapCore

// PLY conversion of `TriangleMesh`. It lives here rather than beside `TriangleMesh` because module Kernels does not
// depend on IO (and IO does not depend on Kernels).
extension TriangleMesh {
    /// The mesh as PLY data (positions, normals, colours, integer labels, faces).
    public var plyData: PLYData {
        PLYData(positions: vertices, normals: normals, colors: colors, labels: labels, faces: triangles)
    }

    /// A mesh (or, with no faces, a point cloud) from PLY data; checks the per-vertex arrays and indices.
    public init(ply: PLYData, source: String) throws(MapError) {
        self.init(vertices: ply.positions, normals: ply.normals, colors: ply.colors, labels: ply.labels,
                  triangles: ply.faces)
        try validate(source: source)
    }
}
