import Foundation
import USBCamera

/// A `USBTransport` for tests: records every control transfer, answers control IN transfers from a reply function
/// (by default a well-formed Kinect acknowledgement of the last command, so `KinectDevice.start()` succeeds), plays a
/// list of packet batches from `receive`, and can fail like an unplugged device.
///
/// Script of `receive`: call k (0-based) returns `batches[k]`; once `failAfterBatches` batches were delivered, that
/// call and every later one throws `failure` (and, with `failureAffectsControl`, so do control transfers: the
/// device is gone). With no failure set, an exhausted script returns [] after waiting the requested timeout (a
/// stalled device). Packets are delivered whether or not `startIsochronous` was called.
///
/// Thread-safe: every member takes one lock, so a pipeline may call it from a dedicated thread while the test
/// inspects it.
///
///     let t = ScriptedTransport(batches: [b0, b1, b2], failAfterBatches: 2)
///     let camera = KinectDevice(transport: t)
///     try camera.start()
///     _ = try camera.nextPackets()   // b0
///     _ = try camera.nextPackets()   // b1
///     _ = try camera.nextPackets()   // throws USBError, code .noDevice
public final class ScriptedTransport: USBTransport, @unchecked Sendable {
    /// One recorded control transfer.
    public struct ControlTransfer: Sendable, Equatable {
        /// bmRequestType (bit 7 set: device-to-host).
        public var requestType: UInt8
        /// bRequest.
        public var request: UInt8
        /// wValue.
        public var value: UInt16
        /// wIndex.
        public var index: UInt16
        /// Bytes sent (host-to-device), [] for device-to-host.
        public var data: [UInt8]
        /// wLength asked for.
        public var length: Int

        /// A record with these fields.
        public init(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, data: [UInt8], length: Int) {
            self.requestType = requestType; self.request = request; self.value = value; self.index = index
            self.data = data; self.length = length
        }

        /// Whether this transfer reads from the device.
        public var isDeviceToHost: Bool { requestType & 0x80 != 0 }
    }

    /// One `startIsochronous` call.
    public struct IsochronousStart: Sendable, Equatable {
        /// Endpoints asked for.
        public var endpoints: [UInt8]
        /// Packet size asked for.
        public var maxPacketBytes: Int

        /// A record with these fields.
        public init(endpoints: [UInt8], maxPacketBytes: Int) {
            self.endpoints = endpoints; self.maxPacketBytes = maxPacketBytes
        }
    }

    /// Answers a control IN transfer, given the data of the last control OUT transfer ([] if none) and the IN
    /// transfer itself; [] means "no reply yet".
    public typealias ReplyFunction = @Sendable (_ lastCommand: [UInt8], _ transfer: ControlTransfer) -> [UInt8]

    /// The default reply: a Kinect acknowledgement (status word 0) echoing the command id and tag of `lastCommand`;
    /// [] when `lastCommand` is not a 'G' 'M' command packet.
    public static let kinectAcknowledgement: ReplyFunction = { lastCommand, _ in
        guard let (command, tag) = KinectCommand.commandAndTag(of: lastCommand) else { return [] }
        return KinectCommand.reply(command: command, tag: tag, payload: [0, 0])
    }

    /// The error thrown once the failure point is reached: an unplugged device, as libusb reports it.
    public static let unplugged = USBError.noDevice(operation: "isochronous transfer")

    private let lock = NSLock()
    private var batches: [[CapturedPacket]]
    private let failAfterBatches: Int?
    private let failure: USBError
    private let failureAffectsControl: Bool
    private let waitsOnEmptyReceive: Bool
    private let reply: ReplyFunction
    private var delivered = 0
    private var failed = false
    private var lastCommand: [UInt8] = []
    private var _controlTransfers: [ControlTransfer] = []
    private var _isochronousStarts: [IsochronousStart] = []
    private var _stopCount = 0
    private var _receiveCalls = 0

    /// A transport playing `batches` from `receive`.
    /// - Parameters:
    ///   - batches: what successive `receive` calls return.
    ///   - failAfterBatches: after this many batches were delivered, `receive` throws `failure` (nil: never).
    ///   - failure: the error thrown; default `ScriptedTransport.unplugged` (code `.noDevice`).
    ///   - failureAffectsControl: once failed, control transfers throw `failure` too (the device is gone).
    ///   - waitsOnEmptyReceive: an empty `receive` sleeps for its timeout like a real device (false: returns at
    ///     once).
    ///   - reply: answers control IN transfers; default `kinectAcknowledgement`.
    public init(batches: [[CapturedPacket]] = [], failAfterBatches: Int? = nil,
                failure: USBError = ScriptedTransport.unplugged, failureAffectsControl: Bool = true,
                waitsOnEmptyReceive: Bool = true,
                reply: @escaping ReplyFunction = ScriptedTransport.kinectAcknowledgement) {
        self.batches = batches
        self.failAfterBatches = failAfterBatches
        self.failure = failure
        self.failureAffectsControl = failureAffectsControl
        self.waitsOnEmptyReceive = waitsOnEmptyReceive
        self.reply = reply
    }

