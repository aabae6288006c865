import USBCamera
import XCTest

final class USBErrorTests: XCTestCase {
    func testReturnCodesMapToTypedErrors() {
        // libusb's documented codes: NO_DEVICE = -4, ACCESS = -3, BUSY = -6, TIMEOUT = -7.
        XCTAssertEqual(USBError(rawValue: -4, operation: "x").code, .noDevice)
        XCTAssertEqual(USBError(rawValue: -3, operation: "x").code, .access)
        XCTAssertEqual(USBError(rawValue: -6, operation: "x").code, .busy)
        XCTAssertEqual(USBError(rawValue: -7, operation: "x").code, .timeout)
        XCTAssertEqual(USBError(rawValue: -12345, operation: "x").code, .other)
        let e = USBError(rawValue: -4, operation: "read depth")
        XCTAssertTrue(e.description.contains("LIBUSB_ERROR_NO_DEVICE"), e.description)
        XCTAssertTrue(e.description.contains("read depth"))
        XCTAssertTrue(e.description.contains("unplugged"))
    }

    func testMatchingSupportedCameras() {
        let devices = [USBDeviceInfo(vendorID: 0x1D6B, productID: 0x0002, bus: 1, address: 1),
                       USBDeviceInfo(vendorID: 0x045E, productID: 0x02AE, bus: 1, address: 5)]
        let m = CameraModel.match(devices)
        XCTAssertEqual(m.count, 1)
        XCTAssertEqual(m.first?.1.address, 5)
    }

    /// Enumeration either lists devices or fails with a typed error (containers often have no USB bus); never crashes.
    func testEnumerationIsTypedEitherWay() {
        do {
            let devices = try USBContext().devices()
            XCTAssertTrue(CameraModel.match(devices).count <= devices.count)
        } catch let e as USBError {
            XCTAssertFalse(e.description.isEmpty)
        } catch {
            XCTFail("untyped error \(error)")
        }
    }
}
