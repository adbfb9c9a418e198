import Glibc

/// A whole file's bytes by read(2), nil when it cannot be opened or read. FoundationEssentials'
/// `FileManager.contents(atPath:)` leaked a 4 KiB buffer for every empty file (found by the fuzz target `journal`:
/// a journal holds an empty segment after every roll).
public func readWholeFile(_ path: String) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else { return nil }
    // One byte more than the file holds: the read that fills it finds the end without the array growing (a file
    // that grows meanwhile is read on, 64 KiB more at a time).
    var bytes = [UInt8](repeating: 0, count: max(Int(status.st_size), 0) + 1)
    var filled = 0
    while true {
        if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: 1 << 16)) }
        let count = bytes.withUnsafeMutableBytes { buffer in
            read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
        }
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { return nil }
        if count == 0 { break }
        filled += count
    }
    bytes.removeLast(bytes.count - filled)
    return bytes
}
