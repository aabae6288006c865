import IO
import Kernels
import MapCore

/// One posed depth image: what a camera saw.
public struct DepthView: Sendable {
    public var T_W_C: RigidTransform
    public var intrinsics: Intrinsics
    /// Depth in metres along +z of the camera, 0 = invalid.
    public var depth: DepthImage

    public init(T_W_C: RigidTransform, intrinsics: Intrinsics, depth: DepthImage) {
        self.T_W_C = T_W_C; self.intrinsics = intrinsics; self.depth = depth
    }

    public init(_ frame: Frame) { self.init(T_W_C: frame.T_W_C, intrinsics: frame.intrinsics, depth: frame.depth) }
}

/// Visibility culling for geometry evaluation (the usual protocol: surfaces no camera ever saw do not count).
/// A point is seen by a view when it is in front of the camera (z > 0), projects inside the image onto a pixel
/// (pixel (u, v) covers [u − ½, u + ½) × [v − ½, v + ½), centres at integer coordinates as in `Intrinsics`) whose depth
/// is valid (> 0, finite), and is not occluded: its depth z ≤ that pixel's depth + `margin`. A point is kept when at
/// least one view sees it.
public struct VisibilityCulling: Sendable {
    /// Occlusion tolerance in metres (depth noise and surface sampling).
    public var margin: Double
    public var threads: Int

    public init(margin: Double = 0.03, threads: Int = Parallel.defaultThreads) {
        self.margin = margin; self.threads = threads
    }

    /// Marks in `visible` every point `view` sees (points already marked are skipped).
    public func mark(_ visible: inout [Bool], points: [SIMD3<Float>], view: DepthView) {
        precondition(visible.count == points.count, "one flag per point")
        let T_C_W = view.T_W_C.inverse
        let r = T_C_W.rotation, t = T_C_W.translation, K = view.intrinsics, depth = view.depth
        let w = depth.width, h = depth.height, margin = self.margin
        visible.withUnsafeMutableBufferPointer { vis in
            points.withUnsafeBufferPointer { pts in
                depth.data.withUnsafeBufferPointer { d in
                    Parallel.forEachChunk(count: pts.count, threads: threads, alignment: 64) { _, range in
                        for i in range where !vis[i] {
                            let p = SIMD3<Double>(pts[i])
                            let z = (r.r2 * p).sum() + t.z
                            guard z > 0 else { continue }
                            let x = (r.r0 * p).sum() + t.x, y = (r.r1 * p).sum() + t.y
                            let u = K.fx * x / z + K.cx + 0.5, v = K.fy * y / z + K.cy + 0.5
                            guard u >= 0, v >= 0, u < Double(w), v < Double(h) else { continue }
                            let dv = Double(d[Int(v) * w + Int(u)])
                            if dv > 0, dv.isFinite, z <= dv + margin { vis[i] = true }
                        }
                    }
                }
            }
        }
    }

    /// Which of `points` at least one of `views` sees.
    public func visibleMask(points: [SIMD3<Float>], views: [DepthView]) -> [Bool] {
        var visible = [Bool](repeating: false, count: points.count)
        for v in views { mark(&visible, points: points, view: v) }
        return visible
    }

    /// Which of `points` at least one frame of `reader` sees (every `frameStride`-th frame, read one at a time).
    public func visibleMask(points: [SIMD3<Float>], reader: any SequenceReader, frameStride: Int = 1,
                            progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws(MapError) -> [Bool] {
        guard frameStride >= 1 else {
            throw MapError(.badArgument, "frame stride \(frameStride) is not positive", hint: "give 1 to use every frame")
        }
        var visible = [Bool](repeating: false, count: points.count)
        let indices = Array(stride(from: 0, to: reader.info.frameCount, by: frameStride))
        for (n, i) in indices.enumerated() {
            let frame: Frame
            do { frame = try reader.frame(at: i) } catch let e as MapError { throw e.at(frame: i, file: reader.files(at: i)) } catch {
                throw MapError(.ioFailure, "cannot read frame: \(error)", file: reader.files(at: i), frame: i,
                               hint: "check the sequence files")
            }
            guard frame.depth.width == frame.intrinsics.width, frame.depth.height == frame.intrinsics.height else {
                throw MapError(.sizeMismatch, "depth is \(frame.depth.width)x\(frame.depth.height) but the intrinsics are for \(frame.intrinsics.width)x\(frame.intrinsics.height)",
                               file: reader.files(at: i), frame: i, hint: "check the sequence's calibration")
            }
            mark(&visible, points: points, view: DepthView(frame))
            progress?(n + 1, indices.count)
        }
        return visible
    }

    /// The points `mask` keeps.
    public static func filter(_ points: [SIMD3<Float>], _ mask: [Bool]) -> [SIMD3<Float>] {
        zip(points, mask).compactMap { $1 ? $0 : nil }
    }
}
