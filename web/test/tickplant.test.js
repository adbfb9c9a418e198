// Node's test runner (`node --test web/test/`): the client's backoff schedule, its PriceBuffer and its per-symbol
// state, on a fake clock. The client against a real edged, in a real browser: Tests/Browser/.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const tickplant = require("../tickplant.js");

/** A clock that moves only when told: timers and animation frames run in `advance`. */
class FakeClock {
    constructor() {
        this.nowMs = 0;
        this.timers = [];
        this.nextId = 1;
    }
    now() {
        return this.nowMs;
    }
    setTimeout(callback, ms) {
        const id = this.nextId++;
        this.timers.push({ id, at: this.nowMs + ms, callback });
        return id;
    }
    clearTimeout(id) {
        this.timers = this.timers.filter((timer) => timer.id !== id);
    }
    /** The fake's animation frame: every 16 ms. */
    requestFrame(callback) {
        return this.setTimeout(callback, 16);
    }
    advance(ms) {
        const until = this.nowMs + ms;
        for (;;) {
            this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
            const due = this.timers[0];
            if (!due || due.at > until) break;
            this.timers.shift();
            this.nowMs = due.at;
            due.callback();
        }
        this.nowMs = until;
    }
    /** The delay of the only pending timer. */
    pendingDelays() {
        return this.timers.map((timer) => timer.at - this.nowMs);
    }
}

/** The browser's WebSocket as far as the client uses it; each instance is recorded so the test plays the server. */
function socketClass() {
    const opened = [];
    class TestSocket {
        constructor(url) {
            this.url = url;
            this.readyState = 0;
            this.sent = [];
            opened.push(this);
        }
        send(text) {
            this.sent.push(JSON.parse(text));
        }
        close() {
            this.readyState = 3;
        }
        serverAccepts() {
            this.readyState = 1;
            this.onopen();
        }
        serverCloses() {
            this.readyState = 3;
            this.onclose({ code: 1006 });
        }
        serverSends(message) {
            this.onmessage({ data: JSON.stringify(message) });
        }
    }
    return { TestSocket, opened };
}

test("backoff: full jitter under a ceiling from 1 s doubling to 30 s", () => {
    const highest = new tickplant.Backoff({ random: () => 0.999999 });
    const delays = Array.from({ length: 8 }, () => highest.next());
    assert.deepEqual(delays, [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
    const lowest = new tickplant.Backoff({ random: () => 0 });
    assert.deepEqual([lowest.next(), lowest.next()], [0, 0]);
    const half = new tickplant.Backoff({ random: () => 0.5 });
    assert.deepEqual([half.next(), half.next(), half.next()], [500, 1000, 2000]);
    half.reset();
    assert.equal(half.next(), 500);
});

test("the client reconnects on the backoff schedule and resets it after a stable connection", () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const states = [];
    const client = new tickplant.Client({
        url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock, backoff: { random: () => 0.999999 },
        stableAfterMs: 10000,
    });
    client.on("state", (state, detail) => states.push([state, detail.delayMs]));
    client.connect();
    assert.equal(opened.length, 1);
    // The edge refuses five times: each wait's ceiling doubles.
    const waits = [];
    for (let failure = 0; failure < 5; failure++) {
        opened[opened.length - 1].serverCloses();
        waits.push(clock.pendingDelays()[0]);
        clock.advance(waits[waits.length - 1]);
    }
    assert.deepEqual(waits, [999, 1999, 3999, 7999, 15999]);
    assert.equal(opened.length, 6);
    // Up for less than stableAfterMs, then down: the schedule goes on from where it was.
    opened[5].serverAccepts();
    clock.advance(5000);
    opened[5].serverCloses();
    assert.deepEqual(clock.pendingDelays(), [29999]);
    clock.advance(29999);
    // Up for stableAfterMs: the next failure starts again from 1 s.
    opened[6].serverAccepts();
    clock.advance(10000);
    opened[6].serverCloses();
    assert.deepEqual(clock.pendingDelays(), [999]);
    assert.deepEqual(states.slice(0, 3), [["connecting", undefined], ["reconnecting", 999], ["reconnecting", 1999]]);
    client.close();
    assert.equal(client.state, "closed");
    assert.deepEqual(clock.pendingDelays(), []);
});

test("on reconnect every symbol is subscribed again with fromSeq, the last seq seen plus one", () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const client = new tickplant.Client({
        url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock, token: "T",
    });
    client.subscribe(["AAPL", "msft"]);
    client.connect();
    opened[0].serverAccepts();
    assert.deepEqual(opened[0].sent, [
        { action: "auth", token: "T" },
        { action: "subscribe", symbols: ["AAPL", "MSFT"] },
    ]);
    opened[0].serverSends({ type: "TRADE", symbol: "AAPL", price: 10, size: 1, timestamp: 5, seq: 40, snapshot: true });
    opened[0].serverSends({ type: "TRADE", symbol: "AAPL", price: 11, size: 1, timestamp: 6, seq: 41 });
    client.subscribe("IBM");
    assert.deepEqual(opened[0].sent[2], { action: "subscribe", symbols: ["IBM"] });
    opened[0].serverCloses();
    clock.advance(30000);
    opened[1].serverAccepts();
    assert.deepEqual(opened[1].sent[1], {
        action: "subscribe", symbols: ["AAPL", "MSFT", "IBM"], fromSeq: { AAPL: 42 },
    });
    // The replay follows on: no gap; a jump later is one.
    opened[1].serverSends({ type: "TRADE", symbol: "AAPL", price: 12, size: 1, timestamp: 7, seq: 42 });
    opened[1].serverSends({ type: "TRADE", symbol: "AAPL", price: 12, size: 1, timestamp: 8, seq: 45 });
    const aapl = client.symbols.get("AAPL");
    assert.equal(aapl.seq, 45);
    assert.equal(aapl.gaps, 1);
    assert.equal(aapl.missed, 2);
    assert.equal(aapl.snapshots, 1);
    client.close();
});

