// Kinect v1 camera (045e:02ae) control protocol: command packets, replies, register writes, and the register
// sequence that starts and stops the two image streams. Pure values and functions, no I/O.
//
// Facts (OpenKinect wiki, "Protocol Documentation", camera section, and "Init Analysis"; checked against the
// behaviour of the OpenKinect project's driver, which is the reference implementation of those pages):
//
// * A command is a vendor control transfer host-to-device: bmRequestType 0x40, bRequest 0, wValue 0, wIndex 0, whose
//   data is an 8-byte header followed by the command's payload:
//     byte 0-1  magic 'G' 'M' (0x47 0x4D)
//     byte 2-3  payload length in 16-bit words, little-endian
//     byte 4-5  command id, little-endian
//     byte 6-7  tag, little-endian (the host's sequence number; +1 per command)
// * The reply is read with a vendor control transfer device-to-host: bmRequestType 0xC0, bRequest 0, wValue 0,
//   wIndex 0, up to 0x200 bytes. The camera answers with 0 bytes until the reply is ready, so the host polls. A reply
//   has the same 8-byte layout with the magic 'R' 'B' (0x52 0x42) and echoes the command id and tag; its length
//   field counts the words after the header.
// * Command 0x03 writes registers: the payload is (address, value) pairs, each a little-endian UInt16. The camera
//   acknowledges with a one-word payload, 0x0000 when the write was accepted.
// * Registers (same sources): 0x0105 projector auto-cycle (0 = off), 0x06 depth stream (0 = stop, 2 = start),
//   0x12 depth format (3 = 11-bit packed, 2 = 10-bit packed), 0x13 depth resolution (1 = 640x480), 0x14 depth frame
//   rate (0x1E = 30 fps), 0x17 depth horizontal flip (0 = off), 0x05 colour stream (0 = stop, 1 = start),
//   0x0C colour format (0 = Bayer), 0x0D colour resolution (1 = 640x480), 0x0E colour frame rate (0x1E = 30 fps),
//   0x47 colour horizontal flip (0 = off).

/// A malformed or negative answer of the camera's control protocol, or a command that cannot be encoded.
public struct KinectCommandError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong.
    public enum Reason: Sendable, Equatable {
        /// The reply is shorter than its 8-byte header (or than its length field says).
        case shortReply
        /// The reply does not start with 'R' 'B'.
        case badMagic
        /// The reply answers another command id.
        case wrongCommand
        /// The reply carries another tag (an answer to an earlier command).
        case wrongTag
        /// The reply's length field disagrees with the bytes received.
        case lengthMismatch
        /// A register write was refused: its acknowledgement's status word is not 0.
        case nonZeroStatus
        /// The camera gave only empty replies for as many polls as allowed.
        case noReply
        /// The command itself cannot be encoded (odd payload length, or longer than the camera accepts).
        case invalidCommand
    }

    /// What was wrong.
    public var reason: Reason
    /// The details: which command, which bytes.
    public var message: String

    /// An error for `reason` with a human-readable `message`.
    public init(_ reason: Reason, _ message: String) {
        self.reason = reason; self.message = message
    }

    /// The message, with what to do.
    public var description: String {
        "Kinect control protocol: \(message) — replug the camera and retry; if it persists, the camera's firmware "
            + "speaks another dialect than the one documented in KinectCommands.swift"
    }
}

/// The camera's control protocol: encoding of command packets and validation of replies.
public enum KinectCommand {
    /// 'G' 'M': the first two bytes of every command packet.
    public static let commandMagic: (UInt8, UInt8) = (0x47, 0x4D)
    /// 'R' 'B': the first two bytes of every reply.
    public static let replyMagic: (UInt8, UInt8) = (0x52, 0x42)
    /// Bytes of the header of commands and replies.
    public static let headerBytes = 8
    /// The command id of a register write.
    public static let writeRegisterID: UInt16 = 0x03

