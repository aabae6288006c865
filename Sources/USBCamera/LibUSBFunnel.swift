import CLibUSB
import Dispatch
import Foundation

/// A libusb failure, from its return code. Every libusb call of the project lives in this file.
public struct USBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The libusb error, by kind.
    public enum Code: Sendable, Equatable {
        case io, invalidParameter, access, noDevice, notFound, busy, timeout, overflow, pipe, interrupted
        case noMemory, notSupported, other
    }

    public var code: Code
    /// The raw libusb return code.
    public var rawValue: Int32
    /// What was being done ("enumerate devices", "claim interface 0", ...).
    public var operation: String

    /// The error for libusb return code `rawValue` (a negative `LIBUSB_ERROR_*`) during `operation`.
    public init(rawValue: Int32, operation: String) {
        self.rawValue = rawValue
        self.operation = operation
        switch rawValue {
        case LIBUSB_ERROR_IO.rawValue: code = .io
        case LIBUSB_ERROR_INVALID_PARAM.rawValue: code = .invalidParameter
        case LIBUSB_ERROR_ACCESS.rawValue: code = .access
        case LIBUSB_ERROR_NO_DEVICE.rawValue: code = .noDevice
        case LIBUSB_ERROR_NOT_FOUND.rawValue: code = .notFound
        case LIBUSB_ERROR_BUSY.rawValue: code = .busy
        case LIBUSB_ERROR_TIMEOUT.rawValue: code = .timeout
        case LIBUSB_ERROR_OVERFLOW.rawValue: code = .overflow
        case LIBUSB_ERROR_PIPE.rawValue: code = .pipe
        case LIBUSB_ERROR_INTERRUPTED.rawValue: code = .interrupted
        case LIBUSB_ERROR_NO_MEM.rawValue: code = .noMemory
        case LIBUSB_ERROR_NOT_SUPPORTED.rawValue: code = .notSupported
        default: code = .other
        }
    }

    /// What the user can do about it.
    public var hint: String {
        switch code {
        case .access: return "run as root or add a udev rule giving your user access to the device"
        case .noDevice: return "the camera was unplugged; plug it in again and resume the session"
        case .busy: return "another program (or a kernel driver) holds the device; close it and retry"
        case .timeout: return "the device did not answer in time; replug it"
        case .notFound:
            return "no such device on the bus: is the camera plugged in and powered (the Kinect needs its mains "
                + "adapter)? `pano devices` lists what this machine sees; a container must be given the USB bus"
        case .other, .notSupported: return "is a USB bus visible here (/dev/bus/usb)? containers often hide it"
        default: return "replug the camera and retry"
        }
    }

    /// The device is gone (`LIBUSB_ERROR_NO_DEVICE`): what a transport reports once the camera is unplugged.
    public static func noDevice(operation: String) -> USBError {
        USBError(rawValue: LIBUSB_ERROR_NO_DEVICE.rawValue, operation: operation)
    }

    /// No matching device or endpoint (`LIBUSB_ERROR_NOT_FOUND`).
    public static func notFound(operation: String) -> USBError {
        USBError(rawValue: LIBUSB_ERROR_NOT_FOUND.rawValue, operation: operation)
    }

    /// A parameter libusb would refuse (`LIBUSB_ERROR_INVALID_PARAM`), caught before the call.
    public static func invalidParameter(operation: String) -> USBError {
        USBError(rawValue: LIBUSB_ERROR_INVALID_PARAM.rawValue, operation: operation)
    }

    public var description: String {
        let name = libusb_error_name(rawValue).map { String(cString: $0) } ?? "\(rawValue)"
        return "USB error \(name) during \(operation) — \(hint)"
    }
}

/// A USB device seen on the bus.
public struct USBDeviceInfo: Sendable, Equatable {
    /// idVendor of the device descriptor.
    public var vendorID: UInt16
    /// idProduct of the device descriptor.
    public var productID: UInt16
    /// Bus number.
    public var bus: UInt8
    /// Device address on its bus.
    public var address: UInt8

    /// A device seen at `bus`/`address` with the given ids.
    public init(vendorID: UInt16, productID: UInt16, bus: UInt8, address: UInt8) {
        self.vendorID = vendorID; self.productID = productID; self.bus = bus; self.address = address
    }
}

