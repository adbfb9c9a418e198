import Foundation

/// Runs a program to its end (or `timeout`, then terminates it) and returns its exit status and its standard output
/// and error together: the openssl, runuser and python processes tests play outside parties with.
public enum ChildProcess {
    public static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 30) throws
        -> (status: Int32, output: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Read while it runs, so that a full pipe never stalls it.
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
