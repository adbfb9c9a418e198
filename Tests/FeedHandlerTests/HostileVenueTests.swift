import Foundation
import Logging
import Testing

@testable import FeedHandler
import MarketData
import ZeroMQ

/// feedd's engine in-process, fed what an attacker or a broken venue sends, over real UDP, TCP and ZeroMQ sockets:
/// it stays up, refuses and counts what it cannot take, and the real stream goes on.
@Suite(.serialized) struct HostileVenueInput {
    typealias Fixture = FeedEngineOverRealSockets

    /// An ITCH venue's trade of AAPL (locate 1) at 100.0000 + `number`/10 000, match `number`.
    static func trade(_ number: UInt64) -> [UInt8] {
        ItchEncoder.trade(ItchHeader(stockLocate: 1, timestamp: number), shares: 100, symbol: "AAPL",
            price: UInt32(1_000_000 + number), matchNumber: number)
    }

    /// feedd with one ITCH venue (no retransmission server: a gap is given up after 300 ms), a subscriber of
    /// everything, and a sender to its UDP port.
    final class ItchVenue {
        let context: ZMQContext
        let engine: FeedEngine
        let subscriber: ZMQSocket
        let sender: UDPSender

        init(change: (inout FeedConfiguration.ItchSource) -> Void = { _ in }) throws {
            context = try ZMQContext()
            var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0)
            source.gapGiveUp = .milliseconds(300)
            change(&source)
            engine = FeedEngine(
                configuration: Fixture.configuration(venues: [.init(venue: "XNAS", source: .itch(source),
                    timezone: "UTC")]),
                context: context, logger: Logger(label: "test"))
            try engine.start()
            subscriber = try ZMQSocket(context, type: .subscribe)
            try subscriber.connect(try #require(engine.endpoints["publish"]))
            try subscriber.subscribe("")
            Thread.sleep(forTimeInterval: 0.3)  // ZeroMQ's slow joiner: let the subscription reach the PUB
            let udpPort = try #require(engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
            sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort))
        }

        func stop() {
            subscriber.close()
            engine.stop()
            _ = engine.thread.join()
        }

        func status() throws -> DaemonStatus {
            try Fixture.status(context, try #require(engine.endpoints["control"]))
        }

        /// The trades' match numbers among the next `count` ticks (or what came within 3 s).
        func tradeMatches(count: Int) throws -> [UInt64] {
            try Fixture.receiveTicks(subscriber, count: count, timeout: .seconds(3)).filter { $0.type == .trade }
                .map(\.tradeID)
        }
    }

    @Test func oneDatagramFarAheadNeitherBlackholesTheVenueNorLosesAMessage() throws {
        let venue = try ItchVenue()
        defer { venue.stop() }
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(1)]))
        #expect(try venue.tradeMatches(count: 1) == [1])
        // The venue's own session name, sequence 2^62, one message: before, feedd opened a gap to it, gave the gap up
        // after gap_giveup (4 611 686 018 427 387 902 messages "lost") and dropped every real packet after it.
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1 << 62, messages: [Self.trade(99)]))
        Thread.sleep(forTimeInterval: 0.5)  // past gap_giveup
        for number in UInt64(2)...6 {
            venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: number + 1, messages: [Self.trade(number)]))
        }
        #expect(try venue.tradeMatches(count: 5) == [2, 3, 4, 5, 6])
        let status = try venue.status()
        #expect(status.counters["XNAS.gaps_given_up"] == 0)
        #expect(status.messagesLost == 0 && status.gapsGivenUp == 0)
        #expect(status.counters["XNAS.packets_held_aside"] == 1)
        #expect(status.counters["XNAS.stream_moves_proven"] == 0)
    }

    @Test func aDatagramFromASenderAllowedSourcesDoesNotListIsDroppedUnreadAndCounted() throws {
        let venue = try ItchVenue { $0.allowedSources = try! SourceFilter(["127.0.0.1", "10.9.0.0/16"]) }
        defer { venue.stop() }
        let udpPort = try #require(venue.engine.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        // Another host on the path (127.0.0.2: any 127/8 address is this machine's loopback) sends a packet that
        // would otherwise be the stream's start: another session, a directory naming a symbol, a trade.
        let stranger = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort),
            source: try SocketAddress(host: "127.0.0.2", port: 0))
        stranger.send(SpecBytes.moldPacket(session: "EVIL", sequence: 1, messages: [SpecBytes.stockDirectory,
            Self.trade(666)]))
        Thread.sleep(forTimeInterval: 0.2)
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(1), Self.trade(2)]))
        #expect(try venue.tradeMatches(count: 2) == [1, 2], "the stranger's trade never reached the stream")
        let status = try venue.status()
        #expect(status.counters["XNAS.foreign_datagrams"] == 1)
        #expect(status.counters["XNAS.malformed"] == 0)
    }

    @Test(arguments: [
        ("10.1.1.5", "10.1.1.5", true), ("10.1.1.5", "10.1.1.6", false), ("10.1.1.0/24", "10.1.1.200", true),
        ("10.1.1.0/24", "10.1.2.1", false), ("10.1.0.0/15", "10.0.255.1", true), ("10.1.0.0/15", "10.2.0.1", false),
        ("::1", "::1", true), ("2001:db8::/32", "2001:db8:1::9", true), ("2001:db8::/32", "2001:db9::1", false),
        ("10.1.1.5", "::ffff:10.1.1.5", false), ("0.0.0.0/0", "192.0.2.1", true),
    ])
    func allowedSourcesMatchAddressesAndPrefixes(_ entry: String, _ sender: String, _ admitted: Bool) throws {
        let filter = try SourceFilter([entry])
        var address = try SocketAddress(host: sender, port: 7001)
        #expect(withUnsafePointer(to: &address.storage) { filter.admits($0) } == admitted, "\(entry) \(sender)")
    }

    @Test(arguments: ["10.1.1", "10.1.1.0/33", "::1/129", "host.example", "10.0.0.1/8/1", "10.0.0.1/-1"])
    func anAllowedSourceThatIsNoAddressIsRefusedWithTheEntry(_ entry: String) {
        #expect(throws: SourceFilterError.self) { try SourceFilter(["127.0.0.1", entry]) }
    }

    @Test func oneDatagramOfAnotherSessionDoesNotResetTheBook() throws {
        let venue = try ItchVenue()
        defer { venue.stop() }
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, SpecBytes.addOrder]))
        Thread.sleep(forTimeInterval: 0.2)
        venue.sender.send(SpecBytes.moldPacket(session: "EVIL", sequence: 1, messages: [SpecBytes.systemEvent]))
        Thread.sleep(forTimeInterval: 0.2)
        // The execution takes its price from order 1001 of the book: a reset book would not know the order.
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 3, messages: [SpecBytes.orderExecuted]))
        let ticks = try Fixture.receiveTicks(venue.subscriber, count: 10, timeout: .seconds(2))
        let trades = ticks.filter { $0.type == .trade }
        #expect(trades.map(\.price) == [Price(fixedPoint: 178_520_000)])
        let status = try venue.status()
        #expect(status.counters["XNAS.unknown_orders"] == 0)
        #expect(status.counters["XNAS.packets_held_aside"] == 1)
    }

    @Test func aVenueThatReallyStartsANewSessionIsFollowedAfterItsProofWithNothingLost() throws {
        let venue = try ItchVenue { $0.sessionProofPackets = 3 }
        defer { venue.stop() }
        venue.sender.send(SpecBytes.moldPacket(session: "DAY1", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(1)]))
        #expect(try venue.tradeMatches(count: 1) == [1])
        // The new day names its symbols again; its first packets wait for the proof and then flow in order.
        venue.sender.send(SpecBytes.moldPacket(session: "DAY2", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(10)]))
        for number in UInt64(11)...13 {
            venue.sender.send(SpecBytes.moldPacket(session: "DAY2", sequence: number - 8,
                messages: [Self.trade(number)]))
        }
        #expect(try venue.tradeMatches(count: 4) == [10, 11, 12, 13])
        let status = try venue.status()
        #expect(status.counters["XNAS.stream_moves_proven"] == 1)
        #expect(status.counters["XNAS.packets_refused"] == 0)
        #expect(status.messagesLost == 0)
    }

    @Test func sequencesNear2To64AreCountedAsMalformedAndTheFeedStaysUp() throws {
        let venue = try ItchVenue()
        defer { venue.stop() }
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(1)]))
        #expect(try venue.tradeMatches(count: 1) == [1])
        // Before, a packet of two messages from 2^64 - 1 trapped feedd counting past 2^64.
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: UInt64.max,
            messages: [Self.trade(7), Self.trade(8)]))
        venue.sender.send(MoldPacket.heartbeat(session: "S1", nextSequence: UInt64.max))
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 3, messages: [Self.trade(2)]))
        #expect(try venue.tradeMatches(count: 1) == [2])
        let status = try venue.status()
        #expect(status.counters["XNAS.malformed"] == 2)
    }

    @Test func aGapGivenUpShowsInStatusAsLostMessages() throws {
        let venue = try ItchVenue()
        defer { venue.stop() }
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 1,
            messages: [SpecBytes.stockDirectory, Self.trade(1)]))
        venue.sender.send(SpecBytes.moldPacket(session: "S1", sequence: 6, messages: [Self.trade(5)]))
        // Messages 3-5 never come and no retransmission server is configured: given up after 300 ms.
        #expect(try venue.tradeMatches(count: 3) == [1, 5])
        let status = try venue.status()
        #expect(status.gapsGivenUp == 1 && status.messagesLost == 3)
    }

    @Test func jsonTimesNanosecondsCannotHoldAreCountedAndTheVenueGoesOn() throws {
        try Fixture.withJSONVenue("BATS", .formatB) { context, control, subscriber, venue in
            // Before, the first line trapped feedd ("arithmetic overflow" in the ISO 8601 reader): every venue gone.
            for line in [#"{"symbol":"AAPL","lastPrice":"178.53","timestamp":"9999-01-01T00:00:00Z"}"#,
                #"{"symbol":"MSFT","lastPrice":"410.1","timestamp":"2025-12-01T10:00:00Z"}"#]
            {
                venue.writeAll(Array(line.utf8) + [10])
            }
            let ticks = try Fixture.receiveTicks(subscriber, count: 1)
            #expect(ticks.map(\.symbol) == ["MSFT"])
            let status = try Fixture.status(context, control)
            #expect(status.counters["BATS.malformed"] == 1)
            #expect(status.counters["BATS.connected"] == 1)
        }
    }
}
