import Foundation
import MapCore

/// Reader of a ScanNet scene exported by ScanNet's SensReader (plus the unzipped 2D label archives):
///
///     color/N.jpg                     colour (1296x968), resized bilinearly to the depth resolution
///     depth/N.png                     uint16 millimetres, 0 = invalid
///     pose/N.txt                      4x4 camera-to-world; some frames are all -inf (kept: FrameValidator refuses them)
///     intrinsic/intrinsic_depth.txt   4x4, used for the delivered frames
///     intrinsic/intrinsic_color.txt   4x4 (read for information: `colorIntrinsics`)
///     label-filt/N.png                optional class ids (8- or 16-bit)
///     instance-filt/N.png             optional instance ids (8-bit)
///
/// N is an unpadded integer; frames are sorted numerically and indexed by position.
///
/// Class ids: when a `scannetv2-labels.combined.tsv` is found (in the scene directory, its parent or grandparent,
/// or passed as `labelMap`), label-filt values are ScanNet ids and are mapped to NYU40 through its `nyu40id`
/// column; otherwise they are taken as NYU40 ids. Ids outside NYU40 become 0 (unlabelled).
public struct ScanNetReader: GroundTruthProviding {
    public let info: SequenceInfo
    /// Intrinsics of the original colour images (before resizing), when `intrinsic_color.txt` exists.
    public let colorIntrinsics: Intrinsics?
    /// The file number N of each frame, by index.
    public let frameNumbers: [Int]
    public let hasGroundTruth: Bool
    /// ScanNet id -> NYU40 id, when a label table was found; nil = labels are NYU40 ids already.
    public let labelMap: [Int: Int]?
    public var groundTruthVocabulary: Vocabulary? { NYU40.vocabulary }

    /// - Parameters:
    ///   - intrinsics: replaces `intrinsic_depth.txt` (must match the depth resolution).
    ///   - labelTable: a `scannetv2-labels.combined.tsv`; found automatically when nil.
    public init(directory: URL, intrinsics override: Intrinsics? = nil, labelTable: URL? = nil) throws {
        let depthDir = directory.appendingPathComponent("depth")
        let depthFiles = DatasetFiles.numbered(in: depthDir, prefix: "", suffix: ".png")
        guard !depthFiles.isEmpty else {
            throw MapError(.missingFile, "no depth images N.png found", file: depthDir.path,
                           hint: "export the scene with ScanNet's SensReader (color/, depth/, pose/, intrinsic/)")
        }
        let numbers = depthFiles.keys.sorted()
        let first = depthDir.appendingPathComponent(depthFiles[numbers[0]] ?? "")
        let size = try DatasetFiles.pngSize(first, frame: 0, what: "depth image")
        let intrinsicDir = directory.appendingPathComponent("intrinsic")
        let depthK: Intrinsics
        if let override {
            try override.validate(source: "intrinsics override")
            try DatasetFiles.checkSize(override, against: size, file: first.path, what: "the intrinsics override")
            depthK = override
        } else {
            depthK = try DatasetFiles.intrinsicsMatrix(intrinsicDir.appendingPathComponent("intrinsic_depth.txt"), size: size)
        }
        let colorKURL = intrinsicDir.appendingPathComponent("intrinsic_color.txt")
        var colorK: Intrinsics?
        let firstColor = directory.appendingPathComponent("color/\(numbers[0]).jpg")
        if Files.exists(colorKURL), let bytes = try? Files.read(firstColor),
           let colorSize = try? JPEGCodec().size(of: bytes, source: firstColor.path) {
            // For information only: the colour size comes from the first colour image (1296x968 in ScanNet).
            colorK = try DatasetFiles.intrinsicsMatrix(colorKURL, size: colorSize)
        }
        var map: [Int: Int]?
        let candidates = labelTable.map { [$0] } ?? [directory, directory.deletingLastPathComponent(),
                                                     directory.deletingLastPathComponent().deletingLastPathComponent()]
            .map { $0.appendingPathComponent("scannetv2-labels.combined.tsv") }
        for url in candidates where labelTable != nil || Files.exists(url) {
            map = try NYU40.labelMap(tsv: url)
            break
        }
        self.labelMap = map
        self.frameNumbers = numbers
        self.colorIntrinsics = colorK
        self.hasGroundTruth = DatasetFiles.isDirectory(directory.appendingPathComponent("label-filt"))
        info = SequenceInfo(format: "scannet", name: directory.lastPathComponent, root: directory,
                            frameCount: numbers.count, intrinsics: depthK, depthUnitsPerMetre: 1000, frameRate: 30,
                            vocabulary: nil, hasMasks: false)
    }

    func url(_ sub: String, _ i: Int, _ ext: String) -> URL {
        info.root.appendingPathComponent(sub).appendingPathComponent("\(frameNumbers[i]).\(ext)")
    }

