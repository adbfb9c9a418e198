import Foundation
import Glibc
import Testing

/// ITCH over MoldUDP64 on a multicast group, in a network namespace the test makes (its own loopback with a multicast
/// route), so nothing leaves the machine and the host's routes are untouched. Needs root and iproute2, as CI has.
@Suite(.serialized, .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")))
struct MulticastFeed {
    static func ip(_ arguments: [String]) throws {
        let result = try Chain.run("/usr/sbin/ip", arguments, timeout: 20)
        guard result.status == 0 else { throw ChainError("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }

    @Test func feeddJoinsTheGroupAndPublishesWhatTheSimulatorMulticasts() throws {
        let namespace = "tickplant-mc-\(getpid())"
        try Self.ip(["netns", "add", namespace])
        defer { _ = try? Chain.run("/usr/sbin/ip", ["netns", "del", namespace]) }
        try Self.ip(["netns", "exec", namespace, "ip", "link", "set", "lo", "up"])
        try Self.ip(["netns", "exec", namespace, "ip", "route", "add", "224.0.0.0/4", "dev", "lo"])

        let chain = try Chain()
        defer { chain.stop() }
        let group = "239.1.1.1:\(chain.ports["itch"]!)"
        let feedConfig = chain.etc.appendingPathComponent("feedd-multicast.toml")
        try """
            [feed]
            publish = "\(chain.endpoint("feed_pub"))"
            replay = "\(chain.endpoint("feed_replay"))"
            control = "\(chain.endpoint("feed_ctl"))"

            [[venues]]
            venue = "XNAS"
            protocol = "itch-moldudp64"
            listen = "\(group)"
            multicast_interface = "127.0.0.1"
            retransmission = "127.0.0.1:\(chain.ports["retrans"]!)"
            """.write(to: feedConfig, atomically: true, encoding: .utf8)
        let bin = Chain.binDirectory.path
        try chain.start("feedd", executable: "/usr/sbin/ip",
            ["netns", "exec", namespace, "\(bin)/feedd", "--config", feedConfig.path])
        Thread.sleep(forTimeInterval: 1)
        #expect(chain.processes["feedd"]?.isRunning == true, "\(chain.log("feedd"))")
        try chain.start("tail", executable: "/usr/sbin/ip",
            ["netns", "exec", namespace, "\(bin)/mktctl", "tail", "--from", chain.endpoint("feed_pub"), "AAPL",
                "--count", "5", "--idle-timeout", "20"])
        Thread.sleep(forTimeInterval: 0.5)
        try chain.start("mktctl", executable: "/usr/sbin/ip",
            ["netns", "exec", namespace, "\(bin)/mktctl", "sim", "--config",
                chain.etc.appendingPathComponent("sim-itch.toml").path, "--itch-destination", group, "--rate", "5000",
                "--duration", "4", "--quiet"])
        #expect(try chain.waitForExit("tail", timeout: 30) == 0, "\(chain.log("tail"))\n\(chain.log("feedd"))")
        let lines = chain.log("tail").split(separator: "\n")
        #expect(lines.count == 5)
        #expect(lines.allSatisfy { $0.hasPrefix("AAPL ") && $0.contains("XNAS") }, "\(lines)")
        #expect(try chain.waitForExit("mktctl", timeout: 30) == 0, "\(chain.log("mktctl"))")
    }
}