    /// bmRequestType of the control transfer carrying a command (vendor, device, host-to-device).
    public static let commandRequestType: UInt8 = 0x40
    /// bmRequestType of the control transfer reading a reply (vendor, device, device-to-host).
    public static let replyRequestType: UInt8 = 0xC0
    /// bRequest of both transfers.
    public static let request: UInt8 = 0x00
    /// wValue of both transfers.
    public static let value: UInt16 = 0x0000
    /// wIndex of both transfers.
    public static let index: UInt16 = 0x0000
    /// The longest reply read (wLength of the reply transfer).
    public static let maxReplyBytes = 0x200
    /// The longest command packet the camera accepts, header included.
    public static let maxCommandBytes = 0x400

    /// The command packet for `command` with `tag` and `payload` (an even number of bytes, the words already in
    /// little-endian order).
    public static func encode(command: UInt16, tag: UInt16, payload: [UInt8]) throws(KinectCommandError) -> [UInt8] {
        guard payload.count % 2 == 0 else {
            throw KinectCommandError(.invalidCommand, "command 0x\(hex(command)) has an odd payload of "
                                     + "\(payload.count) bytes; payloads are 16-bit words")
        }
        guard payload.count + headerBytes <= maxCommandBytes else {
            throw KinectCommandError(.invalidCommand, "command 0x\(hex(command)) payload of \(payload.count) bytes "
                                     + "exceeds the \(maxCommandBytes - headerBytes) bytes the camera accepts")
        }
        return header(magic: commandMagic, words: UInt16(payload.count / 2), command: command, tag: tag) + payload
    }

    /// The command packet writing `pairs` (register address, value) with `tag`.
    public static func writeRegisters(_ pairs: [(address: UInt16, value: UInt16)], tag: UInt16)
        throws(KinectCommandError) -> [UInt8] {
        var payload: [UInt8] = []
        payload.reserveCapacity(pairs.count * 4)
        for p in pairs { payload += le16(p.address) + le16(p.value) }
        return try encode(command: writeRegisterID, tag: tag, payload: payload)
    }

    /// The command packet writing one register.
    public static func writeRegister(address: UInt16, value: UInt16, tag: UInt16) -> [UInt8] {
        // 4 payload bytes always encode.
        header(magic: commandMagic, words: 2, command: writeRegisterID, tag: tag) + le16(address) + le16(value)
    }

    /// A reply as the camera sends it (for tests and scripted transports).
    public static func reply(command: UInt16, tag: UInt16, payload: [UInt8] = [0, 0]) -> [UInt8] {
        header(magic: replyMagic, words: UInt16(truncatingIfNeeded: payload.count / 2), command: command, tag: tag)
            + payload
    }

    /// The command id and tag of a command packet, or nil when `packet` is not one.
    public static func commandAndTag(of packet: [UInt8]) -> (command: UInt16, tag: UInt16)? {
        guard packet.count >= headerBytes, packet[0] == commandMagic.0, packet[1] == commandMagic.1 else { return nil }
        return (u16(packet, 4), u16(packet, 6))
    }

    /// Validates `reply` as the answer to `command` with `tag` and returns its payload (the bytes after the header).
    public static func decodeReply(_ reply: [UInt8], command: UInt16, tag: UInt16) throws(KinectCommandError)
        -> [UInt8] {
        let what = "reply to command 0x\(hex(command)) tag 0x\(hex(tag))"
        guard reply.count >= headerBytes else {
            throw KinectCommandError(.shortReply, "\(what) has \(reply.count) bytes, fewer than the "
                                     + "\(headerBytes)-byte header")
        }
        guard reply[0] == replyMagic.0, reply[1] == replyMagic.1 else {
            throw KinectCommandError(.badMagic, "\(what) starts with 0x\(hex(reply[0])) 0x\(hex(reply[1])), "
                                     + "not 'R' 'B'")
        }
        let gotCommand = u16(reply, 4), gotTag = u16(reply, 6)
        guard gotCommand == command else {
            throw KinectCommandError(.wrongCommand, "\(what) answers command 0x\(hex(gotCommand))")
        }
        guard gotTag == tag else {
            throw KinectCommandError(.wrongTag, "\(what) carries tag 0x\(hex(gotTag)) (a stale answer?)")
        }
        let words = Int(u16(reply, 2))
        let payloadBytes = reply.count - headerBytes
        guard words * 2 <= payloadBytes else {
            throw KinectCommandError(.shortReply, "\(what) declares \(words) words but carries \(payloadBytes) bytes")
        }
        guard words * 2 == payloadBytes else {
            throw KinectCommandError(.lengthMismatch, "\(what) declares \(words) words but carries "
                                     + "\(payloadBytes) bytes")
        }
        return Array(reply[headerBytes...])
    }

