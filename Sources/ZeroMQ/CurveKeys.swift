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
    fileprivate static func z85Text(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension CurveKeyPair {

    /// A Z85 key as libzmq's 32 bytes, nil when the text is not 40 characters of Z85.
    public static func binary(_ z85: String) -> [UInt8]? {
        guard z85.utf8.count == 40 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&bytes, z85) == nil ? nil : bytes
    }

    /// 32 bytes of a key as Z85 text, nil when they are not 32.
    public static func z85(_ bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&text, bytes, 32) != nil else { return nil }
        return z85Text(text)
    }

    /// What is wrong with a Z85 key read from a file (nil: nothing).
    public static func problem(withKey text: String) -> String? {
        binary(text) == nil ? "expected a CURVE key: 40 characters of Z85 as `mktctl keygen` writes" : nil
    }

    /// What is wrong with a Z85 secret key read from a file (nil: nothing).
    public static func problem(withSecretKey text: String) -> String? {
        publicKey(ofSecret: text) == nil ? "expected a CURVE secret key (mktctl keygen's .key_secret)" : nil
    }
}

/// CURVE on a daemon's bound sockets (`[curve]` of plantd and feedd): its secret key and the public keys of the
/// clients it lets in, Z85 as `mktctl keygen` writes them.
public struct CurveServerConfiguration: Sendable, Equatable {
    public var secretKey: String
    public var clientKeys: [String]

    public init(secretKey: String, clientKeys: [String]) {
        self.secretKey = secretKey
        self.clientKeys = clientKeys
    }
}

/// CURVE on a daemon's control endpoint (`[curve] operator_key_files`): the daemon's secret key, and the public keys
/// of the operators let in. The daemon's own key is let in too, for what asks its control endpoint from inside it
/// (`/metrics`, SIGHUP).
public struct ControlCurve: Sendable, Equatable {
    /// The ZAP domain of control endpoints: their peers are checked against the operators' keys alone.
    public static let domain = "control"

    public var secretKey: String
    public var operatorKeys: [String]
    /// The daemon's public key file (beside its secret, as `mktctl keygen --out` writes them): what mktctl reads to
    /// know the endpoint it talks to.
    public var publicKeyFile: String

    public init(secretKey: String, operatorKeys: [String], publicKeyFile: String) {
        self.secretKey = secretKey
        self.operatorKeys = operatorKeys
        self.publicKeyFile = publicKeyFile
    }

    /// From what a daemon's `[curve]` table says (`ConfigReader.controlCurveKeys`); nil when it says nothing.
    public init?(_ keys: (secretKey: String, operatorKeys: [String], publicKeyFile: String)?) {
        guard let keys else { return nil }
        self.init(secretKey: keys.secretKey, operatorKeys: keys.operatorKeys, publicKeyFile: keys.publicKeyFile)
    }

    /// The client keys the daemon uses to ask its own control endpoint; nil when the secret is not a key (a
    /// configuration loaded without reading its files).
    public var ownClientKeys: CurveClientKeys? {
        CurveKeyPair.publicKey(ofSecret: secretKey).flatMap { CurveClientKeys(serverKey: $0, secretKey: secretKey) }
    }

    /// Every key let in: the operators' and the daemon's own.
    public var allowedKeys: [String] { operatorKeys + [CurveKeyPair.publicKey(ofSecret: secretKey)].compactMap { $0 } }
}

/// The CURVE keys of a client socket: the server's public key and the client's own pair, all Z85.
public struct CurveClientKeys: Sendable, Equatable {
    public var serverKey: String
    public var publicKey: String
    public var secretKey: String

    /// The pair from its secret (the public key follows from it); nil when a key is not Z85.
    public init?(serverKey: String, secretKey: String) {
        guard CurveKeyPair.binary(serverKey) != nil, let publicKey = CurveKeyPair.publicKey(ofSecret: secretKey) else {
            return nil
        }
        self.serverKey = serverKey
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

extension ZMQSocket {
    /// CURVE client role with these keys; set before `connect`.
    public func setCurveClient(_ keys: CurveClientKeys) throws(ZMQError) {
        // The keys were checked when the value was made.
        try setCurveClient(serverKey: CurveKeyPair.binary(keys.serverKey)!,
            publicKey: CurveKeyPair.binary(keys.publicKey)!, secretKey: CurveKeyPair.binary(keys.secretKey)!)
    }
}
