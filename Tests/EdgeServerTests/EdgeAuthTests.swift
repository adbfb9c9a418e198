import Foundation
import Testing

@testable import EdgeServer
import MarketData

/// HS256 tokens: the HMAC against RFC 7515's own example, and what verification refuses.
@Suite struct TokenSignerTests {
    static let secret = Array("a secret of at least thirty-two bytes, for tests".utf8)

    @Test func theSignatureIsRFC7515sExample() throws {
        // RFC 7515 appendix A.1: the key (a JWK "k", base64url) and the signing input give this signature.
        let key = try #require(Base64URL.decode(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"))
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
            + "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        #expect(Base64URL.encode(TokenSigner(secret: key).signature(Array(input.utf8)))
            == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    }

    @Test func aMintedTokenVerifiesAndAnythingElseIsRefused() throws {
        let signer = TokenSigner(secret: Self.secret)
        let token = EdgeToken(subject: "alice", symbolPrefixes: ["AAPL", "MS"], expiresAt: 2_000, issuedAt: 1_000)
        let jwt = signer.mint(token)
        #expect(signer.verify(jwt, nowSeconds: 1_500, skewSeconds: 30) == .success(token))
        #expect(token.allows("AAPL") && token.allows("MSFT") && !token.allows("IBM"))
        // Within the clock skew after expiry, still good; beyond it, expired.
        #expect(signer.verify(jwt, nowSeconds: 2_030, skewSeconds: 30) == .success(token))
        #expect(signer.verify(jwt, nowSeconds: 2_031, skewSeconds: 30) == .failure(.expired(atSeconds: 2_000)))
        // Another secret, a changed claim, garbage, and the "none" algorithm.
        let other = TokenSigner(secret: Array("another secret of at least thirty-two bytes!!".utf8))
        #expect(other.verify(jwt, nowSeconds: 1_500, skewSeconds: 0) == .failure(.badSignature))
        let parts = jwt.split(separator: ".").map(String.init)
        let widened = Base64URL.encode(Array(#"{"exp":2000,"iat":1000,"sub":"alice","symbols":[""]}"#.utf8))
        #expect(signer.verify(parts[0] + "." + widened + "." + parts[2], nowSeconds: 1_500, skewSeconds: 0)
            == .failure(.badSignature))
        #expect(signer.verify("not.a-token", nowSeconds: 0, skewSeconds: 0) != .success(token))
        let none = Base64URL.encode(Array(#"{"alg":"none"}"#.utf8)) + "." + parts[1] + "."
        guard case .failure(.malformed) = signer.verify(none, nowSeconds: 1_500, skewSeconds: 0) else {
            Issue.record("an unsigned token was not refused as malformed")
            return
        }
    }

    @Test func notBeforeAudienceIssuerAndLifetimeAreEnforcedWhenAsked() {
        let signer = TokenSigner(secret: Self.secret)
        let token = EdgeToken(subject: "bob", symbolPrefixes: [""], expiresAt: 10_000, issuedAt: 1_000,
            notBefore: 2_000, audience: ["edge-eu", "edge-us"], issuer: "broker")
        let jwt = signer.mint(token)
        #expect(signer.verify(jwt, nowSeconds: 1_989, skewSeconds: 10) == .failure(.notYetValid(fromSeconds: 2_000)))
        #expect(signer.verify(jwt, nowSeconds: 1_990, skewSeconds: 10) == .success(token))
        let wanted = TokenRequirements(audience: "edge-us", issuer: "broker", maxLifetimeSeconds: 9_000)
        #expect(signer.verify(jwt, nowSeconds: 5_000, skewSeconds: 0, requirements: wanted) == .success(token))
        var other = wanted
        other.audience = "edge-asia"
        #expect(signer.verify(jwt, nowSeconds: 5_000, skewSeconds: 0, requirements: other)
            == .failure(.wrongAudience(expected: "edge-asia")))
        other = wanted
        other.issuer = "someone else"
        #expect(signer.verify(jwt, nowSeconds: 5_000, skewSeconds: 0, requirements: other)
            == .failure(.wrongIssuer(expected: "someone else")))
        other = wanted
        other.maxLifetimeSeconds = 8_999
        #expect(signer.verify(jwt, nowSeconds: 5_000, skewSeconds: 0, requirements: other)
            == .failure(.livesTooLong(seconds: 9_000, maximum: 8_999)))
        // aud as one string; a token that names no audience is refused where one is required.
        let single = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "."
            + Base64URL.encode(Array(#"{"aud":"edge-us","exp":10000,"iat":1000,"sub":"c"}"#.utf8))
        let signed = single + "." + Base64URL.encode(signer.signature(Array(single.utf8)))
        let audienceOnly = TokenRequirements(audience: "edge-us")
        #expect((try? signer.verify(signed, nowSeconds: 5_000, skewSeconds: 0, requirements: audienceOnly).get())?
            .audience == ["edge-us"])
        let anyone = signer.mint(EdgeToken(subject: "d", symbolPrefixes: [""], expiresAt: 10_000, issuedAt: 1_000))
        #expect(signer.verify(anyone, nowSeconds: 5_000, skewSeconds: 0, requirements: wanted)
            == .failure(.wrongAudience(expected: "edge-us")))
    }

