import Foundation
import Glibc
import Testing
import TestSupport
import ZeroMQ

/// mktctl's `check-config`, `keygen` and `subs` as an operator runs them: the real executable, real files, a running
/// chain.
@Suite struct OperatorCommands {
    static var mktctl: String { Chain.binDirectory.appendingPathComponent("mktctl").path }

    @Test func checkConfigPassesEveryShippedFileAndNamesTheKeyOfEachBrokenOne() throws {
        // The shipped files, from the repository's root as `make run` starts the daemons (etc/edged.toml's web
        // directory is relative to it).
        let shipped = ["feedd", "plantd", "edged", "sim"].map { "etc/\($0).toml" }
        let good = try Chain.run(Self.mktctl, ["check-config"] + shipped, in: Chain.packageRoot)
        #expect(good.status == 0, "\(good.output)")
        for file in shipped { #expect(good.output.contains(file), "\(good.output)") }
        #expect(good.output.split(separator: "\n").filter { $0.hasSuffix("  ok") }.count == 4, "\(good.output)")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-check-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let broken: [(name: String, toml: String, daemon: String, problem: String)] = [
            ("a.toml", "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\nsend_hwm = \"lots\"\n", "plantd",
                "[plant] send_hwm: expected a whole number"),
            ("b.toml", "[[venues]]\nvenue = \"XNAS\"\nprotocol = \"carrier-pigeon\"\n", "feedd",
                "[venues[1]] protocol"),
            ("c.toml", "[edge]\nweb = \"/nowhere/web\"\n", "edged", "[edge] web: /nowhere/web: no such directory"),
            ("d.toml", "[sim]\nrate = -5\n", "sim", "[sim] rate"),
            ("e.toml", "[edge]\nlisten = \"127.0.0.1:8080\"\nlisten_typo = 1\n", "edged", "[edge] listen_typo"),
            ("g.toml", "[[venues]]\nvenue = \"XNAS\"\nprotocol = \"itch-moldudp64\"\nlisten = \"127.0.0.1:7001\"\n"
                + "book_orders = 0\n", "feedd", "[venues[1]] book_orders"),
            ("mystery.toml", "[nothing]\nx = 1\n", "?", "cannot tell which program it is for"),
            ("f.toml", "[plant\nbroken", "?", "cannot tell"),
        ]
        var files: [String] = []
        for item in broken {
            let file = directory.appendingPathComponent(item.name).path
            try item.toml.write(toFile: file, atomically: true, encoding: .utf8)
            files.append(file)
        }
        let bad = try Chain.run(Self.mktctl, ["check-config"] + files + ["etc/plantd.toml"], in: Chain.packageRoot)
        #expect(bad.status == 2, "\(bad.output)")
        let lines = bad.output.split(separator: "\n").map(String.init)
        for (item, file) in zip(broken, files) {
            let line = lines.first { $0.hasPrefix(file + " ") }
            #expect(line?.contains(item.problem) == true && line?.contains("  \(item.daemon)  ") == true,
                "\(item.name): \(line ?? bad.output)")
        }
        #expect(lines.contains { $0.hasPrefix("etc/plantd.toml") && $0.hasSuffix("  ok") }, "\(bad.output)")

