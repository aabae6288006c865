import Fields
import MapCore
import XCTest

/// Vertex colours and observability against hand-built views of a plane (exact answers).
final class VertexColoringTests: XCTestCase {
    /// A 40x30 frame looking down +z from `origin`, seeing a plane at depth 2 m with one colour everywhere.
    func frame(_ index: Int, origin: Vec3, color: UInt8) -> Frame {
        let k = Intrinsics(fx: 40, fy: 40, cx: 19.5, cy: 14.5, width: 40, height: 30)
        return Frame(index: index, rgb: RGBImage(width: 40, height: 30, channels: 3, repeating: color),
                     depth: DepthImage(width: 40, height: 30, channels: 1, repeating: 2),
                     T_W_C: RigidTransform(translation: origin), intrinsics: k)
    }

    func testColoursAreTheMeanOfTheViewsThatSeeTheSurface() {
        let frames = [frame(0, origin: Vec3(0, 0, 0), color: 100), frame(1, origin: Vec3(0.1, 0, 0), color: 200)]
        let vertices: [SIMD3<Float>] = [
            [0.05, 0, 2],    // on the plane, seen by both: mean 150
            [-0.9, 0, 2],    // on the plane, only inside frame 0's view (u = 1.5): 100
            [0.05, 0, 1.5],  // free space in front of the surface: observable, no colour
            [0.05, 0, 2.5],  // behind the observed surface: not observable
            [9, 0, 2],       // outside every view
        ]
        let (colors, observable) = VertexColoring.colors(vertices: vertices, frames: frames, threads: 2)
        XCTAssertEqual(colors[0], SIMD3(150, 150, 150))
        XCTAssertEqual(colors[1], SIMD3(100, 100, 100))
        XCTAssertEqual(colors[2], SIMD3(128, 128, 128))
        XCTAssertEqual(observable, [true, true, true, false, false])
        // Same answer with one thread and with the frames in the other order.
        let again = VertexColoring.colors(vertices: vertices, frames: frames.reversed(), threads: 1)
        XCTAssertEqual(again.colors, colors)
        XCTAssertEqual(again.observable, observable)
    }
}
