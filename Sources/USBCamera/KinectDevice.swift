import Foundation

// The Kinect v1 camera driver: speaks the control protocol of KinectCommands.swift over any `USBTransport`, starts
// both image streams and hands their isochronous packets on as a `PacketSource`.
//
// Endpoints (OpenKinect wiki, "Protocol Documentation" / "USB Devices"; the reference driver streams colour from
// 0x81 and depth from 0x82): colour (Bayer) packets of up to 1920 bytes on 0x81, depth (11-bit) packets of up to
// 1760 bytes on 0x82 — the sizes KinectPackets.swift assumes.

/// Why the camera driver stopped, when the cause is not the USB layer (that one throws `USBError` unchanged).
public struct KinectDeviceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Reason: Sendable, Equatable {
        /// No packet arrived for the configured stall timeout.
        case stalled
        /// `nextPackets()` before `start()`.
        case notStarted
        /// A `Config` field out of range.
        case invalidConfig
    }

    /// What went wrong.
    public var reason: Reason
    /// Details and what to do.
    public var message: String

    /// An error for `reason` with a human-readable `message`.
    public init(_ reason: Reason, _ message: String) {
        self.reason = reason; self.message = message
    }

    /// The message, with what to do.
    public var description: String { "Kinect camera: \(message)" }
}

/// A Kinect v1 camera streaming depth (11-bit packed, 640x480, 30 fps) and colour (Bayer, 640x480, 30 fps).
///
/// Usage: `let camera = try KinectDevice.open(); try camera.start()`, then `nextPackets()` until done, then
/// `close()`. Tests build it on a scripted transport with `init(transport:)`.
public final class KinectDevice: PacketSource {
    /// Timeouts and retry bounds.
    public struct Config: Sendable, Equatable {
        /// `nextPackets()` throws `KinectDeviceError.stalled` after this long without a packet, seconds.
        public var stallTimeoutSeconds: Double = 2
        /// How long one `receive` call of the transport may wait, milliseconds (bounds how late a stall is noticed).
        public var receivePollMilliseconds: UInt32 = 100
        /// How often the reply to one command is polled before giving up (the camera answers with 0 bytes while
        /// busy).
        public var replyPollAttempts: Int = 100
        /// Pause between two reply polls, milliseconds (0: poll back to back).
        public var replyPollIntervalMilliseconds: Int = 1
        /// Timeout of each control transfer, milliseconds.
        public var controlTimeoutMilliseconds: UInt32 = 500

        /// The defaults.
        public init() {}

        /// Throws `.invalidConfig` naming the first field out of range.
        public func validate() throws(KinectDeviceError) {
            guard stallTimeoutSeconds > 0, stallTimeoutSeconds.isFinite else {
                throw KinectDeviceError(.invalidConfig,
                                        "stallTimeoutSeconds must be positive (got \(stallTimeoutSeconds))")
            }
            guard receivePollMilliseconds > 0 else {
                throw KinectDeviceError(.invalidConfig, "receivePollMilliseconds must be positive")
            }
            guard replyPollAttempts >= 1, replyPollIntervalMilliseconds >= 0 else {
                throw KinectDeviceError(.invalidConfig, "replyPollAttempts must be >= 1 and "
                                        + "replyPollIntervalMilliseconds >= 0")
            }
            guard controlTimeoutMilliseconds > 0 else {
                throw KinectDeviceError(.invalidConfig, "controlTimeoutMilliseconds must be positive")
            }
        }
    }

    /// What the driver has done so far.
    public struct Stats: Sendable, Equatable {
        /// Packets handed on, by endpoint (0x81 colour, 0x82 depth).
        public var packetsByEndpoint: [UInt8: Int] = [:]
        /// Commands sent and answered (a non-empty reply arrived) since the driver was created.
        public var commandsSent = 0

        /// The empty statistics.
        public init() {}

        /// Colour packets handed on.
        public var colourPackets: Int { packetsByEndpoint[KinectDevice.colourEndpoint, default: 0] }
        /// Depth packets handed on.
        public var depthPackets: Int { packetsByEndpoint[KinectDevice.depthEndpoint, default: 0] }
    }

    /// The colour (Bayer) stream's isochronous endpoint.
    public static let colourEndpoint: UInt8 = 0x81
    /// The depth stream's isochronous endpoint.
    public static let depthEndpoint: UInt8 = 0x82
    /// Largest colour packet (12-byte header + 1908 payload bytes).
    public static let colourMaxPacketBytes = 1920
    /// Largest depth packet (12-byte header + 1748 payload bytes).
    public static let depthMaxPacketBytes = 1760
    /// USB ids of the camera device.
    public static let vendorID: UInt16 = 0x045E
    /// USB ids of the camera device.
    public static let productID: UInt16 = 0x02AE

    /// The transport the driver speaks through.
    public let transport: USBTransport
    /// The configuration in use.
    public let config: Config
    /// What the driver has done so far.
    public private(set) var stats = Stats()

    private var nextTag: UInt16 = 0
    private var startRequested = false
    private var streaming = false
    private var closed = false

    /// A driver on `transport` (nothing is sent until `start()`, which also validates `config`).
    public init(transport: USBTransport, config: Config = Config()) {
        self.transport = transport
        self.config = config
    }

