#include "chain/evm.h"
#include "auth/policy.h"
#include "chain/abi.h"
#include "chain/sources.h"
#include "core/err.h"
#include "http/url.h"
#include "log.h"
#include "ws/ws_client.h"
#include "ws/ws_codec.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RPC_TIMEOUT_MS 30000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define HEALTHY_SESSION_MS 10000   /* a session this long resets the backoff */
#define QUEUE_MAX 100000           /* notifications held while a reply is awaited */

typedef struct evm_runtime {
    source_t *src;
    pthread_t thread;
    bool started;
    ws_client_t *ws;
    uint64_t next_id;
    json_t *queue;             /* notifications that arrived while waiting for a reply */
    json_t *pending;           /* logs waiting for confirmations, in (block, index) order */
    char sub_logs[80], sub_heads[80];
    uint64_t chain_id;
    uint64_t head;
} evm_runtime_t;

static volatile sig_atomic_t *stop_flag(evm_runtime_t *rt) { return &rt->src->all->stop; }

/* ---- JSON-RPC ---- */

static uint64_t hex_u64(json_t *v, bool *ok)
{
    const char *s = json_string_value(v);
    if (!s || strncmp(s, "0x", 2) != 0 || !s[2] || strlen(s) > 18) {
        *ok = false;
        return 0;
    }
    char *end;
    uint64_t n = strtoull(s + 2, &end, 16);
    if (*end) *ok = false;
    return n;
}

/* Sends a request and waits for its reply, queueing notifications meanwhile.
 * params is JSON text. On success *result is a new reference. */
static int rpc(evm_runtime_t *rt, const char *method, const char *params, json_t **result)
{
    uint64_t id = ++rt->next_id;
    buf_t b = {0};
    int rc = buf_printf(&b, "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"%s\",\"params\":%s}", id, method,
                        params);
    if (rc == 0) rc = ws_client_send_text(rt->ws, b.data, b.len);
    buf_free(&b);
    if (rc < 0) return rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= RPC_TIMEOUT_MS) {
            log_msg(LOG_WARN, "evm source: no answer", "source", rt->src->name, "method", method, NULL);
            return HERALD_EAGAIN;
        }
        ws_client_msg_t m;
        rc = ws_client_recv(rt->ws, (int)(RPC_TIMEOUT_MS - spent), &m);
        if (rc == HERALD_EAGAIN) continue;
        if (rc < 0) return rc;
        if (m.opcode != WS_OP_TEXT) return HERALD_ECLOSED;   /* the node closed */
        json_t *j = json_loadb(m.data, m.len, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            continue;
        }
        json_t *jid = json_object_get(j, "id");
        if (json_is_integer(jid) && (uint64_t)json_integer_value(jid) == id) {
            json_t *err = json_object_get(j, "error");
            if (err) {
                const char *msg = json_string_value(json_object_get(err, "message"));
                log_msg(LOG_WARN, "evm source: the node refused a request", "source", rt->src->name, "method", method,
                        "error", msg ? msg : "?", NULL);
                json_decref(j);
                return HERALD_EPROTO;
            }
            *result = json_incref(json_object_get(j, "result"));
            json_decref(j);
            return *result ? 0 : HERALD_EPROTO;
        }
        const char *meth = json_string_value(json_object_get(j, "method"));
        if (meth && strcmp(meth, "eth_subscription") == 0 && json_array_size(rt->queue) < QUEUE_MAX)
            json_array_append(rt->queue, j);
        json_decref(j);   /* replies to requests given up on are dropped */
    }
}

/* ---- logs ---- */

typedef struct log_fields {
    const char *address, *block_hash, *tx_hash, *data;
    uint64_t block, index;
    bool removed;
    const char *topics[5];
    size_t topic_count;
} log_fields_t;