        // --json: one object per file; --as overrides what the tables say.
        let json = try Chain.run(Self.mktctl, ["check-config", "--json", "--as", "plantd", files[0]])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
        #expect(object["ok"] as? Bool == false && object["key"] as? String == "[plant] send_hwm", "\(json.output)")
        #expect(json.status == 2)
    }

    @Test func keygenMakesACurvePairAndWritesTheSecretForItsOwnerOnly() throws {
        let printed = try Chain.run(Self.mktctl, ["keygen", "--json"])
        #expect(printed.status == 0, "\(printed.output)")
        let pair = try #require(
            try JSONSerialization.jsonObject(with: Data(printed.output.utf8)) as? [String: String], "\(printed.output)")
        #expect(pair["public"]?.count == 40 && pair["secret"]?.count == 40 && pair["public"] != pair["secret"])
        let again = try Chain.run(Self.mktctl, ["keygen", "--json"])
        #expect(again.output != printed.output, "two pairs alike")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-keys-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("plant").path
        let written = try Chain.run(Self.mktctl, ["keygen", "--out", out])
        #expect(written.status == 0, "\(written.output)")
        let secret = try String(contentsOfFile: out + ".key_secret", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let publicKey = try String(contentsOfFile: out + ".key", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.count == 40 && publicKey.count == 40)
        let mode = try FileManager.default.attributesOfItem(atPath: out + ".key_secret")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(written.output.contains(publicKey) && !written.output.contains(secret), "the secret was printed")
        let refused = try Chain.run(Self.mktctl, ["keygen", "--out", out])
        #expect(refused.status != 0 && refused.output.contains("exists"), "\(refused.output)")
    }

    /// `[curve] operator_key_files` on all three daemons: mktctl with an operator's key reaches each control
    /// endpoint; without one it says what to give; with a key not listed, or without CURVE, nobody answers and the
    /// daemon counts the refusal. Each daemon's `/metrics` still answers (it asks with the daemon's own key).
    @Test func operatorKeysGuardEveryControlEndpointAndMktctlAndMetricsStillReachThem() throws {
        let chain = try Chain()
        defer { chain.stop() }
        let keys = chain.directory.appendingPathComponent("keys").path
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        var publicKeys: [String: String] = [:]
        var secretKeys: [String: String] = [:]
        for name in ["feedd", "plantd", "edged", "alice", "mallory"] {
            let made = try Chain.run(Self.mktctl, ["keygen", "--json", "--out", "\(keys)/\(name)"])
            #expect(made.status == 0, "\(made.output)")
            publicKeys[name] = try String(contentsOfFile: "\(keys)/\(name).key", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            secretKeys[name] = try String(contentsOfFile: "\(keys)/\(name).key_secret", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        for daemon in ["feedd", "plantd", "edged"] {
            let file = chain.etc.appendingPathComponent("\(daemon).toml")
            let text = try String(contentsOf: file, encoding: .utf8) + """

                [curve]
                secret_key_file = "\(keys)/\(daemon).key_secret"
                operator_key_files = ["\(keys)/alice.key"]

                """
            try text.write(to: file, atomically: true, encoding: .utf8)
            chain.controlKeys[daemon] = CurveClientKeys(serverKey: publicKeys[daemon]!, secretKey: secretKeys["alice"]!)
        }
        try chain.startDaemons()
        let etc = chain.etc.path

        let alice = try Chain.run(Self.mktctl, ["status", "--etc", etc, "--json", "--operator-key", "\(keys)/alice.key_secret"])
        #expect(alice.status == 0, "\(alice.output)")
        #expect(alice.output.split(separator: "\n").filter { $0.contains("\"up\":true") }.count == 3, "\(alice.output)")
        let reload = try Chain.run(Self.mktctl, ["reload", "plantd", "--etc", etc, "--operator-key", "\(keys)/alice.key_secret"])
        #expect(reload.status == 0, "\(reload.output)")

        let nobody = try Chain.run(Self.mktctl, ["status", "--etc", etc])
        #expect(nobody.status != 0 && nobody.output.contains("give --operator-key FILE"), "\(nobody.output)")
        let mallory = try Chain.run(Self.mktctl, ["status", "--etc", etc, "--json", "--timeout", "500",
            "--operator-key", "\(keys)/mallory.key_secret"])
        #expect(mallory.status == 1, "\(mallory.output)")
        #expect(!mallory.output.contains("\"up\":true"), "\(mallory.output)")
        #expect(chain.status(chain.endpoint("plant_ctl")) == nil, "plantd answered a client without CURVE")

        for (daemon, control, metrics) in [("feedd", "feed_ctl", "feed_metrics"), ("plantd", "plant_ctl", "plant_metrics"),
            ("edged", "edge_ctl", "edge_metrics")]
        {
            let status = try #require(chain.status(chain.endpoint(control), curve: chain.controlKeys[daemon]))
            #expect((status.counters["control_clients_refused"] ?? 0) >= 1, "\(daemon): \(status.counters)")
            let response = try LoopbackHTTP.request(port: chain.ports[metrics]!, path: "/metrics")
            #expect(response.hasPrefix("HTTP/1.1 200"), "\(daemon): \(response.prefix(200))")
        }
    }

    @Test func subsShowsEachSymbolsClientsPlantSubscriptionsAndRate() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--quiet"])
        // Two WebSocket clients on AAPL, one of them on MSFT too.
        let clients = Chain.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path
        let url = "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices"
        try chain.start("ws_a", executable: Chain.python, [clients, url, "20", "AAPL"])
        try chain.start("ws_b", executable: Chain.python, [clients, url, "20", "AAPL", "MSFT"])
        let ready = Date().addingTimeInterval(15)
        let bothSubscribed = { chain.log("ws_a").contains("subscribed") && chain.log("ws_b").contains("subscribed") }
        while Date() < ready && !bothSubscribed() { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 1)

        let result = try Chain.run(Self.mktctl, ["subs", "--etc", chain.etc.path, "--json", "--window", "1"])
        #expect(result.status == 0, "\(result.output)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any], "\(result.output)")
        let byClients = try #require(report["by_clients"] as? [[String: Any]])
        #expect(byClients.map { $0["symbol"] as? String } == ["AAPL", "MSFT"], "\(result.output)")
        #expect(byClients.map { $0["clients"] as? Int } == [2, 1], "\(result.output)")
        // edged holds one subscription per symbol however many clients watch it.
        #expect(byClients.allSatisfy { ($0["plant_subscribers"] as? Int ?? 0) >= 1 }, "\(result.output)")
        let prefixes = try #require(report["plant_prefixes"] as? [String: Int])
        #expect(prefixes["AAPL|"] == 1 && prefixes["MSFT|"] == 1, "\(prefixes)")
        #expect((byClients.first?["ticks_per_second"] as? Double ?? 0) > 0, "\(result.output)")
        let byRate = try #require(report["by_rate"] as? [[String: Any]])
        #expect(byRate.count == 20, "the sim's 200 symbols tick: a full top 20: \(result.output)")

        let table = try Chain.run(Self.mktctl, ["subs", "--etc", chain.etc.path, "--top", "5"])
        #expect(table.status == 0)
        #expect(table.output.contains("Top symbols by edge clients"), "\(table.output)")
        #expect(table.output.contains("AAPL|"), "\(table.output)")

        chain.stop("edged")
        let down = try Chain.run(Self.mktctl, ["subs", "--etc", chain.etc.path, "--json"])
        #expect(down.status == 1, "\(down.output)")
        #expect(down.output.contains(#""down":["edged"]"#), "\(down.output)")
    }

    @Test func theSystemdUnitsVerifyAgainstAnInstalledTree() throws {
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "needs systemd-analyze (Debian's systemd)")
        // An install as docs/operations.md lays it out, in a temporary directory instead of /opt/tickplant.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-install-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        for folder in ["bin", "etc", "units"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder),
                withIntermediateDirectories: true)
        }
        for program in ["feedd", "plantd", "edged", "mktctl"] {
            try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("bin/\(program)"),
                withDestinationURL: Chain.binDirectory.appendingPathComponent(program))
        }
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("web"),
            withDestinationURL: Chain.packageRoot.appendingPathComponent("web"))
        let etc = Chain.packageRoot.appendingPathComponent("etc")
        for file in ["feedd", "plantd", "edged", "sim"] {
            try FileManager.default.copyItem(at: etc.appendingPathComponent("\(file).toml"),
                to: root.appendingPathComponent("etc/\(file).toml"))
        }
        var units: [String] = []
        let unitNames = try FileManager.default.contentsOfDirectory(atPath: etc.appendingPathComponent("systemd").path)
        for name in unitNames.sorted() {
            let text = try String(contentsOf: etc.appendingPathComponent("systemd/\(name)"), encoding: .utf8)
            let unit = root.appendingPathComponent("units/\(name)").path
            try text.replacingOccurrences(of: "/opt/tickplant", with: root.path)
                .write(toFile: unit, atomically: true, encoding: .utf8)
            units.append(unit)
            if name.hasSuffix(".service") {
                // Each unit checks its file with mktctl before starting its daemon, and never restarts on status 2.
                let daemon = String(name.dropFirst("tickplant-".count).dropLast(".service".count))
                let start = "ExecStart=/opt/tickplant/bin/\(daemon) --config /opt/tickplant/etc/\(daemon).toml"
                #expect(text.contains(start), "\(name)")
                #expect(text.contains("ExecStartPre=/opt/tickplant/bin/mktctl check-config --as \(daemon) "))
                #expect(text.contains("RestartPreventExitStatus=2"))
            }
        }
        #expect(units.count == 4, "\(units)")
        let verify = try Chain.run(analyze, ["verify", "--man=no"] + units)
        #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
        // The check each unit runs first, as it runs it (relative paths from the install's root).
        let check = try Chain.run(Self.mktctl, ["check-config", "--as", "edged", root.path + "/etc/edged.toml"],
            in: root)
        #expect(check.status == 0, "\(check.output)")
    }

    @Test func latencyShowsEveryHopFromTheTicksStampsAsATableJSONAndAPicture() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--quiet"])
        // A WebSocket client on AAPL, so that edged takes AAPL's ticks and measures plantd -> edged.
        try chain.start("ws", executable: Chain.python, [
            Chain.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path,
            "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices", "20", "AAPL",
        ])
        Thread.sleep(forTimeInterval: 1.5)
        let picture = chain.directory.appendingPathComponent("latency.svg").path
        let result = try Chain.run(Self.mktctl,
            ["latency", "--etc", chain.etc.path, "--seconds", "2", "--json", "--plot", picture])
        #expect(result.status == 0, "\(result.output)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any], "\(result.output)")
        let hops = try #require(report["hops"] as? [[String: Any]])
        // edged -> client is half the round trip of edged's pings, which the WebSocket client answers.
        #expect(hops.map { $0["hop"] as? String } == [
            "exchange -> feedd", "in feedd", "feedd -> plantd", "in plantd", "plantd -> edged", "edged -> client",
            "plantd -> mktctl", "end to end",
        ], "\(result.output)")
        #expect((report["ticks"] as? Int ?? 0) > 1_000, "\(result.output)")
        for hop in hops {
            let p50 = hop["p50_ns"] as? Int ?? -1, p99 = hop["p99_ns"] as? Int ?? -1
            let maximum = hop["max_ns"] as? Int ?? -1
            #expect((hop["count"] as? Int ?? 0) > 0 && 0 <= p50 && p50 <= p99 && p99 <= maximum, "\(hop)")
            // One host, one clock: no hop runs backwards.
            #expect(hop["clock_skewed"] as? Int == 0, "\(hop)")
        }
        // The whole is longer than any of its parts.
        let endToEnd = hops.last?["p50_ns"] as? Int ?? 0
        #expect(hops.dropLast().allSatisfy { ($0["p50_ns"] as? Int ?? .max) <= endToEnd }, "\(result.output)")
        let svg = try String(contentsOfFile: picture, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 6, "one line per hop measured by mktctl")

        let table = try Chain.run(Self.mktctl, ["latency", "--etc", chain.etc.path, "--seconds", "1"])
        #expect(table.status == 0, "\(table.output)")
        #expect(table.output.contains("HOP") && table.output.contains("P99.9") && table.output.contains("#"),
            "\(table.output)")
        // From a feed handler: the hops up to it.
        let feed = try Chain.run(Self.mktctl,
            ["latency", "--etc", chain.etc.path, "--from", "feedd", "--seconds", "1", "--json"])
        let feedHops = try #require(
            try JSONSerialization.jsonObject(with: Data(feed.output.utf8)) as? [String: Any], "\(feed.output)")["hops"]
        #expect((feedHops as? [[String: Any]])?.map { $0["hop"] as? String }
            == ["exchange -> feedd", "in feedd", "feedd -> mktctl", "end to end"], "\(feed.output)")
    }

    @Test func aDaemonLogsOneJSONObjectPerLineWithLogFormatJSON() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.start("plantd",
            ["--config", chain.etc.appendingPathComponent("plantd.toml").path, "--log-format", "json"])
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))
        chain.stop("plantd")
        let lines = chain.log("plantd").split(separator: "\n").map(String.init)
        #expect(lines.count >= 2, "\(lines)")
        for line in lines {
            let entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(entry?["level"] is String && entry?["label"] as? String == "plantd" && entry?["message"] is String,
                "\(line)")
            #expect((entry?["ts"] as? String)?.hasSuffix("Z") == true, "\(line)")
        }
        let started = lines.first { $0.contains(#""message":"plantd publishing""#) }
        #expect(started?.contains(#""publish":"tcp://127.0.0.1:"#) == true, "metadata as fields: \(lines)")

        let wrong = try Chain.run(Chain.binDirectory.appendingPathComponent("plantd").path,
            ["--config", chain.etc.appendingPathComponent("plantd.toml").path, "--log-format", "xml"])
        #expect(wrong.status != 0 && wrong.output.contains("--log-format: expected text or json"), "\(wrong.output)")
    }

    /// The samples of a Prometheus exposition: `name{labels}` -> value; and whether every family has HELP and TYPE.
    static func samples(_ exposition: String) -> (values: [String: Double], described: Bool) {
        var values: [String: Double] = [:]
        var described = Set<String>()
        for line in exposition.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") { described.insert(String(line.split(separator: " ")[2])) }
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " ") else { continue }
            values[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        // A histogram's samples are its family's name with _bucket, _sum or _count.
        let families = Set(values.keys.map { key in
            let name = String(key.prefix { $0 != "{" })
            let suffix = ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) }
            let base = suffix.map { String(name.dropLast($0.count)) }
            return base.map { described.contains($0) ? $0 : name } ?? name
        })
        return (values, !families.isEmpty && families.isSubset(of: described))
    }

    @Test func everyDaemonServesItsStatusAsPrometheusMetricsThatMoveAsTicksFlow() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--quiet"])
        let clients = Chain.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path
        try chain.start("ws", executable: Chain.python,
            [clients, "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices", "20", "AAPL"])
        Thread.sleep(forTimeInterval: 2)
        let ports = ["feedd": chain.ports["feed_metrics"]!, "plantd": chain.ports["plant_metrics"]!,
            "edged": chain.ports["edge_metrics"]!]
        var first: [String: [String: Double]] = [:]
        for (daemon, port) in ports {
            let response = try LoopbackHTTP.request(port: port, path: "/metrics")
            #expect(response.hasPrefix("HTTP/1.1 200") && response.contains("text/plain; version=0.0.4"),
                "\(daemon): \(response.prefix(300))")
            let body = String(response[(response.range(of: "\r\n\r\n")?.upperBound ?? response.endIndex)...])
            let (values, described) = Self.samples(body)
            #expect(described, "\(daemon): a family without # TYPE")
            first[daemon] = values
        }
        Thread.sleep(forTimeInterval: 1.5)
        for daemon in ["feedd", "plantd"] {
            let key = "tickplant_messages_in_total{daemon=\"\(daemon)\",name=\"\(daemon)\"}"
            let body = try LoopbackHTTP.request(port: ports[daemon]!, path: "/metrics")
            let before = first[daemon]?[key] ?? -1, after = Self.samples(body).values[key] ?? -1
            #expect(before > 0 && after > before, "\(daemon) \(key): \(before) then \(after)")
            #expect(Self.samples(body).values["tickplant_uptime_seconds{daemon=\"\(daemon)\",name=\"\(daemon)\"}"]
                ?? 0 > 0)
        }
        #expect(first["edged"]?["tickplant_clients{daemon=\"edged\",name=\"edged\"}"] == 1, "\(first["edged"] ?? [:])")
        // Each daemon's hops as histograms: buckets that only grow up to +Inf, which is the count.
        for (daemon, hop) in [("feedd", "in_feedd"), ("plantd", "feedd_to_plantd"), ("plantd", "in_plantd"),
            ("edged", "plantd_to_edged"), ("edged", "edged_to_client")]
        {
            let labels = "daemon=\"\(daemon)\",name=\"\(daemon)\",hop=\"\(hop)\""
            let values = first[daemon] ?? [:]
            let count = values["tickplant_hop_latency_seconds_count{\(labels)}"] ?? 0
            #expect(count > 0, "\(daemon) \(hop): no readings")
            let buckets = values.filter { $0.key.hasPrefix("tickplant_hop_latency_seconds_bucket{\(labels),le=") }
                .map { sample in
                    let bound = sample.key.split(separator: "\"").dropLast().last.flatMap { Double($0) } ?? .infinity
                    return (bound: bound, count: sample.value)
                }
                .sorted { $0.bound < $1.bound }
            #expect(buckets.count == 22 && buckets.last?.count == count, "\(daemon) \(hop): \(buckets)")
            #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0.count <= $1.count }, "\(daemon) \(hop)")
        }
        #expect(first["plantd"]?["tickplant_plantd_subscriptions{daemon=\"plantd\",name=\"plantd\"}"] ?? 0 >= 1)
        // edged's clients' port serves no metrics.
        #expect(try LoopbackHTTP.request(port: chain.ports["edge_http"]!, path: "/metrics").hasPrefix("HTTP/1.1 404"))
        // The other routes of a metrics port.
        let metricsPort = ports["plantd"]!
        #expect(try LoopbackHTTP.request(port: metricsPort, path: "/healthz").hasPrefix("HTTP/1.1 200"))
        #expect(try LoopbackHTTP.request(port: metricsPort, path: "/nothing").hasPrefix("HTTP/1.1 404"))
        let head = try LoopbackHTTP.request(port: metricsPort, path: "/metrics", method: "HEAD")
        #expect(head.hasPrefix("HTTP/1.1 200") && !head.contains("# TYPE"), "\(head)")
    }

    @Test func aDaemonWhoseMetricsPortIsTakenRunsOnAndSaysSo() throws {
        let chain = try Chain()
        defer { chain.stop() }
        // Something else holds plantd's metrics port.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(chain.ports["plant_metrics"]!).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 && listen(holder, 1) == 0
            }
        }
        try #require(bound)
        try chain.startDaemons(["plantd"])
        Thread.sleep(forTimeInterval: 0.5)
        #expect(chain.status(chain.endpoint("plant_ctl")) != nil, "plantd stopped: \(chain.log("plantd"))")
        #expect(chain.log("plantd").contains("no /metrics: cannot listen"), "\(chain.log("plantd"))")
    }

    @Test func tailShowsQuarantinedTicksAndEachTicksHopsAndStatusTheWorstQuality() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        // Bad prices on purpose: plantd's filters quarantine them (#Q|SYMBOL).
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path,
            "--chaos", "badprice=5%", "--quiet"])
        let tail = try Chain.run(Self.mktctl, ["tail", "AAPL", "--quarantine", "--latency", "--etc", chain.etc.path,
            "--count", "600", "--idle-timeout", "10"], timeout: 60)
        #expect(tail.status == 0, "\(tail.output.suffix(500))")
        let lines = tail.output.split(separator: "\n")
        let quarantined = lines.filter { $0.hasPrefix("QUARANTINED  AAPL") }
        #expect(!quarantined.isEmpty, "no quarantined tick in \(lines.count) lines")
        #expect(lines.allSatisfy { $0.contains("AAPL") && !$0.contains("AAPLX") }, "\(lines.prefix(5))")
        // A venue's live trade has every stamp (a BAR or the NBBO, made in plantd, has no feedd hop).
        let plain = try #require(lines.first { $0.hasPrefix("AAPL ") && $0.contains(" TRADE   XNAS ") })
        #expect(plain.contains("| e2e ") && plain.contains("feedd ") && plain.contains("->here "), "\(plain)")

        let status = try Chain.run(Self.mktctl, ["status", "--etc", chain.etc.path])
        let plant = status.output.split(separator: "\n").first { $0.hasPrefix("plantd") }
        #expect(plant?.contains("  OK  ") == true || plant?.contains("STALE") == true, "\(status.output)")
        #expect(!status.output.contains("\u{1B}["), "no colour through a pipe")
    }

    @Test func anEmptyChainAnswersEveryCommandAndSaysThereIsNothingYet() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        let etc = chain.etc.path
        let status = try Chain.run(Self.mktctl, ["status", "--etc", etc, "--json"])
        #expect(status.status == 0, "\(status.output)")
        let rows = EndToEnd.jsonLines(status.output)
        #expect(rows.count == 3 && rows.allSatisfy { $0["up"] as? Bool == true }, "\(status.output)")
        // Nothing came in anywhere (plantd's heartbeats go out, but nothing comes in).
        #expect(rows.allSatisfy { (($0["status"] as? [String: Any])?["messagesIn"] as? Int ?? -1) == 0 },
            "nothing flowed yet: \(status.output)")
        let gaps = try Chain.run(Self.mktctl, ["gaps", "--etc", etc])
        #expect(gaps.status == 0 && gaps.output.contains("No gaps."), "\(gaps.output)")
        let subs = try Chain.run(Self.mktctl, ["subs", "--etc", etc, "--window", "0.2"])
        #expect(subs.status == 0, "\(subs.output)")
        // Nothing to tail: plantd answers the join with an empty snapshot, and tail says so by its exit status.
        let tail = try Chain.run(Self.mktctl, ["tail", "AAPL", "--etc", etc, "--idle-timeout", "2"])
        #expect(tail.status == 1 && !tail.output.contains("AAPL "), "\(tail.output)")
        let latency = try Chain.run(Self.mktctl, ["latency", "--etc", etc, "--seconds", "1"])
        #expect(latency.output.lowercased().contains("no tick"), "\(latency.output)")
    }

    @Test func aGapTheSimInjectsShowsInGapsAsHealedByRetransmissionWithHowLongItTook() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons(["plantd", "feedd"])
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path,
            "--duration", "3", "--chaos", "loss=2%", "--quiet"])
        #expect(try chain.waitForExit("mktctl", timeout: 30) == 0, "\(chain.log("mktctl"))")
        Thread.sleep(forTimeInterval: 0.5)
        let gaps = try Chain.run(Self.mktctl, ["gaps", "--etc", chain.etc.path, "--last", "500"])
        #expect(gaps.status == 0, "\(gaps.output)")
        let healed = gaps.output.split(separator: "\n").filter {
            $0.hasPrefix("feedd") && $0.contains(" XNAS ") && $0.contains("retransmission")
        }
        #expect(!healed.isEmpty, "no gap healed by retransmission: \(gaps.output)")
        // Each row says how long the healing took.
        #expect(healed.allSatisfy { row in [" ns", " us", " ms", " s"].contains { row.hasSuffix($0) } }, "\(healed)")

        let json = try Chain.run(Self.mktctl, ["gaps", "--etc", chain.etc.path, "--json"])
        let report = try #require(EndToEnd.jsonLines(json.output).first, "\(json.output)")
        let recent = (report["feedd"] as? [String: Any])?["recent"] as? [[String: Any]] ?? []
        let healedByRetransmission = recent.filter { ($0["healedBy"] as? String) == "retransmission" }
        #expect(healedByRetransmission.contains { ($0["durationNs"] as? Int ?? 0) > 0 },
            "\(json.output.prefix(1_000))")
        #expect(recent.allSatisfy { $0["healedBy"] as? String != "open" }, "a gap still open after the sim ended")
    }

    @Test func sighupAndReloadApplyPlantdsFiltersNameWhatNeedsARestartAndRefuseABadFile() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons(["plantd", "feedd"])
        let file = chain.etc.appendingPathComponent("plantd.toml")
        let original = try String(contentsOf: file, encoding: .utf8)
        func modes() throws -> [String: Any] {
            let why = try Chain.run(Self.mktctl, ["why", "AAPL", "--endpoint", chain.endpoint("plant_ctl"), "--json"])
            return try #require(EndToEnd.jsonLines(why.output).first?["modes"] as? [String: Any], "\(why.output)")
        }
        #expect(try modes()["price"] as? String == "enforce")

        // SIGHUP, as `systemctl reload` sends it: the price rule turns to shadow mode at once; a new heartbeat
        // interval is named as waiting for a restart.
        try original.replacingOccurrences(of: "heartbeat_interval = \"500ms\"", with: "heartbeat_interval = \"2s\"")
            .replacingOccurrences(of: "[filters]\n", with: "[filters]\nshadow = [\"price\"]\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let plantd = try #require(chain.processes["plantd"])
        kill(plantd.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && !chain.log("plantd").contains("configuration reloaded") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let reloaded = chain.log("plantd").split(separator: "\n").first { $0.contains("configuration reloaded") }
        let line = try #require(reloaded, "\(chain.log("plantd"))")
        #expect(line.contains("[filters]") && line.contains("heartbeat_interval"), "\(line)")
        #expect(plantd.isRunning, "SIGHUP must not stop plantd")
        #expect(try modes()["price"] as? String == "shadow")

        // The same through mktctl: nothing new applies; the heartbeat still waits for a restart.
        let again = try Chain.run(Self.mktctl, ["reload", "plantd", "--etc", chain.etc.path])
        #expect(again.status == 0 && again.output.contains("nothing changed that applies now")
            && again.output.contains("needs restart: [plant] heartbeat_interval"), "\(again.output)")

        // A broken file changes nothing and says which key is wrong.
        try original.replacingOccurrences(of: "[filters]\n", with: "[filters]\nmax_jump_pct = \"lots\"\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let broken = try Chain.run(Self.mktctl, ["reload", "plantd", "--etc", chain.etc.path, "--endpoint",
            chain.endpoint("plant_ctl")])
        #expect(broken.status == 1 && broken.output.contains("[filters] max_jump_pct"), "\(broken.output)")
        #expect(try modes()["price"] as? String == "shadow", "a refused reload must leave the rules as they were")

        // feedd takes its file only at start, and says so.
        try original.write(to: file, atomically: true, encoding: .utf8)
        let feed = try Chain.run(Self.mktctl, ["reload", "feedd", "--etc", chain.etc.path])
        #expect(feed.status == 1 && feed.output.contains("only at start"), "\(feed.output)")
    }
}
