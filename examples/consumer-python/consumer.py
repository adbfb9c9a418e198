#!/usr/bin/env python3
"""A raw tickplant consumer, as a risk system writes one: it joins plantd's stream without a gap, keeps the last values
of every symbol it watches, heals every gap by a replay, and says what quality each symbol's data has.

It follows docs/protocol.md step by step; the comments name the steps. Only pyzmq and protoc's Python code for
Proto/*.proto (`make examples` writes it to generated/ beside this file).

    python consumer.py --endpoint tcp://127.0.0.1:7201 --snapshot tcp://127.0.0.1:7202 AAPL'|' MSFT'|' A
"""
import argparse
import collections
import json
import os
import signal
import sys
import time

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated"))
try:
    import control_pb2  # noqa: E402
    import tick_pb2  # noqa: E402
except ImportError:
    sys.exit("consumer.py: no generated code for Proto/*.proto in generated/: run `make examples` at the top")

HEARTBEAT = b"#HB"
END = b"#END"
TYPE_NAMES = {1: "TRADE", 2: "QUOTE", 3: "BOOK", 4: "STATUS", 5: "BAR"}
QUALITY_NAMES = {0: "OK", 1: "OK", 2: "STALE", 3: "GAP", 4: "RECOVERING"}
STATE_NAMES = {0: "TRADING", 1: "TRADING", 2: "HALTED", 3: "PAUSED", 4: "QUOTATION_ONLY"}


def decimal(fixed_point):
    """A fixed-point price (6 decimals) as exact text: 178520000 is 178.52."""
    sign = "-" if fixed_point < 0 else ""
    whole, fraction = divmod(abs(fixed_point), 1_000_000)
    text = f"{fraction:06d}".rstrip("0")
    return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"


class Symbol:
    """What the consumer knows of one symbol: its last tick of each type and the last symbol_seq applied."""

    __slots__ = ("last_seq", "joined_seq", "applied", "last", "quality", "state", "replaying", "held", "gaps",
                 "resets")

    def __init__(self):
        self.last_seq = 0        # the last symbol_seq applied: the next one must be last_seq + 1
        self.joined_seq = 0      # where this consumer's history of the symbol starts (its snapshot)
        self.applied = 0         # ticks applied since then, each exactly last_seq + 1
        self.last = {}           # type -> the last Tick of that type
        self.quality = "OK"      # the plant's word on the symbol (STATUS quality)
        self.state = "TRADING"
        self.replaying = False   # a replay is asked for: live ticks wait in `held`
        self.held = []
        self.gaps = 0
        self.resets = 0

    def apply(self, tick):
        self.last_seq = tick.symbol_seq
        self.last[tick.type] = tick
        if tick.type == tick_pb2.STATUS:
            self.quality = QUALITY_NAMES.get(tick.quality, "OK")
            self.state = STATE_NAMES.get(tick.state, "TRADING")

    def take_snapshot(self, ticks):
        """The symbol's last values from a snapshot: its history (for this consumer) starts here."""
        self.last = {}
        for tick in ticks:
            self.apply(tick)
        self.last_seq = self.joined_seq = max(tick.symbol_seq for tick in ticks)
        self.applied = 0


