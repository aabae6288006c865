import Foundation
import TestSupport
import USBCamera
import XCTest

/// The control protocol's bytes, against arrays built by hand from the layout documented in KinectCommands.swift.
final class KinectCommandTests: XCTestCase {
    func testRegisterWriteEncoding() {
        // 'G' 'M', 2 words, command 0x0003, tag 0x0102, address 0x0012, value 0x0003 — all little-endian.
        XCTAssertEqual(KinectCommand.writeRegister(address: 0x0012, value: 0x0003, tag: 0x0102),
                       [0x47, 0x4D, 0x02, 0x00, 0x03, 0x00, 0x02, 0x01, 0x12, 0x00, 0x03, 0x00])
        XCTAssertEqual(KinectCommand.writeRegister(address: 0x0105, value: 0x001E, tag: 0xFFFF),
                       [0x47, 0x4D, 0x02, 0x00, 0x03, 0x00, 0xFF, 0xFF, 0x05, 0x01, 0x1E, 0x00])
    }

    func testGenericEncodingAndMultiplePairs() throws {
        XCTAssertEqual(try KinectCommand.encode(command: 0x16, tag: 7, payload: [0xAA, 0xBB, 0xCC, 0xDD]),
                       [0x47, 0x4D, 0x02, 0x00, 0x16, 0x00, 0x07, 0x00, 0xAA, 0xBB, 0xCC, 0xDD])
        XCTAssertEqual(try KinectCommand.encode(command: 0x04, tag: 1, payload: []),
                       [0x47, 0x4D, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00])
        XCTAssertEqual(try KinectCommand.writeRegisters([(0x0006, 0x0000), (0x0005, 0x0001)], tag: 3),
                       [0x47, 0x4D, 0x04, 0x00, 0x03, 0x00, 0x03, 0x00,
                        0x06, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, 0x00])
    }

    func testUnencodableCommandsAreTypedErrors() {
        XCTAssertThrowsError(try KinectCommand.encode(command: 3, tag: 0, payload: [1, 2, 3])) { error in
            XCTAssertEqual((error as? KinectCommandError)?.reason, .invalidCommand)
        }
        XCTAssertThrowsError(try KinectCommand.encode(command: 3, tag: 0, payload: [UInt8](repeating: 0, count: 1018)))
        { error in
            XCTAssertEqual((error as? KinectCommandError)?.reason, .invalidCommand)
        }
    }

    func testReplyValidation() throws {
        // 'R' 'B', 1 word, command 0x0003, tag 0x0102, status 0x0000.
        let ok: [UInt8] = [0x52, 0x42, 0x01, 0x00, 0x03, 0x00, 0x02, 0x01, 0x00, 0x00]
        XCTAssertEqual(KinectCommand.reply(command: 3, tag: 0x0102), ok)
        XCTAssertEqual(try KinectCommand.decodeReply(ok, command: 3, tag: 0x0102), [0, 0])
        XCTAssertNoThrow(try KinectCommand.checkWriteAck(ok, tag: 0x0102))

        func reason(_ reply: [UInt8], tag: UInt16 = 0x0102) -> KinectCommandError.Reason? {
            do {
                try KinectCommand.checkWriteAck(reply, tag: tag)
                return nil
            } catch {
                return error.reason
            }
        }
        var badMagic = ok; badMagic[0] = 0x47; badMagic[1] = 0x4D
        XCTAssertEqual(reason(badMagic), .badMagic)
        XCTAssertEqual(reason(ok, tag: 0x0103), .wrongTag)
        var otherCommand = ok; otherCommand[4] = 0x02
        XCTAssertEqual(reason(otherCommand), .wrongCommand)
        XCTAssertEqual(reason(Array(ok.prefix(5))), .shortReply)
        XCTAssertEqual(reason([]), .shortReply)
        XCTAssertEqual(reason(Array(ok.prefix(8))), .shortReply)  // declares 1 word, carries none
        XCTAssertEqual(reason(ok + [0, 0]), .lengthMismatch)      // declares 1 word, carries 2
        var refused = ok; refused[8] = 0x01
        XCTAssertEqual(reason(refused), .nonZeroStatus)
        let noStatus: [UInt8] = [0x52, 0x42, 0x00, 0x00, 0x03, 0x00, 0x02, 0x01]
        XCTAssertEqual(reason(noStatus), .shortReply)
        XCTAssertTrue(KinectCommandError(.wrongTag, "x").description.contains("replug"))
    }

    /// The documented start/stop table, spelled out independently.
    func testRegisterTable() {
        let start = KinectRegisters.start.map { [$0.address, $0.value] }
        XCTAssertEqual(start, [[0x0105, 0x00], [0x0006, 0x00], [0x0012, 0x03], [0x0013, 0x01], [0x0014, 0x1E],
                               [0x0006, 0x02], [0x0017, 0x00],
                               [0x000C, 0x00], [0x000D, 0x01], [0x000E, 0x1E], [0x0005, 0x01], [0x0047, 0x00]])
        XCTAssertEqual(KinectRegisters.stop.map { [$0.address, $0.value] }, [[0x0006, 0x00], [0x0005, 0x00]])
    }
}

