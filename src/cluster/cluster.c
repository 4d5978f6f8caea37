#include "cluster/cluster.h"
#include "cluster/redis_io.h"
#include "cluster/wire.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/waiter.h"
#include "core/strmap.h"
#include "hub/event.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000
#define HEARTBEAT_MS 1000
#define NODE_STALE_MS 5000         /* a node silent this long is left out of cluster stats */
#define NODE_FORGET_MS 3600000     /* ... and forgotten after an hour */
#define DISCONNECT_WAIT_MS 1000
#define STOP_WAIT_MS 2000

/* KEYS: offsets hash, history list, seq counter, idempotency key.
 * ARGV: channel, record tail, history size, history ttl_s, pub/sub channel,
 *       idempotency ttl_s ('' without a key), event id. */
static const char PUBLISH_LUA[] =
    "if ARGV[6] ~= '' then\n"
    "  local d = redis.call('GET', KEYS[4])\n"
    "  if d then return {0, d} end\n"
    "end\n"
    "local off = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)\n"
    "local seq = redis.call('INCR', KEYS[3])\n"
    "local rec = off .. ' ' .. seq .. ' ' .. ARGV[2]\n"
    "local size = tonumber(ARGV[3])\n"
    "if size > 0 then\n"
    "  redis.call('RPUSH', KEYS[2], rec)\n"
    "  redis.call('LTRIM', KEYS[2], -size, -1)\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[5], rec)\n"
    "if ARGV[6] ~= '' then redis.call('SET', KEYS[4], off .. ' ' .. ARGV[7], 'EX', ARGV[6]) end\n"
    "return {1, off, seq}\n";

/* KEYS: offsets hash, history list. ARGV: channel, the offset this node has seen.
 * An offset below what a node saw means Redis lost writes (a restart without its
 * last appends): it is raised again so offsets never repeat. */
static const char READ_LUA[] =
    "local off = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
    "local known = tonumber(ARGV[2])\n"
    "if off < known then redis.call('HSET', KEYS[1], ARGV[1], known); off = known end\n"
    "return {off, redis.call('LRANGE', KEYS[2], 0, -1)}\n";

static const char TAKE_LUA[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then redis.call('DEL', KEYS[1]) end\n"
    "return v\n";

/* KEYS: tokens hash, version, change log (zset id -> version of its last change).
 * ARGV[1]: the version this node last merged (0: none), then id, row pairs, a row
 * being "0" (live) or "1" (revoked) followed by its JSON. A row unknown to Redis
 * is added; a revocation replaces a live row, never the reverse; each change is
 * logged under one new version. Answers the version and the rows changed since
 * the node's (all of them for a node new to this Redis, or when Redis went back:
 * it lost data). */
static const char TOKENS_LUA[] =
    "local ver = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local seen = tonumber(ARGV[1])\n"
    "local changed = {}\n"
    "for i = 2, #ARGV, 2 do\n"
    "  local cur = redis.call('HGET', KEYS[1], ARGV[i])\n"
    "  if not cur or (string.sub(ARGV[i + 1], 1, 1) == '1' and string.sub(cur, 1, 1) == '0') then\n"
    "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); changed[#changed + 1] = ARGV[i]\n"
    "  end\n"
    "end\n"
    "local full = seen == 0 or seen > ver\n"
    "if #changed > 0 or ver == 0 then\n"
    "  ver = redis.call('INCR', KEYS[2])\n"
    "  for _, id in ipairs(changed) do redis.call('ZADD', KEYS[3], ver, id) end\n"
    "end\n"
    "if full then return {tostring(ver), redis.call('HVALS', KEYS[1])} end\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. seen, '+inf')\n"
    "local rows = {}\n"
    "for i = 1, #ids, 500 do\n"
    "  local part = redis.call('HMGET', KEYS[1], unpack(ids, i, math.min(i + 499, #ids)))\n"
    "  for _, v in ipairs(part) do if v then rows[#rows + 1] = v end end\n"
    "end\n"
    "return {tostring(ver), rows}\n";

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_SETUP, LINK_READY };
enum sub_state { SUB_NONE, SUB_SUBSCRIBING, SUB_SUBSCRIBED, SUB_UNSUBSCRIBING };
enum req_kind { REQ_PUBLISH, REQ_WANT, REQ_DISCONNECT, REQ_ANSWER, REQ_STATS, REQ_SAVE, REQ_TAKE, REQ_STOP };

typedef struct cluster cluster_t;

typedef struct link {
    cluster_t *cl;
    const char *name;          /* "commands" or "pub/sub", for logs */
    bool is_sub;
    redis_io_t rio;
    redisAsyncContext *ac;
    int state;
    bool setup_failed;
    unsigned backoff_ms;
    loop_timer_t timer;        /* reconnect after backoff, or give up connecting */
} link_t;

typedef struct req {
    struct req *next;
    int kind;
    uint64_t known;            /* WANT: the offset the node has seen */
    bool want;
    int by;                    /* DISCONNECT */
    uint32_t keep, ttl_s, idem_ttl_s;   /* PUBLISH */
    long count;                /* ANSWER */
    void *fn;                  /* done callback */
    void *arg;
    waiter_t *waiter;          /* TAKE */
    char id[UUID_STR_LEN];
    buf_t tail;                /* PUBLISH: record tail; SAVE: blob; ANSWER: reply channel */
    size_t name_len, key_len;
    char *key;                 /* PUBLISH: idempotency key; TAKE/SAVE: pid; inside name */
    char name[];               /* channel (PUBLISH, WANT), who (DISCONNECT), pid (SAVE, TAKE) */
} req_t;

typedef struct rchan {
    strmap_node_t node;
    bool want, need_sync, reading;
    int sub;                   /* enum sub_state */
    uint64_t known;
    size_t len;
    char name[];
} rchan_t;

typedef struct pending_dc {
    struct pending_dc *next;
    uint64_t id;
    long expected, answered, total;
    uint64_t deadline_ms;
    cluster_count_fn done;
    void *arg;
} pending_dc_t;

struct cluster {
    const config_t *cfg;
    cluster_hooks_t hooks;
    redis_url_t url;
    char node_id[65];
    char *prefix;
    size_t prefix_len;
    char sha_publish[41], sha_read[41];

    pthread_t thread;
    bool started;
    loop_t *loop;
    int wake_fd;
    loop_io_t wake_io;
    loop_timer_t beat;
    loop_timer_t stop_timer;

    pthread_mutex_t qlock;
    req_t *qhead, *qtail;
    bool closed;               /* no more requests accepted */

    link_t cmd, sub;
    atomic_bool up;
    pthread_mutex_t why_lock;
    char why[160];
    char epoch[64];
    bool warned;
    bool stopping;