    /// Opens the first Kinect v1 camera on the bus through libusb. Throws `USBError` (`.notFound` when none is
    /// plugged in, `.access` without permission) or `KinectDeviceError.invalidConfig`.
    public static func open(config: Config = Config(), usb: LibUSBTransport.Config = LibUSBTransport.Config())
        throws -> KinectDevice {
        try config.validate()
        return KinectDevice(transport: try LibUSBTransport.open(vendorID: vendorID, productID: productID, config: usb),
                            config: config)
    }

    /// Sends the start sequence (`KinectRegisters.start`: depth, then colour), then starts isochronous reception on
    /// the colour and depth endpoints. Throws `USBError` from the transport (unchanged) or `KinectCommandError` for
    /// a malformed or negative reply, or `KinectDeviceError.invalidConfig`. Calling it again while streaming does
    /// nothing.
    public func start() throws {
        guard !streaming else { return }
        try config.validate()
        startRequested = true
        closed = false
        for write in KinectRegisters.start {
            try writeRegister(write.address, write.value)
        }
        // Packets the camera sends before reception starts are simply not collected (isochronous data is never
        // retried); the assemblers wait for the next start of frame.
        try transport.startIsochronous(endpoints: [Self.colourEndpoint], maxPacketBytes: Self.colourMaxPacketBytes)
        try transport.startIsochronous(endpoints: [Self.depthEndpoint], maxPacketBytes: Self.depthMaxPacketBytes)
        streaming = true
    }

    /// The next packets from both streams in arrival order; nil after `close()`. Waits up to the stall timeout for
    /// at least one, then throws `KinectDeviceError.stalled`. A `USBError` from the transport (e.g. `.noDevice`
    /// when the camera is unplugged) is thrown unchanged.
    public func nextPackets() throws -> [CapturedPacket]? {
        if closed { return nil }
        guard streaming else {
            throw KinectDeviceError(.notStarted, "nextPackets() before start(); call start() first")
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(config.stallTimeoutSeconds))
        while true {
            let remaining = clock.now.duration(to: deadline)
            let remainingMs = max(0, remaining.components.seconds * 1000
                                  + remaining.components.attoseconds / 1_000_000_000_000_000)
            let wait = UInt32(min(Int64(config.receivePollMilliseconds), max(1, remainingMs)))
            let packets = try transport.receive(timeoutMilliseconds: wait)
            if !packets.isEmpty {
                for p in packets { stats.packetsByEndpoint[p.endpoint, default: 0] += 1 }
                return packets
            }
            if clock.now >= deadline {
                throw KinectDeviceError(.stalled, "the camera stopped sending (no packet for "
                                        + "\(config.stallTimeoutSeconds) s); check its power supply and cable, "
                                        + "replug it and resume the session")
            }
        }
    }

    /// Sends the stop sequence when the device is still there (errors are ignored: an unplugged camera cannot be
    /// stopped), then stops isochronous reception. Safe to call twice; `nextPackets()` returns nil afterwards.
    public func close() {
        guard !closed else { return }
        closed = true
        if startRequested {
            for write in KinectRegisters.stop {
                do {
                    try writeRegister(write.address, write.value)
                } catch {
                    break  // device gone or not answering: the rest would fail the same way
                }
            }
        }
        transport.stopIsochronous()
        streaming = false
        startRequested = false
    }

    /// Writes one register and checks the acknowledgement. Throws `USBError` or `KinectCommandError`.
    public func writeRegister(_ address: UInt16, _ value: UInt16) throws {
        let tag = nextTag
        let reply = try send(KinectCommand.writeRegister(address: address, value: value, tag: tag),
                             command: KinectCommand.writeRegisterID, tag: tag)
        try KinectCommand.checkWriteAck(reply, tag: tag)
    }

    /// Sends command `command` with `payload` and returns the payload of its (validated) reply. Throws `USBError`
    /// or `KinectCommandError`.
    public func sendCommand(_ command: UInt16, payload: [UInt8]) throws -> [UInt8] {
        let tag = nextTag
        let packet = try KinectCommand.encode(command: command, tag: tag, payload: payload)
        let reply = try send(packet, command: command, tag: tag)
        return try KinectCommand.decodeReply(reply, command: command, tag: tag)
    }

    /// Writes `packet` (control OUT), then polls the reply (control IN) until a non-empty one arrives; returns it
    /// unvalidated. Advances the tag.
    private func send(_ packet: [UInt8], command: UInt16, tag: UInt16) throws -> [UInt8] {
        nextTag &+= 1
        _ = try transport.control(requestType: KinectCommand.commandRequestType, request: KinectCommand.request,
                                  value: KinectCommand.value, index: KinectCommand.index, data: packet,
                                  length: packet.count, timeoutMilliseconds: config.controlTimeoutMilliseconds)
        for attempt in 0..<config.replyPollAttempts {
            if attempt > 0 && config.replyPollIntervalMilliseconds > 0 {
                Thread.sleep(forTimeInterval: Double(config.replyPollIntervalMilliseconds) / 1000)
            }
            let reply = try transport.control(requestType: KinectCommand.replyRequestType,
                                              request: KinectCommand.request, value: KinectCommand.value,
                                              index: KinectCommand.index, data: [],
                                              length: KinectCommand.maxReplyBytes,
                                              timeoutMilliseconds: config.controlTimeoutMilliseconds)
            if !reply.isEmpty {
                stats.commandsSent += 1
                return reply
            }
        }
        throw KinectCommandError(.noReply, "no reply to command 0x\(KinectCommand.hex(command)) tag "
                                 + "0x\(KinectCommand.hex(tag)) after \(config.replyPollAttempts) polls")
    }
}