    /// Validates `reply` as the acknowledgement of the register write sent with `tag`: a well-formed reply whose
    /// first payload word (the status) is 0.
    public static func checkWriteAck(_ reply: [UInt8], tag: UInt16) throws(KinectCommandError) {
        let payload = try decodeReply(reply, command: writeRegisterID, tag: tag)
        guard payload.count >= 2 else {
            throw KinectCommandError(.shortReply, "register write acknowledgement (tag 0x\(hex(tag))) carries no "
                                     + "status word")
        }
        let status = u16(payload, 0)
        guard status == 0 else {
            throw KinectCommandError(.nonZeroStatus, "register write (tag 0x\(hex(tag))) refused with status "
                                     + "0x\(hex(status))")
        }
    }

    // MARK: - Little-endian helpers

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    static func u16(_ bytes: [UInt8], _ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }

    static func header(magic: (UInt8, UInt8), words: UInt16, command: UInt16, tag: UInt16) -> [UInt8] {
        [magic.0, magic.1] + le16(words) + le16(command) + le16(tag)
    }

    static func hex<T: BinaryInteger>(_ v: T) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return s.count % 2 == 1 ? "0" + s : s
    }
}

/// One register write of a documented sequence.
public struct KinectRegisterWrite: Sendable, Equatable, CustomStringConvertible {
    /// Register address.
    public var address: UInt16
    /// Value written.
    public var value: UInt16
    /// What the write does (for logs and the table below).
    public var purpose: String

    /// A write of `value` to `address`.
    public init(_ address: UInt16, _ value: UInt16, _ purpose: String) {
        self.address = address; self.value = value; self.purpose = purpose
    }

    /// "reg 0xADDR <- 0xVALUE (purpose)".
    public var description: String {
        "reg 0x\(KinectCommand.hex(address)) <- 0x\(KinectCommand.hex(value)) (\(purpose))"
    }
}

/// The register sequences that start and stop the streams this project reads: depth 11-bit packed 640x480 at
/// 30 fps on endpoint 0x82 and colour Bayer 640x480 at 30 fps on endpoint 0x81 (the formats KinectPackets.swift
/// assembles). One table, in the order sent; sources in the header of this file.
public enum KinectRegisters {
    /// Configures and starts the depth stream. The stream is reset before it is configured; the format registers
    /// only take effect while it is stopped.
    public static let startDepth: [KinectRegisterWrite] = [
        KinectRegisterWrite(0x0105, 0x00, "projector auto-cycle off"),
        KinectRegisterWrite(0x0006, 0x00, "depth stream stop (reset)"),
        KinectRegisterWrite(0x0012, 0x03, "depth format: 11-bit packed"),
        KinectRegisterWrite(0x0013, 0x01, "depth resolution: 640x480"),
        KinectRegisterWrite(0x0014, 0x1E, "depth frame rate: 30 fps"),
        KinectRegisterWrite(0x0006, 0x02, "depth stream start"),
        KinectRegisterWrite(0x0017, 0x00, "depth horizontal flip off"),
    ]

    /// Configures and starts the colour stream.
    public static let startColour: [KinectRegisterWrite] = [
        KinectRegisterWrite(0x000C, 0x00, "colour format: Bayer"),
        KinectRegisterWrite(0x000D, 0x01, "colour resolution: 640x480"),
        KinectRegisterWrite(0x000E, 0x1E, "colour frame rate: 30 fps"),
        KinectRegisterWrite(0x0005, 0x01, "colour stream start"),
        KinectRegisterWrite(0x0047, 0x00, "colour horizontal flip off"),
    ]

    /// Stops both streams.
    public static let stop: [KinectRegisterWrite] = [
        KinectRegisterWrite(0x0006, 0x00, "depth stream stop"),
        KinectRegisterWrite(0x0005, 0x00, "colour stream stop"),
    ]

    /// Everything `KinectDevice.start()` writes, in order: depth, then colour.
    public static var start: [KinectRegisterWrite] { startDepth + startColour }
}