    /* access tokens shared through P:tokens (engine thread only) */
    bool tok_busy;             /* a GET or merge is awaiting its reply */
    int64_t tok_fp;            /* the local table's fingerprint when the last merge exported */
    uint64_t tok_ver;          /* P:tokens:ver after the last merge; 0: merge everything */
    int64_t tok_export_ms;     /* wall time of the last merge's export (the next sends what changed since) */
    int64_t tok_sent_ms;       /* ... of the merge awaiting its reply */

    strmap_t chans;            /* rchan_t, engine thread only */
    pending_dc_t *dcs;
    uint64_t next_dc;
};

/* ---- small helpers ---- */

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void set_why(cluster_t *c, const char *fmt, ...)
{
    pthread_mutex_lock(&c->why_lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&c->why_lock);
}

/* P:<part><name> into b (reset first). */
static int key(cluster_t *c, buf_t *b, const char *part, const char *name, size_t len)
{
    b->len = 0;
    int rc = buf_append(b, c->prefix, c->prefix_len);
    rc |= buf_append_str(b, part);
    rc |= buf_append(b, name, len);
    return rc;
}

static void req_free(req_t *r)
{
    buf_free(&r->tail);
    free(r);
}

static req_t *req_new(int kind, const char *name, size_t len, const char *key2, size_t len2)
{
    req_t *r = calloc(1, sizeof *r + len + len2 + 2);
    if (!r) return NULL;
    r->kind = kind;
    if (name) memcpy(r->name, name, len);
    r->name_len = len;
    r->key = r->name + len + 1;
    if (key2) memcpy(r->key, key2, len2);
    r->key_len = len2;
    return r;
}

/* Any thread. Takes r. */
static int enqueue(cluster_t *c, req_t *r)
{
    pthread_mutex_lock(&c->qlock);
    if (c->closed) {
        pthread_mutex_unlock(&c->qlock);
        return HERALD_EUNAVAIL;
    }
    bool was_empty = !c->qhead;
    if (c->qtail) c->qtail->next = r;
    else c->qhead = r;
    c->qtail = r;
    pthread_mutex_unlock(&c->qlock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(c->wake_fd, &one, sizeof one);
        (void)w;
    }
    return 0;
}

static bool link_ready(const link_t *l) { return l->state == LINK_READY && l->ac; }

/* ---- channels: the Redis subscription state machine ---- */

static void chan_reply(redisAsyncContext *ac, void *r, void *priv);
static void update_up(cluster_t *c);
static void on_read(redisAsyncContext *ac, void *r, void *priv);

static rchan_t *chan_get(cluster_t *c, const char *name, size_t len, bool create)
{
    rchan_t *rc = (rchan_t *)strmap_get(&c->chans, name, len);
    if (rc || !create) return rc;
    rc = calloc(1, sizeof *rc + len + 1);
    if (!rc) return NULL;
    memcpy(rc->name, name, len);
    rc->len = len;
    rc->node.key = rc->name;
    rc->node.key_len = len;
    if (strmap_insert(&c->chans, &rc->node) < 0) {
        free(rc);
        return NULL;
    }
    return rc;
}

static void send_read(cluster_t *c, rchan_t *rc)
{
    buf_t hk = {0};
    char known[24];
    snprintf(known, sizeof known, "%llu", (unsigned long long)rc->known);
    if (key(c, &hk, ":h:", rc->name, rc->len) < 0) {
        buf_free(&hk);
        return;
    }
    char offsets[128];
    snprintf(offsets, sizeof offsets, "%s:offsets", c->prefix);
    const char *argv[] = {"EVALSHA", c->sha_read, "2", offsets, hk.data, rc->name, known};
    size_t lens[] = {7, 40, 1, strlen(offsets), hk.len, rc->len, strlen(known)};
    /* privdata: a copy of the name (the channel's record may go meanwhile) */
    char *name = strndup(rc->name, rc->len);
    if (name && redisAsyncCommandArgv(c->cmd.ac, on_read, name, 7, argv, lens) == REDIS_OK) {
        rc->reading = true;
        rc->need_sync = false;
    } else {
        free(name);
    }
    buf_free(&hk);
}

/* Moves a channel one step towards what is wanted, when the last step is answered. */
static void reconcile(cluster_t *c, rchan_t *rc)
{
    if (link_ready(&c->sub)) {
        if (rc->want && rc->sub == SUB_NONE) {
            buf_t k = {0};
            if (key(c, &k, ":c:", rc->name, rc->len) == 0 &&
                redisAsyncCommand(c->sub.ac, chan_reply, NULL, "SUBSCRIBE %b", k.data, k.len) == REDIS_OK)
                rc->sub = SUB_SUBSCRIBING;
            buf_free(&k);
        } else if (!rc->want && rc->sub == SUB_SUBSCRIBED) {
            buf_t k = {0};
            if (key(c, &k, ":c:", rc->name, rc->len) == 0 &&
                redisAsyncCommand(c->sub.ac, chan_reply, NULL, "UNSUBSCRIBE %b", k.data, k.len) == REDIS_OK)
                rc->sub = SUB_UNSUBSCRIBING;
            buf_free(&k);
        }
    }
    if (rc->want && rc->sub == SUB_SUBSCRIBED && rc->need_sync && !rc->reading && link_ready(&c->cmd))
        send_read(c, rc);
    if (!rc->want && rc->sub == SUB_NONE && !rc->reading) {
        strmap_remove(&c->chans, &rc->node);
        free(rc);
    }
}

static void reconcile_all(cluster_t *c)
{
    size_t b;
    strmap_node_t *n = strmap_first(&c->chans, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&c->chans, n, &b);
        reconcile(c, (rchan_t *)n);
        n = next;
    }
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    cluster_t *c = ac->data;
    redisReply *reply = r;
    char *name = priv;
    size_t len = strlen(name);
    rchan_t *rc = chan_get(c, name, len, false);
    if (rc) rc->reading = false;
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_ARRAY;
    if (!ok) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_WARN, "redis: reading a channel failed", "channel", name, "error", reply->str, NULL);
        if (rc) rc->need_sync = true;   /* again once the connection is back */
        c->hooks.synced(c->hooks.ctx, name, len, HERALD_EUNAVAIL, 0, NULL, 0);
    } else {
        redisReply *list = reply->element[1];
        event_t **evs = list->elements ? calloc(list->elements, sizeof *evs) : NULL;
        size_t n = 0;
        for (size_t i = 0; evs && i < list->elements; i++) {
            redisReply *e = list->element[i];
            event_t *ev = e->type == REDIS_REPLY_STRING ? wire_parse(name, len, e->str, (size_t)e->len) : NULL;
            if (ev) evs[n++] = ev;
            else log_msg(LOG_WARN, "redis: unreadable history record skipped", "channel", name, NULL);
        }
        c->hooks.synced(c->hooks.ctx, name, len, 0, (uint64_t)reply->element[0]->integer, evs, n);
        free(evs);
    }
    free(name);
    if (rc && !c->stopping) reconcile(c, rc);
}

