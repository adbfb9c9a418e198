import CTickProto

/// The largest message a peer may send to a bound stream or request socket (ZMQ_MAXMSGSIZE, DESIGN section 12): a
/// subscription, or a snapshot or replay request, is a prefix or symbol and a few numbers. A peer that sends more is
/// disconnected by libzmq before the message is taken into memory.
public let maximumPeerMessageBytes: Int64 = 4 << 10

/// The requests of the snapshot/replay ROUTER sockets (Proto/control.proto), encoded with protobuf-c.
public enum ReplayRequest: Equatable, Sendable {
    /// The last value of every symbol under a prefix (plantd).
    case snapshot(prefix: String)
    /// One symbol's ticks from a symbol_seq on (plantd).
    case symbolReplay(symbol: String, fromSymbolSequence: UInt64)
    /// A publisher's ticks from a stream_seq on, at most `maxCount` (feedd).
    case streamReplay(fromStreamSequence: UInt64, maxCount: UInt64)

    public func encoded() -> [UInt8] {
        var request = Tickplant__ControlRequest()
        tickplant__control_request__init(&request)
        switch self {
        case let .snapshot(prefix):
            return prefix.withCString { cPrefix in
                var snapshot = Tickplant__SnapshotRequest()
                tickplant__snapshot_request__init(&snapshot)
                snapshot.prefix = UnsafeMutablePointer(mutating: cPrefix)
                return withUnsafeMutablePointer(to: &snapshot) { pointer in
                    request.request_case = TICKPLANT__CONTROL_REQUEST__REQUEST_SNAPSHOT
                    request.snapshot = pointer
                    return Self.pack(&request)
                }
            }
        case let .symbolReplay(symbol, from):
            return symbol.withCString { cSymbol in
                var replay = Tickplant__SymbolReplayRequest()
                tickplant__symbol_replay_request__init(&replay)
                replay.symbol = UnsafeMutablePointer(mutating: cSymbol)
                replay.from_symbol_seq = from
                return withUnsafeMutablePointer(to: &replay) { pointer in
                    request.request_case = TICKPLANT__CONTROL_REQUEST__REQUEST_SYMBOL_REPLAY
                    request.symbol_replay = pointer
                    return Self.pack(&request)
                }
            }
        case let .streamReplay(from, maxCount):
            var replay = Tickplant__StreamReplayRequest()
            tickplant__stream_replay_request__init(&replay)
            replay.from_stream_seq = from
            replay.max_count = maxCount
            return withUnsafeMutablePointer(to: &replay) { pointer in
                request.request_case = TICKPLANT__CONTROL_REQUEST__REQUEST_STREAM_REPLAY
                request.stream_replay = pointer
                return Self.pack(&request)
            }
        }
    }

    private static func pack(_ request: inout Tickplant__ControlRequest) -> [UInt8] {
        let size = tickplant__control_request__get_packed_size(&request)
        return [UInt8](unsafeUninitializedCapacity: max(size, 1)) { buffer, count in
            count = tickplant__control_request__pack(&request, buffer.baseAddress!)
        }
    }

    /// Nil when the bytes are not a request this version knows.
    public init?(decoding bytes: [UInt8]) {
        guard !bytes.isEmpty,
            let request = bytes.withUnsafeBufferPointer({ tickplant__control_request__unpack(nil, $0.count, $0.baseAddress) })
        else { return nil }
        defer { tickplant__control_request__free_unpacked(request, nil) }
        switch request.pointee.request_case {
        case TICKPLANT__CONTROL_REQUEST__REQUEST_SNAPSHOT:
            self = .snapshot(prefix: request.pointee.snapshot.pointee.prefix.map { String(cString: $0) } ?? "")
        case TICKPLANT__CONTROL_REQUEST__REQUEST_SYMBOL_REPLAY:
            let replay = request.pointee.symbol_replay.pointee
            self = .symbolReplay(symbol: replay.symbol.map { String(cString: $0) } ?? "",
                fromSymbolSequence: replay.from_symbol_seq)
        case TICKPLANT__CONTROL_REQUEST__REQUEST_STREAM_REPLAY:
            let replay = request.pointee.stream_replay.pointee
            self = .streamReplay(fromStreamSequence: replay.from_stream_seq, maxCount: replay.max_count)
        default:
            return nil
        }
    }
}

/// The last message of a snapshot or replay answer (topic `#END`).
public struct SnapshotEnd: Equatable, Sendable {
    public static let topic = "#END"

    /// The publisher's stream_seq when the answer was taken.
    public var streamSequence: UInt64
    public var tickCount: UInt64
    /// False when the answer could not go back as far as asked.
    public var complete: Bool
    public var error: String
    /// The answering plantd's session (its #HB heartbeats carry the same); 0 from a feedd.
    public var plantSession: UInt64

    public init(
        streamSequence: UInt64, tickCount: UInt64, complete: Bool, error: String = "", plantSession: UInt64 = 0
    ) {
        self.streamSequence = streamSequence
        self.tickCount = tickCount
        self.complete = complete
        self.error = error
        self.plantSession = plantSession
    }

    public func encoded() -> [UInt8] {
        error.withCString { cError in
            var end = Tickplant__SnapshotEnd()
            tickplant__snapshot_end__init(&end)
            end.stream_seq = streamSequence
            end.tick_count = tickCount
            end.complete = complete ? 1 : 0
            end.error = UnsafeMutablePointer(mutating: cError)
            end.plant_session = plantSession
            let size = tickplant__snapshot_end__get_packed_size(&end)
            return [UInt8](unsafeUninitializedCapacity: max(size, 1)) { buffer, count in
                count = tickplant__snapshot_end__pack(&end, buffer.baseAddress!)
            }
        }
    }

    public init?(decoding bytes: [UInt8]) {
        let decoded = bytes.withUnsafeBufferPointer { tickplant__snapshot_end__unpack(nil, $0.count, $0.baseAddress) }
        guard let decoded else { return nil }
        defer { tickplant__snapshot_end__free_unpacked(decoded, nil) }
        streamSequence = decoded.pointee.stream_seq
        tickCount = decoded.pointee.tick_count
        complete = decoded.pointee.complete != 0
        error = decoded.pointee.error.map { String(cString: $0) } ?? ""
        plantSession = decoded.pointee.plant_session
    }
}

/// How much of a stream replay one answer carries (DESIGN section 12), as plantd and feedd both bound it: what was
/// asked (`max_count`; 0: everything), and never more than the answerer's `max_answer_ticks`.
public struct StreamReplayBound: Sendable, Equatable {
    /// The most ticks the answer carries.
    public let limit: UInt64
    /// The asker wanted more than `limit` (everything, or a larger count): an answer that stops at the limit with
    /// more after it is not the whole of what was asked.
    public let cutsTheAsk: Bool

    public init(maxCount: UInt64, answerLimit: UInt64) {
        limit = maxCount == 0 ? answerLimit : min(maxCount, answerLimit)
        cutsTheAsk = maxCount == 0 || maxCount > answerLimit
    }

    /// The end's error for an answer that gave `given` ticks and would go on at stream_seq `next`, while the answerer
    /// holds ticks up to `newest`: nil when the answer is the whole of what was asked. `setting` names the limit
    /// (`[plant] max_answer_ticks`).
    public func cutError(given: UInt64, next: UInt64, newest: UInt64, setting: String) -> String? {
        guard cutsTheAsk, given == limit, next <= newest else { return nil }
        return "an answer carries at most \(limit) ticks (\(setting)): ask again from stream_seq \(next)"
    }
}
