/* ws_transport: a connection after its WebSocket upgrade. Runs the RFC 6455 reader,
 * answers pings, runs the close handshake and the heartbeat (a shared ping frame
 * every heartbeat.interval_s; close 4000 when nothing came back within
 * heartbeat.timeout_s), and hands each text message to the application protocol
 * spoken on top (native, route, Socket.IO) through a ws_app_t.
 *
 * Owns: the connection's reader state and close handshake. Loop thread of the
 * connection. */
#ifndef HERALD_WS_TRANSPORT_H
#define HERALD_WS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"

struct http_request;

typedef struct ws_app {
    const char *name;
    /* The 101 response is queued; the connection is counted. Send greetings here. */
    void (*on_open)(conn_t *c, const struct http_request *req);
    /* One complete, valid UTF-8 text message (writable, valid during the call). */
    void (*on_text)(conn_t *c, char *data, size_t len);
    /* Optional: binary messages; NULL closes with 1003. */
    void (*on_binary)(conn_t *c, uint8_t *data, size_t len);
    /* Teardown (the socket is already closed). */
    void (*on_close)(conn_t *c);
    /* Optional: the server starts the close handshake; the connection is about to
     * leave its channels (keep what must outlive it). */
    void (*on_closing)(conn_t *c);
    /* Optional heartbeat of the protocol itself (Engine.IO's "2"): the frame to
     * send every interval instead of a WebSocket ping, and the two periods in ms.
     * NULL: WebSocket pings per heartbeat.interval_s / timeout_s. */
    frame_t *(*heartbeat)(conn_t *c, uint64_t *interval_ms, uint64_t *timeout_ms);
    /* Optional per-connection delivery of events (see conn_handler_t.on_event). */
    bool (*on_event)(conn_t *c, struct event *ev);
} ws_app_t;

extern const conn_handler_t ws_transport_handler;
/* The same, for applications that deliver events themselves (ws_app.on_event). */
extern const conn_handler_t ws_transport_handler_events;

/* Answers the handshake (101 with Sec-WebSocket-Accept) and switches c to the
 * WebSocket handler speaking `app`. The request was validated by the caller. */
void ws_transport_upgrade(conn_t *c, const struct http_request *req, const ws_app_t *app, int proto);

/* Starts the close handshake with code and reason (idempotent). */
void ws_transport_close(conn_t *c, uint16_t code, const char *reason);

/* Queues a text message (copied into a new frame). */
int ws_transport_send_text(conn_t *c, const char *text, size_t len);

#define WS_CLOSE_WAIT_MS 2000   /* how long to wait for the peer's close frame */

#endif
