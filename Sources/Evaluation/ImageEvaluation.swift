import Foundation
import IO
import Kernels
import MapCore

/// Photometric and depth metrics of rendered views against a sequence: PSNR (dB) and SSIM of the colour, AbsRel of
/// the depth, each the mean over frames.
public struct ImageMetrics: Sendable, Codable, Equatable {
    public var frames: Int
    public var psnr: Double
    public var ssim: Double
    public var depthAbsRel: Double
    /// Fraction of pixels with valid true depth that the rendered depth covers (AbsRel is over those).
    public var depthCoverage: Double

    public var text: String {
        String(format: "views %d  PSNR %.2f dB  SSIM %.4f  depth AbsRel %.4f (coverage %.1f %%)", frames, psnr, ssim,
               depthAbsRel, 100 * depthCoverage)
    }
}

public enum ImageEvaluation {
    /// A frame's rendered images in a predictions directory: `NNNNNN-rgb.png` (8-bit RGB) and `NNNNNN-depth.png`
    /// (16-bit, millimetres, 0 = no depth).
    public static func predictionURLs(_ directory: URL, frame: Int) -> (rgb: URL, depth: URL) {
        (directory.appendingPathComponent("\(frameName(frame))-rgb.png"),
         directory.appendingPathComponent("\(frameName(frame))-depth.png"))
    }

    /// Millimetres per metre of rendered depth PNGs.
    public static let depthUnitsPerMetre = 1000.0

    /// Frames with a rendered colour image in `directory`.
    public static func predictedFrames(in directory: URL) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { n -> Int? in
            guard n.hasSuffix("-rgb.png") else { return nil }
            let stem = n.dropLast("-rgb.png".count)
            return stem.count >= 6 && stem.allSatisfy(\.isNumber) ? Int(stem) : nil
        }.sorted()
    }

    /// Per-frame metrics of one view; colour values compared in [0, 1]. Depth: pixels where both are > 0.
    public static func compare(rendered: RGBImage, truth: RGBImage, renderedDepth: DepthImage?, truthDepth: DepthImage?)
        -> (psnr: Double, ssim: Double, absRel: Double?, covered: Int, valid: Int) {
        let x = rendered.data.map { Float($0) / 255 }, y = truth.data.map { Float($0) / 255 }
        let psnr = ImageLosses.psnr(x, y)
        let ssim = Double(ImageLosses.ssim(x, y, width: rendered.width, height: rendered.height, channels: 3))
        guard let renderedDepth, let truthDepth else { return (psnr, ssim, nil, 0, 0) }
        let valid = truthDepth.data.filter { $0 > 0 && $0.isFinite }.count
        let pred = zip(renderedDepth.data, truthDepth.data).map { $0 > 0 && $1 > 0 ? $0 : Float.nan }
        let r = ImageLosses.depthAbsRel(predicted: pred, truth: truthDepth.data)
        return (psnr, ssim, r.pixels > 0 ? r.value : nil, r.pixels, valid)
    }

    /// Compares every rendered view in `predictions` with the sequence's colour image and its depth (the clean
    /// `gt/depth/NNNNNN.png` when the sequence has one, else the sensor depth).
    public static func evaluate(predictions: URL, sequence: URL) throws -> (metrics: ImageMetrics, frames: [Int]) {
        let frames = predictedFrames(in: predictions)
        guard !frames.isEmpty else {
            throw MapError(.missingFile, "no rendered views (NNNNNN-rgb.png) in the directory", file: predictions.path,
                           hint: "render views with `pano render` or export a session run with --hold-out")
        }
        let reader = try PanoSequenceReader(directory: sequence)
        var psnr = 0.0, ssim = 0.0, absRel = 0.0, depthFrames = 0, covered = 0, valid = 0
        for f in frames {
            guard f < reader.info.frameCount else {
                throw MapError(.badArgument, "rendered view \(f) but the sequence has \(reader.info.frameCount) frames",
                               file: predictions.path, frame: f, hint: "evaluate against the sequence the views were rendered for")
            }
            let truth = try reader.frame(at: f)
            let p = predictionURLs(predictions, frame: f)
            let rgb = try PNGCodec.decodeRGB8(try Files.read(p.rgb, frame: f, what: "rendered colour image"),
                                              source: p.rgb.path)
            guard rgb.size == truth.rgb.size else {
                throw MapError(.sizeMismatch, "rendered view is \(rgb.size), the sequence's frames \(truth.rgb.size)",
                               file: p.rgb.path, frame: f, hint: "render at the sequence's image size")
            }
            var depth: DepthImage?
            if Files.exists(p.depth) {
                depth = ImageFiles.depthMetres(try ImageFiles.readGray16(p.depth, frame: f, what: "rendered depth"),
                                               unitsPerMetre: depthUnitsPerMetre)
            }
            let gtURL = sequence.appendingPathComponent("gt/depth/\(frameName(f)).png")
            let truthDepth = Files.exists(gtURL)
                ? ImageFiles.depthMetres(try ImageFiles.readGray16(gtURL, frame: f, what: "GT depth"),
                                         unitsPerMetre: reader.info.depthUnitsPerMetre)
                : truth.depth
            if let d = depth, d.size != truthDepth.size {
                throw MapError(.sizeMismatch, "rendered depth is \(d.size), the sequence's \(truthDepth.size)",
                               file: p.depth.path, frame: f, hint: "render at the sequence's image size")
            }
            let m = compare(rendered: rgb, truth: truth.rgb, renderedDepth: depth, truthDepth: truthDepth)
            psnr += m.psnr; ssim += m.ssim
            if let a = m.absRel { absRel += a; depthFrames += 1 }
            covered += m.covered; valid += m.valid
        }
        let n = Double(frames.count)
        return (ImageMetrics(frames: frames.count, psnr: psnr / n, ssim: ssim / n,
                             depthAbsRel: depthFrames > 0 ? absRel / Double(depthFrames) : .nan,
                             depthCoverage: valid > 0 ? Double(covered) / Double(valid) : 0), frames)
    }
}
