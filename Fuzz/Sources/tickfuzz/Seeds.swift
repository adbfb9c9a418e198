import Foundation
import MarketData
@testable import FeedHandler
@testable import TickerPlant

/// The seed corpus of every target (Fuzz/corpus/TARGET/seed-N), written by our own encoders and files so that the
/// fuzzer starts from real inputs of each kind: `tickfuzz seeds Fuzz/corpus`. Findings kept as regression inputs sit
/// beside them (finding-NAME).
enum Seeds {
    static func write(into directory: String) -> Bool {
        var written = 0
        for (target, inputs) in all() {
            let folder = directory + "/" + target
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for (index, input) in inputs.enumerated() {
                    try Data(input).write(to: URL(fileURLWithPath: folder + "/seed-\(index + 1)"))
                    written += 1
                }
            } catch {
                FileHandle.standardError.write(Data("tickfuzz seeds: \(folder): \(error)\n".utf8))
                return false
            }
        }
        print("\(written) seeds written under \(directory)")
        return true
    }

    static func all() -> [(String, [[UInt8]])] {
        [
            ("mold", mold()), ("itch", [joinPieces(itchDay())]),
            ("json-a", [#"{"sym":"AAPL","px":178.52,"ts":1701432000000}"#, #"{"sym":"MSFT","px":"410.10","ts":1701432000001}"#]
                .map { Array($0.utf8) }),
            ("json-b", [#"{"symbol":"AAPL","lastPrice":"178.53","timestamp":"2025-12-01T10:00:00Z"}"#,
                #"{"symbol":"MSFT","lastPrice":"410.1","timestamp":"2025-12-01T10:00:00.123456789Z"}"#]
                .map { Array($0.utf8) }),
            ("tick", ticks()), ("client-message", clientMessages()), ("control", control()),
            ("journal", [journalSegment()]), ("checkpoint", [checkpoint()]), ("config", configs()),
        ]
    }

    /// A trading day's opening in ITCH: a system event, the directory, orders, executions, a trade, a halt.
    static func itchDay() -> [[UInt8]] {
        let header = { (number: UInt64) in ItchHeader(stockLocate: 1, timestamp: 34_200_000_000_000 + number) }
        return [
            ItchEncoder.systemEvent(header(0), code: "Q"),
            ItchEncoder.stockDirectory(header(1), symbol: "AAPL"),
            ItchEncoder.addOrder(header(2), reference: 1, side: .buy, shares: 100, symbol: "AAPL", price: 1_785_200),
            ItchEncoder.addOrder(header(3), reference: 2, side: .sell, shares: 200, symbol: "AAPL", price: 1_785_400),
            ItchEncoder.orderExecuted(header(4), reference: 1, shares: 50, matchNumber: 1),
            ItchEncoder.orderReplace(header(5), originalReference: 2, newReference: 3, shares: 150, price: 1_785_300),
            ItchEncoder.orderCancel(header(6), reference: 3, shares: 50),
            ItchEncoder.trade(header(7), shares: 100, symbol: "AAPL", price: 1_785_250, matchNumber: 2),
            ItchEncoder.orderDelete(header(8), reference: 1),
            ItchEncoder.tradingAction(header(9), symbol: "AAPL", state: "H", reason: "LUDP"),
        ]
    }

    /// Datagrams: the day in order, then a gap and a heartbeat past it, then another session.
    static func mold() -> [[UInt8]] {
        let day = itchDay()
        let inOrder = [MoldPacket.encode(session: "S1", sequenceNumber: 1, messages: Array(day[0..<5])),
            MoldPacket.encode(session: "S1", sequenceNumber: 6, messages: Array(day[5...]))]
        let gapped = [MoldPacket.encode(session: "S1", sequenceNumber: 1, messages: Array(day[0..<3])),
            MoldPacket.encode(session: "S1", sequenceNumber: 7, messages: Array(day[6...])),
            MoldPacket.heartbeat(session: "S1", nextSequence: 20)]
        let newSession = inOrder + [MoldPacket.encode(session: "S2", sequenceNumber: 1, messages: [day[0]]),
            MoldPacket.encode(session: "S2", sequenceNumber: 2, messages: [day[1]])]
        return [joinPieces(inOrder), joinPieces(gapped), joinPieces(newSession)]
    }

    static func ticks() -> [[UInt8]] {
        let encoder = TickEncoder()
        var trade = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 1_785_200_000), size: 100)
        trade.streamSequence = 812
        trade.symbolSequence = 77
        var quote = Tick(symbol: "MSFT", type: .quote, venue: "CONS")
        quote.bidPrice = Price(fixedPoint: 4_101_000_000)
        quote.askPrice = Price(fixedPoint: 4_102_000_000)
        quote.bidSize = 300
        quote.askSize = 100
        var status = Tick(symbol: "AAPL", type: .status, venue: "CONS")
        status.quality = .gap
        status.state = .halted
        status.reason = "LUDP"
        return [trade, quote, status].map { encoder.encodeToArray($0) }
    }

    static func clientMessages() -> [[UInt8]] {
        [#"{"action":"subscribe","symbol":"AAPL"}"#,
            #"{"action":"subscribe","symbols":["AAPL","MSFT"],"mode":"quote","maxRate":4,"fromSeq":{"AAPL":813}}"#,
            #"{"action":"unsubscribe","symbols":["MSFT"]}"#, #"{"action":"auth","token":"a.b.c"}"#,
            #"{"action":"ping"}"#].map { Array($0.utf8) }
    }

    static func control() -> [[UInt8]] {
        [ReplayRequest.snapshot(prefix: "AA").encoded(),
            ReplayRequest.symbolReplay(symbol: "AAPL", fromSymbolSequence: 812).encoded(),
            ReplayRequest.streamReplay(fromStreamSequence: 9_001, maxCount: 50).encoded(),
            SnapshotEnd(streamSequence: 9_050, tickCount: 50, complete: true).encoded(),
            Array(#"{"cmd":"status"}"#.utf8), Array(#"{"cmd":"why","symbol":"AAPL"}"#.utf8)]
    }

    /// A segment of 20 trades as plantd's writer lays it out.
    static func journalSegment() -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickfuzz-seed-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = JournalConfiguration()
        configuration.directory = directory
        guard let writer = try? JournalWriter(configuration: configuration, directory: directory, nextIndex: 1) else {
            return []
        }
        let encoder = TickEncoder()
        var batch = OutboundBatch()
        for sequence in UInt64(1)...20 {
            let symbol = ["AAPL", "MSFT"][Int(sequence % 2)]
            var tick = Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: Int64(sequence) * 10_000),
                size: 100)
            tick.streamSequence = sequence
            tick.symbolSequence = (sequence + 1) / 2
            Array(Topic.make(symbol: symbol, type: .trade).utf8).withUnsafeBytes { topic in
                batch.append(streamSequence: sequence, symbolSequence: tick.symbolSequence, feedID: 7,
                    feedSequence: sequence, topic: topic, payload: encoder.encode(tick))
            }
        }
        _ = writer.append(batch)
        writer.close()
        let names = JournalCursor.segmentNames(directory)
        return names.first.flatMap { FileManager.default.contents(atPath: directory + "/" + $0) }.map(Array.init) ?? []
    }

    /// The checkpoint of the seed segment's state: two symbols' last values, a feed, a symbol checkpoint each.
    static func checkpoint() -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickfuzz-seed-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let segment = journalSegment()
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: directory + "/20261207-000001.tpj", contents: Data(segment)),
            let recovery = try? JournalRecovery(directory: directory, ringCapacity: 64)
        else { return [] }
        return JournalCheckpoint.encode(recovery.state)
    }

    /// The daemons' files of etc/ (found from the working directory, the repository's root or Fuzz/), each after
    /// its selector byte.
    static func configs() -> [[UInt8]] {
        let etc = FileManager.default.fileExists(atPath: "etc/feedd.toml") ? "etc" : "../etc"
        return [(0, "feedd"), (1, "plantd"), (2, "edged")].compactMap { selector, daemon in
            FileManager.default.contents(atPath: "\(etc)/\(daemon).toml").map { [UInt8(selector)] + Array($0) }
        }
    }
}
