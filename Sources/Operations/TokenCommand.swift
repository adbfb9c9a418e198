import ArgumentParser
import EdgeServer
import Foundation
import MarketData

/// `mktctl token`: mints a client token for edged (an HS256 JWT), or makes a new secret to sign them with.
public struct TokenCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Mint a WebSocket client token (HS256 JWT) with edged's secret, or make a new secret.",
        discussion: """
            The secret is the file named by [auth] secret_file in etc/edged.toml. Examples:
              mktctl token --new-secret etc/edged.secret
              mktctl token --subject alice --symbols AAPL,MSFT --ttl 8h
            """)

    @Option(name: .long, help: "The secret file (default: [auth] secret_file of edged.toml in --etc).")
    public var secretFile: String?

    @Option(name: .long, help: "The directory of the daemons' configuration files.")
    public var etc = "etc"

    @Option(name: .long, help: "Who the token is for (the sub claim).")
    public var subject = "demo"

    @Option(name: .long, help: "Comma-separated symbol prefixes the holder may subscribe to; empty for every symbol.")
    public var symbols = ""

    @Option(name: .long,
        help: "How long the token is good for: 90s, 30m, 8h, 7d (edged takes at most [auth] max_lifetime).")
    public var ttl = "24h"

    @Option(name: .long, help: "The aud claim: the edge deployment it is for ([auth] audience).")
    public var audience: String?

    @Option(name: .long, help: "The iss claim: who issued it ([auth] issuer).")
    public var issuer: String?

    @Option(name: .long, help: "Write a new random secret to this file (mode 0600) instead of minting a token.")
    public var newSecret: String?

    public init() {}

    public func run() throws {
        if let newSecret {
            guard !FileManager.default.fileExists(atPath: newSecret) else {
                throw ValidationError("\(newSecret) exists; remove it first (every token signed with it stops working)")
            }
            do {
                try SecretFiles.create(newSecret, contents: TokenSigner.newSecret() + "\n")
            } catch {
                throw ValidationError(error.description)
            }
            print("wrote a new secret to \(newSecret); set [auth] secret_file to it and restart edged")
            return
        }
        print(try Self.mint(secretFile: secretFile ?? Self.secretFileFromConfig(etc: etc), subject: subject,
            symbols: symbols, ttl: ttl, audience: audience, issuer: issuer))
    }

    /// A token signed with the secret in `secretFile`, for `subject`, allowing the comma-separated symbol prefixes
    /// (every symbol when empty), good for `ttl` from now.
    public static func mint(
        secretFile: String, subject: String, symbols: String, ttl: String, audience: String? = nil,
        issuer: String? = nil
    ) throws -> String {
        guard let seconds = parseTTL(ttl) else {
            throw ValidationError("--ttl: expected a duration such as 90s, 30m, 8h or 7d, got \"\(ttl)\"")
        }
        let signer = try TokenSigner.load(secretFile: secretFile)
        let prefixes = symbols.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for prefix in prefixes where !prefix.isEmpty {
            if let problem = SymbolRules.problem(with: prefix) { throw ValidationError("--symbols \(prefix): \(problem)") }
        }
        let now = WallClock.nowNanoseconds() / 1_000_000_000
        return signer.mint(EdgeToken(subject: subject, symbolPrefixes: prefixes.isEmpty ? [""] : prefixes,
            expiresAt: now.saturatingAdd(seconds), issuedAt: now, audience: audience.map { [$0] } ?? [],
            issuer: issuer ?? ""))
    }

    static func parseTTL(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let value = UInt64(text.dropLast()), value > 0 else {
            return nil
        }
        let (seconds, overflowed) = value.multipliedReportingOverflow(by: unit)
        return overflowed ? nil : seconds
    }

    static func secretFileFromConfig(etc: String) throws -> String {
        let file = etc + "/edged.toml"
        guard FileManager.default.fileExists(atPath: file) else {
            throw ValidationError("no \(file): give --secret-file or --etc")
        }
        let root = try ConfigReader.load(file: file)
        guard let path = try root.table("auth").optionalString("secret_file") else {
            throw ValidationError("\(file) has no [auth] secret_file: give --secret-file")
        }
        return path
    }
}
