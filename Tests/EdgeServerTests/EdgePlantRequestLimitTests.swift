import Foundation
import Logging
import Testing

import EdgeServer
import MarketData
import TickerPlant
import ZeroMQ

/// What edged asks of plantd's snapshot ROUTER is bounded in all and per client (DESIGN section 12), so that its
/// clients cannot make it pass an unbounded load on to plantd.
@Suite(.serialized) struct EdgePlantRequestLimits {
    /// edged whose snapshot ROUTER is a plain ROUTER of the test that takes requests and answers only when told
    /// (a plantd that is slow to answer), and whose stream is a PUB that sends nothing.
    final class Edge {
        let context: ZMQContext
        let router: ZMQSocket
        let publisher: ZMQSocket
        let edge: EdgeServer
        let port: Int

        init(resumeMaxUpdates: Int = 1_000, symbolsPerClient: Int = 500) async throws {
            context = try ZMQContext()
            router = try ZMQSocket(context, type: .router)
            try router.bind("tcp://127.0.0.1:*")
            try router.setReceiveTimeout(milliseconds: 300)
            publisher = try ZMQSocket(context, type: .publish)
            try publisher.bind("tcp://127.0.0.1:*")
            var configuration = EdgeConfiguration()
            configuration.port = 0
            configuration.upstream = try publisher.lastEndpoint
            configuration.snapshotEndpoint = try router.lastEndpoint
            configuration.controlEndpoint = "tcp://127.0.0.1:*"
            configuration.snapshotTimeout = .seconds(30)  // nothing expires while the test looks
            configuration.drainTimeout = .milliseconds(300)
            configuration.resumeMaxUpdates = resumeMaxUpdates
            configuration.maxSymbolsPerClient = symbolsPerClient
            edge = EdgeServer(configuration: configuration, context: context, logger: Logger(label: "edge"))
            try await edge.start()
            port = try #require(edge.port)
        }

        /// The requests that reached the ROUTER within `settle` of quiet, each with the identity to answer it by.
        func requests(settle: Int32 = 300) throws -> [(identity: [UInt8], request: ReplayRequest)] {
            try router.setReceiveTimeout(milliseconds: settle)
            var taken: [(identity: [UInt8], request: ReplayRequest)] = []
            while let frames = try router.receiveFrames() {
                taken.append((frames[0], try #require(ReplayRequest(decoding: frames[frames.count - 1]))))
            }
            return taken
        }

        /// Answers one request with nothing but its end (complete, empty).
        func answer(_ identity: [UInt8]) throws {
            _ = try router.send(identity, more: true)
            _ = try router.send(SnapshotEnd.topic, more: true)
            _ = try router.send(SnapshotEnd(streamSequence: 0, tickCount: 0, complete: true).encoded())
        }

        func stop() async {
            await edge.stop()
            router.close()
            publisher.close()
        }
    }

    static func subscribe(_ symbols: [String], fromSeq: Int? = nil) -> String {
        let names = symbols.map { "\"\($0)\"" }.joined(separator: ",")
        guard let fromSeq else { return #"{"action":"subscribe","symbols":[\#(names)]}"# }
        let from = symbols.map { "\"\($0)\":\(fromSeq)" }.joined(separator: ",")
        return #"{"action":"subscribe","symbols":[\#(names)],"fromSeq":{\#(from)}}"#
    }

    @Test func edgedHasAtMostThirtyTwoRequestsAwaitingPlantdAndSendsTheRestAsAnswersCome() async throws {
        let edge = try await Edge()
        let client = try TestWebSocketClient(port: edge.port)
        try client.send(text: Self.subscribe((1...40).map { "S\($0)" }))
        _ = try client.receiveText()
        let first = try edge.requests()
        #expect(first.count == 32, "32 in flight, 8 waiting in edged")
        #expect(first.allSatisfy { if case .snapshot = $0.request { true } else { false } })
        // Three answered: three more go out, and no more.
        for (identity, _) in first.prefix(3) { try edge.answer(identity) }
        #expect(try edge.requests().count == 3)
        await edge.stop()
    }

    /// The symbols of `requests` that are symbol replays from `from` (all of them must be).
    static func replayed(_ requests: [(identity: [UInt8], request: ReplayRequest)], from: UInt64) -> Set<String>? {
        var symbols: Set<String> = []
        for (_, request) in requests {
            guard case let .symbolReplay(symbol, fromSymbolSequence) = request, fromSymbolSequence == from else {
                return nil
            }
            symbols.insert(symbol)
        }
        return symbols.count == requests.count ? symbols : nil
    }

    @Test func aClientHasAtMostEightReplaysAskedOfPlantdAtOnceAndOthersAreNotHeldUpByIt() async throws {
        let edge = try await Edge()
        let first = try TestWebSocketClient(port: edge.port)
        let symbols = Set((1...12).map { "S\($0)" })
        try first.send(text: Self.subscribe(symbols.sorted(), fromSeq: 5))
        _ = try first.receiveText()
        let asked = try edge.requests()
        let askedSymbols = try #require(Self.replayed(asked, from: 5), "\(asked.map(\.request))")
        #expect(askedSymbols.count == 8 && askedSymbols.isSubset(of: symbols))
        // Another client's replays go out at once, beside the first one's four that wait.
        let second = try TestWebSocketClient(port: edge.port)
        try second.send(text: Self.subscribe(["T1", "T2"], fromSeq: 7))
        _ = try second.receiveText()
        #expect(Self.replayed(try edge.requests(), from: 7) == ["T1", "T2"])
        // Three of the first client's answered: three of its four waiting go out, the last still waits.
        for (identity, _) in asked.prefix(3) { try edge.answer(identity) }
        let next = try #require(Self.replayed(try edge.requests(), from: 5))
        #expect(next.count == 3 && next.isSubset(of: symbols.subtracting(askedSymbols)), "\(next)")
        #expect(try EdgeStatusProbe.status(of: edge.edge, context: edge.context).counters["replays_snapshotted"] == 0)
        await edge.stop()
    }

    @Test func aClientWhoseWaitingReplaysReachItsSymbolLimitGetsSnapshotsInstead() async throws {
        let edge = try await Edge(symbolsPerClient: 10)
        let client = try TestWebSocketClient(port: edge.port)
        let symbols = (1...10).map { "S\($0)" }
        // Ten replays: eight asked, two waiting. Unsubscribed and asked again (plantd answers nothing meanwhile):
        // ten more would wait, but a client may have only as many waiting as it may watch symbols (10).
        try client.send(text: Self.subscribe(symbols, fromSeq: 5))
        _ = try client.receiveText()
        #expect(try edge.requests().count == 8)
        try client.send(text: #"{"action":"unsubscribe","symbols":[\#(symbols.map { "\"\($0)\"" }.joined(separator: ","))]}"#)
        _ = try client.receiveText()
        try client.send(text: Self.subscribe(symbols, fromSeq: 5))
        _ = try client.receiveText()
        let asked = try edge.requests()
        #expect(asked.count == 2 && asked.allSatisfy { if case .snapshot = $0.request { true } else { false } },
            "\(asked.map(\.request))")
        #expect(try EdgeStatusProbe.status(of: edge.edge, context: edge.context).counters["replays_snapshotted"] == 2)
        await edge.stop()
    }
}
