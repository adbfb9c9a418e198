import Foundation
import Glibc
import TOMLKit

/// Reads one TOML table of a config file with errors that name the file and key. Every key a daemon reads goes
/// through here, and `finish()` refuses keys nobody read, so a typo is an error instead of a silently ignored line.
///
/// Not Sendable: used once at start to build a daemon's `Sendable` configuration struct.
public final class ConfigReader {
    public let file: String
    /// Where this table sits: "" for the top, "feed" for `[feed]`, "venues[1]" for the second `[[venues]]`.
    public let section: String
    private let table: TOMLTable
    private var readKeys: Set<String> = []
    private var children: [ConfigReader] = []

    /// Parses `file`. A missing file or a TOML syntax error is a `ConfigError`.
    public static func load(file: String) throws(ConfigError) -> ConfigReader {
        guard let data = readWholeFile(file) else {
            let reason = FileManager.default.fileExists(atPath: file) ? "cannot be read" : "no such file"
            throw ConfigError(file: file, key: "", reason: reason)
        }
        return try parse(String(decoding: data, as: UTF8.self), file: file)
    }

    /// Parses TOML text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> ConfigReader {
        if let (line, reason) = tableHeaderProblem(in: text) {
            throw ConfigError(file: file, key: "", reason: "not valid TOML at line \(line): \(reason)")
        }
        do {
            return ConfigReader(file: file, section: "", table: try TOMLTable(string: text))
        } catch let error as TOMLParseError {
            throw ConfigError(
                file: file, key: "",
                reason: "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): "
                    + error.description)
        } catch {
            throw ConfigError(file: file, key: "", reason: "not valid TOML: \(error)")
        }
    }

    /// A table header whose name starts with what no key may start with (`[*x]`, `[` alone): toml++, inside TOMLKit,
    /// asserts there instead of reporting an error, and the assertion aborts the process (the fuzz target `config`
    /// found it: `[*ournal]` killed plantd with SIGABRT where a config error must exit 2). Such a header is refused
    /// here first. Lines inside a multi-line string are not headers.
    static func tableHeaderProblem(in text: String) -> (line: Int, reason: String)? {
        var insideMultiLineString = false
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // Each `"""` or `'''` opens or closes a multi-line string.
            let delimiters = line.components(separatedBy: "\"\"\"").count - 1 + line.components(separatedBy: "\'\'\'").count - 1
            let wasInside = insideMultiLineString
            if delimiters % 2 == 1 { insideMultiLineString.toggle() }
            guard !wasInside else { continue }
            var rest = line.drop { $0 == " " || $0 == "\t" }
            guard rest.first == "[" else { continue }
            rest = rest.dropFirst()
            if rest.first == "[" { rest = rest.dropFirst() }
            rest = rest.drop { $0 == " " || $0 == "\t" }
            guard let first = rest.first, first.isASCII,
                first.isLetter || first.isNumber || first == "_" || first == "-" || first == "\"" || first == "\'"
            else {
                let seen = rest.first.map { "'\($0)'" } ?? "the end of the line"
                return (index + 1, "a table name must start with a letter, digit, _, - or a quote; saw \(seen)")
            }
        }
        return nil
    }

    init(file: String, section: String, table: TOMLTable) {
        self.file = file
        self.section = section
        self.table = table
    }

    /// `[section] key` as errors show it.
    public func path(_ key: String) -> String { section.isEmpty ? key : "[\(section)] \(key)" }

    public func error(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, key: path(key), reason: reason)
    }

    public func has(_ key: String) -> Bool { table[key] != nil }

    private func value(_ key: String) -> TOMLValueConvertible? {
        readKeys.insert(key)
        return table[key]
    }

    private func found(_ value: TOMLValueConvertible) -> String {
        switch value.type {
        case .string: "\"\(value.string ?? "")\""
        case .table: "a table"
        case .array: "an array"
        default: value.debugDescription
        }
    }

    // MARK: Values

    public func string(_ key: String, default fallback: String? = nil) throws(ConfigError) -> String {
        guard let value = value(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected a string)")
        }
        guard let text = value.string else { throw error(key, "expected a string, got \(found(value))") }
        return text
    }

    public func optionalString(_ key: String) throws(ConfigError) -> String? {
        guard has(key) else {
            readKeys.insert(key)
            return nil
        }
        return try string(key)
    }

    /// A list of strings, each checked by `problem` (nil when fine, else what is wrong with it).
    public func strings(_ key: String, default fallback: [String], problem: (String) -> String? = { _ in nil })
        throws(ConfigError) -> [String]
    {
        guard let value = value(key) else { return fallback }
        guard let array = value.array else { throw error(key, "expected a list of strings, got \(found(value))") }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                throw error(key, "expected a list of strings, got \(found(element)) in it")
            }
            if let problem = problem(text) { throw error(key, "\(problem), got \"\(text)\"") }
            result.append(text)
        }
        return result
    }

    public func int(_ key: String, default fallback: Int? = nil, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let value = value(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected a whole number between \(range.lowerBound) and \(range.upperBound))")
        }
        guard let number = value.int, range.contains(number) else {
            throw error(key, "expected a whole number between \(range.lowerBound) and \(range.upperBound), got \(found(value))")
        }
        return number
    }

    public func double(_ key: String, default fallback: Double? = nil, in range: ClosedRange<Double>) throws(ConfigError) -> Double {
        guard let value = value(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected a number between \(range.lowerBound) and \(range.upperBound))")
        }
        let number = value.double ?? value.int.map(Double.init)
        guard let number, range.contains(number) else {
            throw error(key, "expected a number between \(range.lowerBound) and \(range.upperBound), got \(found(value))")
        }
        return number
    }

    public func bool(_ key: String, default fallback: Bool? = nil) throws(ConfigError) -> Bool {
        guard let value = value(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected true or false)")
        }
        guard let flag = value.bool else { throw error(key, "expected true or false, got \(found(value))") }
        return flag
    }

    /// One of a fixed set of words.
    public func choice(_ key: String, _ choices: [String], default fallback: String? = nil) throws(ConfigError) -> String {
        let text = try string(key, default: fallback)
        guard choices.contains(text) else {
            throw error(key, "expected one of \(choices.map { "\"\($0)\"" }.joined(separator: ", ")), got \"\(text)\"")
        }
        return text
    }

    /// A duration in seconds or milliseconds, written as a number of seconds or as "250ms", "2s", "1m".
    /// The longest duration a file may give: every duration is used in nanoseconds, and ten years of them stay far
    /// inside a UInt64 (a larger number from a file once trapped converting it).
    public static let longestDurationMilliseconds: Int64 = 10 * 366 * 86_400_000

    public func duration(_ key: String, default fallback: Duration) throws(ConfigError) -> Duration {
        guard let value = value(key) else { return fallback }
        if let seconds = value.double ?? value.int.map(Double.init), seconds >= 0,
            seconds * 1000 <= Double(ConfigReader.longestDurationMilliseconds)
        {
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
        if let text = value.string, let parsed = ConfigReader.parseDuration(text) { return parsed }
        throw error(key, "expected a duration such as \"250ms\", \"2s\", \"1m\", \"8h\" or \"7d\" (at most 10 years), "
            + "got \(found(value))")
    }

    public static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, milliseconds) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard let value = Int64(number), value >= 0 else { continue }
            let (total, overflowed) = value.multipliedReportingOverflow(by: milliseconds)
            guard !overflowed, total <= longestDurationMilliseconds else { return nil }
            return .milliseconds(total)
        }
        return nil
    }

    /// A ZeroMQ endpoint such as `tcp://127.0.0.1:7201`, `ipc:///tmp/x` or `inproc://name`.
    public func endpoint(_ key: String, default fallback: String? = nil) throws(ConfigError) -> String {
        let text = try string(key, default: fallback)
        guard let problem = ConfigReader.endpointProblem(text) else { return text }
        throw error(key, "\(problem), got \"\(text)\"")
    }

    public func endpoints(_ key: String) throws(ConfigError) -> [String] {
        guard let value = value(key) else { throw error(key, "missing (expected a list of endpoints)") }
        guard let array = value.array else { throw error(key, "expected a list of endpoints, got \(found(value))") }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                throw error(key, "expected a list of endpoint strings, got \(found(element)) in it")
            }
            if let problem = ConfigReader.endpointProblem(text) { throw error(key, "\(problem), got \"\(text)\"") }
            result.append(text)
        }
        guard !result.isEmpty else { throw error(key, "expected at least one endpoint") }
        return result
    }

    static func endpointProblem(_ text: String) -> String? {
        for scheme in ["tcp://", "ipc://", "inproc://", "epgm://", "pgm://"] where text.hasPrefix(scheme) {
            return text.count > scheme.count ? nil : "expected an address after \(scheme)"
        }
        return "expected an endpoint such as \"tcp://127.0.0.1:7201\""
    }

    /// Whether an endpoint bound here can be reached only from this host: TCP on a loopback address (127.0.0.0/8,
    /// ::1, `localhost`, the interface `lo`), ipc:// and inproc://. `tcp://*:7201`, `tcp://0.0.0.0:7201`, another
    /// address or interface, and multicast (epgm://, pgm://) can be reached from other hosts.
    public static func isHostLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let address = endpoint.dropFirst("tcp://".count)
        // The port may be `*` (any free one) or a number; the host is what comes before the last colon.
        guard let colon = address.lastIndex(of: ":") else { return false }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "lo" { return true }
        var ipv4 = in_addr()
        if inet_pton(AF_INET, host, &ipv4) == 1 { return UInt32(bigEndian: ipv4.s_addr) >> 24 == 127 }
        var ipv6 = in6_addr()
        guard inet_pton(AF_INET6, host, &ipv6) == 1 else { return false }
        return withUnsafeBytes(of: &ipv6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
    }

    /// Refuses an endpoint to be bound that other hosts can reach while nothing guards it (DESIGN section 4: nothing
    /// binds beyond loopback without CURVE unless a file says so): fine when `guardedByCurve`, or when this table
    /// says `insecure = true` (a network only trusted hosts reach). `remedy` says what else to do.
    public func requireGuardedBind(
        _ key: String, endpoint: String, guardedByCurve: Bool = false, insecure: Bool, remedy: String
    ) throws(ConfigError) {
        guard !guardedByCurve, !insecure, !Self.isHostLocal(endpoint) else { return }
        throw error(key, "\(endpoint) can be reached from other hosts and nothing guards it: \(remedy); or, on a "
            + "network only trusted hosts reach, set \(path("insecure")) = true")
    }

    /// A host and port such as `127.0.0.1:7001`, `[::1]:7001` or `239.1.1.1:7001`.
    public func hostPort(_ key: String, default fallback: String? = nil) throws(ConfigError) -> (host: String, port: Int) {
        let text = try string(key, default: fallback)
        guard let parsed = ConfigReader.parseHostPort(text) else {
            throw error(key, "expected host:port such as \"127.0.0.1:7001\", got \"\(text)\"")
        }
        return parsed
    }

    public static func parseHostPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            return nil
        }
        return (host, port)
    }

    /// The key held in the file that `key` names (a path relative to where the daemon runs), trimmed, checked by
    /// `problem`: keys live in their own files (`mktctl keygen` writes them), so that a config can be shown around.
    public func keyFile(_ key: String, problem: (String) -> String?) throws(ConfigError) -> String {
        try readKey(key, path: try string(key), problem: problem)
    }

    /// A secret key held in the file `key` names: as `keyFile`, and refused when others may read the file.
    public func secretKeyFile(_ key: String, problem: (String) -> String?) throws(ConfigError) -> String {
        let path = try string(key)
        if let permissions = SecretFiles.problem(withPermissionsOf: path) { throw error(key, permissions) }
        return try readKey(key, path: path, problem: problem)
    }

    /// `[curve]` of a daemon that serves CURVE: `secret_key_file` (its own secret key) and `client_key_files` (the
    /// public keys it lets in), read and checked by `secretProblem` and `keyProblem`; nil when neither is set, both
    /// required when one is. Without `readingFiles` (check-config by someone who may not read the secret) the keys
    /// are "" and nothing is read.
    public func curveServerKeys(
        readingFiles: Bool, secretProblem: (String) -> String?, keyProblem: (String) -> String?
    ) throws(ConfigError) -> (secretKey: String, clientKeys: [String])? {
        // A secret key with operators' keys alone is CURVE on the control endpoint only (`controlCurveKeys`).
        guard has("client_key_files") || (has("secret_key_file") && !has("operator_key_files")) else { return nil }
        guard readingFiles else {
            _ = try string("secret_key_file")
            _ = try strings("client_key_files", default: [])
            return ("", [])
        }
        let secret = try secretKeyFile("secret_key_file", problem: secretProblem)
        let clients = try keyFiles("client_key_files", problem: keyProblem)
        guard !clients.isEmpty else {
            throw error("client_key_files", "expected the public key files of the clients let in, got none")
        }
        return (secret, clients)
    }

    /// `[curve] operator_key_files`: CURVE on the daemon's control endpoint, open only to these operators' public keys
    /// (and the daemon's own), with the daemon's `secret_key_file`. The public key must sit beside the secret as
    /// `mktctl keygen --out` writes them (`NAME.key` for `NAME.key_secret`): mktctl reads it to know the endpoint.
    /// nil when absent; without `readingFiles` the keys are "" and nothing is read.
    public func controlCurveKeys(
        readingFiles: Bool, secretProblem: (String) -> String?, keyProblem: (String) -> String?,
        publicKeyOf: (String) -> String?
    ) throws(ConfigError) -> (secretKey: String, operatorKeys: [String], publicKeyFile: String)? {
        guard has("operator_key_files") else { return nil }
        guard has("secret_key_file") else {
            throw error("operator_key_files", "expected beside secret_key_file: the control endpoint's CURVE uses "
                + "the daemon's own key")
        }
        let secretPath = try string("secret_key_file")
        guard secretPath.hasSuffix(".key_secret") else {
            throw error("secret_key_file", "with operator_key_files, expected a NAME.key_secret file with its public "
                + "NAME.key beside it (as mktctl keygen --out writes them; mktctl reads the public one), got "
                + "\"\(secretPath)\"")
        }
        let publicKeyFile = String(secretPath.dropLast("_secret".count))
        guard readingFiles else {
            _ = try strings("operator_key_files", default: [])
            return ("", [], publicKeyFile)
        }
        let secret = try secretKeyFile("secret_key_file", problem: secretProblem)
        let operators = try keyFiles("operator_key_files", problem: keyProblem)
        guard !operators.isEmpty else {
            throw error("operator_key_files", "expected the public key files of the operators let in, got none")
        }
        let beside = (try? String(contentsOfFile: publicKeyFile, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let beside, beside == publicKeyOf(secret) else {
            throw error("secret_key_file", beside == nil
                ? "with operator_key_files, expected its public key beside it in \"\(publicKeyFile)\" (mktctl reads it)"
                : "\"\(publicKeyFile)\" does not hold the public key of \"\(secretPath)\"")
        }
        return (secret, operators, publicKeyFile)
    }

    /// The keys held in the files that the list `key` names (none when absent).
    public func keyFiles(_ key: String, problem: (String) -> String?) throws(ConfigError) -> [String] {
        var keys: [String] = []
        for path in try strings(key, default: []) { keys.append(try readKey(key, path: path, problem: problem)) }
        return keys
    }

    private func readKey(_ key: String, path: String, problem: (String) -> String?) throws(ConfigError) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw error(key, "cannot read \"\(path)\"")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let problem = problem(trimmed) { throw error(key, "\(problem), in \"\(path)\"") }
        return trimmed
    }

    // MARK: Tables

    /// The sub-table `[key]`; an empty one when absent, so defaults apply.
    public func table(_ key: String) throws(ConfigError) -> ConfigReader {
        let child: ConfigReader
        if let value = value(key) {
            guard let table = value.table else { throw error(key, "expected a table [\(key)], got \(found(value))") }
            child = ConfigReader(file: file, section: childSection(key), table: table)
        } else {
            child = ConfigReader(file: file, section: childSection(key), table: TOMLTable())
        }
        children.append(child)
        return child
    }

    private func childSection(_ key: String) -> String { section.isEmpty ? key : "\(section).\(key)" }

    /// The array of tables `[[key]]`; empty when absent.
    public func tables(_ key: String) throws(ConfigError) -> [ConfigReader] {
        guard let value = value(key) else { return [] }
        guard let array = value.array else { throw error(key, "expected an array of tables [[\(key)]], got \(found(value))") }
        var result: [ConfigReader] = []
        for (index, element) in array.enumerated() {
            guard let table = element.table else {
                throw error(key, "expected an array of tables [[\(key)]], got \(found(element)) at position \(index + 1)")
            }
            let child = ConfigReader(file: file, section: "\(key)[\(index + 1)]", table: table)
            children.append(child)
            result.append(child)
        }
        return result
    }

    /// Refuses keys that nothing read, in this table and every table read through it.
    public func finish() throws(ConfigError) {
        for key in table.keys.sorted() where !readKeys.contains(key) {
            throw error(key, "unknown key")
        }
        for child in children { try child.finish() }
    }
}

