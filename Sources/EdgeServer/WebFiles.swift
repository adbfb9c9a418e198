import Foundation
import NIOCore

/// The files edged serves over plain HTTP (`[edge] web`): the demo page at `/` (index.html) and the JavaScript client
/// at `/tickplant.js`, beside whatever else the directory holds (its own files only, no subdirectories). Read once at
/// start, so a request never touches the disk and a missing file is a config error, not a 404 in production.
public struct WebFiles: Sendable {
    public struct File: Sendable {
        public var contentType: String
        public var bytes: ByteBuffer
    }

    /// By URL path: `/` and `/index.html` are the same file.
    public private(set) var files: [String: File] = [:]

    /// Files a directory must hold to be edged's web directory.
    static let required = ["index.html", "tickplant.js"]

    /// Reads every regular file of `directory`; throws a reason when it is not a directory or lacks a required file.
    public init(directory: String) throws(WebFilesProblem) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            let relative =
                directory.hasPrefix("/") ? "" : " (relative to the working directory, \(manager.currentDirectoryPath))"
            throw WebFilesProblem("\(directory): no such directory\(relative)")
        }
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: directory)
        } catch {
            throw WebFilesProblem("\(directory): cannot list it (\(error.localizedDescription))")
        }
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            guard let data = manager.contents(atPath: path) else { throw WebFilesProblem("\(path): cannot read it") }
            files["/" + name] = File(contentType: Self.contentType(of: name), bytes: ByteBuffer(bytes: data))
        }
        for name in Self.required where files["/" + name] == nil {
            throw WebFilesProblem("\(directory): no \(name) in it (the web directory holds the demo page and client)")
        }
        files["/"] = files["/index.html"]
    }

    public func file(at path: String) -> File? { files[path] }

    static func contentType(of name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "json": "application/json"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        default: "application/octet-stream"
        }
    }
}

public struct WebFilesProblem: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
