import Foundation
import IO
import MapCore
import Pipeline
import TestSupport
import XCTest

/// The `pano` process is killed with SIGKILL at seeded random moments and resumed each time; the final map must be
/// identical to an uninterrupted run's (bit for bit: every layer is checkpointed and the run is a pure function of
/// its frames and settings).
final class CrashResumeTests: XCTestCase {
    /// The `pano` executable built beside the test bundle (the bundle is the products directory itself or a file
    /// in it, depending on the platform).
    var pano: URL {
        let b = Bundle(for: Self.self).bundleURL
        let candidates = [b, b.deletingLastPathComponent(),
                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
            .map { $0.appendingPathComponent("pano") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    let runArguments = ["--synthetic-frames", "16", "--synthetic-width", "96", "--geometry-steps", "15",
                        "--panoptic-steps", "8", "--final-steps", "90", "--snapshot-every", "3", "--checkpoint-every", "2"]

    /// Starts pano with `arguments`; kills it with SIGKILL after `killAfter` seconds unless it ended before.
    /// Returns the exit status, or nil when it was killed.
    func launch(_ arguments: [String], killAfter: Double?) throws -> Int32? {
        let p = Process()
        p.executableURL = pano
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        if let killAfter {
            let deadline = Date().addingTimeInterval(killAfter)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                return nil
            }
        }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testKilledRunsResumeToTheSameMap() throws {
        guard FileManager.default.isExecutableFile(atPath: pano.path) else {
            XCTFail("no pano executable at \(pano.path): build the package (swift build) before the tests")
            return
        }
        let a = try TempDirectory("pano-whole"), b = try TempDirectory("pano-killed")
        defer { a.remove(); b.remove() }
        let clock = Date()
        XCTAssertEqual(try launch(["run", "synthetic", "--out", a.url.path] + runArguments, killAfter: nil), 0)
        let wholeSeconds = Date().timeIntervalSince(clock)

        var rng = SeededRNG(seed: 42)
        var kills = 0
        var status = try launch(["run", "synthetic", "--out", b.url.path] + runArguments,
                                killAfter: rng.uniform(0.4, 0.8) * wholeSeconds)
        if status == nil { kills += 1 }
        var attempts = 0
        while status != 0 && attempts < 8 {
            attempts += 1
            let killAfter: Double? = attempts <= 2 ? rng.uniform(0.2, 0.5) * wholeSeconds : nil
            let hasCheckpoint = Files.exists(b.appending("session/CURRENT"))
            status = try launch(hasCheckpoint ? ["resume", b.url.path]
                                              : ["run", "synthetic", "--out", b.url.path] + runArguments,
                                killAfter: killAfter)
            if status == nil { kills += 1 }
        }
        XCTAssertEqual(status, 0, "the resumed run finishes")
        XCTAssertGreaterThanOrEqual(kills, 1, "the run was killed at least once (whole run \(wholeSeconds) s)")
        let meshA = try Files.read(a.appending("map/mesh.ply")), meshB = try Files.read(b.appending("map/mesh.ply"))
        XCTAssertEqual(meshA.count, meshB.count)
        XCTAssertTrue(meshA == meshB, "the killed-and-resumed map differs from the uninterrupted one")
        XCTAssertTrue(try Files.read(a.appending("map/legend.json")) == Files.read(b.appending("map/legend.json")),
                      "legends differ")
        print("CrashResumeTests: \(kills) kills, whole run \(String(format: "%.1f", wholeSeconds)) s, identical map")
    }
}
