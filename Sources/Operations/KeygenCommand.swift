import ArgumentParser
import MarketData
import Foundation
import ZeroMQ

/// `mktctl keygen`: a CURVE key pair for ZeroMQ (DESIGN section 7), printed or written to two files.
public struct KeygenCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Make a CURVE key pair for ZeroMQ: Z85 text, 40 characters each.")

    @Option(name: .long, help: """
        Write the pair to PATH.key (public) and PATH.key_secret (secret, mode 0600) instead of printing it; \
        existing files are not overwritten.
        """)
    public var out: String?

    @Flag(name: .long, help: "Machine-readable output: one JSON object.")
    public var json = false

    public init() {}

    public func run() throws {
        let pair = try CurveKeyPair.generate()
        guard let out else {
            if json {
                print(#"{"public":"\#(pair.publicKey)","secret":"\#(pair.secretKey)"}"#)
            } else {
                print("public  \(pair.publicKey)\nsecret  \(pair.secretKey)")
            }
            return
        }
        let publicPath = out + ".key"
        let secretPath = out + ".key_secret"
        for path in [publicPath, secretPath] where FileManager.default.fileExists(atPath: path) {
            throw ValidationError("\(path) exists; not overwritten (remove it first, or choose another --out)")
        }
        // The secret is created unreadable to others before a byte of it is written.
        do {
            try SecretFiles.create(secretPath, contents: pair.secretKey + "\n")
        } catch {
            throw ValidationError(error.description)
        }
        try (pair.publicKey + "\n").write(toFile: publicPath, atomically: true, encoding: .utf8)
        if json {
            print(#"{"public":"\#(pair.publicKey)","public_file":"\#(publicPath)","secret_file":"\#(secretPath)"}"#)
        } else {
            print("public  \(pair.publicKey)  (\(publicPath))\nsecret  written to \(secretPath) (mode 0600)")
        }
    }
}