/* ---- control messages between nodes ---- */

static void finish_dc(cluster_t *c, pending_dc_t *p)
{
    for (pending_dc_t **pp = &c->dcs; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    p->done(p->arg, p->total);
    free(p);
}

static void publish_ctl(cluster_t *c, const char *channel_suffix, const char *json, redisCallbackFn *fn, void *arg)
{
    char ch[160];
    snprintf(ch, sizeof ch, "%s:ctl%s", c->prefix, channel_suffix);
    if (!link_ready(&c->cmd) || redisAsyncCommand(c->cmd.ac, fn, arg, "PUBLISH %s %s", ch, json) != REDIS_OK) {
        if (fn) fn(NULL, NULL, arg);
    }
}

typedef struct dc_reply {
    char from[65];
    uint64_t req;
} dc_reply_t;

static const char *const BY_NAMES[] = {"user", "connection", "token"};

static void on_ctl(cluster_t *c, const char *msg, size_t len, bool own_channel)
{
    json_error_t err;
    json_t *j = json_loadb(msg, len, 0, &err);
    if (!j) return;
    if (own_channel) {   /* {"req":N,"n":count}: another node's answer */
        uint64_t id = (uint64_t)json_integer_value(json_object_get(j, "req"));
        for (pending_dc_t *p = c->dcs; p; p = p->next) {
            if (p->id != id) continue;
            p->total += (long)json_integer_value(json_object_get(j, "n"));
            if (++p->answered >= p->expected) finish_dc(c, p);
            break;
        }
    } else {
        const char *op = json_string_value(json_object_get(j, "op"));
        const char *from = json_string_value(json_object_get(j, "from"));
        const char *by = json_string_value(json_object_get(j, "by"));
        const char *who = json_string_value(json_object_get(j, "who"));
        if (op && strcmp(op, "disconnect") == 0 && from && by && who && strcmp(from, c->node_id) != 0) {
            int byi = -1;
            for (int i = 0; i < 3; i++)
                if (strcmp(by, BY_NAMES[i]) == 0) byi = i;
            dc_reply_t *r = calloc(1, sizeof *r);
            if (r && byi >= 0) {
                snprintf(r->from, sizeof r->from, "%s", from);
                r->req = (uint64_t)json_integer_value(json_object_get(j, "req"));
                c->hooks.disconnect(c->hooks.ctx, byi, who, r);
            } else {
                free(r);
            }
        }
    }
    json_decref(j);
}

/* Every reply on the pub/sub connection: subscribe and unsubscribe confirmations,
 * and messages. */
static void chan_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    cluster_t *c = ac->data;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const char *ch = reply->element[1]->str;
    size_t chlen = (size_t)reply->element[1]->len;
    if (chlen < c->prefix_len + 3 || memcmp(ch, c->prefix, c->prefix_len) != 0) return;
    const char *rest = ch + c->prefix_len;
    size_t restlen = chlen - c->prefix_len;
    if (restlen >= 4 && memcmp(rest, ":ctl", 4) == 0) {
        bool own = restlen > 4;
        if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
            on_ctl(c, reply->element[2]->str, (size_t)reply->element[2]->len, own);
        else if (strcmp(kind, "subscribe") == 0 && own && c->sub.state == LINK_SETUP) {
            c->sub.state = LINK_READY;   /* the last setup command was answered */
            c->sub.backoff_ms = 0;
            reconcile_all(c);
            update_up(c);
        }
        return;
    }
    if (restlen < 3 || memcmp(rest, ":c:", 3) != 0) return;
    const char *name = rest + 3;
    size_t len = restlen - 3;
    if (strcmp(kind, "message") == 0) {
        if (reply->element[2]->type != REDIS_REPLY_STRING) return;
        event_t *ev = wire_parse(name, len, reply->element[2]->str, (size_t)reply->element[2]->len);
        if (!ev) {
            log_msg(LOG_WARN, "redis: unreadable event message skipped", NULL);
            return;
        }
        c->hooks.event(c->hooks.ctx, ev, false);
        event_unref(ev);
        return;
    }
    rchan_t *rc = chan_get(c, name, len, false);
    if (!rc) return;
    if (strcmp(kind, "subscribe") == 0 && rc->sub == SUB_SUBSCRIBING) rc->sub = SUB_SUBSCRIBED;
    else if (strcmp(kind, "unsubscribe") == 0 && rc->sub == SUB_UNSUBSCRIBING) rc->sub = SUB_NONE;
    reconcile(c, rc);
}

/* ---- connections ---- */

static void link_connect(link_t *l);
static void on_link_timer(loop_t *loop, loop_timer_t *t);

static void schedule_reconnect(link_t *l)
{
    cluster_t *c = l->cl;
    l->state = LINK_DOWN;
    l->ac = NULL;
    if (c->stopping) return;
    unsigned b = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (b > BACKOFF_MAX_MS) b = BACKOFF_MAX_MS;
    l->backoff_ms = b;
    uint64_t delay = b / 2 + rand_u64() % (b / 2 + 1);   /* jitter: nodes do not reconnect in step */
    loop_timer_set(c->loop, &l->timer, loop_now_ms(c->loop) + delay, on_link_timer);
}

static void link_lost(link_t *l, const char *why)
{
    cluster_t *c = l->cl;
    if (!c->stopping && !l->setup_failed) {
        set_why(c, "redis %s connection: %s", l->name, why);
        /* the first failure is news; the retries that follow are not */
        log_msg(l->state >= LINK_SETUP || l->backoff_ms == 0 ? LOG_WARN : LOG_DEBUG, "redis connection lost",
                "connection", l->name, "error", why, NULL);
    }
    if (l->is_sub) {   /* Redis forgot this connection's subscriptions */
        size_t b;
        strmap_node_t *n = strmap_first(&c->chans, &b);
        while (n) {
            strmap_node_t *next = strmap_next(&c->chans, n, &b);
            rchan_t *rc = (rchan_t *)n;
            rc->sub = SUB_NONE;
            rc->need_sync = rc->want;   /* read again after resubscribing: gap fill */
            if (!rc->want && !rc->reading) {
                strmap_remove(&c->chans, &rc->node);
                free(rc);
            }
            n = next;
        }
    }
    schedule_reconnect(l);
    update_up(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cluster_t *c = ac->data;
    link_t *l = c->cmd.ac == ac ? &c->cmd : &c->sub;
    link_lost(l, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
}

static void setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
    cluster_t *c = ac->data;
    redisReply *reply = r;
    link_t *l = c->cmd.ac == ac ? &c->cmd : &c->sub;
    const char *what = priv;
    if (!reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_ERROR, "redis: setup command failed", "command", what, "error", reply->str, NULL);
        set_why(c, "redis: %s failed: %s", what, reply->str);
        l->setup_failed = true;
        redisAsyncDisconnect(ac);
    }
}

