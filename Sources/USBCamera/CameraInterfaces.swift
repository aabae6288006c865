import MapCore

// The seams of the live-camera stack, from the bus up:
//
//   USBTransport  (libusb device, or a scripted transport in tests)
//        │ control transfers, isochronous packets
//   PacketSource  (a camera driver such as KinectDevice, or a recorded capture file)
//        │ raw packets with their endpoint and host time
//   RGBDCamera    (packets → assembled raw frames → depth in metres registered to colour, demosaiced colour)
//        │ RGB-D frames without poses
//   the pipeline's live source (tracking, keyframes, mapping)
//
// Another camera family (e.g. a UVC depth camera) adds its own driver and `RGBDCamera` beside the Kinect's; nothing
// above this file changes.

/// One isochronous packet as received: which endpoint, when (host clock, nanoseconds since the capture started), and
/// its bytes (header included).
public struct CapturedPacket: Sendable, Equatable {
    public var endpoint: UInt8
    public var hostNanoseconds: UInt64
    public var bytes: [UInt8]

    public init(endpoint: UInt8, hostNanoseconds: UInt64, bytes: [UInt8]) {
        self.endpoint = endpoint; self.hostNanoseconds = hostNanoseconds; self.bytes = bytes
    }
}

/// What a camera driver needs from a USB device. `LibUSBTransport` is the real one; tests script one.
/// Methods are blocking; a lost device throws `USBError` with code `.noDevice`.
public protocol USBTransport: AnyObject {
    /// A control transfer. Host-to-device when `requestType` bit 7 is clear (sends `data`, returns []), device-to-host
    /// otherwise (reads up to `length` bytes and returns them).
    func control(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, data: [UInt8], length: Int,
                 timeoutMilliseconds: UInt32) throws(USBError) -> [UInt8]
    /// Starts isochronous reception on `endpoints` with packets of at most `maxPacketBytes` bytes.
    func startIsochronous(endpoints: [UInt8], maxPacketBytes: Int) throws(USBError)
    /// Packets received since the last call, waiting up to `timeoutMilliseconds` for at least one; [] on timeout.
    func receive(timeoutMilliseconds: UInt32) throws(USBError) -> [CapturedPacket]
    /// Stops isochronous reception (pending transfers are cancelled). Safe to call twice.
    func stopIsochronous()
}

/// A source of raw packets: a running camera, or a recorded capture replayed.
public protocol PacketSource: AnyObject {
    /// The next packets in arrival order; nil once the source has ended (a capture's end). Blocking.
    func nextPackets() throws -> [CapturedPacket]?
    /// Stops the source (the device's streams, or the file). Safe to call twice.
    func close()
}

/// One RGB-D frame as the camera delivers it, before tracking: colour, depth in metres registered to the colour
/// camera (0 = no measurement), the colour camera's intrinsics, and the device time in seconds.
public struct CameraFrame: Sendable, Equatable {
    public var rgb: RGBImage
    public var depth: DepthImage
    public var intrinsics: Intrinsics
    public var timestamp: Double

    public init(rgb: RGBImage, depth: DepthImage, intrinsics: Intrinsics, timestamp: Double) {
        self.rgb = rgb; self.depth = depth; self.intrinsics = intrinsics; self.timestamp = timestamp
    }
}

/// A camera (or a replayed capture) delivering RGB-D frames.
public protocol RGBDCamera: AnyObject {
    /// Intrinsics of the frames delivered.
    var intrinsics: Intrinsics { get }
    /// The next complete frame; nil when the stream has ended (a replay's end). Blocking. Throws `USBError`
    /// (e.g. `.noDevice` when the camera is unplugged) or a `MapError` for unreadable input.
    func nextFrame() throws -> CameraFrame?
    /// Frames dropped as damaged so far, by reason (what the assemblers counted), for progress lines.
    var droppedFrames: Int { get }
    func close()
}
