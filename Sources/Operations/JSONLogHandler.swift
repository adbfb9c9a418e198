import Foundation
import Glibc
import Logging

/// swift-log's output as one JSON object per line on stderr (`--log-format json`), for log collectors:
/// `{"ts":"2026-11-26T03:58:30.123Z","level":"info","label":"plantd","message":"...","feeds":"2",...}`. The entry's
/// metadata become fields of the object (a field named like one of the four above keeps a `meta_` prefix).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        var line = #"{"ts":""# + Self.timestamp() + #"","level":""# + event.level.rawValue + #"","label":"#
            + Self.quoted(label) + #","message":"# + Self.quoted("\(event.message)")
        for key in fields.keys.sorted() {
            let name = ["ts", "level", "label", "message"].contains(key) ? "meta_" + key : key
            line += "," + Self.quoted(name) + ":" + Self.json(fields[key]!)
        }
        line += "}\n"
        // One write per entry, so that lines from several threads never interleave.
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case let .string(text): quoted(text)
        case let .stringConvertible(convertible): quoted(convertible.description)
        case let .array(values): "[" + values.map(json).joined(separator: ",") + "]"
        case let .dictionary(entries):
            "{" + entries.keys.sorted().map { quoted($0) + ":" + json(entries[$0]!) }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Now in UTC, to the millisecond: `2026-11-26T03:58:30.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}