/* CONFIG GET answers: warn once when Redis may lose acknowledged events. */
static void config_reply(redisAsyncContext *ac, void *r, void *priv)
{
    cluster_t *c = ac->data;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_STRING || c->warned)
        return;
    const char *v = reply->element[1]->str;
    if (strcmp(priv, "appendonly") == 0 && strcmp(v, "yes") != 0)
        log_msg(LOG_WARN,
                "redis has appendonly no: a Redis restart loses history and offsets since its last snapshot "
                "(set appendonly yes; docs/operations.md)", NULL);
    if (strcmp(priv, "appendfsync") == 0 && strcmp(v, "always") != 0 && strcmp(v, "everysec") != 0)
        log_msg(LOG_WARN, "redis appendfsync is neither always nor everysec: a crash may lose much more than a "
                          "second of events", "appendfsync", v, NULL);
    if (strcmp(priv, "maxmemory-policy") == 0 && strcmp(v, "noeviction") != 0)
        log_msg(LOG_WARN, "redis maxmemory-policy is not noeviction: Redis may evict offsets and history",
                "maxmemory-policy", v, NULL);
}

static void epoch_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    cluster_t *c = ac->data;
    redisReply *reply = r;
    if (!reply || c->cmd.setup_failed) return;
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len >= (int)sizeof c->epoch) {
        set_why(c, "redis: no epoch");
        redisAsyncDisconnect(ac);
        return;
    }
    memcpy(c->epoch, reply->str, (size_t)reply->len);
    c->epoch[reply->len] = '\0';
    c->warned = true;
    c->cmd.state = LINK_READY;
    c->cmd.backoff_ms = 0;
    reconcile_all(c);
    update_up(c);
}

