import Foundation
import Glibc
import Testing

import MarketData
import ZeroMQ

/// A link between two network namespaces the test makes (the exchange and feedd, or feedd and plantd), joined by a
/// veth pair with addresses of their own: every packet either side sends goes to an address inside them. What the
/// test reads goes over ipc:// (a path-named unix socket belongs to no network namespace). Faults are iptables rules
/// on the link: random loss, or everything dropped for a while.
final class NamespaceLink {
    let left: String
    let right: String
    let leftAddress: String
    let rightAddress: String

    /// Whether this machine lets the test make namespaces and filter their packets: root, `ip` and `iptables`.
    static let unavailableReason: String? = {
        guard getuid() == 0 else { return "needs root to make network namespaces" }
        for tool in ["/usr/sbin/ip", "/usr/sbin/iptables"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "needs \(tool) (make test-deps installs it)"
        }
        let probe = "tickplant-probe-\(getpid())"
        defer { _ = try? Chain.run("/usr/sbin/ip", ["netns", "del", probe]) }
        guard (try? Chain.run("/usr/sbin/ip", ["netns", "add", probe]))?.status == 0 else {
            return "this machine cannot make network namespaces"
        }
        guard (try? Chain.run("/usr/sbin/ip", ["netns", "exec", probe, "/usr/sbin/iptables", "-L", "OUTPUT"]))?
            .status == 0
        else { return "iptables cannot filter inside a network namespace here" }
        return nil
    }()

    /// Namespaces `tickplant-PID-LEFT` and `tickplant-PID-RIGHT`, with .1 and .2 of a private /24.
    init(_ leftName: String, _ rightName: String) throws {
        let tag = "\(getpid() % 100_000)"
        left = "tickplant-\(tag)-\(leftName)"
        right = "tickplant-\(tag)-\(rightName)"
        // 10.213.0.0/16 is private; the third byte keeps concurrent test processes apart.
        let subnet = "10.213.\(getpid() % 250)"
        leftAddress = "\(subnet).1"
        rightAddress = "\(subnet).2"
        let leftEnd = "tpl\(tag)", rightEnd = "tpr\(tag)"
        try Self.ip(["netns", "add", left])
        try Self.ip(["netns", "add", right])
        try Self.ip(["link", "add", leftEnd, "type", "veth", "peer", "name", rightEnd])
        try Self.ip(["link", "set", leftEnd, "netns", left])
        try Self.ip(["link", "set", rightEnd, "netns", right])
        for (namespace, end, address) in [(left, leftEnd, leftAddress), (right, rightEnd, rightAddress)] {
            try Self.ip(["-n", namespace, "addr", "add", "\(address)/24", "dev", end])
            try Self.ip(["-n", namespace, "link", "set", end, "up"])
            try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
        }
    }

    deinit { remove() }

    /// Kills whatever still runs in the namespaces and removes them (the veth pair goes with them).
    func remove() {
        for namespace in [left, right] {
            let pids = (try? Chain.run("/usr/sbin/ip", ["netns", "pids", namespace]))?.output ?? ""
            for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            _ = try? Chain.run("/usr/sbin/ip", ["netns", "del", namespace])
        }
    }

    /// The arguments of `ip` that run `executable` inside `namespace`.
    func inside(_ namespace: String, _ executable: String, _ arguments: [String]) -> [String] {
        ["netns", "exec", namespace, executable] + arguments
    }

    /// Drops this share of the datagrams the left side sends (an exchange's feed; TCP is spared).
    func loseDatagrams(percent: Double) throws {
        try iptables(left, ["-A", "OUTPUT", "-p", "udp", "-m", "statistic", "--mode", "random", "--probability",
            String(percent / 100), "-j", "DROP"])
    }

    /// Drops every packet either side sends, until `restore`.
    func cut() throws {
        for namespace in [left, right] { try iptables(namespace, ["-A", "OUTPUT", "-o", "tp+", "-j", "DROP"]) }
    }