/// Owns one libusb context. libusb contexts may be used from several threads (the transport's event thread and its
/// owner), hence `@unchecked Sendable`.
public final class USBContext: @unchecked Sendable {
    fileprivate let context: OpaquePointer?

    /// Initialises libusb (`libusb_init`).
    public convenience init() throws {
        try self.init(typed: ())
    }

    /// `init()` with its error type spelled out, for callers with typed throws.
    fileprivate init(typed: Void) throws(USBError) {
        var ctx: OpaquePointer?
        let rc = libusb_init(&ctx)
        guard rc == 0 else { throw USBError(rawValue: rc, operation: "initialise libusb") }
        context = ctx
    }

    deinit { if let context { libusb_exit(context) } }

    /// All devices on all buses.
    public func devices() throws -> [USBDeviceInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = libusb_get_device_list(context, &list)
        guard n >= 0, let list else { throw USBError(rawValue: Int32(n), operation: "enumerate devices") }
        defer { libusb_free_device_list(list, 1) }
        var out: [USBDeviceInfo] = []
        for i in 0..<Int(n) {
            guard let dev = list[i] else { continue }
            out.append(try Self.info(dev))
        }
        return out
    }

    /// The ids and place of `device`.
    fileprivate static func info(_ device: OpaquePointer) throws(USBError) -> USBDeviceInfo {
        var desc = libusb_device_descriptor()
        let rc = libusb_get_device_descriptor(device, &desc)
        guard rc == 0 else { throw USBError(rawValue: rc, operation: "read a device descriptor") }
        return USBDeviceInfo(vendorID: desc.idVendor, productID: desc.idProduct,
                             bus: libusb_get_bus_number(device), address: libusb_get_device_address(device))
    }

    /// Opens the first device for which `matches` holds; `.notFound` (operation `label`) when none does.
    fileprivate func openFirst(label: String, matching matches: (USBDeviceInfo) -> Bool)
        throws(USBError) -> (handle: OpaquePointer, info: USBDeviceInfo) {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = libusb_get_device_list(context, &list)
        guard n >= 0, let list else { throw USBError(rawValue: Int32(n), operation: "enumerate devices to \(label)") }
        defer { libusb_free_device_list(list, 1) }
        for i in 0..<Int(n) {
            guard let dev = list[i] else { continue }
            let info = try Self.info(dev)
            guard matches(info) else { continue }
            var handle: OpaquePointer?
            let rc = libusb_open(dev, &handle)
            guard rc == 0, let handle else {
                throw USBError(rawValue: rc == 0 ? LIBUSB_ERROR_OTHER.rawValue : rc,
                               operation: "\(label) (bus \(info.bus) address \(info.address))")
            }
            return (handle, info)
        }
        throw USBError.notFound(operation: label)
    }
}

// MARK: - LibUSBTransport

/// A `USBTransport` on a real device through libusb: synchronous control transfers, and isochronous reception with
/// the asynchronous API (a few transfers in flight per endpoint, resubmitted as they complete, events handled on a
/// dedicated thread while streaming).
///
/// Lifetime: `open` claims interface 0 of the device; `deinit` stops streaming, releases the interface (re-attaching
/// a kernel driver that was detached) and closes the device. Not for use from several threads at once (one owner
/// calls its methods); the event thread only touches the shared packet queue.
public final class LibUSBTransport: USBTransport {
    /// Sizes and timeouts of the transport. Defaults suit the Kinect v1 (about 8000 packets per second per stream).
    public struct Config: Sendable, Equatable {
        /// Transfers kept in flight per endpoint.
        public var transfersPerEndpoint: Int = 8
        /// Isochronous packets per transfer.
        public var packetsPerTransfer: Int = 16
        /// How long one round of event handling waits, milliseconds (bounds how fast the event thread notices a stop).
        public var eventPollMilliseconds: Int = 50
        /// How long `stopIsochronous` waits for cancelled transfers to come back, milliseconds.
        public var stopTimeoutMilliseconds: Int = 2000
        /// Packets kept for `receive` before newer ones are dropped (counted in `droppedPackets`); about 2 s of
        /// both Kinect streams.
        public var maxQueuedPackets: Int = 32768
        /// Consecutive failed transfers (other than unplug, which is fatal at once) before the stream is declared
        /// broken.
        public var maxConsecutiveTransferErrors: Int = 64
        /// The interface claimed.
        public var interface: Int32 = 0
        /// The configuration selected when the device is in another one.
        public var configuration: Int32 = 1

