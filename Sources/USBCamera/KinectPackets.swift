// Kinect v1 (045e:02ae) isochronous stream format: packet header, stream formats, 11-bit depth packing.
// Pure values and functions, no I/O. Facts (OpenKinect wiki, "USB Protocol Information" and "Protocol Documentation"):
// every iso packet starts with a 12-byte header
//   byte 0-1  magic 'R' 'B'
//   byte 2    unused (0)
//   byte 3    flag: stream id (depth 0x70, colour 0x80) | kind (start of frame 1, middle 2, end of frame 5)
//   byte 4    unknown (sniffed as 0x42)
//   byte 5    sequence number, 8 bits, +1 per packet of the stream
//   byte 6-7  big-endian packet length including the header (sniffed 0x06E0 = 1760 on full depth packets,
//             0x0478 = 1144 on the depth end-of-frame packet: 12 + the 1132 bytes left of a 422400-byte frame)
//   byte 8-11 timestamp, 32 bits, read little-endian (the device's byte order as seen on x86 hosts)
// followed by the payload: depth packets carry 1748 bytes (1760 - 12), colour packets 1908 (1920 - 12); the last
// packet of a frame carries what is left.

/// The two image streams of the camera. The raw value is the stream's id in the packet flag's high nibble.
public enum KinectStream: UInt8, Sendable, Hashable, CaseIterable {
    case depth = 0x70
    case colour = 0x80
}

/// Where a packet sits in its frame. The raw value is the flag's low nibble.
public enum KinectPacketKind: UInt8, Sendable, Hashable, CaseIterable {
    case startOfFrame = 0x01
    case middle = 0x02
    case endOfFrame = 0x05
}

/// Why a packet was skipped without being part of any frame decision.
public enum KinectPacketIssue: String, Error, Sendable, Hashable, CaseIterable {
    /// Fewer than 12 bytes: no header.
    case tooShort
    /// The first two bytes are not 'R' 'B'.
    case badMagic
    /// The flag names no known stream or packet kind.
    case unknownFlag
    /// A well-formed packet of the other stream (it came through the wrong assembler).
    case otherStream
    /// The header's length field disagrees with the bytes received (a truncated iso packet).
    case lengthMismatch
    /// A middle or end packet while no frame was open (waiting for the next start of frame).
    case outsideFrame
    /// The same end-of-frame packet again, after its frame was closed.
    case duplicateAfterFrame
}

/// Why a frame was dropped. A dropped frame is never emitted, not even partly.
public enum KinectDropReason: String, Sendable, Hashable, CaseIterable {
    /// A sequence number of the frame never arrived.
    case lostPacket
    /// A sequence number arrived twice.
    case duplicatePacket
    /// A sequence number arrived after a later one.
    case reorderedPacket
    /// A packet shorter than its place in the frame requires (or shorter than its length field says).
    case truncatedPacket
    /// A new start of frame arrived before this frame's end.
    case missingEndOfFrame
    /// An end of frame arrived with no start of frame before it.
    case missingStartOfFrame
    /// All sequence numbers arrived once and in order, but the bytes do not add up to the frame size.
    case wrongByteCount
}

/// The 12-byte header of one iso packet.
public struct KinectPacketHeader: Sendable, Equatable {
    public static let byteCount = 12
    public static let magic: (UInt8, UInt8) = (0x52, 0x42)  // 'R', 'B'

    public var stream: KinectStream
    public var kind: KinectPacketKind
    /// 8-bit, wraps 255 -> 0.
    public var sequence: UInt8
    /// Bytes of the whole packet, header included (big-endian on the wire).
    public var packetLength: UInt16
    /// Device clock (little-endian on the wire); every packet of a frame carries the frame's time.
    public var timestamp: UInt32
    /// Byte 4, meaning unknown; kept so a recorded stream can be re-encoded byte for byte.
    public var unknown4: UInt8

    public init(stream: KinectStream, kind: KinectPacketKind, sequence: UInt8, packetLength: UInt16,
                timestamp: UInt32, unknown4: UInt8 = 0) {
        self.stream = stream; self.kind = kind; self.sequence = sequence
        self.packetLength = packetLength; self.timestamp = timestamp; self.unknown4 = unknown4
    }

    public var flag: UInt8 { stream.rawValue | kind.rawValue }

    /// Parses the header at the start of `packet`, or says why it is not one.
    public static func parse(_ packet: [UInt8]) -> Result<KinectPacketHeader, KinectPacketIssue> {
        guard packet.count >= byteCount else { return .failure(.tooShort) }
        guard packet[0] == magic.0, packet[1] == magic.1 else { return .failure(.badMagic) }
        guard let stream = KinectStream(rawValue: packet[3] & 0xF0),
              let kind = KinectPacketKind(rawValue: packet[3] & 0x0F) else { return .failure(.unknownFlag) }
        let length = UInt16(packet[6]) << 8 | UInt16(packet[7])
        let time = UInt32(packet[8]) | UInt32(packet[9]) << 8 | UInt32(packet[10]) << 16 | UInt32(packet[11]) << 24
        return .success(KinectPacketHeader(stream: stream, kind: kind, sequence: packet[5], packetLength: length,
                                           timestamp: time, unknown4: packet[4]))
    }

