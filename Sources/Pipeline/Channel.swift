/// What an edge of the pipeline does when its buffer is full.
public enum OverflowPolicy: Sendable, Equatable {
    /// The sender waits until there is room (replay: never drop).
    case backPressure
    /// The oldest droppable element is dropped and counted (live / paced input: never fall behind the camera).
    /// When no buffered element may be dropped, the sender waits as with back-pressure.
    case dropOldest
}

/// A bounded FIFO between two pipeline stages, with a named overflow policy. `receive` returns nil once the channel
/// is finished and drained. One receiver at a time; any number of senders.
public actor BoundedChannel<Element: Sendable> {
    public nonisolated let name: String
    public nonisolated let capacity: Int
    public nonisolated let policy: OverflowPolicy
    let droppable: @Sendable (Element) -> Bool
    /// Slots before `head` were received and are nil, so a received element (a frame of a few MB) is released at
    /// once, not when the buffer is next compacted: the channel holds at most `capacity` elements.
    var buffer: [Element?] = []
    var head = 0
    var finished = false
    var receiver: CheckedContinuation<Element?, Never>?
    var senders: [CheckedContinuation<Void, Never>] = []
    /// Elements dropped by `dropOldest`.
    public private(set) var dropped = 0
    /// Elements accepted so far.
    public private(set) var sent = 0

    public init(name: String, capacity: Int, policy: OverflowPolicy,
                droppable: @escaping @Sendable (Element) -> Bool = { _ in true }) {
        precondition(capacity >= 1, "BoundedChannel \(name): capacity must be at least 1")
        self.name = name; self.capacity = capacity; self.policy = policy; self.droppable = droppable
    }

    var count: Int { buffer.count - head }

    /// Enqueues `element` (after waiting for room, or after dropping the oldest droppable element, by policy).
    /// Sending to a finished channel drops the element.
    public func send(_ element: Element) async {
        while count >= capacity && !finished {
            if policy == .dropOldest, let k = (head..<buffer.count).first(where: { droppable(buffer[$0]!) }) {
                buffer.remove(at: k)
                dropped += 1
                break
            }
            await withCheckedContinuation { senders.append($0) }
        }
        guard !finished else { return }
        sent += 1
        if let r = receiver {
            receiver = nil
            r.resume(returning: element)
            return
        }
        buffer.append(element)
    }

    /// The next element, waiting for one; nil when the channel is finished and empty.
    public func receive() async -> Element? {
        if count > 0 {
            let e = buffer[head]!
            buffer[head] = nil
            head += 1
            if head > 64 && head * 2 > buffer.count { buffer.removeFirst(head); head = 0 }
            if !senders.isEmpty { senders.removeFirst().resume() }
            return e
        }
        if finished { return nil }
        precondition(receiver == nil, "BoundedChannel \(name): one receiver at a time")
        return await withCheckedContinuation { receiver = $0 }
    }

    /// No more elements will be sent; the receiver drains what is buffered and then gets nil.
    public func finish() {
        finished = true
        receiver?.resume(returning: nil)
        receiver = nil
        for s in senders { s.resume() }
        senders.removeAll()
    }
}