static bool read_log(json_t *log, log_fields_t *f)
{
    bool ok = json_is_object(log);
    memset(f, 0, sizeof *f);
    if (!ok) return false;
    f->address = json_string_value(json_object_get(log, "address"));
    f->block_hash = json_string_value(json_object_get(log, "blockHash"));
    f->tx_hash = json_string_value(json_object_get(log, "transactionHash"));
    f->data = json_string_value(json_object_get(log, "data"));
    f->block = hex_u64(json_object_get(log, "blockNumber"), &ok);
    f->index = hex_u64(json_object_get(log, "logIndex"), &ok);
    f->removed = json_is_true(json_object_get(log, "removed"));
    json_t *topics = json_object_get(log, "topics");
    if (!json_is_array(topics) || json_array_size(topics) == 0 || json_array_size(topics) > 4) return false;
    for (size_t i = 0; i < json_array_size(topics); i++)
        if (!(f->topics[f->topic_count++] = json_string_value(json_array_get(topics, i)))) ok = false;
    return ok && f->address && f->block_hash && f->tx_hash && f->data;
}

static const evm_event_cfg_t *event_for(const source_t *src, const char *topic0)
{
    for (size_t i = 0; i < src->event_count; i++)
        if (strcasecmp(src->events[i].abi->topic0_hex, topic0) == 0) return &src->events[i];
    return NULL;
}

