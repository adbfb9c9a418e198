/// Reads the top-level members of one JSON object in place, without building a tree: the JSON venues send flat
/// objects and we want three members of them. Nested values are skipped whole; anything that is not JSON fails.
public enum FlatJSON {
    public enum ValueKind: Equatable, Sendable { case string, number, bool, null, object, array }

    /// A member's value: its kind and its bytes (for strings, the bytes between the quotes, escapes undecoded).
    public struct Value {
        public let kind: ValueKind
        public let bytes: UnsafeRawBufferPointer
        /// True when a string contains backslash escapes (the bytes are then not the decoded text).
        public let hasEscapes: Bool
    }

    public struct SyntaxError: Error, Equatable, CustomStringConvertible {
        public let offset: Int
        public let expected: String
        public var description: String { "not a JSON object: expected \(expected) at offset \(offset)" }
    }

    /// Calls `member` with each top-level key (raw bytes between the quotes) and value.
    public static func forEachMember(
        in bytes: UnsafeRawBufferPointer, _ member: (UnsafeRawBufferPointer, Value) -> Void
    ) throws(SyntaxError) {
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        try reader.expect(UInt8(ascii: "{"), "\"{\"")
        reader.skipSpace()
        if reader.peek == UInt8(ascii: "}") {
            reader.index += 1
        } else {
            while true {
                reader.skipSpace()
                guard reader.peek == UInt8(ascii: "\"") else { throw reader.error("a member name in quotes") }
                let key = try reader.string()
                reader.skipSpace()
                try reader.expect(UInt8(ascii: ":"), "\":\"")
                reader.skipSpace()
                let value = try reader.value()
                member(key.bytes, value)
                reader.skipSpace()
                if reader.peek == UInt8(ascii: ",") {
                    reader.index += 1
                    continue
                }
                try reader.expect(UInt8(ascii: "}"), "\",\" or \"}\"")
                break
            }
        }
        reader.skipSpace()
        guard reader.index == bytes.count else { throw reader.error("the end of the line") }
    }

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        func error(_ expected: String) -> SyntaxError { SyntaxError(offset: index, expected: expected) }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func expect(_ byte: UInt8, _ description: String) throws(SyntaxError) {
            guard peek == byte else { throw error(description) }
            index += 1
        }

        mutating func string() throws(SyntaxError) -> Value {
            index += 1  // opening quote
            let start = index
            var escaped = false
            while let byte = peek {
                if byte == UInt8(ascii: "\\") {
                    escaped = true
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") {
                    let value = Value(kind: .string, bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<index]),
                        hasEscapes: escaped)
                    index += 1
                    return value
                }
                if byte < 0x20 { throw error("a closing quote") }
                index += 1
            }
            throw error("a closing quote")
        }

        mutating func value() throws(SyntaxError) -> Value {
            guard let byte = peek else { throw error("a value") }
            let start = index
            switch byte {
            case UInt8(ascii: "\""):
                return try string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                try skipNested()
                return Value(kind: byte == UInt8(ascii: "{") ? .object : .array,
                    bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), hasEscapes: false)
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                let word: StaticString = byte == UInt8(ascii: "t") ? "true" : byte == UInt8(ascii: "f") ? "false" : "null"
                let length = word.utf8CodeUnitCount
                guard index + length <= bytes.count,
                    UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)]).elementsEqual(
                        UnsafeRawBufferPointer(start: word.utf8Start, count: length))
                else { throw error("true, false or null") }
                index += length
                return Value(kind: byte == UInt8(ascii: "n") ? .null : .bool,
                    bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), hasEscapes: false)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                while let next = peek,
                    next == UInt8(ascii: "-") || next == UInt8(ascii: "+") || next == UInt8(ascii: ".")
                        || next == UInt8(ascii: "e") || next == UInt8(ascii: "E")
                        || (next >= UInt8(ascii: "0") && next <= UInt8(ascii: "9"))
                {
                    index += 1
                }
                return Value(kind: .number, bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<index]),
                    hasEscapes: false)
            default:
                throw error("a value")
            }
        }

        /// Skips an object or array, strings inside it included.
        mutating func skipNested() throws(SyntaxError) {
            var depth = 0
            while let byte = peek {
                switch byte {
                case UInt8(ascii: "\""):
                    _ = try string()
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        index += 1
                        return
                    }
                default:
                    break
                }
                index += 1
            }
            throw error("the end of a nested value")
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Compares with an ASCII literal without allocating.
    func equals(_ literal: StaticString) -> Bool {
        count == literal.utf8CodeUnitCount
            && elementsEqual(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}