    @Test func anExpiryNear2To64NeitherTrapsNorWrapsIntoThePast() {
        let signer = TokenSigner(secret: Self.secret)
        let forever = EdgeToken(subject: "e", symbolPrefixes: [""], expiresAt: UInt64.max - 1, issuedAt: 1_000)
        // exp + skew wrapped to 28 before: "expired" for a token that never expires.
        #expect(signer.verify(signer.mint(forever), nowSeconds: 5_000, skewSeconds: 30) == .success(forever))
        // A lifetime limit refuses it (7 days by default in [auth]).
        #expect(signer.verify(signer.mint(forever), nowSeconds: 5_000, skewSeconds: 30,
            requirements: TokenRequirements(maxLifetimeSeconds: 7 * 86_400))
            == .failure(.livesTooLong(seconds: UInt64.max - 1_001, maximum: 7 * 86_400)))
    }

    @Test func aTokenWithoutSymbolsAllowsEverySymbol() {
        let signer = TokenSigner(secret: Self.secret)
        let everything = signer.mint(EdgeToken(subject: "ops", symbolPrefixes: [""], expiresAt: 10))
        #expect((try? signer.verify(everything, nowSeconds: 0, skewSeconds: 0).get())?.allows("ZVZZT") == true)
    }

    @Test func aSecretFileTooShortOrMissingIsAClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: TokenFileError.self) { try TokenSigner.load(secretFile: path) }
        try SecretFiles.create(path, contents: "short\n")
        #expect { try TokenSigner.load(secretFile: path) } throws: { "\($0)".contains("holds 5 bytes") }
        try FileManager.default.removeItem(atPath: path)
        try SecretFiles.create(path, contents: TokenSigner.newSecret() + "\n")
        #expect(try TokenSigner.load(secretFile: path).key.count == 64)
        // Readable by others: refused, the file named, whatever it holds.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect { try TokenSigner.load(secretFile: path) } throws: { "\($0)".contains("\(path) is open to others") }
    }
}

/// `[auth]` in etc/edged.toml: turned on without a usable secret, the file, key and reason are named.
@Suite struct EdgeAuthConfiguration {
    @Test func authWithoutASecretIsAConfigErrorNamingTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edged-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/edged.toml"
        try "[auth]\nenabled = true\nsecret_file = \"\(directory)/missing.secret\"\n".write(toFile: file, atomically: true,
            encoding: .utf8)
        do {
            _ = try EdgeConfiguration.load(file: file)
            Issue.record("a missing secret was accepted")
        } catch {
            #expect("\(error)".contains("[auth] secret_file") && "\(error)".contains("edged.toml"), "\(error)")
        }
        try SecretFiles.create(directory + "/missing.secret", contents: TokenSigner.newSecret() + "\n")
        let loaded = try EdgeConfiguration.load(file: file)
        #expect(loaded.auth?.timeout == .seconds(5) && loaded.auth?.clockSkewSeconds == 30)
        #expect(loaded.auth?.requirements == TokenRequirements(maxLifetimeSeconds: 7 * 86_400))
        try ("[auth]\nenabled = true\nsecret_file = \"\(directory)/missing.secret\"\naudience = \"edge-eu\"\n"
            + "issuer = \"broker\"\nmax_lifetime = \"8h\"\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try EdgeConfiguration.load(file: file).auth?.requirements
            == TokenRequirements(audience: "edge-eu", issuer: "broker", maxLifetimeSeconds: 8 * 3_600))
        // Off, the other keys may stay in the file.
        try "[auth]\nenabled = false\nsecret_file = \"nowhere\"\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try EdgeConfiguration.load(file: file).auth == nil)
    }
}

/// Tokens over a real WebSocket: missing 401, wrong signature 402, expired 402, not entitled 403, too late 404.
@Suite(.serialized) struct EdgeAuthOverRealSockets {
    static let signer = TokenSigner(secret: TokenSignerTests.secret)

