/*
 * A raw tickplant consumer in C, as a risk system writes one: it joins plantd's stream without a gap, keeps the
 * last values of every symbol it watches, heals every gap by a replay, and says what quality each symbol's data has.
 * The same procedure as examples/consumer-python/consumer.py, step by step as docs/protocol.md tells it.
 *
 * libzmq and protobuf-c with the project's generated C of Proto/tick.proto and control.proto (Sources/CTickProto);
 * `make examples` at the top builds it. Run, beside `make run`:
 *     ./consumer --endpoint tcp://127.0.0.1:7201 --snapshot tcp://127.0.0.1:7202 'AAPL|' A
 *
 * Ownership: every Tickplant__Tick here came from tickplant__tick__unpack and has exactly one owner at a time: the
 * join buffer, an answer being read, a symbol's held list, or a symbol's last value of its type. Whoever drops it
 * frees it with tick_free.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "control.pb-c.h"
#include "tick.pb-c.h"

#define TYPE_SLOTS 6 /* TickType values 0-5 */

static const char *type_names[TYPE_SLOTS] = {"UNSPECIFIED", "TRADE", "QUOTE", "BOOK", "STATUS", "BAR"};
static const char *quality_names[] = {"OK", "OK", "STALE", "GAP", "RECOVERING"};
static const char *state_names[] = {"TRADING", "TRADING", "HALTED", "PAUSED", "QUOTATION_ONLY"};

static void die(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("consumer: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    exit(2);
}

static void *checked(void *pointer) {
    if (pointer == NULL) die("out of memory");
    return pointer;
}

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void tick_free(Tickplant__Tick *tick) {
    if (tick != NULL) tickplant__tick__free_unpacked(tick, NULL);
}

/* A growable list of owned ticks, in arrival order. */
typedef struct {
    Tickplant__Tick **items;
    size_t count, capacity;
} TickList;

static void list_push(TickList *list, Tickplant__Tick *tick) {
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? list->capacity * 2 : 16;
        list->items = checked(realloc(list->items, list->capacity * sizeof *list->items));
    }
    list->items[list->count++] = tick;
}

/* Hands the ticks over to the caller (who frees what it does not keep) and leaves the list empty. */
static TickList list_take(TickList *list) {
    TickList taken = *list;
    *list = (TickList){0};
    return taken;
}

/* MARK: symbols */

typedef struct {
    char *name;
    uint64_t last_seq;   /* the last symbol_seq applied: the next one must be last_seq + 1 */
    uint64_t joined_seq; /* where this consumer's history of the symbol starts (its snapshot) */
    uint64_t applied;    /* ticks applied since then, each exactly last_seq + 1 */
    uint64_t gaps, resets;
    Tickplant__Tick *last[TYPE_SLOTS]; /* the last tick of each type */
    int quality, state;                /* the plant's word on the symbol, from its STATUS ticks */
    bool replaying;                    /* a replay is asked for: live ticks wait in held */
    TickList held;
} Symbol;

/* Open addressing on the symbol's name; a tenth of a market's symbols to a whole market. */
typedef struct {
    Symbol **slots;
    size_t capacity, count;
} SymbolTable;

static uint64_t hash_name(const char *name) {
    uint64_t hash = 1469598103934665603ULL;
    for (; *name; name++) hash = (hash ^ (unsigned char)*name) * 1099511628211ULL;
    return hash;
}

static Symbol *symbol_find(SymbolTable *table, const char *name) {
    if (table->capacity == 0) return NULL;
    for (size_t index = hash_name(name) & (table->capacity - 1);; index = (index + 1) & (table->capacity - 1)) {
        Symbol *symbol = table->slots[index];
        if (symbol == NULL) return NULL;
        if (strcmp(symbol->name, name) == 0) return symbol;
    }
}

static void symbol_insert_slot(SymbolTable *table, Symbol *symbol) {
    size_t index = hash_name(symbol->name) & (table->capacity - 1);
    while (table->slots[index] != NULL) index = (index + 1) & (table->capacity - 1);
    table->slots[index] = symbol;
}

static Symbol *symbol_add(SymbolTable *table, const char *name) {
    if ((table->count + 1) * 2 > table->capacity) {
        SymbolTable grown = {checked(calloc(table->capacity ? table->capacity * 2 : 1024, sizeof(Symbol *))),
                             table->capacity ? table->capacity * 2 : 1024, table->count};
        for (size_t index = 0; index < table->capacity; index++)
            if (table->slots[index] != NULL) symbol_insert_slot(&grown, table->slots[index]);
        free(table->slots);
        *table = grown;
    }
    Symbol *symbol = checked(calloc(1, sizeof *symbol));
    symbol->name = checked(strdup(name));
    symbol_insert_slot(table, symbol);
    table->count++;
    return symbol;
}

/* The symbols by name, for output (the caller frees the array). */
static int compare_symbols(const void *left, const void *right) {
    return strcmp((*(Symbol *const *)left)->name, (*(Symbol *const *)right)->name);
}

