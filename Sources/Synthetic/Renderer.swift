import Dispatch
import Foundation
import MapCore

/// A noise-free render of the scene from one pose, with all ground truth.
public struct SyntheticRender: Sendable, Equatable {
    public var rgb: RGBImage
    /// Camera-frame z (metres) of the nearest surface; never 0 inside the closed room.
    public var depth: DepthImage
    /// World-frame unit normals of the visible surface (3 channels).
    public var normals: Image<Float>
    /// |cos| of the angle between the surface normal and the viewing ray (used for grazing-angle dropout).
    public var viewCosine: Image<Float>
    /// Semantic class id per pixel (0 = none).
    public var semantic: Gray16Image
    /// Global instance id per pixel (0 for stuff or none).
    public var instance: Gray16Image
    /// Panoptic segment id per pixel (see `PanopticSegmentTable`; 0 = none).
    public var panoptic: Gray16Image
}

/// Renders the analytic room with exact ray–primitive intersection (nearest hit per pixel), Lambertian shading of
/// procedural albedo (view-independent), and ground-truth label images.
public struct SceneRenderer: Sendable {
    public let room: SyntheticRoom
    public let segmentTable: PanopticSegmentTable
    /// Panoptic id and (semantic, instance) per owner code of `SyntheticRoom.castRay`.
    let ownerPanoptic: [UInt16]
    let ownerSemantic: [UInt16]
    let ownerInstance: [UInt16]
    let ownerMaterial: [Material]

    public init(room: SyntheticRoom, segmentTable: PanopticSegmentTable) {
        self.room = room; self.segmentTable = segmentTable
        var pan: [UInt16] = [], sem: [UInt16] = [], ins: [UInt16] = [], mat: [Material] = []
        for owner in 0...room.ceilingOwner {
            let info = room.ownerInfo(owner)
            sem.append(UInt16(info.semantic)); ins.append(UInt16(info.instance))
            pan.append(UInt16(segmentTable.panopticID(semantic: info.semantic, instance: info.instance)))
            mat.append(room.material(ofOwner: owner))
        }
        ownerPanoptic = pan; ownerSemantic = sem; ownerInstance = ins; ownerMaterial = mat
    }

    /// Renders a view from camera pose `T_W_C` with `intrinsics`. `threads` 1 or 2 (row bands); same result.
    public func render(T_W_C: RigidTransform, intrinsics: Intrinsics, threads: Int = 1) -> SyntheticRender {
        let w = intrinsics.width, h = intrinsics.height, n = w * h
        var out = Buffers(count: n)
        let bands = max(1, min(threads, h))
        if bands == 1 {
            out.withPointers { renderRows(0..<h, T_W_C: T_W_C, intrinsics: intrinsics, into: $0) }
        } else {
            out.withPointers { ptrs in
                DispatchQueue.concurrentPerform(iterations: bands) { b in
                    renderRows((b * h / bands)..<((b + 1) * h / bands), T_W_C: T_W_C, intrinsics: intrinsics,
                               into: ptrs)
                }
            }
        }
        return SyntheticRender(
            rgb: Image(width: w, height: h, channels: 3, data: out.rgb),
            depth: Image(width: w, height: h, data: out.depth),
            normals: Image(width: w, height: h, channels: 3, data: out.normal),
            viewCosine: Image(width: w, height: h, data: out.cosine),
            semantic: Image(width: w, height: h, data: out.semantic),
            instance: Image(width: w, height: h, data: out.instance),
            panoptic: Image(width: w, height: h, data: out.panoptic))
    }

    struct Buffers {
        var rgb: [UInt8], depth: [Float], normal: [Float], cosine: [Float]
        var semantic: [UInt16], instance: [UInt16], panoptic: [UInt16]
        init(count n: Int) {
            rgb = [UInt8](repeating: 0, count: 3 * n); depth = [Float](repeating: 0, count: n)
            normal = [Float](repeating: 0, count: 3 * n); cosine = [Float](repeating: 0, count: n)
            semantic = [UInt16](repeating: 0, count: n); instance = semantic; panoptic = semantic
        }
        mutating func withPointers(_ body: (Pointers) -> Void) {
            rgb.withUnsafeMutableBufferPointer { rgb in
                depth.withUnsafeMutableBufferPointer { depth in
                    normal.withUnsafeMutableBufferPointer { normal in
                        cosine.withUnsafeMutableBufferPointer { cosine in
                            semantic.withUnsafeMutableBufferPointer { semantic in
                                instance.withUnsafeMutableBufferPointer { instance in
                                    panoptic.withUnsafeMutableBufferPointer { panoptic in
                                        body(Pointers(rgb: rgb, depth: depth, normal: normal, cosine: cosine,
                                                      semantic: semantic, instance: instance, panoptic: panoptic))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Output pointers of one render. @unchecked Sendable is safe because the pointers are only used inside
    /// `Buffers.withPointers` (the arrays outlive every use) and each concurrent band writes a disjoint row range.
    struct Pointers: @unchecked Sendable {
        let rgb: UnsafeMutableBufferPointer<UInt8>, depth: UnsafeMutableBufferPointer<Float>
        let normal: UnsafeMutableBufferPointer<Float>, cosine: UnsafeMutableBufferPointer<Float>
        let semantic: UnsafeMutableBufferPointer<UInt16>, instance: UnsafeMutableBufferPointer<UInt16>
        let panoptic: UnsafeMutableBufferPointer<UInt16>
    }

    /// The per-pixel loop: no allocation, plain writes into the flat output buffers.
    func renderRows(_ rows: Range<Int>, T_W_C: RigidTransform, intrinsics K: Intrinsics, into out: Pointers) {
        let R = T_W_C.rotation, o = T_W_C.translation
        let w = K.width
        for v in rows {
            let yC = (Double(v) - K.cy) / K.fy
            for u in 0..<w {
                // Ray with camera-frame z = 1, so the hit parameter t is the camera-frame depth.
                let d_C = Vec3((Double(u) - K.cx) / K.fx, yC, 1)
                let d_W = R * d_C
                let hit = room.castRay(origin: o, direction: d_W)
                let i = v * w + u
                let p_W = o + hit.t * d_W
                let n = hit.normal
                out.depth[i] = Float(hit.t)
                out.normal[3 * i] = Float(n.x); out.normal[3 * i + 1] = Float(n.y); out.normal[3 * i + 2] = Float(n.z)
                out.cosine[i] = Float(abs(dot(n, d_W)) / length(d_W))
                out.semantic[i] = ownerSemantic[hit.owner]
                out.instance[i] = ownerInstance[hit.owner]
                out.panoptic[i] = ownerPanoptic[hit.owner]
                let c = Lighting.shade(albedo: ownerMaterial[hit.owner].albedo(at: p_W), normal: n)
                out.rgb[3 * i] = Self.toByte(c.x); out.rgb[3 * i + 1] = Self.toByte(c.y)
                out.rgb[3 * i + 2] = Self.toByte(c.z)
            }
        }
    }

    @inlinable static func toByte(_ x: Double) -> UInt8 { UInt8(max(0, min(255, (x * 255).rounded()))) }
}
