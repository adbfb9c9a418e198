import ArgumentParser
import Foundation
import MarketData
import Synchronization

/// `mktctl sim`: the built-in exchange.
public struct SimCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sim", abstract: "Run the built-in exchange: ITCH 5.0 over MoldUDP64 and two JSON venues.")

    @Option(name: .long, help: "The simulator's TOML file.")
    public var config: String = "etc/sim.toml"

    @Option(name: .long, help: "Messages per second across all protocols (overrides [sim] rate).")
    public var rate: Int?

    @Option(name: .long, help: "Random seed (overrides [sim] seed).")
    public var seed: UInt64?

    @Option(name: .long, help: "Stop after this many messages.")
    public var count: UInt64?

    @Option(name: .long, help: "Stop after this many seconds.")
    public var duration: Double?

    @Option(name: .long, help: "host:port that receives MoldUDP64 (overrides [itch] destination).")
    public var itchDestination: String?

    @Option(name: .long, help: "host:port of the format A JSON venue (overrides [json_a] listen).")
    public var jsonAListen: String?

    @Option(name: .long, help: "host:port of the format B JSON venue (overrides [json_b] listen).")
    public var jsonBListen: String?

    @Option(name: .long, help: "host:port of the MoldUDP64 retransmission server (overrides [itch] retransmission).")
    public var retransmissionListen: String?

    @Option(name: .long, help: "Damage the feed on purpose: loss=1%,dup=0.1%,reorder=0.5%,corrupt=0.01%,halt=AAPL@30s.")
    public var chaos: String?

    @Option(name: .long, help: "Replay this ITCH 5.0 file (Nasdaq's sample-file format, plain or gzip) instead of generating a market.")
    public var itch: String?

    @Option(name: .long, help: "Also write every ITCH message sent to this file (plain ITCH 5.0 file format).")
    public var writeItch: String?

    @Option(name: .long, help: "Write every trade sent as a JSON line to this file.")
    public var tradeLog: String?

    @Flag(name: .long, help: "No progress line.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        if let rate, rate <= 0 { throw ValidationError("--rate: expected a positive number, got \(rate)") }
        for (flag, value) in [("--itch-destination", itchDestination), ("--json-a-listen", jsonAListen),
            ("--json-b-listen", jsonBListen), ("--retransmission-listen", retransmissionListen)]
        {
            if let value, ConfigReader.parseHostPort(value) == nil {
                throw ValidationError("\(flag): expected host:port such as 127.0.0.1:7001, got \"\(value)\"")
            }
        }
    }

    public func run() async throws {
        var configuration: SimConfiguration
        do {
            configuration = try SimConfiguration.load(file: config)
        } catch {
            FileHandle.standardError.write(Data("mktctl sim: \(error.description)\n".utf8))
            throw ExitCode(ConfigError.exitStatus)
        }
        if let rate { configuration.rate = rate }
        if let seed { configuration.seed = seed }
        if let itchDestination { configuration.itchDestination = ConfigReader.parseHostPort(itchDestination)! }
        if let jsonAListen { configuration.jsonAListen = ConfigReader.parseHostPort(jsonAListen)! }
        if let jsonBListen { configuration.jsonBListen = ConfigReader.parseHostPort(jsonBListen)! }
        if let retransmissionListen {
            configuration.retransmissionListen = ConfigReader.parseHostPort(retransmissionListen)!
        }
        if let chaos {
            do {
                configuration.chaos = try ChaosOptions.parse(chaos)
            } catch {
                throw ValidationError("--chaos: \(error.description)")
            }
        }
        let simulator = try MarketSimulator(configuration: configuration, tradeLogPath: tradeLog)
        if let itch {
            do {
                simulator.itchSource = try ItchFileReader(path: itch)
            } catch {
                throw ValidationError("--itch: cannot read \(itch): \(error.localizedDescription)")
            }
        }
        if let writeItch {
            do {
                simulator.itchRecorder = try ItchFileWriter(path: writeItch)
            } catch {
                throw ValidationError("--write-itch: cannot write \(writeItch): \(error.localizedDescription)")
            }
        }
        SignalFlag.install()
        let deadline = duration.map { MonotonicClock.nowNanoseconds() + UInt64($0 * 1e9) }
        let quiet = self.quiet
        FileHandle.standardError.write(Data(
            "sim: \(configuration.symbolCount) symbols at \(configuration.rate) msg/s; ITCH to \(configuration.itchDestination.host):\(configuration.itchDestination.port), JSON A on \(configuration.jsonAListen.port), JSON B on \(configuration.jsonBListen.port)\n".utf8))
        simulator.run(
            maxMessages: count,
            shouldStop: { SignalFlag.isSet || deadline.map { MonotonicClock.nowNanoseconds() >= $0 } ?? false },
            progress: { counters, rate in
                guard !quiet else { return }
                var line = String(format: "\rsim: %.0f msg/s  itch %llu msgs in %llu packets  json %llu lines  trades %llu",
                    rate, counters.itchMessages, counters.itchPackets, counters.jsonLines, counters.trades)
                if counters.packetsLost + counters.packetsDuplicated + counters.packetsReordered
                    + counters.packetsCorrupted + counters.badPrices + counters.badVolumes > 0
                {
                    line += String(format: "  chaos: lost %llu dup %llu reordered %llu corrupt %llu badprice %llu negvolume %llu",
                        counters.packetsLost, counters.packetsDuplicated, counters.packetsReordered,
                        counters.packetsCorrupted, counters.badPrices, counters.badVolumes)
                }
                FileHandle.standardError.write(Data(line.utf8))
            })
        let counters = simulator.counters
        var summary = "\nsim: done: itch \(counters.itchMessages) messages, json \(counters.jsonLines) lines, "
            + "\(counters.trades) trades, \(counters.retransmitted) messages retransmitted"
        if !configuration.chaos.isEmpty {
            summary += "; chaos: \(counters.packetsLost) packets lost, \(counters.packetsDuplicated) duplicated, "
                + "\(counters.packetsReordered) reordered, \(counters.packetsCorrupted) corrupted, "
                + "\(counters.badPrices) bad prices, \(counters.badVolumes) bad volumes"
        }
        FileHandle.standardError.write(Data((summary + "\n").utf8))
    }
}

/// Turns SIGINT and SIGTERM into a flag the simulator's loop checks, so it stops cleanly and flushes.
enum SignalFlag {
    static let flag = Atomic<Bool>(false)

    static func install() {
        signal(SIGINT) { _ in SignalFlag.flag.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in SignalFlag.flag.store(true, ordering: .relaxed) }
    }

    static var isSet: Bool { flag.load(ordering: .relaxed) }
}
