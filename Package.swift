// swift-tools-version:6.0
// Online panoptic 3D mapper. Module layout follows ../shared/DESIGN.md ("Suggested layout").
import PackageDescription

let package = Package(
    name: "PanopticMapper",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pano", targets: ["pano"]),
        .library(name: "MapCore", targets: ["MapCore"]),
        .library(name: "IO", targets: ["IO"]),
        .library(name: "Synthetic", targets: ["Synthetic"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // One system-library target per C dependency; shim headers only. Debian packages: tools/setup.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng16", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),

        .target(name: "MapCore"),
        .target(name: "Kernels", dependencies: ["MapCore", "COpenBLAS"]),
        .target(name: "IO", dependencies: ["MapCore", "CTurboJPEG", "CPNG"]),
        .target(name: "Fields", dependencies: ["MapCore", "Kernels", "IO"]),
        .target(name: "Evaluation", dependencies: ["MapCore", "Kernels", "IO"]),
        .target(name: "Synthetic", dependencies: ["MapCore", "IO"]),
        .target(name: "USBCamera", dependencies: ["MapCore", "CLibUSB"]),
        .target(name: "Tracking", dependencies: ["MapCore", "Kernels"]),
        .target(name: "TestSupport", dependencies: ["MapCore", "IO", "Synthetic", "Kernels", "USBCamera"]),
        .target(
            name: "Pipeline",
            dependencies: [
                "MapCore", "IO", "Kernels", "Fields", "Evaluation", "Synthetic", "Tracking", "USBCamera",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "pano",
            dependencies: [
                "MapCore", "IO", "Synthetic", "Kernels", "Fields", "Evaluation", "USBCamera", "Pipeline", "TestSupport",
                "Tracking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        .testTarget(name: "MapCoreTests", dependencies: ["MapCore", "TestSupport"]),
        .testTarget(name: "IOTests", dependencies: ["IO", "MapCore", "TestSupport"]),
        .testTarget(name: "SyntheticTests", dependencies: ["Synthetic", "IO", "MapCore", "TestSupport"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "MapCore", "TestSupport"]),
        .testTarget(name: "FieldsTests", dependencies: ["Fields", "Kernels", "MapCore", "IO", "Synthetic", "TestSupport",
                                                    "Evaluation"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Kernels", "MapCore", "IO", "TestSupport"]),
        .testTarget(name: "USBCameraTests", dependencies: ["USBCamera", "MapCore", "TestSupport"]),
        .testTarget(name: "TrackingTests", dependencies: ["Tracking", "MapCore", "IO", "Synthetic", "TestSupport"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Fields", "Evaluation", "IO", "MapCore", "Synthetic",
                                                      "TestSupport", "Tracking", "USBCamera"]),
    ],
    swiftLanguageModes: [.v6]
)
