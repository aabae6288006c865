import Foundation

/// One semantic class. `isThing` splits countable objects (things, which get instances) from stuff.
public struct SemanticClass: Sendable, Equatable, Codable {
    public var id: Int
    public var name: String
    public var isThing: Bool
    /// Display colour (r, g, b) for renders and legends.
    public var color: [UInt8]

    public init(id: Int, name: String, isThing: Bool, color: [UInt8]) {
        self.id = id; self.name = name; self.isThing = isThing; self.color = color
    }

    enum CodingKeys: String, CodingKey { case id, name, isThing = "thing", color }
}

/// The class list of a sequence, loaded from its vocabulary file; any number of classes. Id 0 is reserved for
/// "no label" and must not be used by a class.
public struct Vocabulary: Sendable, Equatable, Codable {
    public var classes: [SemanticClass]

    public init(classes: [SemanticClass]) { self.classes = classes }

    public func `class`(id: Int) -> SemanticClass? { classes.first { $0.id == id } }
    public func contains(id: Int) -> Bool { classes.contains { $0.id == id } }
    public var thingIDs: [Int] { classes.filter(\.isThing).map(\.id) }
    public var stuffIDs: [Int] { classes.filter { !$0.isThing }.map(\.id) }

    /// Checks ids are unique, positive and colours have 3 components; `source` names the file for the error.
    public func validate(source: String) throws {
        var seen = Set<Int>()
        for c in classes {
            guard c.id > 0, c.id <= Int(UInt16.max) else {
                throw MapError(.badFormat, "class '\(c.name)' has id \(c.id); ids must be in 1...65535 (0 = no label)",
                               file: source, hint: "renumber the classes")
            }
            guard seen.insert(c.id).inserted else {
                throw MapError(.badFormat, "class id \(c.id) appears twice", file: source, hint: "make class ids unique")
            }
            guard c.color.count == 3 else {
                throw MapError(.badFormat, "class '\(c.name)' colour needs 3 components, has \(c.color.count)",
                               file: source, hint: "write \"color\": [r, g, b]")
            }
        }
    }

    public static func load(from url: URL) throws -> Vocabulary {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw MapError(.missingFile, "cannot read vocabulary", file: url.path,
                           hint: "write a vocabulary.json (see README, 'Sequence format')")
        }
        let v: Vocabulary
        do { v = try JSONDecoder().decode(Vocabulary.self, from: data) } catch {
            throw MapError(.badFormat, "vocabulary is not valid JSON of the documented shape (\(error))",
                           file: url.path, hint: "see README, 'Sequence format'")
        }
        try v.validate(source: url.path)
        return v
    }

    public func jsonData() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? enc.encode(self)) ?? Data()
    }

    /// A deterministic, well-spread display colour for index `i` (golden-angle hue walk).
    public static func paletteColor(_ i: Int) -> [UInt8] {
        let h = (Double(i) * 137.508).truncatingRemainder(dividingBy: 360) / 60
        let s = 0.65, v = 0.9
        let c = v * s, x = c * (1 - abs(h.truncatingRemainder(dividingBy: 2) - 1)), m = v - c
        let (r, g, b): (Double, Double, Double)
        switch Int(h) {
        case 0: (r, g, b) = (c, x, 0)
        case 1: (r, g, b) = (x, c, 0)
        case 2: (r, g, b) = (0, c, x)
        case 3: (r, g, b) = (0, x, c)
        case 4: (r, g, b) = (x, 0, c)
        default: (r, g, b) = (c, 0, x)
        }
        return [r, g, b].map { UInt8(max(0, min(255, (($0 + m) * 255).rounded()))) }
    }
}
