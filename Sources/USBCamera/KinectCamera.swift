import Dispatch
import MapCore

// Kinect v1 packets → RGB-D frames:
//
//   PacketSource ──▶ KinectPacketRouter (by the header's stream id) ──▶ raw depth / colour frames
//        ──▶ pairing by device timestamp ──▶ decode:
//              depth: 11-bit unpack → DepthModel lookup table → metres (depth camera) → DepthRegistration → colour camera
//              colour: Bayer GRBG → bilinear demosaic → RGB
//
// Pairing. Depth and colour are separate sensors; every packet carries its frame's device timestamp (a 32-bit
// counter, compared with wrap-around). Each depth frame is paired with the colour frame of the nearest timestamp if
// they are less than half a frame period apart. Below half a period at most one frame of the other stream can
// qualify, so "within tolerance" and "nearest" agree, and any phase offset between the two sensors' frame clocks
// still pairs every frame (the largest skew accepted is half a frame, 16.7 ms at 30 fps). The device clock's rate is
// not documented in the sources we found (the OpenKinect protocol notes describe the header's timestamp field but
// not its units), so the period is measured in device ticks instead of assumed: it is the timestamp difference of
// two consecutive frames of one stream, recognised by their start-of-frame sequence numbers differing by exactly one
// frame's packet count (or, failing that, the smallest timestamp step between successive frames of a stream).
// `Config.pairingToleranceTicks` overrides it. Until a period is known, frames wait (at the
// end of a stream without a period, only equal timestamps pair).
//
// Frames that find no partner are dropped. If the partner was itself dropped by its assembler (damaged), the loss is
// counted once (as that assembler's drop); otherwise it counts as unpaired. `droppedFrames` = frames dropped by the
// two assemblers + unpaired frames, so one damaged packet costs exactly one.
//
// Speed (release, 640x480, measured by KinectCameraTests on a busy 2-core machine): about 13 ms per frame on one
// thread, 9 ms with depth and colour decoded on two threads (`Config.parallelDecode`, the default), most of it the
// demosaic and the registration; assembly and the fused unpack + lookup are well under 1 ms.

/// Counters of a `KinectCamera`, by reason, for progress lines and diagnosis.
public struct KinectCameraStats: Sendable, Equatable {
    /// The depth stream's assembler: complete frames, frames dropped by reason, packets skipped by issue.
    public var depth = KinectAssemblerStats()
    /// The colour stream's assembler.
    public var colour = KinectAssemblerStats()
    /// Packets with no readable stream id.
    public var unroutablePackets: [KinectPacketIssue: Int] = [:]
    /// Complete frames dropped because no frame of the other stream was near enough in time (counted in
    /// `droppedFrames`).
    public var unpairedFrames: [KinectStream: Int] = [:]
    /// Complete frames dropped because their partner was dropped as damaged (already counted by the partner's
    /// assembler, so not counted again).
    public var partnerDroppedFrames: [KinectStream: Int] = [:]
    /// RGB-D frames delivered.
    public var deliveredFrames = 0
    /// Measured device-clock ticks per frame (nil until two consecutive frames of one stream arrived).
    public var framePeriodTicks: UInt32?

    /// All counters zero.
    public init() {}

    /// Frames lost: the assemblers' drops plus unpaired frames.
    public var droppedFrames: Int {
        depth.totalDroppedFrames + colour.totalDroppedFrames + unpairedFrames.values.reduce(0, +)
    }
}

/// A Kinect v1 as an `RGBDCamera`, over any packet source (the live device, or a capture replayed). Frames have the
/// colour camera's size and intrinsics, depth in metres registered to the colour camera (0 = no measurement), and
/// timestamps in seconds of host time: the arrival of the frame's first packet, relative to the first packet of the
/// source.
public final class KinectCamera: RGBDCamera {
    /// Stream formats and pairing; the defaults suit the camera's 640x480 modes.
    public struct Config: Sendable, Equatable {
        /// How the depth stream cuts frames into packets (must match the depth camera's size).
        public var depthFormat: KinectStreamFormat = .depth640x480
        /// How the colour stream cuts frames into packets (must match the colour camera's size).
        public var colourFormat: KinectStreamFormat = .colour640x480
        /// Largest device-timestamp difference (ticks) at which a depth and a colour frame pair; nil = automatic,
        /// strictly less than half the measured frame period.
        public var pairingToleranceTicks: UInt32?
        /// Complete frames one stream may hold while the other stream has none; beyond that the oldest is dropped
        /// as unpaired (a stream that stopped).
        public var maxQueuedFrames = 4
        /// Decode depth and colour of a frame on two threads at once (the results are identical either way).
        public var parallelDecode = true

        /// The defaults.
        public init() {}
    }