    /// Every control transfer so far, in order.
    public var controlTransfers: [ControlTransfer] { lock.withLock { _controlTransfers } }
    /// The data of every control OUT transfer so far (for the Kinect: the command packets), in order.
    public var sentCommands: [[UInt8]] { controlTransfers.filter { !$0.isDeviceToHost }.map(\.data) }
    /// Every `startIsochronous` call so far, in order.
    public var isochronousStarts: [IsochronousStart] { lock.withLock { _isochronousStarts } }
    /// How often `stopIsochronous` was called.
    public var stopCount: Int { lock.withLock { _stopCount } }
    /// How often `receive` was called.
    public var receiveCalls: Int { lock.withLock { _receiveCalls } }
    /// Batches delivered so far.
    public var deliveredBatches: Int { lock.withLock { delivered } }
    /// Whether the failure point was reached.
    public var hasFailed: Bool { lock.withLock { failed } }

    /// Cuts raw Kinect isochronous packets (e.g. from `KinectStreamGenerator`, interleaved) into batches of
    /// `packetsPerBatch`, each packet on the endpoint of its stream by its header (depth 0x82, colour 0x81; a packet
    /// without a valid header goes to the depth endpoint), host times `nanosecondsPerPacket` apart.
    public static func kinectBatches(_ packets: [[UInt8]], packetsPerBatch: Int = 16,
                                     nanosecondsPerPacket: UInt64 = 125_000) -> [[CapturedPacket]] {
        let size = max(1, packetsPerBatch)
        var out: [[CapturedPacket]] = []
        var batch: [CapturedPacket] = []
        for (i, bytes) in packets.enumerated() {
            var endpoint = KinectDevice.depthEndpoint
            if case .success(let header) = KinectPacketHeader.parse(bytes), header.stream == .colour {
                endpoint = KinectDevice.colourEndpoint
            }
            batch.append(CapturedPacket(endpoint: endpoint, hostNanoseconds: UInt64(i) &* nanosecondsPerPacket,
                                        bytes: bytes))
            if batch.count == size {
                out.append(batch)
                batch = []
            }
        }
        if !batch.isEmpty { out.append(batch) }
        return out
    }

    /// Appends batches to the script (e.g. from another thread, to feed a running pipeline).
    public func append(_ more: [[CapturedPacket]]) { lock.withLock { batches += more } }

    /// Records the transfer; OUT returns [], IN returns the reply function's answer (cut to `length`). Throws
    /// `failure` once failed (with `failureAffectsControl`).
    public func control(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, data: [UInt8], length: Int,
                        timeoutMilliseconds: UInt32) throws(USBError) -> [UInt8] {
        let record = ControlTransfer(requestType: requestType, request: request, value: value, index: index,
                                     data: requestType & 0x80 != 0 ? [] : data, length: length)
        let (gone, command): (Bool, [UInt8]) = lock.withLock {
            _controlTransfers.append(record)
            if !record.isDeviceToHost { lastCommand = data }
            return (failed && failureAffectsControl, lastCommand)
        }
        if gone { throw failure }
        guard record.isDeviceToHost else { return [] }
        return Array(reply(command, record).prefix(max(0, length)))
    }

    /// Records the call. Throws `failure` once failed (with `failureAffectsControl`).
    public func startIsochronous(endpoints: [UInt8], maxPacketBytes: Int) throws(USBError) {
        let gone: Bool = lock.withLock {
            _isochronousStarts.append(IsochronousStart(endpoints: endpoints, maxPacketBytes: maxPacketBytes))
            return failed && failureAffectsControl
        }
        if gone { throw failure }
    }

    /// The next scripted batch; `failure` from the failure point on; [] (after sleeping `timeoutMilliseconds`, if
    /// `waitsOnEmptyReceive`) once the script is exhausted.
    public func receive(timeoutMilliseconds: UInt32) throws(USBError) -> [CapturedPacket] {
        let next: Result<[CapturedPacket], USBError> = lock.withLock {
            _receiveCalls += 1
            if let limit = failAfterBatches, delivered >= limit { failed = true }
            if failed { return .failure(failure) }
            guard delivered < batches.count else { return .success([]) }
            delivered += 1
            return .success(batches[delivered - 1])
        }
        switch next {
        case .failure(let error):
            throw error
        case .success(let packets):
            if packets.isEmpty && waitsOnEmptyReceive {
                Thread.sleep(forTimeInterval: Double(timeoutMilliseconds) / 1000)
            }
            return packets
        }
    }

    /// Counts the call (see `stopCount`).
    public func stopIsochronous() {
        lock.withLock { _stopCount += 1 }
    }
}
