import Foundation
import Logging
import Testing

@testable import FeedHandler
import MarketData
import ZeroMQ

/// feedd's engine in-process with real UDP, TCP and ZeroMQ sockets on 127.0.0.1 and ephemeral ports.
@Suite(.serialized) struct FeedEngineOverRealSockets {
    static func configuration(venues: [FeedConfiguration.VenueConfiguration]) -> FeedConfiguration {
        var configuration = FeedConfiguration()
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.replayEndpoint = "tcp://127.0.0.1:*"
        configuration.venues = venues
        configuration.reconnectInitial = .milliseconds(20)
        return configuration
    }

    /// Receives `count` ticks or fails after `timeout`.
    static func receiveTicks(_ socket: ZMQSocket, count: Int, timeout: Duration = .seconds(5)) throws -> [Tick] {
        let deadline = ContinuousClock.now + timeout
        var ticks: [Tick] = []
        try socket.setReceiveTimeout(milliseconds: 100)
        while ticks.count < count && ContinuousClock.now < deadline {
            guard let frames = try socket.receiveFrames(), frames.count == 2 else { continue }
            ticks.append(try TickDecoder.decode(frames[1]))
        }
        return ticks
    }

    /// A TCP port nobody listens on now.
    static func freeTCPPort() throws -> Int {
        let listener = try TCPListener(address: try SocketAddress(host: "127.0.0.1", port: 0))
        return listener.descriptor.localPort
    }

