import ArgumentParser
import Foundation
import MarketData
import ZeroMQ

/// `mktctl bench edge --hostile`: well-behaved clients read 50 symbols while about 200 clients break every rule a
/// client can break (`HostileClients`), and more connect from one address and leave handshakes unfinished, past the
/// limits. What must hold: edged stays up, the well-behaved clients get every update in order and their p99 while
/// the rule-breakers stay is within twice the quiet one (their arrival is measured apart), edged's memory grows by
/// less than its limits allow, and each rule-breaker gets the answer docs/security.md says it gets.
extension EdgeBenchCommand {
    /// edged's limits in this run: small, so that every limit is reached within seconds.
    static let hostileLimits = (pendingHandshakes: 200, perAddress: 100, queueHardBytes: 65_536)
    /// Handshakes past `pending_handshakes`, as the unfinished ones open.
    static let hostileOverPending = 50

    public struct HostileRun: Codable, Sendable {
        public var clients: Int
        public var updatesPerSecond: Int
        public var updates: Int
        /// Well-behaved clients that got every update, in order.
        public var fastComplete: Int
        public var fastQuiet: LatencySummary
        /// From the rule-breakers' first connection until all of them are set up and a second more.
        public var fastArrival: LatencySummary
        /// The `seconds` after that.
        public var fastBesideHostile: LatencySummary
        /// Their p99 in each second of `fastBesideHostile`.
        public var fastBesideP99UsBySecond: [Double]
        public var edgedAlive: Bool
        public var edgedRSSBeforeBytes: Int
        public var edgedRSSPeakBytes: Int
        /// What edged's limits allow the rule-breakers: each upgraded one four times `queue_hard_bytes` of answers
        /// and updates, NIO's 64 KiB, and 64 KiB for its channel, buffers and session.
        public var memoryBoundBytes: Int
        public var pendingHandshakes: Int
        public var perAddress: Int
        public var endings: [String: HostileClients.Ending]
        /// edged's own counts of what it refused.
        public var edgedCounters: [String: UInt64]
        /// Rule-breakers came back after each ending (`--returning`): the endings count connections, and only
        /// their kinds are checked, not their numbers.
        public var returning = false
        /// edged's RSS at the end of each second beside the rule-breakers, in MB.
        public var edgedRSSMBBySecond: [Double] = []

        /// The mean RSS of the last tenth of the seconds beside the rule-breakers against that of the tenth after
        /// the first (the warm-up): flat when it grew by at most 5% and 2 MB.
        public var rssFlat: Bool {
            let count = edgedRSSMBBySecond.count
            guard count >= 20 else { return true }
            let tenth = count / 10
            let early = edgedRSSMBBySecond[tenth..<(2 * tenth)].reduce(0, +) / Double(tenth)
            let late = edgedRSSMBBySecond[(count - tenth)...].reduce(0, +) / Double(tenth)
            return late <= early * 1.05 + 2
        }

        public var p99Ratio: Double { fastBesideHostile.p99Us / max(fastQuiet.p99Us, 1) }

        /// Each behaviour's ending as docs/security.md states it; empty when all hold.
        public var unexpected: [String] {
            var problems: [String] = []
            if returning { return kindsUnexpected }
            func ending(_ behaviour: HostileClients.Behaviour) -> HostileClients.Ending {
                endings[behaviour.rawValue] ?? .init()
            }
            func expect(_ behaviour: HostileClients.Behaviour, _ holds: (HostileClients.Ending) -> Bool, _ what: String)
            {
                // A behaviour left out of the run (`--only`) is not expected.
                guard let found = endings[behaviour.rawValue] else { return }
                if !holds(found) { problems.append("\(behaviour.rawValue): expected \(what), got \(found.summary)") }
            }
            // A client that stops reading is closed: as idle (1008: it answers no ping), as flooding (1008: a second's
            // allowance over its rate in a row), as slow (407, 4008), or, when edged had stopped reading what it
            // sent, with a reset that takes the close frame with it.
            for behaviour in [HostileClients.Behaviour.neverReads, .oneByteASecond, .pingFlood, .binaryFlood,
                .badJSONFlood]
            {
                expect(
                    behaviour,
                    { $0.upgraded == $0.clients && $0.stillOpen == 0 && $0.failed == 0
                        && $0.closeCodes.keys.allSatisfy { ["1008", "4008"].contains($0) } },
                    "every one upgraded, then closed by edged (1008 idle or flooding, 4008 slow, or a reset)")
            }
            expect(.invalidUTF8, { $0.closeCodes["1007"] == $0.clients }, "every one closed 1007")
            expect(.giantFrame, { $0.closeCodes["1009"] == $0.clients }, "every one closed 1009")
            let idle = ending(.idleFromOneAddress)
            expect(
                .idleFromOneAddress,
                { $0.upgraded == perAddress && $0.httpStatuses["429", default: 0] == idle.clients - perAddress
                    && $0.closeCodes["1008"] == perAddress },
                "\(perAddress) upgraded and closed 1008 when idle, the other \(idle.clients - perAddress) answered 429")
            let unfinished = ending(.unfinishedHandshake)
            expect(
                .unfinishedHandshake,
                { $0.endedWithoutAnswer == pendingHandshakes
                    && $0.httpStatuses["503", default: 0] == unfinished.clients - pendingHandshakes },
                "\(pendingHandshakes) closed at the handshake timeout, the other "
                    + "\(unfinished.clients - pendingHandshakes) answered 503")
            expect(
                .extremes,
                { $0.errors["400"] == HostileClients.extremeMessages.count * $0.clients && $0.stillOpen == $0.clients },
                "\(HostileClients.extremeMessages.count) errors 400 each, and still served")
            expect(
                .churn,
                { $0.clientsToldError["429"] == $0.clients && $0.errors["400"] == nil && $0.stillOpen == $0.clients },
                "429 past the rate, no other error, and still served")
            return problems
        }

