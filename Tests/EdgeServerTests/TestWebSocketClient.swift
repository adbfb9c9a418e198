import Foundation
import Glibc
import TestSupport

/// A minimal RFC 6455 client over a plain TCP socket: enough to speak to edged from a test the way a browser does
/// (masked client frames, unmasked server frames), with a timeout on every read.
final class TestWebSocketClient {
    private(set) var fd: Int32
    private var buffer: [UInt8] = []

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The server answered the upgrade with something else than 101: its status line and headers.
    struct Refused: Error, CustomStringConvertible {
        let response: String
        var status: Int { Int(response.split(separator: " ").dropFirst().first ?? "") ?? 0 }
        var description: String { "upgrade refused: \(response)" }
    }

    /// Connects and performs the HTTP upgrade on `path`.
    /// `receiveBuffer` sets a small kernel receive buffer first: a client that stops reading then backs up quickly.
    /// `headers` are more lines of the upgrade request ("Origin: https://..."); `source` a loopback address to
    /// connect from. A refused upgrade throws `Refused` with the server's answer.
    init(
        port: Int, path: String = "/prices", receiveBuffer: Int32? = nil, headers: [String] = [],
        source: String? = nil
    ) throws {
        fd = try LoopbackHTTP.connect(port: port, receiveBuffer: receiveBuffer, source: source)
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        try writeAll(Array(request.utf8))
        let head = try readUntil(Array("\r\n\r\n".utf8))
        let text = String(decoding: head, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 101") else { throw Refused(response: text) }
        // RFC 6455's own example key and accept value.
        guard text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") else { throw Failure(description: "bad accept: \(text)") }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Closes the TCP connection without a closing handshake: a client that went away.
    func closeAbruptly() {
        close(fd)
        fd = -1
    }

    func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw Failure(description: "write failed: errno \(errno)") }
            offset += written
        }
    }

    private func fill(timeout: Double) throws {
        var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&item, 1, Int32(timeout * 1000)) > 0 else { throw Failure(description: "timed out") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = read(fd, &chunk, chunk.count)
        guard count > 0 else { throw Failure(description: "connection closed") }
        buffer += chunk[0..<count]
    }

    private func readUntil(_ marker: [UInt8], timeout: Double = 5) throws -> [UInt8] {
        while true {
            if let range = buffer.firstRange(of: marker) {
                let head = Array(buffer[..<range.upperBound])
                buffer.removeFirst(range.upperBound)
                return head
            }
            try fill(timeout: timeout)
        }
    }

    private func take(_ count: Int, timeout: Double) throws -> [UInt8] {
        while buffer.count < count { try fill(timeout: timeout) }
        let bytes = Array(buffer.prefix(count))
        buffer.removeFirst(count)
        return bytes
    }

    /// Sends one masked frame.
    func send(opcode: UInt8 = 0x1, _ payload: [UInt8], fin: Bool = true) throws {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame.append(0x80 | 126)
            frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try writeAll(frame)
    }

    func send(text: String) throws { try send(Array(text.utf8)) }

    /// Reads the next frame: its opcode and payload. Pings are answered and skipped, as browsers do (edged pings every
    /// client at each heartbeat to measure edged -> client), unless `answeringPings` is false.
    func receiveFrame(timeout: Double = 5, answeringPings: Bool = true) throws -> (opcode: UInt8, payload: [UInt8]) {
        while true {
            let frame = try receiveAnyFrame(timeout: timeout)
            guard answeringPings && frame.opcode == 0x9 else { return frame }
            try send(opcode: 0xA, frame.payload)
        }
    }

    private func receiveAnyFrame(timeout: Double) throws -> (opcode: UInt8, payload: [UInt8]) {
        let header = try take(2, timeout: timeout)
        var length = Int(header[1] & 0x7F)
        if length == 126 {
            let extended = try take(2, timeout: timeout)
            length = Int(extended[0]) << 8 | Int(extended[1])
        } else if length == 127 {
            let extended = try take(8, timeout: timeout)
            length = extended.reduce(0) { $0 << 8 | Int($1) }
        }
        return (header[0] & 0x0F, try take(length, timeout: timeout))
    }

    /// The next text message as a JSON object, skipping heartbeats unless asked for.
    func receiveJSON(timeout: Double = 5, skipHeartbeats: Bool = true) throws -> [String: Any] {
        while true {
            let frame = try receiveFrame(timeout: timeout)
            guard frame.opcode == 0x1 else { throw Failure(description: "expected text, got opcode \(frame.opcode)") }
            let object = try JSONSerialization.jsonObject(with: Data(frame.payload)) as? [String: Any] ?? [:]
            if skipHeartbeats && object["type"] as? String == "heartbeat" { continue }
            return object
        }
    }

    func receiveText(timeout: Double = 5) throws -> String {
        String(decoding: try receiveFrame(timeout: timeout).payload, as: UTF8.self)
    }
}
