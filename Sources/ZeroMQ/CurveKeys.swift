import CZeroMQ
import Glibc

/// A CURVE key pair (ZeroMQ's encryption and authentication between daemons and consumers), each key as Z85 text:
/// 40 printable characters for 32 bytes.
public struct CurveKeyPair: Sendable, Equatable {
    public var publicKey: String
    public var secretKey: String

    /// A new random pair from libzmq (libsodium's or its own tweetnacl underneath).
    public static func generate() throws(ZMQError) -> CurveKeyPair {
        guard zmq_has("curve") != 0 else { throw ZMQError(code: ENOTSUP, operation: "CURVE (this libzmq has none)") }
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: z85Text(publicText), secretKey: z85Text(secretText))
    }

    /// The public key that goes with a Z85 secret key, nil when the text is not one.
    public static func publicKey(ofSecret secret: String) -> String? {
        guard secret.utf8.count == 40 else { return nil }
        var publicText = [CChar](repeating: 0, count: 41)
        return zmq_curve_public(&publicText, secret) == 0 ? z85Text(publicText) : nil
    }

    /// The 40 characters libzmq wrote before its terminating zero.
    private static func z85Text(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
