import ArgumentParser
import Foundation
import Logging

@main
struct Pano: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pano",
        abstract: "Online panoptic 3D mapping from posed RGB-D frames and 2D masks.",
        subcommands: [Demo.self, Inspect.self, Convert.self, Bench.self, Devices.self])

    static func main() {
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
