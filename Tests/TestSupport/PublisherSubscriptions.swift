import Foundation
import ZeroMQ

/// What a ZeroMQ XPUB standing in for plantd learns of its subscribers (with `setVerboseSubscriptions(true)`, every
/// subscription, repeated ones too), for the tests of every target.
public enum PublisherSubscriptions {
    /// The prefixes subscribed, in the order they reached `publisher`, until `count` have or `seconds` have passed
    /// (each wait bounded by the socket's receive timeout). Unsubscriptions are passed over.
    public static func read(from publisher: ZMQSocket, count: Int, within seconds: TimeInterval) throws -> [String] {
        var prefixes: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        while prefixes.count < count && Date() < deadline {
            guard let frames = try publisher.receiveFrames(), let frame = frames.first, frame.first == 1 else {
                continue
            }
            prefixes.append(String(decoding: frame.dropFirst(), as: UTF8.self))
        }
        return prefixes
    }
}
