import MarketData

/// The messages a `MoldStream` holds behind its holes, found by sequence number: their bytes side by side in one
/// arena, their places in an `IntegerKeyTable`.
///
/// A feed holds messages exactly when it is behind (a datagram lost, the messages after it waiting for the
/// retransmission), so holding one must not cost more than passing it on. A heap array per message in a Dictionary
/// cost a malloc and a seeded hash for each, and the Dictionary's lookups were the largest item of feedd's profile
/// once it fell behind at a million messages a second.
///
/// The arena grows only at its end; a released message leaves its bytes behind. It starts over whenever nothing is
/// held (a healed gap releases everything). When a message would not fit and at least half of the arena is released
/// bytes, the held ones move to a fresh arena of the same size first; otherwise the arena doubles. So a feed whose
/// holes never all heal at once keeps an arena of at most about four times the most it has held at once.
struct HeldMessages {
    private struct Place {
        var offset: Int
        var length: Int
    }

    private var places: IntegerKeyTable<Place>
    private var arena: [UInt8] = []
    /// Bytes of the arena that belong to held messages (the rest were released).
    private var heldBytes = 0

    /// `expectedCount`: messages held at once before the index grows (one retransmission round trip's worth).
    init(expectedCount: Int = 1024) {
        places = IntegerKeyTable(minimumCapacity: expectedCount)
    }

    var count: Int { places.count }
    var isEmpty: Bool { places.isEmpty }
    /// Bytes the arena has room for (for tests: it must stay bounded).
    var arenaCapacity: Int { arena.capacity }

    func contains(_ sequence: UInt64) -> Bool { places[sequence] != nil }

    /// Keeps a copy of `message` as `sequence`, which must not be held already (`MoldStream` counts a second copy as
    /// a duplicate before it gets here).
    mutating func hold(_ sequence: UInt64, _ message: UnsafeRawBufferPointer) {
        assert(!contains(sequence), "message \(sequence) is held already")
        if arena.count + message.count > arena.capacity && (arena.count - heldBytes) * 2 >= arena.count {
            compact()
        }
        places[sequence] = Place(offset: arena.count, length: message.count)
        arena.append(contentsOf: message)
        heldBytes += message.count
    }

    /// Calls `body` with the message held as `sequence` and lets it go; false (and no call) when none is held.
    mutating func release(_ sequence: UInt64, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard let place = places.removeValue(forKey: sequence) else { return false }
        arena.withUnsafeBytes { bytes in
            body(UnsafeRawBufferPointer(rebasing: bytes[place.offset..<place.offset + place.length]))
        }
        heldBytes -= place.length
        if places.isEmpty {
            arena.removeAll(keepingCapacity: true)
            heldBytes = 0
        }
        return true
    }

    /// Moves the held messages to the front of a fresh arena with the old one's room (they fill at most half of it).
    private mutating func compact() {
        var compacted: [UInt8] = []
        compacted.reserveCapacity(arena.capacity)
        let old = arena
        old.withUnsafeBytes { bytes in
            places.updateEach { _, place in
                let message = UnsafeRawBufferPointer(rebasing: bytes[place.offset..<place.offset + place.length])
                place.offset = compacted.count
                compacted.append(contentsOf: message)
            }
        }
        arena = compacted
    }
}
