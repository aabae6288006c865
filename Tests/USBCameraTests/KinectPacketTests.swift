import USBCamera
import XCTest

/// Seeded generator so every test is deterministic (SplitMix64).
private struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func disparities(_ n: Int) -> [UInt16] { (0..<n).map { _ in UInt16(next() % 2048) } }
}

final class KinectPacketTests: XCTestCase {
    // Small formats so damage tests stay fast: 16x8 depth (176 bytes, 20-byte payloads -> 9 packets, last 16)
    // and 12x10 colour (120 bytes, 16-byte payloads -> 8 packets, last 8).
    private static let depthPixels = 16 * 8
    private static let smallDepth = KinectStreamFormat(stream: .depth, frameBytes: depthPixels * 11 / 8, payloadBytes: 20)
    private static let smallColour = KinectStreamFormat(stream: .colour, frameBytes: 12 * 10, payloadBytes: 16)

    private func smallGenerator(firstSequence: UInt8 = 0) throws -> KinectStreamGenerator {
        var c = KinectStreamGenerator.Config()
        c.depth = Self.smallDepth
        c.colour = Self.smallColour
        c.firstSequence = firstSequence
        c.ticksPerFrame = 7
        return try KinectStreamGenerator(config: c)
    }

    /// `count` depth frames (packed bytes) and their packets, one list per frame.
    private func depthFrames(_ count: Int, seed: UInt64, firstSequence: UInt8 = 0)
        throws -> (frames: [[UInt8]], packets: [[[UInt8]]]) {
        var rng = TestRNG(seed: seed)
        var gen = try smallGenerator(firstSequence: firstSequence)
        var frames: [[UInt8]] = [], packets: [[[UInt8]]] = []
        for _ in 0..<count {
            let raw = rng.disparities(Self.depthPixels)
            frames.append(try pack11Bit(raw))
            packets.append(try gen.depthPackets(raw))
        }
        return (frames, packets)
    }

    private func run(_ packets: [[UInt8]], format: KinectStreamFormat = smallDepth,
                     checksLengthField: Bool = true) throws -> ([KinectRawFrame], KinectAssemblerStats) {
        var a = try KinectFrameAssembler(format: format, checksLengthField: checksLengthField)
        var out: [KinectRawFrame] = []
        for p in packets { if let f = a.consume(p) { out.append(f) } }
        return (out, a.stats)
    }

