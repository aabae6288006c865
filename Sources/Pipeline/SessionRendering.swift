import Fields
import Foundation
import IO
import MapCore

extension MappingSession {
    /// Every branch of the session's map rendered at `T_W_C` (colour and depth from the Gaussians, labels from the
    /// fields, see `BranchRendering`), PNG files written as `directory/<name>-<branch>.png`; `ids` adds the 16-bit
    /// `semantic` / `instance` id images (`pano eval panoptic` reads them when `name` is a frame number).
    public func writeViews(_ poses: [(name: String, T_W_C: RigidTransform)], intrinsics: Intrinsics,
                           into directory: URL, ids: Bool = false) throws -> [String] {
        try Files.createDirectory(directory)
        let legend = mapper.panoptic.flatMap { $0.tokens.count > 0 ? $0.legend() : nil }
        var written: [String] = []
        for (name, pose) in poses {
            let v = mapper.views(T_W_C: pose, intrinsics: intrinsics, legend: legend)
            for (branch, png) in try v.pngs(ids: ids) {
                let url = directory.appendingPathComponent("\(name)-\(branch).png")
                try Files.writeAtomically(png, to: url)
                written.append(url.lastPathComponent)
            }
        }
        return written
    }

    /// Renders every held-out frame of the source (`KeyframePolicy.holdOut`) at its own pose and intrinsics, with id
    /// images, into `directory` as NNNNNN-<branch>.png. Returns the frames rendered (none without a hold-out).
    @discardableResult
    public func writeHeldOutViews(into directory: URL, frames: (Int) throws -> Frame) throws -> [Int] {
        let policy = config.mapper.keyframes
        let indices = (0..<(progress.totalFrames ?? progress.position)).filter { policy.isHeldOut($0) }
        for i in indices {
            let f = try frames(i)
            _ = try writeViews([(frameName(i), f.T_W_C)], intrinsics: f.intrinsics, into: directory, ids: true)
        }
        return indices
    }

    /// The poses of the session's keyframes (source index, pose), oldest first.
    public var keyframePoses: [(index: Int, T_W_C: RigidTransform)] { mapper.keyframes.map { ($0.index, $0.T_W_C) } }
}