static void auth_and_select(link_t *l)
{
    cluster_t *c = l->cl;
    if (c->url.password) {
        if (c->url.user)
            redisAsyncCommand(l->ac, setup_reply, "AUTH", "AUTH %s %s", c->url.user, c->url.password);
        else
            redisAsyncCommand(l->ac, setup_reply, "AUTH", "AUTH %s", c->url.password);
    }
    if (c->url.db) redisAsyncCommand(l->ac, setup_reply, "SELECT", "SELECT %d", c->url.db);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    cluster_t *c = ac->data;
    link_t *l = c->cmd.ac == ac ? &c->cmd : &c->sub;
    loop_timer_cancel(&l->timer);
    if (status != REDIS_OK) {   /* hiredis frees the context after this */
        link_lost(l, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    l->state = LINK_SETUP;
    l->setup_failed = false;
    auth_and_select(l);
    if (!l->is_sub) {
        char epoch_key[128], fresh[33];
        uint8_t rnd[16];
        rand_secure(rnd, sizeof rnd);
        for (int i = 0; i < 16; i++) sprintf(fresh + 2 * i, "%02x", rnd[i]);
        snprintf(epoch_key, sizeof epoch_key, "%s:epoch", c->prefix);
        redisAsyncCommand(ac, setup_reply, "SCRIPT LOAD", "SCRIPT LOAD %s", PUBLISH_LUA);
        redisAsyncCommand(ac, setup_reply, "SCRIPT LOAD", "SCRIPT LOAD %s", READ_LUA);
        redisAsyncCommand(ac, setup_reply, "SET", "SET %s %s NX", epoch_key, fresh);
        if (!c->warned) {
            redisAsyncCommand(ac, config_reply, "appendonly", "CONFIG GET appendonly");
            redisAsyncCommand(ac, config_reply, "appendfsync", "CONFIG GET appendfsync");
            redisAsyncCommand(ac, config_reply, "maxmemory-policy", "CONFIG GET maxmemory-policy");
        }
        redisAsyncCommand(ac, epoch_reply, NULL, "GET %s", epoch_key);
    } else {
        redisAsyncCommand(ac, chan_reply, NULL, "SUBSCRIBE %s:ctl", c->prefix);
        redisAsyncCommand(ac, chan_reply, NULL, "SUBSCRIBE %s:ctl:%s", c->prefix, c->node_id);
    }
}

static void on_link_timer(loop_t *loop, loop_timer_t *t)
{
    (void)loop;
    link_t *l = (link_t *)((char *)t - offsetof(link_t, timer));
    if (l->state == LINK_DOWN) {
        link_connect(l);
    } else if (l->state == LINK_CONNECTING && l->ac) {   /* connect took too long */
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);   /* no callback for a context that never connected */
        link_lost(l, "connect timed out");
    }
}

static void link_connect(link_t *l)
{
    cluster_t *c = l->cl;
    if (c->stopping) return;
    redisAsyncContext *ac = redisAsyncConnect(c->url.host, c->url.port);
    if (!ac || ac->err) {
        const char *why = ac && ac->errstr[0] ? ac->errstr : "cannot connect";
        set_why(c, "redis %s connection: %s", l->name, why);
        if (ac) redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    ac->data = c;
    l->ac = ac;
    l->state = LINK_CONNECTING;
    redis_io_attach(&l->rio, c->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    loop_timer_set(c->loop, &l->timer, loop_now_ms(c->loop) + CONNECT_TIMEOUT_MS, on_link_timer);
}

static void update_up(cluster_t *c)
{
    bool now = link_ready(&c->cmd) && link_ready(&c->sub);
    bool was = atomic_exchange(&c->up, now);
    if (now == was || c->stopping) return;
    if (now) log_msg(LOG_INFO, "redis connected", "node", c->node_id, "epoch", c->epoch, NULL);
    c->hooks.link(c->hooks.ctx, now, c->epoch);
}

/* ---- requests from other threads ---- */

static void on_publish_reply(redisAsyncContext *ac, void *r, void *priv)
{
    cluster_t *c = ac ? ac->data : NULL;
    req_t *q = priv;
    redisReply *reply = r;
    cluster_publish_fn done = (cluster_publish_fn)q->fn;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_WARN, "redis: publish failed", "error", reply->str, NULL);
        done(q->arg, HERALD_EUNAVAIL, 0, q->id, false);
    } else if (reply->element[0]->integer == 0 && reply->element[1]->type == REDIS_REPLY_STRING) {
        /* a repeated idempotency key: "<offset> <id>" of the first publish */
        char *end;
        uint64_t off = strtoull(reply->element[1]->str, &end, 10);
        char id[UUID_STR_LEN] = "";
        if (*end == ' ') snprintf(id, sizeof id, "%s", end + 1);
        done(q->arg, 0, off, id, true);
    } else if (reply->elements == 3 && reply->element[1]->type == REDIS_REPLY_INTEGER &&
               reply->element[2]->type == REDIS_REPLY_INTEGER) {
        uint64_t off = (uint64_t)reply->element[1]->integer;
        /* the node's own subscribers need not wait for the pub/sub copy (whichever
         * comes first is delivered, the other is a duplicate offset) */
        buf_t rec = {0};
        if (buf_printf(&rec, "%llu %llu ", (unsigned long long)off, (unsigned long long)reply->element[2]->integer) ==
                0 &&
            buf_append(&rec, q->tail.data, q->tail.len) == 0) {
            event_t *ev = wire_parse(q->name, q->name_len, rec.data, rec.len);
            if (ev) {
                c->hooks.event(c->hooks.ctx, ev, true);
                event_unref(ev);
            }
        }
        buf_free(&rec);
        done(q->arg, 0, off, q->id, false);
    } else {
        done(q->arg, HERALD_EUNAVAIL, 0, q->id, false);
    }
    req_free(q);
}

static void do_publish(cluster_t *c, req_t *q)
{
    cluster_publish_fn done = (cluster_publish_fn)q->fn;
    if (!link_ready(&c->cmd)) {
        done(q->arg, HERALD_EUNAVAIL, 0, q->id, false);
        req_free(q);
        return;
    }
    buf_t hk = {0}, pk = {0}, ik = {0};
    char offsets[128], seqk[128], keep[16], ttl[16], idem_ttl[16];
    snprintf(offsets, sizeof offsets, "%s:offsets", c->prefix);
    snprintf(seqk, sizeof seqk, "%s:seq", c->prefix);
    snprintf(keep, sizeof keep, "%u", q->keep);
    snprintf(ttl, sizeof ttl, "%u", q->ttl_s ? q->ttl_s : 1);
    bool idem = q->key_len > 0;
    snprintf(idem_ttl, sizeof idem_ttl, "%u", idem ? (q->idem_ttl_s ? q->idem_ttl_s : 1) : 0);
    int rc = key(c, &hk, ":h:", q->name, q->name_len) | key(c, &pk, ":c:", q->name, q->name_len) |
             key(c, &ik, ":i:", q->name, q->name_len);
    if (idem) rc |= buf_append_str(&ik, "\n") | buf_append(&ik, q->key, q->key_len);
    const char *argv[] = {"EVALSHA", c->sha_publish, "4", offsets, hk.data, seqk, ik.data,
                          q->name, q->tail.data, keep, ttl, pk.data, idem ? idem_ttl : "", q->id};
    size_t lens[] = {7, 40, 1, strlen(offsets), hk.len, strlen(seqk), ik.len,
                     q->name_len, q->tail.len, strlen(keep), strlen(ttl), pk.len, idem ? strlen(idem_ttl) : 0,
                     strlen(q->id)};
    if (rc == 0 && redisAsyncCommandArgv(c->cmd.ac, on_publish_reply, q, 14, argv, lens) == REDIS_OK) {
        q = NULL;
    }
    buf_free(&hk), buf_free(&pk), buf_free(&ik);
    if (q) {
        done(q->arg, HERALD_EUNAVAIL, 0, q->id, false);
        req_free(q);
    }
}

static void do_want(cluster_t *c, req_t *q)
{
    rchan_t *rc = chan_get(c, q->name, q->name_len, q->want);
    if (rc) {
        rc->want = q->want;
        if (q->want) {
            if (q->known > rc->known) rc->known = q->known;
            rc->need_sync = true;
        }
        if (q->want && !(link_ready(&c->cmd) && link_ready(&c->sub)))
            c->hooks.synced(c->hooks.ctx, q->name, q->name_len, HERALD_EUNAVAIL, 0, NULL, 0);
        reconcile(c, rc);
    } else if (q->want) {
        c->hooks.synced(c->hooks.ctx, q->name, q->name_len, HERALD_ENOMEM, 0, NULL, 0);
    }
    req_free(q);
}

static void on_dc_published(redisAsyncContext *ac, void *r, void *priv)
{
    cluster_t *c = ac ? ac->data : NULL;
    pending_dc_t *p = priv;
    redisReply *reply = r;
    if (!c) {   /* not sent */
        p->done(p->arg, 0);
        free(p);
        return;
    }
    /* PUBLISH answers how many connections received it: every node's pub/sub
     * connection, this node's included */
    p->expected = reply && reply->type == REDIS_REPLY_INTEGER ? (long)reply->integer - 1 : 0;
    if (p->expected <= 0 || c->stopping) {
        p->done(p->arg, 0);
        free(p);
        return;
    }
    p->deadline_ms = loop_now_ms(c->loop) + DISCONNECT_WAIT_MS;
    p->next = c->dcs;
    c->dcs = p;
}

static void do_disconnect(cluster_t *c, req_t *q)
{
    pending_dc_t *p = calloc(1, sizeof *p);
    if (!p) {
        ((cluster_count_fn)q->fn)(q->arg, 0);
        req_free(q);
        return;
    }
    p->id = ++c->next_dc;
    p->done = (cluster_count_fn)q->fn;
    p->arg = q->arg;
    buf_t j = {0};
    buf_printf(&j, "{\"op\":\"disconnect\",\"by\":\"%s\",\"who\":", BY_NAMES[q->by]);
    buf_append_json_str(&j, q->name, q->name_len);
    buf_printf(&j, ",\"from\":\"%s\",\"req\":%llu}", c->node_id, (unsigned long long)p->id);
    if (j.data) publish_ctl(c, "", j.data, on_dc_published, p);
    else on_dc_published(NULL, NULL, p);
    buf_free(&j);
    req_free(q);
}

static void do_answer(cluster_t *c, req_t *q)
{
    dc_reply_t *r = q->arg;
    char json[96], suffix[80];
    snprintf(json, sizeof json, "{\"req\":%llu,\"n\":%ld}", (unsigned long long)r->req, q->count);
    snprintf(suffix, sizeof suffix, ":%s", r->from);
    publish_ctl(c, suffix, json, NULL, NULL);
    free(r);
    req_free(q);
}

static void on_stats(redisAsyncContext *ac, void *r, void *priv)
{
    cluster_t *c = ac ? ac->data : NULL;
    req_t *q = priv;
    redisReply *reply = r;
    cluster_json_fn done = (cluster_json_fn)q->fn;
    if (!c || !reply || reply->type != REDIS_REPLY_ARRAY) {
        done(q->arg, HERALD_EUNAVAIL, NULL, 0);
        req_free(q);
        return;
    }
    uint64_t now = time_wall_ms();
    json_t *nodes = json_array();
    json_int_t total = 0;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *k = reply->element[i], *v = reply->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        json_t *n = json_loadb(v->str, (size_t)v->len, 0, NULL);
        json_int_t ts = json_integer_value(json_object_get(n, "ts_ms"));
        uint64_t age = now > (uint64_t)ts ? now - (uint64_t)ts : 0;
        if (!n || age > NODE_STALE_MS) {
            if (age > NODE_FORGET_MS && link_ready(&c->cmd))
                redisAsyncCommand(c->cmd.ac, NULL, NULL, "HDEL %s:nodes %b", c->prefix, k->str, (size_t)k->len);
            json_decref(n);
            continue;
        }
        json_object_del(n, "ts_ms");
        json_object_set_new(n, "age_ms", json_integer((json_int_t)age));
        total += json_integer_value(json_object_get(n, "connections"));
        json_array_append_new(nodes, n);
    }
    json_t *out = json_pack("{s:s,s:o,s:{s:I}}", "scope", "cluster", "nodes", nodes, "connections", "total", total);
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    done(q->arg, s ? 0 : HERALD_ENOMEM, s, s ? strlen(s) : 0);
    free(s);
    json_decref(out);
    req_free(q);
}

