import USBCamera

/// A packet source over a list, in batches of `batch` (a capture held in memory: tests, benchmarks).
public final class ListPacketSource: PacketSource {
    private var packets: [CapturedPacket]
    private var next = 0
    public let batch: Int
    public private(set) var closed = false

    public init(_ packets: [CapturedPacket], batch: Int = 50) { self.packets = packets; self.batch = batch }

    public func nextPackets() throws -> [CapturedPacket]? {
        guard !closed, next < packets.count else { return nil }
        let end = min(packets.count, next + batch)
        defer { next = end }
        return Array(packets[next..<end])
    }

    public func close() { closed = true }
}
