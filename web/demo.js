// The demo page: a live watchlist on tickplant.js. Rows are drawn only for the symbols that changed, once per
// animation frame (the client's PriceBuffer), so 200 symbols ticking cost a few cells per frame, not a table.
(function () {
    "use strict";
    const params = new URLSearchParams(location.search);
    const storageKey = "tickplant.watchlist";
    const defaults = ["AAPL", "MSFT", "AAPLX", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "COST"];

    const client = new tickplant.Client({
        url: (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/prices",
        token: params.get("token") || undefined,
    });

    const elements = {
        connection: document.getElementById("connection"),
        rate: document.getElementById("rate"),
        dropped: document.getElementById("dropped"),
        p50: document.getElementById("latency-p50"),
        p99: document.getElementById("latency-p99"),
        chart: document.getElementById("latency-chart"),
        body: document.getElementById("watchlist"),
        form: document.getElementById("add-form"),
        input: document.getElementById("add-symbols"),
    };
    const rows = new Map(); // symbol -> the row's cells

    // ---- the watchlist: the URL's, else this browser's, else a few well-known symbols ----

    function parseSymbols(text) {
        return text
            .split(/[\s,;]+/)
            .map((symbol) => symbol.trim().toUpperCase())
            .filter((symbol) => /^[A-Z0-9.\-]{1,16}$/.test(symbol));
    }

    function initialWatchlist() {
        if (params.has("symbols")) return parseSymbols(params.get("symbols"));
        try {
            const saved = JSON.parse(localStorage.getItem(storageKey));
            if (Array.isArray(saved)) return saved;
        } catch (error) {
            // Nothing saved, or not by us.
        }
        return defaults;
    }

    function saveWatchlist() {
        try {
            localStorage.setItem(storageKey, JSON.stringify([...rows.keys()]));
        } catch (error) {
            // Private browsing: the watchlist lasts as long as the page.
        }
    }

    function cell(row, className) {
        const td = document.createElement("td");
        td.className = className;
        row.appendChild(td);
        return td;
    }

    function addSymbols(symbols) {
        const added = client.subscribe(symbols);
        for (const symbol of added) {
            const tr = document.createElement("tr");
            tr.dataset.symbol = symbol;
            const row = {
                tr, symbol: cell(tr, "symbol"), price: cell(tr, "price"), change: cell(tr, "change"),
                bid: cell(tr, "bid"), ask: cell(tr, "ask"), badges: cell(tr, "badges"), seq: cell(tr, "seq"), shown: {},
            };
            row.symbol.textContent = symbol;
            row.halt = badge(row.badges, "halt", "HALTED");
            row.quality = badge(row.badges, "quality", "");
            const remove = document.createElement("button");
            remove.className = "remove";
            remove.title = "remove " + symbol;
            remove.textContent = "\u00d7";
            remove.addEventListener("click", () => removeSymbol(symbol));
            cell(tr, "actions").appendChild(remove);
            elements.body.appendChild(tr);
            rows.set(symbol, row);
        }
        if (added.length > 0) saveWatchlist();
    }

    function badge(parent, className, text) {
        const span = document.createElement("span");
        span.className = "badge " + className;
        span.textContent = text;
        span.hidden = true;
        parent.appendChild(span);
        return span;
    }

    function removeSymbol(symbol) {
        client.unsubscribe(symbol);
        const row = rows.get(symbol);
        if (row) row.tr.remove();
        rows.delete(symbol);
        saveWatchlist();
    }

    elements.form.addEventListener("submit", (event) => {
        event.preventDefault();
        addSymbols(parseSymbols(elements.input.value));
        elements.input.value = "";
    });

    // ---- drawing a frame's changes ----

    function formatPrice(price) {
        if (price === null || price === undefined) return "";
        const cents = price * 100;
        return price.toFixed(Math.abs(cents - Math.round(cents)) < 1e-6 ? 2 : 4);
    }

    function formatChange(change) {
        if (!change) return "";
        return (change > 0 ? "+" : "") + formatPrice(change);
    }

    /** Sets a cell's text only when it changed (each write to the DOM costs layout). */
    function show(row, key, element, text) {
        if (row.shown[key] === text) return false;
        row.shown[key] = text;
        element.textContent = text;
        return true;
    }

    const flashUp = [{ backgroundColor: "rgba(10, 138, 58, 0.35)" }, { backgroundColor: "rgba(10, 138, 58, 0)" }];
    const flashDown = [{ backgroundColor: "rgba(198, 40, 40, 0.35)" }, { backgroundColor: "rgba(198, 40, 40, 0)" }];

    function drawRow(row, state) {
        if (show(row, "price", row.price, formatPrice(state.price)) && state.previousPrice !== null) {
            const direction = state.change > 0 ? "up" : state.change < 0 ? "down" : "";
            row.price.className = "price " + direction;
            row.change.className = "change " + direction;
            if (direction) row.price.animate(direction === "up" ? flashUp : flashDown, { duration: 700 });
        }
        show(row, "change", row.change, formatChange(state.change));
        show(row, "bid", row.bid, formatPrice(state.bid));
        show(row, "ask", row.ask, formatPrice(state.ask));
        show(row, "seq", row.seq, state.seq ? String(state.seq) : "");
        row.halt.hidden = !state.halted;
        const quality = state.quality && state.quality !== "OK" && state.quality !== "UNSPECIFIED" ? state.quality : "";
        if (show(row, "quality", row.quality, quality)) row.quality.hidden = !quality;
        // What a test (or a curious person in the inspector) reads.
        const data = row.tr.dataset;
        data.price = state.price === null ? "" : String(state.price);
        data.seq = String(state.seq);
        data.gaps = String(state.gaps);
        data.snapshots = String(state.snapshots);
        data.halted = String(state.halted);
        data.quality = state.quality;
    }

    const renderTimes = []; // ms spent drawing each frame's changes, the last 600
    const latencySamples = []; // this second's exchange -> screen latencies, ms
    client.on("prices", (latest) => {
        const started = performance.now();
        const now = Date.now();
        for (const [symbol, state] of latest) {
            const row = rows.get(symbol);
            if (!row) continue;
            drawRow(row, state);
            // Exchange to screen, for what the market just did (not a BAR or STATUS) and not a snapshot's old value.
            const fresh = state.lastType === "TRADE" || state.lastType === "QUOTE" || state.lastType === "BOOK";
            if (fresh && !state.snapshotting && state.timestamp && latencySamples.length < 10000) {
                latencySamples.push(now - state.timestamp);
            }
        }
        renderTimes.push(performance.now() - started);
        if (renderTimes.length > 600) renderTimes.shift();
    });

    // ---- connection state, rate, drops ----

    let reconnectAt = 0;
    client.on("state", (state, detail) => {
        elements.connection.dataset.state = state;
        reconnectAt = state === "reconnecting" ? Date.now() + (detail.delayMs || 0) : 0;
        drawConnection();
    });

    function drawConnection() {
        const state = elements.connection.dataset.state;
        const seconds = Math.ceil((reconnectAt - Date.now()) / 1000);
        elements.connection.textContent =
            state === "reconnecting" && seconds > 0 ? "reconnecting in " + seconds + " s" : state;
    }

    let updates = 0;
    client.on("update", () => {
        updates += 1;
    });
    client.on("drops", (total) => {
        elements.dropped.textContent = String(total);
    });
    client.on("error", (error) => {
        if (typeof console !== "undefined") console.warn("tickplant edge error", error.code, error.message);
    });

    // ---- once a second: updates per second, latency percentiles and their chart ----

    const latencyHistory = []; // [p50, p99] per second, the last 60
    let frames = 0;
    let framesSinceReset = 0;
    let resetAt = performance.now();
    (function countFrames() {
        frames += 1;
        framesSinceReset += 1;
        if (typeof requestAnimationFrame === "function") requestAnimationFrame(countFrames);
    })();
    const perSecond = { updates: 0, frames: 0 };

    function percentile(sorted, fraction) {
        return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
    }

    function drawChart() {
        const canvas = elements.chart;
        const context = canvas.getContext("2d");
        context.clearRect(0, 0, canvas.width, canvas.height);
        const highest = Math.max(1, ...latencyHistory.map(([, p99]) => p99 ?? 0));
        const step = canvas.width / 60;
        const line = (index, color) => {
            context.strokeStyle = color;
            context.beginPath();
            latencyHistory.forEach((pair, position) => {
                const value = pair[index] ?? 0;
                const x = canvas.width - (latencyHistory.length - position) * step;
                const y = canvas.height - 2 - (value / highest) * (canvas.height - 4);
                if (position === 0) context.moveTo(x, y);
                else context.lineTo(x, y);
            });
            context.stroke();
        };
        line(1, "#9ecae1");
        line(0, "#08519c");
        context.fillStyle = "#666";
        context.font = "10px sans-serif";
        context.fillText(highest + " ms", 2, 10);
    }

    setInterval(() => {
        perSecond.updates = updates;
        perSecond.frames = frames;
        elements.rate.textContent = String(updates);
        updates = 0;
        frames = 0;
        const sorted = latencySamples.splice(0).sort((a, b) => a - b);
        const p50 = percentile(sorted, 0.5);
        const p99 = percentile(sorted, 0.99);
        elements.p50.textContent = p50 === null ? "-" : p50 + " ms";
        elements.p99.textContent = p99 === null ? "-" : p99 + " ms";
        latencyHistory.push([p50, p99]);
        if (latencyHistory.length > 60) latencyHistory.shift();
        drawChart();
        drawConnection();
    }, 1000);

    addSymbols(initialWatchlist());
    client.connect();

    // For tests and the inspector.
    window.tickplantDemo = {
        client,
        addSymbols,
        removeSymbol,
        /** Frame rate and drawing times from now on (what `stats` reports). */
        resetStats: () => {
            renderTimes.length = 0;
            framesSinceReset = 0;
            resetAt = performance.now();
        },
        stats: () => {
            const sorted = renderTimes.slice().sort((a, b) => a - b);
            return {
                updatesPerSecond: perSecond.updates,
                framesPerSecond: perSecond.frames,
                framesPerSecondSinceReset: Math.round((framesSinceReset * 1000) / (performance.now() - resetAt)),
                renderP50Ms: percentile(sorted, 0.5),
                renderP99Ms: percentile(sorted, 0.99),
                renderMaxMs: sorted.length ? sorted[sorted.length - 1] : null,
                connections: client.connections,
                dropped: client.droppedTotal,
            };
        },
    };
})();
