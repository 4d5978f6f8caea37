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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/loop.h"

struct server;
struct hub;
struct event;

#define WORKER_READ_BUFFER (256 * 1024)

enum inbox_kind {
    INBOX_EVENT = 1,       /* ptr: event_t reference, to fan out to local subscribers */
    INBOX_DISCONNECT,      /* ptr: heap string (user or connection id), a: 0 user, 1 connection id */
    INBOX_SHUTDOWN,
};

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
    uint8_t *rbuf;
    bool shutting_down;
    uint64_t shutdown_deadline_ms;
    frame_t *ping_frame;      /* the one heartbeat ping every connection of this worker shares */

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

/* Loop thread: marks c for flushing after this batch. */
void worker_mark_dirty(worker_t *w, conn_t *c);
/* Loop thread: c was closed; free it after this batch. */
void worker_bury(worker_t *w, conn_t *c);

#endif