static Symbol **symbols_sorted(const SymbolTable *table) {
    Symbol **sorted = checked(malloc((table->count + 1) * sizeof *sorted));
    size_t count = 0;
    for (size_t index = 0; index < table->capacity; index++)
        if (table->slots[index] != NULL) sorted[count++] = table->slots[index];
    qsort(sorted, count, sizeof *sorted, compare_symbols);
    return sorted;
}

/* Takes ownership of the tick as the symbol's last value of its type. */
static void symbol_apply(Symbol *symbol, Tickplant__Tick *tick) {
    int slot = tick->type < TYPE_SLOTS ? (int)tick->type : 0;
    symbol->last_seq = tick->symbol_seq;
    if (tick->type == TICKPLANT__TICK_TYPE__STATUS) {
        symbol->quality = tick->quality <= 4 ? (int)tick->quality : 0;
        symbol->state = tick->state <= 4 ? (int)tick->state : 0;
    }
    tick_free(symbol->last[slot]);
    symbol->last[slot] = tick;
}

/* MARK: the consumer */

typedef enum { ASK_SNAPSHOT, ASK_REPLAY, ASK_RESNAPSHOT } AskKind;

typedef struct {
    AskKind kind;
    char *text; /* the prefix of a snapshot, the symbol of a replay or re-snapshot */
    uint64_t from;
} Request;

typedef struct {
    void *context, *sub, *dealer;
    char curve_server_key[41], curve_secret_key[41], curve_public_key[41]; /* Z85; empty: no CURVE */
    const char *snapshot_endpoint;
    char **prefixes;
    int prefix_count;
    double heartbeat_timeout, request_timeout;
    uint64_t drop_from, drop_count;

    SymbolTable symbols;
    /* The snapshot/replay ROUTER answers one request at a time here: a replay from the journal is answered over
     * several of plantd's turns, so two requests in flight could interleave. */
    Request *waiting;
    size_t waiting_head, waiting_count, waiting_capacity;
    bool asking;
    Request asked;
    double asked_at;
    TickList answer;
    bool joining; /* until every prefix's snapshot is in: live ticks wait in buffer */
    TickList buffer;
    int snapshots_due;
    bool have_session;
    uint64_t session; /* plantd's session, from its heartbeats */
    double last_message, last_tick_at;
    bool link_stale;
    uint64_t received_live; /* received since the first join ended (what --drop counts) */
    uint64_t received, duplicates, dropped_on_purpose, gaps, gaps_healed, resets, rejoins, plant_restarts,
        link_silences, requests_timed_out;
} Consumer;

/* Section 9: with CURVE, the plant's public key and this consumer's pair, set before connecting. */
static void secure(const Consumer *consumer, void *socket) {
    if (consumer->curve_server_key[0] == '\0') return;
    zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, consumer->curve_server_key, 40);
    zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, consumer->curve_public_key, 40);
    zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, consumer->curve_secret_key, 40);
}

