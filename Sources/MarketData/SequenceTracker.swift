/// Follows one sequence-numbered stream (a MoldUDP64 session, a publisher's stream_seq, a symbol's symbol_seq) and
/// says what each new number means. Counts what it sees so every hop can report gaps and duplicates.
public struct SequenceTracker: Sendable, Equatable {
    public enum Outcome: Equatable, Sendable {
        /// The first number seen: nothing to compare with yet.
        case first
        /// Exactly the expected number.
        case inOrder
        /// Numbers `missing` never arrived before this one.
        case gap(missing: ClosedRange<UInt64>)
        /// Already seen (or older than what was seen): drop it.
        case duplicate
        /// The stream started again at 1 (a publisher restarted).
        case reset
    }

    /// The number the next message should carry; 0 before the first.
    public private(set) var expected: UInt64 = 0
    public private(set) var gaps: UInt64 = 0
    public private(set) var missingMessages: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var resets: UInt64 = 0

    public init() {}

    /// Starts the tracker as if `sequence - 1` had been seen (a snapshot said where the stream stood).
    public init(expecting sequence: UInt64) { expected = sequence }

    /// Undoes the gap `observe` just reported, to wait at `expected` again while the missing numbers are fetched:
    /// a gap that is filled is not counted as one.
    public mutating func rewind(to expected: UInt64, forgetting missing: ClosedRange<UInt64>) {
        self.expected = expected
        gaps -= min(gaps, 1)
        missingMessages -= min(missingMessages, missing.upperBound - missing.lowerBound + 1)
    }

    public mutating func observe(_ sequence: UInt64) -> Outcome {
        if expected == 0 {
            expected = sequence &+ 1
            return .first
        }
        if sequence == expected {
            expected = sequence &+ 1
            return .inOrder
        }
        if sequence > expected {
            let missing = expected...(sequence - 1)
            gaps += 1
            missingMessages += sequence - expected
            expected = sequence &+ 1
            return .gap(missing: missing)
        }
        if sequence == 1 {
            resets += 1
            expected = 2
            return .reset
        }
        duplicates += 1
        return .duplicate
    }
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` where that overflows: for bounds built from numbers that came from outside
    /// (a sequence plus an allowed jump, a time plus a tolerance), where the sum only has to compare right.
    public func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflowed) = addingReportingOverflow(other)
        return overflowed ? .max : sum
    }
}