    static func status(_ context: ZMQContext, _ endpoint: String) throws -> DaemonStatus {
        let socket = try ZMQSocket(context, type: .request)
        defer { socket.close() }
        try socket.setReceiveTimeout(milliseconds: 2000)
        try socket.connect(endpoint)
        try socket.send(#"{"cmd":"status"}"#)
        let reply = try #require(try socket.receiveFrames())
        return try JSONDecoder().decode(DaemonStatus.self, from: Data(reply[0]))
    }

    @Test func itchPacketsBecomeTicksAndBadPacketsAreCountedAndSkipped() throws {
        let context = try ZMQContext()
        var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0)
        source.gapGiveUp = .milliseconds(300)
        let engine = FeedEngine(
            configuration: Self.configuration(venues: [.init(venue: "XNAS", source: .itch(source),
                timezone: "America/New_York")]),
            context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.subscribe("AAPL|T")
        try subscriber.subscribe("#SYS")
        try subscriber.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.3)  // ZeroMQ's slow joiner: let the subscription reach the PUB

        let udpPort = try #require(engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort))
        sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.orderExecuted]))
        var truncated = SpecBytes.moldPacket(session: "S1", sequence: 4, messages: [SpecBytes.orderExecuted])
        truncated.removeLast(5)
        sender.send(truncated)
        sender.send(SpecBytes.moldPacket(session: "S1", sequence: 5,
            messages: [[0x5A] + Array(repeating: 0, count: 20), SpecBytes.executedWithPrice]))

        // Message 4 never arrived whole and no retransmission server is configured: after gap_giveup a GAP status
        // says so, then the messages held behind the gap flow.
        let ticks = try Self.receiveTicks(subscriber, count: 3)
        #expect(ticks.map(\.symbol) == ["AAPL", "#SYS", "AAPL"])
        #expect(ticks.map(\.venueSequence) == [3, 4, 6])
        #expect(ticks[1].type == .status && ticks[1].quality == .gap)
        #expect(ticks[1].reason.contains("messages 4-4 lost"))
        let trades = ticks.filter { $0.type == .trade }
        #expect(trades.map(\.price) == [Price(fixedPoint: 178_520_000), Price(fixedPoint: 178_530_000)])
        #expect(trades.allSatisfy { $0.venue == "XNAS" && $0.feedTransmitNs >= $0.feedReceiveNs })
        #expect(ticks.map(\.streamSequence) == ticks.map(\.streamSequence).sorted())

        let status = try Self.status(context, try #require(engine.endpoints["control"]))
        #expect(status.daemon == "feedd")
        #expect(status.counters["XNAS.malformed"] == 1)
        #expect(status.counters["XNAS.unknown_types"] == 1)
        #expect(status.counters["XNAS.gaps_given_up"] == 1)
        #expect(status.counters["XNAS.messages_lost"] == 1)
        #expect(status.counters["XNAS.kernel_drops"] == 0)  // read from /proc/net/udp for this socket
    }

    /// feedd with one JSON venue whose server is the test's: `body` gets the engine's context and control endpoint,
    /// a subscriber of everything, and the venue's end of the connection feedd made.
    static func withJSONVenue(
        _ venue: String, _ format: JSONVenueFormat,
        _ body: (_ context: ZMQContext, _ control: String, _ subscriber: ZMQSocket, _ venue: FileDescriptor) throws
            -> Void
    ) throws {
        let listener = try TCPListener(address: try SocketAddress(host: "127.0.0.1", port: 0))
        let context = try ZMQContext()
        let engine = FeedEngine(
            configuration: configuration(venues: [.init(venue: venue,
                source: .json(format, host: "127.0.0.1", port: listener.descriptor.localPort), timezone: "UTC")]),
            context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.subscribe("")
        try subscriber.connect(try #require(engine.endpoints["publish"]))
        var connection: FileDescriptor?
        let deadline = Date().addingTimeInterval(5)
        while connection == nil && Date() < deadline {
            connection = listener.accept()
            Thread.sleep(forTimeInterval: 0.01)
        }
        let accepted = try #require(connection)
        Thread.sleep(forTimeInterval: 0.3)
        try body(context, try #require(engine.endpoints["control"]), subscriber, accepted)
    }

    @Test func malformedJsonLinesAreCountedAndTheConnectionStays() throws {
        try Self.withJSONVenue("ARCX", .formatA) { context, control, subscriber, venue in
            venue.writeAll(Array(#"{"sym":"AAPL","px":178.52,"ts":1701432000000}"#.utf8) + [10])
            venue.writeAll(Array("this is not json\n".utf8))
            venue.writeAll(Array(#"{"sym":"MSFT","px":"410.10","ts":1701432000001}"#.utf8) + [13, 10])

            let ticks = try Self.receiveTicks(subscriber, count: 2)
            #expect(ticks.map(\.symbol) == ["AAPL", "MSFT"])
            #expect(ticks.map(\.price.description) == ["178.52", "410.1"])
            #expect(ticks.map(\.venueSequence) == [1, 3])
            let status = try Self.status(context, control)
            #expect(status.counters["ARCX.malformed"] == 1)
            #expect(status.counters["ARCX.connected"] == 1)
        }
    }

    @Test func theReplayRouterServesRecentTicksByStreamSequenceAtMostMaxAnswerTicksAtATime() throws {
        let context = try ZMQContext()
        var configuration = Self.configuration(venues: [.init(venue: "XNAS",
            source: .itch(.init(listenHost: "127.0.0.1", listenPort: 0)), timezone: "UTC")])
        configuration.replayTicks = 4
        configuration.maxAnswerTicks = 3
        let engine = FeedEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        let udpPort = try #require(engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort))
        let trades = (1...6).map { number in
            ItchEncoder.trade(ItchHeader(stockLocate: 1, timestamp: number), shares: 100, symbol: "AAPL",
                price: UInt32(1_000_000 + number), matchNumber: number)
        }
        sender.send(MoldPacket.encode(session: "S1", sequenceNumber: 1, messages: [SpecBytes.stockDirectory] + trades))

        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.setReceiveTimeout(milliseconds: 2000)
        try dealer.connect(try #require(engine.endpoints["replay"]))
        func replay(from: UInt64, max: UInt64) throws -> (ticks: [Tick], end: SnapshotEnd) {
            try dealer.send(ReplayRequest.streamReplay(fromStreamSequence: from, maxCount: max).encoded())
            var ticks: [Tick] = []
            while let frames = try dealer.receiveFrames() {
                if frames[0] == Array(SnapshotEnd.topic.utf8) {
                    return (ticks, try #require(SnapshotEnd(decoding: frames[1])))
                }
                #expect(frames[0] == Array("AAPL|T".utf8))
                ticks.append(try TickDecoder.decode(frames[1]))
            }
            throw SocketError(operation: "no #END from the replay ROUTER", code: 0)
        }
        // Wait for the six trades to be published (stream_seq 1-6); the ring keeps the last four.
        var status = try Self.status(context, try #require(engine.endpoints["control"]))
        let deadline = Date().addingTimeInterval(5)
        while status.counters["stream_seq"] != 6 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            status = try Self.status(context, try #require(engine.endpoints["control"]))
        }
        let recent = try replay(from: 4, max: 2)
        #expect(recent.ticks.map(\.streamSequence) == [4, 5])
        #expect(recent.ticks.map(\.price.description) == ["100.0004", "100.0005"])
        #expect(recent.end == SnapshotEnd(streamSequence: 6, tickCount: 2, complete: true))
        let tooOld = try replay(from: 1, max: 0)
        #expect(tooOld.ticks.map(\.streamSequence) == [3, 4, 5])
        #expect(!tooOld.end.complete)
        #expect(tooOld.end.error.contains("before stream_seq 3"))
        // "All" from 3 is cut at three ticks, and the end says where to go on; from 4, the three are all there are.
        let cut = try replay(from: 3, max: 0)
        #expect(cut.ticks.map(\.streamSequence) == [3, 4, 5])
        #expect(cut.end.complete == false && cut.end.tickCount == 3)
        #expect(cut.end.error.contains("ask again from stream_seq 6"), "\(cut.end.error)")
        let rest = try replay(from: 4, max: 10)
        #expect(rest.ticks.map(\.streamSequence) == [4, 5, 6])
        #expect(rest.end == SnapshotEnd(streamSequence: 6, tickCount: 3, complete: true))
    }

    @Test func aVenueThatNeverAnswersTheConnectDoesNotHoldUpTheOthers() throws {
        // A listener whose accept queue is full: the kernel leaves further connects pending, like a blackholed venue.
        let listener = try TCPListener(address: try SocketAddress(host: "127.0.0.1", port: 0), backlog: 0)
        let filler = try FileDescriptor.startTCPConnect(to: try SocketAddress(host: "127.0.0.1",
            port: listener.descriptor.localPort))
        Thread.sleep(forTimeInterval: 0.2)
        let context = try ZMQContext()
        let engine = FeedEngine(
            configuration: Self.configuration(venues: [
                .init(venue: "ARCX", source: .json(.formatA, host: "127.0.0.1", port: listener.descriptor.localPort),
                    timezone: "UTC"),
                .init(venue: "XNAS", source: .itch(.init(listenHost: "127.0.0.1", listenPort: 0)), timezone: "UTC"),
            ]),
            context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
            filler.close()
        }
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.subscribe("AAPL|T")
        try subscriber.setReceiveTimeout(milliseconds: 2000)
        try subscriber.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.3)
        let udpPort = try #require(engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort))
        sender.send(MoldPacket.encode(session: "S1", sequenceNumber: 1, messages: [SpecBytes.stockDirectory]))
        // Each trade must come out promptly while the JSON venue's connect hangs (a blocking connect would stall the
        // feed thread for its whole timeout).
        var delays: [Double] = []
        for number in 1...5 {
            let sentAt = Date()
            sender.send(MoldPacket.encode(session: "S1", sequenceNumber: UInt64(number + 1), messages: [
                ItchEncoder.trade(ItchHeader(stockLocate: 1, timestamp: UInt64(number)), shares: 100, symbol: "AAPL",
                    price: 1_000_000, matchNumber: UInt64(number))
            ]))
            guard try subscriber.receiveFrames() != nil else {
                Issue.record("trade \(number) did not come out within 2 s")
                return
            }
            delays.append(Date().timeIntervalSince(sentAt))
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(delays.allSatisfy { $0 < 0.5 }, "trade delays \(delays)")
        let status = try Self.status(context, try #require(engine.endpoints["control"]))
        #expect(status.counters["ARCX.connected"] == 0)
    }
}
