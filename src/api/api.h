/* api: the HTTP API handlers (SPEC section 2): publish, broadcast and the
 * /broadcast compatibility shapes, health, stats, metrics, history; and the API
 * key check that guards the /api/ paths and /broadcast.
 *
 * Each handler takes a complete request and queues exactly one response. Owns
 * nothing. Loop thread of the connection. */
#ifndef HERALD_API_H
#define HERALD_API_H

#include <stdbool.h>

#include "core/conn.h"
#include "http/http_request.h"

/* Returns true when the request may use the API; otherwise it has answered 401/403. */
bool api_authorize(conn_t *c, const http_request_t *req);
/* A request made directly from this host, not through a proxy on it (no
 * X-Forwarded-For or Forwarded): what an endpoint without a secret accepts. */
bool api_direct_loopback(const conn_t *c, const http_request_t *req);

void api_publish(conn_t *c, const http_request_t *req);
void api_broadcast(conn_t *c, const http_request_t *req);
void api_broadcast_compat(conn_t *c, const http_request_t *req);
void api_disconnect(conn_t *c, const http_request_t *req);
void api_tokens(conn_t *c, const http_request_t *req);
void api_token_revoke(conn_t *c, const http_request_t *req);
void api_history(conn_t *c, const http_request_t *req);
void api_health(conn_t *c, const http_request_t *req);
void api_stats(conn_t *c, const http_request_t *req);
void api_metrics(conn_t *c, const http_request_t *req);
void api_dashboard(conn_t *c, const http_request_t *req);

#endif