static void do_stats(cluster_t *c, req_t *q)
{
    if (!link_ready(&c->cmd) ||
        redisAsyncCommand(c->cmd.ac, on_stats, q, "HGETALL %s:nodes", c->prefix) != REDIS_OK)
        on_stats(NULL, NULL, q);
}

static void on_take(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    waiter_t *w = priv;
    redisReply *reply = r;
    if (!reply || reply->type == REDIS_REPLY_ERROR) waiter_finish(w, HERALD_EUNAVAIL, NULL, 0);
    else if (reply->type == REDIS_REPLY_STRING) waiter_finish(w, 1, reply->str, (size_t)reply->len);
    else waiter_finish(w, 0, NULL, 0);
}

static void do_session(cluster_t *c, req_t *q)
{
    buf_t k = {0};
    bool ok = link_ready(&c->cmd) && key(c, &k, ":sio:", q->name, q->name_len) == 0;
    if (q->kind == REQ_SAVE) {
        if (ok)
            redisAsyncCommand(c->cmd.ac, NULL, NULL, "SET %b %b PX %u", k.data, k.len, q->tail.data, q->tail.len,
                              q->keep);
    } else if (!ok || redisAsyncCommand(c->cmd.ac, on_take, q->waiter, "EVAL %s 1 %b", TAKE_LUA, k.data, k.len) !=
                          REDIS_OK) {
        waiter_finish(q->waiter, HERALD_EUNAVAIL, NULL, 0);
    }
    buf_free(&k);
    req_free(q);
}

static void begin_stop(cluster_t *c);

static void on_wake(loop_t *loop, loop_io_t *io, uint32_t revents)
{
    (void)loop, (void)revents;
    cluster_t *c = (cluster_t *)((char *)io - offsetof(cluster_t, wake_io));
    uint64_t v;
    ssize_t n = read(c->wake_fd, &v, sizeof v);
    (void)n;
    pthread_mutex_lock(&c->qlock);
    req_t *q = c->qhead;
    c->qhead = c->qtail = NULL;
    pthread_mutex_unlock(&c->qlock);
    while (q) {
        req_t *next = q->next;
        switch (q->kind) {
        case REQ_PUBLISH: do_publish(c, q); break;
        case REQ_WANT: do_want(c, q); break;
        case REQ_DISCONNECT: do_disconnect(c, q); break;
        case REQ_ANSWER: do_answer(c, q); break;
        case REQ_STATS: do_stats(c, q); break;
        case REQ_SAVE:
        case REQ_TAKE: do_session(c, q); break;
        case REQ_STOP:
            req_free(q);
            begin_stop(c);
            break;
        }
        q = next;
    }
}

/* ---- access tokens shared between the nodes ----
 *
 * Tokens live in each node's SQLite store (a connection must be checked without a
 * round trip to Redis); the engine keeps the stores alike through P:tokens (hash
 * id -> row), P:tokens:ver and P:tokens:log (id -> version of its last change).
 * Every beat it either sees the local table changed (an API call, the CLI, an
 * import) and merges the rows changed since its last merge, or asks for the
 * version and merges (with no rows) when another node moved it. A merge answers
 * with the rows changed since this node's last one, which are imported here; a
 * node new to this Redis, or a Redis that went back (lost data), sends and gets
 * everything. So a token made or revoked on one node holds on every node within
 * about two beats, and a merge moves what changed, not the whole table. */

#define TOKENS_EXPORT_SLACK_MS 5000   /* a row committed just after an export was taken */

static void tokens_merged(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    cluster_t *c = priv;
    redisReply *rep = r;
    c->tok_busy = false;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        if (rep && !c->stopping)
            log_msg(LOG_WARN, "redis: token merge failed", "error", rep->type == REDIS_REPLY_ERROR ? rep->str : "?",
                    NULL);
        c->tok_fp = -1;   /* try again at the next beat */
        return;
    }
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < rep->element[1]->elements; i++) {
        redisReply *v = rep->element[1]->element[i];
        if (v->type != REDIS_REPLY_STRING || v->len < 2) continue;
        json_t *row = json_loadb(v->str + 1, v->len - 1, 0, NULL);
        if (row) json_array_append_new(rows, row);
    }
    if (rows && json_array_size(rows) > 0) c->hooks.tokens_import(c->hooks.ctx, rows);
    json_decref(rows);
    uint64_t ver = strtoull(rep->element[0]->str, NULL, 10);
    /* Redis went back below what this node merged: it lost rows, this node's
     * among them; the next beat sends everything again */
    c->tok_ver = ver < c->tok_ver ? 0 : ver;
    if (c->tok_ver) c->tok_export_ms = c->tok_sent_ms;
    /* tok_fp stays what it was when the rows were exported: a token made here
     * meanwhile (or an import just now) moves the fingerprint, and the next beat
     * merges again, which changes nothing once all agree */
}

static void tokens_merge(cluster_t *c)
{
    int64_t fp = c->hooks.tokens_fingerprint(c->hooks.ctx);   /* before the export: see tokens_merged */
    int64_t now = (int64_t)time_wall_ms();
    int64_t since = c->tok_ver ? c->tok_export_ms - TOKENS_EXPORT_SLACK_MS : 0;
    json_t *rows = c->hooks.tokens_export(c->hooks.ctx, since);
    if (!rows) return;   /* store error: logged there; the next beat tries again */
    size_t n = json_array_size(rows), argc = 7 + 2 * n;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    char **owned = calloc(2 * n + 1, sizeof *owned);
    buf_t k1 = {0}, k2 = {0}, k3 = {0};
    char nkeys[] = "3", seen[24];
    snprintf(seen, sizeof seen, "%" PRIu64, c->tok_ver);
    bool ok = argv && lens && owned && key(c, &k1, ":tokens", "", 0) == 0 &&
              key(c, &k2, ":tokens:ver", "", 0) == 0 && key(c, &k3, ":tokens:log", "", 0) == 0;
    size_t a = 0;
    if (ok) {
        argv[a] = "EVAL", lens[a++] = 4;
        argv[a] = TOKENS_LUA, lens[a++] = sizeof TOKENS_LUA - 1;
        argv[a] = nkeys, lens[a++] = 1;
        argv[a] = k1.data, lens[a++] = k1.len;
        argv[a] = k2.data, lens[a++] = k2.len;
        argv[a] = k3.data, lens[a++] = k3.len;
        argv[a] = seen, lens[a] = strlen(seen), a++;
    }
    for (size_t i = 0; ok && i < n; i++) {
        json_t *row = json_array_get(rows, i);
        char *text = json_dumps(row, JSON_COMPACT);
        char *val = text ? malloc(strlen(text) + 2) : NULL;
        if (!val) {
            free(text);
            ok = false;
            break;
        }
        val[0] = json_is_null(json_object_get(row, "revoked_at")) ? '0' : '1';
        strcpy(val + 1, text);
        free(text);
        owned[i] = val;
        argv[a] = json_string_value(json_object_get(row, "id")), lens[a] = strlen(argv[a]), a++;
        argv[a] = val, lens[a] = strlen(val), a++;
    }
    if (ok && redisAsyncCommandArgv(c->cmd.ac, tokens_merged, c, (int)a, argv, lens) == REDIS_OK) {
        c->tok_busy = true;
        c->tok_fp = fp;
        c->tok_sent_ms = now;
    }
    for (size_t i = 0; owned && owned[i]; i++) free(owned[i]);
    free(owned), free(argv), free(lens);
    buf_free(&k1), buf_free(&k2), buf_free(&k3);
    json_decref(rows);
}