        /// The defaults.
        public init() {}

        /// Throws `.invalidParameter` naming the first field out of range.
        public func validate() throws(USBError) {
            func check(_ ok: Bool, _ what: String) throws(USBError) {
                if !ok { throw USBError.invalidParameter(operation: "configure the USB transport: \(what)") }
            }
            try check((1...64).contains(transfersPerEndpoint), "transfersPerEndpoint must be 1...64")
            try check((1...256).contains(packetsPerTransfer), "packetsPerTransfer must be 1...256")
            try check((1...10_000).contains(eventPollMilliseconds), "eventPollMilliseconds must be 1...10000")
            try check((1...60_000).contains(stopTimeoutMilliseconds), "stopTimeoutMilliseconds must be 1...60000")
            try check(maxQueuedPackets >= 1, "maxQueuedPackets must be positive")
            try check(maxConsecutiveTransferErrors >= 1, "maxConsecutiveTransferErrors must be positive")
            try check(interface >= 0 && configuration >= 0, "interface and configuration must not be negative")
        }
    }

    /// The device opened.
    public let device: USBDeviceInfo
    /// The configuration in use.
    public let config: Config

    private let context: USBContext
    private let handle: OpaquePointer
    private var detachedKernelDriver = false
    /// Set when cancelled transfers did not come back in time: they (and the device handle) are leaked rather than
    /// freed under libusb's feet.
    private var leakedTransfers = false
    private var state: IsoState?
    private var events: EventLoop?
    private var streams: [IsoEndpointStream] = []

    /// Opens the first device with `vendorID`:`productID` (default: the Kinect v1 camera, 045e:02ae) and claims its
    /// interface. Throws `.notFound` ("open 045e:02ae") when no such device is on the bus, `.access` without
    /// permission, `.busy` when another program holds it.
    public static func open(vendorID: UInt16 = 0x045E, productID: UInt16 = 0x02AE, config: Config = Config())
        throws(USBError) -> LibUSBTransport {
        let label = "open \(hex4(vendorID)):\(hex4(productID))"
        return try open(label: label, config: config) { $0.vendorID == vendorID && $0.productID == productID }
    }

    /// Opens the device at `bus`/`address` (as `pano devices` lists them) and claims its interface.
    public static func open(bus: UInt8, address: UInt8, config: Config = Config()) throws(USBError) -> LibUSBTransport {
        try open(label: "open the device at bus \(bus) address \(address)", config: config) {
            $0.bus == bus && $0.address == address
        }
    }

    private static func open(label: String, config: Config, matching: (USBDeviceInfo) -> Bool)
        throws(USBError) -> LibUSBTransport {
        try config.validate()
        let context = try USBContext(typed: ())
        let (handle, info) = try context.openFirst(label: label, matching: matching)
        do {
            let detached = try claim(handle, config: config)
            return LibUSBTransport(context: context, handle: handle, device: info, config: config,
                                   detachedKernelDriver: detached)
        } catch {
            libusb_close(handle)
            throw error
        }
    }

    /// Detaches a kernel driver from the interface if one is bound (where the platform allows), selects the
    /// configuration if the device is in another one, and claims the interface. Returns whether a kernel driver was
    /// detached.
    private static func claim(_ handle: OpaquePointer, config: Config) throws(USBError) -> Bool {
        let iface = config.interface
        var detached = false
        if libusb_has_capability(UInt32(LIBUSB_CAP_SUPPORTS_DETACH_KERNEL_DRIVER.rawValue)) != 0 {
            let active = libusb_kernel_driver_active(handle, iface)
            if active == 1 {
                let rc = libusb_detach_kernel_driver(handle, iface)
                guard rc == 0 else {
                    throw USBError(rawValue: rc, operation: "detach the kernel driver from interface \(iface)")
                }
                detached = true
            } else if active == LIBUSB_ERROR_NO_DEVICE.rawValue {
                throw USBError.noDevice(operation: "query the kernel driver of interface \(iface)")
            }
        }
        var current: Int32 = 0
        var rc = libusb_get_configuration(handle, &current)
        guard rc == 0 else { throw USBError(rawValue: rc, operation: "read the active configuration") }
        if current != config.configuration {
            rc = libusb_set_configuration(handle, config.configuration)
            guard rc == 0 else {
                throw USBError(rawValue: rc, operation: "select configuration \(config.configuration)")
            }
        }
        rc = libusb_claim_interface(handle, iface)
        guard rc == 0 else { throw USBError(rawValue: rc, operation: "claim interface \(iface)") }
        return detached
    }