/// The driver against a scripted transport.
final class KinectDeviceTests: XCTestCase {
    private func packets(_ endpoint: UInt8, _ range: Range<Int>) -> [CapturedPacket] {
        range.map { CapturedPacket(endpoint: endpoint, hostNanoseconds: UInt64($0), bytes: [UInt8($0 & 0xFF), 0x52]) }
    }

    private func fastConfig(stall: Double = 0.2) -> KinectDevice.Config {
        var c = KinectDevice.Config()
        c.stallTimeoutSeconds = stall
        c.receivePollMilliseconds = 20
        c.replyPollIntervalMilliseconds = 0
        return c
    }

    func testStartSendsTheDocumentedSequenceThenStartsBothStreams() throws {
        let transport = ScriptedTransport()
        let camera = KinectDevice(transport: transport, config: fastConfig())
        try camera.start()

        let transfers = transport.controlTransfers
        let table = KinectRegisters.start
        XCTAssertEqual(transfers.count, 2 * table.count, "one command and one reply poll per register")
        for (i, write) in table.enumerated() {
            let out = transfers[2 * i], inn = transfers[2 * i + 1]
            let tag = UInt16(i)
            let expected: [UInt8] = [0x47, 0x4D, 0x02, 0x00, 0x03, 0x00, UInt8(tag & 0xFF), UInt8(tag >> 8),
                                     UInt8(write.address & 0xFF), UInt8(write.address >> 8),
                                     UInt8(write.value & 0xFF), UInt8(write.value >> 8)]
            XCTAssertEqual(out, ScriptedTransport.ControlTransfer(requestType: 0x40, request: 0, value: 0, index: 0,
                                                                  data: expected, length: 12), "write \(i): \(write)")
            XCTAssertEqual(inn, ScriptedTransport.ControlTransfer(requestType: 0xC0, request: 0, value: 0, index: 0,
                                                                  data: [], length: 0x200), "reply \(i)")
        }
        XCTAssertEqual(transport.isochronousStarts, [.init(endpoints: [0x81], maxPacketBytes: 1920),
                                                     .init(endpoints: [0x82], maxPacketBytes: 1760)])
        XCTAssertEqual(camera.stats.commandsSent, table.count)

        // Starting again while streaming sends nothing.
        try camera.start()
        XCTAssertEqual(transport.controlTransfers.count, 2 * table.count)
    }

    func testEmptyRepliesArePolledAgain() throws {
        let polls = Counter()
        let transport = ScriptedTransport(reply: { last, transfer in
            // Every command is answered on its third poll.
            polls.increment() % 3 == 2 ? ScriptedTransport.kinectAcknowledgement(last, transfer) : []
        })
        let camera = KinectDevice(transport: transport, config: fastConfig())
        try camera.start()
        XCTAssertEqual(transport.controlTransfers.count, 4 * KinectRegisters.start.count)
        XCTAssertEqual(camera.stats.commandsSent, KinectRegisters.start.count)
    }

    func testNoReplyIsBoundedAndTyped() {
        let transport = ScriptedTransport(reply: { _, _ in [] })
        var config = fastConfig()
        config.replyPollAttempts = 5
        let camera = KinectDevice(transport: transport, config: config)
        XCTAssertThrowsError(try camera.start()) { error in
            XCTAssertEqual((error as? KinectCommandError)?.reason, .noReply, "\(error)")
        }
        XCTAssertEqual(transport.controlTransfers.count, 1 + 5)
        XCTAssertTrue(transport.isochronousStarts.isEmpty)
    }

    func testStaleReplyFailsStart() {
        let transport = ScriptedTransport(reply: { last, _ in
            guard let (command, tag) = KinectCommand.commandAndTag(of: last) else { return [] }
            return KinectCommand.reply(command: command, tag: tag &+ 1)
        })
        let camera = KinectDevice(transport: transport, config: fastConfig())
        XCTAssertThrowsError(try camera.start()) { error in
            XCTAssertEqual((error as? KinectCommandError)?.reason, .wrongTag, "\(error)")
        }
        camera.close()
    }

    func testNextPacketsPassesBatchesThroughInOrder() throws {
        let batches = [packets(0x81, 0..<3), packets(0x82, 3..<5), packets(0x81, 5..<6) + packets(0x82, 6..<8)]
        let transport = ScriptedTransport(batches: batches)
        let camera = KinectDevice(transport: transport, config: fastConfig())
        try camera.start()
        for batch in batches {
            XCTAssertEqual(try camera.nextPackets(), batch)
        }
        XCTAssertEqual(camera.stats.colourPackets, 4)
        XCTAssertEqual(camera.stats.depthPackets, 4)
        XCTAssertEqual(camera.stats.packetsByEndpoint, [0x81: 4, 0x82: 4])
    }