    /// The 12 header bytes, in wire order.
    public func encoded() -> [UInt8] {
        [Self.magic.0, Self.magic.1, 0, flag, unknown4, sequence,
         UInt8(packetLength >> 8), UInt8(packetLength & 0xFF),
         UInt8(timestamp & 0xFF), UInt8((timestamp >> 8) & 0xFF), UInt8((timestamp >> 16) & 0xFF),
         UInt8(timestamp >> 24)]
    }
}

/// A bad stream-format parameter or a wrongly sized image, with what to do.
public struct KinectFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "Kinect stream format: \(message)" }
}

/// How one stream cuts a frame into packets. Defaults are the camera's 640x480 modes; tests may use smaller frames.
public struct KinectStreamFormat: Sendable, Equatable {
    public var stream: KinectStream
    /// Bytes of one complete frame.
    public var frameBytes: Int
    /// Payload bytes of every packet but the last of a frame (packet size minus the 12-byte header).
    public var payloadBytes: Int

    public init(stream: KinectStream, frameBytes: Int, payloadBytes: Int) {
        self.stream = stream; self.frameBytes = frameBytes; self.payloadBytes = payloadBytes
    }

    /// Depth, 640x480 11-bit packed: 422400 bytes in 1760-byte packets (1748 payload) -> 242 packets.
    public static let depth640x480 = KinectStreamFormat(stream: .depth, frameBytes: 640 * 480 * 11 / 8,
                                                        payloadBytes: 1760 - KinectPacketHeader.byteCount)
    /// Colour, 640x480 Bayer GRBG 8-bit: 307200 bytes in 1920-byte packets (1908 payload) -> 162 packets.
    public static let colour640x480 = KinectStreamFormat(stream: .colour, frameBytes: 640 * 480,
                                                         payloadBytes: 1920 - KinectPacketHeader.byteCount)

    public var packetsPerFrame: Int { (frameBytes + payloadBytes - 1) / payloadBytes }
    /// Payload of the end-of-frame packet.
    public var lastPayloadBytes: Int { frameBytes - (packetsPerFrame - 1) * payloadBytes }

    /// Payload bytes the packet at `offset` (0 = start of frame) must carry.
    public func payloadBytes(at offset: Int) -> Int {
        offset == packetsPerFrame - 1 ? lastPayloadBytes : payloadBytes
    }

    /// Throws unless a frame has 2...256 packets (the 8-bit sequence number can only vouch for 256) and a packet's
    /// length fits the 16-bit length field.
    public func validate() throws(KinectFormatError) {
        guard frameBytes > 0, payloadBytes > 0 else {
            throw KinectFormatError("frame (\(frameBytes)) and payload (\(payloadBytes)) byte counts must be positive")
        }
        guard payloadBytes + KinectPacketHeader.byteCount <= Int(UInt16.max) else {
            throw KinectFormatError("payload of \(payloadBytes) bytes does not fit the 16-bit packet length field")
        }
        guard (2...256).contains(packetsPerFrame) else {
            throw KinectFormatError("\(packetsPerFrame) packets per frame; the 8-bit sequence number allows 2...256 "
                                    + "(choose a payload size between frameBytes/256 and frameBytes/2)")
        }
    }
}

/// Depth 640x480 pixel count, the default for the 11-bit codec.
public let kinectDepthPixelCount = 640 * 480

/// Unpacks an 11-bit big-endian bit stream (pixel i = bits 11i ..< 11i+11, most significant bit first) into raw
/// disparity values 0...2047. `bytes` must hold exactly ceil(11 * pixelCount / 8) bytes.
public func unpack11Bit(_ bytes: [UInt8], pixelCount: Int = kinectDepthPixelCount) throws(KinectFormatError) -> [UInt16] {
    let needed = (pixelCount * 11 + 7) / 8
    guard pixelCount >= 0, bytes.count == needed else {
        throw KinectFormatError("11-bit depth of \(pixelCount) pixels needs \(needed) bytes, got \(bytes.count)")
    }
    var out = [UInt16](repeating: 0, count: pixelCount)
    bytes.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            var acc: UInt32 = 0
            var bits = 0
            var next = 0
            for i in 0..<pixelCount {
                while bits < 11 {
                    acc = (acc << 8) | UInt32(src[next]); next += 1; bits += 8
                }
                bits -= 11
                dst[i] = UInt16((acc >> UInt32(bits)) & 0x7FF)
                acc &= (1 << UInt32(bits)) - 1
            }
        }
    }
    return out
}

/// Packs raw disparity values (each 0...2047) into the 11-bit big-endian bit stream `unpack11Bit` reads; the last
/// byte is padded with zero bits.
public func pack11Bit(_ values: [UInt16]) throws(KinectFormatError) -> [UInt8] {
    if let bad = values.firstIndex(where: { $0 > 0x7FF }) {
        throw KinectFormatError("value \(values[bad]) at pixel \(bad) does not fit 11 bits (0...2047)")
    }
    var out = [UInt8](repeating: 0, count: (values.count * 11 + 7) / 8)
    values.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            var acc: UInt32 = 0
            var bits = 0
            var next = 0
            for v in src {
                acc = (acc << 11) | UInt32(v); bits += 11
                while bits >= 8 {
                    bits -= 8
                    dst[next] = UInt8((acc >> UInt32(bits)) & 0xFF); next += 1
                }
                acc &= (1 << UInt32(bits)) - 1
            }
            if bits > 0 { dst[next] = UInt8((acc << UInt32(8 - bits)) & 0xFF) }
        }
    }
    return out
}