class Consumer:
    def __init__(self, endpoint, snapshot_endpoint, prefixes, heartbeat_timeout, request_timeout, drop, curve):
        self.prefixes = prefixes
        self.snapshot_endpoint = snapshot_endpoint
        self.heartbeat_timeout = heartbeat_timeout
        self.request_timeout = request_timeout
        self.drop_from, self.drop_count = drop
        self.curve = curve
        self.context = zmq.Context()
        # Step 1: subscribe first. The high-water marks are set, not left at ZeroMQ's 1000 (which drops silently): the
        # receive one for ticks, the send one for the subscriptions, which travel to plantd as messages.
        self.sub = self.context.socket(zmq.SUB)
        self.secure(self.sub)
        self.sub.setsockopt(zmq.RCVHWM, 10_000_000)
        self.sub.setsockopt(zmq.SNDHWM, 0)
        # Connected before subscribing: subscriptions made before the connect are sent in libzmq's own order (#HB
        # ahead of every symbol), those made after it in the order they are made.
        self.sub.connect(endpoint)
        for prefix in prefixes:
            self.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        # The heartbeat's subscription goes last: plantd takes a SUB's subscriptions in order, so the first heartbeat
        # proves that every prefix before it is live.
        self.sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT)
        self.dealer = None
        self.new_dealer()
        self.symbols = {}
        # The snapshot/replay ROUTER answers one request at a time here: a replay from the journal is answered over
        # several of plantd's turns, so two requests in flight could interleave.
        # Requests not sent yet: ("snapshot", prefix), ("replay", symbol, from) or ("resnapshot", symbol).
        self.waiting = collections.deque()
        self.asked = None                    # the request in flight, and when it was sent
        self.asked_at = 0.0
        self.answer = []                     # the ticks of its answer so far
        self.joining = True                  # until every prefix's snapshot is in: live ticks wait in `buffer`
        self.buffer = []
        self.join_snapshots = {}             # symbol -> its ticks, from the join's snapshots
        self.snapshots_due = 0
        self.session = None                  # plantd's session, from its heartbeats
        self.last_message = time.monotonic()
        self.link_stale = False
        self.received = 0
        self.received_live = 0               # received since the first join ended (what --drop counts)
        self.last_tick_at = time.monotonic()
        self.counters = collections.Counter()

    def new_dealer(self):
        """A fresh DEALER: an answer to a request of the old one (a plant that died, a timeout) can never be taken
        for an answer to a new request."""
        if self.dealer is not None:
            self.dealer.close(linger=0)
        self.dealer = self.context.socket(zmq.DEALER)
        self.secure(self.dealer)
        self.dealer.setsockopt(zmq.RCVHWM, 0)
        self.dealer.connect(self.snapshot_endpoint)

    def secure(self, socket):
        """Section 9: with CURVE, the plant's public key and this consumer's pair, set before connecting."""
        if self.curve is not None:
            server_key, secret_key = self.curve
            socket.curve_serverkey = server_key
            socket.curve_secretkey = secret_key
            socket.curve_publickey = zmq.curve_public(secret_key)

    # MARK: requests to the snapshot/replay ROUTER

    def ask(self, request):
        self.waiting.append(request)
        self.send_next()

    def send_next(self):
        if self.asked is not None or not self.waiting:
            return
        self.asked = self.waiting.popleft()
        self.asked_at = time.monotonic()
        self.answer = []
        message = control_pb2.ControlRequest()
        if self.asked[0] == "snapshot":
            message.snapshot.prefix = self.asked[1]
        elif self.asked[0] == "resnapshot":
            message.snapshot.prefix = self.asked[1] + "|"
        else:
            message.symbol_replay.symbol = self.asked[1]
            message.symbol_replay.from_symbol_seq = self.asked[2]
        self.dealer.send(message.SerializeToString())

    def on_answer(self, topic, payload):
        if self.asked is None:
            return
        if topic != END:
            if topic.startswith(b"#"):
                return   # the plant's own topics (#SYS market-wide status) are not a symbol's ticks
            tick = tick_pb2.Tick()
            tick.ParseFromString(payload)
            self.answer.append(tick)
            return
        end = control_pb2.SnapshotEnd()
        end.ParseFromString(payload)
        request, ticks = self.asked, self.answer
        self.asked, self.answer = None, []
        if self.session is not None and end.plant_session != self.session:
            # Answered by another plantd than the one whose heartbeats were seen: it restarted meanwhile.
            self.rejoin("the snapshot came from a new plant session")
        elif request[0] == "snapshot":
            self.on_snapshot(request[1], ticks, end)
        elif request[0] == "resnapshot":
            self.on_resnapshot(request[1], ticks)
        else:
            self.on_replay(request[1], request[2], ticks, end)
        self.send_next()

    def expire_request(self, now):
        """A request unanswered for `request_timeout` (the plant died with it in flight): asked again, afresh."""
        if self.asked is not None and now - self.asked_at > self.request_timeout:
            self.counters["requests_timed_out"] += 1
            self.waiting.appendleft(self.asked)
            self.asked = None
            self.new_dealer()
            self.send_next()

    # MARK: joining (steps 2-4 of docs/protocol.md)

    def join(self):
        """Step 2, once the first heartbeat proved the subscriptions live: a snapshot of every prefix. Live ticks
        wait meanwhile."""
        self.joining = True
        self.join_snapshots = {}
        self.snapshots_due = len(self.prefixes)
        for prefix in self.prefixes:
            self.ask(("snapshot", prefix))

    def rejoin(self, why):
        """The plant restarted, or the link was down: ticks may have been published while nobody here listened.
        Join again; each symbol the new snapshot shows further on is replayed from where this consumer stopped."""
        print(f"rejoining: {why}", file=sys.stderr, flush=True)
        self.counters["rejoins"] += 1
        held = []
        for symbol in self.symbols.values():
            if symbol.replaying:
                # Its replay is dropped with the old requests: the join finds the hole again and counts it then.
                symbol.gaps -= 1
                self.counters["gaps"] -= 1
            held += symbol.held
            symbol.held = []
            symbol.replaying = False
        self.buffer = held + self.buffer
        self.waiting.clear()
        self.asked = None
        self.new_dealer()
        self.join()

    def on_snapshot(self, prefix, ticks, end):
        if not end.complete or end.error:
            print(f"snapshot of {prefix!r} refused: {end.error}", file=sys.stderr, flush=True)
        for tick in ticks:
            self.join_snapshots.setdefault(tick.symbol, []).append(tick)
        self.snapshots_due -= 1
        if self.snapshots_due == 0:
            self.finish_join()

    def on_resnapshot(self, name, ticks):
        """A symbol whose replay could not be served starts again from its snapshot (see on_replay)."""
        symbol = self.symbols[name]
        mine = [tick for tick in ticks if tick.symbol == name]
        if mine:
            symbol.take_snapshot(mine)
        self.release(symbol)

    def finish_join(self):
        """Steps 3-4: each symbol's snapshot is its starting point; then the buffered live ticks go through the
        same path as every later one, which drops what the snapshot already holds and replays what it lacks."""
        for name, ticks in self.join_snapshots.items():
            newest = max(tick.symbol_seq for tick in ticks)
            symbol = self.symbols.get(name)
            if symbol is None or symbol.last_seq == 0:
                symbol = self.symbols.setdefault(name, Symbol())
                symbol.take_snapshot(ticks)
            elif newest > symbol.last_seq:
                # Rejoining: the plant published ticks of it that never arrived here.
                self.gap(name, symbol, symbol.last_seq + 1)
            elif newest < symbol.last_seq:
                # The plant's sequence of it started again (a plant without its journal): a new history.
                symbol.resets += 1
                self.counters["resets"] += 1
                symbol.take_snapshot(ticks)
        self.join_snapshots = {}
        self.joining = False
        buffered, self.buffer = self.buffer, []
        for tick in buffered:
            self.take(tick)

    # MARK: live ticks (step 5) and gaps (step 6)

    def on_tick(self, topic, payload):
        # Anything that arrives shows the link alive: a consumer behind its stream reads heartbeats late.
        self.last_message = time.monotonic()
        if topic.startswith(b"#") and topic != HEARTBEAT:
            # The plant's other topics (#SYS, #Q|SYMBOL quarantined ticks, which an empty prefix takes too) are not
            # a symbol's ticks: its symbol_seq counts only what was published under SYMBOL|.
            return
        tick = tick_pb2.Tick()
        tick.ParseFromString(payload)
        if topic == HEARTBEAT:
            return self.on_heartbeat(tick)
        self.received += 1
        self.last_tick_at = time.monotonic()
        if self.joining:
            self.buffer.append(tick)
            return
        self.received_live += 1
        if self.drop_from <= self.received_live < self.drop_from + self.drop_count:
            self.counters["dropped_on_purpose"] += 1   # --drop: a loss made on purpose, to see it healed
            return
        self.take(tick)

    def take(self, tick):
        symbol = self.symbols.get(tick.symbol)
        if symbol is None:
            symbol = self.symbols[tick.symbol] = Symbol()   # new since the join: its history starts at 1
        if symbol.replaying:
            symbol.held.append(tick)
        elif tick.symbol_seq <= symbol.last_seq:
            self.counters["duplicates"] += 1                 # already applied (from the snapshot or a replay)
        elif tick.symbol_seq == symbol.last_seq + 1:
            symbol.apply(tick)
            symbol.applied += 1
        else:
            symbol.held.append(tick)
            self.gap(tick.symbol, symbol, symbol.last_seq + 1)

    def gap(self, name, symbol, first_missing):
        """Step 6: symbol_seq jumped (or a rejoin found the symbol further on): replay it from the first missing
        tick; its live ticks wait until the replay is applied."""
        symbol.gaps += 1
        symbol.replaying = True
        self.counters["gaps"] += 1
        self.ask(("replay", name, first_missing))

    def on_replay(self, name, first_missing, ticks, end):
        symbol = self.symbols[name]
        for tick in ticks:
            if tick.symbol == name and tick.symbol_seq == symbol.last_seq + 1:
                symbol.apply(tick)
                symbol.applied += 1
        if end.complete and not end.error and symbol.last_seq >= first_missing:
            self.counters["gaps_healed"] += 1
            self.release(symbol)
        else:
            # The plant cannot go back that far: its snapshot is the best there is. Counted, never hidden.
            print(f"{name}: replay from {first_missing} refused ({end.error or 'not kept'}); re-snapshotting",
                  file=sys.stderr, flush=True)
            symbol.resets += 1
            self.counters["resets"] += 1
            self.ask(("resnapshot", name))

    def release(self, symbol):
        symbol.replaying = False
        held, symbol.held = symbol.held, []
        for tick in held:
            self.take(tick)

    # MARK: heartbeats (step 7)

    def on_heartbeat(self, tick):
        was_stale, self.link_stale = self.link_stale, False
        if self.session is None:
            self.session = tick.plant_session
            self.join()
        elif tick.plant_session != self.session:
            self.session = tick.plant_session
            self.counters["plant_restarts"] += 1
            self.rejoin("plantd restarted (new session in its heartbeat)")
        elif was_stale:
            self.rejoin("heartbeats are back after a silence")

    def check_heartbeats(self, now):
        if not self.link_stale and now - self.last_message > self.heartbeat_timeout:
            self.link_stale = True
            self.counters["link_silences"] += 1
            print(f"nothing from plantd for {self.heartbeat_timeout:g} s: every symbol is STALE until it is back",
                  file=sys.stderr, flush=True)

    # MARK: what it shows

    def quality(self, symbol):
        if self.link_stale:
            return "STALE"
        if symbol.replaying or self.joining:
            return "RECOVERING"
        return symbol.quality

    def summary_line(self, rate):
        qualities = collections.Counter(self.quality(symbol) for symbol in self.symbols.values())
        halted = sum(1 for symbol in self.symbols.values() if symbol.state != "TRADING")
        c = self.counters
        return (f"{time.strftime('%H:%M:%S')}  {'joining' if self.joining else 'live':7}  "
                f"symbols {len(self.symbols)}  ticks/s {rate:,.0f}  "
                + "  ".join(f"{name} {qualities[name]}" for name in ("OK", "RECOVERING", "GAP", "STALE"))
                + f"  halted {halted}  gaps {c['gaps']} (healed {c['gaps_healed']})  resets {c['resets']}"
                f"  duplicates {c['duplicates']}  plant restarts {c['plant_restarts']}")

    def show(self, name):
        """`AAPL  178.52 x 100  bid 178.51 ask 178.53  OK TRADING  seq 812`"""
        symbol = self.symbols.get(name)
        if symbol is None:
            return f"{name:8}  (nothing yet)"
        trade, quote = symbol.last.get(tick_pb2.TRADE), symbol.last.get(tick_pb2.QUOTE)
        text = f"{name:8}"
        if trade is not None:
            text += f"  {decimal(trade.price)} x {trade.size}"
        if quote is not None:
            text += f"  bid {decimal(quote.bid_price)} ask {decimal(quote.ask_price)}"
        return text + f"  {self.quality(symbol)} {symbol.state}  seq {symbol.last_seq}"

    def final_summary(self):
        def values(symbol):
            shown = {}
            for kind, tick in symbol.last.items():
                entry = {"symbol_seq": tick.symbol_seq}
                if kind == tick_pb2.TRADE:
                    entry.update(price=tick.price, size=tick.size, volume=tick.volume)
                elif kind == tick_pb2.QUOTE:
                    entry.update(bid_price=tick.bid_price, ask_price=tick.ask_price)
                elif kind == tick_pb2.BAR:
                    entry.update(close=tick.close, volume=tick.volume)
                shown[TYPE_NAMES.get(kind, str(kind))] = entry
            return shown

        return {
            "received": self.received,
            "counters": dict(self.counters),
            "symbols": {
                name: {"last_seq": symbol.last_seq, "joined_seq": symbol.joined_seq, "applied": symbol.applied,
                       "gaps": symbol.gaps, "resets": symbol.resets, "quality": self.quality(symbol),
                       "state": symbol.state, "last": values(symbol)}
                for name, symbol in sorted(self.symbols.items())
            },
        }

    # MARK: the loop

    def run(self, seconds, until_idle, as_json, shown):
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        started = last_line = time.monotonic()
        received_at_line = 0
        while not stopping:
            dealer = self.dealer
            poller.register(dealer, zmq.POLLIN)
            events = dict(poller.poll(100))
            poller.unregister(dealer)
            if self.sub in events:
                for _ in range(10_000):   # a bounded batch, so that answers and heartbeats are never starved
                    try:
                        topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_tick(topic, payload)
            if dealer in events and dealer is self.dealer:
                while True:
                    try:
                        topic, payload = self.dealer.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_answer(topic, payload)
            now = time.monotonic()
            self.check_heartbeats(now)
            self.expire_request(now)
            if now - last_line >= 1:
                rate = (self.received - received_at_line) / (now - last_line)
                print(json.dumps({"summary": self.summary_line(rate)}) if as_json else self.summary_line(rate),
                      flush=True)
                for name in shown:
                    print(json.dumps({"show": self.show(name)}) if as_json else "    " + self.show(name), flush=True)
                last_line, received_at_line = now, self.received
            settled = not self.joining and self.asked is None and not self.waiting
            if until_idle and settled and now - self.last_tick_at > until_idle and self.session is not None:
                break
            if seconds and now - started > seconds:
                break
        print(json.dumps({"final": self.final_summary()}), flush=True)
        self.sub.close(linger=0)
        self.dealer.close(linger=0)
        self.context.term()


