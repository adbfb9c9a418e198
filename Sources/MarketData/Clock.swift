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

extension Duration {
    /// Whole nanoseconds, for deadlines on the monotonic clock.
    public var nanoseconds: UInt64 {
        UInt64(components.seconds) * 1_000_000_000 + UInt64(components.attoseconds / 1_000_000_000)
    }
}
