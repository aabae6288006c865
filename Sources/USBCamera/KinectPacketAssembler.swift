// Frame assembly for one Kinect iso stream: packets in, complete frames out. Pure (no I/O), so the live device,
// a recorded stream and the generator all feed the same code.

/// One complete frame of one stream, exactly as the device sent it (11-bit packed depth or 8-bit Bayer GRBG).
public struct KinectRawFrame: Sendable, Equatable {
    public var stream: KinectStream
    /// Device clock of the frame (from its start-of-frame packet).
    public var timestamp: UInt32
    /// Sequence number of the start-of-frame packet.
    public var firstSequence: UInt8
    public var bytes: [UInt8]
}

/// What an assembler has seen so far.
public struct KinectAssemblerStats: Sendable, Equatable {
    public var completeFrames = 0
    public var droppedFrames: [KinectDropReason: Int] = [:]
    public var skippedPackets: [KinectPacketIssue: Int] = [:]

    public init() {}

    public var totalDroppedFrames: Int { droppedFrames.values.reduce(0, +) }
    public var totalSkippedPackets: Int { skippedPackets.values.reduce(0, +) }
    public func dropped(_ reason: KinectDropReason) -> Int { droppedFrames[reason, default: 0] }
    public func skipped(_ issue: KinectPacketIssue) -> Int { skippedPackets[issue, default: 0] }
}

/// 256 bits, one per sequence offset within a frame.
private struct SequenceSet {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private(set) var count = 0

    /// Inserts `i` (0...255); false if it was there already.
    mutating func insert(_ i: Int) -> Bool {
        let bit = UInt64(1) << UInt64(i & 63)
        var w: UInt64
        switch i >> 6 {
        case 0: w = words.0
        case 1: w = words.1
        case 2: w = words.2
        default: w = words.3
        }
        if w & bit != 0 { return false }
        w |= bit
        switch i >> 6 {
        case 0: words.0 = w
        case 1: words.1 = w
        case 2: words.2 = w
        default: words.3 = w
        }
        count += 1
        return true
    }
}

/// Assembles the frames of one stream. A frame starts at a start-of-frame packet, takes middle packets, and ends at
/// an end-of-frame packet; it is emitted only if every sequence number of the frame arrived exactly once, in order,
/// each with the payload its place requires. Anything else drops the whole frame (counted by reason) and the
/// assembler waits for the next start of frame. Malformed packets are counted and skipped.
public struct KinectFrameAssembler: Sendable {
    public let format: KinectStreamFormat
    /// Check the header's length field against the bytes received (the field's meaning is inferred from sniffed
    /// values, see KinectPackets.swift; switch off if a device disagrees).
    public var checksLengthField: Bool
    public private(set) var stats = KinectAssemblerStats()

    private struct OpenFrame {
        var firstSequence: UInt8
        var timestamp: UInt32
        var seen = SequenceSet()
        var lastOffset = 0
        var duplicate = false
        var reordered = false
        var gap = false
        var truncated = false
        var overlong = false
        var damaged: Bool { duplicate || reordered || gap || truncated || overlong }
    }

    private var open: OpenFrame?
    private var buffer: [UInt8] = []
    /// Sequence number of the last end-of-frame packet that closed a frame, to recognise its duplicate.
    private var lastEndSequence: UInt8?

    public init(format: KinectStreamFormat, checksLengthField: Bool = true) throws(KinectFormatError) {
        try format.validate()
        self.format = format
        self.checksLengthField = checksLengthField
        buffer.reserveCapacity(format.frameBytes)
    }

    /// Takes one iso packet (as received, header included); returns a frame when this packet completed one.
    public mutating func consume(_ packet: [UInt8]) -> KinectRawFrame? {
        let header: KinectPacketHeader
        switch KinectPacketHeader.parse(packet) {
        case .failure(let issue): skip(issue); return nil
        case .success(let h): header = h
        }
        guard header.stream == format.stream else { skip(.otherStream); return nil }
        let payloadCount = packet.count - KinectPacketHeader.byteCount
        let lengthAgrees = !checksLengthField || Int(header.packetLength) == packet.count
        if !lengthAgrees { skip(.lengthMismatch) }

        switch header.kind {
        case .startOfFrame:
            if open != nil { closeDamaged(defaultReason: .missingEndOfFrame) }
            lastEndSequence = nil
            open = OpenFrame(firstSequence: header.sequence, timestamp: header.timestamp)
            buffer.removeAll(keepingCapacity: true)
            _ = open!.seen.insert(0)
            take(offset: 0, payloadCount: payloadCount, lengthAgrees: lengthAgrees, packet: packet)
            return nil

        case .middle, .endOfFrame:
            guard var frame = open else {
                if header.kind == .endOfFrame {
                    if let last = lastEndSequence, last == header.sequence {
                        skip(.duplicateAfterFrame)
                    } else {
                        drop(.missingStartOfFrame)
                    }
                } else {
                    skip(.outsideFrame)
                }
                return nil
            }
            let offset = Int(header.sequence &- frame.firstSequence)
            if !frame.seen.insert(offset) {
                frame.duplicate = true
            } else if offset < frame.lastOffset {
                frame.reordered = true
            } else if offset != frame.lastOffset + 1 {
                frame.gap = true
            }
            frame.lastOffset = max(frame.lastOffset, offset)
            open = frame
            take(offset: offset, payloadCount: payloadCount, lengthAgrees: lengthAgrees, packet: packet)
            if header.kind == .endOfFrame { return close(endSequence: header.sequence) }
            return nil
        }
    }

