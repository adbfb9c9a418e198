import COpenSSL
import Foundation
import MarketData

/// What a client's token entitles it to (DESIGN section 8): who it is, which symbols it may watch, until when.
public struct EdgeToken: Equatable, Sendable {
    public var subject: String
    /// Symbol prefixes the holder may subscribe to; an empty prefix allows every symbol.
    public var symbolPrefixes: [String]
    /// Unix seconds after which the token is refused (give or take the configured clock skew).
    public var expiresAt: UInt64
    public var issuedAt: UInt64
    /// Unix seconds before which the token is refused (`nbf`; 0: none).
    public var notBefore: UInt64
    /// Whom the token was issued for (`aud`) and by whom (`iss`); empty when the token does not say.
    public var audience: [String]
    public var issuer: String

    public init(subject: String, symbolPrefixes: [String], expiresAt: UInt64, issuedAt: UInt64 = 0,
        notBefore: UInt64 = 0, audience: [String] = [], issuer: String = "")
    {
        self.subject = subject
        self.symbolPrefixes = symbolPrefixes
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.audience = audience
        self.issuer = issuer
    }

    public func allows(_ symbol: String) -> Bool {
        symbolPrefixes.contains { symbol.hasPrefix($0) }
    }
}

/// Why a token was refused (error 402 on the WebSocket).
public enum TokenProblem: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case badSignature
    case expired(atSeconds: UInt64)
    case notYetValid(fromSeconds: UInt64)
    case wrongAudience(expected: String)
    case wrongIssuer(expected: String)
    case livesTooLong(seconds: UInt64, maximum: UInt64)

    public var description: String {
        switch self {
        case let .malformed(why): "malformed token: \(why)"
        case .badSignature: "the token's signature does not verify"
        case let .expired(at): "the token expired at \(at) (unix seconds)"
        case let .notYetValid(from): "the token is not valid before \(from) (unix seconds)"
        case let .wrongAudience(expected): "the token is not for \"\(expected)\" (its aud claim)"
        case let .wrongIssuer(expected): "the token was not issued by \"\(expected)\" (its iss claim)"
        case let .livesTooLong(seconds, maximum):
            "the token is good for \(seconds) s; this edge takes tokens of at most \(maximum) s"
        }
    }
}

/// What edged asks of a token beyond its signature and times (`[auth]` audience, issuer, max_lifetime).
public struct TokenRequirements: Sendable, Equatable {
    /// The `aud` claim must name it (a string, or one of an array).
    public var audience: String?
    /// The `iss` claim must be it.
    public var issuer: String?
    /// `exp` may lie at most this far after `iat` (or `nbf`, or now, whichever the token has first); 0: any.
    public var maxLifetimeSeconds: UInt64

    public init(audience: String? = nil, issuer: String? = nil, maxLifetimeSeconds: UInt64 = 0) {
        self.audience = audience
        self.issuer = issuer
        self.maxLifetimeSeconds = maxLifetimeSeconds
    }
}

/// Mints and verifies HS256 JSON Web Tokens (RFC 7519) with a shared secret, the HMAC computed by OpenSSL.
///
/// The claims: `sub` (subject), `symbols` (allowed symbol prefixes; absent or `[""]` means every symbol), `exp`
/// and `iat` (unix seconds), and optionally `nbf` (not before), `aud` (a string or an array) and `iss`. Only `HS256`
/// is accepted: a token naming another algorithm, `none` included, is refused.
public struct TokenSigner: Sendable {
    let key: [UInt8]
    public static let minimumSecretBytes = 32

    public init(secret: [UInt8]) {
        key = secret
    }

    /// The secret from a file (its text, without a trailing newline), at least `minimumSecretBytes` long.
    public static func load(secretFile path: String) throws -> TokenSigner {
        if let problem = SecretFiles.problem(withPermissionsOf: path) { throw TokenFileError(description: problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenFileError(description: "cannot read the token secret \(path)")
        }
        var secret = [UInt8](data)
        while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
        guard secret.count >= minimumSecretBytes else {
            throw TokenFileError(description:
                "the token secret \(path) holds \(secret.count) bytes; at least \(minimumSecretBytes) are needed")
        }
        return TokenSigner(secret: secret)
    }

    /// A new random secret (32 random bytes as 64 hex digits), from OpenSSL's generator.
    public static func newSecret() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        precondition(RAND_bytes(&bytes, Int32(bytes.count)) == 1, "OpenSSL's random generator failed")
        return bytes.map { String(format: "%02x", $0) }.joined()
    }

