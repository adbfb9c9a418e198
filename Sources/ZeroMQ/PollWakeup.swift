import CZeroMQ
import Glibc

/// An eventfd that any thread may signal to wake a socket-owning thread out of `zmq_poll` (added with
/// `ZMQPoller.add(descriptor:)`). Commands for that thread travel in a lock-protected queue beside it; this only says
/// "look at the queue", so a thread sleeps in the kernel instead of polling on a short timeout.
///
/// `@unchecked Sendable`: the descriptor is written and read with single syscalls, which the kernel serialises; it is
/// closed only in `deinit`, when no other reference exists.
public final class PollWakeup: @unchecked Sendable {
    public let descriptor: Int32

    public init() {
        descriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(descriptor >= 0, "eventfd failed: errno \(errno)")
    }

    deinit { Glibc.close(descriptor) }

    /// Wakes the owning thread. Signals that arrive before it drains collapse into one.
    public func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor, &one, MemoryLayout<UInt64>.size)
    }

    /// Called by the owning thread when the descriptor is readable.
    public func drain() {
        var count: UInt64 = 0
        _ = Glibc.read(descriptor, &count, MemoryLayout<UInt64>.size)
    }
}
