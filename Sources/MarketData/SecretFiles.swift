import Glibc

/// Files that hold secrets (token secrets, CURVE secret keys, TLS private keys): made unreadable to others from their
/// first byte, and refused when others can read them (DESIGN section 12).
public enum SecretFiles {
    /// Creates `path` with mode 0600 (never wider, whatever the umask allows, and never briefly so) and writes
    /// `contents`; refuses to replace a file that exists. Throws a message naming the file.
    public static func create(_ path: String, contents: String) throws(SecretFileError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let reason = errno == EEXIST ? "it exists; remove it first" : String(cString: strerror(errno))
            throw SecretFileError(description: "cannot create \(path): \(reason)")
        }
        defer { close(descriptor) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(descriptor) == 0 else {
            throw SecretFileError(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Why `path` may not hold a secret, nil when it may: a file others can read, write or run (any bit of 0007) is
    /// refused, so that a secret copied around with a default mode is caught at start, not after it leaked. The
    /// owner's group may read it (a daemon's group, 0640).
    public static func problem(withPermissionsOf path: String) -> String? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }  // the read that follows says why it cannot be read
        let mode = status.st_mode & 0o777
        guard mode & 0o007 != 0 else { return nil }
        return "\(path) is open to others (mode 0\(String(mode, radix: 8))): it holds a secret; chmod 600 it"
    }
}

public struct SecretFileError: Error, CustomStringConvertible {
    public var description: String
}
