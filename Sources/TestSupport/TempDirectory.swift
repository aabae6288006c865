import Foundation

/// A fresh directory under the system temp dir, removed by `remove()` (tests call it in `defer`/tearDown).
public struct TempDirectory: Sendable {
    public let url: URL

    public init(_ label: String = "pano-test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }

    public func appending(_ path: String) -> URL { url.appendingPathComponent(path) }
}

/// Where the shared real RGB-D data lives: `../shared/data` beside the package root.
public enum SharedData {
    public static func root(filePath: String = #filePath) -> URL {
        // Sources/TestSupport/TempDirectory.swift -> package root
        URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data")
    }

    /// The URL of `name` under the shared data, or nil when it is absent.
    public static func folder(_ name: String) -> URL? {
        let u = root().appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: u.path) ? u : nil
    }
}
