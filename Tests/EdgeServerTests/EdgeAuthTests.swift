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

    @Test func aTokenWithoutSymbolsAllowsEverySymbol() {
        let signer = TokenSigner(secret: Self.secret)
        let everything = signer.mint(EdgeToken(subject: "ops", symbolPrefixes: [""], expiresAt: 10))
        #expect((try? signer.verify(everything, nowSeconds: 0, skewSeconds: 0).get())?.allows("ZVZZT") == true)
    }

    @Test func aSecretFileTooShortOrMissingIsAClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: TokenFileError.self) { try TokenSigner.load(secretFile: path) }
        try "short\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: TokenFileError.self) { try TokenSigner.load(secretFile: path) }
        try (TokenSigner.newSecret() + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try TokenSigner.load(secretFile: path).key.count == 64)
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
        try (TokenSigner.newSecret() + "\n").write(toFile: directory + "/missing.secret", atomically: true, encoding: .utf8)
        let loaded = try EdgeConfiguration.load(file: file)
        #expect(loaded.auth?.timeout == .seconds(5) && loaded.auth?.clockSkewSeconds == 30)
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
        return signer.mint(EdgeToken(subject: "tester", symbolPrefixes: prefixes, expiresAt: UInt64(now + seconds)))
    }

    static func fixture(timeout: Duration = .seconds(5)) async throws -> EdgeServerOverRealSockets.Fixture {
        try await EdgeServerOverRealSockets.Fixture(
            auth: AuthConfiguration(signer: signer, timeout: timeout, clockSkewSeconds: 5))
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
