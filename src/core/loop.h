/* loop: one epoll event loop per worker thread, with a coarse timer wheel.
 *
 * Four verbs: watch a descriptor (loop_io_*), arm a timer (loop_timer_*), run, stop.
 * Watchers and timers are embedded in their owners (a connection, a listener), so
 * arming either never allocates. After each batch of I/O events the loop calls the
 * owner's `after_batch` hook once: that is where a worker drains its inbox, flushes
 * queued writes in batches and frees connections closed during the batch.
 *
 * Timers: a wheel of LOOP_WHEEL_SLOTS slots of LOOP_TICK_MS each. A timer whose
 * deadline is further than one revolution stays in its slot and is looked at once a
 * revolution; that costs nothing worth a heap (uSockets keeps coarse ticks too).
 *
 * Owns: the epoll descriptor and the wheel's slot heads. Does not own the watchers
 * or timers. Not thread-safe: every call comes from the loop's own thread. */
#ifndef HERALD_LOOP_H
#define HERALD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define LOOP_TICK_MS 50           /* timers fire at the first tick at or after their deadline */
#define LOOP_WHEEL_SLOTS 2048

typedef struct loop loop_t;
typedef struct loop_io loop_io_t;
typedef struct loop_timer loop_timer_t;

typedef void (*loop_io_fn)(loop_t *loop, loop_io_t *io, uint32_t revents);
typedef void (*loop_timer_fn)(loop_t *loop, loop_timer_t *timer);

struct loop_io {
    int fd;
    uint32_t events;          /* EPOLLIN / EPOLLOUT currently watched */
    loop_io_fn cb;
};

struct loop_timer {
    loop_timer_t *next, *prev;   /* in a wheel slot; NULL when not armed */
    uint64_t deadline_ms;        /* CLOCK_MONOTONIC ms */
    loop_timer_fn cb;
};

typedef void (*loop_hook_fn)(loop_t *loop, void *ctx);

loop_t *loop_create(loop_hook_fn after_batch, void *ctx);
void loop_destroy(loop_t *loop);

int loop_io_add(loop_t *loop, loop_io_t *io, int fd, uint32_t events, loop_io_fn cb);
int loop_io_modify(loop_t *loop, loop_io_t *io, uint32_t events);
void loop_io_remove(loop_t *loop, loop_io_t *io);

/* Arms (or re-arms) t to fire at deadline_ms. Never allocates. */
void loop_timer_set(loop_t *loop, loop_timer_t *t, uint64_t deadline_ms, loop_timer_fn cb);
void loop_timer_cancel(loop_timer_t *t);
static inline bool loop_timer_armed(const loop_timer_t *t) { return t->prev != 0; }

/* The loop's notion of now, refreshed once per iteration (cheap to read). */
uint64_t loop_now_ms(const loop_t *loop);

/* Runs until loop_stop. Returns 0, or HERALD_EIO if epoll fails. */
int loop_run(loop_t *loop);
void loop_stop(loop_t *loop);

#endif
