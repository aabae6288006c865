import Foundation
import IO
import Kernels
import MapCore

/// Novel views of every branch at one pose: colour and depth from the Gaussians; semantic, instance and panoptic
/// colour-coded images from the fields (labels rendered along the rays to the SDF surface).
public struct BranchViews: Sendable {
    public var rgb: RGBImage?
    /// Normalised expected depth of the Gaussians (metres; 0 where their alpha is below one half), else the
    /// sphere-traced SDF depth.
    public var depth: DepthImage?
    public var labels: PanopticLabels?
    public var semantic: RGBImage?
    public var instance: RGBImage?
    public var panoptic: RGBImage?

    /// PNG files by name suffix: `rgb`, `depth` (16-bit millimetres), `depth-color` (grey, near = bright),
    /// `semantic-color`, `instance-color`, `panoptic-color` (colour-coded), and with `ids` the 16-bit id images
    /// `semantic` / `instance` (class and instance ids, what `pano eval panoptic` reads).
    public func pngs(ids: Bool = false) throws -> [(name: String, png: [UInt8])] {
        var out: [(name: String, png: [UInt8])] = []
        if let rgb { out.append(("rgb", try PNGCodec.encodeRGB8(rgb))) }
        if let depth {
            out.append(("depth", try PNGCodec.encodeGray16(ImageFiles.depthRaw(depth, unitsPerMetre: 1000))))
            out.append(("depth-color", try PNGCodec.encodeGray8(BranchRendering.greyDepth(depth))))
        }
        for (name, image) in [("semantic-color", semantic), ("instance-color", instance), ("panoptic-color", panoptic)] {
            if let image { out.append((name, try PNGCodec.encodeRGB8(image))) }
        }
        if ids, let labels, let d = depth {
            func gray(_ v: [Int32]) -> Gray16Image {
                Gray16Image(width: d.width, height: d.height, channels: 1, data: v.map { UInt16(clamping: $0) })
            }
            out.append(("semantic", try PNGCodec.encodeGray16(gray(labels.semantic))))
            out.append(("instance", try PNGCodec.encodeGray16(gray(labels.instance))))
        }
        return out
    }
}

public enum BranchRendering {
    /// Writes the views' PNGs as `directory/NNNNNN-<name>.png` (atomically; the directory is created), only the
    /// `names` given (all when nil).
    public static func write(_ v: BranchViews, frame: Int, into directory: URL, names: Set<String>? = nil,
                             ids: Bool = false) throws {
        try Files.createDirectory(directory)
        for (name, png) in try v.pngs(ids: ids) where names?.contains(name) ?? true {
            try Files.writeAtomically(png, to: directory.appendingPathComponent("\(frameName(frame))-\(name).png"))
        }
    }

    /// Renders whichever branches exist. Labels need the geometry field (for the ray's surface depth).
    public static func render(T_W_C: RigidTransform, intrinsics k: Intrinsics, geometry: GeometryField?,
                              gaussians: GaussianSet?, panoptic: PanopticTrainer?, legend: PanopticLegend?,
                              threads: Int = Parallel.defaultThreads) -> BranchViews {
        var v = BranchViews()
        if let gaussians, gaussians.count > 0 {
            let r = GaussianSplatting.render(gaussians, camera: SplatCamera(T_W_C: T_W_C, intrinsics: k),
                                             options: SplatOptions(threads: threads))
            v.rgb = RGBImage(width: k.width, height: k.height, channels: 3,
                             data: r.color.map { UInt8(max(0, min(255, ($0 * 255).rounded()))) })
            v.depth = DepthImage(width: k.width, height: k.height, channels: 1,
                                 data: zip(r.depth, r.alpha).map { $1 >= 0.5 ? $0 / $1 : 0 })
        }
        var surface: DepthImage?
        if let geometry {
            var raycaster = SDFRaycaster()
            raycaster.far = 10
            surface = raycaster.depth(field: geometry, T_W_C: T_W_C, intrinsics: k)
            if v.depth == nil { v.depth = surface }
        }
        if let panoptic, let legend, let surface, panoptic.tokens.count > 0 {
            let l = panoptic.renderLabels(T_W_C: T_W_C, intrinsics: k, depth: surface.data)
            v.labels = l
            let vocabulary = panoptic.semantic.vocabulary
            var sem = [UInt8](repeating: 0, count: 3 * l.semantic.count), ins = sem
            for i in l.semantic.indices {
                if let c = vocabulary.class(id: Int(l.semantic[i])) { for j in 0..<3 { sem[3 * i + j] = c.color[j] } }
                let col = instanceColor(Int(l.instance[i]))
                for j in 0..<3 { ins[3 * i + j] = col[j] }
            }
            v.semantic = RGBImage(width: k.width, height: k.height, channels: 3, data: sem)
            v.instance = RGBImage(width: k.width, height: k.height, channels: 3, data: ins)
            v.panoptic = legend.colorImage(l, width: k.width, height: k.height)
        }
        return v
    }

    /// A distinct colour per instance id (hue by the golden angle); 0 (stuff / no instance) is dark grey.
    public static func instanceColor(_ id: Int) -> [UInt8] {
        guard id > 0 else { return [40, 40, 40] }
        let h = (Double(id) * 0.618_033_988_75).truncatingRemainder(dividingBy: 1) * 6
        let x = 1 - abs(h.truncatingRemainder(dividingBy: 2) - 1)
        let (r, g, b): (Double, Double, Double) = switch Int(h) {
        case 0: (1, x, 0)
        case 1: (x, 1, 0)
        case 2: (0, 1, x)
        case 3: (0, x, 1)
        case 4: (x, 0, 1)
        default: (1, 0, x)
        }
        return [r, g, b].map { UInt8(55 + 200 * $0) }
    }

    /// Depth as an 8-bit grey picture: near = bright, no depth = black, scaled to the image's farthest depth.
    public static func greyDepth(_ depth: DepthImage) -> Image<UInt8> {
        let far = max(0.5, depth.data.filter(\.isFinite).max() ?? 1)
        return Image<UInt8>(width: depth.width, height: depth.height, channels: 1, data: depth.data.map { d in
            d > 0 && d.isFinite ? UInt8(max(0, min(255, 255 * (1 - d / far)))) : 0
        })
    }
}
