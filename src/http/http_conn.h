/* http_conn: the HTTP/1.1 side of a connection: reads requests one at a time
 * (keep-alive and pipelining), hands each complete one to server_route, and
 * enforces request deadlines (a slow or silent client cannot hold a connection).
 * A route may switch the connection to another handler (WebSocket upgrade); the
 * bytes that follow the request are passed on to it.
 *
 * Owns: the connection's http_request_t while a request is being read (freed once
 * handled, so an idle keep-alive connection holds no parser memory).
 * Loop thread of the connection. */
#ifndef HERALD_HTTP_CONN_H
#define HERALD_HTTP_CONN_H

#include "core/conn.h"

extern const conn_handler_t http_conn_handler;

/* Makes a freshly accepted connection an HTTP one. */
void http_conn_start(conn_t *c);

/* A handler that answers later calls http_conn_defer (and conn_hold) before it
 * returns: reading stops, pipelined bytes wait. Once the response is queued, on the
 * connection's worker, http_conn_resume goes on with the next request (and the
 * handler conn_releases its hold). */
void http_conn_defer(conn_t *c);
void http_conn_resume(conn_t *c);

#define HTTP_REQUEST_TIMEOUT_MS 30000    /* a whole request, from its first byte */
#define HTTP_IDLE_TIMEOUT_MS 60000       /* between keep-alive requests */

#endif
