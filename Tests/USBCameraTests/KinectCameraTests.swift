import Foundation
import MapCore
import TestSupport
@testable import USBCamera
import XCTest

final class KinectCameraTests: XCTestCase {
    private static let syntheticIntrinsics = Intrinsics(fx: 525, fy: 525, cx: 319.5, cy: 239.5, width: 640, height: 480)

    /// A 640x480 scene. Depth: the top half is four fronto-parallel planes (0.6, 1.0, 2.2, 4.5 m), the bottom half a
    /// plane sloping from 0.8 to 4.0 m across x, with a rectangle and a few single pixels of no depth. Colour: a
    /// smooth gradient in the top-left quarter, an 8-pixel checkerboard elsewhere; frame k shifts both textures.
    static func scene(frame k: Int = 0) -> CameraFrame {
        let w = 640, h = 480
        var depth = [Float](repeating: 0, count: w * h)
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        let planes: [Float] = [0.6, 1.0, 2.2, 4.5]
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x
                if y < 240 {
                    depth[i] = planes[x / 160]
                } else if !(100..<200).contains(x) || !(300..<380).contains(y) {
                    depth[i] = 0.8 + 3.2 * Float(x) / Float(w - 1)
                }
                if (x * 7 + y * 13) % 997 == 0 { depth[i] = 0 }
                if y < 240 && x < 320 {
                    rgb[i * 3] = UInt8(40 + x / 4)
                    rgb[i * 3 + 1] = UInt8(60 + y / 3)
                    rgb[i * 3 + 2] = UInt8(100 + (x + y) / 8 + k)
                } else {
                    let dark = ((x + k) / 8 + y / 8) % 2 == 0
                    rgb[i * 3] = dark ? UInt8(30 + x % 5) : 200
                    rgb[i * 3 + 1] = dark ? 180 : UInt8(50 + y % 7)
                    rgb[i * 3 + 2] = dark ? 220 : 90
                }
            }
        }
        return CameraFrame(rgb: RGBImage(width: w, height: h, channels: 3, data: rgb),
                           depth: DepthImage(width: w, height: h, data: depth),
                           intrinsics: syntheticIntrinsics, timestamp: Double(k) / 30)
    }

    /// Packets of `frames`, one list per frame.
    private func encode(_ frames: [CameraFrame], calibration: DeviceCalibration) throws -> [[CapturedPacket]] {
        var gen = try KinectCaptureGenerator(calibration: calibration, frameRate: 30)
        return try frames.map { try gen.packets(for: $0) }
    }

    private func decodeAll(_ packets: [CapturedPacket], calibration: DeviceCalibration, batch: Int = 50)
        throws -> (frames: [CameraFrame], camera: KinectCamera) {
        let camera = try KinectCamera(source: ListPacketSource(packets, batch: batch), calibration: calibration)
        var out: [CameraFrame] = []
        while let f = try camera.nextFrame() { out.append(f) }
        XCTAssertNil(try camera.nextFrame(), "stays ended")
        return (out, camera)
    }

    // MARK: - Round trips

    func testRoundTripUnderSyntheticCalibrationIsExactUpToQuantisation() throws {
        let cal = try DeviceCalibration.synthetic(intrinsics: Self.syntheticIntrinsics)
        let frames = [Self.scene(frame: 0), Self.scene(frame: 1)]
        let packets = try encode(frames, calibration: cal)
        XCTAssertEqual(packets[0].count, 242 + 162)
        XCTAssertEqual(packets[0].filter { $0.endpoint == 0x82 }.count, 242)
        XCTAssertEqual(packets[0].filter { $0.endpoint == 0x81 }.count, 162)
        XCTAssertEqual(packets[0].first?.hostNanoseconds, 0)
        XCTAssertEqual(packets[1].first?.hostNanoseconds, 33_333_333)

        let (decoded, camera) = try decodeAll(packets.flatMap { $0 }, calibration: cal)
        XCTAssertEqual(decoded.count, 2)
        XCTAssertEqual(camera.droppedFrames, 0)
        XCTAssertEqual(camera.stats.deliveredFrames, 2)
        XCTAssertEqual(camera.intrinsics, Self.syntheticIntrinsics)
        let model = cal.depthModel
        func z(_ r: Int) -> Double { Double(model.metres(raw: r)) }
        for (k, (f, truth)) in zip(decoded, frames).enumerated() {
            XCTAssertEqual(f.intrinsics, Self.syntheticIntrinsics)
            XCTAssertEqual(f.timestamp, Double(k) / 30, accuracy: 1e-6)
            XCTAssertEqual(f.depth.width, 640); XCTAssertEqual(f.depth.height, 480)
            var worst = 0.0, checked = 0
            for i in 0..<truth.depth.data.count {
                let gt = truth.depth.data[i], got = f.depth.data[i]
                if gt == 0 { XCTAssertEqual(got, 0, "pixel \(i) has no depth"); continue }
                let r = Int(KinectCaptureGenerator.rawDisparity(metres: gt, model: model))
                XCTAssertEqual(got, model.metres(raw: r), "pixel \(i)")
                // Half the quantisation step of the disparity model around this raw value.
                let steps = [r - 1, r + 1].filter { model.metres(raw: $0) > 0 }.map { abs(z($0) - z(r)) }
                let bound = steps.max()! / 2 + 1e-6
                let err = abs(Double(got) - Double(gt))
                XCTAssertLessThanOrEqual(err, bound, "pixel \(i): \(got) vs \(gt)")
                worst = max(worst, err / bound); checked += 1
            }
            XCTAssertGreaterThan(checked, 250_000)
            // Colour: exactly the demosaic of the mosaic, and close to the original where it is smooth.
            let expected = BayerDemosaic.demosaic(KinectCaptureGenerator.mosaic(truth.rgb), pattern: .grbg)
            XCTAssertTrue(f.rgb == expected, "colour differs from demosaic(mosaic(rgb))")
            var smoothWorst = 0
            for y in 2..<236 {
                for x in 2..<316 {
                    for c in 0..<3 {
                        smoothWorst = max(smoothWorst, abs(Int(f.rgb[x, y, c]) - Int(truth.rgb[x, y, c])))
                    }
                }
            }
            XCTAssertLessThanOrEqual(smoothWorst, 2)
            print("KinectCamera round trip frame \(k): depth error at most \(worst) of the half-step bound, "
                  + "smooth colour off by at most \(smoothWorst)")
        }
    }

    func testDefaultCalibrationRoundTripOnFrontoParallelPlane() throws {
        let cal = DeviceCalibration.kinectV1Default
        var frame = Self.scene()
        frame.depth = DepthImage(width: 640, height: 480, repeating: 1.2)
        frame.intrinsics = cal.colorCamera
        let (decoded, camera) = try decodeAll(try encode([frame], calibration: cal).flatMap { $0 }, calibration: cal)
        XCTAssertEqual(decoded.count, 1)
        XCTAssertEqual(camera.droppedFrames, 0)
        let f = try XCTUnwrap(decoded.first)
        XCTAssertEqual(f.intrinsics, cal.colorCamera)
        // Interior: the part of the colour image the depth camera sees (its field of view is narrower: about
        // x 36...597, y 51...478 at 1.2 m with this calibration).
        var valid = 0, total = 0, worst: Float = 0
        for y in 70..<460 {
            for x in 60..<580 {
                total += 1
                let d = f.depth[x, y]
                guard d > 0 else { continue }
                valid += 1
                worst = max(worst, abs(d - 1.2))
            }
        }
        print("KinectCamera default calibration: \(valid) of \(total) interior pixels valid, worst error \(worst * 1000) mm")
        XCTAssertGreaterThan(Double(valid) / Double(total), 0.999, "no holes inside the field of view")
        XCTAssertLessThan(worst, 0.004, "within a few mm (half a disparity step at 1.2 m is 2.2 mm)")
        XCTAssertTrue(f.rgb == BayerDemosaic.demosaic(KinectCaptureGenerator.mosaic(frame.rgb), pattern: .grbg))
    }

    func testDecodeSpeedAndSerialEqualsParallel() throws {
        let cal = DeviceCalibration.kinectV1Default
        var frames: [CameraFrame] = []
        for k in 0..<8 { var f = Self.scene(frame: k); f.intrinsics = cal.colorCamera; frames.append(f) }
        let packets = try encode(frames, calibration: cal).flatMap { $0 }
        var results: [[CameraFrame]] = []
        for parallel in [false, true] {
            var config = KinectCamera.Config()
            config.parallelDecode = parallel
            let camera = try KinectCamera(source: ListPacketSource(packets, batch: 64), calibration: cal, config: config)
            let start = Date()
            var out: [CameraFrame] = []
            while let f = try camera.nextFrame() { out.append(f) }
            let ms = Date().timeIntervalSince(start) * 1000 / Double(max(out.count, 1))
            XCTAssertEqual(out.count, 8)
            results.append(out)
            print("KinectCamera: \(String(format: "%.2f", ms)) ms per 640x480 frame (assemble, pair, unpack, register, "
                  + "demosaic; \(parallel ? "depth and colour on two threads" : "one thread")), budget 33 ms at 30 fps")
        }
        XCTAssertTrue(results[0] == results[1], "serial and parallel decoding agree bit for bit")
    }

    // MARK: - Damage

    private enum Damage: CaseIterable { case drop, duplicate, reorder }

    /// The packets with one middle packet of `stream` in frame `frame` dropped, duplicated or swapped with the next.
    private func damaged(_ perFrame: [[CapturedPacket]], frame: Int, stream: KinectStream, _ damage: Damage)
        -> [CapturedPacket] {
        var list = perFrame[frame]
        let idx = list.indices.filter { list[$0].bytes[3] & 0xF0 == stream.rawValue }
        let a = idx[10], b = idx[11]
        switch damage {
        case .drop: list.remove(at: a)
        case .duplicate: list.insert(list[a], at: a + 1)
        case .reorder: list.swapAt(a, b)
        }
        var out = perFrame
        out[frame] = list
        return out.flatMap { $0 }
    }

    func testDamagedFrameIsDroppedOthersBitIdentical() throws {
        let cal = try DeviceCalibration.synthetic(intrinsics: Self.syntheticIntrinsics)
        let perFrame = try encode((0..<6).map { Self.scene(frame: $0) }, calibration: cal)
        let (clean, cleanCamera) = try decodeAll(perFrame.flatMap { $0 }, calibration: cal)
        XCTAssertEqual(clean.count, 6)
        XCTAssertEqual(cleanCamera.droppedFrames, 0)
        XCTAssertNotEqual(clean[2], clean[3], "frames differ, so a mix-up would show")
        let expectedReason: [Damage: KinectDropReason] = [.drop: .lostPacket, .duplicate: .duplicatePacket,
                                                          .reorder: .reorderedPacket]
        for stream in KinectStream.allCases {
            for damage in Damage.allCases {
                let what = "\(damage) of a \(stream) packet"
                let (got, camera) = try decodeAll(damaged(perFrame, frame: 3, stream: stream, damage), calibration: cal)
                XCTAssertEqual(got.count, 5, what)
                XCTAssertTrue(got == [clean[0], clean[1], clean[2], clean[4], clean[5]], what)
                XCTAssertEqual(camera.droppedFrames, 1, what)
                let s = camera.stats
                let assembler = stream == .depth ? s.depth : s.colour
                XCTAssertEqual(assembler.dropped(expectedReason[damage]!), 1, what)
                XCTAssertEqual(assembler.totalDroppedFrames, 1, what)
                XCTAssertEqual(s.partnerDroppedFrames[stream == .depth ? .colour : .depth], 1, what)
                XCTAssertEqual(s.unpairedFrames.values.reduce(0, +), 0, what)
                XCTAssertEqual(s.deliveredFrames, 5, what)
                XCTAssertNotNil(s.framePeriodTicks, what)
            }
        }
    }

    func testStreamStoppingAndStartingMidFrameCountedOnce() throws {
        let cal = try DeviceCalibration.synthetic(intrinsics: Self.syntheticIntrinsics)
        let perFrame = try encode((0..<6).map { Self.scene(frame: $0) }, calibration: cal)
        let (clean, _) = try decodeAll(perFrame.flatMap { $0 }, calibration: cal)
        func isColour(_ p: CapturedPacket) -> Bool { p.endpoint == 0x81 }

        // Colour stops after frame 3: depth frames 4 and 5 have no partner.
        var stopped = perFrame
        stopped[4].removeAll(where: isColour); stopped[5].removeAll(where: isColour)
        let (a, camA) = try decodeAll(stopped.flatMap { $0 }, calibration: cal)
        XCTAssertTrue(a == Array(clean[0..<4]))
        XCTAssertEqual(camA.droppedFrames, 2)
        XCTAssertEqual(camA.stats.unpairedFrames[.depth], 2)

        // The recording starts in the middle of frame 0's colour: that frame is lost once.
        var late = perFrame
        var seen = 0
        late[0].removeAll { p in
            guard isColour(p) else { return false }
            seen += 1
            return seen <= 5
        }
        let (b, camB) = try decodeAll(late.flatMap { $0 }, calibration: cal)
        XCTAssertEqual(b.count, 5)
        XCTAssertEqual(b.map(\.rgb), clean[1...].map(\.rgb))
        XCTAssertEqual(b.map(\.depth), clean[1...].map(\.depth))
        XCTAssertEqual(camB.droppedFrames, 1)
        XCTAssertEqual(camB.stats.colour.dropped(.missingStartOfFrame), 1)

        // Without a measurable period (one frame each) equal timestamps still pair at the end of the stream.
        let (one, camOne) = try decodeAll(perFrame[0], calibration: cal)
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(camOne.droppedFrames, 0)
        XCTAssertNil(camOne.stats.framePeriodTicks)
    }

    /// Rewrites every packet's header: `sequence` gets the packet's index within its frame (a device numbering per
    /// frame), and colour timestamps are shifted by `colourOffset` ticks (sensors with a phase offset).
    private func rewriteHeaders(_ perFrame: [[CapturedPacket]], perFrameSequence: Bool, colourOffset: UInt32)
        -> [CapturedPacket] {
        perFrame.flatMap { frame -> [CapturedPacket] in
            var index: [KinectStream: UInt8] = [:]
            return frame.map { p in
                var p = p
                guard case .success(var h) = KinectPacketHeader.parse(p.bytes) else { return p }
                if perFrameSequence { h.sequence = index[h.stream, default: 0]; index[h.stream, default: 0] &+= 1 }
                if h.stream == .colour { h.timestamp &+= colourOffset }
                p.bytes.replaceSubrange(0..<KinectPacketHeader.byteCount, with: h.encoded())
                return p
            }
        }
    }

    func testPairingToleratesPhaseOffsetsAndPerFrameSequenceNumbers() throws {
        let cal = try DeviceCalibration.synthetic(intrinsics: Self.syntheticIntrinsics)
        let perFrame = try encode((0..<5).map { Self.scene(frame: $0) }, calibration: cal)
        let (clean, _) = try decodeAll(perFrame.flatMap { $0 }, calibration: cal)
        let period: UInt32 = 1_000_000   // KinectStreamGenerator's default ticks per frame
        for (perFrameSequence, offset) in [(false, period / 3), (true, 0), (true, UInt32.max - period / 3 + 1)] {
            let what = "per-frame sequence \(perFrameSequence), colour offset \(Int32(bitPattern: offset)) ticks"
            let (got, camera) = try decodeAll(rewriteHeaders(perFrame, perFrameSequence: perFrameSequence,
                                                             colourOffset: offset), calibration: cal)
            XCTAssertTrue(got == clean, what)
            XCTAssertEqual(camera.droppedFrames, 0, what)
            XCTAssertEqual(camera.stats.framePeriodTicks, period, what)
        }
        // Colour more than half a frame late pairs with the next depth frame: the first depth and last colour frame
        // are left over.
        let (late, camera) = try decodeAll(rewriteHeaders(perFrame, perFrameSequence: false,
                                                          colourOffset: period * 2 / 3), calibration: cal)
        XCTAssertEqual(late.count, 4)
        XCTAssertEqual(late.map(\.depth), clean[1...].map(\.depth))
        XCTAssertEqual(late.map(\.rgb), clean[..<4].map(\.rgb))
        XCTAssertEqual(camera.droppedFrames, 2)
        XCTAssertEqual(camera.stats.unpairedFrames, [.depth: 1, .colour: 1])
    }

    // MARK: - Replay

    func testReplayThroughCaptureFileEqualsInMemoryDecode() throws {
        let dir = try TempDirectory("pano-kinect-replay")
        defer { dir.remove() }
        let cal = DeviceCalibration.kinectV1Default
        let perFrame = try encode((0..<3).map { Self.scene(frame: $0) }, calibration: cal)
        let url = dir.appending("scene.panocap")
        let writer = try CaptureWriter(url: url, metadata: KinectCaptureGenerator.metadata(calibration: cal))
        for p in perFrame { try writer.append(p) }
        try writer.finish()

        let (memory, _) = try decodeAll(perFrame.flatMap { $0 }, calibration: cal)
        let reader = try CaptureReader(url: url)
        let camera = try KinectCamera(source: reader, calibration: reader.metadata.calibration)
        var replayed: [CameraFrame] = []
        while let f = try camera.nextFrame() { replayed.append(f) }
        XCTAssertEqual(replayed.count, 3)
        XCTAssertTrue(replayed == memory)
        XCTAssertEqual(camera.droppedFrames, 0)
        camera.close()
        XCTAssertNil(try reader.nextPackets(), "closing the camera closes the source")
    }

    // MARK: - Pieces

    func testFusedUnpackMatchesUnpack11BitAndTable() throws {
        let table = DeviceCalibration.kinectV1Default.depthModel.lookupTable(count: 2048)
        var state: UInt64 = 99
        for count in [640 * 480, 13, 8, 1] {
            let raw: [UInt16] = (0..<count).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return UInt16(state >> 53)
            }
            let packed = try pack11Bit(raw)
            XCTAssertEqual(try unpack11Bit(packed, pixelCount: count), raw)
            var out = [Float](repeating: -1, count: count)
            packed.withUnsafeBufferPointer { p in
                table.withUnsafeBufferPointer { t in
                    out.withUnsafeMutableBufferPointer { o in KinectCamera.unpackMetres(p, pixelCount: count, table: t, into: o) }
                }
            }
            XCTAssertEqual(out, raw.map { table[Int($0)] }, "\(count) pixels")
        }
    }

    func testInverseDepthModelAndInvalidValues() throws {
        let model = DeviceCalibration.kinectV1Default.depthModel
        for raw in [300, 541, 800, 1012, 1019] {
            let z = model.metres(raw: raw)
            XCTAssertGreaterThan(z, 0)
            XCTAssertEqual(Int(KinectCaptureGenerator.rawDisparity(metres: z, model: model)), raw)
        }
        for z: Float in [0, -1, .nan, .infinity, 0.1, 50] {
            XCTAssertEqual(KinectCaptureGenerator.rawDisparity(metres: z, model: model), 2047, "\(z)")
        }
        XCTAssertEqual(model.metres(raw: 2047), 0)
    }

    func testBadInputsAreTypedErrors() throws {
        XCTAssertThrowsError(try DeviceCalibration.synthetic(
            intrinsics: Intrinsics(fx: 525, fy: 525, cx: 160, cy: 120, width: 320, height: 240))) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badCalibration)
        }
        var cal = DeviceCalibration.kinectV1Default
        cal.colorCamera = cal.colorCamera.scaled(toWidth: 1280, height: 960)
        XCTAssertThrowsError(try KinectCamera(source: ListPacketSource([]), calibration: cal)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badCalibration)
        }
        XCTAssertThrowsError(try KinectCaptureGenerator(calibration: .kinectV1Default, frameRate: 0)) {
            XCTAssertEqual(($0 as? MapError)?.kind, .badArgument)
        }
        var gen = try KinectCaptureGenerator(calibration: .kinectV1Default)
        let small = CameraFrame(rgb: RGBImage(width: 320, height: 240, channels: 3, repeating: 0),
                                depth: DepthImage(width: 320, height: 240, repeating: 1),
                                intrinsics: Self.syntheticIntrinsics, timestamp: 0)
        XCTAssertThrowsError(try gen.packets(for: small)) { e in
            XCTAssertEqual((e as? MapError)?.kind, .sizeMismatch)
            XCTAssertEqual((e as? MapError)?.frame, 0)
        }
        // Garbage packets are skipped, not fatal.
        let junk = [CapturedPacket(endpoint: 0x82, hostNanoseconds: 0, bytes: []),
                    CapturedPacket(endpoint: 0x82, hostNanoseconds: 1, bytes: [0x52, 0x42, 0, 0x72, 0, 0, 0, 20] + [UInt8](repeating: 9, count: 12)),
                    CapturedPacket(endpoint: 0x81, hostNanoseconds: 2, bytes: [UInt8](repeating: 0xFF, count: 40))]
        let (frames, camera) = try decodeAll(junk, calibration: .kinectV1Default)
        XCTAssertTrue(frames.isEmpty)
        XCTAssertEqual(camera.stats.unroutablePackets.values.reduce(0, +), 2)
    }
}