    /// Forgets any open frame without counting it (e.g. when the stream is restarted on purpose).
    public mutating func reset() {
        open = nil
        lastEndSequence = nil
        buffer.removeAll(keepingCapacity: true)
    }

    // MARK: - Internals

    private mutating func take(offset: Int, payloadCount: Int, lengthAgrees: Bool, packet: [UInt8]) {
        guard var frame = open else { return }
        let expected = offset < format.packetsPerFrame ? format.payloadBytes(at: offset) : 0
        if !lengthAgrees || payloadCount < expected {
            frame.truncated = true
        } else if payloadCount > expected || offset >= format.packetsPerFrame {
            frame.overlong = true
        }
        if !frame.damaged {
            buffer.append(contentsOf: packet[KinectPacketHeader.byteCount...])
        }
        open = frame
    }

    private mutating func close(endSequence: UInt8) -> KinectRawFrame? {
        guard let frame = open else { return nil }
        open = nil
        lastEndSequence = endSequence
        if let reason = Self.reason(frame) { drop(reason); return nil }
        guard frame.seen.count == format.packetsPerFrame, frame.lastOffset == format.packetsPerFrame - 1 else {
            drop(frame.seen.count < format.packetsPerFrame ? .lostPacket : .wrongByteCount); return nil
        }
        guard buffer.count == format.frameBytes else { drop(.wrongByteCount); return nil }
        stats.completeFrames += 1
        let out = KinectRawFrame(stream: format.stream, timestamp: frame.timestamp,
                                 firstSequence: frame.firstSequence, bytes: buffer)
        buffer = []
        buffer.reserveCapacity(format.frameBytes)
        return out
    }

    private mutating func closeDamaged(defaultReason: KinectDropReason) {
        guard let frame = open else { return }
        open = nil
        drop(Self.reason(frame) ?? defaultReason)
    }

    /// The most telling damage of a frame, if any: a duplicate or a reordering also leaves gaps, so they come first.
    private static func reason(_ frame: OpenFrame) -> KinectDropReason? {
        if frame.duplicate { return .duplicatePacket }
        if frame.reordered { return .reorderedPacket }
        if frame.truncated { return .truncatedPacket }
        if frame.gap { return .lostPacket }
        if frame.overlong { return .wrongByteCount }
        return nil
    }

    private mutating func drop(_ reason: KinectDropReason) { stats.droppedFrames[reason, default: 0] += 1 }
    private mutating func skip(_ issue: KinectPacketIssue) { stats.skippedPackets[issue, default: 0] += 1 }
}

/// Both streams at once, for a single recorded packet sequence that interleaves them: routes each packet to its
/// stream's assembler by the header's stream id. (On the device each stream has its own endpoint and assembler.)
public struct KinectPacketRouter: Sendable {
    public private(set) var depth: KinectFrameAssembler
    public private(set) var colour: KinectFrameAssembler
    /// Packets with no readable stream id (too short, bad magic, unknown flag).
    public private(set) var unroutable: [KinectPacketIssue: Int] = [:]

    public init(depth: KinectStreamFormat = .depth640x480, colour: KinectStreamFormat = .colour640x480)
        throws(KinectFormatError) {
        guard depth.stream == .depth, colour.stream == .colour else {
            throw KinectFormatError("router needs a depth format and a colour format")
        }
        self.depth = try KinectFrameAssembler(format: depth)
        self.colour = try KinectFrameAssembler(format: colour)
    }

    public mutating func consume(_ packet: [UInt8]) -> KinectRawFrame? {
        switch KinectPacketHeader.parse(packet) {
        case .failure(let issue):
            unroutable[issue, default: 0] += 1
            return nil
        case .success(let h):
            switch h.stream {
            case .depth: return depth.consume(packet)
            case .colour: return colour.consume(packet)
            }
        }
    }
}
