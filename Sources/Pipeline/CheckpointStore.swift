import Foundation
import IO
import MapCore

// Session checkpoints on disk (DESIGN.md "Session state"):
//
//   OUT/session/
//     CURRENT                      name of the newest complete checkpoint, e.g. "checkpoint-000012\n"
//     checkpoint-000011/           the previous one, kept until the next one is complete
//     checkpoint-000012/
//       manifest.json              format, version, sequence, created, metadata, per blob: name, file, bytes, crc32
//       geometry.bin, state.json   one file per blob, named as the blob
//
// A checkpoint is written under ".checkpoint-NNNNNN.tmp-PID", manifest last, then renamed into place, so a
// "checkpoint-*" directory is complete unless the disk itself lost data; that case is caught by the sizes and CRCs.
// One process writes a session directory at a time.

/// In-memory checkpoint: JSON-able metadata plus named binary blobs.
public struct Checkpoint: Sendable, Equatable {
    /// Monotonically increasing checkpoint number.
    public var sequence: Int
    /// Small facts (config JSON, source position, ...), stored in the manifest.
    public var metadata: [String: String]
    /// Name -> bytes; names are [A-Za-z0-9._-]+.
    public var blobs: [String: [UInt8]]

    public init(sequence: Int, metadata: [String: String] = [:], blobs: [String: [UInt8]] = [:]) {
        self.sequence = sequence; self.metadata = metadata; self.blobs = blobs
    }

    /// A reader over blob `name` whose errors name "checkpoint-NNNNNN/<name>"; throws when there is no such blob.
    public func reader(_ name: String) throws(MapError) -> BlobReader {
        let label = CheckpointStore.directoryName(sequence) + "/" + name
        guard let bytes = blobs[name] else {
            throw MapError(.missingFile, "the checkpoint has no blob '\(name)' (it has: "
                               + "\(blobs.keys.sorted().joined(separator: ", ")))", file: label,
                           hint: "the checkpoint was written by a build with a different state layout; start a new session")
        }
        return BlobReader(bytes, name: label)
    }

    /// True when `name` can be a blob name: only [A-Za-z0-9._-], not "." or "..", not "manifest.json". The blob is
    /// stored in a file of that name.
    public static func isValidBlobName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && name != CheckpointStore.manifestName && name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }
}

/// Versioned, checksummed session checkpoints in one directory; see the layout above.
public struct CheckpointStore: Sendable {
    /// E.g. OUT/session.
    public let directory: URL
    /// Complete checkpoints kept (>= 2: the previous stays until the new one is complete). Smaller values become 2.
    public let keep: Int

    static let manifestName = "manifest.json"
    static let currentName = "CURRENT"
    static let formatName = "pano-session-checkpoint"
    static let prefix = "checkpoint-"

    public init(directory: URL, keep: Int = 2) {
        self.directory = directory
        self.keep = max(2, keep)
    }

    /// "checkpoint-NNNNNN" (at least six digits).
    public static func directoryName(_ sequence: Int) -> String {
        let s = String(sequence)
        return prefix + String(repeating: "0", count: max(0, 6 - s.count)) + s
    }

    /// The sequence number of a "checkpoint-NNNNNN" directory name, nil for any other name.
    static func sequence(ofName name: String) -> Int? {
        guard name.hasPrefix(prefix) else { return nil }
        let digits = name.dropFirst(prefix.count)
        guard digits.count >= 6, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(digits)
    }

    // MARK: - Save