    private init(context: USBContext, handle: OpaquePointer, device: USBDeviceInfo, config: Config,
                 detachedKernelDriver: Bool) {
        self.context = context; self.handle = handle; self.device = device; self.config = config
        self.detachedKernelDriver = detachedKernelDriver
    }

    deinit {
        stopIsochronous()
        guard !leakedTransfers else { return }  // transfers still owned by libusb: keep the handle open
        _ = libusb_release_interface(handle, config.interface)
        if detachedKernelDriver { _ = libusb_attach_kernel_driver(handle, config.interface) }
        libusb_close(handle)
    }

    /// Packets dropped because `receive` was not called often enough (the queue held `maxQueuedPackets`).
    public var droppedPackets: Int { state?.droppedPacketCount ?? 0 }

    // MARK: USBTransport

    /// A synchronous control transfer (`libusb_control_transfer`). OUT: sends `data`, returns []; IN: returns the
    /// bytes read (at most `length`). Throws `.invalidParameter` when the byte count does not fit wLength.
    public func control(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, data: [UInt8], length: Int,
                        timeoutMilliseconds: UInt32) throws(USBError) -> [UInt8] {
        let deviceToHost = requestType & 0x80 != 0
        let what = "control transfer \(deviceToHost ? "IN" : "OUT") type 0x\(hex2(requestType)) "
            + "request 0x\(hex2(request))"
        let count = deviceToHost ? length : data.count
        guard (0...Int(UInt16.max)).contains(count) else {
            throw USBError.invalidParameter(operation: "\(what): \(count) bytes do not fit wLength")
        }
        var buffer = deviceToHost ? [UInt8](repeating: 0, count: max(count, 1)) : data
        let rc = buffer.withUnsafeMutableBufferPointer { buf in
            libusb_control_transfer(handle, requestType, request, value, index,
                                    count == 0 ? nil : buf.baseAddress, UInt16(count), timeoutMilliseconds)
        }
        guard rc >= 0 else { throw USBError(rawValue: rc, operation: what) }
        if deviceToHost { return Array(buffer.prefix(min(Int(rc), count))) }
        guard Int(rc) == count else {
            throw USBError(rawValue: LIBUSB_ERROR_IO.rawValue, operation: "\(what): sent \(rc) of \(count) bytes")
        }
        return []
    }

    /// Starts reception on each of `endpoints` not already streaming: `transfersPerEndpoint` transfers of
    /// `packetsPerTransfer` packets, each packet buffer the larger of `maxPacketBytes` and the endpoint's own limit.
    /// May be called once per endpoint with different packet sizes.
    public func startIsochronous(endpoints: [UInt8], maxPacketBytes: Int) throws(USBError) {
        guard !endpoints.isEmpty, endpoints.allSatisfy({ $0 & 0x80 != 0 }) else {
            throw USBError.invalidParameter(operation: "start isochronous reception: endpoints \(endpoints) must be "
                                            + "a non-empty list of IN endpoints (bit 7 set)")
        }
        guard (1...0xC00 * 3).contains(maxPacketBytes) else {
            throw USBError.invalidParameter(operation: "start isochronous reception: \(maxPacketBytes) bytes per "
                                            + "packet (1...\(0xC00 * 3))")
        }
        let state: IsoState
        if let existing = self.state {
            state = existing
        } else {
            state = IsoState(maxQueuedPackets: config.maxQueuedPackets,
                             maxConsecutiveErrors: config.maxConsecutiveTransferErrors)
            self.state = state
        }
        if events == nil {
            events = EventLoop(context: context, state: state, pollMilliseconds: config.eventPollMilliseconds)
        }

        for endpoint in endpoints where !streams.contains(where: { $0.endpoint == endpoint }) {
            let what = "isochronous endpoint 0x\(hex2(endpoint))"
            // The endpoint's own limit may exceed what the caller expects (high-bandwidth endpoints); a packet
            // larger than its buffer would overflow, so buffers take the larger of the two.
            let deviceMax = libusb_get_max_iso_packet_size(libusb_get_device(handle), endpoint)
            guard deviceMax >= 0 else { throw USBError(rawValue: deviceMax, operation: "find \(what)") }
            let packetBytes = max(maxPacketBytes, Int(deviceMax))
            var stream = IsoEndpointStream(endpoint: endpoint, packetBytes: packetBytes)
            defer { streams.append(stream) }  // whatever was allocated is freed by stopIsochronous
            for _ in 0..<config.transfersPerEndpoint {
                guard let transfer = libusb_alloc_transfer(Int32(config.packetsPerTransfer)) else {
                    throw USBError(rawValue: LIBUSB_ERROR_NO_MEM.rawValue, operation: "allocate a transfer for \(what)")
                }
                fillIsochronous(transfer, endpoint: endpoint, packets: config.packetsPerTransfer,
                                packetBytes: packetBytes, state: state)
                stream.transfers.append(transfer)
            }
            for transfer in stream.transfers {
                state.markSubmitted(transfer)
                let rc = libusb_submit_transfer(transfer)
                guard rc == 0 else {
                    state.markReturned(transfer)
                    throw USBError(rawValue: rc, operation: "submit a transfer on \(what)")
                }
            }
        }
    }

