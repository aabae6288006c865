// The inverse of KinectFrameAssembler: images in, iso packets out, with the headers the camera writes. Used by tests
// and to turn a synthetic scene into a capture that replays exactly like the device.

/// Cuts frames into Kinect iso packets. Sequence numbers run on across frames, per stream (8 bits, wrapping);
/// every packet of a frame carries the frame's timestamp.
public struct KinectStreamGenerator: Sendable {
    public struct Config: Sendable, Equatable {
        public var depth: KinectStreamFormat = .depth640x480
        public var colour: KinectStreamFormat = .colour640x480
        /// Sequence number of the first packet of each stream.
        public var firstSequence: UInt8 = 0
        /// Device clock of the first frame, and its advance per frame of a stream (ticks; the device's clock rate
        /// is not documented, only the order matters to the assembler).
        public var firstTimestamp: UInt32 = 0
        public var ticksPerFrame: UInt32 = 1_000_000
        /// Byte 4 of every header (meaning unknown, sniffed as 0x42).
        public var unknown4: UInt8 = 0x42

        public init() {}
    }

    public let config: Config
    private var nextSequence: [KinectStream: UInt8]
    private var nextTimestamp: [KinectStream: UInt32]

    public init(config: Config = Config()) throws(KinectFormatError) {
        try config.depth.validate()
        try config.colour.validate()
        guard config.depth.stream == .depth, config.colour.stream == .colour else {
            throw KinectFormatError("generator needs a depth format and a colour format")
        }
        self.config = config
        nextSequence = [.depth: config.firstSequence, .colour: config.firstSequence]
        nextTimestamp = [.depth: config.firstTimestamp, .colour: config.firstTimestamp]
    }

    /// Packets of one depth frame from raw 11-bit disparities (0...2047), packed as the device packs them.
    public mutating func depthPackets(_ raw: [UInt16]) throws(KinectFormatError) -> [[UInt8]] {
        let packed = try pack11Bit(raw)
        return try packets(.depth, frame: packed)
    }

    /// Packets of one colour frame from a Bayer GRBG 8-bit image.
    public mutating func colourPackets(_ bayer: [UInt8]) throws(KinectFormatError) -> [[UInt8]] {
        try packets(.colour, frame: bayer)
    }

    /// Packets of one frame of `stream` from its raw bytes (as the assembler emits them).
    public mutating func packets(_ stream: KinectStream, frame: [UInt8]) throws(KinectFormatError) -> [[UInt8]] {
        let format = stream == .depth ? config.depth : config.colour
        guard frame.count == format.frameBytes else {
            throw KinectFormatError("a \(stream) frame has \(format.frameBytes) bytes, got \(frame.count)")
        }
        let n = format.packetsPerFrame
        let time = nextTimestamp[stream]!
        var seq = nextSequence[stream]!
        var out: [[UInt8]] = []
        out.reserveCapacity(n)
        var start = 0
        for i in 0..<n {
            let count = format.payloadBytes(at: i)
            let kind: KinectPacketKind = i == 0 ? .startOfFrame : (i == n - 1 ? .endOfFrame : .middle)
            let header = KinectPacketHeader(stream: stream, kind: kind, sequence: seq,
                                            packetLength: UInt16(KinectPacketHeader.byteCount + count),
                                            timestamp: time, unknown4: config.unknown4)
            var packet = header.encoded()
            packet.reserveCapacity(KinectPacketHeader.byteCount + count)
            packet.append(contentsOf: frame[start..<(start + count)])
            out.append(packet)
            start += count
            seq &+= 1
        }
        nextSequence[stream] = seq
        nextTimestamp[stream] = time &+ config.ticksPerFrame
        return out
    }

    /// Merges two packet lists the way two endpoints' transfers arrive: alternating runs of `run` packets.
    public static func interleave(_ a: [[UInt8]], _ b: [[UInt8]], run: Int = 8) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        let step = max(run, 1)
        while i < a.count || j < b.count {
            let ia = min(i + step, a.count); out.append(contentsOf: a[i..<ia]); i = ia
            let jb = min(j + step, b.count); out.append(contentsOf: b[j..<jb]); j = jb
        }
        return out
    }
}
