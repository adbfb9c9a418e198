import FeedHandler
import Foundation
import MarketData

/// The built-in exchange: a universe of symbols with Zipf-skewed activity and random-walk prices, sent as ITCH 5.0 in
/// MoldUDP64 over UDP and as both JSON venue formats over TCP (DESIGN section 3). Deterministic for a seed.
public final class MarketSimulator {
    public struct Counters: Sendable {
        public var itchMessages: UInt64 = 0
        public var itchPackets: UInt64 = 0
        public var jsonLines: UInt64 = 0
        public var trades: UInt64 = 0
        public var packetsLost: UInt64 = 0
        public var packetsDuplicated: UInt64 = 0
        public var packetsReordered: UInt64 = 0
        public var packetsCorrupted: UInt64 = 0
        public var retransmitted: UInt64 = 0
        /// Trades `--chaos badprice=` added at a bad price.
        public var badPrices: UInt64 = 0
        /// Trades `--chaos negvolume=` added with a bad (zero) volume.
        public var badVolumes: UInt64 = 0
    }

    struct Instrument {
        let symbol: String
        let locate: UInt16
        /// Mid price in ITCH Price(4) units (1/10000 dollar).
        var mid: UInt32
        var liveOrders: [UInt64] = []
    }

    let configuration: SimConfiguration
    var random: SplitMix64
    var instruments: [Instrument]
    let cumulativeWeights: [Double]
    let sessionMidnightNs: UInt64
    var nextOrderReference: UInt64 = 1
    var nextMatchNumber: UInt64 = 1
    var orders: [UInt64: (index: Int, side: OrderSide, price: UInt32, shares: UInt32)] = [:]
    public private(set) var counters = Counters()

    // Transport
    let udp: UDPSender
    let jsonListeners: [TCPListener]
    var jsonClients: [[FileDescriptor]] = [[], []]
    var pendingMessages: [[UInt8]] = []
    var pendingBytes = 0
    var nextSequence: UInt64 = 1
    var history: MoldHistory
    let retransmission: MoldRetransmissionServer
    var chaosRandom: SplitMix64
    var reorderedPacket: [UInt8]?
    var pendingHalts: [(symbol: String, atNs: UInt64, resume: Bool)] = []
    /// Every trade as a JSON line, when asked (`--trade-log`): what the tests compare the chain's output with.
    var tradeLog: FileHandle?
    /// Replays a recorded ITCH file instead of generating a market (`--itch FILE`).
    public var itchSource: ItchFileReader?
    /// Records every ITCH message sent (`--write-itch FILE`).
    public var itchRecorder: ItchFileWriter?
    public private(set) var sourceExhausted = false

    public init(configuration: SimConfiguration, tradeLogPath: String? = nil) throws {
        self.configuration = configuration
        random = SplitMix64(seed: configuration.seed)
        let symbols = SymbolUniverse.symbols(count: configuration.symbolCount, random: &random)
        instruments = symbols.enumerated().map { index, symbol in
            Instrument(symbol: symbol, locate: UInt16(index + 1), mid: SymbolUniverse.startingPrice(symbol, index: index))
        }
        // Zipf with exponent 1: the first symbols trade most.
        var total = 0.0
        cumulativeWeights = (1...symbols.count).map { rank in
            total += 1.0 / Double(rank)
            return total
        }
        sessionMidnightNs = sessionMidnightNanoseconds(timezone: configuration.timezone)
        udp = try UDPSender(destination: try SocketAddress(host: configuration.itchDestination.host,
            port: configuration.itchDestination.port))
        jsonListeners = try [configuration.jsonAListen, configuration.jsonBListen].map { listen in
            try TCPListener(address: try SocketAddress(host: listen.host, port: listen.port))
        }
        history = MoldHistory(capacity: configuration.history)
        retransmission = try MoldRetransmissionServer(
            address: try SocketAddress(host: configuration.retransmissionListen.host,
                port: configuration.retransmissionListen.port),
            session: configuration.itchSession)
        // Chaos draws from its own generator so that the market is the same with and without it.
        chaosRandom = SplitMix64(seed: configuration.seed ^ 0x00C4_A055)
        if let tradeLogPath {
            _ = FileManager.default.createFile(atPath: tradeLogPath, contents: nil)
            tradeLog = FileHandle(forWritingAtPath: tradeLogPath)
        }
    }