test("a symbol's state: price and its change, quote, halt and its resumption, quality, drops", () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const client = new tickplant.Client({ url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock });
    const drops = [];
    client.on("drops", (total, added) => drops.push([total, added]));
    client.subscribe("AAPL");
    client.connect();
    opened[0].serverAccepts();
    const send = (message) => opened[0].serverSends({ symbol: "AAPL", timestamp: 1, exchange: "NASDAQ", ...message });
    send({ type: "TRADE", price: 100.5, size: 10, seq: 1 });
    send({ type: "TRADE", price: 100.25, size: 10, seq: 2 });
    send({ type: "QUOTE", bid: 100.2, bidSize: 5, ask: 100.3, askSize: 7, seq: 3 });
    const aapl = client.symbols.get("AAPL");
    assert.equal(aapl.price, 100.25);
    assert.equal(aapl.previousPrice, 100.5);
    assert.equal(aapl.change, -0.25);
    assert.deepEqual([aapl.bid, aapl.ask, aapl.bidSize, aapl.askSize], [100.2, 100.3, 5, 7]);
    send({ type: "STATUS", state: "HALTED", quality: "OK", reason: "T1", seq: 4 });
    assert.equal(aapl.halted, true);
    send({ type: "STATUS", state: "TRADING", quality: "STALE", reason: "", seq: 5 });
    assert.equal(aapl.halted, false);
    assert.equal(aapl.quality, "STALE");
    assert.equal(aapl.gaps, 0);
    opened[0].serverSends({ type: "heartbeat", ts: 1, dropped: 3 });
    opened[0].serverSends({ type: "heartbeat", ts: 2, dropped: 3 });
    opened[0].serverSends({ type: "heartbeat", ts: 3, dropped: 5 });
    assert.deepEqual(drops, [[3, 3], [5, 2]]);
    client.close();
});

test("PriceBuffer: only the latest value per symbol, handed over once per frame", () => {
    const clock = new FakeClock();
    const flushes = [];
    const buffer = new tickplant.PriceBuffer((latest) => flushes.push([...latest.entries()]), clock);
    for (let price = 1; price <= 100; price++) buffer.push("AAPL", price);
    buffer.push("MSFT", 7);
    assert.equal(flushes.length, 0, "nothing before the frame");
    assert.equal(clock.pendingDelays().length, 1, "one frame asked for, however many pushes");
    clock.advance(16);
    assert.deepEqual(flushes, [[["AAPL", 100], ["MSFT", 7]]]);
    clock.advance(100);
    assert.equal(flushes.length, 1, "no frame without news");
    buffer.push("MSFT", 8);
    clock.advance(16);
    assert.deepEqual(flushes[1], [["MSFT", 8]]);
});

