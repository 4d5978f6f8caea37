/* conn: one client socket on a worker's loop, whatever its protocol.
 *
 * Owns: the socket, its send queue (references to shared frames), its timer, and
 * the session fields a subscriber connection needs (id, user, subscriptions, the
 * WebSocket reader). The protocol in charge is a conn_handler_t that can change
 * once (HTTP -> WebSocket upgrade).
 *
 * Sending: conn_send queues a frame reference and marks the connection dirty; the
 * worker flushes dirty connections once per loop batch with writev, several frames
 * per system call. EPOLLOUT is armed only after a short write. The queue is a ring
 * with a few inline slots, so an idle or keeping-up connection holds no heap memory
 * for output; past limits.send_queue_bytes a subscriber connection is a slow
 * consumer and is closed with 4008 without slowing anyone else.
 *
 * Closing: conn_close tears the connection down at once (socket closed, unlinked
 * from hub and timers) but frees its memory only after the current loop batch, so a
 * close inside any handler is safe. Idempotent.
 *
 * Thread: the owning worker's loop thread only. */
#ifndef HERALD_CONN_H
#define HERALD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "core/frame.h"
#include "auth/ratelimit.h"
#include "core/loop.h"
#include "ws/ws_codec.h"

struct worker;
struct sub;
struct http_request;
struct event;
typedef struct conn conn_t;

typedef struct conn_handler {
    const char *name;
    /* Bytes arrived, in the worker's shared read buffer (writable, valid only
     * during the call). */
    void (*on_data)(conn_t *c, uint8_t *data, size_t len);
    void (*on_eof)(conn_t *c);         /* the peer closed its sending side */
    void (*on_timer)(conn_t *c);       /* c->timer fired */
    void (*on_drained)(conn_t *c);     /* optional: the send queue became empty */
    void (*on_close)(conn_t *c);       /* release protocol state; the socket is closed */
    /* optional: queue an event in a per-connection way (SSE ids); returns whether it
     * was queued. Without it the hub queues the shared frame of c->format. */
    bool (*on_event)(conn_t *c, struct event *ev);
    /* virtual connections: where queued output goes instead of a socket */
    void (*on_flush)(conn_t *c);
    /* the connection arrived on a new worker (see worker_migrate) */
    void (*on_adopted)(conn_t *c);
} conn_handler_t;

typedef struct out_item {
    frame_t *frame;
    uint32_t offset;   /* bytes of frame already written */
    uint32_t is_event; /* counts as a dropped message if discarded */
} out_item_t;

#define OUTQ_INLINE 4

typedef struct outq {
    out_item_t inline_items[OUTQ_INLINE];
    out_item_t *items;     /* inline_items, or a heap ring while more are queued */
    uint32_t head, count, cap;
    uint64_t bytes;        /* unwritten bytes queued */
} outq_t;

enum conn_state { CONN_OPEN = 0, CONN_DRAINING, CONN_CLOSED };

struct conn {
    loop_io_t io;
    loop_timer_t timer;
    struct worker *worker;
    const conn_handler_t *handler;
    conn_t *prev, *next;          /* the worker's list of connections */
    conn_t *dirty_next;           /* the worker's flush list, or graveyard after close */
    conn_t *migrate_next;         /* the worker's list of connections moving to another worker */
    struct worker *migrate_to;
    outq_t out;
    uint8_t state;                /* enum conn_state */
    uint8_t proto;                /* enum metrics_proto once counted as a client connection */
    uint8_t format;               /* event_format_t of deliveries */
    bool dirty;
    bool counted;                 /* counts towards max_connections and the gauges */
    bool in_all;                  /* receives events of $all */
    bool write_blocked;           /* EPOLLOUT armed: the kernel buffer was full */
    bool read_eof;                /* the peer closed its side: EPOLLIN no longer watched */
    bool read_paused;             /* input not wanted now (an HTTP response is pending) */
    bool http_waiting;            /* HTTP: a held request waits for the answers ahead of it */
    uint16_t holds;               /* asynchronous work that still refers to this connection */
    bool websocket;               /* upgraded: speaks RFC 6455 frames */
    bool is_virtual;              /* no socket: a session between transports (Engine.IO polling) */
    bool http_close;              /* HTTP: close once the current response is written */
    bool http_continued;          /* HTTP: "100 Continue" sent for the current request */
    bool ws_close_sent, ws_close_received;
    uint16_t close_code;
    struct sockaddr_in6 peer;     /* IPv4 peers are stored mapped (::ffff:a.b.c.d) */