    static func token(for prefixes: [String], expiresIn seconds: Int64 = 3_600, signer: TokenSigner = signer) -> String {
        let now = Int64(WallClock.nowNanoseconds() / 1_000_000_000)
        return signer.mint(EdgeToken(subject: "tester", symbolPrefixes: prefixes, expiresAt: UInt64(now + seconds),
            issuedAt: UInt64(now)))
    }

    static func fixture(timeout: Duration = .seconds(5), clockSkewSeconds: UInt64 = 5) async throws
        -> EdgeServerOverRealSockets.Fixture
    {
        try await EdgeServerOverRealSockets.Fixture(
            auth: AuthConfiguration(signer: signer, timeout: timeout, clockSkewSeconds: clockSkewSeconds))
    }

    /// The close frame's status code.
    static func closeCode(_ client: TestWebSocketClient) throws -> Int? {
        while true {
            let frame = try client.receiveFrame()
            if frame.opcode == 0x8 { return frame.payload.count >= 2 ? Int(frame.payload[0]) << 8 | Int(frame.payload[1]) : nil }
        }
    }

    @Test func withoutATokenNothingButAuthAndThenTheTimeoutCloses() async throws {
        let fixture = try await Self.fixture(timeout: .milliseconds(600))
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        #expect(try client.receiveJSON()["code"] as? Int == 401)
        try client.send(text: #"{"action":"auth"}"#)
        #expect(try client.receiveJSON()["code"] as? Int == 400, "auth without a token is a bad message")
        let late = try client.receiveJSON()
        #expect(late["code"] as? Int == 404)
        #expect(try Self.closeCode(client) == 1008)
        await fixture.stop()
    }

    @Test func aValidTokenEntitlesItsSymbolsOnly() async throws {
        let fixture = try await Self.fixture()
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(text: #"{"action":"auth","token":"\#(Self.token(for: ["AAPL"]))"}"#)
        let authenticated = try client.receiveJSON()
        #expect(authenticated["type"] as? String == "authenticated" && authenticated["subject"] as? String == "tester")
        try client.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        #expect(try client.receiveText() == #"{"type":"subscribed","symbols":["AAPL"]}"#)
        try client.send(text: #"{"action":"subscribe","symbols":["AAPL","MSFT"]}"#)
        let refused = try client.receiveJSON()
        #expect(refused["code"] as? Int == 403)
        #expect((refused["message"] as? String)?.contains("MSFT") == true)
        // The token on the URL works as well as in a message.
        let second = try TestWebSocketClient(port: fixture.port, path: "/prices?token=\(Self.token(for: [""]))")
        #expect(try second.receiveJSON()["type"] as? String == "authenticated")
        try second.send(text: #"{"action":"subscribe","symbol":"MSFT"}"#)
        #expect(try second.receiveText() == #"{"type":"subscribed","symbols":["MSFT"]}"#)
        await fixture.stop()
    }

    @Test func aSilentClientIsToldAndClosedWhenItsTokenExpires() async throws {
        let fixture = try await Self.fixture(clockSkewSeconds: 0)
        let token = Self.token(for: [""], expiresIn: 2)
        let client = try TestWebSocketClient(port: fixture.port, path: "/prices?token=\(token)")
        #expect(try client.receiveJSON()["type"] as? String == "authenticated")
        // It says nothing more. Before, a client that stayed silent stayed connected, its data flowing.
        let started = Date()
        let told = try client.receiveJSON(timeout: 6)
        #expect(told["code"] as? Int == 402)
        #expect((told["message"] as? String)?.contains("expired") == true, "\(told)")
        #expect(try Self.closeCode(client) == 1008)
        #expect(Date().timeIntervalSince(started) < 4.5, "told within a second or so of the expiry")
        await fixture.stop()
    }

    @Test(arguments: ["wrong signature", "expired", "garbage"])
    func aBadTokenGets402AndTheConnectionCloses(kind: String) async throws {
        let fixture = try await Self.fixture()
        let token = switch kind {
        case "wrong signature":
            Self.token(for: ["AAPL"], signer: TokenSigner(secret: Array("not the edge's secret, though just as long".utf8)))
        case "expired": Self.token(for: ["AAPL"], expiresIn: -60)
        default: "garbage"
        }
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(text: #"{"action":"auth","token":"\#(token)"}"#)
        #expect(try client.receiveJSON()["code"] as? Int == 402, "\(kind)")
        #expect(try Self.closeCode(client) == 1008, "\(kind)")
        await fixture.stop()
    }
}