    /// The frames that came out are exactly the undamaged originals, identified by timestamp (7 ticks per frame).
    private func assertExact(_ got: [KinectRawFrame], originals: [[UInt8]], expectedIndices: [Int],
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.map { Int($0.timestamp) / 7 }, expectedIndices, file: file, line: line)
        for f in got {
            let i = Int(f.timestamp) / 7
            XCTAssertEqual(f.bytes, originals[i], "frame \(i) not bit-exact", file: file, line: line)
        }
    }

    // MARK: - Facts and codecs

    func testDefaultFormatsMatchTheDocumentedPacketSizes() throws {
        let d = KinectStreamFormat.depth640x480, c = KinectStreamFormat.colour640x480
        XCTAssertEqual(d.frameBytes, 422_400)
        XCTAssertEqual(d.payloadBytes + 12, 1760)
        XCTAssertEqual(d.packetsPerFrame, 242)
        XCTAssertEqual(d.lastPayloadBytes + 12, 0x0478)  // the end-of-frame length sniffed on the wire
        XCTAssertEqual(c.frameBytes, 307_200)
        XCTAssertEqual(c.payloadBytes + 12, 1920)
        XCTAssertEqual(c.packetsPerFrame, 162)
        XCTAssertNoThrow(try d.validate())
        XCTAssertNoThrow(try c.validate())
        XCTAssertThrowsError(try KinectStreamFormat(stream: .depth, frameBytes: 10_000, payloadBytes: 10).validate())
        XCTAssertThrowsError(try KinectStreamFormat(stream: .depth, frameBytes: 10, payloadBytes: 10).validate())
        XCTAssertThrowsError(try KinectStreamFormat(stream: .depth, frameBytes: 0, payloadBytes: 10).validate())
    }

    func testHeaderParsesTheWireLayout() throws {
        let wire: [UInt8] = [0x52, 0x42, 0x00, 0x72, 0x42, 0x07, 0x06, 0xE0, 0x01, 0x02, 0x03, 0x04]
        let h = try KinectPacketHeader.parse(wire).get()
        XCTAssertEqual(h.stream, .depth)
        XCTAssertEqual(h.kind, .middle)
        XCTAssertEqual(h.sequence, 7)
        XCTAssertEqual(h.packetLength, 1760)
        XCTAssertEqual(h.timestamp, 0x0403_0201)
        XCTAssertEqual(h.unknown4, 0x42)
        XCTAssertEqual(h.encoded(), wire)
        let colourEnd = KinectPacketHeader(stream: .colour, kind: .endOfFrame, sequence: 255, packetLength: 24,
                                           timestamp: 0xDEAD_BEEF)
        XCTAssertEqual(colourEnd.flag, 0x85)
        XCTAssertEqual(try KinectPacketHeader.parse(colourEnd.encoded()).get(), colourEnd)
        XCTAssertEqual(KinectPacketHeader(stream: .depth, kind: .startOfFrame, sequence: 0, packetLength: 12,
                                          timestamp: 0).flag, 0x71)
        XCTAssertEqual(KinectPacketHeader(stream: .depth, kind: .endOfFrame, sequence: 0, packetLength: 12,
                                          timestamp: 0).flag, 0x75)
        XCTAssertEqual(KinectPacketHeader(stream: .colour, kind: .middle, sequence: 0, packetLength: 12,
                                          timestamp: 0).flag, 0x82)

        func issue(_ p: [UInt8]) -> KinectPacketIssue? {
            if case .failure(let i) = KinectPacketHeader.parse(p) { return i }
            return nil
        }
        XCTAssertEqual(issue(Array(wire.prefix(11))), .tooShort)
        var bad = wire; bad[1] = 0x43
        XCTAssertEqual(issue(bad), .badMagic)
        bad = wire; bad[3] = 0x73
        XCTAssertEqual(issue(bad), .unknownFlag)
        bad = wire; bad[3] = 0x91
        XCTAssertEqual(issue(bad), .unknownFlag)
    }

    func testPack11BitKnownBitsAndRandomRoundTrip() throws {
        // 2047 = 11 ones, 0 = 11 zeros, 1 = 10 zeros and a one: 33 bits, MSB first, so the one is bit 0x80 of the
        // fifth byte and 7 zero bits pad it.
        XCTAssertEqual(try pack11Bit([2047, 0, 1]), [0xFF, 0xE0, 0x00, 0x00, 0x80])
        XCTAssertEqual(try unpack11Bit([0xFF, 0xE0, 0x00, 0x00, 0x80], pixelCount: 3), [2047, 0, 1])
        // 8 pixels fill exactly 11 bytes.
        XCTAssertEqual(try pack11Bit([UInt16](repeating: 2047, count: 8)), [UInt8](repeating: 0xFF, count: 11))

        var rng = TestRNG(seed: 11)
        for n in [0, 1, 7, 8, 9, 100, kinectDepthPixelCount] {
            var values = rng.disparities(n)
            if n >= 2 { values[0] = 0; values[n - 1] = 2047 }
            let packed = try pack11Bit(values)
            XCTAssertEqual(packed.count, (n * 11 + 7) / 8)
            XCTAssertEqual(try unpack11Bit(packed, pixelCount: n), values, "n = \(n)")
        }
        XCTAssertEqual(try pack11Bit([UInt16](repeating: 0, count: kinectDepthPixelCount)).count, 422_400)
        XCTAssertThrowsError(try pack11Bit([5, 2048]))
        XCTAssertThrowsError(try unpack11Bit([UInt8](repeating: 0, count: 10)))
        XCTAssertThrowsError(try unpack11Bit([0, 0, 0], pixelCount: 3))
    }

    // MARK: - Round trips

    func testFullSizeRoundTripBothStreamsInterleaved() throws {
        var rng = TestRNG(seed: 1)
        var gen = try KinectStreamGenerator()
        var router = try KinectPacketRouter()
        var depths: [[UInt16]] = [], colours: [[UInt8]] = []
        var got: [KinectRawFrame] = []
        for _ in 0..<3 {
            let d = rng.disparities(kinectDepthPixelCount), c = rng.bytes(640 * 480)
            depths.append(d); colours.append(c)
            let dp = try gen.depthPackets(d), cp = try gen.colourPackets(c)
            XCTAssertEqual(dp.count, 242)
            XCTAssertEqual(cp.count, 162)
            XCTAssertEqual(dp.first?.count, 1760)
            XCTAssertEqual(dp.last?.count, 1144)
            XCTAssertEqual(cp.first?.count, 1920)
            for p in KinectStreamGenerator.interleave(dp, cp, run: 5) {
                if let f = router.consume(p) { got.append(f) }
            }
        }
        let gotDepth = got.filter { $0.stream == .depth }, gotColour = got.filter { $0.stream == .colour }
        XCTAssertEqual(gotDepth.count, 3)
        XCTAssertEqual(gotColour.count, 3)
        for i in 0..<3 {
            XCTAssertEqual(try unpack11Bit(gotDepth[i].bytes), depths[i])
            XCTAssertEqual(gotColour[i].bytes, colours[i])
            XCTAssertEqual(gotDepth[i].timestamp, UInt32(i) * 1_000_000)
        }
        XCTAssertEqual(router.depth.stats.completeFrames, 3)
        XCTAssertEqual(router.colour.stats.completeFrames, 3)
        XCTAssertEqual(router.depth.stats.totalDroppedFrames + router.colour.stats.totalDroppedFrames, 0)
        XCTAssertEqual(router.depth.stats.totalSkippedPackets + router.colour.stats.totalSkippedPackets, 0)
        // Sequence numbers run on across frames: 3 x 242 packets from 0, wrapping at 256.
        XCTAssertEqual(gotDepth[1].firstSequence, UInt8(242))
        XCTAssertEqual(gotDepth[2].firstSequence, UInt8((2 * 242) % 256))
    }

    func testSmallFormatsInterleavedRoundTrip() throws {
        var rng = TestRNG(seed: 2)
        var gen = try smallGenerator()
        var router = try KinectPacketRouter(depth: Self.smallDepth, colour: Self.smallColour)
        var sent: [(KinectStream, [UInt8])] = []
        var got: [KinectRawFrame] = []
        for k in 0..<10 {
            let d = rng.disparities(Self.depthPixels), c = rng.bytes(120)
            sent.append((.depth, try pack11Bit(d))); sent.append((.colour, c))
            let stream = KinectStreamGenerator.interleave(try gen.depthPackets(d), try gen.colourPackets(c), run: 1 + k % 3)
            for p in stream { if let f = router.consume(p) { got.append(f) } }
        }
        for s in [KinectStream.depth, .colour] {
            XCTAssertEqual(got.filter { $0.stream == s }.map(\.bytes), sent.filter { $0.0 == s }.map(\.1))
        }
    }

    // MARK: - Damage: every complete frame bit-exact, every damaged one dropped and counted

    func testLostMiddlePacketDropsOnlyThatFrame() throws {
        let (frames, packets) = try depthFrames(4, seed: 3)
        var p = packets
        p[1].remove(at: 4)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 2, 3])
        XCTAssertEqual(stats.droppedFrames, [.lostPacket: 1])
        XCTAssertEqual(stats.completeFrames, 3)
    }

    func testDuplicatedPacketDropsTheFrame() throws {
        let (frames, packets) = try depthFrames(3, seed: 4)
        var p = packets
        p[0].insert(p[0][3], at: 4)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [1, 2])
        XCTAssertEqual(stats.droppedFrames, [.duplicatePacket: 1])
    }

    func testReorderedPacketsDropTheFrame() throws {
        let (frames, packets) = try depthFrames(3, seed: 5)
        var p = packets
        p[2].swapAt(3, 4)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 1])
        XCTAssertEqual(stats.droppedFrames, [.reorderedPacket: 1])
    }

    func testTruncatedPacketDropsTheFrameWithOrWithoutTheLengthCheck() throws {
        let (frames, packets) = try depthFrames(3, seed: 6)
        var p = packets
        p[1][5].removeLast(3)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 2])
        XCTAssertEqual(stats.droppedFrames, [.truncatedPacket: 1])
        XCTAssertEqual(stats.skippedPackets, [.lengthMismatch: 1])

        let (got2, stats2) = try run(p.flatMap { $0 }, checksLengthField: false)
        assertExact(got2, originals: frames, expectedIndices: [0, 2])
        XCTAssertEqual(stats2.droppedFrames, [.truncatedPacket: 1])
        XCTAssertEqual(stats2.totalSkippedPackets, 0)

        // A truncated end-of-frame packet, too.
        var q = packets
        q[0][q[0].count - 1].removeLast()
        let (got3, stats3) = try run(q.flatMap { $0 })
        assertExact(got3, originals: frames, expectedIndices: [1, 2])
        XCTAssertEqual(stats3.droppedFrames, [.truncatedPacket: 1])
    }

    func testGarbageAndShortPacketsAreSkippedWithoutHarm() throws {
        let (frames, packets) = try depthFrames(3, seed: 7)
        var rng = TestRNG(seed: 70)
        var p = packets
        var noise = rng.bytes(40); noise[0] = 0x00                       // no magic
        var badFlag = p[1][2]; badFlag[3] = 0x7F                          // 'RB' but no such flag
        p[1].insert(noise, at: 3)
        p[1].insert([0x52, 0x42, 0x00], at: 5)                           // too short for a header
        p[1].insert(badFlag, at: 6)
        p[1].insert([], at: 7)                                           // an empty iso packet
        var other = p[0][1]; other[3] = 0x82                              // a colour packet on the depth assembler
        p[2].insert(other, at: 2)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 1, 2])
        XCTAssertEqual(stats.skippedPackets, [.badMagic: 1, .tooShort: 2, .unknownFlag: 1, .otherStream: 1])
        XCTAssertEqual(stats.totalDroppedFrames, 0)
    }

    func testMissingEndOfFrameAndMissingStartOfFrame() throws {
        let (frames, packets) = try depthFrames(5, seed: 8)
        var p = packets
        p[1].removeLast()          // frame 1 never ends: dropped when frame 2 starts
        p[3].removeFirst()         // frame 3 never starts: its middles are skipped, its end drops it
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 2, 4])
        XCTAssertEqual(stats.droppedFrames, [.missingEndOfFrame: 1, .missingStartOfFrame: 1])
        XCTAssertEqual(stats.skippedPackets, [.outsideFrame: Self.smallDepth.packetsPerFrame - 2])
    }

    func testJoiningMidStreamResynchronisesAtTheNextStart() throws {
        let (frames, packets) = try depthFrames(3, seed: 9)
        let (got, stats) = try run(Array(packets.flatMap { $0 }.dropFirst(4)))
        assertExact(got, originals: frames, expectedIndices: [1, 2])
        XCTAssertEqual(stats.droppedFrames, [.missingStartOfFrame: 1])
    }

    func testDuplicatedEndOfFrameIsNotAPhantomDrop() throws {
        let (frames, packets) = try depthFrames(2, seed: 10)
        var p = packets
        p[0].append(p[0].last!)
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 1])
        XCTAssertEqual(stats.skippedPackets, [.duplicateAfterFrame: 1])
        XCTAssertEqual(stats.totalDroppedFrames, 0)
    }

    func testExtraPacketOrOversizedPayloadIsWrongByteCount() throws {
        let (frames, packets) = try depthFrames(3, seed: 12)
        var p = packets
        var longer = p[1][2]; longer.append(0xAB)
        longer[6] = UInt8(longer.count >> 8); longer[7] = UInt8(longer.count & 0xFF)
        p[1][2] = longer
        let (got, stats) = try run(p.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: [0, 2])
        XCTAssertEqual(stats.droppedFrames, [.wrongByteCount: 1])
    }

    func testSequenceWrapAroundInsideAndAcrossFrames() throws {
        // 9 packets per frame from 250: frame 0 wraps 255 -> 0 in its middle; 60 frames wrap the counter twice.
        let (frames, packets) = try depthFrames(60, seed: 13, firstSequence: 250)
        let (got, stats) = try run(packets.flatMap { $0 })
        assertExact(got, originals: frames, expectedIndices: Array(0..<60))
        XCTAssertEqual(stats.totalDroppedFrames, 0)
        // Loss right at the wrap (the packet numbered 0) is still seen.
        var p = packets
        XCTAssertEqual(try KinectPacketHeader.parse(p[0][6]).get().sequence, 0)
        p[0].remove(at: 6)
        let (got2, stats2) = try run(p.flatMap { $0 })
        assertExact(got2, originals: frames, expectedIndices: Array(1..<60))
        XCTAssertEqual(stats2.droppedFrames, [.lostPacket: 1])
    }

    /// Random damage on many frames of both streams: what comes out is exactly the untouched frames, and the drops
    /// add up to the damaged ones.
    func testRandomDamageNeverEmitsAGarbledFrame() throws {
        var rng = TestRNG(seed: 14)
        var gen = try smallGenerator(firstSequence: 200)
        var router = try KinectPacketRouter(depth: Self.smallDepth, colour: Self.smallColour)
        var originals: [KinectStream: [[UInt8]]] = [.depth: [], .colour: []]
        var damaged: [KinectStream: Set<Int>] = [.depth: [], .colour: []]
        var got: [KinectRawFrame] = []
        let frameCount = 300
        for k in 0..<frameCount {
            var perStream: [[[UInt8]]] = []
            for s in [KinectStream.depth, .colour] {
                let bytes = s == .depth ? try pack11Bit(rng.disparities(Self.depthPixels)) : rng.bytes(120)
                originals[s]!.append(bytes)
                var p = try gen.packets(s, frame: bytes)
                let n = p.count
                switch rng.int(8) {
                case 0: p.remove(at: 1 + rng.int(n - 2)); damaged[s]!.insert(k)                 // lost middle
                case 1: let i = 1 + rng.int(n - 2); p.insert(p[i], at: i); damaged[s]!.insert(k) // duplicate
                case 2: let i = 1 + rng.int(n - 3); p.swapAt(i, i + 1); damaged[s]!.insert(k)    // reorder
                case 3: let i = rng.int(n); p[i].removeLast(1 + rng.int(4)); damaged[s]!.insert(k) // truncate
                case 4: p.insert(rng.bytes(rng.int(30)), at: rng.int(n))                         // garbage only
                // Lost start or end on even frames only: a lost end followed at once by a lost start would
                // merge two frames into one attempt (one drop for two frames), which the counts can't tell apart.
                case 5 where k % 2 == 0: p.removeFirst(); damaged[s]!.insert(k)                   // lost start
                case 6 where k % 2 == 0 && k < frameCount - 1: p.removeLast(); damaged[s]!.insert(k) // lost end
                default: break
                }
                perStream.append(p)
            }
            for p in KinectStreamGenerator.interleave(perStream[0], perStream[1], run: 1 + rng.int(4)) {
                if let f = router.consume(p) { got.append(f) }
            }
        }
        for s in [KinectStream.depth, .colour] {
            let mine = got.filter { $0.stream == s }
            let expected = (0..<frameCount).filter { !damaged[s]!.contains($0) }
            XCTAssertEqual(mine.map { Int($0.timestamp) / 7 }, expected, "\(s)")
            for f in mine { XCTAssertEqual(f.bytes, originals[s]![Int(f.timestamp) / 7]) }
            let stats = s == .depth ? router.depth.stats : router.colour.stats
            XCTAssertEqual(stats.completeFrames, expected.count)
            XCTAssertEqual(stats.totalDroppedFrames, damaged[s]!.count, "\(s): \(stats.droppedFrames)")
            for reason in KinectDropReason.allCases where reason != .wrongByteCount {
                XCTAssertGreaterThan(stats.dropped(reason), 0, "\(s): no \(reason) drawn")
            }
        }
    }
}
