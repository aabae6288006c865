import ArgumentParser
import USBCamera

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List connected USB RGB-D cameras this build supports.")

    func run() throws {
        let supported = CameraModel.supported.map { String(format: "%@ (%04x:%04x)", $0.name, $0.vendorID, $0.productID) }
        do {
            let devices = try USBContext().devices()
            let found = CameraModel.match(devices)
            if found.isEmpty {
                print("No supported camera connected (\(devices.count) USB devices seen). Supported: \(supported.joined(separator: ", ")).")
            }
            for (model, d) in found { print("\(model.name) on bus \(d.bus) address \(d.address)") }
        } catch let e as USBError {
            print("No USB bus is accessible: \(e). Supported cameras: \(supported.joined(separator: ", ")).")
        }
    }
}