    public func mint(_ token: EdgeToken) -> String {
        struct Claims: Encodable {
            var sub: String
            var symbols: [String]
            var iat: UInt64
            var exp: UInt64
            var nbf: UInt64?
            var aud: [String]?
            var iss: String?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let claims = Claims(sub: token.subject, symbols: token.symbolPrefixes, iat: token.issuedAt,
            exp: token.expiresAt, nbf: token.notBefore == 0 ? nil : token.notBefore,
            aud: token.audience.isEmpty ? nil : token.audience, iss: token.issuer.isEmpty ? nil : token.issuer)
        let payload = Base64URL.encode([UInt8]((try? encoder.encode(claims)) ?? Data()))
        let signingInput = header + "." + payload
        return signingInput + "." + Base64URL.encode(signature(Array(signingInput.utf8)))
    }

    /// The token's claims when its signature holds, it is within its times (`skewSeconds` allowed either way) and
    /// it meets `requirements`.
    public func verify(
        _ jwt: String, nowSeconds: UInt64, skewSeconds: UInt64, requirements: TokenRequirements = TokenRequirements()
    ) -> Result<EdgeToken, TokenProblem> {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformed("expected three parts separated by dots")) }
        guard let headerBytes = Base64URL.decode(parts[0]), let payloadBytes = Base64URL.decode(parts[1]),
            let signatureBytes = Base64URL.decode(parts[2])
        else { return .failure(.malformed("a part is not base64url")) }
        struct Header: Decodable { var alg: String }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)) else {
            return .failure(.malformed("the header is not JSON with \"alg\""))
        }
        guard header.alg == "HS256" else { return .failure(.malformed("algorithm \"\(header.alg)\"; only HS256 is accepted")) }
        let expected = signature(Array((parts[0] + "." + parts[1]).utf8))
        guard signatureBytes.count == expected.count,
            CRYPTO_memcmp(signatureBytes, expected, expected.count) == 0
        else { return .failure(.badSignature) }
        struct Claims: Decodable {
            var sub: String?
            var symbols: [String]?
            var exp: UInt64?
            var iat: UInt64?
            var nbf: UInt64?
            var aud: Audience?
            var iss: String?
        }
        guard let claims = try? JSONDecoder().decode(Claims.self, from: Data(payloadBytes)) else {
            return .failure(.malformed("the claims are not JSON of the expected shape"))
        }
        guard let expiresAt = claims.exp else { return .failure(.malformed("no \"exp\" claim")) }
        // Times from the token are bounded sums: an exp near 2^64 must not wrap into the past, nor trap.
        guard nowSeconds <= expiresAt.saturatingAdd(skewSeconds) else {
            return .failure(.expired(atSeconds: expiresAt))
        }
        if let notBefore = claims.nbf, nowSeconds.saturatingAdd(skewSeconds) < notBefore {
            return .failure(.notYetValid(fromSeconds: notBefore))
        }
        let audience = claims.aud?.names ?? []
        if let expected = requirements.audience, !audience.contains(expected) {
            return .failure(.wrongAudience(expected: expected))
        }
        if let expected = requirements.issuer, claims.iss != expected {
            return .failure(.wrongIssuer(expected: expected))
        }
        if requirements.maxLifetimeSeconds > 0 {
            let start = claims.iat ?? claims.nbf ?? nowSeconds
            let lifetime = expiresAt > start ? expiresAt - start : 0
            guard lifetime <= requirements.maxLifetimeSeconds else {
                return .failure(.livesTooLong(seconds: lifetime, maximum: requirements.maxLifetimeSeconds))
            }
        }
        return .success(EdgeToken(subject: claims.sub ?? "", symbolPrefixes: claims.symbols ?? [""],
            expiresAt: expiresAt, issuedAt: claims.iat ?? 0, notBefore: claims.nbf ?? 0, audience: audience,
            issuer: claims.iss ?? ""))
    }

    /// HMAC-SHA256 of `message` with the secret.
    func signature(_ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let done = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                    messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count, &out, &length)
            }
        }
        precondition(done != nil, "OpenSSL's HMAC failed")
        return Array(out.prefix(Int(length)))
    }
}

/// `aud`: one name or an array of them (RFC 7519 section 4.1.3).
struct Audience: Decodable {
    var names: [String]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            names = [one]
        } else {
            names = try container.decode([String].self)
        }
    }
}

public struct TokenFileError: Error, CustomStringConvertible {
    public var description: String
}

/// Base64 with the URL alphabet and no padding (RFC 4648 section 5), as JWTs use it.
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.allSatisfy({ $0.isLetter && $0.isASCII || $0.isNumber && $0.isASCII || $0 == "-" || $0 == "_" })
        else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while standard.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map { [UInt8]($0) }
    }
}
