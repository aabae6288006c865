import MapCore
import Pipeline
import XCTest

final class PipelineStageTests: XCTestCase {
    func testKeyframePolicy() {
        var p = KeyframePolicy()
        p.minTranslation = 0.1; p.minRotationDegrees = 10; p.maxFrameGap = 5
        let a = RigidTransform.identity
        XCTAssertTrue(p.isKeyframe(a, last: nil, gap: 0), "the first frame is a keyframe")
        XCTAssertFalse(p.isKeyframe(RigidTransform(translation: Vec3(0.05, 0, 0)), last: a, gap: 1))
        XCTAssertTrue(p.isKeyframe(RigidTransform(translation: Vec3(0.11, 0, 0)), last: a, gap: 1))
        XCTAssertFalse(p.isKeyframe(RigidTransform(rotation: Mat3(axis: Vec3(0, 0, 1), angle: 0.15)), last: a, gap: 1))
        XCTAssertTrue(p.isKeyframe(RigidTransform(rotation: Mat3(axis: Vec3(0, 0, 1), angle: 0.18)), last: a, gap: 1))
        XCTAssertTrue(p.isKeyframe(a, last: a, gap: 5), "time: every 5th frame at the latest")
    }

    func testWindowSlots() {
        var p = KeyframePolicy()
        p.window = 3; p.replayed = 2
        var rng = SeededRNG(seed: 1)
        XCTAssertEqual(p.slots(count: 2, rng: &rng), [0, 1])
        XCTAssertEqual(p.slots(count: 5, rng: &rng), [0, 1, 2, 3, 4], "few old keyframes: all of them")
        for _ in 0..<20 {
            let s = p.slots(count: 20, rng: &rng)
            XCTAssertEqual(Array(s.suffix(3)), [17, 18, 19], "the window is the last 3")
            XCTAssertEqual(s.count, 5)
            XCTAssertEqual(Set(s.prefix(2)).count, 2)
            XCTAssertTrue(s.prefix(2).allSatisfy { $0 < 17 })
        }
    }

    /// Back-pressure: the sender waits for the receiver, nothing is lost, order is kept.
    func testBackPressureNeverDrops() async {
        let c = BoundedChannel<Int>(name: "test", capacity: 2, policy: .backPressure)
        let producer = Task {
            for i in 0..<100 { await c.send(i) }
            await c.finish()
        }
        var got: [Int] = []
        while let v = await c.receive() {
            got.append(v)
            if v % 10 == 0 { try? await Task.sleep(nanoseconds: 1_000_000) } // a slow consumer
        }
        await producer.value
        XCTAssertEqual(got, Array(0..<100))
        let dropped = await c.dropped
        XCTAssertEqual(dropped, 0)
    }

    /// Drop-oldest: a full channel drops its oldest droppable element and counts it; an undroppable one (here 0,
    /// like a keyframe) is kept. No receiver runs while sending, so every send past the capacity drops one.
    func testDropOldestCountsDrops() async {
        let c = BoundedChannel<Int>(name: "live", capacity: 3, policy: .dropOldest, droppable: { $0 != 0 })
        for i in 0..<7 { await c.send(i) }
        await c.finish()
        var got: [Int] = []
        while let v = await c.receive() { got.append(v) }
        let dropped = await c.dropped
        XCTAssertEqual(got, [0, 5, 6], "oldest droppable ones went first, the undroppable one stayed")
        XCTAssertEqual(dropped, 4)
    }
}

extension PipelineStageTests {
    /// The keyframe budget drops the keyframe closest in pose to another one, never one of the window.
    func testRedundantKeyframe() {
        var p = KeyframePolicy()
        p.window = 2; p.maxKeyframes = 4
        let at = { (x: Double) in RigidTransform(translation: Vec3(x, 0, 0)) }
        XCTAssertNil(p.redundantKeyframe(poses: [at(0), at(1), at(2), at(3)]), "within the budget")
        // Keyframe 2 sits 0.05 m from keyframe 1; 1 and 2 are both candidates (outside the window of 2), 1 is lower.
        XCTAssertEqual(p.redundantKeyframe(poses: [at(0), at(1), at(1.05), at(3), at(4)]), 1)
        // The closest pair is inside the window: the best candidate outside it goes.
        XCTAssertEqual(p.redundantKeyframe(poses: [at(0), at(0.5), at(2), at(5), at(5.01)]), 0)
        var bad = KeyframePolicy()
        bad.window = 8; bad.maxKeyframes = 8
        XCTAssertThrowsError(try bad.validate())
    }
}
