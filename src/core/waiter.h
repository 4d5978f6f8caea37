/* waiter: one thread blocks until another hands it a result, with a time limit.
 *
 * For the few places a dedicated thread (a chain source) or a worker (a Socket.IO
 * session taken from Redis) must wait for work done on another thread. Whoever
 * gives up first must not free what the other still writes to, so the waiter has
 * two references, the waiting side's and the answering side's; the last
 * waiter_put frees it. The answer may carry bytes (copied into `out`).
 *
 * Any thread; the fields are read under the waiter's own lock. */
#ifndef HERALD_WAITER_H
#define HERALD_WAITER_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;
    bool done;
    int status;
    buf_t out;
} waiter_t;

/* A new waiter with two references. NULL when out of memory. */
waiter_t *waiter_new(void);
void waiter_put(waiter_t *w);
/* The answering side: records status (and a copy of data), wakes the waiting
 * side, drops the answering reference. */
void waiter_finish(waiter_t *w, int status, const void *data, size_t len);
/* The waiting side: waits up to timeout_ms (in 200 ms slices when stop is given,
 * ending early once *stop is set). Returns the status, or HERALD_EUNAVAIL when no
 * answer came; when out is given, appends the answer's bytes to it. Drops the
 * waiting reference: w must not be used after. */
int waiter_wait(waiter_t *w, unsigned timeout_ms, const volatile sig_atomic_t *stop, buf_t *out);

#endif