test("PriceBuffer without animation frames hands over every 100 ms", () => {
    // Node has no requestAnimationFrame: the system scheduler falls back to 100 ms timers.
    const clock = new FakeClock();
    const scheduler = { requestFrame: (callback) => clock.setTimeout(callback, 100) };
    let calls = 0;
    const buffer = new tickplant.PriceBuffer(() => calls++, scheduler);
    buffer.push("AAPL", 1);
    clock.advance(99);
    assert.equal(calls, 0);
    clock.advance(1);
    assert.equal(calls, 1);
    assert.equal(typeof requestAnimationFrame, "undefined");
    const fallback = new tickplant.PriceBuffer(() => calls++);
    fallback.push("AAPL", 1);
    return new Promise((resolve) => setTimeout(() => {
        assert.equal(calls, 2, "the system scheduler flushed within 150 ms");
        resolve();
    }, 150));
});

test("a replay's overlap is dropped; a seq that starts again with newer updates is a reset, not a duplicate", () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const client = new tickplant.Client({ url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock });
    client.subscribe("AAPL");
    client.connect();
    opened[0].serverAccepts();
    const trade = (seq, price, timestamp) =>
        opened[0].serverSends({ type: "TRADE", symbol: "AAPL", price, size: 1, timestamp, seq });
    trade(500, 10, 1000);
    trade(501, 11, 1001);
    trade(501, 11, 1001); // the same update again
    trade(499, 9, 999); // an older one
    const aapl = client.symbols.get("AAPL");
    assert.deepEqual([aapl.price, aapl.seq, aapl.updates, aapl.resets], [11, 501, 2, 0]);
    // plantd restarted without its journal: seq 1 again, but the market moved on.
    trade(1, 12, 2000);
    trade(2, 13, 2001);
    assert.deepEqual([aapl.price, aapl.seq, aapl.gaps, aapl.resets], [13, 2, 0, 1]);
    client.close();
});

/** Lets promise callbacks run (the token function's answer). */
function settle() {
    return new Promise((resolve) => setImmediate(resolve));
}

test("a plain token the edge refuses (402) ends the client instead of reconnecting in a loop", () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const client = new tickplant.Client({
        url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock, token: "t1",
    });
    const errors = [];
    client.on("error", (error) => errors.push(error.code));
    client.connect();
    opened[0].serverAccepts();
    assert.deepEqual(opened[0].sent[0], { action: "auth", token: "t1" });
    opened[0].serverSends({ type: "error", code: 402, message: "the token expired at 5 (unix seconds)" });
    assert.equal(client.state, "closed");
    assert.deepEqual(errors, [402]);
    opened[0].serverCloses();
    clock.advance(60000);
    assert.equal(opened.length, 1, "no reconnection with a token the edge refuses");
});

test("a token function is asked again after a 402 and the client resumes with the new token", async () => {
    const clock = new FakeClock();
    const { TestSocket, opened } = socketClass();
    const tokens = ["t1", "t2"];
    let asked = 0;
    const client = new tickplant.Client({
        url: "ws://edge/prices", WebSocket: TestSocket, scheduler: clock, backoff: { random: () => 0 },
        token: () => {
            asked += 1;
            return Promise.resolve(tokens.shift());
        },
    });
    client.subscribe(["AAPL"]);
    client.connect();
    await settle();
    opened[0].serverAccepts();
    assert.deepEqual(opened[0].sent[0], { action: "auth", token: "t1" });
    opened[0].serverSends({ type: "TRADE", symbol: "AAPL", price: 1, seq: 7 });
    opened[0].serverSends({ type: "error", code: 402, message: "the token expired" });
    opened[0].serverCloses();
    clock.advance(0);
    await settle();
    assert.equal(asked, 2);
    assert.equal(opened.length, 2);
    opened[1].serverAccepts();
    assert.deepEqual(opened[1].sent[0], { action: "auth", token: "t2" });
    assert.deepEqual(opened[1].sent[1].fromSeq, { AAPL: 8 }, "resumed where it was: no gap");
    client.close();
});
