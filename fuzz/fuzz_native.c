/* libFuzzer target for the native protocol's message handler (native_on_text).
 *
 * One input is one client text message, handled by a real connection of a real
 * worker: its loop, hub and sequencer, and a configuration where chat:* may be
 * published on (plus owner, authenticated and history-less rules). The connection
 * is one end of a socketpair; everything it sends is read back from the other end,
 * decoded as WebSocket frames and checked:
 *   - every message is a JSON object with a string "type";
 *   - each input gets exactly one control reply, of the kind its type calls for,
 *     echoing its "id" (a reply to invalid JSON carries none);
 *   - error codes are those of SPEC 3; history replies are in offset order, above
 *     `since`, at most `limit`, for the channel asked;
 *   - events arrive only on subscribed channels, each channel's offsets without a
 *     gap or a duplicate, recovery included; after every input each subscribed
 *     channel has been delivered up to the sequencer's latest offset;
 *   - the connection stays open unless it is closed as a slow consumer.
 *
 * State carries over between inputs as it does on a connection: a subscription
 * made by one input is there for the next, and every other input the harness
 * publishes an event on one of the subscribed channels (every 16th on $all) before
 * the message is handled, so the event waits "in the inbox" while the message
 * subscribes, recovers or unsubscribes, and is fanned out after it. Every other
 * connection is authenticated as "alice". The sequence EEEEEEEEEEEEEEEE in an
 * input is replaced by the node's epoch (16 hex digits), so recovery with a
 * matching epoch is reachable. Subscriptions are dropped every 512 inputs and the
 * whole environment is rebuilt every 4096, which bounds memory.
 *
 * A crash found after a long run may depend on earlier inputs; most do not, and
 * the input alone reproduces them against a fresh environment. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "core/conn.h"
#include "core/err.h"
#include "core/frame.h"
#include "core/loop.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/sequencer.h"
#include "metrics.h"
#include "proto/native.h"
#include "proto/ws_transport.h"
#include "server.h"
#include "worker.h"
#include "ws/utf8.h"
#include "ws/ws_codec.h"

#define PEER_READ 65536
#define RESET_SUBS_EVERY 512
#define RESET_ALL_EVERY 4096
#define EPOCH_MARK "EEEEEEEEEEEEEEEE"

static const char config_json[] =
    "{\"history\":{\"durable\":false},"
    "\"channels\":["
    "{\"pattern\":\"user:{sub}\",\"subscribe\":\"owner\",\"publish\":\"owner\"},"
    "{\"pattern\":\"user:*\",\"subscribe\":\"deny\"},"
    "{\"pattern\":\"chat:*\",\"subscribe\":\"any\",\"publish\":\"any\",\"history\":{\"size\":20,\"ttl_s\":600}},"
    "{\"pattern\":\"members:*\",\"subscribe\":\"authenticated\",\"publish\":\"authenticated\"},"
    "{\"pattern\":\"nohist:*\",\"subscribe\":\"any\",\"publish\":\"any\",\"history\":{\"size\":0}},"
    "{\"pattern\":\"*\",\"subscribe\":\"any\"}]}";

typedef struct env {
    config_t cfg;
    server_t srv;
    worker_t w;
    conn_t *c;                 /* the connection under test, always open between inputs */
    int peer;                  /* the other end of its socketpair */
    unsigned long conns;       /* connections made: every other one is anonymous */
    unsigned long inputs;
    ws_reader_t rd;            /* decodes what c sends */
    uint8_t *rbuf;
    event_t **ev;              /* dispatched, not yet fanned out (references) */
    size_t ev_n, ev_cap;
    json_t *last;              /* model: subscribed channel -> last offset delivered */
    json_int_t last_all;       /* last $all offset delivered, -1 before the first */

    /* the input being handled */
    const uint8_t *in;
    size_t in_len;
    json_t *req;               /* the input parsed as the handler parses it, or NULL */
    json_t *reply;             /* the one control reply */
    unsigned replies;
} env_t;

/* ---- failing with the evidence ---- */

static void fail(const env_t *e, const char *why, const void *msg, size_t len)
{
    fprintf(stderr, "fuzz_native: %s\n", why);
    if (e && e->in) fprintf(stderr, "  input (%zu bytes): %.*s\n", e->in_len, (int)(e->in_len > 2000 ? 2000 : e->in_len),
                            (const char *)e->in);
    if (msg) fprintf(stderr, "  message (%zu bytes): %.*s\n", len, (int)(len > 2000 ? 2000 : len), (const char *)msg);
    abort();
}

