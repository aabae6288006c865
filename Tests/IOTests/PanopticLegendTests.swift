import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class PanopticLegendTests: XCTestCase {
    let vocabulary = Vocabulary(classes: [
        SemanticClass(id: 1, name: "wall", isThing: false, color: [200, 200, 200]),
        SemanticClass(id: 2, name: "floor", isThing: false, color: [0, 0, 255]),
        SemanticClass(id: 3, name: "chair", isThing: true, color: [255, 0, 0]),
        SemanticClass(id: 4, name: "table", isThing: true, color: [0, 255, 0]),
    ])

    func sample() -> PanopticLegend {
        PanopticLegend.make(vocabulary: vocabulary, stuffClassIDs: [2, 1],
                            things: [(instance: 5, classID: 3), (instance: 2, classID: 4), (instance: 9, classID: 3)])
    }

    func testMakeNumbersStuffThenThingsInOrder() {
        let l = sample()
        XCTAssertEqual(l.formatVersion, 1)
        XCTAssertEqual(l.entries.map(\.id), [1, 2, 3, 4, 5])
        XCTAssertEqual(l.entries.map(\.classID), [2, 1, 3, 4, 3])
        XCTAssertEqual(l.entries.map(\.name), ["floor", "wall", "chair", "table", "chair"])
        XCTAssertEqual(l.entries.map(\.isThing), [false, false, true, true, true])
        XCTAssertEqual(l.entries.map(\.instance), [0, 0, 5, 2, 9])
        XCTAssertEqual(l.entries[0].color, [0, 0, 255])
        XCTAssertEqual(l.entries[1].color, [200, 200, 200])
        XCTAssertEqual(l.entries[2].color, Vocabulary.paletteColor(5))
        XCTAssertEqual(Set(l.entries[2...].map(\.color)).count, 3, "thing colours are distinct")
        XCTAssertEqual(l.panopticID(classID: 1, instance: 0), 2)
        XCTAssertEqual(l.panopticID(classID: 1, instance: 7), 2, "stuff ignores the instance")
        XCTAssertEqual(l.panopticID(classID: 3, instance: 9), 5)
        XCTAssertEqual(l.panopticID(classID: 3, instance: 2), 0)
        XCTAssertEqual(l.entry(id: 4)?.name, "table")
        XCTAssertNoThrow(try l.validate(source: "x"))
        // Many instances: still distinct colours.
        let many = PanopticLegend.make(vocabulary: vocabulary, stuffClassIDs: [],
                                       things: (1...200).map { (instance: $0, classID: 3) })
        XCTAssertEqual(Set(many.entries.map(\.color)).count, 200)
    }

    func testRoundTripAndFieldNames() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        let url = tmp.appending("map/legend.json")
        try sample().write(to: url)
        XCTAssertEqual(try PanopticLegend.load(from: url), sample())
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        XCTAssertEqual(json["format_version"] as? Int, 1)
        let first = (json["entries"] as! [[String: Any]])[2]
        XCTAssertEqual(Set(first.keys), ["id", "class", "name", "thing", "instance", "color"])
        XCTAssertEqual(first["class"] as? Int, 3)
        XCTAssertEqual(first["thing"] as? Bool, true)
        XCTAssertEqual(first["instance"] as? Int, 5)
        XCTAssertEqual(Files.list(tmp.appending("map")), ["legend.json"], "no temporary file left behind")
    }

    /// Writes `text` as a legend file and returns the error loading it raises.
    func loadError(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> MapError? {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        let url = tmp.appending("legend.json")
        try Files.writeAtomically(text, to: url)
        do { _ = try PanopticLegend.load(from: url); XCTFail("loaded", file: file, line: line); return nil } catch let e as MapError {
            XCTAssertEqual(e.file, url.path, "the error names the file", file: file, line: line)
            return e
        }
    }

    func entry(_ fields: String) -> String { "{\"format_version\": 1, \"entries\": [\(fields)]}" }
    let wall = "{\"id\": 1, \"class\": 1, \"name\": \"wall\", \"thing\": false, \"instance\": 0, \"color\": [1, 2, 3]}"

    func testCorruptionAndBadFields() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try Files.writeAtomically(entry(wall), to: tmp.appending("ok.json"))
        XCTAssertEqual(try PanopticLegend.load(from: tmp.appending("ok.json")).entries.first?.name, "wall", "the base case is valid")
        XCTAssertThrowsError(try PanopticLegend.load(from: tmp.appending("none.json"))) { e in
            XCTAssertEqual((e as? MapError)?.kind, .missingFile)
        }
        var e = try loadError("{\"format_version\": 1, \"entries\": [")
        XCTAssertEqual(e?.kind, .badFormat)
        e = try loadError("")
        XCTAssertEqual(e?.kind, .badFormat)
        e = try loadError("{\"entries\": []}")
        XCTAssertTrue(e?.message.contains("missing field 'format_version'") ?? false, e?.description ?? "")
        e = try loadError(entry(wall + ", {\"id\": 2, \"class\": 3, \"name\": \"chair\", \"thing\": true, \"instance\": 4}"))
        XCTAssertEqual(e?.kind, .badFormat)
        XCTAssertTrue(e?.message.contains("missing field 'entries[1].color'") ?? false, e?.description ?? "")
        e = try loadError(entry(wall.replacingOccurrences(of: "\"id\": 1", with: "\"id\": \"one\"")))
        XCTAssertTrue(e?.message.contains("'entries[0].id'") ?? false, e?.description ?? "")
        e = try loadError(entry(wall.replacingOccurrences(of: "[1, 2, 3]", with: "[1, 2, 300]")))
        XCTAssertEqual(e?.kind, .badFormat)
        e = try loadError(entry(wall.replacingOccurrences(of: "[1, 2, 3]", with: "[1, 2]")))
        XCTAssertTrue(e?.message.contains("3 components") ?? false, e?.description ?? "")
        e = try loadError(entry(wall).replacingOccurrences(of: "\"format_version\": 1", with: "\"format_version\": 2"))
        XCTAssertEqual(e?.kind, .unsupported)
        e = try loadError(entry(wall + "," + wall.replacingOccurrences(of: "\"class\": 1", with: "\"class\": 2")))
        XCTAssertTrue(e?.message.contains("appears twice") ?? false, e?.description ?? "")
        e = try loadError(entry(wall.replacingOccurrences(of: "\"id\": 1", with: "\"id\": 0")))
        XCTAssertTrue(e?.message.contains("start at 1") ?? false, e?.description ?? "")
        e = try loadError(entry(wall.replacingOccurrences(of: "\"instance\": 0", with: "\"instance\": 3")))
        XCTAssertTrue(e?.message.contains("stuff has instance 0") ?? false, e?.description ?? "")
        e = try loadError(entry(wall.replacingOccurrences(of: "\"thing\": false", with: "\"thing\": true")))
        XCTAssertTrue(e?.message.contains("instance id > 0") ?? false, e?.description ?? "")
    }

    func testWriteRefusesAnInvalidLegend() throws {
        let tmp = try TempDirectory(); defer { tmp.remove() }
        var l = sample()
        l.entries[3].id = 1
        XCTAssertThrowsError(try l.write(to: tmp.appending("legend.json"))) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
        }
        XCTAssertFalse(Files.exists(tmp.appending("legend.json")))
    }
}
