import MapCore

// Little-endian binary coding of session-state blobs (DESIGN.md "Session state").
//
// Layout: scalars are fixed-width little-endian (Int as Int64, Bool as one byte 0/1, Float/Double as their IEEE bit
// patterns, so NaN payloads and infinities survive bit-exactly). Strings are an Int64 byte count followed by UTF-8.
// Arrays are an Int64 element count followed by the elements back to back. No alignment padding, no type tags: the
// reader must ask for exactly what the writer wrote, in order, and `finish()` checks nothing is left over.

/// Fixed-width values stored by copying their bytes (after a byte swap on big-endian hosts).
private protocol BlobScalar: BitwiseCopyable {
    var byteSwapped: Self { get }
}

extension Int32: BlobScalar {}
extension Int: BlobScalar {}  // only used where Int is 64 bits wide
extension Int64: BlobScalar {}
extension UInt64: BlobScalar {}
extension Float: BlobScalar {
    fileprivate var byteSwapped: Float { Float(bitPattern: bitPattern.byteSwapped) }
}
extension Double: BlobScalar {
    fileprivate var byteSwapped: Double { Double(bitPattern: bitPattern.byteSwapped) }
}

/// Appends values to a byte buffer; see the layout above. Never fails.
public struct BlobWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// A writer whose buffer has room for `capacity` bytes (avoids regrowth when the size is known).
    public init(capacity: Int) { bytes.reserveCapacity(max(0, capacity)) }

    public mutating func write(_ v: Int) { scalar(Int64(v)) }
    public mutating func write(_ v: UInt64) { scalar(v) }
    public mutating func write(_ v: Float) { scalar(v) }
    public mutating func write(_ v: Double) { scalar(v) }
    public mutating func write(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// UTF-8 bytes, prefixed by their count.
    public mutating func write(_ v: String) {
        var s = v
        s.withUTF8 { utf8 in
            scalar(Int64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func write(_ a: [Float]) { array(a) }
    public mutating func write(_ a: [Double]) { array(a) }
    public mutating func write(_ a: [Int32]) { array(a) }
    public mutating func write(_ a: [UInt64]) { array(a) }

    /// Each element as Int64.
    public mutating func write(_ a: [Int]) {
        if MemoryLayout<Int>.size == 8 {
            array(a)
        } else {
            array(a.map { Int64($0) })
        }
    }

    public mutating func write(_ a: [UInt8]) {
        scalar(Int64(a.count))
        bytes.append(contentsOf: a)
    }

    private mutating func scalar<T: BlobScalar>(_ v: T) {
        #if _endian(big)
        let v = v.byteSwapped
        #endif
        withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) }
    }

    private mutating func array<T: BlobScalar>(_ a: [T]) {
        scalar(Int64(a.count))
        #if _endian(big)
        for x in a { scalar(x) }
        #else
        a.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #endif
    }
}

/// Reads what a `BlobWriter` wrote. Every read is bounds-checked: truncation, an impossible count or an invalid value
/// throws `MapError(.badFormat)` naming the blob and the byte offset; nothing traps on bad input.
public struct BlobReader {
    public let name: String
    private let bytes: [UInt8]
    /// Byte offset of the next read.
    public private(set) var offset = 0

    /// `name` appears in errors (e.g. "checkpoint-000012/geometry.bin").
    public init(_ bytes: [UInt8], name: String) {
        self.bytes = bytes
        self.name = name
    }

    public var isAtEnd: Bool { offset == bytes.count }
    public var remaining: Int { bytes.count - offset }

    public mutating func readInt() throws(MapError) -> Int {
        let at = offset
        let v: Int64 = try scalar("an Int")
        guard let i = Int(exactly: v) else { throw corrupt("Int value \(v) does not fit this platform's Int", at: at) }
        return i
    }

    public mutating func readUInt64() throws(MapError) -> UInt64 { try scalar("a UInt64") }
    public mutating func readFloat() throws(MapError) -> Float { try scalar("a Float") }
    public mutating func readDouble() throws(MapError) -> Double { try scalar("a Double") }

    public mutating func readBool() throws(MapError) -> Bool {
        try need(1, for: "a Bool")
        let b = bytes[offset]
        guard b <= 1 else { throw corrupt("Bool byte is \(b), expected 0 or 1", at: offset) }
        offset += 1
        return b == 1
    }

    public mutating func readString() throws(MapError) -> String {
        let at = offset
        let n = try count(elementSize: 1, what: "a String")
        let utf8 = bytes[offset..<offset + n]
        let s = String(decoding: utf8, as: UTF8.self)
        // String(decoding:) repairs invalid UTF-8; a repaired string differs from the stored bytes.
        guard s.utf8.elementsEqual(utf8) else { throw corrupt("String of \(n) bytes is not valid UTF-8", at: at) }
        offset += n
        return s
    }

    public mutating func readFloats() throws(MapError) -> [Float] { try array("Float") }
    public mutating func readDoubles() throws(MapError) -> [Double] { try array("Double") }
    public mutating func readInt32s() throws(MapError) -> [Int32] { try array("Int32") }
    public mutating func readUInt64s() throws(MapError) -> [UInt64] { try array("UInt64") }

    public mutating func readInts() throws(MapError) -> [Int] {
        if MemoryLayout<Int>.size == 8 { return try array("Int") }
        let at = offset
        let wide: [Int64] = try array("Int")
        var out = [Int]()
        out.reserveCapacity(wide.count)
        for v in wide {
            guard let i = Int(exactly: v) else { throw corrupt("Int value \(v) does not fit this platform's Int", at: at) }
            out.append(i)
        }
        return out
    }

    public mutating func readBytes() throws(MapError) -> [UInt8] {
        let n = try count(elementSize: 1, what: "a byte array")
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// Throws unless every byte was consumed (trailing garbage = corrupt).
    public func finish() throws(MapError) {
        guard isAtEnd else {
            throw corrupt("\(remaining) unread bytes after the last field (blob is \(bytes.count) bytes)", at: offset)
        }
    }

    // MARK: - Internals

    private func corrupt(_ message: String, at: Int) -> MapError {
        MapError(.badFormat, "\(message) at byte offset \(at)", file: name,
                 hint: "the state blob is damaged or was written by a different build; resume from an older checkpoint "
                     + "or start a new session")
    }

    private func need(_ n: Int, for what: String) throws(MapError) {
        guard n <= remaining else {
            throw corrupt("truncated: \(what) needs \(n) bytes, only \(remaining) left", at: offset)
        }
    }

    private mutating func scalar<T: BlobScalar>(_ what: String) throws(MapError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, for: what)
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        offset += size
        #if _endian(big)
        return v.byteSwapped
        #else
        return v
        #endif
    }

    /// Reads an element count and checks that `count * elementSize` bytes follow; leaves `offset` at the first element.
    private mutating func count(elementSize: Int, what: String) throws(MapError) -> Int {
        let at = offset
        let n: Int64 = try scalar("the element count of \(what)")
        guard n >= 0 else { throw corrupt("negative count \(n) for \(what)", at: at) }
        guard n <= Int64(remaining / elementSize) else {
            throw corrupt("count \(n) for \(what) needs \(n) × \(elementSize) bytes, only \(remaining) left", at: at)
        }
        return Int(n)
    }

    private mutating func array<T: BlobScalar>(_ element: String) throws(MapError) -> [T] {
        let size = MemoryLayout<T>.size
        let n = try count(elementSize: size, what: "a [\(element)]")
        let start = offset
        let out = [T](unsafeUninitializedCapacity: n) { buf, initialized in
            bytes.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(buf).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: src[start..<start + n * size]))
            }
            #if _endian(big)
            for i in 0..<n { buf[i] = buf[i].byteSwapped }
            #endif
            initialized = n
        }
        offset += n * size
        return out
    }
}