static void new_dealer(Consumer *consumer) {
    /* A fresh DEALER: an answer to a request of the old one (a plant that died, a timeout) can never be taken for an
     * answer to a new request. */
    if (consumer->dealer != NULL) zmq_close(consumer->dealer);
    consumer->dealer = zmq_socket(consumer->context, ZMQ_DEALER);
    secure(consumer, consumer->dealer);
    int unlimited = 0, linger = 0;
    zmq_setsockopt(consumer->dealer, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
    zmq_setsockopt(consumer->dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(consumer->dealer, consumer->snapshot_endpoint) != 0)
        die("cannot connect to %s: %s", consumer->snapshot_endpoint, zmq_strerror(errno));
}

static void request_free(Request *request) {
    free(request->text);
    request->text = NULL;
}

static void send_next(Consumer *consumer) {
    if (consumer->asking || consumer->waiting_count == 0) return;
    consumer->asked = consumer->waiting[consumer->waiting_head];
    consumer->waiting_head = (consumer->waiting_head + 1) % consumer->waiting_capacity;
    consumer->waiting_count--;
    consumer->asking = true;
    consumer->asked_at = now_seconds();

    Tickplant__ControlRequest request = TICKPLANT__CONTROL_REQUEST__INIT;
    Tickplant__SnapshotRequest snapshot = TICKPLANT__SNAPSHOT_REQUEST__INIT;
    Tickplant__SymbolReplayRequest replay = TICKPLANT__SYMBOL_REPLAY_REQUEST__INIT;
    char prefix[256];
    if (consumer->asked.kind == ASK_REPLAY) {
        replay.symbol = consumer->asked.text;
        replay.from_symbol_seq = consumer->asked.from;
        request.request_case = TICKPLANT__CONTROL_REQUEST__REQUEST_SYMBOL_REPLAY;
        request.symbol_replay = &replay;
    } else {
        /* A re-snapshot is of one symbol: its name and the bar, so that AAPL never brings AAPLX. */
        snprintf(prefix, sizeof prefix, "%s%s", consumer->asked.text,
                 consumer->asked.kind == ASK_RESNAPSHOT ? "|" : "");
        snapshot.prefix = prefix;
        request.request_case = TICKPLANT__CONTROL_REQUEST__REQUEST_SNAPSHOT;
        request.snapshot = &snapshot;
    }
    uint8_t packed[512];
    size_t size = tickplant__control_request__pack(&request, packed);
    zmq_send(consumer->dealer, packed, size, 0);
}

static void ask(Consumer *consumer, AskKind kind, const char *text, uint64_t from) {
    if (consumer->waiting_count == consumer->waiting_capacity) {
        size_t capacity = consumer->waiting_capacity ? consumer->waiting_capacity * 2 : 64;
        Request *grown = checked(malloc(capacity * sizeof *grown));
        for (size_t index = 0; index < consumer->waiting_count; index++)
            grown[index] = consumer->waiting[(consumer->waiting_head + index) % consumer->waiting_capacity];
        free(consumer->waiting);
        consumer->waiting = grown;
        consumer->waiting_head = 0;
        consumer->waiting_capacity = capacity;
    }
    size_t tail = (consumer->waiting_head + consumer->waiting_count) % consumer->waiting_capacity;
    consumer->waiting[tail] = (Request){kind, checked(strdup(text)), from};
    consumer->waiting_count++;
    send_next(consumer);
}

static void clear_requests(Consumer *consumer) {
    while (consumer->waiting_count > 0) {
        request_free(&consumer->waiting[consumer->waiting_head]);
        consumer->waiting_head = (consumer->waiting_head + 1) % consumer->waiting_capacity;
        consumer->waiting_count--;
    }
    if (consumer->asking) request_free(&consumer->asked);
    consumer->asking = false;
    TickList answer = list_take(&consumer->answer);
    for (size_t index = 0; index < answer.count; index++) tick_free(answer.items[index]);
    free(answer.items);
}

static void take(Consumer *consumer, Tickplant__Tick *tick);

/* Step 6: symbol_seq jumped (or a rejoin found the symbol further on): replay it from the first missing tick; its
 * live ticks wait until the replay is applied. */
static void gap(Consumer *consumer, Symbol *symbol, uint64_t first_missing) {
    symbol->gaps++;
    symbol->replaying = true;
    consumer->gaps++;
    ask(consumer, ASK_REPLAY, symbol->name, first_missing);
}

static void release(Consumer *consumer, Symbol *symbol) {
    symbol->replaying = false;
    TickList held = list_take(&symbol->held);
    for (size_t index = 0; index < held.count; index++) take(consumer, held.items[index]);
    free(held.items);
}

/* Step 5: a live tick (or one that waited). */
static void take(Consumer *consumer, Tickplant__Tick *tick) {
    Symbol *symbol = symbol_find(&consumer->symbols, tick->symbol);
    if (symbol == NULL) symbol = symbol_add(&consumer->symbols, tick->symbol); /* new since the join: from 1 */
    if (symbol->replaying) {
        list_push(&symbol->held, tick);
    } else if (tick->symbol_seq <= symbol->last_seq) {
        consumer->duplicates++; /* already applied (from the snapshot or a replay) */
        tick_free(tick);
    } else if (tick->symbol_seq == symbol->last_seq + 1) {
        symbol_apply(symbol, tick);
        symbol->applied++;
    } else {
        list_push(&symbol->held, tick);
        gap(consumer, symbol, symbol->last_seq + 1);
    }
}

/* The ticks[first, end) of one symbol from a snapshot are its last values: its history here starts at them. */
static void take_snapshot(Symbol *symbol, Tickplant__Tick **ticks, size_t count) {
    for (int slot = 0; slot < TYPE_SLOTS; slot++) {
        tick_free(symbol->last[slot]);
        symbol->last[slot] = NULL;
    }
    uint64_t newest = 0;
    for (size_t index = 0; index < count; index++) {
        if (ticks[index]->symbol_seq > newest) newest = ticks[index]->symbol_seq;
        symbol_apply(symbol, ticks[index]);
    }
    symbol->last_seq = symbol->joined_seq = newest;
    symbol->applied = 0;
}

/* Steps 3-4 for one prefix's snapshot: each symbol's snapshot is its starting point. A plantd answers in symbol
 * order, so one symbol's ticks are together. Takes the ticks. */
static void on_snapshot(Consumer *consumer, TickList ticks) {
    size_t first = 0;
    while (first < ticks.count) {
        size_t end = first;
        uint64_t newest = 0;
        while (end < ticks.count && strcmp(ticks.items[end]->symbol, ticks.items[first]->symbol) == 0) {
            if (ticks.items[end]->symbol_seq > newest) newest = ticks.items[end]->symbol_seq;
            end++;
        }
        Symbol *symbol = symbol_find(&consumer->symbols, ticks.items[first]->symbol);
        bool kept = false;
        if (symbol == NULL || symbol->last_seq == 0) {
            if (symbol == NULL) symbol = symbol_add(&consumer->symbols, ticks.items[first]->symbol);
            take_snapshot(symbol, ticks.items + first, end - first);
            kept = true;
        } else if (newest > symbol->last_seq) {
            gap(consumer, symbol, symbol->last_seq + 1); /* rejoining: ticks of it never arrived here */
        } else if (newest < symbol->last_seq) {
            /* The plant's sequence of it started again (a plant without its journal): a new history. */
            symbol->resets++;
            consumer->resets++;
            take_snapshot(symbol, ticks.items + first, end - first);
            kept = true;
        }
        if (!kept)
            for (size_t index = first; index < end; index++) tick_free(ticks.items[index]);
        first = end;
    }
    free(ticks.items);
    if (--consumer->snapshots_due == 0) {
        consumer->joining = false;
        /* The buffered live ticks go through the same path as every later one: it drops what the snapshot already
         * holds and replays what it lacks. */
        TickList buffered = list_take(&consumer->buffer);
        for (size_t index = 0; index < buffered.count; index++) take(consumer, buffered.items[index]);
        free(buffered.items);
    }
}

/* Step 2, once the first heartbeat proved the subscriptions live: a snapshot of every prefix. */
static void join(Consumer *consumer) {
    consumer->joining = true;
    consumer->snapshots_due = consumer->prefix_count;
    for (int index = 0; index < consumer->prefix_count; index++)
        ask(consumer, ASK_SNAPSHOT, consumer->prefixes[index], 0);
}

/* The plant restarted, or the link was down: ticks may have been published while nobody here listened. Join
 * again; each symbol the new snapshot shows further on is replayed from where this consumer stopped. */
static void rejoin(Consumer *consumer, const char *why) {
    fprintf(stderr, "rejoining: %s\n", why);
    consumer->rejoins++;
    TickList buffer = {0};
    for (size_t slot = 0; slot < consumer->symbols.capacity; slot++) {
        Symbol *symbol = consumer->symbols.slots[slot];
        if (symbol == NULL) continue;
        if (symbol->replaying) {
            /* Its replay is dropped with the old requests: the join finds the hole again and counts it then. */
            symbol->gaps--;
            consumer->gaps--;
        }
        TickList held = list_take(&symbol->held);
        for (size_t index = 0; index < held.count; index++) list_push(&buffer, held.items[index]);
        free(held.items);
        symbol->replaying = false;
    }
    TickList later = list_take(&consumer->buffer);
    for (size_t index = 0; index < later.count; index++) list_push(&buffer, later.items[index]);
    free(later.items);
    consumer->buffer = buffer;
    clear_requests(consumer);
    new_dealer(consumer);
    join(consumer);
}

static void on_replay(Consumer *consumer, const char *name, uint64_t first_missing, TickList ticks,
                      const Tickplant__SnapshotEnd *end) {
    Symbol *symbol = symbol_find(&consumer->symbols, name);
    for (size_t index = 0; index < ticks.count; index++) {
        Tickplant__Tick *tick = ticks.items[index];
        if (symbol != NULL && strcmp(tick->symbol, name) == 0 && tick->symbol_seq == symbol->last_seq + 1) {
            symbol_apply(symbol, tick);
            symbol->applied++;
        } else {
            tick_free(tick);
        }
    }
    free(ticks.items);
    if (symbol == NULL) return;
    if (end->complete && end->error[0] == '\0' && symbol->last_seq >= first_missing) {
        consumer->gaps_healed++;
        release(consumer, symbol);
    } else {
        /* The plant cannot go back that far: its snapshot is the best there is. Counted, never hidden. */
        fprintf(stderr, "%s: replay from %" PRIu64 " refused (%s); re-snapshotting\n", name, first_missing,
                end->error[0] ? end->error : "not kept");
        symbol->resets++;
        consumer->resets++;
        ask(consumer, ASK_RESNAPSHOT, name, 0);
    }
}

static void on_resnapshot(Consumer *consumer, const char *name, TickList ticks) {
    Symbol *symbol = symbol_find(&consumer->symbols, name);
    size_t kept = 0;
    for (size_t index = 0; index < ticks.count; index++) {
        if (strcmp(ticks.items[index]->symbol, name) == 0) ticks.items[kept++] = ticks.items[index];
        else tick_free(ticks.items[index]);
    }
    if (symbol != NULL && kept > 0) take_snapshot(symbol, ticks.items, kept);
    else for (size_t index = 0; index < kept; index++) tick_free(ticks.items[index]);
    free(ticks.items);
    if (symbol != NULL) release(consumer, symbol);
}

static void on_answer(Consumer *consumer, const zmq_msg_t *topic, const zmq_msg_t *payload) {
    if (!consumer->asking) return;
    bool is_end = zmq_msg_size(topic) == 4 && memcmp(zmq_msg_data((zmq_msg_t *)topic), "#END", 4) == 0;
    const uint8_t *bytes = zmq_msg_data((zmq_msg_t *)payload);
    if (!is_end) {
        /* The plant's own topics (#SYS market-wide status) are not a symbol's ticks. */
        if (zmq_msg_size(topic) > 0 && *(const char *)zmq_msg_data((zmq_msg_t *)topic) == '#') return;
        Tickplant__Tick *tick = tickplant__tick__unpack(NULL, zmq_msg_size(payload), bytes);
        if (tick != NULL) list_push(&consumer->answer, tick);
        return;
    }
    Tickplant__SnapshotEnd *end = tickplant__snapshot_end__unpack(NULL, zmq_msg_size(payload), bytes);
    Request request = consumer->asked;
    consumer->asking = false;
    TickList ticks = list_take(&consumer->answer);
    if (end == NULL || (consumer->have_session && end->plant_session != consumer->session)) {
        /* Answered by another plantd than the one whose heartbeats were seen: it restarted meanwhile. */
        for (size_t index = 0; index < ticks.count; index++) tick_free(ticks.items[index]);
        free(ticks.items);
        request_free(&request);
        if (end != NULL) tickplant__snapshot_end__free_unpacked(end, NULL);
        rejoin(consumer, "the snapshot came from a new plant session");
        return;
    }
    if (request.kind == ASK_SNAPSHOT) {
        if (!end->complete || end->error[0])
            fprintf(stderr, "snapshot of '%s' refused: %s\n", request.text, end->error);
        on_snapshot(consumer, ticks);
    } else if (request.kind == ASK_RESNAPSHOT) {
        on_resnapshot(consumer, request.text, ticks);
    } else {
        on_replay(consumer, request.text, request.from, ticks, end);
    }
    request_free(&request);
    tickplant__snapshot_end__free_unpacked(end, NULL);
    send_next(consumer);
}

/* Step 7: heartbeats tell a quiet market from a dead link, and a restarted plant by its session. */
static void on_heartbeat(Consumer *consumer, const Tickplant__Tick *heartbeat) {
    bool was_stale = consumer->link_stale;
    consumer->link_stale = false;
    if (!consumer->have_session) {
        consumer->have_session = true;
        consumer->session = heartbeat->plant_session;
        join(consumer);
    } else if (heartbeat->plant_session != consumer->session) {
        consumer->session = heartbeat->plant_session;
        consumer->plant_restarts++;
        rejoin(consumer, "plantd restarted (new session in its heartbeat)");
    } else if (was_stale) {
        rejoin(consumer, "heartbeats are back after a silence");
    }
}

static void on_live(Consumer *consumer, const zmq_msg_t *topic, const zmq_msg_t *payload) {
    const char *topic_text = zmq_msg_data((zmq_msg_t *)topic);
    bool heartbeat = zmq_msg_size(topic) == 3 && memcmp(topic_text, "#HB", 3) == 0;
    consumer->last_message = now_seconds(); /* anything shows the link alive: a consumer behind reads #HB late */
    /* The plant's other topics (#SYS, #Q|SYMBOL quarantined ticks, which an empty prefix takes too) are not a
     * symbol's ticks: its symbol_seq counts only what was published under SYMBOL|. */
    if (!heartbeat && zmq_msg_size(topic) > 0 && topic_text[0] == '#') return;
    Tickplant__Tick *tick =
        tickplant__tick__unpack(NULL, zmq_msg_size(payload), zmq_msg_data((zmq_msg_t *)payload));
    if (tick == NULL) return;
    if (heartbeat) {
        on_heartbeat(consumer, tick);
        tick_free(tick);
        return;
    }
    consumer->received++;
    consumer->last_tick_at = now_seconds();
    if (consumer->joining) {
        list_push(&consumer->buffer, tick);
        return;
    }
    consumer->received_live++;
    if (consumer->received_live >= consumer->drop_from &&
        consumer->received_live < consumer->drop_from + consumer->drop_count) {
        consumer->dropped_on_purpose++; /* --drop: a loss made on purpose, to see it healed */
        tick_free(tick);
        return;
    }
    take(consumer, tick);
}

/* MARK: output */

static const char *quality_of(const Consumer *consumer, const Symbol *symbol) {
    if (consumer->link_stale) return "STALE";
    if (symbol->replaying || consumer->joining) return "RECOVERING";
    return quality_names[symbol->quality];
}

static void print_decimal(FILE *out, int64_t fixed_point) {
    uint64_t magnitude = fixed_point < 0 ? -(uint64_t)fixed_point : (uint64_t)fixed_point;
    char fraction[8];
    snprintf(fraction, sizeof fraction, "%06" PRIu64, magnitude % 1000000);
    for (int index = 5; index >= 0 && fraction[index] == '0'; index--) fraction[index] = '\0';
    fprintf(out, "%s%" PRIu64 "%s%s", fixed_point < 0 ? "-" : "", magnitude / 1000000, fraction[0] ? "." : "",
            fraction);
}

static void print_summary(const Consumer *consumer, double rate, bool json) {
    size_t ok = 0, recovering = 0, gap_count = 0, stale = 0, halted = 0;
    for (size_t slot = 0; slot < consumer->symbols.capacity; slot++) {
        const Symbol *symbol = consumer->symbols.slots[slot];
        if (symbol == NULL) continue;
        const char *quality = quality_of(consumer, symbol);
        ok += strcmp(quality, "OK") == 0;
        recovering += strcmp(quality, "RECOVERING") == 0;
        gap_count += strcmp(quality, "GAP") == 0;
        stale += strcmp(quality, "STALE") == 0;
        halted += symbol->state > 1;
    }
    char clock[16];
    time_t wall = time(NULL);
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&wall));
    printf("%s%s  %-7s  symbols %zu  ticks/s %.0f  OK %zu  RECOVERING %zu  GAP %zu  STALE %zu  halted %zu"
           "  gaps %" PRIu64
           " (healed %" PRIu64 ")  resets %" PRIu64 "  duplicates %" PRIu64 "  plant restarts %" PRIu64 "%s\n",
           json ? "{\"summary\": \"" : "", clock, consumer->joining ? "joining" : "live", consumer->symbols.count, rate,
           ok, recovering, gap_count, stale, halted, consumer->gaps, consumer->gaps_healed, consumer->resets,
           consumer->duplicates, consumer->plant_restarts, json ? "\"}" : "");
}