    /// Removes every rule: the link carries everything again.
    func restore() throws {
        for namespace in [left, right] { try iptables(namespace, ["-F", "OUTPUT"]) }
    }

    private func iptables(_ namespace: String, _ arguments: [String]) throws {
        try Self.ip(["netns", "exec", namespace, "/usr/sbin/iptables"] + arguments)
    }

    private static func ip(_ arguments: [String]) throws {
        let result = try Chain.run("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw ChainError("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }
}

/// Faults on the links between network namespaces, against the real simulator, feedd and plantd
/// (docs/reliability.md): what reaches the subscribers is exactly what a clean run delivers; each run reports how
/// long after the market's end the last repair came.
@Suite(.serialized, .enabled(if: NamespaceLink.unavailableReason == nil,
    "network namespaces and iptables: \(NamespaceLink.unavailableReason ?? "")"))
struct NetworkFaultTests {
    static let binDirectory = ChaosEndToEnd.binDirectory
    static let rate = ChaosEndToEnd.releaseBinDirectory == nil ? 30_000 : 100_000
    /// Four seconds of market; across the plant link ten, so that a connection found dead (3 s without anything
    /// after a PING) is made again while the market still runs: the first tick on it shows the gap. (A gap at the
    /// very end of a feed's day shows only with the next tick: docs/reliability.md.)
    static func messages(_ layout: Layout) -> Int { rate * (layout == .exchangeLink ? 4 : 10) }

    /// Which link the faults are on: the simulator on the left and feedd on the right (the exchange link), or both
    /// on the left and plantd on the right (the feed -> plant link).
    enum Layout { case exchangeLink, plantLink }

    struct Run {
        var totals: ChaosEndToEnd.Collector.Totals
        var feedStatus: DaemonStatus
        var plantStatus: DaemonStatus?
        /// From the simulator's start to the last tick the subscriber got (beside a clean run's: how much later the
        /// last repair came).
        var lastTickSeconds: Double
        var feedLog: String
        var plantLog: String
    }