static char *lower(const char *s)
{
    char *o = strdup(s);
    for (char *p = o; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return o;
}

/* Decodes and publishes one log (or its retraction). 0 when published or skipped
 * for good (undecodable: counted), < 0 when publishing failed (retry later). */
static int publish_log(evm_runtime_t *rt, const evm_event_cfg_t *ec, const log_fields_t *f, const char *key)
{
    source_t *src = rt->src;
    char why[256];
    json_t *args = abi_decode_log(ec->abi, f->topics, f->topic_count, f->data, why, sizeof why);
    if (!args) {
        atomic_fetch_add(&src->count.skipped, 1);
        log_msg(LOG_WARN, "evm source: undecodable log skipped", "source", src->name, "key", key, "error", why, NULL);
        return 0;
    }
    char *bh = lower(f->block_hash), *tx = lower(f->tx_hash);
    json_object_set_new(args, "_chain",
                        json_pack("{ss sI ss sI ss ss sI sb}", "source", src->name, "chain_id", (json_int_t)rt->chain_id,
                                  "address", src->address, "block_number", (json_int_t)f->block, "block_hash",
                                  bh ? bh : f->block_hash, "tx_hash", tx ? tx : f->tx_hash, "log_index",
                                  (json_int_t)f->index, "removed", f->removed));
    free(bh), free(tx);
    char *channel = sources_fill(ec->channel, args);
    char *name = sources_fill(ec->event, args);
    if (name && f->removed) {
        char *r = sources_removed_name(src, name);
        free(name);
        name = r;
    }
    char *data = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    int rc = 0;
    if (!channel || !name || !channel_name_valid(channel, strlen(channel)) || !sources_event_name_ok(name)) {
        atomic_fetch_add(&src->count.skipped, 1);
        log_msg(LOG_WARN, "evm source: the event's channel or name is not usable", "source", src->name, "channel",
                channel ? channel : "(template)", "event", name ? name : "(template)", NULL);
    } else if (!data) {
        rc = HERALD_ENOMEM;
    } else if (*stop_flag(rt)) {
        rc = HERALD_ESTOP;   /* shutting down: not published, so not marked; the next start takes it up */
    } else {
        char idem[400];
        snprintf(idem, sizeof idem, "evm:%s:%s%s", src->name, key, f->removed ? ":removed" : "");
        rc = sources_publish_wait(src->all, channel, name, data, idem);
        if (rc == 0) {
            sources_mark(src->all, src, key, f->removed ? SEEN_REMOVED : SEEN_APPLIED, f->block);
            atomic_fetch_add(f->removed ? &src->count.removed : &src->count.events, 1);
        } else if (rc != HERALD_ESTOP) {
            log_msg(LOG_WARN, "evm source: publish failed; retried after reconnecting", "source", src->name,
                    "error", err_str(rc), NULL);
        }
    }
    free(channel), free(name), free(data);
    return rc;
}

/* The last processed block: below the oldest log still waiting for confirmations. */
static void advance_cursor(evm_runtime_t *rt, uint64_t block)
{
    source_t *src = rt->src;
    if (json_array_size(rt->pending) > 0) {
        log_fields_t f;
        if (read_log(json_array_get(rt->pending, 0), &f) && f.block > 0 && f.block - 1 < block) block = f.block - 1;
    }
    long long cur = atomic_load(&src->count.block);
    if ((long long)block > cur) sources_set_cursor(src->all, src, block);
}

static void pending_insert(evm_runtime_t *rt, json_t *log, const log_fields_t *f)
{
    size_t i = json_array_size(rt->pending);
    while (i > 0) {
        log_fields_t g;
        if (!read_log(json_array_get(rt->pending, i - 1), &g)) break;
        if (g.block < f->block || (g.block == f->block && g.index < f->index)) break;
        if (g.block == f->block && g.index == f->index) return;   /* already waiting */
        i--;
    }
    json_array_insert(rt->pending, i, log);
}

static int process_log(evm_runtime_t *rt, json_t *log)
{
    source_t *src = rt->src;
    log_fields_t f;
    if (!read_log(log, &f) || strcasecmp(f.address, src->address) != 0) {
        atomic_fetch_add(&src->count.skipped, 1);
        return 0;
    }
    const evm_event_cfg_t *ec = event_for(src, f.topics[0]);
    if (!ec) return 0;   /* another event of the contract */
    char key[200];
    snprintf(key, sizeof key, "%.80s:%" PRIu64, f.block_hash, f.index);
    for (char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (f.removed) {
        /* waiting for confirmations: it simply never happened */
        for (size_t i = 0; i < json_array_size(rt->pending); i++) {
            log_fields_t g;
            if (read_log(json_array_get(rt->pending, i), &g) && strcasecmp(g.block_hash, f.block_hash) == 0 &&
                g.index == f.index) {
                json_array_remove(rt->pending, i);
                return 0;
            }
        }
        if (sources_seen(src->all, src, key) != SEEN_APPLIED) return 0;
        return publish_log(rt, ec, &f, key);
    }
    if (sources_seen(src->all, src, key) != SEEN_NONE) {
        atomic_fetch_add(&src->count.duplicates, 1);
        return 0;
    }
    if (src->confirmations && f.block + src->confirmations > rt->head) {
        pending_insert(rt, log, &f);
        return 0;
    }
    int rc = publish_log(rt, ec, &f, key);
    if (rc == 0) advance_cursor(rt, f.block);
    return rc;
}

/* Publishes the logs that now have their confirmations. */
static int release_confirmed(evm_runtime_t *rt)
{
    while (json_array_size(rt->pending) > 0) {
        json_t *log = json_incref(json_array_get(rt->pending, 0));
        log_fields_t f;
        if (read_log(log, &f) && f.block + rt->src->confirmations > rt->head) {
            json_decref(log);
            break;
        }
        json_array_remove(rt->pending, 0);
        int rc = process_log(rt, log);
        json_decref(log);
        if (rc < 0) return rc;
    }
    if (rt->head >= rt->src->confirmations) advance_cursor(rt, rt->head - rt->src->confirmations);
    return 0;
}

/* eth_getLogs results in (block, index) order. */
static int by_position(const void *a, const void *b)
{
    log_fields_t x, y;
    bool okx = read_log(*(json_t *const *)a, &x), oky = read_log(*(json_t *const *)b, &y);
    if (!okx || !oky) return okx - oky;
    if (x.block != y.block) return x.block < y.block ? -1 : 1;
    return x.index < y.index ? -1 : x.index > y.index;
}

static int topics_filter(const source_t *src, buf_t *b)
{
    int rc = buf_printf(b, "\"address\":\"%s\",\"topics\":[[", src->address);
    for (size_t i = 0; i < src->event_count; i++)
        rc |= buf_printf(b, "%s\"%s\"", i ? "," : "", src->events[i].abi->topic0_hex);
    rc |= buf_append_str(b, "]]");
    return rc;
}

/* From the cursor (or start_block) to the head, in chunks. */
static int backfill(evm_runtime_t *rt)
{
    source_t *src = rt->src;
    int64_t cur = sources_cursor(src->all, src);
    uint64_t from;
    if (cur >= 0) {
        from = (uint64_t)cur;   /* the cursor block itself again: the dedupe absorbs repeats */
    } else if (src->start_block && strcmp(src->start_block, "latest") == 0) {
        sources_set_cursor(src->all, src, rt->head);   /* from now on */
        return 0;
    } else {
        from = src->start_block ? 0 : src->start_number;
    }
    uint64_t range = src->backfill_max_range ? src->backfill_max_range : 2000;
    for (uint64_t b = from; b <= rt->head && !*stop_flag(rt); b += range) {
        uint64_t to = b + range - 1 > rt->head ? rt->head : b + range - 1;
        buf_t p = {0};
        int rc = buf_append_str(&p, "[{");
        rc |= topics_filter(src, &p);
        rc |= buf_printf(&p, ",\"fromBlock\":\"0x%" PRIx64 "\",\"toBlock\":\"0x%" PRIx64 "\"}]", b, to);
        json_t *logs = NULL;
        if (rc == 0) rc = rpc(rt, "eth_getLogs", p.data, &logs);
        buf_free(&p);
        if (rc < 0) return rc;
        if (!json_is_array(logs)) {
            json_decref(logs);
            return HERALD_EPROTO;
        }
        size_t n = json_array_size(logs);
        json_t **sorted = malloc((n + 1) * sizeof *sorted);
        if (!sorted) {
            json_decref(logs);
            return HERALD_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) sorted[i] = json_array_get(logs, i);
        qsort(sorted, n, sizeof *sorted, by_position);
        for (size_t i = 0; i < n && rc == 0; i++) rc = process_log(rt, sorted[i]);
        free(sorted);
        json_decref(logs);
        if (rc < 0) return rc;
        advance_cursor(rt, to);   /* held below the oldest log still waiting for confirmations */
    }
    return 0;
}

static int handle_notification(evm_runtime_t *rt, json_t *j)
{
    json_t *params = json_object_get(j, "params");
    const char *sub = json_string_value(json_object_get(params, "subscription"));
    json_t *result = json_object_get(params, "result");
    if (!sub) return 0;
    if (strcmp(sub, rt->sub_logs) == 0) return process_log(rt, result);
    if (rt->sub_heads[0] && strcmp(sub, rt->sub_heads) == 0) {
        bool ok = true;
        uint64_t n = hex_u64(json_object_get(result, "number"), &ok);
        if (ok && n > rt->head) rt->head = n;
        return release_confirmed(rt);
    }
    return 0;
}

static int drain_queue(evm_runtime_t *rt)
{
    while (json_array_size(rt->queue) > 0) {
        json_t *j = json_incref(json_array_get(rt->queue, 0));
        json_array_remove(rt->queue, 0);
        int rc = handle_notification(rt, j);
        json_decref(j);
        if (rc < 0) return rc;
    }
    return 0;
}

static int subscribe(evm_runtime_t *rt, const char *params, char *id_out, size_t id_len)
{
    json_t *r = NULL;
    int rc = rpc(rt, "eth_subscribe", params, &r);
    if (rc == 0 && json_is_string(r)) snprintf(id_out, id_len, "%s", json_string_value(r));
    else if (rc == 0) rc = HERALD_EPROTO;
    json_decref(r);
    return rc;
}

/* One connection, from connect to its end. Returns < 0 when it ended. */
static int session(evm_runtime_t *rt)
{
    source_t *src = rt->src;
    url_t u;
    char err[256];
    if (url_parse(src->url, &u) < 0) {
        log_msg(LOG_ERROR, "evm source: bad url", "source", src->name, NULL);
        return HERALD_EINVAL;
    }
    /* wss: verified against the system's CAs, or HERALD_CA_FILE (a private node's CA) */
    ws_client_options_t opt = {.timeout_ms = 10000, .max_message_bytes = 256u << 20, .stop = stop_flag(rt),
                               .ca_file = getenv("HERALD_CA_FILE")};
    int rc = ws_client_connect(&u, &opt, &rt->ws, err, sizeof err);
    if (rc < 0) {
        log_msg(LOG_DEBUG, "evm source: cannot connect", "source", src->name, "error", err, NULL);
        return rc;
    }
    json_array_clear(rt->queue);
    json_array_clear(rt->pending);   /* the backfill finds them again */
    rt->sub_logs[0] = rt->sub_heads[0] = '\0';
    json_t *r = NULL;
    bool ok = true;
    if ((rc = rpc(rt, "eth_chainId", "[]", &r)) == 0) rt->chain_id = hex_u64(r, &ok);
    json_decref(r);
    r = NULL;
    buf_t p = {0};
    if (rc == 0) {
        rc = buf_append_str(&p, "[\"logs\",{") | topics_filter(src, &p) | buf_append_str(&p, "}]");
        if (rc == 0) rc = subscribe(rt, p.data, rt->sub_logs, sizeof rt->sub_logs);
    }
    buf_free(&p);
    if (rc == 0 && src->confirmations) rc = subscribe(rt, "[\"newHeads\"]", rt->sub_heads, sizeof rt->sub_heads);
    if (rc == 0 && (rc = rpc(rt, "eth_blockNumber", "[]", &r)) == 0) rt->head = hex_u64(r, &ok);
    json_decref(r);
    if (rc == 0 && !ok) rc = HERALD_EPROTO;
    if (rc == 0) {
        atomic_store(&src->count.connected, true);
        /* the endpoint only: providers put API keys in the path or query */
        char endpoint[URL_MAX_HOST + 24];
        snprintf(endpoint, sizeof endpoint, "%s://%s%s%s:%u", u.tls ? "wss" : "ws", u.ipv6 ? "[" : "", u.host,
                 u.ipv6 ? "]" : "", (unsigned)u.port);
        log_msg(LOG_INFO, "evm source connected", "source", src->name, "endpoint", endpoint, NULL);
        rc = backfill(rt);
    }
    while (rc == 0 && !*stop_flag(rt)) {
        if ((rc = drain_queue(rt)) < 0) break;
        ws_client_msg_t m;
        rc = ws_client_recv(rt->ws, 1000, &m);
        if (rc == HERALD_EAGAIN) {
            rc = 0;
            continue;
        }
        if (rc < 0) break;
        if (m.opcode != WS_OP_TEXT) {
            rc = HERALD_ECLOSED;
            break;
        }
        json_t *j = json_loadb(m.data, m.len, 0, NULL);
        const char *meth = json_string_value(json_object_get(j, "method"));
        if (meth && strcmp(meth, "eth_subscription") == 0) rc = handle_notification(rt, j);
        json_decref(j);
    }
    atomic_store(&src->count.connected, false);
    if (rc < 0 && rc != HERALD_ESTOP && !*stop_flag(rt)) {
        atomic_fetch_add(&src->count.errors, 1);
        log_msg(LOG_WARN, "evm source disconnected", "source", src->name, "error", err_str(rc), NULL);
    }
    ws_client_destroy(rt->ws);
    rt->ws = NULL;
    return rc;
}

static void sleep_interruptibly(evm_runtime_t *rt, unsigned ms)
{
    for (unsigned slept = 0; slept < ms && !*stop_flag(rt); slept += 100) {
        struct timespec ts = {0, (long)(ms - slept < 100 ? ms - slept : 100) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *run(void *arg)
{
    evm_runtime_t *rt = arg;
    unsigned backoff = 0;
    while (!*stop_flag(rt)) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        session(rt);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (*stop_flag(rt)) break;
        long lasted = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (lasted >= HEALTHY_SESSION_MS) backoff = 0;
        backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
        if (backoff > BACKOFF_MAX_MS) backoff = BACKOFF_MAX_MS;
        /* jitter: sources (and nodes) restarted together do not retry in step */
        sleep_interruptibly(rt, backoff / 2 + (unsigned)(rand_u64() % (backoff / 2 + 1)));
    }
    return NULL;
}

int evm_start(source_t *src)
{
    evm_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt) return HERALD_ENOMEM;
    rt->src = src;
    rt->queue = json_array();
    rt->pending = json_array();
    src->rt = rt;
    if (!rt->queue || !rt->pending || pthread_create(&rt->thread, NULL, run, rt) != 0) return HERALD_EIO;
    rt->started = true;
    return 0;
}

void evm_stop(source_t *src)
{
    evm_runtime_t *rt = src->rt;
    if (!rt) return;
    if (rt->started) pthread_join(rt->thread, NULL);
    json_decref(rt->queue);
    json_decref(rt->pending);
    free(rt);
    src->rt = NULL;
}