static void print_show(const Consumer *consumer, const char *name, bool json) {
    const Symbol *symbol = symbol_find((SymbolTable *)&consumer->symbols, name);
    printf("%s%-8s", json ? "{\"show\": \"" : "    ", name);
    if (symbol == NULL) {
        printf("  (nothing yet)");
    } else {
        const Tickplant__Tick *trade = symbol->last[TICKPLANT__TICK_TYPE__TRADE];
        const Tickplant__Tick *quote = symbol->last[TICKPLANT__TICK_TYPE__QUOTE];
        if (trade != NULL) {
            printf("  ");
            print_decimal(stdout, trade->price);
            printf(" x %" PRIu64, trade->size);
        }
        if (quote != NULL) {
            printf("  bid ");
            print_decimal(stdout, quote->bid_price);
            printf(" ask ");
            print_decimal(stdout, quote->ask_price);
        }
        printf("  %s %s  seq %" PRIu64, quality_of(consumer, symbol), state_names[symbol->state], symbol->last_seq);
    }
    printf("%s\n", json ? "\"}" : "");
}

/* The final state as one JSON line: what the tests compare with the plant's own snapshot. Symbols are plain
 * tickers (letters and digits), so they need no escaping. */
static void print_final(const Consumer *consumer) {
    printf("{\"final\": {\"received\": %" PRIu64 ", \"counters\": {\"duplicates\": %" PRIu64
           ", \"dropped_on_purpose\": %" PRIu64 ", \"gaps\": %" PRIu64 ", \"gaps_healed\": %" PRIu64
           ", \"resets\": %" PRIu64 ", \"rejoins\": %" PRIu64 ", \"plant_restarts\": %" PRIu64
           ", \"link_silences\": %" PRIu64 ", \"requests_timed_out\": %" PRIu64 "}, \"symbols\": {",
           consumer->received, consumer->duplicates, consumer->dropped_on_purpose, consumer->gaps,
           consumer->gaps_healed, consumer->resets, consumer->rejoins, consumer->plant_restarts,
           consumer->link_silences, consumer->requests_timed_out);
    Symbol **sorted = symbols_sorted(&consumer->symbols);
    for (size_t index = 0; index < consumer->symbols.count; index++) {
        const Symbol *symbol = sorted[index];
        printf("%s\"%s\": {\"last_seq\": %" PRIu64 ", \"joined_seq\": %" PRIu64 ", \"applied\": %" PRIu64
               ", \"gaps\": %" PRIu64 ", \"resets\": %" PRIu64 ", \"quality\": \"%s\", \"state\": \"%s\", \"last\": {",
               index ? ", " : "", symbol->name, symbol->last_seq, symbol->joined_seq, symbol->applied, symbol->gaps,
               symbol->resets, quality_of(consumer, symbol), state_names[symbol->state]);
        bool first = true;
        for (int slot = 1; slot < TYPE_SLOTS; slot++) {
            const Tickplant__Tick *tick = symbol->last[slot];
            if (tick == NULL) continue;
            printf("%s\"%s\": {\"symbol_seq\": %" PRIu64, first ? "" : ", ", type_names[slot], tick->symbol_seq);
            if (slot == TICKPLANT__TICK_TYPE__TRADE)
                printf(", \"price\": %" PRId64 ", \"size\": %" PRIu64 ", \"volume\": %" PRIu64, tick->price, tick->size,
                       tick->volume);
            else if (slot == TICKPLANT__TICK_TYPE__QUOTE)
                printf(", \"bid_price\": %" PRId64 ", \"ask_price\": %" PRId64, tick->bid_price, tick->ask_price);
            else if (slot == TICKPLANT__TICK_TYPE__BAR)
                printf(", \"close\": %" PRId64 ", \"volume\": %" PRIu64, tick->close, tick->volume);
            printf("}");
            first = false;
        }
        printf("}}");
    }
    printf("}}}\n");
    free(sorted);
}

