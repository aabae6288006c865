import ArgumentParser
import Foundation
import IO
import Logging
import MapCore
#if canImport(Glibc)
import Glibc
#endif

let log = Logger(label: "pano")

/// Runs `body`; a `MapError` is reported as one clear line (what, where, what to do) and exits with status 2.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as MapError {
        log.error("\(e)")
        throw ExitCode(2)
    }
}

/// A progress line on stderr: rewritten in place on a terminal, printed every ~10% otherwise (every 10 s when the
/// total is unknown, i.e. 0).
final class Progress {
    let label: String
    let total: Int
    let start = Date()
    private var lastPrintedTenth = -1
    private var lastPrinted = Date.distantPast
    private let interactive = isatty(STDERR_FILENO) != 0

    init(_ label: String, total: Int) { self.label = label; self.total = total }

    func update(_ done: Int, extra: String = "") {
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let tail = extra.isEmpty ? "" : "  " + extra
        let line = total > 0 ? String(format: "%@ %d/%d  %.1f/s  ETA %.0fs%@", label, done, total, rate, eta, tail)
            : String(format: "%@ %d  %.1f/s%@", label, done, rate, tail)
        if interactive {
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K" + (done == total ? "\n" : "")).utf8))
        } else if total > 0 {
            let tenth = done * 10 / total
            if tenth != lastPrintedTenth { lastPrintedTenth = tenth; FileHandle.standardError.write(Data((line + "\n").utf8)) }
        } else if Date().timeIntervalSince(lastPrinted) >= 10 {
            lastPrinted = Date()
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
