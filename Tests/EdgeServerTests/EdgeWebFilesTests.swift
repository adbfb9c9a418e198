import Foundation
import MarketData
import Testing
import TestSupport

@testable import EdgeServer

/// `[edge] web`: the demo page at `/` and the JavaScript client at `/tickplant.js`, over plain HTTP from the same port
/// as the WebSocket.
@Suite struct EdgeWebFiles {
    static let webDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("web").path

    @Test func thePageAndTheClientAreServedWithTheirTypesAndUnknownPathsAre404() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            $0.web = try? WebFiles(directory: Self.webDirectory)
        }
        let page = try LoopbackHTTP.request(port: fixture.port, path: "/")
        #expect(page.hasPrefix("HTTP/1.1 200"), "\(page.prefix(200))")
        #expect(page.contains("Content-Type: text/html; charset=utf-8"))
        #expect(page.contains("Cache-Control: no-cache"))
        let html = try String(contentsOfFile: Self.webDirectory + "/index.html", encoding: .utf8)
        #expect(page.hasSuffix(html), "the body is not web/index.html")
        let client = try LoopbackHTTP.request(port: fixture.port, path: "/tickplant.js")
        #expect(client.hasPrefix("HTTP/1.1 200") && client.contains("Content-Type: text/javascript"))
        #expect(client.contains("class PriceBuffer"))
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/demo.js").contains("tickplantDemo"))
        let outside = try LoopbackHTTP.request(port: fixture.port, path: "/../Package.swift")
        #expect(outside.hasPrefix("HTTP/1.1 404"))
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/test").hasPrefix("HTTP/1.1 404"))
        // The WebSocket still upgrades on the same port.
        let socket = try TestWebSocketClient(port: fixture.port)
        try socket.send(text: #"{"action":"ping"}"#)
        #expect(try socket.receiveJSON()["type"] as? String == "pong")
        await fixture.stop()
    }

    @Test func withoutAWebDirectoryThereIsNoPage() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/").hasPrefix("HTTP/1.1 404"))
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/tickplant.js").hasPrefix("HTTP/1.1 404"))
        await fixture.stop()
    }

    @Test func aMissingOrIncompleteWebDirectoryIsAConfigErrorNamingTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edged-web-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory + "/web", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/edged.toml"
        for (web, reason) in [(directory + "/nowhere", "no such directory"), (directory + "/web", "no index.html")] {
            try "[edge]\nweb = \"\(web)\"\n".write(toFile: file, atomically: true, encoding: .utf8)
            do {
                _ = try EdgeConfiguration.load(file: file)
                Issue.record("web = \(web) was accepted")
            } catch {
                #expect("\(error)".contains("[edge] web") && "\(error)".contains(reason), "\(error)")
            }
        }
        try "<html></html>".write(toFile: directory + "/web/index.html", atomically: true, encoding: .utf8)
        try "[edge]\nweb = \"\(directory)/web\"\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try EdgeConfiguration.load(file: file) }
        try "// client".write(toFile: directory + "/web/tickplant.js", atomically: true, encoding: .utf8)
        #expect(try EdgeConfiguration.load(file: file).web?.file(at: "/")?.contentType == "text/html; charset=utf-8")
        // Empty: no page.
        try "[edge]\nweb = \"\"\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try EdgeConfiguration.load(file: file).web == nil)
    }
}
