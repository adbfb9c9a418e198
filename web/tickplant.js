/*
 * tickplant.js: the JavaScript client of tickplant's WebSocket edge (edged), no dependencies.
 *
 * In a page:   <script src="/tickplant.js"></script>  then  new tickplant.Client({ url: "ws://host:8080/prices" })
 * In Node 18+: const tickplant = require("./tickplant.js")  (the client needs a global WebSocket, Node 22+, or
 *              `WebSocket` in its options)
 *
 * What it does for the application (DESIGN section 8 is the protocol):
 * - connects, authenticates (`token`), subscribes and unsubscribes;
 * - reconnects with exponential backoff and full jitter (1 s doubling to 30 s; reset once a connection has stayed up
 *   `stableAfterMs`), and resubscribes every symbol with `fromSeq` (the last seq it saw plus one), so the edge
 *   replays what was missed or sends a fresh snapshot;
 * - keeps each symbol's state (price, change, bid and ask, trading state, quality, halted, last seq, gaps seen);
 * - hands the application the symbols that changed at most once per animation frame (every 100 ms where there is
 *   none), only the latest state of each: the PriceBuffer;
 * - tells connection states and the drops the edge reports in its heartbeats.
 */
(function (root, factory) {
    const api = factory();
    if (typeof module === "object" && module.exports) {
        module.exports = api;
    } else {
        root.tickplant = api;
    }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
    "use strict";

    /** The delays between reconnection attempts: exponential with full jitter. */
    class Backoff {
        /**
         * @param {object} [options]
         * @param {number} [options.initialMs=1000] the ceiling of the first delay
         * @param {number} [options.maxMs=30000] the ceiling never exceeded
         * @param {() => number} [options.random=Math.random] a number in [0, 1)
         */
        constructor(options = {}) {
            this.initialMs = options.initialMs ?? 1000;
            this.maxMs = options.maxMs ?? 30000;
            this.random = options.random ?? Math.random;
            this.attempt = 0;
        }

        /** The ceiling of the next delay: initialMs doubled once per failed attempt, at most maxMs. */
        get ceilingMs() {
            return Math.min(this.maxMs, this.initialMs * Math.pow(2, this.attempt));
        }

        /** The next delay: anywhere from 0 to the ceiling ("full jitter", so that clients cut off together do not
         * come back together), and the ceiling doubles for the attempt after. */
        next() {
            const delay = Math.floor(this.random() * this.ceilingMs);
            if (this.ceilingMs < this.maxMs) this.attempt += 1;
            return delay;
        }

        /** A connection stayed up: the next failure starts again from initialMs. */
        reset() {
            this.attempt = 0;
        }
    }

    /** The clock and frame scheduler of a browser or of Node; tests give their own. */
    const systemScheduler = {
        now: () => Date.now(),
        setTimeout: (callback, ms) => setTimeout(callback, ms),
        clearTimeout: (handle) => clearTimeout(handle),
        /** Once per animation frame where there are frames, else after 100 ms. */
        requestFrame: (callback) =>
            typeof requestAnimationFrame === "function"
                ? requestAnimationFrame(() => callback())
                : setTimeout(callback, 100),
    };

    /**
     * Keeps only the latest value per symbol and hands all of them over together, once per frame: a symbol that
     * ticks a hundred times between two frames is drawn once, with its newest value.
     */
    class PriceBuffer {
        /**
         * @param {(latest: Map<string, any>) => void} onFlush called with the symbols that changed since the last call
         * @param {object} [scheduler] `requestFrame(callback)`; the system's by default
         */
        constructor(onFlush, scheduler = systemScheduler) {
            this.onFlush = onFlush;
            this.scheduler = scheduler;
            this.pending = new Map();
            this.scheduled = false;
            this.flushes = 0;
        }

        /** Replaces what waits for `symbol` with `value`, and asks for a frame if none is asked yet. */
        push(symbol, value) {
            this.pending.set(symbol, value);
            if (!this.scheduled) {
                this.scheduled = true;
                this.scheduler.requestFrame(() => this.flush());
            }
        }

        /** Hands over everything waiting (the frame came). */
        flush() {
            this.scheduled = false;
            if (this.pending.size === 0) return;
            const latest = this.pending;
            this.pending = new Map();
            this.flushes += 1;
            this.onFlush(latest);
        }

        get size() {
            return this.pending.size;
        }
    }

    /** Connection states, in the order a connection goes through them. */
    const ConnectionState = Object.freeze({
        CONNECTING: "connecting",
        LIVE: "live",
        RECONNECTING: "reconnecting",
        CLOSED: "closed",
    });

    /** A symbol's state as the client knows it. */
    function newSymbolState(symbol) {
        return {
            symbol,
            price: null, // last trade
            previousPrice: null, // the trade before it
            change: 0, // price - previousPrice: the direction of the last trade
            size: null,
            bid: null,
            bidSize: null,
            ask: null,
            askSize: null,
            state: "UNSPECIFIED", // TRADING, HALTED, PAUSED, QUOTATION_ONLY (from STATUS)
            quality: "OK", // OK, STALE, GAP, RECOVERING (from STATUS)
            halted: false, // HALTED or PAUSED
            reason: "",
            exchange: "",
            timestamp: 0, // the exchange's time of the last TRADE, QUOTE or BOOK, ms since the epoch
            lastType: "", // the type of the last update applied
            seq: 0, // the last symbol_seq seen
            gaps: 0, // times the seq jumped (updates the client never got)
            missed: 0, // updates those jumps skipped
            snapshots: 0, // snapshots received (the first subscribe, or a resume the edge could not replay)
            resets: 0, // times the seq started again from below (the plant restarted without its journal)
            latestTimestamp: 0, // the newest exchange time of any update applied
            updates: 0,
            joining: true, // subscribed, its snapshot or replay not over yet
            snapshotting: false, // in the middle of a snapshot's frames
        };
    }

    /**
     * The client. Events (`on(name, listener)`):
     * - `state` (state, detail): connecting, live, reconnecting (detail.delayMs), closed
     * - `prices` (Map symbol -> state): the symbols that changed, once per frame (PriceBuffer)
     * - `update` (message, state): every update as it comes (most pages want `prices` instead)
     * - `drops` (total, added): the edge dropped updates for this client (heartbeats; a slow reader)
     * - `error` ({code, message}): an error from the edge (DESIGN section 8 codes)
     * - `subscribed`, `unsubscribed` (symbols)
     */
    class Client {
        /**
         * @param {object} options
         * @param {string} options.url ws:// or wss:// URL of edged's /prices
         * @param {string|Function} [options.token] a token from `mktctl token`, when the edge requires one; or a
         *   function returning one (or a promise of one), asked before the first connection and again whenever the
         *   edge refuses the token (error 402: expired), so that a long session renews its token instead of being
         *   refused in a loop. A plain token that the edge refuses ends the client (state `closed`, an `error` event)
         * @param {string} [options.mode] ltp, quote or full (default: the edge's, full)
         * @param {number} [options.maxRate] at most this many updates per second per symbol
         * @param {number} [options.stableAfterMs=10000] a connection up this long resets the backoff
         * @param {object} [options.backoff] options of Backoff, or a Backoff
         * @param {Function} [options.WebSocket] the WebSocket class (default: the global one)
         * @param {object} [options.scheduler] clock and timers (tests)
         */
        constructor(options) {
            if (!options || !options.url) throw new Error("tickplant.Client needs { url }");
            this.url = options.url;
            this.tokenSource = typeof options.token === "function" ? options.token : null;
            this.token = this.tokenSource ? null : options.token ?? null;
            this.tokenRefused = false;
            this.mode = options.mode ?? null;
            this.maxRate = options.maxRate ?? null;
            this.stableAfterMs = options.stableAfterMs ?? 10000;
            this.backoff = options.backoff instanceof Backoff ? options.backoff : new Backoff(options.backoff);
            this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
            if (typeof this.WebSocket !== "function") {
                throw new Error("no WebSocket: pass { WebSocket } (Node before 22 has none built in)");
            }
            this.scheduler = options.scheduler ?? systemScheduler;
            this.symbols = new Map(); // symbol -> state
            this.listeners = new Map();
            this.buffer = new PriceBuffer((latest) => this.emit("prices", latest), this.scheduler);
            this.state = ConnectionState.CLOSED;
            this.socket = null;
            this.dropped = 0; // the edge's count for this connection, from heartbeats
            this.droppedTotal = 0; // over every connection
            this.connections = 0;
            this.stopped = true;
            this.reconnectTimer = null;
            this.stableTimer = null;
        }

        on(name, listener) {
            if (!this.listeners.has(name)) this.listeners.set(name, []);
            this.listeners.get(name).push(listener);
            return this;
        }

        off(name, listener) {
            const list = this.listeners.get(name);
            if (list) this.listeners.set(name, list.filter((each) => each !== listener));
            return this;
        }

        emit(name, ...args) {
            for (const listener of this.listeners.get(name) ?? []) {
                try {
                    listener(...args);
                } catch (error) {
                    // A listener's bug must not stop the stream for the others.
                    if (typeof console !== "undefined") console.error("tickplant listener failed:", error);
                }
            }
        }

        /** Opens the connection (and keeps it open, reconnecting, until close()). */
        connect() {
            this.stopped = false;
            this.open(ConnectionState.CONNECTING);
            return this;
        }

        /** Closes the connection for good: no reconnection. */
        close() {
            this.stopped = true;
            this.scheduler.clearTimeout(this.reconnectTimer);
            this.scheduler.clearTimeout(this.stableTimer);
            this.reconnectTimer = this.stableTimer = null;
            if (this.socket) {
                const socket = this.socket;
                this.socket = null;
                socket.close(1000);
            }
            if (this.state !== ConnectionState.CLOSED) this.setState(ConnectionState.CLOSED);
        }

        /** Starts watching symbols (kept across reconnections). */
        subscribe(symbols) {
            const added = [].concat(symbols)
                .map((symbol) => String(symbol).toUpperCase())
                .filter((symbol, index, all) => !this.symbols.has(symbol) && all.indexOf(symbol) === index);
            for (const symbol of added) this.symbols.set(symbol, newSymbolState(symbol));
            if (added.length > 0 && this.state === ConnectionState.LIVE) this.send(this.subscribeMessage(added));
            return added;
        }

        /** Stops watching symbols. */
        unsubscribe(symbols) {
            const removed = [].concat(symbols)
                .map((symbol) => String(symbol).toUpperCase())
                .filter((symbol) => this.symbols.delete(symbol));
            if (removed.length > 0 && this.state === ConnectionState.LIVE) {
                this.send({ action: "unsubscribe", symbols: removed });
            }
            return removed;
        }

        /** The subscribe message for these symbols: with `fromSeq` for those seen before (resume after a reconnect). */
        subscribeMessage(symbols) {
            const message = { action: "subscribe", symbols };
            if (this.mode) message.mode = this.mode;
            if (this.maxRate) message.maxRate = this.maxRate;
            const fromSeq = {};
            let resuming = false;
            for (const symbol of symbols) {
                const state = this.symbols.get(symbol);
                state.joining = true;
                state.snapshotting = false;
                if (state.seq > 0) {
                    fromSeq[symbol] = state.seq + 1;
                    resuming = true;
                }
            }
            if (resuming) message.fromSeq = fromSeq;
            return message;
        }

        send(message) {
            if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
        }

        setState(state, detail = {}) {
            this.state = state;
            this.emit("state", state, detail);
        }

        open(state) {
            if (this.state !== state) this.setState(state);
            if (this.tokenSource && (this.token === null || this.tokenRefused)) return this.renewToken(state);
            let socket;
            try {
                socket = new this.WebSocket(this.url);
            } catch (error) {
                return this.scheduleReconnect();
            }
            this.socket = socket;
            socket.onopen = () => {
                if (this.socket !== socket) return;
                this.connections += 1;
                this.dropped = 0;
                if (this.token) socket.send(JSON.stringify({ action: "auth", token: this.token }));
                const symbols = [...this.symbols.keys()];
                if (symbols.length > 0) socket.send(JSON.stringify(this.subscribeMessage(symbols)));
                this.setState(ConnectionState.LIVE);
                this.stableTimer = this.scheduler.setTimeout(() => this.backoff.reset(), this.stableAfterMs);
            };
            socket.onmessage = (event) => {
                if (this.socket !== socket) return;
                let message;
                try {
                    message = JSON.parse(event.data);
                } catch (error) {
                    return;
                }
                this.receive(message);
            };
            socket.onclose = () => {
                if (this.socket !== socket) return;
                this.socket = null;
                this.scheduler.clearTimeout(this.stableTimer);
                this.stableTimer = null;
                if (!this.stopped) this.scheduleReconnect();
            };
            socket.onerror = () => {
                // A close always follows; the reconnection starts there.
            };
        }

        /** Asks the token function for a token, then connects with it; a failure is retried on the backoff. */
        renewToken(state) {
            let pending;
            try {
                pending = Promise.resolve(this.tokenSource());
            } catch (error) {
                pending = Promise.reject(error);
            }
            pending.then(
                (token) => {
                    if (this.stopped) return;
                    this.token = token;
                    this.tokenRefused = false;
                    this.open(state);
                },
                (error) => {
                    if (this.stopped) return;
                    this.emit("error", { code: 0, message: `the token function failed: ${error}` });
                    this.scheduleReconnect();
                },
            );
        }

        scheduleReconnect() {
            const delayMs = this.backoff.next();
            this.setState(ConnectionState.RECONNECTING, { delayMs });
            this.reconnectTimer = this.scheduler.setTimeout(() => {
                this.reconnectTimer = null;
                if (!this.stopped) this.open(ConnectionState.RECONNECTING);
            }, delayMs);
        }

        /** One message from the edge. */
        receive(message) {
            switch (message.type) {
                case "TRADE":
                case "QUOTE":
                case "BOOK":
                case "BAR":
                case "STATUS":
                    return this.applyUpdate(message);
                case "heartbeat":
                    if (typeof message.dropped === "number" && message.dropped > this.dropped) {
                        const added = message.dropped - this.dropped;
                        this.dropped = message.dropped;
                        this.droppedTotal += added;
                        this.emit("drops", this.droppedTotal, added);
                    }
                    return;
                case "subscribed":
                case "unsubscribed":
                    return this.emit(message.type, message.symbols);
                case "error":
                    this.emit("error", { code: message.code, message: message.message });
                    if (message.code === 402) {
                        // The same token would be refused again: renew it, or stop rather than reconnect in a loop.
                        this.tokenRefused = true;
                        if (!this.tokenSource) this.close();
                    }
                    return;
                default:
                    return;
            }
        }

        /** Applies an update to its symbol's state and hands the state to the PriceBuffer. */
        applyUpdate(update) {
            const state = this.symbols.get(update.symbol);
            if (!state) return; // unsubscribed meanwhile
            const seq = update.seq ?? 0;
            if (update.snapshot) {
                // A snapshot sets where the stream stands: its newest seq, whatever came before (the plant may have
                // restarted and numbered afresh). The edge sends one unasked too, when its own stream from the plant
                // lost updates the plant could not replay (a refresh).
                if (!state.snapshotting) {
                    state.snapshotting = true;
                    state.seq = 0;
                    state.snapshots += 1;
                }
                state.seq = Math.max(state.seq, seq);
            } else {
                state.snapshotting = false;
                state.joining = false;
                if (seq > 0 && state.seq > 0 && seq <= state.seq) {
                    // Seen already (a replay overlapping what came live): dropped. Unless it is newer than anything
                    // seen: the plant restarted without its journal and numbers afresh, and the stream goes on.
                    if (!(update.timestamp > state.latestTimestamp)) return;
                    state.resets += 1;
                    state.seq = 0;
                }
                // Only a full stream numbers every update: with a narrower mode or a maxRate, skipped seqs are normal.
                if (seq > state.seq + 1 && state.seq > 0 && !this.mode && !this.maxRate) {
                    state.gaps += 1;
                    state.missed += seq - state.seq - 1;
                }
                if (seq > 0) state.seq = seq;
            }
            switch (update.type) {
                case "TRADE":
                    if (state.price !== null && update.price !== state.price) {
                        state.previousPrice = state.price;
                        state.change = update.price - state.price;
                    }
                    state.price = update.price;
                    state.size = update.size;
                    break;
                case "QUOTE":
                    state.bid = update.bid;
                    state.bidSize = update.bidSize;
                    state.ask = update.ask;
                    state.askSize = update.askSize;
                    break;
                case "STATUS":
                    state.state = update.state;
                    state.quality = update.quality;
                    state.reason = update.reason ?? "";
                    state.halted = update.state === "HALTED" || update.state === "PAUSED";
                    break;
                default:
                    break;
            }
            state.exchange = update.exchange ?? state.exchange;
            // A BAR is stamped with its interval's end and a STATUS with when the state began: neither says when
            // the market last moved.
            const marketUpdate = update.type === "TRADE" || update.type === "QUOTE" || update.type === "BOOK";
            if (update.timestamp && marketUpdate) state.timestamp = update.timestamp;
            state.lastType = update.type;
            if (update.timestamp > state.latestTimestamp) state.latestTimestamp = update.timestamp;
            state.updates += 1;
            this.emit("update", update, state);
            this.buffer.push(update.symbol, state);
        }
    }

    return { Client, Backoff, PriceBuffer, ConnectionState, systemScheduler };
});