    /// Writes checkpoint-NNNNNN (6+ digits of `sequence`) under a temporary name (".checkpoint-NNNNNN.tmp-PID"), every
    /// blob file + manifest.json (format version, sequence, created time, metadata, per blob: file name, byte count,
    /// crc32 hex), then renames the directory into place, then atomically rewrites `CURRENT` (the name of the newest
    /// complete checkpoint), then deletes checkpoints beyond `keep` and stale temporary directories. Returns the final
    /// directory. Saving a sequence that already exists replaces that checkpoint.
    @discardableResult public func save(_ checkpoint: Checkpoint) throws -> URL {
        guard checkpoint.sequence >= 0 else {
            throw MapError(.badArgument, "checkpoint sequence \(checkpoint.sequence) is negative", file: directory.path,
                           hint: "number checkpoints 0, 1, 2, ...")
        }
        if let bad = checkpoint.blobs.keys.sorted().first(where: { !Checkpoint.isValidBlobName($0) }) {
            throw MapError(.badArgument, "blob name '\(bad)' is not [A-Za-z0-9._-]+ (or is '.', '..', 'manifest.json')",
                           file: directory.path, hint: "rename the blob")
        }
        try Files.createDirectory(directory)
        let name = Self.directoryName(checkpoint.sequence)
        let pid = ProcessInfo.processInfo.processIdentifier
        let tmp = directory.appendingPathComponent(".\(name).tmp-\(pid)", isDirectory: true)
        let final = directory.appendingPathComponent(name, isDirectory: true)
        let fm = FileManager.default

        if Files.exists(tmp) { try? fm.removeItem(at: tmp) }
        try Files.createDirectory(tmp)
        do {
            var entries: [ManifestBlob] = []
            for blobName in checkpoint.blobs.keys.sorted() {
                let bytes = checkpoint.blobs[blobName]!
                try write(bytes, to: tmp.appendingPathComponent(blobName))
                entries.append(ManifestBlob(name: blobName, file: blobName, bytes: bytes.count,
                                            crc32: Checksum.hex(Checksum.crc32(bytes))))
            }
            let manifest = Manifest(format: Self.formatName, version: PipelineFormat.version,
                                    sequence: checkpoint.sequence, created: Date().ISO8601Format(),
                                    metadata: checkpoint.metadata, blobs: entries)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let json: Data
            do { json = try enc.encode(manifest) } catch {
                throw MapError(.badArgument, "cannot encode the checkpoint manifest: \(error)", file: tmp.path)
            }
            try write([UInt8](json), to: tmp.appendingPathComponent(Self.manifestName))

            // Replacing an existing checkpoint of the same number: move it aside first (rename cannot replace a
            // non-empty directory), then delete it once the new one is in place.
            var aside: URL?
            if Files.exists(final) {
                let old = directory.appendingPathComponent(".\(name).old-\(pid)", isDirectory: true)
                try? fm.removeItem(at: old)
                try rename(final, to: old)
                aside = old
            }
            try rename(tmp, to: final)
            if let aside { try? fm.removeItem(at: aside) }
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }

        try Files.writeAtomically(name + "\n", to: directory.appendingPathComponent(Self.currentName))
        prune(keeping: checkpoint.sequence)
        return final
    }

    /// Deletes all but the newest `keep` checkpoints (always keeping `current`, the one just written) and leftovers of
    /// interrupted saves. Failures are ignored: the new checkpoint is already complete.
    private func prune(keeping current: Int) {
        let fm = FileManager.default
        let others = checkpoints().filter { Self.sequence(ofName: $0.lastPathComponent) != current }
        for url in others.dropLast(keep - 1) { try? fm.removeItem(at: url) }
        for entry in Files.list(directory) where Self.isLeftover(entry) {
            try? fm.removeItem(at: directory.appendingPathComponent(entry))
        }
    }

    /// Names of temporary entries left by interrupted saves: ".checkpoint-*.tmp-*", ".checkpoint-*.old-*",
    /// ".CURRENT.tmp-*".
    static func isLeftover(_ name: String) -> Bool {
        (name.hasPrefix("." + prefix) && (name.contains(".tmp-") || name.contains(".old-")))
            || name.hasPrefix("." + currentName + ".tmp-")
    }

    private func write(_ bytes: [UInt8], to url: URL) throws(MapError) {
        do { try Data(bytes).write(to: url) } catch {
            throw MapError(.ioFailure, "cannot write checkpoint file: \(error.localizedDescription)", file: url.path,
                           hint: "check permissions and free space")
        }
    }

