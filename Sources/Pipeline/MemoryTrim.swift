#if canImport(Glibc)
import Glibc
#endif

/// Returns freed heap memory to the system after the pipeline's large one-off phases (the final snapshot and the
/// snapshot builder's release, the final export). `pano` raises glibc's trim threshold so that frame-sized buffers stay
/// in the heap at frame rate; without an explicit trim, a one-off peak would stay resident for the rest of the run.
/// Recurring work (snapshots, checkpoints while mapping) is not followed by a trim: the next one needs the same
/// working memory, so keeping it makes RSS flat at a bound (keyframe budget + one snapshot's transients) instead of a
/// saw-tooth that faults the same pages in again every few seconds.
/// `malloc_trim` is looked up at run time (Swift's Glibc module does not export it); elsewhere this does nothing.
enum MemoryTrim {
    static func releaseFreedMemory() {
        #if canImport(Glibc)
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return } // RTLD_DEFAULT
        _ = unsafeBitCast(sym, to: MallocTrim.self)(0)
        #endif
    }
}