    public func files(at i: Int) -> String {
        guard i >= 0 && i < frameNumbers.count else { return info.root.path }
        return info.root.appendingPathComponent("{color,depth,pose}/\(frameNumbers[i]).*").path
    }

    public func frame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeFrame(at: i) }
    }

    func decodeFrame(at i: Int) throws -> Frame {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        let raw = try ImageFiles.readGray16(url("depth", i, "png"), frame: i, what: "depth image")
        let color = try ImageFiles.readColor(url("color", i, "jpg"), frame: i, jpeg: JPEGCodec())
        let pose = try DatasetText.pose4x4(url("pose", i, "txt"), frame: i)
        return Frame(index: i, timestamp: Double(frameNumbers[i]) / 30,
                     rgb: DatasetFiles.colorAtDepthSize(color, raw.size),
                     depth: DepthModel.millimetres.metres(raw), T_W_C: pose, intrinsics: info.intrinsics)
    }

    public func groundTruth(at i: Int) throws -> GroundTruthLabels? {
        try DatasetFiles.checkIndex(i, count: info.frameCount, root: info.root)
        return try DatasetFiles.naming(frame: i, files: files(at: i)) { try decodeGroundTruth(at: i) }
    }

    func decodeGroundTruth(at i: Int) throws -> GroundTruthLabels? {
        guard hasGroundTruth else { return nil }
        let size = try DatasetFiles.pngSize(url("depth", i, "png"), frame: i, what: "depth image")
        let labels = try ImageFiles.readGray16(url("label-filt", i, "png"), frame: i, what: "label image")
        let instURL = url("instance-filt", i, "png")
        var instance: Gray16Image
        if DatasetFiles.isDirectory(info.root.appendingPathComponent("instance-filt")) {
            instance = try ImageFiles.readGray16(instURL, frame: i, what: "instance image")
        } else {
            instance = Gray16Image(width: labels.width, height: labels.height, repeating: 0)
        }
        guard instance.size == labels.size else {
            throw MapError(.sizeMismatch, "instance image is \(instance.size) but the label image is \(labels.size)",
                           file: instURL.path, frame: i, hint: "re-export label-filt and instance-filt together")
        }
        var semantic = labels
        for k in 0..<semantic.data.count {
            let v = Int(semantic.data[k])
            let c = labelMap.map { $0[v] ?? 0 } ?? v
            semantic.data[k] = (1...40).contains(c) ? UInt16(c) : 0
        }
        return GroundTruthLabels(semantic: semantic.resizedNearest(width: size.width, height: size.height),
                                 instance: instance.resizedNearest(width: size.width, height: size.height))
    }
}

/// The NYU40 class set used for ScanNet ground truth.
public enum NYU40 {
    /// Class names by NYU40 id (1...40).
    public static let names = [
        "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
        "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
        "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
        "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
        "otherfurniture", "otherprop",
    ]
    /// Uncountable, structural classes (stuff); every other class is a thing.
    public static let stuffIDs: Set<Int> = [1, 2, 22, 38]  // wall, floor, ceiling, otherstructure

    public static let vocabulary = Vocabulary(classes: names.enumerated().map { k, name in
        SemanticClass(id: k + 1, name: name, isThing: !stuffIDs.contains(k + 1), color: Vocabulary.paletteColor(k + 1))
    })

    /// Reads ScanNet's `scannetv2-labels.combined.tsv` (tab-separated, header row with columns `id` and `nyu40id`).
    public static func labelMap(tsv url: URL) throws -> [Int: Int] {
        let text = try Files.readText(url, what: "ScanNet label table")
        var lines = text.split(whereSeparator: { $0.isNewline }).makeIterator()
        guard let header = lines.next() else {
            throw MapError(.badFormat, "label table is empty", file: url.path, hint: "use scannetv2-labels.combined.tsv")
        }
        let columns = header.split(separator: "\t", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let idCol = columns.firstIndex(of: "id"), let nyuCol = columns.firstIndex(of: "nyu40id") else {
            throw MapError(.badFormat, "label table header has no 'id' and 'nyu40id' columns", file: url.path,
                           hint: "use scannetv2-labels.combined.tsv")
        }
        var map: [Int: Int] = [:]
        var n = 1
        while let line = lines.next() {
            n += 1
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if f.count > nyuCol, f[nyuCol].isEmpty { continue }  // a ScanNet class without an NYU40 counterpart
            guard f.count > max(idCol, nyuCol), let id = Int(f[idCol]), let nyu = Int(f[nyuCol]) else {
                throw MapError(.badFormat, "line \(n) has no integer 'id' and 'nyu40id'", file: url.path,
                               hint: "use scannetv2-labels.combined.tsv")
            }
            map[id] = nyu
        }
        return map
    }
}
