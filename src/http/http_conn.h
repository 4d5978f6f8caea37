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

/* Answers that come later (a publish waiting for its commit, a long-poll) keep
 * their place: a handler calls http_conn_defer (and conn_hold) before it returns
 * and gets a slot; pipelined requests behind it are read and routed meanwhile,
 * their answers queued behind the slot. Later, on the connection's worker, the
 * handler brackets its answer with http_conn_answering / http_conn_answered (then
 * conn_releases its hold): answers leave strictly in request order. */
typedef struct http_slot {
    struct http_slot *next;
    frame_t *response;   /* the answer, once given */
    bool done;
} http_slot_t;

#define HTTP_MAX_PENDING 64   /* answers in flight before reading pauses */

http_slot_t *http_conn_defer(conn_t *c);   /* NULL when out of memory */
void http_conn_answering(conn_t *c, http_slot_t *slot);
void http_conn_answered(conn_t *c, http_slot_t *slot);

/* Where http_respond puts an answer: the slot being answered, behind pending
 * answers, or straight on the connection. Takes the frame. */
void http_conn_send_response(conn_t *c, frame_t *f);

#define HTTP_REQUEST_TIMEOUT_MS 30000    /* a whole request, from its first byte */
#define HTTP_IDLE_TIMEOUT_MS 60000       /* between keep-alive requests */

#endif
