/// A slow, obviously-correct PNG *writer* independent of libpng: stored (uncompressed) deflate blocks, no gAMA chunk,
/// filter 0 on every row. Tests use it as ground truth for the libpng funnel's decoder.
public enum ReferencePNG {
    /// colorType 0 = grey, 2 = RGB; bitDepth 8 or 16; `samples` are the raw sample values row-major.
    public static func encode(width: Int, height: Int, colorType: UInt8, bitDepth: UInt8, samples: [Int]) -> [UInt8] {
        let channels = colorType == 2 ? 3 : 1
        precondition(samples.count == width * height * channels)
        var raw: [UInt8] = []
        for y in 0..<height {
            raw.append(0)
            for i in 0..<(width * channels) {
                let v = samples[y * width * channels + i]
                if bitDepth == 16 { raw.append(UInt8(v >> 8)); raw.append(UInt8(v & 0xFF)) } else { raw.append(UInt8(v)) }
            }
        }
        var z: [UInt8] = [0x78, 0x01]
        var off = 0
        repeat {
            let n = min(65535, raw.count - off)
            z.append(off + n == raw.count ? 1 : 0)
            z += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += raw[off..<(off + n)]
            off += n
        } while off < raw.count
        z += be32(adler32(raw))
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [bitDepth, colorType, 0, 0, 0])
        out += chunk("IDAT", z)
        out += chunk("IEND", [])
        return out
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let t = Array(type.utf8)
        return be32(UInt32(data.count)) + t + data + be32(crc32(t + data))
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in bytes { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return (b << 16) | a
    }
}
