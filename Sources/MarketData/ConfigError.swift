/// A configuration problem a person can fix: which file, which key, what was expected and what was found.
/// Printed as `etc/plantd.toml: [filters] max_jump_pct: expected a number between 0 and 100, got "abc"`;
/// daemons exit with status 2 on it.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let file: String
    /// `[section] key`, or empty when the problem is the whole file.
    public let key: String
    public let reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }

    /// The exit status for a bad configuration (DESIGN section 2).
    public static let exitStatus: Int32 = 2
}
