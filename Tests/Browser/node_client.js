// tickplant.js in Node against a running edged (Tests/EndToEndTests/BrowserTests.swift starts the chain): connect,
// subscribe, get live prices with their snapshot first, unsubscribe one symbol, close. Node 22 has a global
// WebSocket; Node 20 needs --experimental-websocket. Prints one JSON line; exits 1 on the first failed check.
// Usage: node [--experimental-websocket] node_client.js WS_URL
"use strict";
const tickplant = require("../../web/tickplant.js");

function fail(message) {
    console.log(JSON.stringify({ failed: message }));
    process.exit(1);
}

const client = new tickplant.Client({ url: process.argv[2] });
const states = [];
const flushes = [];
const subscribed = [];
client.on("state", (state) => states.push(state));
client.on("subscribed", (symbols) => subscribed.push(...symbols));
client.on("prices", (latest) => flushes.push(latest.size));
client.on("error", (error) => fail(`edge error ${error.code}: ${error.message}`));
client.subscribe(["AAPL", "MSFT"]);
client.connect();

const deadline = setTimeout(
    () => fail(`no prices within 15 s: ${JSON.stringify({ states, subscribed, flushes })}`), 15000);
const check = setInterval(() => {
    const aapl = client.symbols.get("AAPL");
    const msft = client.symbols.get("MSFT");
    if (!(aapl.price > 0 && msft.price > 0 && aapl.updates > aapl.snapshots + 5 && flushes.length > 1)) return;
    clearInterval(check);
    clearTimeout(deadline);
    if (states[0] !== "connecting" || states[1] !== "live") fail(`states ${states}`);
    if (aapl.snapshots !== 1 || aapl.gaps !== 0) fail(`AAPL snapshots ${aapl.snapshots}, gaps ${aapl.gaps}`);
    client.unsubscribe("MSFT");
    setTimeout(() => {
        client.close();
        console.log(JSON.stringify({
            ok: true, states, aapl: { price: aapl.price, seq: aapl.seq, updates: aapl.updates },
            flushes: flushes.length, symbols: [...client.symbols.keys()],
        }));
        process.exit(client.state === "closed" && !client.symbols.has("MSFT") ? 0 : 1);
    }, 300);
}, 50);