    /// The packets received since the last call (all endpoints, arrival order; the packets of one transfer share
    /// its completion time), waiting up to `timeoutMilliseconds` for one. Packets that arrived before a fatal error
    /// are returned first; then every call throws that error (`.noDevice` once the camera is unplugged).
    public func receive(timeoutMilliseconds: UInt32) throws(USBError) -> [CapturedPacket] {
        guard let state else {
            // Not streaming: nothing can arrive.
            Thread.sleep(forTimeInterval: Double(timeoutMilliseconds) / 1000)
            return []
        }
        return try state.take(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Cancels every transfer, waits (at most `stopTimeoutMilliseconds`) for them to come back, stops the event
    /// thread and frees them. Queued packets and a recorded error are discarded. Safe to call twice.
    public func stopIsochronous() {
        guard let state else { return }
        let inFlight = state.beginStopping()
        for transfer in inFlight { _ = libusb_cancel_transfer(transfer) }  // NOT_FOUND: it just completed
        let allBack = state.waitUntilAllReturned(timeoutMilliseconds: config.stopTimeoutMilliseconds)
        if allBack {
            events?.stop(timeoutMilliseconds: config.stopTimeoutMilliseconds)
            for stream in streams {
                for transfer in stream.transfers { freeTransfer(transfer) }
            }
        } else {
            // libusb still owns some transfers: freeing them (or closing the handle) would be undefined behaviour.
            // Leave the event thread running so late completions are still handled, and leak the rest.
            leakedTransfers = true
        }
        streams = []
        events = nil
        self.state = nil
    }

    // MARK: Transfers

    private func fillIsochronous(_ transfer: UnsafeMutablePointer<libusb_transfer>, endpoint: UInt8, packets: Int,
                                 packetBytes: Int, state: IsoState) {
        // What libusb_fill_iso_transfer (a static inline C function) and libusb_set_iso_packet_lengths do.
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: packets * packetBytes)
        buffer.initialize(repeating: 0, count: packets * packetBytes)
        transfer.pointee.dev_handle = handle
        transfer.pointee.endpoint = endpoint
        transfer.pointee.type = UInt8(LIBUSB_TRANSFER_TYPE_ISOCHRONOUS.rawValue)
        transfer.pointee.timeout = 0
        transfer.pointee.buffer = buffer
        transfer.pointee.length = Int32(packets * packetBytes)
        transfer.pointee.num_iso_packets = Int32(packets)
        transfer.pointee.callback = isoTransferCompleted
        transfer.pointee.user_data = Unmanaged.passRetained(state).toOpaque()
        let descriptors = isoDescriptors(of: transfer)
        for i in 0..<packets { descriptors[i].length = UInt32(packetBytes) }
    }

    private func freeTransfer(_ transfer: UnsafeMutablePointer<libusb_transfer>) {
        transfer.pointee.buffer?.deallocate()
        transfer.pointee.buffer = nil
        if let user = transfer.pointee.user_data { Unmanaged<IsoState>.fromOpaque(user).release() }
        transfer.pointee.user_data = nil
        libusb_free_transfer(transfer)
    }
}

/// The transfers of one endpoint.
private struct IsoEndpointStream {
    var endpoint: UInt8
    var packetBytes: Int
    var transfers: [UnsafeMutablePointer<libusb_transfer>] = []
}

/// Byte offset of `iso_packet_desc` in `struct libusb_transfer`. Swift cannot import the flexible array member, so
/// it is placed by the C layout rule: right after `num_iso_packets`, rounded up to the descriptor's alignment.
private let isoDescriptorOffset: Int = {
    let count = MemoryLayout<libusb_transfer>.offset(of: \libusb_transfer.num_iso_packets)
        ?? MemoryLayout<libusb_transfer>.size - MemoryLayout<Int32>.size  // unreachable: a stored property
    let end = count + MemoryLayout<Int32>.size
    let align = MemoryLayout<libusb_iso_packet_descriptor>.alignment
    return (end + align - 1) / align * align
}()

/// The iso packet descriptors of `transfer` (as many as `num_iso_packets`).
private func isoDescriptors(of transfer: UnsafeMutablePointer<libusb_transfer>)
    -> UnsafeMutableBufferPointer<libusb_iso_packet_descriptor> {
    let base = (UnsafeMutableRawPointer(transfer) + isoDescriptorOffset)
        .assumingMemoryBound(to: libusb_iso_packet_descriptor.self)
    return UnsafeMutableBufferPointer(start: base, count: max(0, Int(transfer.pointee.num_iso_packets)))
}

/// The completion callback of every iso transfer; finds its `IsoState` through `user_data`. Runs on the event thread.
private func isoTransferCompleted(_ transfer: UnsafeMutablePointer<libusb_transfer>?) {
    guard let transfer, let user = transfer.pointee.user_data else { return }
    Unmanaged<IsoState>.fromOpaque(user).takeUnretainedValue().completed(transfer)
}

/// What the completion callback, the event thread and `receive` share: the packet queue, the first fatal error, the
/// transfers in flight. Every field is guarded by `condition`.
final class IsoState: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [CapturedPacket] = []
    private var fatal: USBError?
    private var pending = Set<UnsafeMutablePointer<libusb_transfer>>()
    private var stopping = false
    private var consecutiveErrors = 0
    private var dropped = 0
    private let maxQueuedPackets: Int
    private let maxConsecutiveErrors: Int
    private let startNanoseconds = DispatchTime.now().uptimeNanoseconds