    /// The device's calibration (cameras, depth→colour transform, depth model).
    public let calibration: DeviceCalibration
    /// Stream formats and pairing settings.
    public let config: Config
    /// Where the packets come from (closed by `close()`).
    public let source: PacketSource
    /// The colour camera's intrinsics: frames are delivered in the colour camera.
    public var intrinsics: Intrinsics { calibration.colorCamera }

    private var router: KinectPacketRouter
    private let registration: DepthRegistration
    private let table: [Float]
    private var metresInDepthCamera: [Float]
    private var unpaired: [KinectStream: Int] = [:]
    private var partnerDropped: [KinectStream: Int] = [:]
    /// Assembler drops already used to excuse an unpaired partner, per stream.
    private var excused: [KinectStream: Int] = [:]
    private var delivered = 0
    private var periodTicks: UInt32?
    private var periodFromSequence = false

    private struct Entry {
        var frame: KinectRawFrame
        var hostNanoseconds: UInt64
    }
    private var depthQueue: [Entry] = []
    private var colourQueue: [Entry] = []
    private var ready: [(depth: Entry, colour: Entry)] = []
    private var lastComplete: [KinectStream: KinectRawFrame] = [:]
    private var frameStartHost: [KinectStream: UInt64] = [:]
    private var firstHost: UInt64?
    private var ended = false
    private var closed = false

    /// Throws `MapError(.badCalibration)` when the calibration's image sizes do not match the stream formats
    /// (640x480 unless configured otherwise).
    public init(source: PacketSource, calibration: DeviceCalibration, config: Config = Config()) throws {
        try Self.checkFormats(depth: config.depthFormat, colour: config.colourFormat, calibration: calibration)
        self.source = source
        self.calibration = calibration
        self.config = config
        do { router = try KinectPacketRouter(depth: config.depthFormat, colour: config.colourFormat) } catch {
            throw MapError(.badArgument, error.description, hint: "use the default 640x480 stream formats")
        }
        registration = DepthRegistration(calibration: calibration)
        table = calibration.depthModel.lookupTable(count: 2048)
        metresInDepthCamera = [Float](repeating: 0, count: calibration.depthCamera.width * calibration.depthCamera.height)
    }

    /// Checks that the stream formats carry images of the calibration's sizes.
    static func checkFormats(depth: KinectStreamFormat, colour: KinectStreamFormat,
                             calibration c: DeviceCalibration) throws {
        guard depth.stream == .depth, colour.stream == .colour else {
            throw MapError(.badArgument, "stream formats are swapped", hint: "give a depth and a colour format")
        }
        let depthPixels = c.depthCamera.width * c.depthCamera.height
        guard depth.frameBytes == (depthPixels * 11 + 7) / 8 else {
            throw MapError(.badCalibration, "the depth camera is \(c.depthCamera.width)x\(c.depthCamera.height) but "
                           + "the depth stream's frames hold \(depth.frameBytes) bytes of 11-bit samples",
                           hint: "the Kinect's depth stream is 640x480; calibrate the depth camera at that size")
        }
        guard colour.frameBytes == c.colorCamera.width * c.colorCamera.height else {
            throw MapError(.badCalibration, "the colour camera is \(c.colorCamera.width)x\(c.colorCamera.height) but "
                           + "the colour stream's frames hold \(colour.frameBytes) Bayer bytes",
                           hint: "the Kinect's colour stream is 640x480; calibrate the colour camera at that size")
        }
        do {
            try depth.validate()
            try colour.validate()
        } catch {
            throw MapError(.badArgument, error.description, hint: "use the default 640x480 stream formats")
        }
    }

    /// Counters by reason.
    public var stats: KinectCameraStats {
        var s = KinectCameraStats()
        s.depth = router.depth.stats
        s.colour = router.colour.stats
        s.unroutablePackets = router.unroutable
        s.unpairedFrames = unpaired
        s.partnerDroppedFrames = partnerDropped
        s.deliveredFrames = delivered
        s.framePeriodTicks = periodTicks
        return s
    }

    /// Frames lost so far: both assemblers' drops plus unpaired frames (see `stats` for reasons).
    public var droppedFrames: Int { stats.droppedFrames }

    /// The next paired and decoded frame; nil once the source has ended and every complete frame was delivered (or
    /// after `close()`). Rethrows the source's errors.
    public func nextFrame() throws -> CameraFrame? {
        while !closed {
            if !ready.isEmpty {
                let pair = ready.removeFirst()
                delivered += 1
                return decode(depth: pair.depth, colour: pair.colour)
            }
            if ended { return nil }
            guard let batch = try source.nextPackets() else {
                ended = true
                pairFrames(final: true)
                continue
            }
            for packet in batch { consume(packet) }
            pairFrames(final: false)
        }
        return nil
    }

