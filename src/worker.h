/* worker: one thread, one event loop, the connections it accepted.
 *
 * Each worker has its own SO_REUSEPORT listener (the kernel spreads connections),
 * its own hub (which of its connections subscribe to what), one shared read buffer,
 * and an inbox through which other threads hand it work: events to fan out,
 * disconnect commands, shutdown. The inbox is a mutex-guarded array swapped out
 * whole by the worker, with an eventfd written only when it goes from empty to
 * non-empty, so a burst of events costs one wake-up.
 *
 * Owns: its loop, listener, hub, connections, read buffer and inbox. Everything
 * except worker_post is called on the worker's own thread. */
#ifndef HERALD_WORKER_H
#define HERALD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/loop.h"

struct server;
struct hub;
struct event;

#define WORKER_READ_BUFFER (256 * 1024)
#define WORKER_TLS_BUFFER (16 * 1024)   /* one TLS record's worth of coalesced frames */

enum inbox_kind {
    INBOX_EVENT = 1,       /* ptr: event_t reference, to fan out to local subscribers */
    INBOX_DISCONNECT,      /* ptr: disconnect_req_t shared by every worker */
    INBOX_CALL,            /* ptr: argument, a: worker_fn to run on the worker */
    INBOX_ADOPT,           /* ptr: a connection moving to this worker */
    INBOX_SHUTDOWN,
};

struct worker;
typedef void (*worker_fn)(struct worker *w, void *arg);

/* DISCONNECT_ALL closes every client with 1012 (the cluster's epoch changed: its
 * offsets start again, so clients must resubscribe and refetch). */
enum disconnect_by { DISCONNECT_USER, DISCONNECT_CONNECTION, DISCONNECT_TOKEN, DISCONNECT_ALL };

/* /api/disconnect and token revocation: every worker closes its matching
 * connections with 4003, adds how many to count, and the last one calls done on
 * the origin worker (or frees the request when done is NULL). */
typedef struct disconnect_req {
    atomic_int remaining;
    atomic_long count;
    struct worker *origin;
    worker_fn done;           /* runs on origin with the request as argument, or NULL */
    conn_t *conn;             /* the HTTP request's connection (held), or NULL */
    struct http_slot *slot;   /* its answer's place in line */
    void *reply;              /* another node's request: where the count goes back */
    worker_fn then;           /* server_disconnect_everywhere: runs after the other nodes */
    int by;                   /* enum disconnect_by */
    char who[];               /* user (JWT sub), connection id or access token id */
} disconnect_req_t;

/* Any thread: posts a disconnect to every worker of s. Takes r (set remaining,
 * by, who, done first). Returns 0 or HERALD_ENOMEM (then nothing was posted). */
int worker_broadcast_disconnect(struct server *s, disconnect_req_t *r);

typedef struct inbox_msg {
    int kind;
    void *ptr;
    uint64_t a;
} inbox_msg_t;

typedef struct worker {
    struct server *server;
    const struct config *cfg;
    unsigned index;
    pthread_t thread;
    loop_t *loop;
    int listen_fd;
    loop_io_t listen_io;
    int wake_fd;
    loop_io_t wake_io;
    struct hub *hub;
    conn_t *conns;            /* every open connection */
    size_t conn_count;
    conn_t *dirty;            /* to flush after this batch */
    conn_t *graveyard;        /* closed during this batch, freed after it */
    conn_t *migrating;        /* to hand to other workers after this batch */
    uint8_t *rbuf;
    uint8_t *tls_buf;         /* scratch for coalescing frames into TLS records */
    bool shutting_down;
    uint64_t shutdown_deadline_ms;
    frame_t *ping_frame;      /* the one heartbeat ping every connection of this worker shares */
    loop_timer_t housekeeping;   /* worker 0: access token revocations made by the CLI */

    pthread_mutex_t inbox_lock;
    inbox_msg_t *inbox;        /* filled by producers */
    size_t inbox_len, inbox_cap;
    inbox_msg_t *inbox_work;   /* swapped in and drained by the worker */
    size_t inbox_work_cap;
} worker_t;

int worker_init(worker_t *w, struct server *s, unsigned index, int listen_fd);
void worker_deinit(worker_t *w);
int worker_start(worker_t *w);
void worker_join(worker_t *w);

/* Any thread: hands a message to the worker. Returns 0 or HERALD_ENOMEM. */
int worker_post(worker_t *w, int kind, void *ptr, uint64_t a);

/* Any thread: runs fn(w, arg) on w's loop thread, after its current batch. */
int worker_call(worker_t *w, worker_fn fn, void *arg);

/* Main thread, after every worker's loop ended: runs what is left in the inbox
 * (events are dropped, calls and disconnect requests complete). Returns how many
 * messages it handled; call it for every worker until all return 0. */
size_t worker_drain(worker_t *w);

/* Loop thread: moves c to worker `to` after this batch (its output flushed as far
 * as the socket takes; reading paused meanwhile). `to` adopts it and calls its
 * handler's on_adopted. Used for sessions owned by one worker whose HTTP requests
 * arrive on connections another worker accepted. */
void worker_migrate(worker_t *w, conn_t *c, worker_t *to);

/* Loop thread: marks c for flushing after this batch. */
void worker_mark_dirty(worker_t *w, conn_t *c);
/* Loop thread: c was closed; free it after this batch. */
void worker_bury(worker_t *w, conn_t *c);

#endif