static void check(const env_t *e, int cond, const char *why)
{
    if (!cond) fail(e, why, NULL, 0);
}

static void fail_json(const env_t *e, const char *why, const json_t *m)
{
    char *s = m ? json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fail(e, why, s, s ? strlen(s) : 0);
}

/* ---- the environment ---- */

/* The sequencer's dispatch, called with its lock held: keeps a reference for the
 * fan-out after the current input, as a worker inbox would. */
static void record_dispatch(void *ctx, struct event *ev)
{
    env_t *e = ctx;
    if (e->ev_n == e->ev_cap) {
        size_t ncap = e->ev_cap ? e->ev_cap * 2 : 16;
        event_t **a = realloc(e->ev, ncap * sizeof *a);
        check(e, a != NULL, "out of memory recording an event");
        e->ev = a;
        e->ev_cap = ncap;
    }
    e->ev[e->ev_n++] = event_ref(ev);
}

static void core_start(env_t *e)
{
    e->srv.seq = sequencer_create(&e->cfg, record_dispatch, e);
    check(e, e->srv.seq != NULL, "sequencer_create");
    e->w.hub = hub_create(e->srv.seq);
    check(e, e->w.hub != NULL, "hub_create");
}

/* What the worker does after each batch, minus the inbox: flush dirty connections,
 * bury the closed ones. */
static void flush_dirty(env_t *e)
{
    worker_t *w = &e->w;
    while (w->dirty) {
        conn_t *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->state == CONN_CLOSED) worker_bury(w, c);
        else conn_flush(c);
    }
}

static void free_graveyard(env_t *e)
{
    while (e->w.graveyard) {
        conn_t *c = e->w.graveyard;
        e->w.graveyard = c->dirty_next;
        conn_free(c);
    }
}

