/* chainhook_source: the HTTP side of a `chainhook` source (SPEC section 8).
 *
 * Stacks Chainhook POSTs a payload of rolled-back and applied blocks to the
 * source's path. The worker that receives it checks the Authorization header,
 * parses the payload (src/chain/chainhook.c), and publishes through a pubwait:
 * each print of a configured contract in an apply block becomes an event (unless
 * it was published before), and each print of a rollback block that had been
 * published becomes its removed_event. The answer goes out once every publish is
 * acknowledged; only then are the items recorded as published or retracted, so a
 * delivery that failed (503) publishes them when Chainhook retries it, and the
 * idempotency keys absorb what did go through. */
#include "api/api.h"
#include "api/pubwait.h"
#include "auth/policy.h"
#include "chain/chainhook.h"
#include "chain/sources.h"
#include "core/err.h"
#include "http/http_conn.h"
#include "http/http_request.h"
#include "http/http_response.h"
#include "log.h"
#include "server.h"
#include "worker.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One item this delivery publishes, recorded once acknowledged. */
typedef struct item {
    char *key;
    int state;                 /* SEEN_APPLIED or SEEN_REMOVED */
    uint64_t block;
} item_t;

typedef struct delivery {
    source_t *src;
    item_t *items;
    size_t count;
    long skipped, duplicates, applied, removed;
} delivery_t;

static void delivery_free(delivery_t *d)
{
    for (size_t i = 0; i < d->count; i++) free(d->items[i].key);
    free(d->items);
    free(d);
}

static void finish(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    delivery_t *d = pw->ctx;
    source_t *src = d->src;
    if (pw->status < 0) {
        if (c->state == CONN_OPEN) http_respond_error(c, 503, "unavailable", "could not publish; retry the delivery");
    } else {
        for (size_t i = 0; i < d->count; i++) sources_mark(src->all, src, d->items[i].key, d->items[i].state, d->items[i].block);
        atomic_fetch_add(&src->count.events, d->applied);
        atomic_fetch_add(&src->count.removed, d->removed);
        atomic_fetch_add(&src->count.duplicates, d->duplicates);
        atomic_fetch_add(&src->count.skipped, d->skipped);
        if (c->state == CONN_OPEN)
            http_respond_json(c, 200, json_pack("{sbsIsIsIsI}", "success", 1, "published", (json_int_t)d->applied,
                                                "removed", (json_int_t)d->removed, "skipped", (json_int_t)d->skipped,
                                                "duplicates", (json_int_t)d->duplicates));
    }
    delivery_free(d);
    pubwait_free(pw);
}

static const print_cfg_t *print_for(const source_t *src, const char *contract)
{
    for (size_t i = 0; contract && i < src->print_count; i++)
        if (strcmp(src->prints[i].contract, contract) == 0) return &src->prints[i];
    return NULL;
}

/* This delivery's own decision about key, if it made one (the last wins). */
static int decided(const delivery_t *d, const char *key)
{
    for (size_t i = d->count; i-- > 0;)
        if (strcmp(d->items[i].key, key) == 0) return d->items[i].state;
    return SEEN_NONE;
}

typedef struct planned {
    char *channel, *name, *data, *idem;
} planned_t;

static bool authorized(const source_t *src, const http_request_t *req)
{
    const char *got = http_request_header(req, "Authorization");
    size_t n = strlen(src->authorization);
    return got && strlen(got) == n && CRYPTO_memcmp(got, src->authorization, n) == 0;
}