    /// feedd (and plantd) started from files written for `layout`, a collector on the last daemon's stream, one
    /// simulator run with `fault` applied on the link while it sends; everything stopped afterwards.
    static func run(
        _ link: NamespaceLink, _ layout: Layout, directory: URL, fault: (NamespaceLink) throws -> Void
    ) throws -> Run {
        // Short: an ipc:// path must fit a unix socket's 108 bytes.
        let run = directory.appendingPathComponent(String(UUID().uuidString.prefix(8)))
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let acrossExchange = layout == .exchangeLink
        let feedSide = acrossExchange ? link.right : link.left
        let itchAddress = acrossExchange ? link.rightAddress : "127.0.0.1"
        let exchangeAddress = acrossExchange ? link.leftAddress : "127.0.0.1"
        let feedPublish = acrossExchange ? "ipc://\(run.path)/feed-pub" : "tcp://\(link.leftAddress):7101"
        let feedReplay = acrossExchange ? "ipc://\(run.path)/feed-replay" : "tcp://\(link.leftAddress):7102"
        let feedControl = "ipc://\(run.path)/feed-control", plantControl = "ipc://\(run.path)/plant-control"
        // Across the plant link feedd binds beyond loopback, plainly (the namespaces are the test's own), and queues
        // little for plantd, so that a stalled link overflows it and plantd must replay what it lost.
        try """
            [feed]
            publish = "\(feedPublish)"
            replay = "\(feedReplay)"
            control = "\(feedControl)"
            metrics = ""
            \(acrossExchange ? "" : "insecure = true\nsend_hwm = 20000")

            [[venues]]
            venue = "XNAS"
            protocol = "itch-moldudp64"
            listen = "\(itchAddress):7301"
            retransmission = "\(exchangeAddress):7302"
            """.write(to: run.appendingPathComponent("feedd.toml"), atomically: true, encoding: .utf8)
        // Nothing derived by time (NBBO, bars, STALE markers), so that two runs of the market publish the same.
        try """
            [plant]
            feeds = ["\(feedPublish)"]
            replays = ["\(feedReplay)"]
            publish = "ipc://\(run.path)/plant-pub"
            snapshot = "ipc://\(run.path)/plant-snapshot"
            control = "\(plantControl)"
            metrics = ""

            [aggregation]
            nbbo = false
            bars = []
            stale_after = "600s"
            """.write(to: run.appendingPathComponent("plantd.toml"), atomically: true, encoding: .utf8)
        try """
            [sim]
            symbols = 300
            rate = \(rate)
            seed = 11
            json_share = 0

            [itch]
            destination = "\(itchAddress):7301"
            retransmission = "\(exchangeAddress):7302"

            [json_a]
            listen = "\(exchangeAddress):7303"

            [json_b]
            listen = "\(exchangeAddress):7304"
            """.write(to: run.appendingPathComponent("sim.toml"), atomically: true, encoding: .utf8)
        let chain = try Chain()
        defer { chain.stop() }
        func start(_ name: String, in namespace: String, _ arguments: [String]) throws {
            try chain.start(name, executable: "/usr/sbin/ip",
                link.inside(namespace, binDirectory.appendingPathComponent(name).path, arguments))
        }
        try start("feedd", in: feedSide, ["--config", run.appendingPathComponent("feedd.toml").path])
        try chain.waitUntilAnswering("feedd", endpoint: feedControl)
        if !acrossExchange {
            try start("plantd", in: link.right, ["--config", run.appendingPathComponent("plantd.toml").path])
            try chain.waitUntilAnswering("plantd", endpoint: plantControl)
        }
        let context = try ZMQContext()
        let collector = try ChaosEndToEnd.Collector(
            endpoint: acrossExchange ? feedPublish : "ipc://\(run.path)/plant-pub", context: context,
            marketOnly: !acrossExchange)
        Thread.sleep(forTimeInterval: 0.5)
        let simStartNs = MonotonicClock.nowNanoseconds()
        try start("mktctl", in: link.left, ["sim", "--config", run.appendingPathComponent("sim.toml").path,
            "--count", "\(messages(layout))", "--rate", "\(rate)"])
        defer { try? link.restore() }
        try fault(link)
        let simStatus = try chain.waitForExit("mktctl", timeout: 300)
        #expect(simStatus == 0, "\(chain.log("mktctl"))")
        let totals = collector.finish(quiet: acrossExchange ? 4 : 6)
        let feedStatus = try #require(chain.status(feedControl), "feedd stopped answering")
        return Run(totals: totals, feedStatus: feedStatus, plantStatus: acrossExchange ? nil : chain.status(plantControl),
            lastTickSeconds: Double(totals.lastTickNs - simStartNs) / 1e9, feedLog: chain.log("feedd"),
            plantLog: chain.log("plantd"))
    }

    static func givenUp(_ run: Run) -> String {
        "\(run.feedLog.split(separator: "\n").filter { $0.contains("given up") || $0.contains("refused") }.prefix(3))"
    }

    static func report(_ fault: String, _ run: Run, clean: Run, gaps: UInt64?) {
        print("network fault: \(fault): \(run.totals.count) ticks as in the clean run, \(gaps ?? 0) gaps healed, the "
            + String(format: "last tick %.2f s after the market's start (clean run: %.2f s)", run.lastTickSeconds,
                clean.lastTickSeconds))
    }

