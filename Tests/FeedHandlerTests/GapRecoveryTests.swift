import Foundation
import Logging
import Testing

@testable import FeedHandler
import MarketData
import ZeroMQ

/// feedd against a venue played by the test: MoldUDP64 over real UDP, the retransmission server over real TCP.
@Suite(.serialized) struct GapRecoveryOverRealSockets {
    /// A venue with `symbols` listed, that sends trades (P messages) whose price encodes their sequence number.
    final class Venue {
        let session = "GAPTEST001"
        var history = MoldHistory(capacity: 100_000)
        var server: MoldRetransmissionServer?
        let sender: UDPSender
        let serverPort: Int

        init(feedPort: Int, serverPort: Int? = nil, startServer: Bool = true) throws {
            sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: feedPort))
            let port = try serverPort ?? FeedEngineOverRealSockets.freeTCPPort()
            self.serverPort = port
            if startServer { try self.startServer() }
            append([ItchEncoder.stockDirectory(ItchHeader(stockLocate: 1, timestamp: 1), symbol: "AAPL")])
        }

        func startServer() throws {
            server = try MoldRetransmissionServer(address: try SocketAddress(host: "127.0.0.1", port: serverPort),
                session: session)
        }

        /// Appends messages to the history and returns their first sequence number.
        @discardableResult
        func append(_ messages: [[UInt8]]) -> UInt64 {
            let first = history.nextSequence
            for message in messages { history.append(message) }
            return first
        }

        static func trade(_ number: UInt64) -> [UInt8] {
            ItchEncoder.trade(ItchHeader(stockLocate: 1, timestamp: 1000 + number), shares: 100, symbol: "AAPL",
                price: UInt32(1_000_000 + number), matchNumber: number)
        }

        /// Sends history[from..<to] as packets of `perPacket`, leaving out every packet whose messages are all in `drop`.
        func send(_ range: Range<UInt64>, perPacket: Int = 5, drop: Set<UInt64> = []) {
            var sequence = range.lowerBound
            while sequence < range.upperBound {
                let end = min(sequence + UInt64(perPacket), range.upperBound)
                let messages = (sequence..<end).map { history.message($0)! }
                if !(sequence..<end).allSatisfy({ drop.contains($0) }) {
                    sender.send(MoldPacket.encode(session: session, sequenceNumber: sequence, messages: messages))
                }
                sequence = end
            }
        }

        /// Serves retransmission requests for a while (the test is the venue's event loop).
        func serve(for seconds: Double) {
            let until = Date().addingTimeInterval(seconds)
            while Date() < until {
                server?.serve(history: history)
                Thread.sleep(forTimeInterval: 0.002)
            }
        }
    }

    struct Running {
        let context: ZMQContext
        let engine: FeedEngine
        let subscriber: ZMQSocket
        let udpPort: Int
    }

    static func startFeed(retransmissionPort: Int, giveUp: Duration = .seconds(2)) throws -> Running {
        let context = try ZMQContext()
        var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0,
            retransmission: ("127.0.0.1", retransmissionPort))
        source.gapGiveUp = giveUp
        source.retransmissionRetry = .milliseconds(50)
        let engine = FeedEngine(
            configuration: FeedEngineOverRealSockets.configuration(venues: [.init(venue: "XNAS", source: .itch(source),
                timezone: "UTC")]),
            context: context, logger: Logger(label: "test"))
        try engine.start()
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.subscribe("AAPL|T")
        try subscriber.subscribe("#SYS")
        try subscriber.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.3)
        let port = try #require(engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        return Running(context: context, engine: engine, subscriber: subscriber, udpPort: port)
    }

    @Test func aGapOfKMessagesIsHealedByRetransmissionAndDeliveredOnceInOrder() throws {
        let port = try FeedEngineOverRealSockets.freeTCPPort()
        let feed = try Self.startFeed(retransmissionPort: port)
        defer {
            feed.engine.stop()
            _ = feed.engine.thread.join()
        }
        let venue = try Venue(feedPort: feed.udpPort, serverPort: port)
        venue.append((1...200).map(Venue.trade))
        // Messages 51-80 (30 of them) never arrive by UDP; 120 arrives twice.
        venue.send(1..<201, drop: Set(51...80))
        venue.send(120..<121)
        venue.serve(for: 1.0)

        let ticks = try FeedEngineOverRealSockets.receiveTicks(feed.subscriber, count: 199, timeout: .seconds(3))
        #expect(ticks.count == 199)  // 200 trades minus the stock directory's sequence number 1
        #expect(ticks.allSatisfy { $0.type == .trade })
        #expect(ticks.map(\.venueSequence) == Array(2...200))
        let prices: [UInt32] = ticks.map { $0.price.itchPrice4 }
        let expectedPrices: [UInt32] = (UInt32(1)...UInt32(199)).map { 1_000_000 + $0 }
        #expect(prices == expectedPrices)
        let status = try FeedEngineOverRealSockets.status(feed.context, try #require(feed.engine.endpoints["control"]))
        #expect(status.counters["XNAS.gaps_healed"] == 1)
        #expect(status.counters["XNAS.messages_lost"] == 0)
        #expect(status.counters["XNAS.duplicates"] == 1)
        #expect((status.counters["XNAS.retransmitted_packets"] ?? 0) > 0)
        #expect(status.counters["XNAS.held_high_water"] == 120)  // 81-200 waited behind the gap
        #expect(try #require(venue.server).messagesResent >= 30)
    }

    @Test func withTheRetransmissionServerDownAGapBecomesAGapStatusAndLaterGapsStillHeal() throws {
        let port = try FeedEngineOverRealSockets.freeTCPPort()
        let feed = try Self.startFeed(retransmissionPort: port, giveUp: .milliseconds(500))
        defer {
            feed.engine.stop()
            _ = feed.engine.thread.join()
        }
        let venue = try Venue(feedPort: feed.udpPort, serverPort: port, startServer: false)
        venue.append((1...100).map(Venue.trade))
        venue.send(1..<51, drop: Set(21...25))
        venue.serve(for: 1.0)  // no server: nothing answers

        var ticks = try FeedEngineOverRealSockets.receiveTicks(feed.subscriber, count: 45, timeout: .seconds(3))
        let gap = try #require(ticks.first { $0.symbol == Topic.system })
        #expect(gap.quality == .gap)
        #expect(gap.reason.contains("messages 21-25 lost"))
        #expect(ticks.filter { $0.type == .trade }.map(\.venueSequence) == Array(2...20) + Array(26...50))

        // The server comes back: the next gap heals.
        try venue.startServer()
        venue.send(51..<101, drop: Set(71...75))
        venue.serve(for: 1.0)
        ticks = try FeedEngineOverRealSockets.receiveTicks(feed.subscriber, count: 50, timeout: .seconds(3))
        #expect(ticks.map(\.venueSequence) == Array(51...100))
        let status = try FeedEngineOverRealSockets.status(feed.context, try #require(feed.engine.endpoints["control"]))
        #expect(status.counters["XNAS.gaps_given_up"] == 1)
        #expect(status.counters["XNAS.messages_lost"] == 5)
        #expect(status.counters["XNAS.gaps_healed"] == 1)

        // `gaps` on the control endpoint lists what was lost.
        let control = try ZMQSocket(feed.context, type: .request)
        try control.setReceiveTimeout(milliseconds: 2000)
        try control.connect(try #require(feed.engine.endpoints["control"]))
        try control.send(#"{"cmd":"gaps"}"#)
        let reply = try JSONDecoder().decode(FeedGapsReply.self, from: Data(try #require(try control.receiveFrames())[0]))
        #expect(reply.lost.map { [$0.firstSequence, $0.lastSequence] } == [[21, 25]])
        #expect(reply.venues.first?.healed == 1)
    }

    @Test func aLateJoinerRecoversTheSessionFromItsStart() throws {
        let port = try FeedEngineOverRealSockets.freeTCPPort()
        let feed = try Self.startFeed(retransmissionPort: port)
        defer {
            feed.engine.stop()
            _ = feed.engine.thread.join()
        }
        let venue = try Venue(feedPort: feed.udpPort, serverPort: port)
        venue.append((1...60).map(Venue.trade))
        // feedd hears only from message 41 on, so it has never seen the stock directory.
        venue.send(41..<62)
        venue.serve(for: 1.0)
        let ticks = try FeedEngineOverRealSockets.receiveTicks(feed.subscriber, count: 60, timeout: .seconds(3))
        #expect(ticks.map(\.venueSequence) == Array(2...61))
        #expect(ticks.allSatisfy { $0.symbol == "AAPL" })
    }
}
