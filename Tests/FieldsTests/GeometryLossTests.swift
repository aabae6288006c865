import Fields
import XCTest

final class GeometryLossTests: XCTestCase {
    let c = GeometryLossConfig()

    func fd(_ f: (Float) -> Float, _ x: Float, h: Float = 1e-3) -> Float { (f(x + h) - f(x - h)) / (2 * h) }

    func testSDFLossBranches() {
        // Inside the truncation band: |s - b|.
        XCTAssertEqual(GeometryLosses.sdf(s: 0.03, b: 0.01, config: c).loss, 0.02, accuracy: 1e-7)
        XCTAssertEqual(GeometryLosses.sdf(s: 0.03, b: 0.01, config: c).grad, 1)
        XCTAssertEqual(GeometryLosses.sdf(s: -0.03, b: 0.01, config: c).grad, -1)
        // Free space, SDF larger than the distance to the surface: s - b.
        let over = GeometryLosses.sdf(s: 0.5, b: 0.3, config: c)
        XCTAssertEqual(over.loss, c.freeSpaceWeight * 0.2, accuracy: 1e-6)
        // Free space, negative SDF: e^{-beta s} - 1.
        let neg = GeometryLosses.sdf(s: -0.1, b: 0.3, config: c)
        XCTAssertEqual(neg.loss, c.freeSpaceWeight * (expf(0.5) - 1), accuracy: 1e-5)
        // Free space, 0 <= s <= b: no loss.
        XCTAssertEqual(GeometryLosses.sdf(s: 0.2, b: 0.3, config: c).loss, 0)
        XCTAssertEqual(GeometryLosses.sdf(s: 0.2, b: 0.3, config: c).grad, 0)
    }

    func testGradientsMatchFiniteDifferences() {
        for (s, b) in [(Float(0.04), Float(0.02)), (-0.02, 0.03), (0.5, 0.3), (-0.1, 0.4), (-0.3, 0.2)] {
            let g = GeometryLosses.sdf(s: s, b: b, config: c).grad
            XCTAssertEqual(g, fd({ GeometryLosses.sdf(s: $0, b: b, config: c).loss }, s), accuracy: 2e-3 * max(1, abs(g)), "s \(s) b \(b)")
        }
        let v = SIMD3<Float>(0.3, -0.9, 0.5)
        let (_, dg) = GeometryLosses.eikonal(v, weight: 0.7)
        for k in 0..<3 {
            let num = fd({ x in var w = v; w[k] = x; return GeometryLosses.eikonal(w, weight: 0.7).loss }, v[k], h: 1e-3)
            XCTAssertEqual(dg[k], num, accuracy: 1e-3)
        }
        XCTAssertEqual(GeometryLosses.eikonal(SIMD3(0, 0.6, 0.8), weight: 1).loss, 0, accuracy: 1e-7)
        XCTAssertEqual(GeometryLosses.depth(rendered: 2.1, observed: 2, weight: 0.5).loss, 0.05, accuracy: 1e-6)
        XCTAssertEqual(GeometryLosses.depth(rendered: 1.9, observed: 2, weight: 0.5).grad, -0.5)
    }

    func testConfigValidation() {
        var bad = c; bad.truncation = 0
        XCTAssertThrowsError(try bad.validate())
        bad = c; bad.eikonalWeight = .nan
        XCTAssertThrowsError(try bad.validate())
        XCTAssertNoThrow(try c.validate())
    }
}