/* MARK: main */

static volatile sig_atomic_t stopping = 0;
static void on_signal(int signal_number) {
    (void)signal_number;
    stopping = 1;
}

static void usage(void) {
    fputs("usage: consumer [--endpoint E] [--snapshot E] [--seconds S] [--until-idle S] [--drop FROM:COUNT]\n"
          "                [--heartbeat-timeout S] [--request-timeout S] [--show SYMBOL,...] [--json]\n"
          "                [--curve-server-key FILE --curve-secret-key FILE] [PREFIX...]\n"
          "A gap-free raw consumer of tickplant's plantd (docs/protocol.md). PREFIX: AAPL| is every tick of AAPL, A\n"
          "every symbol that begins with A (default: everything).\n",
          stderr);
    exit(2);
}

/* A key file as `mktctl keygen` writes it: 40 characters of Z85 and a newline. */
static void read_key(const char *option, const char *path, char key[41]) {
    FILE *file = fopen(path, "r");
    if (file == NULL) die("%s: cannot read %s: %s", option, path, strerror(errno));
    size_t length = fread(key, 1, 40, file);
    fclose(file);
    key[length] = '\0';
    uint8_t binary[32];
    if (length != 40 || zmq_z85_decode(binary, key) == NULL)
        die("%s: %s holds no CURVE key (40 characters of Z85, as mktctl keygen writes it)", option, path);
}