static void conn_open(env_t *e)
{
    int sv[2];
    check(e, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    conn_t *c = conn_create(&e->w, sv[0], NULL, 0);
    check(e, c != NULL, "conn_create");
    /* as ws_transport_upgrade leaves it, without the 101 and the heartbeat */
    c->handler = &ws_transport_handler;
    c->ws_app = &native_app;
    c->websocket = true;
    conn_become_client(c, PROTO_WS);
    ws_reader_init(&c->ws, true, e->cfg.limits.max_message_bytes);
    c->last_recv_ms = loop_now_ms(e->w.loop);
    if (++e->conns % 2 == 0) {
        c->user = strdup("alice");
        check(e, c->user != NULL, "strdup");
    }
    e->c = c;
    e->peer = sv[1];
    ws_reader_init(&e->rd, false, 0);
    json_object_clear(e->last);
    e->last_all = -1;
}

static void conn_drop(env_t *e)
{
    if (e->c) conn_close(e->c);
    e->c = NULL;
    flush_dirty(e);
    free_graveyard(e);
    if (e->peer >= 0) close(e->peer);
    e->peer = -1;
    ws_reader_deinit(&e->rd);
    json_object_clear(e->last);
}

static void drop_events(env_t *e)
{
    for (size_t i = 0; i < e->ev_n; i++) event_unref(e->ev[i]);
    e->ev_n = 0;
}

static void core_stop(env_t *e)
{
    conn_drop(e);
    drop_events(e);
    hub_destroy(e->w.hub);
    sequencer_destroy(e->srv.seq);
    e->w.hub = NULL;
    e->srv.seq = NULL;
}

static env_t *env_create(void)
{
    /* the connection writes to a socketpair whose reader may be gone */
    signal(SIGPIPE, SIG_IGN);
    env_t *e = calloc(1, sizeof *e);
    check(NULL, e != NULL, "calloc");
    check(e, config_defaults(&e->cfg) == 0, "config_defaults");
    json_error_t jerr;
    json_t *j = json_loads(config_json, 0, &jerr);
    check(e, j != NULL, "config JSON");
    config_problems_t pr = {0};
    if (config_apply_json(&e->cfg, j, &pr) != 0) {
        for (size_t i = 0; i < pr.count; i++) fprintf(stderr, "%s: %s\n", pr.items[i].path, pr.items[i].message);
        fail(e, "configuration rejected", NULL, 0);
    }
    config_problems_free(&pr);
    json_decref(j);
    e->cfg.limits.messages_per_second = 0;   /* the file cannot say "off"; the harness must */

    e->srv.cfg = &e->cfg;
    e->srv.workers = &e->w;
    e->srv.worker_count = 1;
    e->w.server = &e->srv;
    e->w.cfg = &e->cfg;
    e->w.listen_fd = -1;
    e->w.wake_fd = -1;
    pthread_mutex_init(&e->w.inbox_lock, NULL);
    e->w.loop = loop_create(NULL, NULL);
    e->w.ping_frame = frame_ws(WS_OP_PING, NULL, 0);
    e->rbuf = malloc(PEER_READ);
    e->last = json_object();
    e->peer = -1;
    check(e, e->w.loop && e->w.ping_frame && e->rbuf && e->last, "environment");
    core_start(e);
    conn_open(e);
    return e;
}

/* ---- the model ---- */

static bool is_error_code(const char *s)
{
    static const char *const codes[] = {"bad_request", "unauthorized", "forbidden", "too_many_channels",
                                        "rate_limited", "too_large", "not_found", "unavailable"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(s, codes[i]) == 0) return true;
    return false;
}

/* The offset the request asked to recover channel ch from (the handler's rules). */
static bool model_since(const json_t *req, const char *ch, json_int_t *out)
{
    json_t *v = json_object_get(json_object_get(req, "since"), ch);
    if (json_is_object(v)) v = json_object_get(v, "offset");
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = json_integer_value(v);
    return true;
}

/* The channel list a subscribe/unsubscribe named, as the reply must list it. */
static json_t *model_list(const json_t *req)
{
    json_t *one = json_object_get(req, "channel"), *many = json_object_get(req, "channels");
    return one ? json_pack("[O]", one) : json_incref(many);
}

static void on_subscribed(env_t *e, json_t *m)
{
    json_t *d = json_object_get(m, "data");
    json_t *names = json_object_get(d, "channels"), *offsets = json_object_get(d, "offsets");
    json_t *epochs = json_object_get(d, "epochs"), *recovered = json_object_get(d, "recovered");
    if (!json_is_array(names) || !json_is_object(offsets) || !json_is_object(epochs) ||
        (recovered && !json_is_object(recovered)))
        fail_json(e, "subscribed: malformed data", m);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        const char *ch = json_string_value(v);
        if (!ch) fail_json(e, "subscribed: a channel is not a string", m);
        json_t *off = json_object_get(offsets, ch);
        if (!json_is_integer(off) || json_integer_value(off) < 0) fail_json(e, "subscribed: no offset", m);
        if (!json_is_string(json_object_get(epochs, ch)) ||
            strcmp(json_string_value(json_object_get(epochs, ch)), sequencer_epoch(e->srv.seq)) != 0)
            fail_json(e, "subscribed: wrong epoch", m);
        if (json_object_get(e->last, ch)) continue;   /* was subscribed already: nothing changes */
        json_int_t base = json_integer_value(off);
        json_t *rec = json_object_get(recovered, ch);
        if (rec && !json_is_boolean(rec)) fail_json(e, "subscribed: recovered is not a boolean", m);
        if (json_is_true(rec)) {
            /* the missed events follow this reply: since+1 up to the offset */
            if (!model_since(e->req, ch, &base)) fail_json(e, "subscribed: recovered without since", m);
            if (base > json_integer_value(off)) fail_json(e, "subscribed: recovered from beyond the offset", m);
        }
        json_object_set_new(e->last, ch, json_integer(base));
    }
}

static void on_unsubscribed(env_t *e, json_t *m)
{
    json_t *names = json_object_get(json_object_get(m, "data"), "channels");
    if (!json_is_array(names)) fail_json(e, "unsubscribed: malformed data", m);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        if (!json_is_string(v)) fail_json(e, "unsubscribed: a channel is not a string", m);
        json_object_del(e->last, json_string_value(v));
    }
}

