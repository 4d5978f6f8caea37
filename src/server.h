/* server: the wiring of a running herald: configuration, workers, the sequencer,
 * metrics, and the routing of each HTTP request to its handler (API, WebSocket
 * upgrade, pages).
 *
 * Owns: the workers and their listeners, the sequencer, the metrics. Created and
 * destroyed on the main thread; server_route is called on worker threads. */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

struct worker;
struct event;
struct sequencer;
struct conn;
struct http_request;
struct disconnect_req;

typedef struct server {
    const config_t *cfg;
    struct worker *workers;
    unsigned worker_count;
    struct sequencer *seq;
    metrics_t metrics;
    uint64_t started_wall_ms;
    uint64_t started_mono_ms;
    atomic_long client_connections;   /* counted against limits.max_connections */
    struct iplimit *iplimit;          /* limits.connections_per_ip_per_second */
    struct jwt_verifier *jwt;         /* NULL when auth.jwt is not configured */
    struct tokens *tokens;            /* access tokens in the data dir's store */
    struct ssl_ctx_st *tls_ctx;       /* NULL: plain TCP */
    struct sio_registry *sio;         /* Socket.IO session ids -> owning worker */
    struct cluster *cluster;          /* the Redis engine, when redis.url is set */
    struct sources *sources;          /* chain event sources, or NULL */
    char node_id[65];                 /* node_id, "auto" resolved */
    int64_t tokens_checked_ms;        /* revocations seen up to here (worker 0 polls) */
    struct cidr *trusted_proxies;     /* parsed from the config */
    size_t trusted_proxy_count;
    char version[32];
} server_t;

/* Binds the listeners and starts the workers. Returns 0 or a negative error (logged). */
int server_start(server_t *s, const config_t *cfg);
/* Graceful stop: clients get close 1001, the store is flushed; returns when every
 * worker has finished (or shutdown_timeout_s passed). */
void server_stop(server_t *s);

/* The client's address: the peer, or from X-Forwarded-For behind a trusted proxy. */
void server_client_address(const struct conn *c, const struct http_request *req, uint8_t out[16]);

/* Admission of a new client connection (WebSocket, SSE): Origin in
 * allowed_origins, under limits.max_connections, under the per-address connection
 * rate. Otherwise answers 403/503/429 and returns false. */
bool server_admit(struct conn *c, const struct http_request *req);

/* RFC 6455 handshake checks (method, Upgrade/Connection, version 13, key), then
 * server_admit. Otherwise answers 400/405/426/403/503/429 and returns false. */
bool server_websocket_ok(struct conn *c, const struct http_request *req);

/* Worker thread: a complete HTTP request arrived on c. Answers it (queueing the
 * response), upgrades it, or takes it over (SSE). */
void server_route(struct conn *c, struct http_request *req);

/* Any thread: delivers a sequenced event to every worker (called by the sequencer
 * in offset order). Takes no reference of its own: adds one per worker. */
void server_dispatch(void *server, struct event *ev);

/* Any thread: closes matching clients on every node (this one first), then runs
 * r->done on r->origin with the total in r->count. Takes r (see worker.h). */
int server_disconnect_everywhere(server_t *s, struct disconnect_req *r);

#define HERALD_VERSION "0.1.0"

#endif
