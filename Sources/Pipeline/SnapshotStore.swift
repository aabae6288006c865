import Evaluation
import Foundation
import IO
import Kernels
import MapCore

/// What one snapshot holds, in memory.
public struct SnapshotContent: Sendable {
    /// Written as `mesh.ply` (vertex labels `semantic` / `instance` / `panoptic` if present).
    public var mesh: TriangleMesh
    /// Written as `points.ply` (faces ignored) when non-nil.
    public var points: TriangleMesh?
    /// Written as `legend.json` when non-nil; validated before writing.
    public var legend: PanopticLegend?
    /// Written as `renders/<name>.png`; already-encoded PNG bytes. Names use letters, digits, `_`, `-` and `.`.
    public var renders: [(name: String, png: [UInt8])]
    /// Frames ingested so far.
    public var framesCovered: Int
    public var keyframesCovered: Int
    /// Small facts for the manifest (losses, seconds since start, ...).
    public var extra: [String: String]

    public init(mesh: TriangleMesh, points: TriangleMesh? = nil, legend: PanopticLegend? = nil,
                renders: [(name: String, png: [UInt8])] = [], framesCovered: Int, keyframesCovered: Int,
                extra: [String: String] = [:]) {
        self.mesh = mesh; self.points = points; self.legend = legend; self.renders = renders
        self.framesCovered = framesCovered; self.keyframesCovered = keyframesCovered; self.extra = extra
    }
}

/// The `manifest.json` of a snapshot (JSON keys in snake_case, e.g. `format_version`, `frames_covered`).
public struct SnapshotManifest: Sendable, Codable, Equatable {
    public var formatVersion: Int
    public var sequence: Int
    /// Seconds since 1970.
    public var created: Double
    public var framesCovered: Int
    public var keyframesCovered: Int
    /// Relative path (`/`-separated) -> crc32 as 8 lowercase hex digits, for every file of the snapshot except
    /// `manifest.json`.
    public var files: [String: String]
    /// Relative path -> size in bytes.
    public var sizes: [String: Int]
    public var extra: [String: String]

    public init(formatVersion: Int, sequence: Int, created: Double, framesCovered: Int, keyframesCovered: Int,
                files: [String: String], sizes: [String: Int], extra: [String: String]) {
        self.formatVersion = formatVersion; self.sequence = sequence; self.created = created
        self.framesCovered = framesCovered; self.keyframesCovered = keyframesCovered
        self.files = files; self.sizes = sizes; self.extra = extra
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", sequence, created, framesCovered = "frames_covered"
        case keyframesCovered = "keyframes_covered", files, sizes, extra
    }
}

/// The snapshots of one run, `OUT/snapshots/snapshot-NNNNNN/`, and the `LATEST` file naming the newest complete one.
///
/// Readers (viewers, `pano inspect`, tests) call `latest()` then `validate(_:)`; they never see a partial snapshot,
/// because a snapshot is written under a dot-prefixed temporary name and renamed into place, and `LATEST` is replaced
/// atomically only after that. Pruned snapshots are first renamed to a dot-prefixed name, then deleted, so a reader
/// sees a snapshot whole or not at all. A reader that is more than `keep` snapshots behind may find the directory it
/// read from `LATEST` gone (a missing-file error); it should re-read `LATEST` and retry.
///
/// One writer per directory at a time (the pipeline's snapshot writer); any number of readers, in any process.
public struct SnapshotStore: Sendable {
    /// `OUT/snapshots`.
    public let directory: URL
    /// Complete snapshots kept (oldest deleted first); at least 1.
    public let keep: Int

    /// The name of the file naming the newest complete snapshot.
    public static let latestFileName = "LATEST"
    /// Snapshot format versions this build reads.
    public static let supportedVersions = 1...PipelineFormat.version

    /// `keep` below 1 is treated as 1.
    public init(directory: URL, keep: Int = 3) {
        self.directory = directory
        self.keep = max(1, keep)
    }

    // MARK: Names