    /// Closes the source; `nextFrame()` then returns nil. Safe to call twice.
    public func close() {
        guard !closed else { return }
        closed = true
        source.close()
    }

    // MARK: - Packets → raw frames

    private func consume(_ packet: CapturedPacket) {
        if firstHost == nil { firstHost = packet.hostNanoseconds }
        let bytes = packet.bytes
        // The router parses the header again; remembering where each frame started costs 12 bytes' work.
        if bytes.count >= KinectPacketHeader.byteCount, bytes[0] == KinectPacketHeader.magic.0,
           bytes[1] == KinectPacketHeader.magic.1, bytes[3] & 0x0F == KinectPacketKind.startOfFrame.rawValue,
           let stream = KinectStream(rawValue: bytes[3] & 0xF0) {
            frameStartHost[stream] = packet.hostNanoseconds
        }
        guard let frame = router.consume(bytes) else { return }
        let entry = Entry(frame: frame, hostNanoseconds: frameStartHost[frame.stream] ?? packet.hostNanoseconds)
        measurePeriod(frame)
        switch frame.stream {
        case .depth: depthQueue.append(entry)
        case .colour: colourQueue.append(entry)
        }
    }

    /// Two consecutive frames of a stream (start sequences one frame's packet count apart) give the frame period.
    /// Should a device number its packets differently, the smallest positive timestamp step between successive
    /// complete frames of a stream stands in until a sequence-checked period is seen (lost frames only make steps
    /// longer, so the smallest is one frame once two consecutive frames arrived).
    private func measurePeriod(_ frame: KinectRawFrame) {
        defer { lastComplete[frame.stream] = frame }
        guard let last = lastComplete[frame.stream] else { return }
        let ticks = frame.timestamp &- last.timestamp
        guard ticks > 0 && ticks < UInt32.max / 2 else { return }
        let format = frame.stream == .depth ? config.depthFormat : config.colourFormat
        if frame.firstSequence &- last.firstSequence == UInt8(truncatingIfNeeded: format.packetsPerFrame) {
            periodTicks = ticks
            periodFromSequence = true
        } else if !periodFromSequence {
            periodTicks = min(periodTicks ?? ticks, ticks)
        }
    }

    // MARK: - Pairing

    /// Signed device-time difference a − b, with wrap-around.
    private static func ticks(_ a: UInt32, minus b: UInt32) -> Int64 { Int64(Int32(bitPattern: a &- b)) }

    private func pairFrames(final: Bool) {
        while let d = depthQueue.first, let c = colourQueue.first {
            let diff = Self.ticks(d.frame.timestamp, minus: c.frame.timestamp)
            let paired: Bool
            if let tol = config.pairingToleranceTicks {
                paired = abs(diff) <= Int64(tol)
            } else if let period = periodTicks {
                paired = 2 * abs(diff) < Int64(period)
            } else if final {
                paired = diff == 0
            } else {
                break   // wait until the frame period is known
            }
            if paired {
                ready.append((d, c))
                depthQueue.removeFirst()
                colourQueue.removeFirst()
            } else if diff < 0 {
                depthQueue.removeFirst(); dropUnpaired(.depth)
            } else {
                colourQueue.removeFirst(); dropUnpaired(.colour)
            }
        }
        let limit = final ? 0 : max(1, config.maxQueuedFrames)
        while depthQueue.count > limit { depthQueue.removeFirst(); dropUnpaired(.depth) }
        while colourQueue.count > limit { colourQueue.removeFirst(); dropUnpaired(.colour) }
    }

    /// Counts a frame of `stream` left without a partner: excused if the other stream's assembler dropped a frame
    /// not yet used as an excuse (the partner was damaged), otherwise unpaired.
    private func dropUnpaired(_ stream: KinectStream) {
        let other: KinectStream = stream == .depth ? .colour : .depth
        let otherDrops = (other == .depth ? router.depth.stats : router.colour.stats).totalDroppedFrames
        if otherDrops > excused[other, default: 0] {
            excused[other, default: 0] += 1
            partnerDropped[stream, default: 0] += 1
        } else {
            unpaired[stream, default: 0] += 1
        }
    }

    // MARK: - Decoding