    private func rename(_ from: URL, to: URL) throws(MapError) {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw MapError(.ioFailure, "cannot rename \(from.lastPathComponent) to \(to.lastPathComponent) "
                               + "(errno \(errno))", file: to.path, hint: "check permissions and free space")
        }
    }

    // MARK: - Load

    /// Reads and verifies one checkpoint directory: manifest present and parseable, version supported, every blob
    /// present with the right size and crc32, no extra required file missing. Throws MapError (.missingFile,
    /// .badFormat, .unsupported, .truncatedFile, .sizeMismatch, .corruptFile, .ioFailure) naming the file and saying what
    /// to do.
    public func load(_ dir: URL) throws -> Checkpoint { try verify(dir) }

    private static let damagedHint = "this checkpoint is damaged; resume picks the previous one — or delete this directory"

    func verify(_ dir: URL) throws(MapError) -> Checkpoint {
        let manifestURL = dir.appendingPathComponent(Self.manifestName)
        guard Files.exists(dir) else {
            throw MapError(.missingFile, "checkpoint directory does not exist", file: dir.path,
                           hint: "give an existing checkpoint directory, or resume from the newest one")
        }
        let json = try read(manifestURL, what: "checkpoint manifest")

        let probe: VersionProbe
        do { probe = try JSONDecoder().decode(VersionProbe.self, from: Data(json)) } catch {
            throw MapError(.badFormat, "manifest.json is not valid JSON with 'format' and 'version' (\(error))",
                           file: manifestURL.path, hint: Self.damagedHint)
        }
        guard probe.format == Self.formatName else {
            throw MapError(.badFormat, "format is '\(probe.format)', expected '\(Self.formatName)'",
                           file: manifestURL.path, hint: "this is not a pano session checkpoint")
        }
        guard probe.version <= PipelineFormat.version else {
            throw MapError(.unsupported, "checkpoint format version \(probe.version) is newer than this build "
                               + "(\(PipelineFormat.version))", file: manifestURL.path,
                           hint: "resume with the newer pano that wrote it, or start a new session")
        }
        guard probe.version >= 1 else {
            throw MapError(.unsupported, "checkpoint format version \(probe.version) is not supported "
                               + "(this build reads 1...\(PipelineFormat.version))", file: manifestURL.path,
                           hint: "start a new session")
        }
        let m: Manifest
        do { m = try JSONDecoder().decode(Manifest.self, from: Data(json)) } catch {
            throw MapError(.badFormat, "manifest.json does not have the documented shape (\(error))",
                           file: manifestURL.path, hint: Self.damagedHint)
        }
        if let named = Self.sequence(ofName: dir.lastPathComponent), named != m.sequence {
            throw MapError(.badFormat, "manifest says sequence \(m.sequence) but the directory is named "
                               + "\(dir.lastPathComponent)", file: manifestURL.path,
                           hint: "rename the directory back to \(Self.directoryName(m.sequence)) or delete it")
        }

        var blobs: [String: [UInt8]] = [:]
        for entry in m.blobs {
            // The file must be a plain name inside this directory (no path, not the manifest).
            guard Checkpoint.isValidBlobName(entry.name), Checkpoint.isValidBlobName(entry.file), entry.bytes >= 0 else {
                throw MapError(.badFormat, "manifest entry for blob '\(entry.name)' (file '\(entry.file)', "
                                   + "\(entry.bytes) bytes) is invalid", file: manifestURL.path, hint: Self.damagedHint)
            }
            guard blobs[entry.name] == nil else {
                throw MapError(.badFormat, "blob '\(entry.name)' is listed twice", file: manifestURL.path,
                               hint: Self.damagedHint)
            }
            let url = dir.appendingPathComponent(entry.file)
            let bytes = try read(url, what: "checkpoint blob '\(entry.name)'")
            guard bytes.count == entry.bytes else {
                throw MapError(bytes.count < entry.bytes ? .truncatedFile : .sizeMismatch,
                               "blob '\(entry.name)' has \(bytes.count) bytes, the manifest says \(entry.bytes)",
                               file: url.path, hint: Self.damagedHint)
            }
            let crc = Checksum.hex(Checksum.crc32(bytes))
            guard crc == entry.crc32.lowercased() else {
                throw MapError(.corruptFile, "blob '\(entry.name)' has crc32 \(crc), the manifest says \(entry.crc32)",
                               file: url.path, hint: Self.damagedHint)
            }
            blobs[entry.name] = bytes
        }
        return Checkpoint(sequence: m.sequence, metadata: m.metadata, blobs: blobs)
    }

    private func read(_ url: URL, what: String) throws(MapError) -> [UInt8] {
        do { return try Files.read(url, what: what) } catch let e as MapError {
            var e = e
            if e.kind == .missingFile { e.hint = Self.damagedHint }
            throw e
        } catch {
            throw MapError(.ioFailure, "cannot read \(what): \(error)", file: url.path, hint: "check permissions")
        }
    }

    /// The newest checkpoint that verifies: tries CURRENT's target first, then every other complete checkpoint-*
    /// directory by descending sequence. Returns it with the list of checkpoints that were refused (URL + error) so the
    /// caller can log them — including CURRENT itself when it names a missing directory or is unreadable. Throws
    /// MapError(.missingFile) when there is no checkpoint at all and a .badFormat one listing the refusals when every
    /// candidate is corrupt.
    public func loadLatest() throws -> (checkpoint: Checkpoint, directory: URL, refused: [(URL, MapError)]) {
        var refused: [(URL, MapError)] = []
        var candidates = checkpoints().reversed().map { $0 }

        let currentURL = directory.appendingPathComponent(Self.currentName)
        if Files.exists(currentURL) {
            let text = (try? Files.readText(currentURL, what: "CURRENT"))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if Self.sequence(ofName: text) == nil {
                refused.append((currentURL, MapError(.badFormat, "CURRENT does not name a checkpoint ('\(text.prefix(40))')",
                                                     file: currentURL.path, hint: "delete CURRENT")))
            } else if let i = candidates.firstIndex(where: { $0.lastPathComponent == text }) {
                candidates.insert(candidates.remove(at: i), at: 0)
            } else {
                let target = directory.appendingPathComponent(text, isDirectory: true)
                refused.append((target, MapError(.missingFile, "CURRENT names \(text), which does not exist",
                                                 file: target.path, hint: "falling back to the newest other checkpoint")))
            }
        }

        for dir in candidates {
            do { return (try verify(dir), dir, refused) } catch { refused.append((dir, error)) }
        }

        let details = refused.map { "\($0.0.lastPathComponent): \($0.1)" }.joined(separator: "; ")
        if candidates.isEmpty {
            throw MapError(.missingFile, "no session checkpoint to resume from"
                               + (refused.isEmpty ? "" : " (\(details))"), file: directory.path,
                           hint: "start a new session, or point at the session directory of an earlier run")
        }
        throw MapError(.badFormat, "none of the \(candidates.count) checkpoints verifies: \(details)",
                       file: directory.path,
                       hint: "the session cannot be resumed; start a new session (move this directory away first)")
    }

    /// Complete checkpoint directories, ascending by sequence.
    public func checkpoints() -> [URL] {
        Files.list(directory)
            .compactMap { name -> (Int, URL)? in
                guard let seq = Self.sequence(ofName: name) else { return nil }
                var isDir: ObjCBool = false
                let url = directory.appendingPathComponent(name, isDirectory: true)
                guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                    return nil
                }
                return (seq, url)
            }
            .sorted { $0.0 < $1.0 }
            .map(\.1)
    }
}

// MARK: - Manifest

private struct VersionProbe: Decodable {
    var format: String
    var version: Int
}

private struct Manifest: Codable {
    var format: String
    var version: Int
    var sequence: Int
    var created: String
    var metadata: [String: String]
    var blobs: [ManifestBlob]
}

private struct ManifestBlob: Codable {
    var name: String
    var file: String
    var bytes: Int
    var crc32: String
}