def main():
    parser = argparse.ArgumentParser(description="A gap-free raw consumer of tickplant's plantd (docs/protocol.md).")
    parser.add_argument("prefixes", nargs="*", default=[""],
                        help="topic prefixes: AAPL| is every tick of AAPL, A every symbol that begins with A "
                             "(default: everything)")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:7201", help="plantd's PUB (XPUB)")
    parser.add_argument("--snapshot", default="tcp://127.0.0.1:7202", help="plantd's snapshot/replay ROUTER")
    parser.add_argument("--heartbeat-timeout", type=float, default=3.0,
                        help="seconds without any message (ticks or heartbeats) before every symbol shows STALE")
    parser.add_argument("--request-timeout", type=float, default=5.0,
                        help="seconds to wait for a snapshot or replay before asking again")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run until Ctrl-C)")
    parser.add_argument("--until-idle", type=float, default=0,
                        help="stop once joined and no tick came for this many seconds")
    parser.add_argument("--drop", default="",
                        help="FROM:COUNT: lose COUNT ticks on purpose from the FROM-th after the join, "
                             "to watch them healed")
    parser.add_argument("--show", default="", help="SYMBOL,SYMBOL...: their last values every second")
    parser.add_argument("--curve-server-key", default="", help="file with plantd's CURVE public key (its .key)")
    parser.add_argument("--curve-secret-key", default="",
                        help="file with this consumer's CURVE secret key (a .key_secret whose public key plantd lists)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    for prefix in args.prefixes:
        if "|" in prefix[:-1] or prefix.startswith("#"):
            parser.error(f"prefix {prefix!r}: only whole symbols can be joined gap-free (AAPL| or a shard such as "
                         "A); a subscription to one type (AAPL|T) sees a subset of the symbol's symbol_seq")
    drop = (0, 0)
    if args.drop:
        try:
            first, count = (int(part) for part in args.drop.split(":"))
            drop = (first, count)
        except ValueError:
            parser.error(f"--drop: expected FROM:COUNT such as 5000:200, got {args.drop!r}")
    curve = None
    if args.curve_server_key or args.curve_secret_key:
        if not (args.curve_server_key and args.curve_secret_key):
            parser.error("--curve-server-key and --curve-secret-key go together")
        try:
            curve = tuple(open(path, "rb").read().strip() for path in (args.curve_server_key, args.curve_secret_key))
        except OSError as error:
            parser.error(f"cannot read a CURVE key: {error}")
        if any(len(key) != 40 for key in curve):
            parser.error("a CURVE key file holds 40 characters of Z85, as `mktctl keygen` writes it")
    consumer = Consumer(args.endpoint, args.snapshot, args.prefixes, args.heartbeat_timeout, args.request_timeout,
                        drop, curve)
    consumer.run(args.seconds, args.until_idle, args.json, [name for name in args.show.split(",") if name])


if __name__ == "__main__":
    main()
