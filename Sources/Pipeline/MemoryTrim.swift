#if canImport(Glibc)
import Glibc
#endif

/// Returns freed heap memory to the system after the pipeline's large one-off phases (snapshots, checkpoints, the
/// final export). `pano` raises glibc's trim threshold so that frame-sized buffers stay in the heap at frame rate;
/// without an explicit trim, the transient peak of a snapshot would stay resident for the rest of the run.
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