    public var symbols: [String] { instruments.map(\.symbol) }

    /// Runs until `shouldStop` says so or `maxMessages` are sent, pacing to the configured rate.
    /// `progress` is called about once a second.
    public func run(maxMessages: UInt64? = nil, shouldStop: () -> Bool, progress: (Counters, Double) -> Void) {
        if itchSource == nil { sendDirectory() }
        let start = MonotonicClock.nowNanoseconds()
        pendingHalts = configuration.chaos.halts.flatMap { halt in
            [(halt.symbol, start + UInt64(halt.afterSeconds * 1e9), false),
                (halt.symbol, start + UInt64((halt.afterSeconds + halt.forSeconds) * 1e9), true)]
        }
        var sent: UInt64 = 0
        var lastProgress = start
        var lastHeartbeat = start
        while !shouldStop() {
            acceptClients()
            retransmission.serve(history: history)
            let now = MonotonicClock.nowNanoseconds()
            sendDueHalts(now: now)
            let due = UInt64(Double(now - start) / 1e9 * Double(configuration.rate))
            // A bounded burst per turn, so that a simulator running behind still serves retransmission requests.
            var burst = 0
            while sent < due && burst < 2000 && !sourceExhausted {
                if let maxMessages, sent >= maxMessages { break }
                if let itchSource {
                    guard let message = itchSource.next() else {
                        sourceExhausted = true
                        break
                    }
                    queue(message)
                } else {
                    let instrument = step()
                    if configuration.chaos.badPrice > 0 || configuration.chaos.negativeVolume > 0 {
                        sendBadTrades(instrument)
                    }
                }
                sent += 1
                burst += 1
            }
            flushPackets()
            if now - lastHeartbeat >= 1_000_000_000 {
                udp.send(MoldPacket.heartbeat(session: configuration.itchSession, nextSequence: nextSequence))
                lastHeartbeat = now
            }
            if now - lastProgress >= 1_000_000_000 {
                progress(counters, Double(sent) / (Double(now - start) / 1e9))
                lastProgress = now
            }
            if let maxMessages, sent >= maxMessages { break }
            if sourceExhausted { break }
            if sent >= due { usleep(1000) }
        }
        flushPackets()
        if let packet = reorderedPacket { udp.send(packet) }
        // Keep serving retransmission while receivers still catch up (until 2 s pass without a request, 60 s at most),
        // sending heartbeats so that a loss at the very end is noticed too.
        let lingerStart = MonotonicClock.nowNanoseconds()
        while true {
            let now = MonotonicClock.nowNanoseconds()
            let quietSince = max(lingerStart, retransmission.lastRequestNs)
            if now - quietSince >= 2_000_000_000 || now - lingerStart >= 60_000_000_000 { break }
            retransmission.serve(history: history)
            udp.send(MoldPacket.heartbeat(session: configuration.itchSession, nextSequence: nextSequence))
            usleep(5_000)
        }
        counters.retransmitted = retransmission.messagesResent
        try? tradeLog?.synchronize()
        try? itchRecorder?.close()
    }

    /// Sends the halts and resumptions `--chaos halt=SYMBOL@Ns` asked for, as ITCH trading actions.
    func sendDueHalts(now: UInt64) {
        while let next = pendingHalts.min(by: { $0.atNs < $1.atNs }), next.atNs <= now {
            pendingHalts.removeAll { $0.symbol == next.symbol && $0.atNs == next.atNs }
            guard let instrument = instruments.first(where: { $0.symbol == next.symbol }) else { continue }
            queue(ItchEncoder.tradingAction(itchHeader(instrument.locate), symbol: instrument.symbol,
                state: next.resume ? "T" : "H", reason: next.resume ? "" : "T1"))
        }
    }