    init(maxQueuedPackets: Int, maxConsecutiveErrors: Int) {
        self.maxQueuedPackets = maxQueuedPackets; self.maxConsecutiveErrors = maxConsecutiveErrors
    }

    var droppedPacketCount: Int {
        condition.lock(); defer { condition.unlock() }
        return dropped
    }

    func markSubmitted(_ transfer: UnsafeMutablePointer<libusb_transfer>) {
        condition.lock(); pending.insert(transfer); condition.unlock()
    }

    func markReturned(_ transfer: UnsafeMutablePointer<libusb_transfer>) {
        condition.lock(); pending.remove(transfer); condition.broadcast(); condition.unlock()
    }

    /// Records `error` unless an earlier one is already there (the first cause is the one worth reporting).
    func recordFatal(_ error: USBError) {
        condition.lock()
        if fatal == nil { fatal = error }
        condition.broadcast()
        condition.unlock()
    }

    /// No more resubmissions; returns the transfers still in flight (to cancel).
    func beginStopping() -> [UnsafeMutablePointer<libusb_transfer>] {
        condition.lock(); defer { condition.unlock() }
        stopping = true
        return Array(pending)
    }

    /// Waits until no transfer is in flight; false on timeout.
    func waitUntilAllReturned(timeoutMilliseconds: Int) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMilliseconds) / 1000)
        condition.lock(); defer { condition.unlock() }
        while !pending.isEmpty {
            if !condition.wait(until: deadline) { return pending.isEmpty }
        }
        return true
    }

    /// The packets queued so far, waiting up to `timeoutMilliseconds` for one. Packets that arrived before a fatal
    /// error are delivered first; after that, every call throws the error.
    func take(timeoutMilliseconds: UInt32) throws(USBError) -> [CapturedPacket] {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMilliseconds) / 1000)
        condition.lock(); defer { condition.unlock() }
        while queue.isEmpty && fatal == nil {
            if !condition.wait(until: deadline) { break }
        }
        if !queue.isEmpty {
            let out = queue
            queue.removeAll(keepingCapacity: true)
            return out
        }
        if let fatal { throw fatal }
        return []
    }

    /// Handles one completed transfer: harvests its packets, resubmits it unless stopping, records fatal errors.
    func completed(_ transfer: UnsafeMutablePointer<libusb_transfer>) {
        condition.lock(); defer { condition.broadcast(); condition.unlock() }
        let endpoint = transfer.pointee.endpoint
        let what = "isochronous transfer on endpoint 0x\(hex2(endpoint))"
        switch transfer.pointee.status {
        case LIBUSB_TRANSFER_COMPLETED:
            consecutiveErrors = 0
            harvest(transfer, endpoint: endpoint)
            resubmit(transfer, what: what)
        case LIBUSB_TRANSFER_CANCELLED:
            pending.remove(transfer)
        case LIBUSB_TRANSFER_NO_DEVICE:
            pending.remove(transfer)
            if fatal == nil { fatal = USBError.noDevice(operation: what) }
        case LIBUSB_TRANSFER_STALL:
            pending.remove(transfer)
            if fatal == nil { fatal = USBError(rawValue: LIBUSB_ERROR_PIPE.rawValue, operation: "\(what) (stalled)") }
        default:  // LIBUSB_TRANSFER_ERROR, _TIMED_OUT, _OVERFLOW: a glitch, unless it keeps happening
            consecutiveErrors += 1
            if consecutiveErrors >= maxConsecutiveErrors {
                pending.remove(transfer)
                if fatal == nil {
                    fatal = USBError(rawValue: LIBUSB_ERROR_IO.rawValue,
                                     operation: "\(what) (\(consecutiveErrors) failed transfers in a row)")
                }
            } else {
                resubmit(transfer, what: what)
            }
        }
    }

    /// Appends the received bytes of every completed packet of `transfer` to the queue. Caller holds the lock.
    private func harvest(_ transfer: UnsafeMutablePointer<libusb_transfer>, endpoint: UInt8) {
        guard let buffer = transfer.pointee.buffer else { return }
        let total = max(0, Int(transfer.pointee.length))
        let now = DispatchTime.now().uptimeNanoseconds &- startNanoseconds
        var offset = 0
        for descriptor in isoDescriptors(of: transfer) {
            let slot = Int(descriptor.length)
            let got = min(Int(descriptor.actual_length), slot, max(0, total - offset))
            if descriptor.status == LIBUSB_TRANSFER_COMPLETED && got > 0 {
                if queue.count < maxQueuedPackets {
                    queue.append(CapturedPacket(endpoint: endpoint, hostNanoseconds: now,
                                                bytes: Array(UnsafeBufferPointer(start: buffer + offset, count: got))))
                } else {
                    dropped += 1
                }
            }
            offset += slot
        }
    }

    /// Submits `transfer` again unless stopping. Caller holds the lock (a submission never calls back synchronously,
    /// and no thread holding this lock waits for libusb).
    private func resubmit(_ transfer: UnsafeMutablePointer<libusb_transfer>, what: String) {
        guard !stopping else {
            pending.remove(transfer)
            return
        }
        let rc = libusb_submit_transfer(transfer)
        if rc != 0 {
            pending.remove(transfer)
            if fatal == nil { fatal = USBError(rawValue: rc, operation: "resubmit \(what)") }
        }
    }
}

