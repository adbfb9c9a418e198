import CZeroMQ
import Foundation
import Synchronization

/// A named thread that owns ZeroMQ sockets for its whole life (libzmq sockets are not thread-safe, DESIGN section 11).
/// The loop runs `body` until `stop()`; `body` creates its sockets inside, polls with `wakeup` among its descriptors,
/// and returns when `isStopping` is true. `finished()` lets async code (a service's `run`) wait for the end.
public final class SocketThread: Sendable {
    public let name: String
    /// Readable when someone called `stop()` or wants the loop to look at its command queue.
    public let wakeup = PollWakeup()
    private let stopping = Atomic<Bool>(false)
    private let endpoints = Mutex<[String: String]>([:])
    private let completion = Mutex<CompletionState>(.running)

    private enum CompletionState {
        case running
        case waiting(CheckedContinuation<Void, Never>)
        case done
    }

    public init(name: String) { self.name = name }

    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Starts the thread. `body` receives this object to check `isStopping` and to poll `wakeup`.
    public func start(_ body: @escaping @Sendable (SocketThread) -> Void) {
        let thread = Thread { [self] in
            // Foundation's name stays inside Foundation on Linux; the kernel's (15 bytes at most) is what top -H,
            // ps -L and perf show an operator.
            _ = tickplant_name_thread(String(decoding: name.utf8.prefix(15), as: UTF8.self))
            body(self)
            markDone()
        }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Builds a loop on this thread and runs it. Returns once `makeLoop` has bound the loop's sockets, with the
    /// endpoints it reports (ephemeral ports resolved), or throws what `makeLoop` threw.
    public func startLoop(_ makeLoop: @escaping @Sendable (SocketThread) throws -> any SocketLoop) throws -> [String: String] {
        let outcome = Mutex<Result<[String: String], any Error>?>(nil)
        start { thread in
            do {
                let loop = try makeLoop(thread)
                outcome.withLock { $0 = .success(loop.boundEndpoints) }
                loop.run(thread)
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }
        while true {
            if let result = outcome.withLock({ $0 }) {
                let bound = try result.get()
                endpoints.withLock { $0 = bound }
                return bound
            }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }

    /// The endpoints the running loop bound, by role, with ephemeral ports resolved (empty before `startLoop`).
    public var boundEndpoints: [String: String] { endpoints.withLock { $0 } }

    /// Asks the loop to end; returns at once.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.signal()
    }

    /// Returns when `body` has returned.
    public func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = completion.withLock { state -> Bool in
                if case .done = state { return true }
                state = .waiting(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Blocks the calling thread until `body` has returned (tests and synchronous shutdown paths).
    public func join(timeout: Duration = .seconds(10)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if completion.withLock({ if case .done = $0 { true } else { false } }) { return true }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return false
    }

    private func markDone() {
        let waiter = completion.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state = .done }
            if case let .waiting(continuation) = state { return continuation }
            return nil
        }
        waiter?.resume()
    }
}

/// The work of a socket-owning thread: built on that thread, it binds its sockets in `init` and runs until
/// `thread.isStopping`.
public protocol SocketLoop: AnyObject {
    /// The endpoints it bound, by role ("publish", "control", ...), with ephemeral ports resolved.
    var boundEndpoints: [String: String] { get }
    func run(_ thread: SocketThread)
}
