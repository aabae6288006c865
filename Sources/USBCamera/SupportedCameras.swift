/// Camera families this build can drive, by USB id. The driver for each arrives with the live-camera work; this
/// table is what `pano devices` matches against.
public struct CameraModel: Sendable, Equatable {
    public var name: String
    public var vendorID: UInt16
    public var productID: UInt16

    public static let supported: [CameraModel] = [
        CameraModel(name: "Microsoft Kinect v1 (camera)", vendorID: 0x045E, productID: 0x02AE),
    ]

    /// The supported models among `devices`.
    public static func match(_ devices: [USBDeviceInfo]) -> [(CameraModel, USBDeviceInfo)] {
        devices.compactMap { d in
            supported.first { $0.vendorID == d.vendorID && $0.productID == d.productID }.map { ($0, d) }
        }
    }
}