static void on_event(env_t *e, json_t *m)
{
    const char *ch = json_string_value(json_object_get(m, "channel"));
    json_t *off = json_object_get(m, "offset");
    if (!ch || !json_is_integer(off) || !json_is_string(json_object_get(m, "id")) ||
        !json_is_string(json_object_get(m, "timestamp")) || !json_object_get(m, "data"))
        fail_json(e, "event: malformed envelope", m);
    json_int_t o = json_integer_value(off);
    if (strcmp(ch, "$all") == 0) {
        if (e->last_all >= 0 && o != e->last_all + 1) fail_json(e, "event: $all offset out of sequence", m);
        e->last_all = o;
        return;
    }
    json_t *last = json_object_get(e->last, ch);
    if (!last) fail_json(e, "event: on a channel the connection is not subscribed to", m);
    if (o != json_integer_value(last) + 1) {
        char why[128];
        snprintf(why, sizeof why, "event: offset %lld after %lld (gap or duplicate)", (long long)o,
                 (long long)json_integer_value(last));
        fail_json(e, why, m);
    }
    json_integer_set(last, o);
}

/* One message from the connection, in the order it was sent. */
static void on_text_out(env_t *e, const uint8_t *data, size_t len)
{
    json_error_t jerr;
    json_t *m = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(m)) fail(e, "a message from the server is not a JSON object", data, len);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) fail(e, "a message from the server has no string \"type\"", data, len);
    if (native_is_control_name(type, strlen(type))) {
        if (strcmp(type, "connected") == 0) fail(e, "connected sent again", data, len);
        if (++e->replies > 1) fail(e, "a second reply to one message", data, len);
        e->reply = json_incref(m);
        if (strcmp(type, "subscribed") == 0) on_subscribed(e, m);
        else if (strcmp(type, "unsubscribed") == 0) on_unsubscribed(e, m);
    } else {
        on_event(e, m);
    }
    json_decref(m);
}

static int rd_message(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    env_t *e = ctx;
    if (opcode != WS_OP_TEXT) fail(e, "the server sent a binary message", NULL, 0);
    on_text_out(e, data, len);
    return 0;
}

static int rd_control(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    env_t *e = ctx;
    /* a close is checked against the connection's state afterwards; no heartbeat runs */
    if (opcode != WS_OP_CLOSE) fail(e, "the server sent a ping or pong", data, len);
    return 0;
}

static void read_peer(env_t *e)
{
    static const ws_reader_callbacks_t cb = {.on_message = rd_message, .on_control = rd_control};
    for (;;) {
        ssize_t n = read(e->peer, e->rbuf, PEER_READ);
        if (n <= 0) return;   /* EAGAIN: all read; 0: the connection closed its end */
        if (ws_reader_feed(&e->rd, e->rbuf, (size_t)n, &cb, e) < 0)
            fail(e, "the server's byte stream is not valid WebSocket frames", NULL, 0);
    }
}

/* Writes everything the connection queued, reading it at the other end meanwhile
 * so the socket buffer never stays full. */
static void drain(env_t *e)
{
    for (int round = 0; round < 100000; round++) {
        flush_dirty(e);
        read_peer(e);
        conn_t *c = e->c;
        if (c->state == CONN_CLOSED || c->out.count == 0) break;
        conn_flush(c);
    }
    check(e, e->c->state == CONN_CLOSED || e->c->out.count == 0, "the send queue never drained");
}

/* The fan-out a worker does for its inbox. */
static void fan_out(env_t *e)
{
    for (size_t i = 0; i < e->ev_n; i++) {
        event_t *ev = e->ev[i];
        if (ev->channel_len == 4 && memcmp(ev->channel, "$all", 4) == 0) hub_fanout_all(e->w.conns, ev);
        else hub_fanout(e->w.hub, ev);
        event_unref(ev);
    }
    e->ev_n = 0;
}

/* Before the message: an event on one subscribed channel (and now and then on
 * $all), left waiting until after it. */
static void publish_pending(env_t *e)
{
    publish_result_t r;
    char data[48];
    int n = snprintf(data, sizeof data, "{\"n\":%lu}", e->inputs);
    if (e->inputs % 2 == 0 && e->c->subs) {
        const sub_t *s = e->c->subs;
        int rc = sequencer_publish(e->srv.seq, hub_channel_name(s), hub_channel_name_len(s), "tick", 4, data,
                                   (size_t)n, NULL, 0, NULL, NULL, &r);
        check(e, rc == 0, "sequencer_publish");
    }
    if (e->inputs % 16 == 0) {
        int rc = sequencer_publish(e->srv.seq, "$all", 4, "beat", 4, data, (size_t)n, NULL, 0, NULL, NULL, &r);
        check(e, rc == 0, "sequencer_publish $all");
    }
}

/* ---- the reply's kind and content ---- */

