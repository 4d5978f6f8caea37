#include "api/api.h"
#include "api/pubwait.h"
#include "chain/sources.h"
#include "cluster/cluster.h"
#include "auth/policy.h"
#include "auth/tokens.h"
#include "core/err.h"
#include "core/util.h"
#include "http/http_conn.h"
#include "http/http_response.h"
#include "hub/event.h"
#include "hub/sequencer.h"
#include "proto/native.h"
#include "server.h"
#include "worker.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* ---- authorization ---- */

static bool key_matches(const config_t *cfg, const char *given)
{
    size_t glen = strlen(given);
    bool ok = false;
    /* Compare against every key, in constant time per key, so timing tells nothing
     * about which key or which prefix matched. */
    for (size_t i = 0; i < cfg->api_key_count; i++) {
        size_t klen = strlen(cfg->api_keys[i]);
        if (klen == glen && CRYPTO_memcmp(cfg->api_keys[i], given, klen) == 0) ok = true;
    }
    return ok;
}

bool api_direct_loopback(const conn_t *c, const http_request_t *req)
{
    return conn_peer_is_loopback(c) && !http_request_header(req, "X-Forwarded-For") &&
           !http_request_header(req, "Forwarded");
}

bool api_authorize(conn_t *c, const http_request_t *req)
{
    const config_t *cfg = c->worker->cfg;
    if (cfg->api_key_count == 0) {
        /* No keys: loopback only, and not through a proxy on this host (SPEC 9.7). */
        if (api_direct_loopback(c, req)) return true;
        http_respond_error(c, 403, "forbidden",
                           "no api_keys are configured: the API only accepts direct loopback requests");
        return false;
    }
    const char *auth = http_request_header(req, "Authorization");
    const char *key = http_request_header(req, "X-API-Key");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) key = auth + 7;
    if (key && key_matches(cfg, key)) return true;
    http_respond_error(c, 401, "unauthorized", key ? "invalid API key" : "missing API key");
    return false;
}

/* ---- publishing ---- */