    func testUnplugAfterTwoBatchesThrowsNoDevice() throws {
        let batches = [packets(0x82, 0..<2), packets(0x81, 2..<4), packets(0x82, 4..<6)]
        let transport = ScriptedTransport(batches: batches, failAfterBatches: 2)
        let camera = KinectDevice(transport: transport, config: fastConfig())
        try camera.start()
        XCTAssertEqual(try camera.nextPackets(), batches[0])
        XCTAssertEqual(try camera.nextPackets(), batches[1])
        for _ in 0..<2 {  // the third call and every later one
            XCTAssertThrowsError(try camera.nextPackets()) { error in
                guard let usb = error as? USBError else { return XCTFail("untyped \(error)") }
                XCTAssertEqual(usb.code, .noDevice)
                XCTAssertEqual(usb.rawValue, -4)  // LIBUSB_ERROR_NO_DEVICE
            }
        }
        let before = transport.controlTransfers.count
        camera.close()  // the device is gone: one stop command is tried, fails, and is given up quietly
        XCTAssertEqual(transport.controlTransfers.count, before + 1)
        XCTAssertEqual(transport.stopCount, 1)
        camera.close()
        XCTAssertEqual(transport.stopCount, 1, "close twice is harmless")
        XCTAssertNil(try camera.nextPackets(), "a closed source has ended")
    }

    func testStallThrowsAfterTheConfiguredTimeout() throws {
        let transport = ScriptedTransport(batches: [packets(0x82, 0..<1)])
        let camera = KinectDevice(transport: transport, config: fastConfig(stall: 0.15))
        try camera.start()
        XCTAssertEqual(try camera.nextPackets()?.count, 1)
        let t0 = Date()
        XCTAssertThrowsError(try camera.nextPackets()) { error in
            XCTAssertEqual((error as? KinectDeviceError)?.reason, .stalled, "\(error)")
            XCTAssertTrue("\(error)".contains("stopped sending"))
        }
        let elapsed = Date().timeIntervalSince(t0)
        XCTAssertGreaterThanOrEqual(elapsed, 0.14)
        XCTAssertLessThan(elapsed, 1.5)
    }

    func testCloseSendsTheStopSequence() throws {
        let transport = ScriptedTransport()
        let camera = KinectDevice(transport: transport, config: fastConfig())
        try camera.start()
        let sentBefore = transport.sentCommands.count
        camera.close()
        let stops = Array(transport.sentCommands.dropFirst(sentBefore))
        XCTAssertEqual(stops, KinectRegisters.stop.enumerated().map { i, w in
            KinectCommand.writeRegister(address: w.address, value: w.value, tag: UInt16(sentBefore + i))
        })
        XCTAssertEqual(transport.stopCount, 1)
    }

    /// Generated frames through the scripted transport and the driver reach the assemblers whole.
    func testGeneratedFramesPassThroughTheDriver() throws {
        var format = KinectStreamGenerator.Config()
        format.depth = KinectStreamFormat(stream: .depth, frameBytes: 11 * 40, payloadBytes: 100)
        format.colour = KinectStreamFormat(stream: .colour, frameBytes: 300, payloadBytes: 64)
        var generator = try KinectStreamGenerator(config: format)
        let depth = try generator.depthPackets((0..<320).map { UInt16($0 * 6) })  // 320 px * 11 bit = 440 B
        let colour = try generator.colourPackets((0..<300).map { UInt8($0 & 0xFF) })
        let batches = ScriptedTransport.kinectBatches(KinectStreamGenerator.interleave(depth, colour),
                                                      packetsPerBatch: 3)
        let camera = KinectDevice(transport: ScriptedTransport(batches: batches), config: fastConfig())
        try camera.start()
        var depthAssembler = try KinectFrameAssembler(format: format.depth)
        var colourAssembler = try KinectFrameAssembler(format: format.colour)
        var frames: [KinectRawFrame] = []
        for _ in batches {
            for p in try camera.nextPackets() ?? [] {
                let frame = p.endpoint == KinectDevice.depthEndpoint ? depthAssembler.consume(p.bytes)
                    : colourAssembler.consume(p.bytes)
                if let frame { frames.append(frame) }
            }
        }
        XCTAssertEqual(frames.map(\.stream).sorted { $0.rawValue < $1.rawValue }, [.depth, .colour])
        XCTAssertEqual(camera.stats.depthPackets, depth.count)
        XCTAssertEqual(camera.stats.colourPackets, colour.count)
    }

    func testMisuseIsTyped() {
        let camera = KinectDevice(transport: ScriptedTransport(), config: fastConfig())
        XCTAssertThrowsError(try camera.nextPackets()) { error in
            XCTAssertEqual((error as? KinectDeviceError)?.reason, .notStarted)
        }
        var bad = KinectDevice.Config()
        bad.stallTimeoutSeconds = -1
        XCTAssertThrowsError(try KinectDevice(transport: ScriptedTransport(), config: bad).start()) { error in
            XCTAssertEqual((error as? KinectDeviceError)?.reason, .invalidConfig)
        }
    }
}

/// A thread-safe counter for reply functions.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    /// Returns the value before incrementing.
    func increment() -> Int {
        lock.withLock {
            defer { value += 1 }
            return value
        }
    }
}
