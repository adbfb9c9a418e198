import CZeroMQ

/// Waits on several ZeroMQ sockets and plain file descriptors at once with `zmq_poll`, sleeping in the kernel while
/// nothing happens (no busy loop). Build it once on the socket-owning thread and poll it in that thread's loop.
public final class ZMQPoller {
    private var items: [zmq_pollitem_t] = []

    public init() {}

    /// Watches a socket for incoming messages; returns the index to test with `isReadable`.
    @discardableResult
    public func add(_ socket: ZMQSocket) throws(ZMQError) -> Int {
        items.append(zmq_pollitem_t(socket: try socket.raw, fd: -1, events: Int16(ZMQ_POLLIN), revents: 0))
        return items.count - 1
    }

    /// Watches a plain file descriptor (UDP or TCP socket, eventfd) for readability.
    @discardableResult
    public func add(descriptor: Int32) -> Int {
        items.append(zmq_pollitem_t(socket: nil, fd: descriptor, events: Int16(ZMQ_POLLIN), revents: 0))
        return items.count - 1
    }

    /// Stops watching the descriptor at `index`; later indexes keep their meaning (the slot is left idle).
    public func disable(_ index: Int) {
        items[index].events = 0
        items[index].fd = -1
        items[index].socket = nil
    }

    /// Stops or starts watching the socket or descriptor at `index` for input without forgetting it: a consumer that
    /// must not read a socket for a while (zmq_poll would report it readable in every turn) pauses it.
    public func setWatching(_ index: Int, _ watching: Bool) {
        items[index].events = watching ? Int16(ZMQ_POLLIN) : 0
        items[index].revents = 0
    }

    /// Replaces the descriptor watched at `index` (a TCP connection that was re-established).
    public func replace(_ index: Int, descriptor: Int32) {
        items[index] = zmq_pollitem_t(socket: nil, fd: descriptor, events: Int16(ZMQ_POLLIN), revents: 0)
    }

    /// Replaces the socket watched at `index` (one closed and made afresh); do it before the next poll, which must
    /// never see a closed socket.
    public func replace(_ index: Int, with socket: ZMQSocket) throws(ZMQError) {
        items[index] = zmq_pollitem_t(socket: try socket.raw, fd: -1, events: Int16(ZMQ_POLLIN), revents: 0)
    }

    /// Sleeps until something is readable or `timeoutMilliseconds` pass (-1: no timeout). Returns how many items are
    /// ready. Throws ETERM when the context is shut down.
    @discardableResult
    public func poll(timeoutMilliseconds: Int) throws(ZMQError) -> Int {
        while true {
            let ready = items.withUnsafeMutableBufferPointer {
                zmq_poll($0.baseAddress, Int32($0.count), timeoutMilliseconds)
            }
            if ready >= 0 { return Int(ready) }
            let error = ZMQError.last("zmq_poll")
            if error.code == EINTR { continue }
            throw error
        }
    }

    public func isReadable(_ index: Int) -> Bool {
        items[index].revents & Int16(ZMQ_POLLIN) != 0
    }
}