    /* HTTP: allocated while a request is being read, freed after it */
    struct http_request *req;
    uint8_t *stash;               /* pipelined bytes read while a response was pending */
    size_t stash_len;
    struct http_slot *slots, *slots_tail;   /* answers in request order, some still pending */
    struct http_slot *http_capture;          /* the slot an answer being given goes into */
    uint16_t slot_count;

    /* session fields of a subscriber connection */
    uint8_t conn_id[16];
    char *user;                   /* JWT sub, or NULL */
    struct conn_auth *auth;       /* what the connection proved (claims, token scopes), or NULL */
    struct sub *subs;             /* this connection's subscriptions (hub) */
    uint32_t sub_count;           /* not counting $all */
    uint64_t last_recv_ms;
    uint64_t ping_sent_ms;
    ws_reader_t ws;
    ratelimit_t rate;             /* limits.messages_per_second */
    const struct ws_app *ws_app;  /* the protocol spoken over WebSocket */
    struct ssl_st *tls;           /* TLS session when the listener serves TLS, else NULL */
    uint32_t tls_retry_len;       /* bytes of a TLS write that must be retried as they were */
    void *proto_data;             /* a protocol's own extra state, if it needs any */
};

conn_t *conn_create(struct worker *w, int fd, const struct sockaddr *peer, socklen_t peer_len);

/* A connection without a socket: a session that outlives the HTTP requests that
 * carry it (Engine.IO long-polling). It subscribes and queues like any other; its
 * handler's on_flush decides where the queue goes. */
conn_t *conn_create_virtual(struct worker *w);

/* Recomputes which epoll events c waits for (after a move between loops). */
void conn_watch(conn_t *c);

/* Queues one frame reference (taken over by the connection). Returns 0, or
 * HERALD_ECLOSED if the connection is closed or was just closed as a slow consumer
 * (the reference is released either way). is_event marks an event delivery. */
int conn_send(conn_t *c, frame_t *f, bool is_event);

/* Copies bytes into a new frame and queues it. */
int conn_send_bytes(conn_t *c, const void *p, size_t n);

/* Releases everything queued as written (a virtual connection's on_flush sent it
 * some other way). */
void conn_output_written(conn_t *c);

/* Writes as much of the queue as the kernel takes. Called by the worker. */
void conn_flush(conn_t *c);

/* Tears down now (the memory is freed after the batch). */
void conn_close(conn_t *c);

/* Closes once everything queued has been written (or after a short grace time). */
void conn_close_after_flush(conn_t *c);

/* Makes c a client connection of protocol `proto` (enum metrics_proto): counted
 * against max_connections and in the gauges until it closes, given a UUID v4
 * connection id, and in $all. */
void conn_become_client(conn_t *c, int proto);

/* Undoes conn_become_client's counting (the connection is not a client of its own). */
void conn_forget_client(conn_t *c);

/* Stops or resumes watching for input (the kernel buffers it meanwhile). */
void conn_pause_reading(conn_t *c, bool paused);

/* Asynchronous work that will come back to c (on c's worker) holds it: a closed
 * connection is freed only once every hold is released. */
static inline void conn_hold(conn_t *c) { c->holds++; }
void conn_release(conn_t *c);

/* Arms the connection's timer (milliseconds from now) for handler->on_timer. */
void conn_set_timeout(conn_t *c, uint64_t ms_from_now);

/* "a.b.c.d" or "::1" */
void conn_peer_str(const conn_t *c, char *out, size_t out_size);
bool conn_peer_is_loopback(const conn_t *c);

/* Formats the connection id as a UUID string. */
void conn_id_str(const conn_t *c, char out[37]);

/* Frees the connection's memory: called by the worker after the batch. */
void conn_free(conn_t *c);

#endif