    // MARK: Market

    func pickInstrument() -> Int {
        let target = random.nextDouble() * cumulativeWeights.last!
        var low = 0
        var high = cumulativeWeights.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulativeWeights[middle] < target { low = middle + 1 } else { high = middle }
        }
        return low
    }

    func itchHeader(_ locate: UInt16) -> ItchHeader {
        let now = WallClock.nowNanoseconds()
        return ItchHeader(stockLocate: locate, trackingNumber: 0, timestamp: now &- sessionMidnightNs)
    }

    /// One market event; returns the instrument it moved.
    @discardableResult
    func step() -> Int {
        let index = pickInstrument()
        // Random walk of one cent either way, never below a dollar.
        let move = Int64(random.next() % 3) - 1
        instruments[index].mid = UInt32(max(10_000, Int64(instruments[index].mid) + move * 100))
        let choice = random.nextDouble()
        if choice < configuration.jsonShare {
            sendJSON(index, formatB: false)
        } else if choice < 2 * configuration.jsonShare {
            sendJSON(index, formatB: true)
        } else {
            itchEvent(index)
        }
        return index
    }

    /// The bad trades `--chaos badprice=,negvolume=` add after an event in `index`. They take match numbers from a
    /// range of their own, so the market's trades keep the numbers of a clean run; the trade log marks them.
    func sendBadTrades(_ index: Int) {
        let chaos = configuration.chaos
        let instrument = instruments[index]
        if chaos.badPrice > 0 && chaosRandom.nextDouble() < chaos.badPrice {
            counters.badPrices += 1
            // Half at 0 (non-positive), half at ten times the price (a jump no market makes in one trade).
            let price = chaosRandom.next() % 2 == 0 ? 0 : instrument.mid &* 10
            let venue = chaosRandom.nextDouble()
            if venue < configuration.jsonShare {
                sendJSON(index, formatB: false, price: Price(itchPrice4: price), chaos: "badprice")
            } else if venue < 2 * configuration.jsonShare {
                sendJSON(index, formatB: true, price: Price(itchPrice4: price), chaos: "badprice")
            } else {
                sendChaosTrade(instrument, price: price, shares: 100, chaos: "badprice")
            }
        }
        if chaos.negativeVolume > 0 && chaosRandom.nextDouble() < chaos.negativeVolume {
            counters.badVolumes += 1
            sendChaosTrade(instrument, price: instrument.mid, shares: 0, chaos: "negvolume")
        }
    }

    /// An ITCH non-cross trade (P) that `--chaos` made up.
    func sendChaosTrade(_ instrument: Instrument, price: UInt32, shares: UInt32, chaos: String) {
        queue(ItchEncoder.trade(itchHeader(instrument.locate), shares: shares, symbol: instrument.symbol, price: price,
            matchNumber: MarketSimulator.chaosMatchNumbers + counters.badPrices + counters.badVolumes))
        logTrade(venue: configuration.itchVenue, symbol: instrument.symbol, price: Price(itchPrice4: price),
            size: UInt64(shares), chaos: chaos)
    }

    /// Match numbers of made-up trades start here, far above any the market reaches.
    static let chaosMatchNumbers: UInt64 = 1 << 62

    func itchEvent(_ index: Int) {
        let instrument = instruments[index]
        let header = itchHeader(instrument.locate)
        let roll = random.nextDouble()
        if instrument.liveOrders.count < 4 || roll < 0.45 {
            let side: OrderSide = random.next() % 2 == 0 ? .buy : .sell
            let offset = UInt32(100 * (1 + random.next() % 5))
            let price = side == .buy ? instrument.mid - min(offset, instrument.mid - 100) : instrument.mid + offset
            let shares = UInt32(100 * (1 + random.next() % 10))
            let reference = nextOrderReference
            nextOrderReference += 1
            orders[reference] = (index, side, price, shares)
            instruments[index].liveOrders.append(reference)
            if instruments[index].liveOrders.count > 40 {
                let oldest = instruments[index].liveOrders.removeFirst()
                orders[oldest] = nil
                queue(ItchEncoder.orderDelete(header, reference: oldest))
            }
            queue(ItchEncoder.addOrder(header, reference: reference, side: side, shares: shares,
                symbol: instrument.symbol, price: price))
        } else {
            let position = Int(random.next() % UInt64(instrument.liveOrders.count))
            let reference = instrument.liveOrders[position]
            guard let order = orders[reference] else { return }
            if roll < 0.8 {
                // Execute part or all of the order at its own price.
                let shares = min(order.shares, UInt32(100 * (1 + random.next() % 3)))
                let matchNumber = nextMatchNumber
                nextMatchNumber += 1
                queue(ItchEncoder.orderExecuted(header, reference: reference, shares: shares, matchNumber: matchNumber))
                logTrade(venue: configuration.itchVenue, symbol: instrument.symbol,
                    price: Price(itchPrice4: order.price), size: UInt64(shares))
                if shares == order.shares {
                    orders[reference] = nil
                    instruments[index].liveOrders.remove(at: position)
                } else {
                    orders[reference]!.shares -= shares
                }
            } else {
                orders[reference] = nil
                instruments[index].liveOrders.remove(at: position)
                queue(ItchEncoder.orderDelete(header, reference: reference))
            }
        }
    }

    func sendJSON(_ index: Int, formatB: Bool, price chaosPrice: Price? = nil, chaos: String? = nil) {
        let instrument = instruments[index]
        let price = chaosPrice ?? Price(itchPrice4: instrument.mid)
        let nowNs = WallClock.nowNanoseconds()
        let line: String
        if formatB {
            line = #"{"symbol":"\#(instrument.symbol)","lastPrice":"\#(price)","timestamp":"\#(iso8601(nowNs))"}"#
        } else {
            line = #"{"sym":"\#(instrument.symbol)","px":\#(price),"ts":\#(nowNs / 1_000_000)}"#
        }
        let clients = jsonClients[formatB ? 1 : 0]
        guard !clients.isEmpty else { return }
        let bytes = Array((line + "\n").utf8)
        jsonClients[formatB ? 1 : 0] = clients.filter { $0.writeAll(bytes) }
        counters.jsonLines += 1
        logTrade(venue: formatB ? "json-b" : "json-a", symbol: instrument.symbol, price: price, size: 0, chaos: chaos)
    }

    /// Logs a trade sent; `chaos` names the option that made it up (the line then says `"chaos":"badprice"`).
    func logTrade(venue: String, symbol: String, price: Price, size: UInt64, chaos: String? = nil) {
        counters.trades += 1
        guard let tradeLog else { return }
        let marker = chaos.map { #","chaos":"\#($0)""# } ?? ""
        tradeLog.write(Data(
            #"{"venue":"\#(venue)","symbol":"\#(symbol)","price":"\#(price)","size":\#(size)\#(marker)}"#.utf8 + [10]))
    }

    func iso8601(_ nanoseconds: UInt64) -> String {
        let seconds = nanoseconds / 1_000_000_000
        let millis = (nanoseconds / 1_000_000) % 1000
        let days = Int(seconds / 86_400)
        let secondOfDay = Int(seconds % 86_400)
        let (year, month, day) = SymbolUniverse.civilDate(daysSinceEpoch: days)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, month, day, secondOfDay / 3600,
            secondOfDay / 60 % 60, secondOfDay % 60, Int(millis))
    }

    // MARK: Transport

    func sendDirectory() {
        queue(ItchEncoder.systemEvent(itchHeader(0), code: "O"))
        for instrument in instruments {
            queue(ItchEncoder.stockDirectory(itchHeader(instrument.locate), symbol: instrument.symbol))
        }
        queue(ItchEncoder.systemEvent(itchHeader(0), code: "Q"))
        flushPackets()
    }

    func queue(_ message: [UInt8]) {
        if pendingBytes + message.count + 2 > 1400 { flushPackets() }
        pendingMessages.append(message)
        pendingBytes += message.count + 2
        counters.itchMessages += 1
    }

    func flushPackets() {
        guard !pendingMessages.isEmpty else { return }
        let packet = MoldPacket.encode(session: configuration.itchSession, sequenceNumber: nextSequence,
            messages: pendingMessages)
        for message in pendingMessages {
            history.append(message)
            itchRecorder?.append(message)
        }
        nextSequence += UInt64(pendingMessages.count)
        counters.itchPackets += 1
        sendWithChaos(packet)
        pendingMessages.removeAll(keepingCapacity: true)
        pendingBytes = 0
    }

    /// Sends a packet, or loses, duplicates, delays or damages it as `--chaos` asks.
    func sendWithChaos(_ packet: [UInt8]) {
        let chaos = configuration.chaos
        guard chaos.damagesPackets else {
            udp.send(packet)
            return
        }
        if chaosRandom.nextDouble() < chaos.loss {
            counters.packetsLost += 1
        } else if chaosRandom.nextDouble() < chaos.corrupt {
            counters.packetsCorrupted += 1
            udp.send(Array(packet.prefix(max(MoldPacket.headerLength + 3, packet.count - 7))))
        } else if reorderedPacket == nil && chaosRandom.nextDouble() < chaos.reorder {
            counters.packetsReordered += 1
            reorderedPacket = packet
            return
        } else {
            udp.send(packet)
            if chaosRandom.nextDouble() < chaos.duplicate {
                counters.packetsDuplicated += 1
                udp.send(packet)
            }
        }
        if let held = reorderedPacket {
            reorderedPacket = nil
            udp.send(held)
        }
    }

    func acceptClients() {
        for (index, listener) in jsonListeners.enumerated() {
            while let client = listener.accept() { jsonClients[index].append(client) }
        }
    }
}


/// Real-looking tickers: well-known ones first (AAPL and AAPLX among them, to prove prefix topics exact), then made-up
/// three- and four-letter ones.
public enum SymbolUniverse {
    static let known = [
        "AAPL", "MSFT", "AAPLX", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "COST", "NFLX", "AMD", "PEP", "ADBE",
        "CSCO", "TMUS", "INTC", "QCOM", "TXN", "AMGN", "INTU", "ISRG", "HON", "BKNG", "SBUX", "GILD", "MDLZ", "ADP",
        "REGN", "VRTX", "LRCX", "ADI", "PANW", "MU", "KLAC", "SNPS", "CDNS", "PYPL", "MAR", "ORLY",
    ]

    static func symbols(count: Int, random: inout SplitMix64) -> [String] {
        var result = Array(known.prefix(count))
        var seen = Set(result)
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        while result.count < count {
            let length = 3 + Int(random.next() % 2)
            let symbol = String((0..<length).map { _ in letters[Int(random.next() % 26)] })
            if seen.insert(symbol).inserted { result.append(symbol) }
        }
        return result
    }

    /// A deterministic starting price per symbol, in ITCH Price(4) units; AAPL starts at 178.52.
    static func startingPrice(_ symbol: String, index: Int) -> UInt32 {
        if symbol == "AAPL" { return 1_785_200 }
        var hash: UInt32 = 2_166_136_261
        for byte in symbol.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return (10 + hash % 490) * 10_000 + (hash / 490 % 100) * 100
    }

    static func civilDate(daysSinceEpoch days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
