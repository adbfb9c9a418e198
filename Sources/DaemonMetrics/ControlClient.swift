import Foundation
import MarketData
import ZeroMQ

/// One JSON request and its reply over a daemon's control endpoint (mktctl's commands, and `/metrics`, which shows a
/// daemon's `status` in Prometheus's format).
public enum ControlClient {
    /// The reply's bytes, or nil when the daemon did not answer within the timeout. `curve`: the keys for a control
    /// endpoint with `[curve] operator_key_files` (an operator's, or the daemon's own).
    public static func request(
        context: ZMQContext, endpoint: String, request: ControlRequest, timeoutMilliseconds: Int32,
        curve: CurveClientKeys? = nil
    ) -> [UInt8]? {
        guard let socket = try? ZMQSocket(context, type: .request),
            curve.map({ (try? socket.setCurveClient($0)) != nil }) ?? true,
            (try? socket.setLinger(milliseconds: 0)) != nil,
            (try? socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)) != nil,
            (try? socket.setSendTimeout(milliseconds: timeoutMilliseconds)) != nil,
            (try? socket.connect(endpoint)) != nil,
            let body = try? JSONEncoder().encode(request),
            (try? socket.send(Array(body))) == true
        else { return nil }
        defer { socket.close() }
        return (try? socket.receiveFrames())??.last
    }

    /// The reply decoded as `Reply`, nil when the daemon did not answer or answered something else (an error).
    public static func ask<Reply: Decodable>(
        _ request: ControlRequest, as _: Reply.Type, context: ZMQContext, endpoint: String,
        timeoutMilliseconds: Int32 = 1000, curve: CurveClientKeys? = nil
    ) -> Reply? {
        self.request(context: context, endpoint: endpoint, request: request, timeoutMilliseconds: timeoutMilliseconds,
            curve: curve)
            .flatMap { try? JSONDecoder().decode(Reply.self, from: Data($0)) }
    }

    /// A daemon's `status`, nil when it did not answer.
    public static func status(context: ZMQContext, endpoint: String, timeoutMilliseconds: Int32 = 1000,
        curve: CurveClientKeys? = nil) -> DaemonStatus?
    {
        ask(ControlRequest(cmd: "status"), as: DaemonStatus.self, context: context, endpoint: endpoint,
            timeoutMilliseconds: timeoutMilliseconds, curve: curve)
    }
}