/// The thread that handles libusb events (and so runs the completion callbacks) while streaming.
private final class EventLoop: @unchecked Sendable {
    private let context: USBContext
    private let state: IsoState
    private let pollMilliseconds: Int
    private let condition = NSCondition()
    private var shouldStop = false
    private var finished = false

    init(context: USBContext, state: IsoState, pollMilliseconds: Int) {
        self.context = context; self.state = state; self.pollMilliseconds = pollMilliseconds
        let thread = Thread { [self] in run() }
        thread.name = "libusb events"
        thread.start()
    }

    private func run() {
        while true {
            condition.lock()
            let stop = shouldStop
            condition.unlock()
            if stop { break }
            var tv = timeval(tv_sec: pollMilliseconds / 1000, tv_usec: (pollMilliseconds % 1000) * 1000)
            let rc = libusb_handle_events_timeout_completed(context.context, &tv, nil)
            if rc < 0 && rc != LIBUSB_ERROR_INTERRUPTED.rawValue {
                state.recordFatal(USBError(rawValue: rc, operation: "handle USB events"))
                Thread.sleep(forTimeInterval: 0.01)  // do not spin on a persistent failure
            }
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Asks the thread to end and waits (bounded) until it has.
    func stop(timeoutMilliseconds: Int) {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMilliseconds) / 1000)
        condition.lock(); defer { condition.unlock() }
        shouldStop = true
        while !finished {
            if !condition.wait(until: deadline) { return }
        }
    }
}