static void check_id(env_t *e)
{
    json_t *qid = e->req ? json_object_get(e->req, "id") : NULL;
    json_t *rid = json_object_get(e->reply, "id");
    if (qid && !json_is_null(qid)) {
        if (!rid || !json_equal(rid, qid)) fail_json(e, "the reply does not echo the id", e->reply);
    } else if (!qid) {
        if (rid) fail_json(e, "the reply has an id the message did not have", e->reply);
    } else if (rid && !json_is_null(rid)) {
        fail_json(e, "the reply to \"id\":null has another id", e->reply);
    }
}

static void check_history(env_t *e, json_t *d)
{
    json_t *events = json_object_get(d, "events"), *latest = json_object_get(d, "offset");
    json_t *since = json_object_get(e->req, "since"), *limit = json_object_get(e->req, "limit");
    if (!json_equal(json_object_get(d, "channel"), json_object_get(e->req, "channel")))
        fail_json(e, "history: another channel", e->reply);
    if (!json_is_array(events) || !json_is_integer(latest)) fail_json(e, "history: malformed data", e->reply);
    if (!json_is_string(json_object_get(d, "epoch")) ||
        strcmp(json_string_value(json_object_get(d, "epoch")), sequencer_epoch(e->srv.seq)) != 0)
        fail_json(e, "history: wrong epoch", e->reply);
    json_int_t lim = limit ? json_integer_value(limit) : HISTORY_DEFAULT_LIMIT;
    if (lim > HISTORY_MAX_LIMIT) lim = HISTORY_MAX_LIMIT;
    if ((json_int_t)json_array_size(events) > lim) fail_json(e, "history: more events than the limit", e->reply);
    json_int_t prev = since ? json_integer_value(since) : -1, newest = -1;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        json_t *off = json_object_get(ev, "offset");
        if (!json_is_object(ev) || !json_is_integer(off) || !json_is_string(json_object_get(ev, "type")) ||
            !json_equal(json_object_get(ev, "channel"), json_object_get(e->req, "channel")))
            fail_json(e, "history: malformed event", e->reply);
        if (json_integer_value(off) <= prev) fail_json(e, "history: offsets not increasing above since", e->reply);
        prev = newest = json_integer_value(off);
    }
    if (newest > json_integer_value(latest)) fail_json(e, "history: an event beyond the channel's offset", e->reply);
    /* without since it is the last `limit` events: the newest is the latest */
    if (!since && newest >= 0 && newest != json_integer_value(latest))
        fail_json(e, "history: the newest event is missing", e->reply);
}

static void check_listed(env_t *e, json_t *d, bool subscribed)
{
    json_t *want = model_list(e->req);
    if (!json_equal(json_object_get(d, "channels"), want)) fail_json(e, "the reply lists other channels", e->reply);
    json_decref(want);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(d, "channels"), i, v) {
        if (hub_is_subscribed(e->w.hub, e->c, json_string_value(v), json_string_length(v)) != subscribed)
            fail_json(e, subscribed ? "subscribed, but not in the hub" : "unsubscribed, but still in the hub",
                      e->reply);
    }
}

static void check_reply(env_t *e)
{
    if (e->replies != 1) fail(e, "no reply", NULL, 0);
    check_id(e);
    const char *rt = json_string_value(json_object_get(e->reply, "type"));
    const char *qt = json_string_value(json_object_get(e->req, "type"));
    json_t *d = json_object_get(e->reply, "data");
    if (strcmp(rt, "error") == 0) {
        const char *code = json_string_value(json_object_get(d, "code"));
        if (!code || !is_error_code(code) || !json_is_string(json_object_get(d, "message")))
            fail_json(e, "error: malformed data", e->reply);
        if (json_object_get(d, "channel") && !json_is_string(json_object_get(d, "channel")))
            fail_json(e, "error: channel is not a string", e->reply);
        bool known = qt && (strcmp(qt, "subscribe") == 0 || strcmp(qt, "publish") == 0 || strcmp(qt, "history") == 0 ||
                            strcmp(qt, "unsubscribe") == 0);
        if (!known && strcmp(code, "bad_request") != 0) fail_json(e, "error: not bad_request", e->reply);
        return;
    }
    if (!qt) fail_json(e, "a message without a type was not refused", e->reply);
    if (strcmp(qt, "ping") == 0 && strcmp(rt, "pong") == 0) {
        if (!json_is_string(json_object_get(e->reply, "timestamp"))) fail_json(e, "pong: no timestamp", e->reply);
    } else if (strcmp(qt, "subscribe") == 0 && strcmp(rt, "subscribed") == 0) {
        check_listed(e, d, true);
    } else if (strcmp(qt, "unsubscribe") == 0 && strcmp(rt, "unsubscribed") == 0) {
        check_listed(e, d, false);
    } else if (strcmp(qt, "publish") == 0 && strcmp(rt, "published") == 0) {
        json_t *off = json_object_get(d, "offset"), *id = json_object_get(d, "id");
        if (!json_equal(json_object_get(d, "channel"), json_object_get(e->req, "channel")) ||
            !json_is_integer(off) || json_integer_value(off) < 1 || !json_is_string(id) ||
            json_string_length(id) != 36)
            fail_json(e, "published: malformed data", e->reply);
    } else if (strcmp(qt, "history") == 0 && strcmp(rt, "history") == 0) {
        check_history(e, d);
    } else {
        fail_json(e, "a reply of the wrong kind", e->reply);
    }
}

