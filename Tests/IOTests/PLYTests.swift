import Foundation
import IO
import MapCore
import TestSupport
import XCTest

final class PLYTests: XCTestCase {
    func testMeshRoundTripWithLabels() throws {
        let d = PLYData(positions: [SIMD3(0, 0, 0), SIMD3(1, 0, 0), SIMD3(0, 1, 0.5)],
                        normals: [SIMD3(0, 0, 1), SIMD3(0, 0, 1), SIMD3(0, 0.6, 0.8)],
                        colors: [SIMD3(255, 0, 0), SIMD3(0, 255, 0), SIMD3(1, 2, 3)],
                        labels: [("semantic", [1, 2, 3]), ("instance", [0, -1, 70000])],
                        faces: [SIMD3(0, 1, 2)])
        let bytes = try PLY.encode(d)
        XCTAssertTrue(String(decoding: bytes.prefix(200), as: UTF8.self).contains("format binary_little_endian 1.0"))
        XCTAssertEqual(try PLY.decode(bytes, source: "m.ply"), d)
        let tmp = try TempDirectory(); defer { tmp.remove() }
        try PLY.write(d, to: tmp.appending("m.ply"))
        XCTAssertEqual(try PLY.read(tmp.appending("m.ply")), d)
    }

    func testPointCloudWithoutOptionalParts() throws {
        let d = PLYData(positions: (0..<100).map { SIMD3(Float($0), -Float($0), 0.25) })
        XCTAssertEqual(try PLY.decode(try PLY.encode(d), source: "p"), d)
    }

    func testBadInputs() throws {
        let d = PLYData(positions: [SIMD3(0, 0, 0)], faces: [])
        var bytes = try PLY.encode(d)
        bytes.removeLast(3)
        XCTAssertThrowsError(try PLY.decode(bytes, source: "t.ply")) { e in XCTAssertEqual((e as? MapError)?.kind, .truncatedFile) }
        XCTAssertThrowsError(try PLY.decode(Array("ply\nformat ascii 1.0\nend_header\n".utf8), source: "a.ply")) { e in
            XCTAssertEqual((e as? MapError)?.kind, .badFormat)
        }
        XCTAssertThrowsError(try PLY.encode(PLYData(positions: [SIMD3(0, 0, 0)], faces: [SIMD3(0, 1, 2)])))
        XCTAssertThrowsError(try PLY.encode(PLYData(positions: [SIMD3(0, 0, 0)], normals: [])))
    }
}