    private func decode(depth: Entry, colour: Entry) -> CameraFrame {
        let c = calibration.colorCamera
        var registered = [Float](repeating: 0, count: c.width * c.height)
        var rgb = [UInt8](repeating: 0, count: c.width * c.height * 3)
        let parallel = config.parallelDecode
        registered.withUnsafeMutableBufferPointer { registered in
            rgb.withUnsafeMutableBufferPointer { rgb in
                depth.frame.bytes.withUnsafeBufferPointer { packed in
                    colour.frame.bytes.withUnsafeBufferPointer { mosaic in
                        table.withUnsafeBufferPointer { lut in
                            metresInDepthCamera.withUnsafeMutableBufferPointer { metres in
                                let jobs = DecodeJobs(packed: packed, table: lut, metres: metres, registration: registration,
                                                      registered: registered, mosaic: mosaic, rgb: rgb)
                                if parallel {
                                    DispatchQueue.concurrentPerform(iterations: 2) { jobs.run($0) }
                                } else {
                                    jobs.run(0); jobs.run(1)
                                }
                            }
                        }
                    }
                }
            }
        }
        let start = min(depth.hostNanoseconds, colour.hostNanoseconds)
        let base = firstHost ?? start
        let seconds = start >= base ? Double(start - base) * 1e-9 : 0
        return CameraFrame(rgb: RGBImage(width: c.width, height: c.height, channels: 3, data: rgb),
                           depth: DepthImage(width: c.width, height: c.height, data: registered),
                           intrinsics: c, timestamp: seconds)
    }

    /// 11-bit packed depth → metres through the depth model's table, in one pass (8 samples per 11 bytes, most
    /// significant bit first; the same bit order as `unpack11Bit`). Plain buffers, no allocation.
    static func unpackMetres(_ packed: UnsafeBufferPointer<UInt8>, pixelCount: Int, table: UnsafeBufferPointer<Float>,
                             into out: UnsafeMutableBufferPointer<Float>) {
        precondition(packed.count == (pixelCount * 11 + 7) / 8 && out.count >= pixelCount && table.count >= 2048,
                     "unpackMetres: buffer sizes do not match \(pixelCount) pixels")
        let groups = pixelCount / 8
        for g in 0..<groups {
            let s = g * 11, o = g * 8
            let b0 = UInt16(packed[s]), b1 = UInt16(packed[s + 1]), b2 = UInt16(packed[s + 2])
            let b3 = UInt16(packed[s + 3]), b4 = UInt16(packed[s + 4]), b5 = UInt16(packed[s + 5])
            let b6 = UInt16(packed[s + 6]), b7 = UInt16(packed[s + 7]), b8 = UInt16(packed[s + 8])
            let b9 = UInt16(packed[s + 9]), b10 = UInt16(packed[s + 10])
            out[o] = table[Int(b0 << 3 | b1 >> 5)]
            out[o + 1] = table[Int((b1 & 0x1F) << 6 | b2 >> 2)]
            out[o + 2] = table[Int((b2 & 0x03) << 9 | b3 << 1 | b4 >> 7)]
            out[o + 3] = table[Int((b4 & 0x7F) << 4 | b5 >> 4)]
            out[o + 4] = table[Int((b5 & 0x0F) << 7 | b6 >> 1)]
            out[o + 5] = table[Int((b6 & 0x01) << 10 | b7 << 2 | b8 >> 6)]
            out[o + 6] = table[Int((b8 & 0x3F) << 5 | b9 >> 3)]
            out[o + 7] = table[Int((b9 & 0x07) << 8 | b10)]
        }
        // A remainder of fewer than 8 samples (other image sizes): bit by bit.
        var bit = groups * 88
        for i in (groups * 8)..<pixelCount {
            var v = 0
            for _ in 0..<11 {
                v = v << 1 | Int(packed[bit >> 3] >> (7 - UInt8(bit & 7)) & 1)
                bit += 1
            }
            out[i] = table[v]
        }
    }
}

/// The two independent halves of decoding one frame, over raw buffers: 0 = depth (unpack, look up, register),
/// 1 = colour (demosaic). @unchecked Sendable is safe because `decode` does not return before both have finished
/// (the buffers outlive the jobs) and the two write disjoint buffers.
private struct DecodeJobs: @unchecked Sendable {
    let packed: UnsafeBufferPointer<UInt8>
    let table: UnsafeBufferPointer<Float>
    let metres: UnsafeMutableBufferPointer<Float>
    let registration: DepthRegistration
    let registered: UnsafeMutableBufferPointer<Float>
    let mosaic: UnsafeBufferPointer<UInt8>
    let rgb: UnsafeMutableBufferPointer<UInt8>

    func run(_ job: Int) {
        if job == 0 {
            let d = registration.depthCamera
            KinectCamera.unpackMetres(packed, pixelCount: d.width * d.height, table: table, into: metres)
            registration.register(depth: UnsafeBufferPointer(metres), into: registered)
        } else {
            let c = registration.colorCamera
            BayerDemosaic.demosaic(mosaic, width: c.width, height: c.height, pattern: KinectCaptureGenerator.pattern,
                                   into: rgb)
        }
    }
}