static json_t *parse_body(conn_t *c, const http_request_t *req)
{
    json_error_t err;
    json_t *body = req->body ? json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (!json_is_object(body)) {
        http_respond_error(c, 400, "bad_request", body ? "the body must be a JSON object" : "invalid JSON body");
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Channel names the API may publish to: client-valid names, plus $all. */
static bool api_channel_valid(const char *name, size_t len)
{
    return (len == 4 && memcmp(name, "$all", 4) == 0) || channel_name_valid(name, len);
}

/* Checks event name and data; returns the compact data text (caller frees) or NULL
 * after answering 400. */
static char *check_event(conn_t *c, json_t *event, json_t *data)
{
    if (!json_is_string(event) || json_string_length(event) == 0 || json_string_length(event) > 255) {
        http_respond_error(c, 400, "bad_request", "\"event\" must be a string of 1-255 bytes");
        return NULL;
    }
    if (native_is_control_name(json_string_value(event), json_string_length(event))) {
        http_respond_error(c, 400, "bad_request", "event names may not be control message types");
        return NULL;
    }
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) http_respond_error(c, 400, "bad_request", "\"data\" cannot be encoded");
    return text;
}

static void respond_publish_failure(conn_t *c, int rc)
{
    if (rc == HERALD_EUNAVAIL) http_respond_error(c, 503, "unavailable", "a required dependency is down");
    else http_respond_error(c, 503, "unavailable", err_str(rc));
}

static void finish_publish(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    const publish_result_t *r = &pw->results[0];
    if (c->state != CONN_OPEN) {
        /* the client left before the commit: nothing to answer */
    } else if (pw->status < 0) respond_publish_failure(c, pw->status);
    else if (r->duplicate)
        http_respond_json(c, 200, json_pack("{sbsssIsb}", "success", 1, "id", r->id, "offset", (json_int_t)r->offset,
                                            "duplicate", 1));
    else
        http_respond_json(c, 200, json_pack("{sbsssI}", "success", 1, "id", r->id, "offset", (json_int_t)r->offset));
    pubwait_free(pw);
}

void api_publish(conn_t *c, const http_request_t *req)
{
    json_t *body = parse_body(c, req);
    if (!body) return;
    json_t *ch = json_object_get(body, "channel");
    json_t *idem = json_object_get(body, "idempotency_key");
    if (!json_is_string(ch) || !api_channel_valid(json_string_value(ch), json_string_length(ch))) {
        http_respond_error(c, 400, "bad_request",
                           "\"channel\" must be a valid channel name (1-255 bytes, no spaces or control characters)");
        json_decref(body);
        return;
    }
    if (idem && (!json_is_string(idem) || json_string_length(idem) == 0 || json_string_length(idem) > 255)) {
        http_respond_error(c, 400, "bad_request", "\"idempotency_key\" must be a string of 1-255 bytes");
        json_decref(body);
        return;
    }
    char *data = check_event(c, json_object_get(body, "event"), json_object_get(body, "data"));
    if (!data) {
        json_decref(body);
        return;
    }
    json_t *event = json_object_get(body, "event");
    pubwait_t *pw = pubwait_create(c, 1, true, finish_publish, NULL);
    if (!pw) {
        http_respond_error(c, 503, "unavailable", "out of memory");
    } else {
        pubwait_publish(pw, 0, json_string_value(ch), json_string_length(ch), json_string_value(event),
                        json_string_length(event), data, strlen(data), idem ? json_string_value(idem) : NULL,
                        idem ? json_string_length(idem) : 0);
        pubwait_start(pw);
    }
    free(data);
    json_decref(body);
}

static void finish_broadcast(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    json_t *channels = pw->ctx;
    if (c->state == CONN_OPEN && pw->status < 0) {
        respond_publish_failure(c, pw->status);
    } else if (c->state == CONN_OPEN) {
        json_t *offsets = json_object();
        for (size_t i = 0; i < pw->count; i++)
            json_object_set_new(offsets, json_string_value(json_array_get(channels, i)),
                                json_integer((json_int_t)pw->results[i].offset));
        http_respond_json(c, 200, json_pack("{sbso}", "success", 1, "offsets", offsets));
    }
    json_decref(channels);
    pubwait_free(pw);
}

static void finish_compat(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    if (c->state == CONN_OPEN && pw->status < 0) respond_publish_failure(c, pw->status);
    else if (c->state == CONN_OPEN) http_respond_json(c, 200, json_pack("{sb}", "success", 1));
    pubwait_free(pw);
}

void api_broadcast(conn_t *c, const http_request_t *req)
{
    json_t *body = parse_body(c, req);
    if (!body) return;
    json_t *channels = json_object_get(body, "channels");
    if (!json_is_array(channels) || json_array_size(channels) == 0) {
        http_respond_error(c, 400, "bad_request", "\"channels\" must be a non-empty array");
        json_decref(body);
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(channels, i, v) {
        if (!json_is_string(v) || !api_channel_valid(json_string_value(v), json_string_length(v))) {
            http_respond_error(c, 400, "bad_request", "every channel must be a valid channel name");
            json_decref(body);
            return;
        }
    }
    char *data = check_event(c, json_object_get(body, "event"), json_object_get(body, "data"));
    if (!data) {
        json_decref(body);
        return;
    }
    json_t *event = json_object_get(body, "event");
    pubwait_t *pw = pubwait_create(c, json_array_size(channels), true, finish_broadcast, json_incref(channels));
    if (!pw) {
        json_decref(channels);
        http_respond_error(c, 503, "unavailable", "out of memory");
    } else {
        json_array_foreach(channels, i, v)
            pubwait_publish(pw, i, json_string_value(v), json_string_length(v), json_string_value(event),
                            json_string_length(event), data, strlen(data), NULL, 0);
        pubwait_start(pw);
    }
    free(data);
    json_decref(body);
}

/* POST /broadcast, the two shapes existing backends send (SPEC 2):
 *  {"type":"user","target":"SP1..","event":"stream:created","payload":{}}  channel type:target
 *  {"type":"job_created","data":{},"channel":"jobs"}                      event is type */
void api_broadcast_compat(conn_t *c, const http_request_t *req)
{
    json_t *body = parse_body(c, req);
    if (!body) return;
    json_t *type = json_object_get(body, "type");
    json_t *event = json_object_get(body, "event");
    if (!json_is_string(type) || json_string_length(type) == 0) {
        http_respond_error(c, 400, "bad_request", "\"type\" must be a non-empty string");
        json_decref(body);
        return;
    }
    char *channel = NULL;
    json_t *data;
    if (event) {
        json_t *target = json_object_get(body, "target");
        if (target && !json_is_string(target)) {
            http_respond_error(c, 400, "bad_request", "\"target\" must be a string");
            json_decref(body);
            return;
        }
        if (strcmp(json_string_value(type), "global") == 0) channel = strdup("$all");
        else if (target) {
            buf_t b = {0};
            buf_printf(&b, "%s:%s", json_string_value(type), json_string_value(target));
            channel = b.data;
        } else channel = strdup(json_string_value(type));
        data = json_object_get(body, "payload");
        if (!data) data = json_object_get(body, "data");
    } else {
        event = type;
        json_t *ch = json_object_get(body, "channel");
        if (ch && !json_is_string(ch)) {
            http_respond_error(c, 400, "bad_request", "\"channel\" must be a string");
            json_decref(body);
            return;
        }
        channel = strdup(ch ? json_string_value(ch) : "$all");
        data = json_object_get(body, "data");
    }
    if (!channel || !api_channel_valid(channel, strlen(channel))) {
        http_respond_error(c, 400, "bad_request", "the resulting channel name is not valid");
        free(channel);
        json_decref(body);
        return;
    }
    char *text = check_event(c, event, data);
    pubwait_t *pw = text ? pubwait_create(c, 1, true, finish_compat, NULL) : NULL;
    if (text && !pw) http_respond_error(c, 503, "unavailable", "out of memory");
    if (pw) {
        pubwait_publish(pw, 0, channel, strlen(channel), json_string_value(event), json_string_length(event), text,
                        strlen(text), NULL, 0);
        pubwait_start(pw);
    }
    free(text);
    free(channel);
    json_decref(body);
}

/* ---- disconnect ---- */

static void disconnect_done(worker_t *w, void *arg)
{
    (void)w;
    disconnect_req_t *r = arg;
    conn_t *c = r->conn;
    if (r->slot) http_conn_answering(c, r->slot);
    if (c->state == CONN_OPEN)
        http_respond_json(c, 200, json_pack("{sbsI}", "success", 1, "disconnected", (json_int_t)atomic_load(&r->count)));
    if (r->slot) http_conn_answered(c, r->slot);
    conn_release(c);
    free(r);
}

/* Every worker closes its matching connections; the answer counts them, so it is
 * sent once the last worker has reported (the request is deferred meanwhile). */
void api_disconnect(conn_t *c, const http_request_t *req)
{
    json_t *body = parse_body(c, req);
    if (!body) return;
    json_t *user = json_object_get(body, "user"), *id = json_object_get(body, "connection_id");
    json_t *who = user ? user : id;
    if (!json_is_string(who) || json_string_length(who) == 0 || (user && id)) {
        http_respond_error(c, 400, "bad_request", "give \"user\" or \"connection_id\" (a string)");
        json_decref(body);
        return;
    }
    server_t *s = c->worker->server;
    disconnect_req_t *r = calloc(1, sizeof *r + json_string_length(who) + 1);
    if (!r) {
        http_respond_error(c, 503, "unavailable", "out of memory");
        json_decref(body);
        return;
    }
    memcpy(r->who, json_string_value(who), json_string_length(who));
    r->by = who == id ? DISCONNECT_CONNECTION : DISCONNECT_USER;
    r->origin = c->worker;
    r->done = disconnect_done;
    r->conn = c;
    conn_hold(c);
    r->slot = http_conn_defer(c);   /* NULL (out of memory): the answer goes straight out */
    server_disconnect_everywhere(s, r);   /* every node's, with redis.url */
    json_decref(body);
}

/* ---- access tokens ---- */

static json_t *token_json(const token_info_t *t, bool with_secret)
{
    json_t *ch = json_array();
    for (size_t i = 0; i < t->channel_count; i++) json_array_append_new(ch, json_string(t->channels[i]));
    char ts[ISO_TIME_LEN];
    time_iso8601((uint64_t)t->created_at_ms, ts);
    json_t *o = json_pack("{sssoss}", "id", t->id, "channels", ch, "created_at", ts);
    json_object_set_new(o, "label", t->label ? json_string(t->label) : json_null());
    if (with_secret) json_object_set_new(o, "token", json_string(t->secret));
    return o;
}

static void list_one(void *arg, const token_info_t *t) { json_array_append_new(arg, token_json(t, false)); }

/* GET and POST /api/tokens: list, or create one (201; the only time the secret is shown). */
void api_tokens(conn_t *c, const http_request_t *req)
{
    server_t *s = c->worker->server;
    if (strcmp(req->method, "GET") == 0) {
        json_t *arr = json_array();
        if (tokens_list(s->tokens, list_one, arr) < 0) {
            json_decref(arr);
            http_respond_error(c, 503, "unavailable", "the token store is unavailable");
            return;
        }
        http_respond_json(c, 200, json_pack("{so}", "tokens", arr));
        return;
    }
    json_t *body = parse_body(c, req);
    if (!body) return;
    json_t *channels = json_object_get(body, "channels"), *label = json_object_get(body, "label");
    size_t n = json_array_size(channels), i;
    json_t *v;
    bool ok = json_is_array(channels) && n > 0 && n <= 100 && (!label || json_is_string(label) || json_is_null(label));
    char why[160] = "\"channels\" must be a non-empty array of channel patterns; \"label\" a string";
    json_array_foreach(channels, i, v) {
        if (!ok) break;
        char reason[120];
        if (!json_is_string(v) || !config_pattern_valid(json_string_value(v), reason, sizeof reason)) {
            ok = false;
            if (json_is_string(v)) snprintf(why, sizeof why, "%s: %s", json_string_value(v), reason);
        }
    }
    if (!ok) {
        http_respond_error(c, 400, "bad_request", why);
        json_decref(body);
        return;
    }
    char **list = calloc(n, sizeof *list);
    json_array_foreach(channels, i, v) if (list) list[i] = (char *)json_string_value(v);
    token_info_t t;
    int rc = list ? tokens_create(s->tokens, list, n, json_string_value(label), &t) : HERALD_ENOMEM;
    free(list);
    if (rc < 0) {
        http_respond_error(c, 503, "unavailable", "the token store is unavailable");
    } else {
        http_respond_json(c, 201, token_json(&t, true));
        token_info_free(&t);
    }
    json_decref(body);
}

/* DELETE /api/tokens/<id or token>: revoked, and its connections close with 4003. */
void api_token_revoke(conn_t *c, const http_request_t *req)
{
    server_t *s = c->worker->server;
    char who[256];
    const char *raw = req->path + strlen("/api/tokens/");
    long n = http_percent_decode(raw, strlen(raw), who, sizeof who);
    char id[TOKEN_ID_LEN + 1];
    int rc = n > 0 && (size_t)n < sizeof who ? tokens_revoke(s->tokens, who, id) : HERALD_ENOTFOUND;
    if (rc == HERALD_ENOTFOUND) {
        http_respond_error(c, 404, "not_found", "no live token with this id");
        return;
    }
    if (rc < 0) {
        http_respond_error(c, 503, "unavailable", "the token store is unavailable");
        return;
    }
    disconnect_req_t *r = calloc(1, sizeof *r + sizeof id);
    if (r) {
        memcpy(r->who, id, sizeof id);
        r->by = DISCONNECT_TOKEN;
        /* every node's connections at once; the revocation itself reaches the other
         * nodes' stores through Redis within a couple of seconds */
        server_disconnect_everywhere(s, r);
    }
    http_respond_json(c, 200, json_pack("{sb}", "success", 1));
}

/* ---- reading ---- */

static bool query_uint(const http_request_t *req, const char *key, bool *present, uint64_t *out)
{
    char v[32];
    long n = http_query_param(req->query, key, 0, v, sizeof v);
    *present = n >= 0;
    if (n < 0) return true;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (n == 0 || *end || v[0] == '-' || n >= (long)sizeof v) return false;
    *out = x;
    return true;
}

void api_history(conn_t *c, const http_request_t *req)
{
    char channel[512];
    long n = http_query_param(req->query, "channel", 0, channel, sizeof channel);
    if (n <= 0 || n >= (long)sizeof channel || !api_channel_valid(channel, (size_t)n)) {
        http_respond_error(c, 400, "bad_request", "?channel= must name a valid channel");
        return;
    }
    bool has_since, has_limit;
    uint64_t since = 0, limit = HISTORY_DEFAULT_LIMIT;
    if (!query_uint(req, "since", &has_since, &since) || !query_uint(req, "limit", &has_limit, &limit)) {
        http_respond_error(c, 400, "bad_request", "since and limit are non-negative integers");
        return;
    }
    if (limit > HISTORY_MAX_LIMIT) limit = HISTORY_MAX_LIMIT;
    server_t *s = c->worker->server;
    seq_snapshot_t snap;
    int hrc = sequencer_history(s->seq, channel, (size_t)n, has_since, since, (size_t)limit, &snap);
    if (hrc < 0) {
        http_respond_error(c, 503, "unavailable", hrc == HERALD_EUNAVAIL ? "redis is unavailable" : "out of memory");
        return;
    }
    buf_t b = {0};
    int rc = buf_append_str(&b, "{\"events\":");
    rc |= event_append_envelopes(&b, snap.events, snap.event_count);
    rc |= buf_printf(&b, ",\"offset\":%llu,\"epoch\":\"%s\"}", (unsigned long long)snap.latest,
                     sequencer_epoch(s->seq));
    seq_snapshot_release(&snap);
    if (rc) http_respond_error(c, 503, "unavailable", "out of memory");
    else http_respond_json_text(c, 200, b.data, b.len);
    buf_free(&b);
}

void api_health(conn_t *c, const http_request_t *req)
{
    (void)req;
    server_t *s = c->worker->server;
    char ts[ISO_TIME_LEN];
    time_iso8601(time_wall_ms(), ts);
    char why[200];
    if (s->cluster && !cluster_is_up(s->cluster, why, sizeof why)) {
        http_respond_json(c, 503, json_pack("{sssssssIsI}", "status", "degraded", "reason", why, "timestamp", ts,
                                            "uptime_s", (json_int_t)((time_mono_ms() - s->started_mono_ms) / 1000),
                                            "connections", (json_int_t)metrics_connections_total(&s->metrics)));
        return;
    }
    http_respond_json(c, 200, json_pack("{sssssIsI}", "status", "ok", "timestamp", ts, "uptime_s",
                                        (json_int_t)((time_mono_ms() - s->started_mono_ms) / 1000), "connections",
                                        (json_int_t)metrics_connections_total(&s->metrics)));
}

/* ---- cluster stats: every node's heartbeat, read from Redis ---- */

typedef struct cluster_stats_req {
    conn_t *conn;
    worker_t *origin;
    struct http_slot *slot;
    int status;
    char *json;
    size_t len;
} cluster_stats_req_t;

static void cluster_stats_answer(worker_t *w, void *arg)
{
    (void)w;
    cluster_stats_req_t *q = arg;
    conn_t *c = q->conn;
    if (q->slot) http_conn_answering(c, q->slot);
    if (c->state == CONN_OPEN) {
        if (q->status < 0) http_respond_error(c, 503, "unavailable", "redis is unavailable");
        else http_respond_json_text(c, 200, q->json, q->len);
    }
    if (q->slot) http_conn_answered(c, q->slot);
    conn_release(c);
    free(q->json);
    free(q);
}

static void cluster_stats_read(void *arg, int status, const char *json, size_t len)
{
    cluster_stats_req_t *q = arg;
    q->status = status;
    if (status == 0 && !(q->json = strndup(json, len))) q->status = HERALD_ENOMEM;
    q->len = q->json ? len : 0;
    if (worker_call(q->origin, cluster_stats_answer, q) < 0) cluster_stats_answer(q->origin, q);
}

/* Without Redis the cluster is this node alone. */
static void local_cluster_stats(conn_t *c)
{
    server_t *s = c->worker->server;
    buf_t b = {0};
    int rc = buf_printf(&b, "{\"scope\":\"cluster\",\"nodes\":[{\"node_id\":\"%s\",\"connections\":%ld,\"channels\":%ld,"
                            "\"messages\":{\"published\":%lu,\"delivered\":%lu,\"dropped\":%lu},\"uptime_s\":%llu,"
                            "\"age_ms\":0}],\"connections\":{\"total\":%ld}}",
                        s->node_id, metrics_connections_total(&s->metrics), sequencer_active_channels(s->seq),
                        atomic_load(&s->metrics.published), atomic_load(&s->metrics.delivered),
                        atomic_load(&s->metrics.dropped),
                        (unsigned long long)((time_mono_ms() - s->started_mono_ms) / 1000),
                        metrics_connections_total(&s->metrics));
    if (rc) http_respond_error(c, 503, "unavailable", "out of memory");
    else http_respond_json_text(c, 200, b.data, b.len);
    buf_free(&b);
}

static void api_cluster_stats(conn_t *c)
{
    server_t *s = c->worker->server;
    if (!s->cluster) {
        local_cluster_stats(c);
        return;
    }
    cluster_stats_req_t *q = calloc(1, sizeof *q);
    if (!q) {
        http_respond_error(c, 503, "unavailable", "out of memory");
        return;
    }
    q->conn = c;
    q->origin = c->worker;
    conn_hold(c);
    q->slot = http_conn_defer(c);
    if (cluster_stats(s->cluster, cluster_stats_read, q) < 0) cluster_stats_read(q, HERALD_EUNAVAIL, NULL, 0);
}

void api_stats(conn_t *c, const http_request_t *req)
{
    server_t *s = c->worker->server;
    char lim[32];
    char scope[16];
    if (http_query_param(req->query, "scope", 0, scope, sizeof scope) > 0) {
        if (strcmp(scope, "cluster") == 0) {
            api_cluster_stats(c);
            return;
        }
        if (strcmp(scope, "node") != 0) {
            http_respond_error(c, 400, "bad_request", "?scope= is node (the default) or cluster");
            return;
        }
    }
    size_t limit = 100;
    if (http_query_param(req->query, "limit", 0, lim, sizeof lim) > 0) {
        char *end;
        long v = strtol(lim, &end, 10);
        if (*end || v < 0) {
            http_respond_error(c, 400, "bad_request", "?limit= must be a non-negative integer");
            return;
        }
        limit = (size_t)v;
    }
    buf_t b = {0};
    int rc = buf_printf(&b, "{\"connections\":{\"total\":%ld,\"by_protocol\":{\"ws\":%ld,\"socketio\":%ld,\"sse\":%ld},\"by_channel\":",
                        metrics_connections_total(&s->metrics), atomic_load(&s->metrics.connections[PROTO_WS]),
                        atomic_load(&s->metrics.connections[PROTO_SOCKETIO]),
                        atomic_load(&s->metrics.connections[PROTO_SSE]));
    rc |= sequencer_render_by_channel(s->seq, limit, &b);
    rc |= buf_printf(&b, "},\"channels\":%ld,\"messages\":{\"published\":%lu,\"delivered\":%lu,\"dropped\":%lu},"
                         "\"slow_consumers\":%lu,\"workers\":%u",
                     sequencer_active_channels(s->seq), atomic_load(&s->metrics.published),
                     atomic_load(&s->metrics.delivered), atomic_load(&s->metrics.dropped),
                     atomic_load(&s->metrics.slow_consumers), s->worker_count);
    rc |= sources_render_stats(s->sources, &b);
    rc |= buf_append_str(&b, "}");
    if (rc) http_respond_error(c, 503, "unavailable", "out of memory");
    else http_respond_json_text(c, 200, b.data, b.len);
    buf_free(&b);
}

void api_metrics(conn_t *c, const http_request_t *req)
{
    (void)req;
    server_t *s = c->worker->server;
    buf_t b = {0};
    int rc = metrics_render(&s->metrics, sequencer_active_channels(s->seq), &b);
    if (rc == 0) rc = sources_render_metrics(s->sources, &b);
    if (rc == 0 && s->cluster)
        rc = buf_printf(&b,
                        "# HELP herald_redis_up Whether both connections to Redis are ready (redis.url set).\n"
                        "# TYPE herald_redis_up gauge\nherald_redis_up %d\n",
                        cluster_is_up(s->cluster, NULL, 0) ? 1 : 0);
    if (rc < 0)
        http_respond_error(c, 503, "unavailable", "out of memory");
    else
        http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    buf_free(&b);
}

/* A small page that shows the live numbers; it reads /stats, nothing else. */
static const char dashboard_html[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>herald</title>"
    "<style>body{font:15px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}h1{font-size:1.4em}"
    "code{background:#f4f4f4;padding:.1em .3em}</style></head><body><h1>herald</h1>"
    "<p>Real-time event gateway. Connect to <code>/ws</code>; publish with <code>POST /api/publish</code>.</p>"
    "<table id=\"t\"><tr><td>loading…</td></tr></table><h2>Channels</h2><table id=\"c\"></table><script>"
    "async function tick(){try{const s=await (await fetch('/stats?limit=20')).json();"
    "const rows=[['connections',s.connections.total],['channels',s.channels],['published',s.messages.published],"
    "['delivered',s.messages.delivered],['dropped',s.messages.dropped]];"
    "document.getElementById('t').innerHTML=rows.map(r=>'<tr><th>'+r[0]+'</th><td>'+r[1]+'</td></tr>').join('');"
    "const c=document.getElementById('c');c.textContent='';"
    "for(const [k,v] of Object.entries(s.connections.by_channel)){const tr=c.insertRow();"
    "tr.insertCell().textContent=k;tr.insertCell().textContent=v;}}catch(e){}}"
    "tick();setInterval(tick,2000);</script></body></html>";

void api_dashboard(conn_t *c, const http_request_t *req)
{
    (void)req;
    http_respond(c, 200, "text/html; charset=utf-8", dashboard_html, sizeof dashboard_html - 1,
                 "Cache-Control: no-store\r\n");
}
