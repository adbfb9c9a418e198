import Foundation
import Logging
import Testing

@testable import FeedHandler
import MarketData
import TickerPlant
import ZeroMQ

/// `[curve]` on feedd: its stream and replay ROUTER encrypted and open only to the keys it lists, and plantd
/// connecting to both as a CURVE client with its own key pair (`[curve] feed_key_files`). Real engines, real UDP
/// and ZeroMQ sockets on 127.0.0.1.
@Suite(.serialized) struct FeedCurveOverRealSockets {
    @Test func plantdWithItsListedKeyGetsTheFeedAndOthersGetNothingAndAreCounted() throws {
        let feedKeys = try CurveKeyPair.generate()
        let plantKeys = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        // One context per daemon, as in two processes: libzmq takes one ZAP handler per context.
        let context = try ZMQContext()
        let plantContext = try ZMQContext()

        var feedConfiguration = FeedConfiguration()
        feedConfiguration.publishEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.replayEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.controlEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.venues = [.init(venue: "XNAS",
            source: .itch(.init(listenHost: "127.0.0.1", listenPort: 0)), timezone: "UTC")]
        feedConfiguration.curve = CurveServerConfiguration(secretKey: feedKeys.secretKey,
            clientKeys: [plantKeys.publicKey])
        let feed = FeedEngine(configuration: feedConfiguration, context: context, logger: Logger(label: "test"))
        try feed.start()
        defer {
            feed.stop()
            _ = feed.thread.join()
        }

        var plantConfiguration = PlantConfiguration()
        plantConfiguration.feeds = [try #require(feed.endpoints["publish"])]
        plantConfiguration.replays = [try #require(feed.endpoints["replay"])]
        plantConfiguration.publishEndpoint = "tcp://127.0.0.1:*"
        plantConfiguration.snapshotEndpoint = "tcp://127.0.0.1:*"
        plantConfiguration.controlEndpoint = "tcp://127.0.0.1:*"
        plantConfiguration.curve = CurveServerConfiguration(secretKey: plantKeys.secretKey,
            clientKeys: [stranger.publicKey])
        plantConfiguration.feedServerKeys = [feedKeys.publicKey]
        let plant = PlantEngine(configuration: plantConfiguration, context: plantContext, logger: Logger(label: "test"))
        try plant.start()
        defer {
            plant.stop()
            _ = plant.thread.join()
        }

        func subscriber(_ keys: CurveKeyPair?) throws -> ZMQSocket {
            let socket = try ZMQSocket(context, type: .subscribe)
            try socket.setLinger(milliseconds: 0)
            if let keys {
                try socket.setCurveClient(
                    try #require(CurveClientKeys(serverKey: feedKeys.publicKey, secretKey: keys.secretKey)))
            }
            try socket.subscribe("")
            try socket.setReceiveTimeout(milliseconds: 100)
            try socket.connect(try #require(feed.endpoints["publish"]))
            return socket
        }
        let plain = try subscriber(nil)
        let unknown = try subscriber(stranger)
        defer { [plain, unknown].forEach { $0.close() } }
        Thread.sleep(forTimeInterval: 0.5)

        let udpPort = try #require(feed.endpoints["udp:XNAS"].flatMap { ConfigReader.parseHostPort($0)?.port })
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: udpPort))
        let trades = (1...5).map { number in
            ItchEncoder.trade(ItchHeader(stockLocate: 1, timestamp: number), shares: 100, symbol: "AAPL",
                price: UInt32(1_000_000 + number), matchNumber: number)
        }
        sender.send(MoldPacket.encode(session: "S1", sequenceNumber: 1,
            messages: [ItchEncoder.stockDirectory(ItchHeader(stockLocate: 1, timestamp: 0), symbol: "AAPL")] + trades))

        // plantd, whose key feedd lists, takes all five.
        func plantStatus() throws -> DaemonStatus {
            let control = try ZMQSocket(context, type: .request)
            defer { control.close() }
            try control.setReceiveTimeout(milliseconds: 2_000)
            try control.connect(try #require(plant.endpoints["control"]))
            _ = try control.send(Array(#"{"cmd":"status"}"#.utf8))
            return try JSONDecoder().decode(DaemonStatus.self, from: Data(try #require(try control.receiveFrames())[0]))
        }
        var received: UInt64 = 0
        let deadline = Date().addingTimeInterval(5)
        while received < 5 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            received = try plantStatus().messagesIn
        }
        #expect(received == 5, "plantd received the feed over CURVE")
        for socket in [plain, unknown] {
            #expect(try socket.receiveFrames() == nil, "a subscriber feedd does not list got ticks")
        }

        // The replay ROUTER answers plantd's key only.
        func replay(_ keys: CurveKeyPair) throws -> Int? {
            let dealer = try ZMQSocket(context, type: .dealer)
            defer { dealer.close() }
            try dealer.setLinger(milliseconds: 0)
            try dealer.setCurveClient(
                try #require(CurveClientKeys(serverKey: feedKeys.publicKey, secretKey: keys.secretKey)))
            try dealer.setReceiveTimeout(milliseconds: 1_500)
            try dealer.connect(try #require(feed.endpoints["replay"]))
            _ = try dealer.send(ReplayRequest.streamReplay(fromStreamSequence: 1, maxCount: 0).encoded())
            var ticks = 0
            while let frames = try dealer.receiveFrames() {
                if frames[0] == Array(SnapshotEnd.topic.utf8) { return ticks }
                ticks += 1
            }
            return nil
        }
        #expect(try replay(plantKeys) == 5)
        #expect(try replay(stranger) == nil)

        let control = try ZMQSocket(context, type: .request)
        defer { control.close() }
        try control.setReceiveTimeout(milliseconds: 2_000)
        try control.connect(try #require(feed.endpoints["control"]))
        _ = try control.send(Array(#"{"cmd":"status"}"#.utf8))
        let status = try JSONDecoder().decode(DaemonStatus.self,
            from: Data(try #require(try control.receiveFrames())[0]))
        // A refused client tries again (libzmq reconnects), so the stranger's SUB and DEALER count at least once each;
        // a client without CURVE fails before any key is asked, so it counts nowhere.
        #expect((status.counters["curve_clients_refused"] ?? 0) >= 2, "\(status.counters)")
        #expect(status.counters["curve_clients_accepted"] == 3, "plantd's SUB and DEALER, the test's DEALER: \(status.counters)")
    }
}
