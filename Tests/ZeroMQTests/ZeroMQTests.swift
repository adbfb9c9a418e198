import Foundation
import Testing

@testable import ZeroMQ

@Suite struct ZeroMQWrapper {
    @Test func publishAndSubscribeWithPrefixFiltering() throws {
        let context = try ZMQContext()
        let publisher = try ZMQSocket(context, type: .publish)
        try publisher.setSendHighWaterMark(10_000)
        try publisher.bind("tcp://127.0.0.1:*")
        let endpoint = try publisher.lastEndpoint
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        #expect(!endpoint.hasSuffix(":*"))

        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.subscribe("AAPL|")
        try subscriber.setReceiveTimeout(milliseconds: 2000)
        try subscriber.connect(endpoint)
        Thread.sleep(forTimeInterval: 0.2)

        for topic in ["AAPLX|T", "AAPL|T", "MSFT|T", "AAPL|Q"] {
            try publisher.send(topic, more: true)
            try publisher.send(Array(topic.utf8.reversed()))
        }
        var topics: [String] = []
        while let frames = try subscriber.receiveFrames() {
            #expect(frames.count == 2)
            topics.append(String(decoding: frames[0], as: UTF8.self))
            if topics.count == 2 { break }
        }
        #expect(topics == ["AAPL|T", "AAPL|Q"])
        try subscriber.setReceiveTimeout(milliseconds: 100)
        #expect(try subscriber.receiveFrames() == nil)
    }

    @Test func zeroCopyReceiveSeesTheFrameAndItsMoreFlag() throws {
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind("inproc://zero-copy")
        let push = try ZMQSocket(context, type: .push)
        try push.connect("inproc://zero-copy")
        try push.send([1, 2, 3], more: true)
        try push.send([4])
        let message = ZMQMessage()
        #expect(try pull.receive(into: message))
        #expect(message.bytes == [1, 2, 3])
        #expect(message.hasMore)
        #expect(try pull.receive(into: message))
        #expect(message.withUnsafeBytes { $0.count } == 1)
        #expect(!message.hasMore)
        #expect(try pull.receive(into: message, dontWait: true) == false)
    }

    @Test func libzmqErrorsAreTypedAndCarryItsText() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .publish)
        do {
            try socket.bind("nonsense://here")
            Issue.record("bind to a bad endpoint succeeded")
        } catch {
            #expect(error.operation == "bind nonsense://here")
            #expect(!error.message.isEmpty)
            #expect(error.description.hasPrefix("bind nonsense://here: "))
        }
        let first = try ZMQSocket(context, type: .publish)
        try first.bind("tcp://127.0.0.1:*")
        let taken = try first.lastEndpoint
        #expect(throws: ZMQError.self) { try socket.bind(taken) }
        socket.close()
        #expect(throws: ZMQError.self) { try socket.bind("tcp://127.0.0.1:*") }
    }

    @Test func thePollerSleepsUntilASocketOrTheWakeupIsReady() throws {
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind("inproc://poller")
        let push = try ZMQSocket(context, type: .push)
        try push.connect("inproc://poller")
        let wakeup = PollWakeup()
        let poller = ZMQPoller()
        let socketIndex = try poller.add(pull)
        let wakeupIndex = poller.add(descriptor: wakeup.descriptor)

        #expect(try poller.poll(timeoutMilliseconds: 50) == 0)
        wakeup.signal()
        wakeup.signal()
        #expect(try poller.poll(timeoutMilliseconds: 1000) == 1)
        #expect(poller.isReadable(wakeupIndex))
        #expect(!poller.isReadable(socketIndex))
        wakeup.drain()
        #expect(try poller.poll(timeoutMilliseconds: 0) == 0)

        try push.send([9])
        #expect(try poller.poll(timeoutMilliseconds: 1000) == 1)
        #expect(poller.isReadable(socketIndex))
    }

    @Test func anExtendedPublisherSeesSubscriptions() throws {
        let context = try ZMQContext()
        let publisher = try ZMQSocket(context, type: .extendedPublish)
        try publisher.setVerboseSubscriptions(true)
        try publisher.setReceiveTimeout(milliseconds: 2000)
        try publisher.bind("tcp://127.0.0.1:*")
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.connect(try publisher.lastEndpoint)
        try subscriber.subscribe("AAPL|")
        let subscribe = try #require(try publisher.receiveFrames())
        #expect(subscribe[0] == [1] + Array("AAPL|".utf8))
        try subscriber.unsubscribe("AAPL|")
        let unsubscribe = try #require(try publisher.receiveFrames())
        #expect(unsubscribe[0] == [0] + Array("AAPL|".utf8))
    }

    @Test func aSocketThreadStopsWhenAsked() async throws {
        let thread = SocketThread(name: "test-loop")
        thread.start { thread in
            let poller = ZMQPoller()
            poller.add(descriptor: thread.wakeup.descriptor)
            while !thread.isStopping { _ = try? poller.poll(timeoutMilliseconds: -1) }
        }
        thread.stop()
        await thread.finished()
        #expect(thread.isStopping)
    }
}
