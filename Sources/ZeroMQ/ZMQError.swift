import CZeroMQ

/// A libzmq call that failed: which call, the errno it left, and zmq_strerror's text for it.
public struct ZMQError: Error, CustomStringConvertible, Equatable {
    /// The errno value libzmq reported (EAGAIN, ETERM, EADDRINUSE, ...).
    public let code: Int32
    /// What we were doing, e.g. `bind tcp://127.0.0.1:7201`.
    public let operation: String
    /// libzmq's own description of `code`.
    public let message: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
        self.message = String(cString: zmq_strerror(code))
    }

    /// The error libzmq left in errno for the call that just failed.
    static func last(_ operation: @autoclosure () -> String) -> ZMQError {
        ZMQError(code: zmq_errno(), operation: operation())
    }

    /// The context was terminated: sockets must close and their thread must end.
    public var isContextTerminated: Bool { code == ETERM }
    /// A non-blocking call found nothing to do (or no room).
    public var isWouldBlock: Bool { code == EAGAIN }

    public var description: String { "\(operation): \(message)" }
}
