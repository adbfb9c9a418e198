import Foundation
import Glibc

/// The clocks of DESIGN section 11: hop stamps use CLOCK_REALTIME (comparable across hosts only as far as NTP or PTP
/// makes them); durations inside a process use CLOCK_MONOTONIC.
public enum WallClock {
    /// Nanoseconds since the Unix epoch.
    @inlinable
    public static func nowNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}

public enum MonotonicClock {
    @inlinable
    public static func nowNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}

/// Wall-clock time from a monotonic reading, for a loop that needs both clocks for every tick: the offset between
/// them is read once per turn of the loop (`refresh`), so each tick costs one clock read instead of two. Between
/// refreshes the wall clock is followed as the monotonic one runs; an NTP step shows at the next refresh.
public struct WallClockFromMonotonic: Sendable {
    public private(set) var wallMinusMonotonicNs: UInt64 = 0

    public init() { refresh() }

    /// Takes the offset anew. The wall clock is read first: when the thread is preempted between the two reads the
    /// offset comes out smaller, never larger, so a wall time made from it is never later than the wall clock read
    /// after it (a plant_rx made this way never comes after the plant_tx read directly: no hop runs backwards).
    public mutating func refresh() {
        let wallNs = WallClock.nowNanoseconds()
        wallMinusMonotonicNs = wallNs &- MonotonicClock.nowNanoseconds()
    }

    @inlinable
    public func wallNanoseconds(atMonotonic monotonicNs: UInt64) -> UInt64 { monotonicNs &+ wallMinusMonotonicNs }
}

extension Duration {
    /// Whole nanoseconds, for deadlines on the monotonic clock.
    public var nanoseconds: UInt64 {
        UInt64(components.seconds) * 1_000_000_000 + UInt64(components.attoseconds / 1_000_000_000)
    }
}

/// Nanoseconds since the epoch of the last midnight in `timezone`: ITCH timestamps count from it.
public func sessionMidnightNanoseconds(timezone: String, now: Date = Date()) -> UInt64 {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: timezone) ?? TimeZone(secondsFromGMT: 0)!
    let midnight = calendar.startOfDay(for: now)
    return UInt64(max(0, midnight.timeIntervalSince1970)) * 1_000_000_000
}
