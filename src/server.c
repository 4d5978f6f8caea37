#include "server.h"
#include "api/api.h"
#include "auth/iplimit.h"
#include "auth/jwt.h"
#include "auth/tokens.h"
#include "chain/sources.h"
#include "cluster/cluster.h"
#include "core/tls.h"
#include "core/err.h"
#include "http/http_request.h"
#include "http/http_response.h"
#include "hub/event.h"
#include "hub/sequencer.h"
#include "log.h"
#include "proto/native.h"
#include "proto/route.h"
#include "proto/socketio.h"
#include "proto/sse.h"
#include "proto/ws_transport.h"
#include "worker.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- listeners ---- */

/* One listening socket per worker on the same address (SO_REUSEPORT): the kernel
 * spreads new connections over the workers, with no shared accept lock. */
static int open_listener(const config_t *cfg)
{
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->listen_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    const char *host = cfg->listen_host && *cfg->listen_host ? cfg->listen_host : NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0) return HERALD_EINVAL;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd >= 0 ? fd : HERALD_EIO;
}

static unsigned worker_count_for(const config_t *cfg)
{
    if (cfg->workers) return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

void server_dispatch(void *ctx, event_t *ev)
{
    server_t *s = ctx;
    atomic_fetch_add_explicit(&s->metrics.published, 1, memory_order_relaxed);
    for (unsigned i = 0; i < s->worker_count; i++) {
        if (worker_post(&s->workers[i], INBOX_EVENT, event_ref(ev), 0) < 0) {
            event_unref(ev);
            log_msg(LOG_ERROR, "out of memory queueing an event", "channel", ev->channel, NULL);
        }
    }
}

/* ---- the cluster engine's hooks (its thread) ---- */

static void on_cluster_event(void *ctx, event_t *ev, bool own)
{
    server_t *s = ctx;
    sequencer_cluster_event(s->seq, ev, own);
}

static void on_cluster_synced(void *ctx, const char *channel, size_t len, int status, uint64_t offset,
                              event_t **events, size_t count)
{
    server_t *s = ctx;
    sequencer_cluster_synced(s->seq, channel, len, status, offset, events, count);
}

static void on_cluster_link(void *ctx, bool up, const char *epoch)
{
    server_t *s = ctx;
    if (!sequencer_cluster_link(s->seq, up, epoch)) return;
    log_msg(LOG_WARN, "the cluster's epoch changed (Redis lost its data): closing every client with 1012", "epoch",
            epoch, NULL);
    disconnect_req_t *r = calloc(1, sizeof *r + 1);
    if (!r) return;
    r->by = DISCONNECT_ALL;
    worker_broadcast_disconnect(s, r);
}

/* Runs on worker 0 once this node's workers closed what another node asked for. */
static void remote_disconnect_done(worker_t *w, void *arg)
{
    disconnect_req_t *r = arg;
    cluster_disconnect_answer(w->server->cluster, r->reply, atomic_load(&r->count));
    free(r);
}

static void on_cluster_disconnect(void *ctx, int by, const char *who, void *reply)
{
    server_t *s = ctx;
    size_t len = strlen(who);
    disconnect_req_t *r = calloc(1, sizeof *r + len + 1);
    if (!r) {
        cluster_disconnect_answer(s->cluster, reply, 0);
        return;
    }
    memcpy(r->who, who, len);
    r->by = by;
    r->reply = reply;
    r->origin = &s->workers[0];
    r->done = remote_disconnect_done;
    worker_broadcast_disconnect(s, r);
}

static void on_cluster_stats(void *ctx, buf_t *b)
{
    server_t *s = ctx;
    buf_printf(b,
               "\"connections\":%ld,\"channels\":%ld,\"messages\":{\"published\":%lu,\"delivered\":%lu,"
               "\"dropped\":%lu},\"uptime_s\":%llu",
               metrics_connections_total(&s->metrics), sequencer_active_channels(s->seq),
               atomic_load(&s->metrics.published), atomic_load(&s->metrics.delivered),
               atomic_load(&s->metrics.dropped),
               (unsigned long long)((time_mono_ms() - s->started_mono_ms) / 1000));
}

/* The other nodes answered (or 1 s passed): back to the request's worker. */
static void cluster_counted(void *arg, long count)
{
    disconnect_req_t *r = arg;
    atomic_fetch_add(&r->count, count);
    if (r->then) worker_call(r->origin, r->then, r);
    else free(r);
}

/* This node's workers are done: now the other nodes. */
static void local_counted(worker_t *w, void *arg)
{
    disconnect_req_t *r = arg;
    if (cluster_disconnect(w->server->cluster, r->by, r->who, cluster_counted, r) < 0) cluster_counted(r, 0);
}

int server_disconnect_everywhere(server_t *s, disconnect_req_t *r)
{
    if (!s->cluster || r->by == DISCONNECT_ALL) return worker_broadcast_disconnect(s, r);
    r->then = r->done;
    if (!r->origin) r->origin = &s->workers[0];
    r->done = local_counted;
    return worker_broadcast_disconnect(s, r);
}

/* "<hostname>-<port>", in node_id's character set. */
static void resolve_node_id(server_t *s, const config_t *cfg)
{
    if (cfg->node_id && strcmp(cfg->node_id, "auto") != 0) {
        snprintf(s->node_id, sizeof s->node_id, "%s", cfg->node_id);
        return;
    }
    char host[48] = "node";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            *p = '_';
    snprintf(s->node_id, sizeof s->node_id, "%s-%u", host[0] ? host : "node", cfg->listen_port);
}

/* Access tokens shared with the other nodes (cluster engine thread). */
static int64_t on_cluster_tokens_fingerprint(void *ctx)
{
    server_t *s = ctx;
    return s->tokens ? tokens_fingerprint(s->tokens) : -1;
}

static json_t *on_cluster_tokens_export(void *ctx, int64_t since_ms)
{
    server_t *s = ctx;
    return s->tokens ? tokens_export(s->tokens, since_ms) : NULL;
}

/* Revoked on another node: its connections here close now, not at the next
 * housekeeping pass. */
static void token_revoked_elsewhere(void *arg, const char *id)
{
    server_t *s = arg;
    disconnect_req_t *r = calloc(1, sizeof *r + strlen(id) + 1);
    if (!r) return;
    memcpy(r->who, id, strlen(id));
    r->by = DISCONNECT_TOKEN;
    worker_broadcast_disconnect(s, r);
}

static void on_cluster_tokens_import(void *ctx, json_t *rows)
{
    server_t *s = ctx;
    size_t bad = 0;
    if (s->tokens) tokens_import(s->tokens, rows, token_revoked_elsewhere, s, &bad);
    if (bad) log_msg(LOG_WARN, "redis: malformed access token rows ignored", NULL);
}

static int start_cluster(server_t *s, const config_t *cfg)
{
    cluster_hooks_t hooks = {.ctx = s,
                             .event = on_cluster_event,
                             .synced = on_cluster_synced,
                             .link = on_cluster_link,
                             .disconnect = on_cluster_disconnect,
                             .stats = on_cluster_stats,
                             .tokens_fingerprint = on_cluster_tokens_fingerprint,
                             .tokens_export = on_cluster_tokens_export,
                             .tokens_import = on_cluster_tokens_import};
    char why[256];
    s->cluster = cluster_create(cfg, s->node_id, &hooks, why, sizeof why);
    if (!s->cluster) {
        log_msg(LOG_ERROR, "cannot use redis.url", "error", why, NULL);
        return HERALD_EINVAL;
    }
    if (cfg->history.durable)
        log_msg(LOG_INFO,
                "redis.url is set: history and offsets live in Redis (access tokens stay in the local store, "
                "shared through Redis)",
                NULL);
    if (sequencer_attach_cluster(s->seq, s->cluster) < 0) return HERALD_ENOMEM;
    return 0;
}

int server_start(server_t *s, const config_t *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->started_wall_ms = time_wall_ms();
    s->started_mono_ms = time_mono_ms();
    snprintf(s->version, sizeof s->version, "%s", HERALD_VERSION);
    s->seq = sequencer_create(cfg, server_dispatch, s);
    if (!s->seq) return HERALD_EIO;   /* logged: the store could not be opened */
    s->iplimit = iplimit_create();
    s->sio = sio_registry_create();
    if (!s->sio) return HERALD_ENOMEM;
    resolve_node_id(s, cfg);
    if (cfg->redis.url) {
        int rc = start_cluster(s, cfg);
        if (rc < 0) return rc;
    }
    s->trusted_proxies = calloc(cfg->trusted_proxy_count + 1, sizeof *s->trusted_proxies);
    s->worker_count = worker_count_for(cfg);
    s->workers = calloc(s->worker_count, sizeof *s->workers);
    if (!s->seq || !s->workers || !s->iplimit || !s->trusted_proxies) return HERALD_ENOMEM;
    s->tokens = tokens_open(cfg->data_dir);
    s->tokens_checked_ms = (int64_t)time_wall_ms();
    if (!s->tokens) return HERALD_EIO;   /* logged */
    if (cfg->auth.jwt_secret || cfg->auth.jwt_public_key_file) {
        char err[256];
        s->jwt = jwt_verifier_create(cfg, err, sizeof err);
        if (!s->jwt) {
            log_msg(LOG_ERROR, "cannot use auth.jwt", "error", err, NULL);
            return HERALD_EINVAL;
        }
    }
    if (cfg->tls.cert_file && cfg->tls.key_file) {
        char err[256];
        s->tls_ctx = tls_ctx_create(cfg->tls.cert_file, cfg->tls.key_file, err, sizeof err);
        if (!s->tls_ctx) {
            log_msg(LOG_ERROR, "cannot use tls", "error", err, NULL);
            return HERALD_EINVAL;
        }
    }
    for (size_t i = 0; i < cfg->trusted_proxy_count; i++)   /* validated by config */
        if (cidr_parse(cfg->trusted_proxies[i], &s->trusted_proxies[s->trusted_proxy_count]) == 0)
            s->trusted_proxy_count++;
    for (unsigned i = 0; i < s->worker_count; i++) {
        int fd = open_listener(cfg);
        if (fd < 0) {
            log_msg(LOG_ERROR, "cannot listen", "address", cfg->listen, "error", strerror(errno), NULL);
            s->worker_count = i;
            return fd;
        }
        int rc = worker_init(&s->workers[i], s, i, fd);
        if (rc < 0) {
            s->worker_count = i + 1;
            return rc;
        }
    }
    if (s->cluster && cluster_start(s->cluster) < 0) return HERALD_EIO;
    int src_rc = sources_create(s, cfg, &s->sources);
    if (src_rc < 0) return src_rc;   /* logged */
    for (unsigned i = 0; i < s->worker_count; i++) {
        int rc = worker_start(&s->workers[i]);
        if (rc < 0) return rc;
    }
    if (sources_start(s->sources) < 0) return HERALD_EIO;
    char n[16];
    snprintf(n, sizeof n, "%u", s->worker_count);
    log_msg(LOG_INFO, "listening", "address", cfg->listen, "workers", n, "tls", s->tls_ctx ? "on" : "off", "version",
            HERALD_VERSION, "node", s->node_id, "redis", cfg->redis.url ? "on" : "off", NULL);
    if (cfg->api_key_count == 0)
        log_msg(LOG_WARN, "no api_keys configured: the HTTP API accepts direct loopback requests only", NULL);
    return 0;
}

void server_stop(server_t *s)
{
    /* the sources publish through the workers: they end first */
    sources_stop(s->sources);
    for (unsigned i = 0; i < s->worker_count; i++) worker_post(&s->workers[i], INBOX_SHUTDOWN, NULL, 0);
    for (unsigned i = 0; i < s->worker_count; i++) {
        if (s->workers[i].thread) worker_join(&s->workers[i]);
    }
    /* No worker publishes any more: commit what is queued; its events and
     * acknowledgements land in the inboxes drained below. */
    sequencer_flush(s->seq);
    /* Publishes still waiting for Redis are answered (or failed) before it goes. */
    cluster_stop(s->cluster);
    /* Work still in flight between workers (calls, disconnect requests) completes
     * before anything is freed, so no worker posts into a freed inbox. */
    for (size_t pending = 1; pending;) {
        pending = 0;
        for (unsigned i = 0; i < s->worker_count; i++) pending += worker_drain(&s->workers[i]);
    }
    for (unsigned i = 0; i < s->worker_count; i++) worker_deinit(&s->workers[i]);
    free(s->workers);
    s->workers = NULL;
    sources_destroy(s->sources);
    s->sources = NULL;
    cluster_destroy(s->cluster);
    s->cluster = NULL;
    sequencer_destroy(s->seq);
    s->seq = NULL;
    iplimit_destroy(s->iplimit);
    s->iplimit = NULL;
    sio_registry_destroy(s->sio);
    s->sio = NULL;
    tokens_close(s->tokens);
    s->tokens = NULL;
    if (s->jwt) jwt_verifier_destroy(s->jwt);
    s->jwt = NULL;
    tls_ctx_destroy(s->tls_ctx);
    s->tls_ctx = NULL;
    free(s->trusted_proxies);
    s->trusted_proxies = NULL;
}

void server_client_address(const conn_t *c, const http_request_t *req, uint8_t out[16])
{
    const server_t *s = c->worker->server;
    client_address(c->peer.sin6_addr.s6_addr, http_request_header(req, "X-Forwarded-For"), s->trusted_proxies,
                   s->trusted_proxy_count, out);
}

/* ---- routing ---- */

static bool origin_allowed(const config_t *cfg, const char *origin)
{
    if (cfg->allowed_origin_count == 0 || !origin) return true;   /* non-browser clients send none */
    for (size_t i = 0; i < cfg->allowed_origin_count; i++)
        if (strcmp(cfg->allowed_origins[i], "*") == 0 || strcasecmp(cfg->allowed_origins[i], origin) == 0)
            return true;
    return false;
}

bool server_admit(conn_t *c, const http_request_t *req)
{
    const config_t *cfg = c->worker->cfg;
    server_t *s = c->worker->server;
    if (!origin_allowed(cfg, http_request_header(req, "Origin"))) {
        http_respond_error(c, 403, "forbidden", "origin not allowed");
        return false;
    }
    long open = atomic_load_explicit(&s->client_connections, memory_order_relaxed);
    if (open >= (long)cfg->limits.max_connections) {
        http_respond_error(c, 503, "unavailable", "server at limits.max_connections");
        return false;
    }
    uint8_t addr[16];
    server_client_address(c, req, addr);
    if (!iplimit_allow(s->iplimit, addr, cfg->limits.connections_per_ip_per_second, time_mono_ms())) {
        http_respond_error(c, 429, "rate_limited", "too many new connections from this address");
        return false;
    }
    return true;
}

/* RFC 6455 4.2.1 checks, in the order that gives the most useful answer. Returns
 * true when the upgrade may go ahead; otherwise the response is queued. */
bool server_websocket_ok(conn_t *c, const http_request_t *req)
{
    if (strcmp(req->method, "GET") != 0) {
        http_respond_error_with(c, 405, "method_not_allowed", "WebSocket handshakes use GET", "Allow: GET\r\n");
        return false;
    }
    const char *upgrade = http_request_header(req, "Upgrade");
    const char *connection = http_request_header(req, "Connection");
    if (!upgrade || !http_header_has_token(upgrade, "websocket") || !connection ||
        !http_header_has_token(connection, "upgrade")) {
        http_respond_error(c, 400, "bad_request", "this endpoint needs a WebSocket upgrade request");
        return false;
    }
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        http_respond_error_with(c, 426, "bad_request", "unsupported WebSocket version: use 13",
                                "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    if (!key || !ws_key_valid(key, strlen(key))) {
        http_respond_error(c, 400, "bad_request", "missing or malformed Sec-WebSocket-Key");
        return false;
    }
    return server_admit(c, req);
}

typedef void (*api_handler_fn)(conn_t *c, const http_request_t *req);

typedef struct route_entry {
    const char *path;
    const char *method;
    bool needs_api_key;
    api_handler_fn fn;
} route_entry_t;

static const route_entry_t api_routes[] = {
    {"/api/publish", "POST", true, api_publish},
    {"/api/broadcast", "POST", true, api_broadcast},
    {"/broadcast", "POST", true, api_broadcast_compat},
    {"/api/history", "GET", true, api_history},
    {"/api/disconnect", "POST", true, api_disconnect},
    {"/health", "GET", false, api_health},
    {"/stats", "GET", false, api_stats},
    {"/metrics", "GET", false, api_metrics},
    {"/", "GET", false, api_dashboard},
};

void server_route(conn_t *c, http_request_t *req)
{
    /* An upgrade request that is not upgraded leaves the stream in an unknown
     * protocol: answer it and close. */
    if (req->upgrade) http_set_close(c);
    const char *path = req->path;
    if (socketio_path(c->worker->cfg, path)) {
        socketio_route(c, req);
        return;
    }
    if (strcmp(path, "/events") == 0) {
        sse_start(c, req);
        return;
    }
    if (strcmp(path, "/ws") == 0) {
        if (server_websocket_ok(c, req)) ws_transport_upgrade(c, req, &native_app, PROTO_WS);
        return;
    }
    if (strncmp(path, "/ws/", 4) == 0) {
        route_params_t params;
        const route_t *r = route_match(c->worker->cfg, path, &params);
        if (!r) http_respond_error(c, 404, "not_found", "no such route");
        else if (server_websocket_ok(c, req))
            ws_transport_upgrade(c, req, r->format == ROUTE_FORMAT_DATA ? &route_data_app : &route_envelope_app,
                                 PROTO_WS);
        return;
    }
    if (strcmp(path, "/api/tokens") == 0 || strncmp(path, "/api/tokens/", 12) == 0) {
        bool one = path[11] == '/';
        const char *want = one ? "DELETE" : "GET, POST";
        if (one ? strcmp(req->method, "DELETE") != 0
                : strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0) {
            char allow[40], message[40];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", want);
            snprintf(message, sizeof message, "use %s", want);
            http_respond_error_with(c, 405, "method_not_allowed", message, allow);
        } else if (api_authorize(c, req)) {
            (one ? api_token_revoke : api_tokens)(c, req);
        }
        return;
    }
    for (size_t i = 0; i < sizeof api_routes / sizeof *api_routes; i++) {
        const route_entry_t *r = &api_routes[i];
        if (strcmp(path, r->path) != 0) continue;
        if (strcmp(req->method, r->method) != 0) {
            char allow[32], message[32];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", r->method);
            snprintf(message, sizeof message, "use %s", r->method);
            http_respond_error_with(c, 405, "method_not_allowed", message, allow);
            return;
        }
        if (r->needs_api_key && !api_authorize(c, req)) return;
        r->fn(c, req);
        return;
    }
    if (sources_route(c->worker->server->sources, c, req)) return;   /* a chainhook source's path */
    http_respond_error(c, 404, "not_found", "no such endpoint");
}
