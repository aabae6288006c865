import Pipeline
import XCTest

/// A bounded channel holds at most `capacity` elements: received ones are released at once (frames are megabytes).
final class ChannelMemoryTests: XCTestCase {
    final class Payload: Sendable { let id: Int; init(_ id: Int) { self.id = id } }

    func testReceivedElementsAreReleased() async {
        let channel = BoundedChannel<Payload>(name: "test", capacity: 4, policy: .backPressure)
        weak var first: Payload?
        do {
            let p = Payload(0)
            first = p
            await channel.send(p)
        }
        XCTAssertNotNil(first, "buffered")
        let got = await channel.receive()
        XCTAssertEqual(got?.id, 0)
        _ = consume got
        XCTAssertNil(first, "released once received, not when the buffer is compacted")
        // Many more through a dropping channel: none of the received or dropped ones stays alive.
        let dropping = BoundedChannel<Payload>(name: "drop", capacity: 2, policy: .dropOldest)
        weak var early: Payload?
        for i in 0..<100 {
            let p = Payload(i)
            if i == 10 { early = p }
            await dropping.send(p)
            if i % 3 == 0 { _ = await dropping.receive() }
        }
        XCTAssertNil(early)
        let dropped = await dropping.dropped
        XCTAssertGreaterThan(dropped, 0)
    }
}