/// Self-checks of the layout assumptions and of the completion path, runnable without a device (for tests).
enum LibUSBSelfCheck {
    /// Whether the descriptors found at `isoDescriptorOffset` are the ones libusb's own (inline) accessor writes.
    static func isoDescriptorLayoutMatchesLibUSB() -> Bool {
        guard let transfer = libusb_alloc_transfer(5) else { return false }
        defer { libusb_free_transfer(transfer) }
        transfer.pointee.num_iso_packets = 5
        libusb_set_iso_packet_lengths(transfer, 1234)
        return isoDescriptors(of: transfer).allSatisfy { $0.length == 1234 }
    }

    /// Feeds the completion callback a transfer on `endpoint` that completed with `status`, carrying `packets` (each
    /// slot `slotBytes` long; `nil` = a packet that failed), while the state is stopping (so nothing is resubmitted).
    /// Then returns what `receive` would: the packets, or the error.
    static func complete(endpoint: UInt8, packets: [[UInt8]?], slotBytes: Int, transferStatus: TransferStatus)
        -> Result<[CapturedPacket], USBError> {
        let state = IsoState(maxQueuedPackets: 1000, maxConsecutiveErrors: 4)
        guard let transfer = libusb_alloc_transfer(Int32(packets.count)) else {
            return .failure(USBError(rawValue: LIBUSB_ERROR_NO_MEM.rawValue, operation: "self-check"))
        }
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, packets.count * slotBytes))
        buffer.initialize(repeating: 0, count: max(1, packets.count * slotBytes))
        defer {
            buffer.deallocate()
            libusb_free_transfer(transfer)
        }
        transfer.pointee.endpoint = endpoint
        transfer.pointee.buffer = buffer
        transfer.pointee.length = Int32(packets.count * slotBytes)
        transfer.pointee.num_iso_packets = Int32(packets.count)
        transfer.pointee.status = transferStatus.libusb
        transfer.pointee.user_data = Unmanaged.passUnretained(state).toOpaque()
        let descriptors = isoDescriptors(of: transfer)
        for (i, packet) in packets.enumerated() {
            descriptors[i].length = UInt32(slotBytes)
            if let packet {
                let n = min(packet.count, slotBytes)
                for j in 0..<n { buffer[i * slotBytes + j] = packet[j] }
                descriptors[i].actual_length = UInt32(n)
                descriptors[i].status = LIBUSB_TRANSFER_COMPLETED
            } else {
                descriptors[i].actual_length = 0
                descriptors[i].status = LIBUSB_TRANSFER_ERROR
            }
        }
        state.markSubmitted(transfer)
        _ = state.beginStopping()
        isoTransferCompleted(transfer)
        do {
            return .success(try state.take(timeoutMilliseconds: 0))
        } catch {
            return .failure(error)
        }
    }

    /// The transfer outcomes the self-check can feed.
    enum TransferStatus {
        case completed, noDevice, cancelled

        var libusb: libusb_transfer_status {
            switch self {
            case .completed: return LIBUSB_TRANSFER_COMPLETED
            case .noDevice: return LIBUSB_TRANSFER_NO_DEVICE
            case .cancelled: return LIBUSB_TRANSFER_CANCELLED
            }
        }
    }
}

private func hex2(_ v: UInt8) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return s.count < 2 ? "0" + s : s
}

private func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}
