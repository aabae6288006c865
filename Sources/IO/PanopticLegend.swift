import Foundation
import MapCore

/// The `legend.json` of a map snapshot: what each panoptic id of the mesh's `panoptic` vertex property (and of
/// panoptic renders) stands for. Stuff segments are a class (instance 0); thing segments one instance of a class.
///
/// ```json
/// { "format_version": 1,
///   "entries": [ { "id": 1, "class": 1, "name": "wall", "thing": false, "instance": 0, "color": [80, 230, 124] },
///                { "id": 5, "class": 7, "name": "chair", "thing": true, "instance": 3, "color": [230, 80, 91] } ] }
/// ```
/// Panoptic id 0 means "no label" and is not listed.
public struct PanopticLegend: Sendable, Equatable, Codable {
    /// One panoptic segment.
    public struct Entry: Sendable, Equatable, Codable {
        /// Panoptic id, 1...
        public var id: Int
        /// Vocabulary class id.
        public var classID: Int
        /// Class name (for readers without the vocabulary).
        public var name: String
        public var isThing: Bool
        /// Instance id for things (> 0), 0 for stuff.
        public var instance: Int
        /// Display colour (r, g, b).
        public var color: [UInt8]

        public init(id: Int, classID: Int, name: String, isThing: Bool, instance: Int, color: [UInt8]) {
            self.id = id; self.classID = classID; self.name = name; self.isThing = isThing
            self.instance = instance; self.color = color
        }

        enum CodingKeys: String, CodingKey { case id, classID = "class", name, isThing = "thing", instance, color }
    }

    /// The version this code writes and reads.
    public static let formatVersion = 1

    public var formatVersion: Int
    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.formatVersion = Self.formatVersion; self.entries = entries
    }

    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", entries }

    /// A legend for a map: stuff classes get ids 1...S in the order given, then thing instances S+1... in the order
    /// given. Names come from the vocabulary ("class N" for an id it lacks). Stuff colours are the class colours; thing
    /// colours come from `Vocabulary.paletteColor(instance)`, so an instance keeps its colour from snapshot to snapshot.
    public static func make(vocabulary: Vocabulary, stuffClassIDs: [Int],
                            things: [(instance: Int, classID: Int)]) -> PanopticLegend {
        func name(_ c: Int) -> String { vocabulary.class(id: c)?.name ?? "class \(c)" }
        var entries: [Entry] = []
        for c in stuffClassIDs {
            entries.append(Entry(id: entries.count + 1, classID: c, name: name(c), isThing: false, instance: 0,
                                 color: vocabulary.class(id: c)?.color ?? Vocabulary.paletteColor(c)))
        }
        for t in things {
            entries.append(Entry(id: entries.count + 1, classID: t.classID, name: name(t.classID), isThing: true,
                                 instance: t.instance, color: Vocabulary.paletteColor(t.instance)))
        }
        return PanopticLegend(entries: entries)
    }

    /// The entry with panoptic id `id`.
    public func entry(id: Int) -> Entry? { entries.first { $0.id == id } }

    /// The panoptic id of a (class, instance) label: the instance's entry for things, the class's for stuff; 0 when
    /// the legend has none.
    public func panopticID(classID: Int, instance: Int) -> Int {
        entries.first { $0.classID == classID && (!$0.isThing || $0.instance == instance) }?.id ?? 0
    }

    /// Checks the version, ids (unique, 1...), class ids (1...65535), instances (0 for stuff, unique and > 0 for
    /// things), one entry per stuff class and 3-component colours; `source` names the file for the error.
    public func validate(source: String) throws(MapError) {
        func bad(_ m: String, _ hint: String) -> MapError { MapError(.badFormat, m, file: source, hint: hint) }
        guard formatVersion == Self.formatVersion else {
            throw MapError(.unsupported, "legend format_version \(formatVersion); this build reads \(Self.formatVersion)",
                           file: source, hint: "re-export the map with this version of pano")
        }
        var ids = Set<Int>(), stuff = Set<Int>(), instances = Set<Int>()
        for (k, e) in entries.enumerated() {
            let at = "entry \(k) (id \(e.id))"
            guard e.id > 0 else { throw bad("\(at): panoptic ids start at 1 (0 = no label)", "renumber the entries") }
            guard ids.insert(e.id).inserted else { throw bad("\(at): panoptic id appears twice", "make ids unique") }
            guard e.classID > 0, e.classID <= Int(UInt16.max) else {
                throw bad("\(at): class id \(e.classID) is outside 1...65535", "use the vocabulary's class ids")
            }
            guard e.color.count == 3 else {
                throw bad("\(at): colour needs 3 components, has \(e.color.count)", "write \"color\": [r, g, b]")
            }
            if e.isThing {
                guard e.instance > 0 else { throw bad("\(at): a thing needs an instance id > 0", "give the instance id") }
                guard instances.insert(e.instance).inserted else {
                    throw bad("\(at): instance \(e.instance) appears twice", "list each instance once")
                }
            } else {
                guard e.instance == 0 else { throw bad("\(at): stuff has instance 0, not \(e.instance)", "write \"instance\": 0") }
                guard stuff.insert(e.classID).inserted else {
                    throw bad("\(at): stuff class \(e.classID) appears twice", "list each stuff class once")
                }
            }
        }
    }

    /// Pretty-printed JSON with sorted keys.
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { return try enc.encode(self) } catch {
            throw MapError(.badArgument, "cannot encode the legend: \(error)")
        }
    }

    /// Validates, then writes atomically (temporary file, rename).
    public func write(to url: URL) throws {
        try validate(source: url.path)
        try Files.writeAtomically(try jsonData(), to: url)
    }

    /// Reads and validates a legend; errors name the file and, for a bad field, its path (e.g. `entries[2].color`).
    public static func load(from url: URL) throws -> PanopticLegend {
        let bytes = try Files.read(url, what: "legend")
        let legend: PanopticLegend
        do { legend = try JSONDecoder().decode(PanopticLegend.self, from: Data(bytes)) } catch let e as DecodingError {
            throw MapError(.badFormat, "legend: \(describe(e))", file: url.path,
                           hint: "write the legend with PanopticLegend.write (see DESIGN.md, 'Data formats')")
        }
        try legend.validate(source: url.path)
        return legend
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            let parts = keys.map { key -> String in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }
            return String(parts.joined().drop(while: { (c: Character) in c == "." }))
        }
        switch e {
        case .keyNotFound(let key, let c):
            return "missing field '\(path(c.codingPath + [key]))'"
        case .typeMismatch(_, let c), .valueNotFound(_, let c):
            return "field '\(path(c.codingPath))' has the wrong type or is null"
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not valid JSON" : "field '\(path(c.codingPath))' has a bad value"
        @unknown default:
            return "\(e)"
        }
    }
}
