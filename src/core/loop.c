#include "core/loop.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    bool stopping;
    uint64_t now_ms;
    uint64_t wheel_tick;                 /* the last tick whose slot was swept */
    loop_timer_t slots[LOOP_WHEEL_SLOTS]; /* sentinel heads of circular lists */
    loop_hook_fn after_batch;
    void *ctx;
};

loop_t *loop_create(loop_hook_fn after_batch, void *ctx)
{
    loop_t *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < LOOP_WHEEL_SLOTS; i++) l->slots[i].next = l->slots[i].prev = &l->slots[i];
    l->now_ms = time_mono_ms();
    l->wheel_tick = l->now_ms / LOOP_TICK_MS;
    l->after_batch = after_batch;
    l->ctx = ctx;
    return l;
}

void loop_destroy(loop_t *l)
{
    if (!l) return;
    close(l->epfd);
    free(l);
}

int loop_io_add(loop_t *l, loop_io_t *io, int fd, uint32_t events, loop_io_fn cb)
{
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : HERALD_EIO;
}

int loop_io_modify(loop_t *l, loop_io_t *io, uint32_t events)
{
    if (io->events == events) return 0;
    io->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) == 0 ? 0 : HERALD_EIO;
}

void loop_io_remove(loop_t *l, loop_io_t *io)
{
    if (io->fd >= 0) epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void loop_timer_cancel(loop_timer_t *t)
{
    if (!t->prev) return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* The first tick whose start is at or after the deadline: a timer never fires early. */
static inline uint64_t due_tick(uint64_t deadline_ms) { return (deadline_ms + LOOP_TICK_MS - 1) / LOOP_TICK_MS; }

void loop_timer_set(loop_t *l, loop_timer_t *t, uint64_t deadline_ms, loop_timer_fn cb)
{
    loop_timer_cancel(t);
    t->deadline_ms = deadline_ms;
    t->cb = cb;
    uint64_t tick = due_tick(deadline_ms);
    if (tick <= l->wheel_tick) tick = l->wheel_tick + 1;   /* due: fire at the next sweep */
    loop_timer_t *head = &l->slots[tick % LOOP_WHEEL_SLOTS];
    t->next = head;
    t->prev = head->prev;
    head->prev->next = t;
    head->prev = t;
}

uint64_t loop_now_ms(const loop_t *l) { return l->now_ms; }

void loop_stop(loop_t *l) { l->stopping = true; }

/* Sweeps every slot between the last swept tick and now. A timer found in a slot
 * but not yet due (armed more than one revolution ahead) is left where it is. */
static void sweep_timers(loop_t *l)
{
    uint64_t now_tick = l->now_ms / LOOP_TICK_MS;
    while (l->wheel_tick < now_tick && !l->stopping) {
        l->wheel_tick++;
        loop_timer_t *head = &l->slots[l->wheel_tick % LOOP_WHEEL_SLOTS];
        /* Move the due timers to a private list first: a callback may re-arm its
         * timer into this very slot, or cancel others. */
        loop_timer_t due = {.next = &due, .prev = &due};
        for (loop_timer_t *t = head->next, *next; t != head; t = next) {
            next = t->next;
            if (due_tick(t->deadline_ms) > l->wheel_tick) continue;
            loop_timer_cancel(t);
            t->next = &due;
            t->prev = due.prev;
            due.prev->next = t;
            due.prev = t;
        }
        while (due.next != &due) {
            loop_timer_t *t = due.next;
            loop_timer_cancel(t);
            t->cb(l, t);
        }
    }
}

int loop_run(loop_t *l)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    while (!l->stopping) {
        int n = epoll_wait(l->epfd, events, LOOP_MAX_EVENTS, LOOP_TICK_MS);
        if (n < 0) {
            if (errno == EINTR) continue;
            return HERALD_EIO;
        }
        l->now_ms = time_mono_ms();
        for (int i = 0; i < n && !l->stopping; i++) {
            loop_io_t *io = events[i].data.ptr;
            /* fd < 0: its owner closed it earlier in this batch (nginx's stale-event
             * rule); the memory stays valid until after_batch frees it. */
            if (io->fd < 0) continue;
            io->cb(l, io, events[i].events);
        }
        if (l->after_batch) l->after_batch(l, l->ctx);
        sweep_timers(l);
        if (l->after_batch) l->after_batch(l, l->ctx);
    }
    return 0;
}