bool sources_route(sources_t *ss, conn_t *c, http_request_t *req)
{
    if (!ss) return false;
    source_t *src = NULL;
    for (size_t i = 0; i < ss->count && !src; i++)
        if (ss->list[i].type == SOURCE_CHAINHOOK && strcmp(ss->list[i].path, req->path) == 0) src = &ss->list[i];
    if (!src) return false;
    if (strcmp(req->method, "POST") != 0) {
        http_respond_error(c, 405, "method_not_allowed", "Chainhook deliveries are POSTed");
        return true;
    }
    /* without a configured `authorization`, as the HTTP API without api_keys: a
     * webhook anyone could post to would let anyone publish "chain" events */
    if (!src->authorization && !api_direct_loopback(c, req)) {
        http_respond_error(c, 403, "forbidden",
                           "this source has no authorization configured: it only accepts direct loopback requests");
        return true;
    }
    if (src->authorization && !authorized(src, req)) {
        http_respond_error(c, 401, "unauthorized", "wrong or missing Authorization header");
        return true;
    }
    chainhook_payload_t pl;
    char why[256];
    if (chainhook_parse(req->body ? req->body : "", req->body ? req->body_len : 0, &pl, why, sizeof why) < 0) {
        http_respond_error(c, 400, "bad_request", why);
        return true;
    }
    delivery_t *d = calloc(1, sizeof *d);
    planned_t *plan = calloc(pl.count + 1, sizeof *plan);
    if (d) d->items = calloc(pl.count + 1, sizeof *d->items);
    if (!d || !plan || !d->items) {
        free(plan);
        if (d) free(d->items);
        free(d);
        chainhook_payload_free(&pl);
        http_respond_error(c, 503, "unavailable", "out of memory");
        return true;
    }
    d->src = src;
    size_t n = 0;
    for (size_t i = 0; i < pl.count; i++) {
        chainhook_print_t *p = &pl.prints[i];
        const print_cfg_t *pc = print_for(src, p->contract);
        if (!pc) continue;   /* a contract this source does not map */
        if (!p->value) {
            d->skipped++;
            log_msg(LOG_WARN, "chainhook: undecodable print skipped", "source", src->name, "tx", p->tx_hash, "error",
                    p->why, NULL);
            continue;
        }
        char key[400];
        snprintf(key, sizeof key, "%.100s:%.100s:%" PRIu64, p->block_hash, p->tx_hash, p->event_index);
        int state = decided(d, key);
        if (state == SEEN_NONE) state = sources_seen(ss, src, key);
        bool rollback = p->kind == CHAINHOOK_ROLLBACK;
        if (rollback ? state != SEEN_APPLIED : state == SEEN_APPLIED) {
            if (!rollback) d->duplicates++;
            continue;   /* a rollback of what was never published retracts nothing */
        }
        /* the event: the printed value (a tuple gives the template's fields) and _chain */
        json_t *data = json_is_object(p->value) ? json_deep_copy(p->value) : json_pack("{sO}", "value", p->value);
        json_t *chain = json_pack("{ss sI ss ss sI ss sb}", "source", src->name, "block_index",
                                  (json_int_t)p->block_index, "block_hash", p->block_hash, "tx_hash", p->tx_hash,
                                  "event_index", (json_int_t)p->event_index, "contract_identifier", p->contract,
                                  "removed", rollback);
        char *channel = data ? sources_fill(pc->channel, data) : NULL;
        char *name = data ? sources_fill(pc->event, data) : NULL;
        if (name && rollback) {
            char *r = sources_removed_name(src, name);
            free(name);
            name = r;
        }
        if (data && chain) json_object_set_new(data, "_chain", chain);
        else json_decref(chain);
        char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
        json_decref(data);
        if (!channel || !name || !text || !channel_name_valid(channel, strlen(channel)) ||
            !sources_event_name_ok(name)) {
            d->skipped++;
            log_msg(LOG_WARN, "chainhook: print without a usable channel or event name skipped", "source", src->name,
                    "tx", p->tx_hash, "channel", channel ? channel : "(template)", NULL);
            free(channel), free(name), free(text);
            continue;
        }
        char idem[480];
        snprintf(idem, sizeof idem, "chainhook:%s:%s%s", src->name, key, rollback ? ":removed" : "");
        plan[n] = (planned_t){channel, name, text, strdup(idem)};
        d->items[d->count++] = (item_t){strdup(key), rollback ? SEEN_REMOVED : SEEN_APPLIED, p->block_index};
        if (rollback) d->removed++;
        else d->applied++;
        n++;
    }
    chainhook_payload_free(&pl);
    pubwait_t *pw = pubwait_create(c, n, true, finish, d);
    if (!pw) {
        http_respond_error(c, 503, "unavailable", "out of memory");
        delivery_free(d);
    }
    for (size_t i = 0; i < n; i++) {
        if (pw)
            pubwait_publish(pw, i, plan[i].channel, strlen(plan[i].channel), plan[i].name, strlen(plan[i].name),
                            plan[i].data, strlen(plan[i].data), plan[i].idem, plan[i].idem ? strlen(plan[i].idem) : 0);
        free(plan[i].channel), free(plan[i].name), free(plan[i].data), free(plan[i].idem);
    }
    free(plan);
    if (pw) pubwait_start(pw);
    return true;
}
