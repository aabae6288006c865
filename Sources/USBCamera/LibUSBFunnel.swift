import CLibUSB

/// A libusb failure, from its return code. Every libusb call of the project lives in this file.
public struct USBError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case io, invalidParameter, access, noDevice, notFound, busy, timeout, overflow, pipe, interrupted
        case noMemory, notSupported, other
    }

    public var code: Code
    /// The raw libusb return code.
    public var rawValue: Int32
    /// What was being done ("enumerate devices", "claim interface 0", ...).
    public var operation: String

    public init(rawValue: Int32, operation: String) {
        self.rawValue = rawValue
        self.operation = operation
        switch rawValue {
        case LIBUSB_ERROR_IO.rawValue: code = .io
        case LIBUSB_ERROR_INVALID_PARAM.rawValue: code = .invalidParameter
        case LIBUSB_ERROR_ACCESS.rawValue: code = .access
        case LIBUSB_ERROR_NO_DEVICE.rawValue: code = .noDevice
        case LIBUSB_ERROR_NOT_FOUND.rawValue: code = .notFound
        case LIBUSB_ERROR_BUSY.rawValue: code = .busy
        case LIBUSB_ERROR_TIMEOUT.rawValue: code = .timeout
        case LIBUSB_ERROR_OVERFLOW.rawValue: code = .overflow
        case LIBUSB_ERROR_PIPE.rawValue: code = .pipe
        case LIBUSB_ERROR_INTERRUPTED.rawValue: code = .interrupted
        case LIBUSB_ERROR_NO_MEM.rawValue: code = .noMemory
        case LIBUSB_ERROR_NOT_SUPPORTED.rawValue: code = .notSupported
        default: code = .other
        }
    }

    /// What the user can do about it.
    public var hint: String {
        switch code {
        case .access: return "run as root or add a udev rule giving your user access to the device"
        case .noDevice: return "the camera was unplugged; plug it in again and resume the session"
        case .busy: return "another program (or a kernel driver) holds the device; close it and retry"
        case .timeout: return "the device did not answer in time; replug it"
        case .other, .notSupported: return "is a USB bus visible here (/dev/bus/usb)? containers often hide it"
        default: return "replug the camera and retry"
        }
    }

    public var description: String {
        let name = libusb_error_name(rawValue).map { String(cString: $0) } ?? "\(rawValue)"
        return "USB error \(name) during \(operation) — \(hint)"
    }
}

/// A USB device seen on the bus.
public struct USBDeviceInfo: Sendable, Equatable {
    public var vendorID: UInt16
    public var productID: UInt16
    public var bus: UInt8
    public var address: UInt8

    public init(vendorID: UInt16, productID: UInt16, bus: UInt8, address: UInt8) {
        self.vendorID = vendorID; self.productID = productID; self.bus = bus; self.address = address
    }
}

/// Owns one libusb context.
public final class USBContext {
    private var context: OpaquePointer?

    public init() throws {
        var ctx: OpaquePointer?
        let rc = libusb_init(&ctx)
        guard rc == 0 else { throw USBError(rawValue: rc, operation: "initialise libusb") }
        context = ctx
    }

    deinit { if let context { libusb_exit(context) } }

    /// All devices on all buses.
    public func devices() throws -> [USBDeviceInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = libusb_get_device_list(context, &list)
        guard n >= 0, let list else { throw USBError(rawValue: Int32(n), operation: "enumerate devices") }
        defer { libusb_free_device_list(list, 1) }
        var out: [USBDeviceInfo] = []
        for i in 0..<Int(n) {
            guard let dev = list[i] else { continue }
            var desc = libusb_device_descriptor()
            let rc = libusb_get_device_descriptor(dev, &desc)
            guard rc == 0 else { throw USBError(rawValue: rc, operation: "read a device descriptor") }
            out.append(USBDeviceInfo(vendorID: desc.idVendor, productID: desc.idProduct,
                                     bus: libusb_get_bus_number(dev), address: libusb_get_device_address(dev)))
        }
        return out
    }
}
