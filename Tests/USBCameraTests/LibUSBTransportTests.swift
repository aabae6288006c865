@testable import USBCamera
import XCTest

/// The libusb transport without a camera: opening fails with a typed error, and the isochronous completion path
/// (the C callback, the descriptor layout, the packet queue) is exercised on hand-made transfers.
final class LibUSBTransportTests: XCTestCase {
    /// Opening 045e:02ae where no camera is plugged in (or no USB bus is visible) is a typed error, never a crash.
    func testOpeningWithoutACameraIsTyped() {
        do {
            let transport = try LibUSBTransport.open(vendorID: 0x045E, productID: 0x02AE)
            // A camera is really there: nothing more to check here.
            XCTAssertEqual(transport.device.vendorID, 0x045E)
        } catch {
            XCTAssertFalse(error.description.isEmpty)
            if error.code == .notFound {
                XCTAssertEqual(error.operation, "open 045e:02ae")
                XCTAssertTrue(error.description.contains("plugged in"), error.description)
            }
        }
        do {
            _ = try LibUSBTransport.open(bus: 255, address: 255)
            XCTFail("bus 255 address 255 does not exist")
        } catch {
            XCTAssertNotEqual(error.code, .noDevice)
        }
        XCTAssertThrowsError(try KinectDevice.open()) { error in
            XCTAssertTrue(error is USBError, "\(error)")
        }
    }

    func testBadConfigIsRejectedBeforeAnyCall() {
        var config = LibUSBTransport.Config()
        config.packetsPerTransfer = 0
        XCTAssertThrowsError(try LibUSBTransport.open(config: config)) { error in
            XCTAssertEqual((error as? USBError)?.code, .invalidParameter)
        }
    }

    func testIsoDescriptorLayoutMatchesLibUSB() {
        XCTAssertTrue(LibUSBSelfCheck.isoDescriptorLayoutMatchesLibUSB())
    }

    func testCompletedTransferDeliversEachPacketsActualBytes() throws {
        let result = LibUSBSelfCheck.complete(endpoint: 0x82, packets: [[1, 2, 3], nil, [], [4, 5, 6, 7, 8]],
                                              slotBytes: 8, transferStatus: .completed)
        let packets = try result.get()
        XCTAssertEqual(packets.map(\.bytes), [[1, 2, 3], [4, 5, 6, 7, 8]], "failed and empty packets are skipped")
        XCTAssertTrue(packets.allSatisfy { $0.endpoint == 0x82 })
    }

    func testUnpluggedTransferMakesReceiveThrowNoDevice() {
        let result = LibUSBSelfCheck.complete(endpoint: 0x81, packets: [[1, 2]], slotBytes: 4,
                                              transferStatus: .noDevice)
        guard case .failure(let error) = result else { return XCTFail("expected .noDevice, got \(result)") }
        XCTAssertEqual(error.code, .noDevice)
        XCTAssertTrue(error.operation.contains("0x81"), error.operation)
    }

    func testCancelledTransferIsQuiet() throws {
        let result = LibUSBSelfCheck.complete(endpoint: 0x81, packets: [[1, 2]], slotBytes: 4,
                                              transferStatus: .cancelled)
        XCTAssertEqual(try result.get(), [])
    }
}
