/// CRC-32 (IEEE 802.3 polynomial, reflected, as in zlib / PNG), for the integrity checks of snapshots and session
/// checkpoints. Table-driven, one byte at a time; `update` continues a running checksum.
public enum Checksum {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 of `bytes` (0 for no bytes).
    public static func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 { update(0, bytes) }

    /// The CRC-32 of the concatenation of the data `crc` was computed over and `bytes`.
    public static func update(_ crc: UInt32, _ bytes: some Sequence<UInt8>) -> UInt32 {
        var c = ~crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    /// The same for a byte array, over its buffer (the generic version is not specialised across modules, and
    /// checkpoints hash tens of MB).
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { b in
            table.withUnsafeBufferPointer { t in
                var c: UInt32 = 0xFFFF_FFFF
                for x in b { c = t[Int((c ^ UInt32(x)) & 0xFF)] ^ (c >> 8) }
                return ~c
            }
        }
    }

    /// Eight lowercase hex digits, the form written into manifests.
    public static func hex(_ crc: UInt32) -> String {
        let s = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