    /// `snapshot-NNNNNN` (at least 6 digits).
    public static func directoryName(sequence: Int) -> String {
        let digits = String(sequence)
        return "snapshot-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The sequence of a canonical snapshot directory name, nil for anything else (temporary names included).
    public static func sequence(ofDirectoryName name: String) -> Int? {
        let prefix = "snapshot-"
        guard name.hasPrefix(prefix) else { return nil }
        let digits = name.dropFirst(prefix.count)
        guard digits.count >= 6, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits),
              directoryName(sequence: n) == name else { return nil }
        return n
    }

    /// Complete snapshots in the directory as (sequence, name), oldest first.
    public func snapshots() -> [(sequence: Int, name: String)] {
        Files.list(directory).compactMap { name in Self.sequence(ofDirectoryName: name).map { ($0, name) } }
            .sorted { $0.sequence < $1.sequence }
    }

    /// The sequence `write` accepts next: one above the newest snapshot present, 0 when there is none.
    public func nextSequence() -> Int { (snapshots().last?.sequence ?? -1) + 1 }

    // MARK: Writing

    /// Writes `snapshot-NNNNNN` into `.snapshot-NNNNNN.tmp-PID` (all files, `manifest.json` last), renames it into place,
    /// then atomically rewrites `LATEST` (text: the directory name), then deletes snapshots beyond `keep` (never the one
    /// `LATEST` names) and stale temporary directories. Returns the final directory and the seconds the write took.
    ///
    /// `sequence` must be above every snapshot already in the directory (see `nextSequence()`), so that `LATEST` always
    /// names the newest one and pruning removes the oldest.
    @discardableResult
    public func write(_ content: SnapshotContent, sequence: Int) throws -> (directory: URL, seconds: Double) {
        let clock = ContinuousClock(), start = clock.now
        let name = Self.directoryName(sequence: sequence)
        let final = directory.appendingPathComponent(name, isDirectory: true)
        guard sequence >= 0 else {
            throw MapError(.badArgument, "snapshot sequence \(sequence) is negative", file: directory.path,
                           hint: "number snapshots from 0 (SnapshotStore.nextSequence())")
        }
        if let newest = snapshots().last, newest.sequence >= sequence {
            throw MapError(.badArgument, "snapshot sequence \(sequence) is not above the existing \(newest.name)",
                           file: directory.path,
                           hint: "continue from \(newest.sequence + 1) (SnapshotStore.nextSequence()) or use an empty output directory")
        }
        let files = try plannedFiles(content)

        try Files.createDirectory(directory)
        let pid = ProcessInfo.processInfo.processIdentifier
        let tmp = directory.appendingPathComponent(".\(name).tmp-\(pid)", isDirectory: true)
        try? FileManager.default.removeItem(at: tmp)  // left by an earlier failed write of this process
        do {
            try Files.createDirectory(tmp)
            var manifest = SnapshotManifest(
                formatVersion: PipelineFormat.version, sequence: sequence, created: Date().timeIntervalSince1970,
                framesCovered: content.framesCovered, keyframesCovered: content.keyframesCovered,
                files: [:], sizes: [:], extra: content.extra)
            // One file's bytes at a time (a PLY of a large map is tens of MB).
            for (path, encode) in files {
                let bytes = try encode()
                try Self.writePlain(bytes, to: tmp.appendingPathComponent(path))
                manifest.files[path] = Checksum.hex(Checksum.crc32(bytes))
                manifest.sizes[path] = bytes.count
            }
            try Self.writePlain(try Self.encode(manifest), to: tmp.appendingPathComponent("manifest.json"))
            guard rename(tmp.path, final.path) == 0 else {
                let code = errno
                throw MapError(.ioFailure, "cannot rename the snapshot into place (errno \(code))", file: final.path,
                               hint: code == EEXIST || code == ENOTEMPTY
                                   ? "another writer uses this directory; give each run its own output directory"
                                   : "check permissions and free space")
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
        try Files.writeAtomically(name, to: directory.appendingPathComponent(Self.latestFileName))
        try prune()
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return (final, seconds)
    }

    /// Deletes complete snapshots beyond the newest `keep` (never the one `LATEST` names) and stale temporary entries
    /// (`.snapshot-*.tmp-*`, `.snapshot-*.del-*`, `.LATEST.tmp-*`) left by interrupted writes. `write` calls it.
    public func prune() throws {
        let protected = latestName()
        let all = snapshots()
        let pid = ProcessInfo.processInfo.processIdentifier
        for old in all.dropLast(keep) where old.name != protected {
            // Rename first, so a reader sees the snapshot whole or not at all, and an interrupted delete leaves only a
            // temporary entry that the next prune removes.
            let from = directory.appendingPathComponent(old.name, isDirectory: true)
            let doomed = directory.appendingPathComponent(".\(old.name).del-\(pid)", isDirectory: true)
            guard rename(from.path, doomed.path) == 0 else {
                throw MapError(.ioFailure, "cannot move an old snapshot aside for deletion (errno \(errno))",
                               file: from.path, hint: "check permissions")
            }
        }
        for entry in Files.list(directory) where Self.isTemporary(entry) {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(entry))
        }
    }

    private static func isTemporary(_ name: String) -> Bool {
        (name.hasPrefix(".snapshot-") && (name.contains(".tmp-") || name.contains(".del-")))
            || name.hasPrefix(".\(latestFileName).tmp-")
    }

    /// The snapshot's files by relative path, in writing order (manifest excluded), each with the function that
    /// encodes it. Everything is validated first, so a bad content fails before anything is written.
    private func plannedFiles(_ content: SnapshotContent) throws -> [(String, () throws -> [UInt8])] {
        var files: [(String, () throws -> [UInt8])] = []
        try content.mesh.validate(source: "snapshot mesh")
        files.append(("mesh.ply", { try PLY.encode(content.mesh.plyData) }))
        if let points = content.points {
            try points.validate(source: "snapshot points")
            files.append(("points.ply", {
                var ply = points.plyData
                ply.faces = []
                return try PLY.encode(ply)
            }))
        }
        if let legend = content.legend {
            try legend.validate(source: "snapshot legend")
            files.append(("legend.json", { [UInt8](try legend.jsonData()) }))
        }
        var seen = Set<String>()
        for r in content.renders {
            let allowed = r.name.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0))
            }
            guard !r.name.isEmpty, allowed, !r.name.hasPrefix(".") else {
                throw MapError(.badArgument, "render name '\(r.name)' is not a plain file name",
                               hint: "use letters, digits, '_', '-' and '.', not starting with '.'")
            }
            guard seen.insert(r.name).inserted else {
                throw MapError(.badArgument, "render '\(r.name)' appears twice", hint: "give each render its own name")
            }
            guard ImageFiles.kind(of: r.png) == .png else {
                throw MapError(.badArgument, "render '\(r.name)' is not PNG data",
                               hint: "encode it with PNGCodec.encodeRGB8 / encodeGray16")
            }
            files.append(("renders/\(r.name).png", { r.png }))
        }
        return files
    }

    /// Writes into the (private) temporary directory; atomicity comes from renaming the whole directory.
    private static func writePlain(_ bytes: [UInt8], to url: URL) throws {
        try Files.createDirectory(url.deletingLastPathComponent())
        do {
            // Written from the array's own storage (no copy into a Data).
            try bytes.withUnsafeBytes { raw in
                let data = raw.baseAddress.map {
                    Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0), count: raw.count, deallocator: .none)
                } ?? Data()
                try data.write(to: url)
            }
        } catch {
            throw MapError(.ioFailure, "cannot write: \(error.localizedDescription)", file: url.path,
                           hint: "check permissions and free space")
        }
    }

    private static func encode(_ manifest: SnapshotManifest) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { return [UInt8](try enc.encode(manifest)) } catch {
            throw MapError(.badArgument, "cannot encode the snapshot manifest: \(error)")
        }
    }

    // MARK: Reading

    /// The directory name `LATEST` holds, if it is a canonical snapshot name.
    private func latestName() -> String? {
        guard let bytes = try? Files.read(directory.appendingPathComponent(Self.latestFileName)) else { return nil }
        let name = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Self.sequence(ofDirectoryName: name) == nil ? nil : name
    }

    /// The snapshot `LATEST` names (nil when there is none yet).
    public func latest() -> URL? {
        guard let name = latestName() else { return nil }
        let url = directory.appendingPathComponent(name, isDirectory: true)
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue ? url : nil
    }

    /// `Files.read` with a hint for snapshots (a missing file usually means the snapshot was pruned meanwhile).
    private static func read(_ url: URL, what: String) throws -> [UInt8] {
        do { return try Files.read(url, what: what) } catch var e as MapError {
            e.hint = e.kind == .missingFile
                ? "if LATEST has moved on, the snapshot was pruned: re-read LATEST; otherwise the snapshot is damaged"
                : "check permissions and the disk"
            throw e
        }
    }

    /// Verifies a snapshot: manifest parses, version supported, every listed file present with the listed size and
    /// crc32, `mesh.ply` parses as PLY. Throws `MapError` naming the file and what is wrong.
    @discardableResult
    public static func validate(_ dir: URL) throws -> SnapshotManifest {
        let manifestURL = dir.appendingPathComponent("manifest.json")
        let manifestBytes = try read(manifestURL, what: "snapshot manifest")
        let manifest: SnapshotManifest
        do { manifest = try JSONDecoder().decode(SnapshotManifest.self, from: Data(manifestBytes)) } catch {
            throw MapError(.badFormat, "manifest.json does not parse: \(error)", file: manifestURL.path,
                           hint: "the snapshot is damaged; use another one")
        }
        guard supportedVersions.contains(manifest.formatVersion) else {
            throw MapError(.unsupported, "snapshot format_version \(manifest.formatVersion); this build reads "
                           + "\(supportedVersions.lowerBound)...\(supportedVersions.upperBound)",
                           file: manifestURL.path, hint: "open it with the version of pano that wrote it")
        }
        if let n = sequence(ofDirectoryName: dir.lastPathComponent), n != manifest.sequence {
            throw MapError(.corruptFile, "manifest says sequence \(manifest.sequence), directory is \(n)",
                           file: manifestURL.path, hint: "the snapshot is damaged; use another one")
        }
        guard Set(manifest.files.keys) == Set(manifest.sizes.keys) else {
            throw MapError(.badFormat, "manifest lists different files under 'files' and 'sizes'",
                           file: manifestURL.path, hint: "the snapshot is damaged; use another one")
        }
        guard manifest.files["mesh.ply"] != nil else {
            throw MapError(.badFormat, "manifest does not list mesh.ply", file: manifestURL.path,
                           hint: "the snapshot is damaged; use another one")
        }
        var meshBytes: [UInt8] = []
        for (path, crc) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard !path.hasPrefix("/"), path != "manifest.json",
                  parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
                throw MapError(.badFormat, "manifest lists the path '\(path)', which is not inside the snapshot",
                               file: manifestURL.path, hint: "the snapshot is damaged; use another one")
            }
            let url = dir.appendingPathComponent(path)
            let bytes = try read(url, what: "snapshot file \(path)")
            let size = manifest.sizes[path]!
            guard bytes.count == size else {
                throw MapError(bytes.count < size ? .truncatedFile : .corruptFile,
                               "\(path) has \(bytes.count) bytes, manifest says \(size)", file: url.path,
                               hint: "the snapshot is damaged; use another one")
            }
            let actual = Checksum.hex(Checksum.crc32(bytes))
            guard actual == crc.lowercased() else {
                throw MapError(.corruptFile, "\(path) has crc32 \(actual), manifest says \(crc)", file: url.path,
                               hint: "the snapshot is damaged; use another one")
            }
            if path == "mesh.ply" { meshBytes = bytes }
        }
        let meshURL = dir.appendingPathComponent("mesh.ply")
        _ = try TriangleMesh(ply: try PLY.decode(meshBytes, source: meshURL.path), source: meshURL.path)
        return manifest
    }
}