static double seconds_argument(const char *option, const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || value < 0) die("%s: expected seconds such as 2.5, got \"%s\"", option, text);
    return value;
}

int main(int argc, char **argv) {
    const char *endpoint = "tcp://127.0.0.1:7201", *shown = "";
    double seconds = 0, until_idle = 0;
    bool json = false;
    /* Joining from the start: live ticks wait until the first heartbeat and the snapshots after it. */
    Consumer consumer = {.snapshot_endpoint = "tcp://127.0.0.1:7202", .heartbeat_timeout = 3, .request_timeout = 5,
                         .joining = true};
    consumer.prefixes = checked(calloc((size_t)argc + 1, sizeof(char *)));
    for (int index = 1; index < argc; index++) {
        const char *argument = argv[index];
        const char *value = index + 1 < argc ? argv[index + 1] : NULL;
        if (strcmp(argument, "--json") == 0) { json = true; continue; }
        if (strncmp(argument, "--", 2) != 0) { consumer.prefixes[consumer.prefix_count++] = argv[index]; continue; }
        if (value == NULL) usage();
        index++;
        if (strcmp(argument, "--endpoint") == 0) endpoint = value;
        else if (strcmp(argument, "--snapshot") == 0) consumer.snapshot_endpoint = value;
        else if (strcmp(argument, "--seconds") == 0) seconds = seconds_argument(argument, value);
        else if (strcmp(argument, "--until-idle") == 0) until_idle = seconds_argument(argument, value);
        else if (strcmp(argument, "--heartbeat-timeout") == 0)
            consumer.heartbeat_timeout = seconds_argument(argument, value);
        else if (strcmp(argument, "--request-timeout") == 0)
            consumer.request_timeout = seconds_argument(argument, value);
        else if (strcmp(argument, "--show") == 0) shown = value;
        else if (strcmp(argument, "--curve-server-key") == 0) read_key(argument, value, consumer.curve_server_key);
        else if (strcmp(argument, "--curve-secret-key") == 0) read_key(argument, value, consumer.curve_secret_key);
        else if (strcmp(argument, "--drop") == 0) {
            if (sscanf(value, "%" SCNu64 ":%" SCNu64, &consumer.drop_from, &consumer.drop_count) != 2)
                die("--drop: expected FROM:COUNT such as 5000:200, got \"%s\"", value);
        } else usage();
    }
    if (consumer.prefix_count == 0) consumer.prefixes[consumer.prefix_count++] = "";
    if ((consumer.curve_server_key[0] == '\0') != (consumer.curve_secret_key[0] == '\0'))
        die("--curve-server-key and --curve-secret-key go together");
    if (consumer.curve_secret_key[0] != '\0' &&
        zmq_curve_public(consumer.curve_public_key, consumer.curve_secret_key) != 0)
        die("--curve-secret-key: not a CURVE secret key");
    for (int index = 0; index < consumer.prefix_count; index++) {
        const char *prefix = consumer.prefixes[index], *bar = strchr(prefix, '|');
        if ((bar != NULL && bar[1] != '\0') || prefix[0] == '#')
            die("prefix \"%s\": only whole symbols can be joined gap-free (AAPL| or a shard such as A); a "
                "subscription to one type (AAPL|T) sees a subset of the symbol's symbol_seq", prefix);
    }

    consumer.context = zmq_ctx_new();
    /* Step 1: subscribe first. The high-water marks are set, not left at ZeroMQ's 1000 (which drops silently): the
     * receive one for ticks, the send one for the subscriptions, which travel to plantd as messages. */
    consumer.sub = zmq_socket(consumer.context, ZMQ_SUB);
    secure(&consumer, consumer.sub);
    int high_water_mark = 10000000, no_limit = 0, linger = 0;
    zmq_setsockopt(consumer.sub, ZMQ_RCVHWM, &high_water_mark, sizeof high_water_mark);
    zmq_setsockopt(consumer.sub, ZMQ_SNDHWM, &no_limit, sizeof no_limit);
    zmq_setsockopt(consumer.sub, ZMQ_LINGER, &linger, sizeof linger);
    /* Connected before subscribing: subscriptions made before the connect are sent in libzmq's own order ("#HB" ahead
     * of every symbol), those made after it in the order they are made. */
    if (zmq_connect(consumer.sub, endpoint) != 0) die("cannot connect to %s: %s", endpoint, zmq_strerror(errno));
    for (int index = 0; index < consumer.prefix_count; index++)
        zmq_setsockopt(consumer.sub, ZMQ_SUBSCRIBE, consumer.prefixes[index], strlen(consumer.prefixes[index]));
    /* The heartbeat's subscription goes last: plantd takes a SUB's subscriptions in order, so the first heartbeat
     * proves that every prefix before it is live. */
    zmq_setsockopt(consumer.sub, ZMQ_SUBSCRIBE, "#HB", 3);
    new_dealer(&consumer);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double started = now_seconds(), last_line = started;
    consumer.last_message = consumer.last_tick_at = started;
    uint64_t received_at_line = 0;
    zmq_msg_t topic, payload;
    zmq_msg_init(&topic);
    zmq_msg_init(&payload);
    while (!stopping) {
        zmq_pollitem_t items[] = {{consumer.sub, 0, ZMQ_POLLIN, 0}, {consumer.dealer, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 100) < 0 && errno != EINTR) die("poll: %s", zmq_strerror(errno));
        /* A bounded batch, so that answers and heartbeats are never starved. */
        for (int batch = 0; batch < 10000 && (items[0].revents & ZMQ_POLLIN); batch++) {
            if (zmq_msg_recv(&topic, consumer.sub, ZMQ_DONTWAIT) < 0) break;
            if (!zmq_msg_more(&topic) || zmq_msg_recv(&payload, consumer.sub, 0) < 0) continue;
            on_live(&consumer, &topic, &payload);
        }
        void *dealer = consumer.dealer;
        while ((items[1].revents & ZMQ_POLLIN) && dealer == consumer.dealer) {
            if (zmq_msg_recv(&topic, dealer, ZMQ_DONTWAIT) < 0) break;
            if (!zmq_msg_more(&topic) || zmq_msg_recv(&payload, dealer, 0) < 0) continue;
            on_answer(&consumer, &topic, &payload);
        }
        double now = now_seconds();
        if (!consumer.link_stale && now - consumer.last_message > consumer.heartbeat_timeout) {
            consumer.link_stale = true;
            consumer.link_silences++;
            fprintf(stderr, "nothing from plantd for %g s: every symbol is STALE until it is back\n",
                    consumer.heartbeat_timeout);
        }
        if (consumer.asking && now - consumer.asked_at > consumer.request_timeout) {
            /* Unanswered (the plant died with it in flight): asked again, afresh. */
            consumer.requests_timed_out++;
            Request again = consumer.asked;
            consumer.asking = false;
            TickList answer = list_take(&consumer.answer);
            for (size_t index = 0; index < answer.count; index++) tick_free(answer.items[index]);
            free(answer.items);
            new_dealer(&consumer);
            ask(&consumer, again.kind, again.text, again.from);
            request_free(&again);
        }
        if (now - last_line >= 1) {
            print_summary(&consumer, (double)(consumer.received - received_at_line) / (now - last_line), json);
            char names[1024];
            snprintf(names, sizeof names, "%s", shown);
            for (char *name = strtok(names, ","); name != NULL; name = strtok(NULL, ","))
                print_show(&consumer, name, json);
            fflush(stdout);
            last_line = now;
            received_at_line = consumer.received;
        }
        bool settled = consumer.have_session && !consumer.joining && !consumer.asking && consumer.waiting_count == 0;
        if (until_idle > 0 && settled && now - consumer.last_tick_at > until_idle) break;
        if (seconds > 0 && now - started > seconds) break;
    }
    print_final(&consumer);
    fflush(stdout);
    zmq_msg_close(&topic);
    zmq_msg_close(&payload);
    zmq_close(consumer.sub);
    zmq_close(consumer.dealer);
    zmq_ctx_term(consumer.context);
    return 0;
}