        /// With rule-breakers that come back: every ending of a kind docs/security.md gives that rule-breaker.
        var kindsUnexpected: [String] {
            let closes: [HostileClients.Behaviour: Set<String>] = [
                .invalidUTF8: ["1007"], .giantFrame: ["1009"], .idleFromOneAddress: ["1008"],
                .neverReads: ["1008", "4008"], .oneByteASecond: ["1008", "4008"], .pingFlood: ["1008", "4008"],
                .binaryFlood: ["1008", "4008"], .badJSONFlood: ["1008", "4008"],
            ]
            // The unfinished handshakes come back too and keep `pending_handshakes` full: any connection may then be
            // answered 503 at accept.
            let statuses: [HostileClients.Behaviour: Set<String>] = [.idleFromOneAddress: ["429", "503"]]
            return HostileClients.Behaviour.allCases.compactMap { behaviour in
                guard let ending = endings[behaviour.rawValue] else { return nil }
                let strayCloses = Set(ending.closeCodes.keys).subtracting(closes[behaviour] ?? [])
                let strayStatuses = Set(ending.httpStatuses.keys).subtracting(statuses[behaviour] ?? ["503"])
                guard !strayCloses.isEmpty || !strayStatuses.isEmpty || ending.failed > 0 else { return nil }
                return "\(behaviour.rawValue): closes \(strayCloses.sorted()), HTTP \(strayStatuses.sorted()) and "
                    + "\(ending.failed) failed connections are not its answers (\(ending.summary))"
            }
        }

        public var passed: Bool {
            edgedAlive && fastComplete == clients && edgedRSSPeakBytes - edgedRSSBeforeBytes < memoryBoundBytes
                && unexpected.isEmpty && rssFlat
        }

        /// Every value when there are at most 30, else the range of each tenth of them ("12-18 | 11-14 | ...").
        static func compact(_ values: [Double]) -> String {
            guard values.count > 30 else { return values.map { String(format: "%.0f", $0) }.joined(separator: " ") }
            let tenth = values.count / 10
            return (0..<10).map { part in
                let slice = values[(part * tenth)..<(part == 9 ? values.count : (part + 1) * tenth)]
                return String(format: "%.0f-%.0f", slice.min()!, slice.max()!)
            }.joined(separator: " | ")
        }

        var table: String {
            var lines = [
                String(
                    format: "%d well-behaved clients on 50 symbols, %d updates/s (%d in all): %d got every one in order",
                    clients, updatesPerSecond, updates, fastComplete, clients),
                String(
                    format: "their p50/p99: %.0f/%.0f us quiet, %.0f/%.0f us as the rule-breakers arrive, "
                        + "%.0f/%.0f us beside them (p99 x%.2f)",
                    fastQuiet.p50Us, fastQuiet.p99Us, fastArrival.p50Us, fastArrival.p99Us, fastBesideHostile.p50Us,
                    fastBesideHostile.p99Us, p99Ratio),
                "their p99 each second beside them (ms): "
                    + Self.compact(fastBesideP99UsBySecond.map { $0 / 1_000 }),
                "edged's RSS each second beside them (MB): " + Self.compact(edgedRSSMBBySecond)
                    + (rssFlat ? "" : " (NOT FLAT after the warm-up)"),
                String(
                    format: "edged %@; RSS %.1f MB before, %.1f MB at most beside them (bound: +%.0f MB)",
                    edgedAlive ? "up" : "DOWN", Double(edgedRSSBeforeBytes) / 1e6, Double(edgedRSSPeakBytes) / 1e6,
                    Double(memoryBoundBytes) / 1e6),
                "behaviour               clients  how they ended",
            ]
            for behaviour in HostileClients.Behaviour.allCases {
                guard let ending = endings[behaviour.rawValue] else { continue }
                lines.append(
                    behaviour.rawValue.padding(toLength: 22, withPad: " ", startingAt: 0)
                        + String(format: "  %7d  ", ending.clients) + ending.summary)
            }
            lines.append(
                "edged counted: "
                    + edgedCounters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            lines += unexpected.map { "UNEXPECTED \($0)" }
            return lines.joined(separator: "\n")
        }
    }

