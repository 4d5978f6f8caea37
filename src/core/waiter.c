#include "core/waiter.h"
#include "core/err.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

waiter_t *waiter_new(void)
{
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* wall clock jumps do not cut waits short */
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2;
    return w;
}

void waiter_put(waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last) return;
    buf_free(&w->out);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void waiter_finish(waiter_t *w, int status, const void *data, size_t len)
{
    pthread_mutex_lock(&w->lock);
    w->status = status;
    if (data && len && buf_append(&w->out, data, len) < 0) w->status = HERALD_ENOMEM;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    waiter_put(w);
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    return t;
}

int waiter_wait(waiter_t *w, unsigned timeout_ms, const volatile sig_atomic_t *stop, buf_t *out)
{
    pthread_mutex_lock(&w->lock);
    for (unsigned waited = 0; !w->done && waited < timeout_ms && !(stop && *stop);) {
        unsigned slice = stop && timeout_ms - waited > 200 ? 200 : timeout_ms - waited;
        struct timespec until = deadline_in(slice);
        while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT) {
        }
        waited += slice;
    }
    int rc = w->done ? w->status : HERALD_EUNAVAIL;
    if (w->done && out && w->out.len && buf_append(out, w->out.data, w->out.len) < 0) rc = HERALD_ENOMEM;
    pthread_mutex_unlock(&w->lock);
    waiter_put(w);
    return rc;
}
