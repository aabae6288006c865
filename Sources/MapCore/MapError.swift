/// The one error type of the mapper's input side: what went wrong, where (file, frame, pixel) and what to do.
public struct MapError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case missingFile = "missing file"
        case truncatedFile = "truncated file"
        case corruptFile = "corrupt file"
        case badFormat = "bad format"
        case sizeMismatch = "size mismatch"
        case badPose = "bad pose"
        case badCalibration = "bad calibration"
        case unknownClass = "unknown class"
        case badMask = "bad mask"
        case badArgument = "bad argument"
        case ioFailure = "I/O failure"
        case unsupported = "unsupported"
        case deviceLost = "device lost"
        case trackingLost = "tracking lost"
    }

    public var kind: Kind
    public var message: String
    public var file: String?
    public var frame: Int?
    public var hint: String?

    public init(_ kind: Kind, _ message: String, file: String? = nil, frame: Int? = nil, hint: String? = nil) {
        self.kind = kind; self.message = message; self.file = file; self.frame = frame; self.hint = hint
    }

    /// The same error with the frame and/or file filled in where they were not known yet.
    public func at(frame: Int? = nil, file: String? = nil) -> MapError {
        var e = self
        if e.frame == nil { e.frame = frame }
        if e.file == nil { e.file = file }
        return e
    }

    public var description: String {
        var s = "\(kind.rawValue): \(message)"
        if let frame { s += " [frame \(frame)]" }
        if let file { s += " [\(file)]" }
        if let hint { s += " — \(hint)" }
        return s
    }
}