static void tokens_version(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    cluster_t *c = priv;
    redisReply *rep = r;
    c->tok_busy = false;
    if (!rep || c->stopping || !link_ready(&c->cmd)) return;
    uint64_t ver = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    if (ver == c->tok_ver) return;
    if (ver < c->tok_ver) c->tok_ver = 0;   /* Redis lost the tokens (or some): everything again */
    tokens_merge(c);
}

static void tokens_tick(cluster_t *c)
{
    if (!c->hooks.tokens_export || c->tok_busy || c->stopping || !link_ready(&c->cmd)) return;
    if (!c->tok_ver || c->hooks.tokens_fingerprint(c->hooks.ctx) != c->tok_fp) {
        tokens_merge(c);
    } else if (redisAsyncCommand(c->cmd.ac, tokens_version, c, "GET %s:tokens:ver", c->prefix) == REDIS_OK) {
        c->tok_busy = true;
    }
}

/* ---- heartbeat, stop, thread ---- */

static void on_beat(loop_t *loop, loop_timer_t *t)
{
    cluster_t *c = (cluster_t *)((char *)t - offsetof(cluster_t, beat));
    uint64_t now = loop_now_ms(loop);
    /* pending disconnects whose other nodes did not all answer in time */
    for (pending_dc_t *p = c->dcs, *next; p; p = next) {
        next = p->next;
        if (p->deadline_ms <= now) finish_dc(c, p);
    }
    if (link_ready(&c->cmd)) {
        buf_t b = {0};
        buf_printf(&b, "{\"node_id\":\"%s\",\"ts_ms\":%llu,", c->node_id, (unsigned long long)time_wall_ms());
        c->hooks.stats(c->hooks.ctx, &b);
        buf_append_str(&b, "}");
        if (b.data) redisAsyncCommand(c->cmd.ac, NULL, NULL, "HSET %s:nodes %s %b", c->prefix, c->node_id, b.data, b.len);
        buf_free(&b);
        tokens_tick(c);
    }
    /* the beat also times out disconnects: a short period while any wait */
    loop_timer_set(loop, t, now + (c->dcs ? 100 : HEARTBEAT_MS), on_beat);
}

static void check_stopped(cluster_t *c)
{
    if (c->stopping && c->cmd.state == LINK_DOWN && c->sub.state == LINK_DOWN) loop_stop(c->loop);
}

static void on_stop_timer(loop_t *loop, loop_timer_t *t)
{
    (void)t;
    cluster_t *c = (cluster_t *)((char *)t - offsetof(cluster_t, stop_timer));
    /* Redis did not answer in time: free what is left (callbacks get no reply) */
    if (c->cmd.ac) redisAsyncFree(c->cmd.ac);
    if (c->sub.ac) redisAsyncFree(c->sub.ac);
    c->cmd.state = c->sub.state = LINK_DOWN;
    loop_stop(loop);
}

static void begin_stop(cluster_t *c)
{
    if (c->stopping) return;
    /* last words: leave the node list, then close once every reply arrived */
    if (link_ready(&c->cmd))
        redisAsyncCommand(c->cmd.ac, NULL, NULL, "HDEL %s:nodes %s", c->prefix, c->node_id);
    c->stopping = true;
    while (c->dcs) finish_dc(c, c->dcs);
    loop_timer_cancel(&c->beat);
    loop_timer_cancel(&c->cmd.timer);
    loop_timer_cancel(&c->sub.timer);
    link_t *links[] = {&c->cmd, &c->sub};
    for (int i = 0; i < 2; i++) {
        link_t *l = links[i];
        if (l->ac && l->state != LINK_CONNECTING) {
            redisAsyncDisconnect(l->ac);   /* replies still due are delivered first */
        } else if (l->ac) {
            redisAsyncContext *ac = l->ac;
            l->ac = NULL;
            redisAsyncFree(ac);
            l->state = LINK_DOWN;
        }
    }
    loop_timer_set(c->loop, &c->stop_timer, loop_now_ms(c->loop) + STOP_WAIT_MS, on_stop_timer);
    check_stopped(c);
}

static void after_batch(loop_t *loop, void *ctx)
{
    (void)loop;
    check_stopped(ctx);
}

static void *run(void *arg)
{
    cluster_t *c = arg;
    link_connect(&c->cmd);
    link_connect(&c->sub);
    loop_timer_set(c->loop, &c->beat, loop_now_ms(c->loop) + HEARTBEAT_MS, on_beat);
    loop_run(c->loop);
    return NULL;
}

cluster_t *cluster_create(const config_t *cfg, const char *node_id, const cluster_hooks_t *hooks, char *why,
                          size_t why_len)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->hooks = *hooks;
    c->wake_fd = -1;
    pthread_mutex_init(&c->qlock, NULL);
    pthread_mutex_init(&c->why_lock, NULL);
    snprintf(c->why, sizeof c->why, "redis: connecting");
    snprintf(c->node_id, sizeof c->node_id, "%s", node_id);
    c->prefix = strdup(cfg->redis.prefix ? cfg->redis.prefix : "herald");
    c->prefix_len = c->prefix ? strlen(c->prefix) : 0;
    sha1_hex(PUBLISH_LUA, c->sha_publish);
    sha1_hex(READ_LUA, c->sha_read);
    c->cmd = (link_t){.cl = c, .name = "commands"};
    c->sub = (link_t){.cl = c, .name = "pub/sub", .is_sub = true};
    if (!c->prefix || redis_url_parse(cfg->redis.url, &c->url, why, why_len) < 0) {
        cluster_destroy(c);
        return NULL;
    }
    c->loop = loop_create(after_batch, c);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!c->loop || c->wake_fd < 0 || loop_io_add(c->loop, &c->wake_io, c->wake_fd, EPOLLIN, on_wake) < 0) {
        snprintf(why, why_len, "cannot create the redis event loop");
        cluster_destroy(c);
        return NULL;
    }
    return c;
}