/* After the message and the fan-out: the model and the hub agree, and every
 * subscribed channel was delivered up to its latest offset. */
static void check_state(env_t *e)
{
    conn_t *c = e->c;
    check(e, c->sub_count <= e->cfg.limits.max_channels_per_connection, "over max_channels_per_connection");
    check(e, c->sub_count == json_object_size(e->last), "the hub and the replies disagree on the subscriptions");
    const char *ch;
    json_t *v;
    json_object_foreach(e->last, ch, v) {
        size_t len = strlen(ch);
        if (!hub_is_subscribed(e->w.hub, c, ch, len)) fail(e, "a subscription the hub does not have", ch, len);
        if ((uint64_t)json_integer_value(v) != sequencer_latest(e->srv.seq, ch, len))
            fail(e, "a subscribed channel was not delivered up to its latest offset", ch, len);
    }
}

/* ---- the input ---- */

static void replace_epoch_marks(env_t *e, char *buf, size_t len)
{
    const char *epoch = sequencer_epoch(e->srv.seq);
    size_t k = strlen(EPOCH_MARK);
    if (strlen(epoch) != k) return;
    for (char *p = buf; (p = memmem(p, len - (size_t)(p - buf), EPOCH_MARK, k)) != NULL; p += k) memcpy(p, epoch, k);
}

static void handle(env_t *e, const uint8_t *data, size_t size)
{
    /* an exact-size copy: reading past the message is caught */
    char *buf = malloc(size ? size : 1);
    check(e, buf != NULL, "malloc");
    memcpy(buf, data, size);
    replace_epoch_marks(e, buf, size);
    e->in = (const uint8_t *)buf;
    e->in_len = size;
    json_error_t jerr;
    e->req = json_loadb(buf, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(e->req)) {
        json_decref(e->req);
        e->req = NULL;
    }
    e->reply = NULL;
    e->replies = 0;

    native_on_text(e->c, buf, size);
    fan_out(e);
    drain(e);

    conn_t *c = e->c;
    if (c->state != CONN_CLOSED && !c->ws_close_sent) {
        check_reply(e);
        check_state(e);
    } else if (c->close_code != WS_CLOSE_SLOW_CONSUMER) {
        fail(e, "the connection was closed, not as a slow consumer", NULL, 0);
    }
    json_decref(e->req);
    json_decref(e->reply);
    e->req = e->reply = NULL;
    e->in = NULL;
    free(buf);
    if (c->state == CONN_CLOSED || c->ws_close_sent) {
        conn_drop(e);
        conn_open(e);
    }
    free_graveyard(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer gives no context argument: the environment lives behind this one
     * pointer for the whole run, reachable for the leak checker */
    static env_t *env;
    /* the transport hands the application only complete, valid UTF-8 text */
    if (!utf8_valid(data, size)) return 0;
    if (!env) env = env_create();
    env_t *e = env;
    e->inputs++;
    if (e->inputs % RESET_ALL_EVERY == 0) {
        core_stop(e);
        core_start(e);
        conn_open(e);
    } else if (e->inputs % RESET_SUBS_EVERY == 0) {
        hub_unsubscribe_all(e->w.hub, e->c);
        json_object_clear(e->last);
    }
    publish_pending(e);
    handle(e, data, size);
    return 0;
}
