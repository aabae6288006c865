import ArgumentParser
import Foundation
import Kernels
import Logging
#if canImport(Glibc)
import Glibc
#endif

@main
struct Pano: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pano",
        abstract: "Online panoptic 3D mapping from posed RGB-D frames and 2D masks.",
        subcommands: [Demo.self, Run.self, Live.self, Record.self, Resume.self, Export.self, Render.self, Inspect.self, Convert.self, Train.self, Bench.self, Devices.self, Eval.self])

    static func main() {
        keepFrameSizedBlocksInHeap()
        // Kernels split batches across the cores themselves (deterministically); OpenBLAS threads on top of that
        // only spin against them, so GEMMs run single-threaded inside each chunk.
        BLAS.threads = 1
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = ProcessInfo.processInfo.environment["PANO_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .info
            return h
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Frames are a few MB each and are allocated and freed at frame rate. glibc maps such blocks fresh and unmaps them on
/// free (or trims the heap), so every frame paid ~700 page faults (13% of ingest time in `pano bench io`). Raising the
/// mmap and trim thresholds keeps them in the heap; memory stays bounded by the largest working set. `mallopt` is not
/// exported by Swift's Glibc module, hence the lookup.
func keepFrameSizedBlocksInHeap() {
    #if canImport(Glibc)
    typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return } // RTLD_DEFAULT
    let mallopt = unsafeBitCast(sym, to: MallOpt.self)
    _ = mallopt(-3, 64 << 20)  // M_MMAP_THRESHOLD
    _ = mallopt(-1, 256 << 20) // M_TRIM_THRESHOLD
    #endif
}
