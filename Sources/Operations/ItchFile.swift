import FeedHandler
import Foundation

/// ITCH 5.0 files as Nasdaq publishes its sample days: each message preceded by its length as a big-endian u16,
/// plain or gzip-compressed (read through the system's `gzip -dc`, so no compression library is linked).
public final class ItchFileReader {
    private let handle: FileHandle
    private let decompressor: Process?
    private var buffer: [UInt8] = []
    private var offset = 0
    private var finished = false
    public private(set) var messagesRead: UInt64 = 0

    public init(path: String) throws {
        guard let probe = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        let magic = probe.readData(ofLength: 2)
        try probe.close()
        if magic == Data([0x1F, 0x8B]) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/gzip")
            process.arguments = ["-dc", path]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            decompressor = process
            handle = pipe.fileHandleForReading
        } else {
            decompressor = nil
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        }
    }

    deinit {
        if let decompressor, decompressor.isRunning { decompressor.terminate() }
    }

    /// The next message, nil at the end of the file. A length that runs past the end is a truncated file: the
    /// partial message is not returned.
    public func next() -> [UInt8]? {
        while true {
            if buffer.count - offset >= 2 {
                let length = Int(buffer[offset]) << 8 | Int(buffer[offset + 1])
                if buffer.count - offset - 2 >= length {
                    let message = Array(buffer[(offset + 2)..<(offset + 2 + length)])
                    offset += 2 + length
                    messagesRead += 1
                    return message
                }
            }
            guard !finished else { return nil }
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty {
                finished = true
                continue
            }
            buffer.removeFirst(offset)
            offset = 0
            buffer.append(contentsOf: chunk)
        }
    }
}

/// Writes the messages the simulator sends as an ITCH file (plain), readable by `ItchFileReader` and by tools that
/// read Nasdaq's sample files.
public final class ItchFileWriter {
    private let handle: FileHandle
    private var pending: [UInt8] = []
    public private(set) var messagesWritten: UInt64 = 0

    public init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    }

    public func append(_ message: [UInt8]) {
        var writer = BigEndianWriter(capacity: 2)
        writer.u16(UInt16(message.count))
        pending.append(contentsOf: writer.bytes)
        pending.append(contentsOf: message)
        messagesWritten += 1
        if pending.count >= 1 << 20 { flush() }
    }

    public func flush() {
        guard !pending.isEmpty else { return }
        handle.write(Data(pending))
        pending.removeAll(keepingCapacity: true)
    }

    public func close() throws {
        flush()
        try handle.close()
    }
}