    static func withLink<T>(_ left: String, _ right: String, _ body: (NamespaceLink, URL) throws -> T) throws -> T {
        let link = try NamespaceLink(left, right)
        defer { link.remove() }
        let directory = URL(fileURLWithPath: "/tmp/tickplant-netns-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        return try body(link, directory)
    }

    @Test func onePercentAndFivePercentLossOnTheExchangeLinkDeliverExactlyTheTicksOfACleanRun() throws {
        try Self.withLink("exchange", "feed") { link, directory in
            let clean = try Self.run(link, .exchangeLink, directory: directory) { _ in }
            #expect(clean.totals.count > 100_000, "the clean run carried too little to prove anything")
            for percent in [1.0, 5.0] {
                let lossy = try Self.run(link, .exchangeLink, directory: directory) {
                    try $0.loseDatagrams(percent: percent)
                }
                #expect(lossy.totals.count == clean.totals.count, "\(percent)% loss")
                #expect(lossy.totals.checksum == clean.totals.checksum, "\(percent)% loss")
                #expect(lossy.feedStatus.counters["XNAS.messages_lost"] == 0, "\(percent)%: \(Self.givenUp(lossy))")
                #expect((lossy.feedStatus.counters["XNAS.gaps_healed"] ?? 0) > 0, "\(percent)%: no gap seen")
                Self.report("\(percent)% loss on the exchange link", lossy, clean: clean,
                    gaps: lossy.feedStatus.counters["XNAS.gaps_healed"])
            }
        }
    }

    @Test func anExchangeLinkCutForHalfASecondHealsFromTheRetransmissionServerWithNothingLost() throws {
        try Self.withLink("exchange", "feed") { link, directory in
            let clean = try Self.run(link, .exchangeLink, directory: directory) { _ in }
            let cut = try Self.run(link, .exchangeLink, directory: directory) { link in
                // A second into the market, nothing crosses the link for half a second.
                Thread.sleep(forTimeInterval: 1)
                try link.cut()
                Thread.sleep(forTimeInterval: 0.5)
                try link.restore()
            }
            #expect(cut.totals.count == clean.totals.count)
            #expect(cut.totals.checksum == clean.totals.checksum)
            #expect(cut.feedStatus.counters["XNAS.messages_lost"] == 0, "\(Self.givenUp(cut))")
            #expect((cut.feedStatus.counters["XNAS.gaps_healed"] ?? 0) > 0, "no gap seen: the cut missed the market")
            Self.report("exchange link cut for 0.5 s", cut, clean: clean, gaps: cut.feedStatus.counters["XNAS.gaps_healed"])
        }
    }

    /// plantd marks the feed's symbols RECOVERING while it catches up and OK after (status ticks, not compared).
    @Test func aFeedToPlantLinkStalledForOneAndAHalfSecondsHealsFromFeeddsReplayWithNothingLost() throws {
        try Self.withLink("feed", "plant") { link, directory in
            let clean = try Self.run(link, .plantLink, directory: directory) { _ in }
            #expect(clean.totals.count > 100_000, "the clean run carried too little to prove anything")
            let stalled = try Self.run(link, .plantLink, directory: directory) { link in
                // A second into the market, nothing crosses the link for 1.5 s (feedd queues little for plantd).
                Thread.sleep(forTimeInterval: 1)
                try link.cut()
                Thread.sleep(forTimeInterval: 1.5)
                try link.restore()
            }
            let plant = try #require(stalled.plantStatus, "plantd stopped answering")
            #expect(stalled.totals.count == clean.totals.count,
                "\(plant.counters.filter { $0.key.hasPrefix("feed1") }) \(stalled.plantLog.suffix(3_000))")
            #expect(stalled.totals.checksum == clean.totals.checksum)
            #expect(plant.counters["feed1.lost"] == 0)
            #expect((plant.counters["feed1.replays"] ?? 0) > 0 && (plant.counters["feed1.replayed"] ?? 0) > 0,
                "plantd never caught up from feedd's replay: the stall missed the market")
            Self.report("feed -> plant link stalled for 1.5 s", stalled, clean: clean,
                gaps: plant.counters["feed1.replays"])
        }
    }
}