int cluster_start(cluster_t *c)
{
    if (pthread_create(&c->thread, NULL, run, c) != 0) return HERALD_EIO;
    c->started = true;
    return 0;
}

void cluster_stop(cluster_t *c)
{
    if (!c || !c->started) return;
    req_t *q = req_new(REQ_STOP, NULL, 0, NULL, 0);
    if (!q || enqueue(c, q) < 0) {
        free(q);
        loop_stop(c->loop);   /* last resort */
    }
    pthread_mutex_lock(&c->qlock);
    c->closed = true;
    pthread_mutex_unlock(&c->qlock);
    pthread_join(c->thread, NULL);
    c->started = false;
    atomic_store(&c->up, false);
    /* requests that arrived after the stop: complete them as failed now, while
     * the threads their callbacks hand results to still run their inboxes */
    pthread_mutex_lock(&c->qlock);
    q = c->qhead;
    c->qhead = c->qtail = NULL;
    pthread_mutex_unlock(&c->qlock);
    while (q) {
        req_t *next = q->next;
        if (q->kind == REQ_PUBLISH) ((cluster_publish_fn)q->fn)(q->arg, HERALD_EUNAVAIL, 0, q->id, false);
        else if (q->kind == REQ_DISCONNECT) ((cluster_count_fn)q->fn)(q->arg, 0);
        else if (q->kind == REQ_STATS) ((cluster_json_fn)q->fn)(q->arg, HERALD_EUNAVAIL, NULL, 0);
        else if (q->kind == REQ_TAKE) waiter_finish(q->waiter, HERALD_EUNAVAIL, NULL, 0);
        else if (q->kind == REQ_ANSWER) free(q->arg);
        req_free(q);
        q = next;
    }
}

void cluster_destroy(cluster_t *c)
{
    if (!c) return;
    cluster_stop(c);
    size_t b;
    strmap_node_t *n = strmap_first(&c->chans, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&c->chans, n, &b);
        free(n);
        n = next;
    }
    strmap_deinit(&c->chans);
    if (c->wake_fd >= 0) close(c->wake_fd);
    if (c->loop) loop_destroy(c->loop);
    redis_url_free(&c->url);
    free(c->prefix);
    pthread_mutex_destroy(&c->qlock);
    pthread_mutex_destroy(&c->why_lock);
    free(c);
}

/* ---- the API other threads call ---- */

bool cluster_is_up(cluster_t *c, char *why, size_t why_len)
{
    bool up = atomic_load(&c->up);
    if (!up && why) {
        pthread_mutex_lock(&c->why_lock);
        snprintf(why, why_len, "%s", c->why);
        pthread_mutex_unlock(&c->why_lock);
    }
    return up;
}

const char *cluster_node_id(const cluster_t *c) { return c->node_id; }

int cluster_publish(cluster_t *c, const char *channel, size_t channel_len, const char *name, size_t name_len,
                    const char *data, size_t data_len, const char *idem_key, size_t idem_len, uint32_t keep,
                    uint32_t ttl_s, uint32_t idem_ttl_s, cluster_publish_fn done, void *arg)
{
    if (!atomic_load(&c->up)) return HERALD_EUNAVAIL;
    req_t *q = req_new(REQ_PUBLISH, channel, channel_len, idem_key, idem_key ? idem_len : 0);
    if (!q) return HERALD_ENOMEM;
    uuid_v4(q->id);
    q->keep = keep;
    q->ttl_s = ttl_s;
    q->idem_ttl_s = idem_ttl_s;
    q->fn = (void *)done;
    q->arg = arg;
    int rc = wire_tail(&q->tail, time_wall_ms(), q->id, name, name_len, data, data_len);
    if (rc == 0) rc = enqueue(c, q);
    if (rc < 0) req_free(q);
    return rc;
}

int cluster_want(cluster_t *c, const char *channel, size_t len, bool want, uint64_t known)
{
    req_t *q = req_new(REQ_WANT, channel, len, NULL, 0);
    if (!q) return HERALD_ENOMEM;
    q->want = want;
    q->known = known;
    int rc = enqueue(c, q);
    if (rc < 0) req_free(q);
    return rc;
}

int cluster_disconnect(cluster_t *c, int by, const char *who, cluster_count_fn done, void *arg)
{
    if (by < 0 || by > 2) return HERALD_EINVAL;
    req_t *q = req_new(REQ_DISCONNECT, who, strlen(who), NULL, 0);
    if (!q) return HERALD_ENOMEM;
    q->by = by;
    q->fn = (void *)done;
    q->arg = arg;
    int rc = enqueue(c, q);
    if (rc < 0) req_free(q);
    return rc;
}

void cluster_disconnect_answer(cluster_t *c, void *reply, long count)
{
    req_t *q = req_new(REQ_ANSWER, NULL, 0, NULL, 0);
    if (!q) {
        free(reply);
        return;
    }
    q->arg = reply;
    q->count = count;
    if (enqueue(c, q) < 0) {
        free(reply);
        req_free(q);
    }
}

int cluster_stats(cluster_t *c, cluster_json_fn done, void *arg)
{
    req_t *q = req_new(REQ_STATS, NULL, 0, NULL, 0);
    if (!q) return HERALD_ENOMEM;
    q->fn = (void *)done;
    q->arg = arg;
    int rc = enqueue(c, q);
    if (rc < 0) req_free(q);
    return rc;
}

void cluster_session_save(cluster_t *c, const char *pid, size_t pid_len, const char *blob, size_t blob_len,
                          uint32_t ttl_ms)
{
    req_t *q = req_new(REQ_SAVE, pid, pid_len, NULL, 0);
    if (!q) return;
    q->keep = ttl_ms ? ttl_ms : 1;
    if (buf_append(&q->tail, blob, blob_len) < 0 || enqueue(c, q) < 0) req_free(q);
}

int cluster_session_take(cluster_t *c, const char *pid, size_t pid_len, buf_t *out, unsigned timeout_ms)
{
    if (!atomic_load(&c->up)) return HERALD_EUNAVAIL;
    waiter_t *w = waiter_new();
    req_t *q = req_new(REQ_TAKE, pid, pid_len, NULL, 0);
    if (!w || !q) {
        free(q);
        if (w) waiter_put(w), waiter_put(w);
        return HERALD_ENOMEM;
    }
    q->waiter = w;
    if (enqueue(c, q) < 0) {
        req_free(q);
        waiter_put(w), waiter_put(w);
        return HERALD_EUNAVAIL;
    }
    return waiter_wait(w, timeout_ms, NULL, out);
}