    func hostileClients(_ binary: String, _ context: ZMQContext) throws -> HostileRun {
        let symbols = (0..<50).map { "S\($0)" }
        let plant = try StandInPlant(context: context, symbols: symbols)
        let limits = Self.hostileLimits
        let edge = try EdgeProcess(
            binary: binary, upstream: plant.endpoint,
            settings: [
                "limits": """
                connections = \(clients + fromOneAddress + 1_000)
                pending_handshakes = \(limits.pendingHandshakes)
                connections_per_address = \(limits.perAddress)
                handshake_timeout = "2s"
                """,
                "clients": """
                heartbeat_interval = "500ms"
                idle_timeout = "3s"
                queue_soft = 8
                queue_hard = 32
                queue_hard_bytes = \(limits.queueHardBytes)
                send_buffer_bytes = 4096
                slow_grace = "1s"
                slow_linger = "60s"
                """,
            ])
        defer { edge.stop() }
        let maxUpdates = slowRate * Int(2 * seconds + (quietSeconds ?? seconds) + 120)
        let times = PublishTimes(symbols: 50, seqsPerSymbol: maxUpdates / 50 + 10)
        var options = WebSocketLoad.Options(port: edge.port, symbols: symbols)
        options.symbolsPerClient = 50
        // From ten addresses, each under `connections_per_address`.
        options.sources = (10..<20).map { "127.0.0.\($0)" }
        // Well under `pending_handshakes`: edged counts a connection until its upgrade is done, a little after the
        // client has its answer.
        options.connectingAtOnce = limits.pendingHandshakes / 2
        guard clients <= 10 * limits.perAddress else {
            throw ValidationError("--clients: at most \(10 * limits.perAddress) in the hostile run")
        }
        let fast = WebSocketLoad(count: clients, options: options, publishTimes: times)
        defer { fast.stop() }
        try connect(fast, label: "hostile: well-behaved clients") { plant.waitForSubscriptions(50, timeout: 5) }

        var publisher = BurstPublisher(plant: plant, symbols: 50, perSecond: slowRate, maxUpdates: maxUpdates, times: times)
        var rssPeak = 0
        var lastSample = UInt64(0)
        /// Bursts until `done`; edged's RSS sampled every 200 ms.
        func publish(_ label: String, until done: () -> Bool) {
            publisher.publish { sent in
                let now = MonotonicClock.nowNanoseconds()
                if now - lastSample > 200_000_000 {
                    lastSample = now
                    rssPeak = max(rssPeak, edge.residentBytes())
                    BenchOutput.progress("hostile: \(label), \(sent) updates")
                }
                return done()
            }
        }
        func publish(_ label: String, for seconds: Double) {
            let end = MonotonicClock.nowNanoseconds() + UInt64(seconds * 1e9)
            publish(label) { MonotonicClock.nowNanoseconds() >= end }
        }

        publish("quiet", for: quietSeconds ?? seconds)
        usleep(300_000)
        let quiet = LatencySummary(fast.takeLatencies())
        let rssBefore = edge.residentBytes()
        rssPeak = rssBefore

        let counts = HostileClients.Counts.standard(
            pendingHandshakes: limits.pendingHandshakes, overPending: Self.hostileOverPending,
            perAddress: limits.perAddress, overAddress: fromOneAddress - limits.perAddress
        ).only(only.isEmpty ? HostileClients.Behaviour.allCases : only)
        let hostile = HostileClients(port: edge.port, symbols: symbols, counts: counts, returning: returning)
        defer { hostile.stop() }
        // The unfinished handshakes last, once nothing else is being set up: then exactly those over
        // `pending_handshakes` are refused.
        hostile.start(HostileClients.Behaviour.allCases.filter { $0 != .unfinishedHandshake })
        let setUpBy = MonotonicClock.nowNanoseconds() + 120_000_000_000
        publish("rule-breakers connecting") {
            hostile.settingUp.connecting == 0 && hostile.settingUp.open > 0
                || MonotonicClock.nowNanoseconds() > setUpBy
        }
        hostile.start([.unfinishedHandshake])
        publish("the unfinished handshakes arriving", for: 1)
        // Their arrival (about 2 500 connections in a second or two, on this machine's two cores, the rule-breakers
        // included) is measured on its own; the bound is for what follows, while they stay.
        let arrival = LatencySummary(fast.takeLatencies())
        // The well-behaved clients' latencies a second at a time, to see when the rule-breakers cost them.
        var besideSamples: [UInt32] = []
        var bySecond: [Double] = []
        var rssBySecond: [Double] = []
        let besideEnd = MonotonicClock.nowNanoseconds() + UInt64(seconds * 1e9)
        var secondEnd = MonotonicClock.nowNanoseconds() + 1_000_000_000
        publish("beside the rule-breakers") {
            let now = MonotonicClock.nowNanoseconds()
            if now >= secondEnd || now >= besideEnd {
                secondEnd += 1_000_000_000
                let samples = fast.takeLatencies()
                bySecond.append(LatencySummary(samples).p99Us)
                rssBySecond.append(Double(edge.residentBytes()) / 1e6)
                besideSamples += samples
            }
            return now >= besideEnd
        }
        usleep(300_000)
        besideSamples += fast.takeLatencies()
        let beside = LatencySummary(besideSamples)

        // Every rule-breaker reads what it was sent; updates go on meanwhile.
        hostile.reckon()
        publish("the rule-breakers read their answers", for: 5)
        let alive = edge.process.isRunning
        let counters = [
            "refused_pending_handshakes", "refused_per_address", "slow_clients_closed", "idle_clients_closed", "flooding_clients_closed",
            "bad_client_messages", "rate_limited_messages",
        ].reduce(into: [String: UInt64]()) { $0[$1] = edge.counter($1, context: context) }
        usleep(300_000)
        let sent = publisher.sent
        let perSymbol = sent / 50
        let endings = hostile.endings()
        // The rule-breakers that can be upgraded at once: every group but the unfinished handshakes, the one from one
        // address as far as `connections_per_address` lets it.
        let admitted = counts.perBehaviour.reduce(0) { sum, group in
            switch group.key {
            case .unfinishedHandshake: sum
            case .idleFromOneAddress: sum + min(group.value, limits.perAddress)
            default: sum + group.value
            }
        }
        return HostileRun(
            clients: clients, updatesPerSecond: slowRate, updates: sent,
            fastComplete: fast.summaries().filter {
                $0.updates == sent && $0.gaps == 0 && $0.duplicates == 0 && $0.lastSeqs.allSatisfy { $0 >= perSymbol }
            }.count,
            fastQuiet: quiet, fastArrival: arrival, fastBesideHostile: beside, fastBesideP99UsBySecond: bySecond, edgedAlive: alive, edgedRSSBeforeBytes: rssBefore,
            edgedRSSPeakBytes: rssPeak, memoryBoundBytes: admitted * (4 * limits.queueHardBytes + 131_072),
            pendingHandshakes: limits.pendingHandshakes, perAddress: limits.perAddress,
            endings: Dictionary(uniqueKeysWithValues: endings.map { ($0.key.rawValue, $0.value) }),
            edgedCounters: counters, returning: returning, edgedRSSMBBySecond: rssBySecond)
    }
}

extension HostileClients.Ending {
    /// "3 upgraded; HTTP 429 x2; close 1008 x1; told 400 x3 (9 in all); 1 still open".
    public var summary: String {
        var parts: [String] = []
        if upgraded > 0 { parts.append("\(upgraded) upgraded") }
        parts += httpStatuses.sorted { $0.key < $1.key }.map { "HTTP \($0.key) x\($0.value)" }
        parts += closeCodes.sorted { $0.key < $1.key }.map { "close \($0.key) x\($0.value)" }
        parts += clientsToldError.sorted { $0.key < $1.key }.map {
            "told \($0.key) x\($0.value) (\(errors[$0.key] ?? 0) in all)"
        }
        if endedWithoutAnswer > 0 { parts.append("\(endedWithoutAnswer) ended without an answer") }
        if stillOpen > 0 { parts.append("\(stillOpen) still open") }
        if failed > 0 { parts.append("\(failed) failed to connect") }
        return parts.joined(separator: "; ")
    }
}
