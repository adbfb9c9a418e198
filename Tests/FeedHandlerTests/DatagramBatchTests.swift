import Foundation
import Testing

@testable import FeedHandler

/// feedd's batched receive (recvmmsg through the C shim) on a real UDP socket on 127.0.0.1.
@Suite struct DatagramBatchTests {
    @Test func oneCallTakesEveryWaitingDatagramAndFlagsOnesLongerThanASlot() throws {
        let receiver = try UDPReceiver(address: try SocketAddress(host: "127.0.0.1", port: 0),
            receiveBufferBytes: 1 << 20)
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: receiver.descriptor.localPort))
        let batch = DatagramBatch(capacity: 8, slotSize: 64)
        #expect(receiver.receive(into: batch) == 0)  // nothing waiting: no block, no error
        for size in [10, 64, 65, 1] {
            #expect(sender.send(Array(repeating: UInt8(size), count: size)))
        }
        // Loopback delivers at once, but give the kernel a moment on a loaded machine.
        var received = 0
        for _ in 0..<100 where received == 0 {
            received = receiver.receive(into: batch)
            if received == 0 { usleep(1_000) }
        }
        #expect(received == 4)
        #expect(batch.datagram(0).map(Array.init) == Array(repeating: 10, count: 10))
        #expect(batch.datagram(1)?.count == 64)
        #expect(batch.datagram(2) == nil)  // 65 bytes into a 64-byte slot: cut, and said so
        #expect(batch.datagram(3).map(Array.init) == [1])
        #expect(receiver.receive(into: batch) == 0)
    }

    @Test func aBatchIsCappedAtTheShimsMaximum() {
        #expect(DatagramBatch(capacity: 1_000).capacity == 64)
    }
}
