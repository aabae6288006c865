import IO
import Kernels
import MapCore

extension PanopticTrainer {
    /// The legend of the trained map: every stuff class of the vocabulary, then one entry per token (instance
    /// i + 1, the token's class).
    public func legend() -> PanopticLegend {
        let vocabulary = semantic.vocabulary
        let things = classHead.classes(tokens).enumerated().map {
            (instance: $0.offset + 1, classID: semantic.classID(ofIndex: Int(thingClasses[$0.element])))
        }
        return PanopticLegend.make(vocabulary: vocabulary, stuffClassIDs: vocabulary.stuffIDs, things: things)
    }

    /// Replaces the mesh's `semantic`, `instance` and `panoptic` vertex labels by the map's (point-level head).
    public func label(_ mesh: inout TriangleMesh, legend: PanopticLegend) {
        let l = labels(points: mesh.vertices)
        mesh.labels.removeAll { ["semantic", "instance", "panoptic"].contains($0.name) }
        mesh.labels.append((name: "semantic", values: l.semantic))
        mesh.labels.append((name: "instance", values: l.instance))
        mesh.labels.append((name: "panoptic", values: zip(l.semantic, l.instance).map {
            Int32(legend.panopticID(classID: Int($0), instance: Int($1)))
        }))
    }
}

extension PanopticLegend {
    /// An RGB image (width x height) of per-pixel labels in legend colours (black where the legend has no entry).
    public func colorImage(_ l: PanopticLabels, width: Int, height: Int) -> RGBImage {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<min(width * height, l.semantic.count) {
            guard let e = entry(id: panopticID(classID: Int(l.semantic[i]), instance: Int(l.instance[i]))) else { continue }
            for c in 0..<3 { rgb[3 * i + c] = e.color[c] }
        }
        return RGBImage(width: width, height: height, channels: 3, data: rgb)
    }
}
