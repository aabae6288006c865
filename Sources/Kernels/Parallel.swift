import Dispatch

/// Splitting work across the machine's cores (2 here). Chunks are fixed by (count, threads) alone, so results that
/// depend on the split (e.g. per-thread partial sums) are deterministic for a given thread count.
public enum Parallel {
    /// Default worker count for kernels: the active processor count, at most 8.
    public static let defaultThreads = max(1, min(8, ProcessInfo_activeProcessorCount()))

    /// Calls `body(chunkIndex, range)` for `threads` contiguous chunks of `0..<count`, concurrently when threads > 1.
    /// Chunk boundaries are multiples of `alignment` (except the last).
    public static func forEachChunk(count: Int, threads: Int, alignment: Int = 1,
                                    _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        let t = max(1, min(threads, count))
        if t == 1 { if count > 0 { body(0, 0..<count) }; return }
        let per = ((count + t - 1) / t + alignment - 1) / alignment * alignment
        withoutActuallyEscaping(body) { body in
            let work = ChunkBody(body: body)
            DispatchQueue.concurrentPerform(iterations: t) { c in
                let lo = min(count, c * per), hi = min(count, lo + per)
                if lo < hi { work.body(c, lo..<hi) }
            }
        }
    }

    /// Calls `body(i)` for i in 0..<count with at most `threads` running at once (for a few large independent jobs).
    public static func forEach(count: Int, threads: Int, _ body: (Int) -> Void) {
        forEachChunk(count: count, threads: threads) { _, range in for i in range { body(i) } }
    }
}

/// The chunk closure handed to `concurrentPerform`. @unchecked Sendable is safe here because `forEachChunk` does not
/// return before every chunk has finished (the closure never outlives the call), and callers give each chunk a
/// disjoint output range; that contract is the caller's, as for any parallel loop over raw buffers.
private struct ChunkBody: @unchecked Sendable {
    let body: (Int, Range<Int>) -> Void
}

#if canImport(Glibc)
import Glibc
private func ProcessInfo_activeProcessorCount() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
#else
import Foundation
private func ProcessInfo_activeProcessorCount() -> Int { ProcessInfo.processInfo.activeProcessorCount }
#endif
