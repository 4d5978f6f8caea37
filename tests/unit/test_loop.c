/* loop: the timer wheel (order, re-arming, cancelling, deadlines past one
 * revolution), descriptor watchers (pipe, eventfd, removal, stale events),
 * the after_batch hook and loop_stop. Each test has a guard timer, so a loop that
 * would never stop fails the test instead of hanging; all together run in about
 * three seconds. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/err.h"
#include "core/loop.h"
#include "core/util.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

/* How late a timer may fire on a loaded test machine; early is bounded by the tick. */
#define LATE_SLACK_MS 400

typedef struct guard {
    loop_timer_t t;
    bool fired;
} guard_t;

static void on_guard(loop_t *l, loop_timer_t *t)
{
    container_of(t, guard_t, t)->fired = true;
    loop_stop(l);
}

static void arm_guard(loop_t *l, guard_t *g, uint64_t ms)
{
    memset(g, 0, sizeof *g);
    loop_timer_set(l, &g->t, loop_now_ms(l) + ms, on_guard);
}

static void stop_loop(loop_t *l, loop_timer_t *t)
{
    (void)t;
    loop_stop(l);
}

/* ---- timer order ---- */

typedef struct rec_timer {
    loop_timer_t t;
    uint64_t deadline;
    uint64_t fired_at;
    int fired;
    int order;
    int *next_order;
} rec_timer_t;

static void on_rec(loop_t *l, loop_timer_t *t)
{
    rec_timer_t *r = container_of(t, rec_timer_t, t);
    r->fired++;
    r->fired_at = time_mono_ms();
    r->order = (*r->next_order)++;
    (void)l;
}

static void test_loop_timers_fire_in_deadline_order_across_ticks(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    uint64_t now = loop_now_ms(l);
    /* armed out of order, each in a later tick than the one before */
    static const uint64_t after[] = {150, 50, 200, 100};
    rec_timer_t r[4];
    int next = 0;
    for (int i = 0; i < 4; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].next_order = &next;
        r[i].deadline = now + after[i];
        loop_timer_set(l, &r[i].t, r[i].deadline, on_rec);
        assert_true(loop_timer_armed(&r[i].t));
    }
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, now + 300, stop_loop);
    guard_t g;
    arm_guard(l, &g, 3000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    static const int want_order[] = {2, 0, 3, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_int_equal(r[i].order, want_order[i]);
        assert_false(loop_timer_armed(&r[i].t));
        /* never before the deadline */
        assert_true(r[i].fired_at >= r[i].deadline);
        assert_true(r[i].fired_at <= r[i].deadline + LATE_SLACK_MS);
    }
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* The tick a deadline is due in: the first whose start is not before it. */
#define CEIL_TICK(d) (((d) + LOOP_TICK_MS - 1) / LOOP_TICK_MS)

/* 500 timers with pseudo-random deadlines up to 400 ms: each fires once, and in
 * order of their deadline's tick. */
static void test_loop_many_timers_each_fire_once_in_tick_order(void **state)
{
    (void)state;
    enum { N = 500 };
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    rec_timer_t *r = calloc(N, sizeof *r);
    assert_non_null(r);
    int next = 0;
    uint64_t now = loop_now_ms(l);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        r[i].next_order = &next;
        r[i].deadline = now + (x >> 8) % 400;
        loop_timer_set(l, &r[i].t, r[i].deadline, on_rec);
    }
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, now + 500, stop_loop);
    guard_t g;
    arm_guard(l, &g, 3000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(next, N);
    /* a deadline in the current tick is due at the next sweep, with the next tick's */
    uint64_t first = now / LOOP_TICK_MS + 1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].fired, 1);
        uint64_t ti = CEIL_TICK(r[i].deadline) < first ? first : CEIL_TICK(r[i].deadline);
        for (int j = 0; j < N; j++) {
            uint64_t tj = CEIL_TICK(r[j].deadline) < first ? first : CEIL_TICK(r[j].deadline);
            if (ti < tj && r[i].order > r[j].order)
                fail_msg("deadline %llu fired after %llu", (unsigned long long)r[i].deadline,
                         (unsigned long long)r[j].deadline);
        }
    }
    loop_timer_cancel(&g.t);
    free(r);
    loop_destroy(l);
}

static void test_loop_timer_in_the_past_fires_at_next_sweep(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    rec_timer_t r = {0};
    int next = 0;
    r.next_order = &next;
    uint64_t start = time_mono_ms();
    loop_timer_set(l, &r.t, 0, on_rec);
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, loop_now_ms(l) + 3 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(r.fired, 1);
    assert_true(r.fired_at <= start + 2 * LOOP_TICK_MS + LATE_SLACK_MS);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* ---- re-arming ---- */

typedef struct periodic {
    loop_timer_t t;
    int fired;
    int limit;
    uint64_t every;       /* 0: re-arm with a deadline in the past */
    uint64_t times[16];
} periodic_t;

static void on_periodic(loop_t *l, loop_timer_t *t)
{
    periodic_t *p = container_of(t, periodic_t, t);
    assert_false(loop_timer_armed(t));   /* disarmed before its callback */
    p->times[p->fired < 16 ? p->fired : 15] = time_mono_ms();
    if (++p->fired >= p->limit) {
        loop_stop(l);
        return;
    }
    loop_timer_set(l, t, p->every ? loop_now_ms(l) + p->every : 0, on_periodic);
    assert_true(loop_timer_armed(t));
}

static void test_loop_rearm_inside_callback_fires_again(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    periodic_t p = {.limit = 4, .every = 2 * LOOP_TICK_MS};
    loop_timer_set(l, &p.t, loop_now_ms(l) + LOOP_TICK_MS, on_periodic);
    guard_t g;
    arm_guard(l, &g, 3000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(p.fired, 4);
    for (int i = 1; i < 4; i++) assert_true(p.times[i] - p.times[i - 1] + LOOP_TICK_MS >= p.every);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* A callback re-arming its timer for a deadline already due must not spin inside
 * one sweep: each re-arm waits for the next tick. */
static void test_loop_rearm_with_past_deadline_waits_a_tick(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    periodic_t p = {.limit = 5, .every = 0};
    uint64_t start = time_mono_ms();
    loop_timer_set(l, &p.t, 0, on_periodic);
    guard_t g;
    arm_guard(l, &g, 3000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(p.fired, 5);
    /* five firings in at least four further ticks */
    assert_true(time_mono_ms() - start + LOOP_TICK_MS >= 4 * LOOP_TICK_MS);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

static void test_loop_set_on_armed_timer_moves_it(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    rec_timer_t r = {0};
    int next = 0;
    r.next_order = &next;
    uint64_t now = loop_now_ms(l);
    loop_timer_set(l, &r.t, now + 100, on_rec);
    r.deadline = now + 300;
    loop_timer_set(l, &r.t, r.deadline, on_rec);
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, now + 450, stop_loop);
    guard_t g;
    arm_guard(l, &g, 3000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(r.fired, 1);
    assert_true(r.fired_at + LOOP_TICK_MS >= r.deadline);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* ---- cancel ---- */

static void test_loop_cancelled_timer_never_fires(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    rec_timer_t r = {0};
    int next = 0;
    r.next_order = &next;
    loop_timer_set(l, &r.t, loop_now_ms(l) + LOOP_TICK_MS, on_rec);
    loop_timer_cancel(&r.t);
    assert_false(loop_timer_armed(&r.t));
    loop_timer_cancel(&r.t);   /* twice is harmless */
    loop_timer_t never = {0};
    loop_timer_cancel(&never); /* never armed: harmless */
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, loop_now_ms(l) + 4 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(r.fired, 0);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* Two timers due in the same sweep: the first one's callback cancels the second,
 * which then must not fire (it already sits on the sweep's due list). */
typedef struct pair {
    loop_timer_t a, b;
    int a_fired, b_fired;
} pair_t;

static void on_pair_b(loop_t *l, loop_timer_t *t)
{
    (void)l;
    container_of(t, pair_t, b)->b_fired++;
}

static void on_pair_a(loop_t *l, loop_timer_t *t)
{
    (void)l;
    pair_t *p = container_of(t, pair_t, a);
    p->a_fired++;
    loop_timer_cancel(&p->b);
}

static void test_loop_cancel_from_callback_in_same_sweep(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    pair_t p = {0};
    uint64_t d = loop_now_ms(l) + 2 * LOOP_TICK_MS;
    loop_timer_set(l, &p.a, d, on_pair_a);
    loop_timer_set(l, &p.b, d, on_pair_b);
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, d + 3 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(p.a_fired, 1);
    assert_int_equal(p.b_fired, 0);
    assert_false(loop_timer_armed(&p.b));
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* ---- deadlines past one revolution ---- */

static void test_loop_deadline_past_one_revolution_does_not_fire_early(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    const uint64_t rev = (uint64_t)LOOP_WHEEL_SLOTS * LOOP_TICK_MS;
    uint64_t now = loop_now_ms(l);
    /* same slots as deadlines 2, 3 and 4 ticks from now, but 1, 1 and 3 revolutions on */
    rec_timer_t far[3];
    memset(far, 0, sizeof far);
    int next = 0;
    const uint64_t when[3] = {now + rev + 2 * LOOP_TICK_MS, now + rev + 3 * LOOP_TICK_MS + 1,
                              now + 3 * rev + 4 * LOOP_TICK_MS};
    for (int i = 0; i < 3; i++) {
        far[i].next_order = &next;
        loop_timer_set(l, &far[i].t, when[i], on_rec);
    }
    /* a near timer sharing the first far timer's slot does fire */
    rec_timer_t near = {0};
    near.next_order = &next;
    loop_timer_set(l, &near.t, now + 2 * LOOP_TICK_MS, on_rec);
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, now + 8 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(near.fired, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(far[i].fired, 0);
        assert_true(loop_timer_armed(&far[i].t));   /* still waiting for its revolution */
        loop_timer_cancel(&far[i].t);
    }
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* ---- descriptors ---- */

typedef struct io_rec {
    loop_io_t io;
    int calls;
    uint32_t revents;
    char got[16];
    ssize_t n;
    bool stop;
} io_rec_t;

static void on_read(loop_t *l, loop_io_t *io, uint32_t revents)
{
    io_rec_t *r = container_of(io, io_rec_t, io);
    r->calls++;
    r->revents |= revents;
    r->n = read(io->fd, r->got, sizeof r->got);
    if (r->stop) loop_stop(l);
}

static void test_loop_io_pipe_readable_calls_back(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    io_rec_t r = {.stop = true};
    assert_int_equal(loop_io_add(l, &r.io, fds[0], EPOLLIN, on_read), 0);
    assert_int_equal(r.io.fd, fds[0]);
    assert_int_equal(write(fds[1], "hi", 2), 2);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(r.calls, 1);
    assert_true(r.revents & EPOLLIN);
    assert_int_equal(r.n, 2);
    assert_memory_equal(r.got, "hi", 2);
    loop_io_remove(l, &r.io);
    loop_timer_cancel(&g.t);
    close(fds[0]);
    close(fds[1]);
    loop_destroy(l);
}

static void test_loop_io_eventfd_wakes_loop(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    io_rec_t r = {.stop = true};
    assert_int_equal(loop_io_add(l, &r.io, efd, EPOLLIN, on_read), 0);
    uint64_t v = 3;
    assert_int_equal(write(efd, &v, sizeof v), sizeof v);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.n, 8);
    uint64_t got;
    memcpy(&got, r.got, sizeof got);
    assert_int_equal(got, 3);
    loop_io_remove(l, &r.io);
    loop_timer_cancel(&g.t);
    close(efd);
    loop_destroy(l);
}

static void test_loop_io_removed_watcher_not_called(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    io_rec_t r = {0};
    assert_int_equal(loop_io_add(l, &r.io, fds[0], EPOLLIN, on_read), 0);
    loop_io_remove(l, &r.io);
    assert_int_equal(write(fds[1], "x", 1), 1);
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, loop_now_ms(l) + 3 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(r.calls, 0);
    loop_timer_cancel(&g.t);
    close(fds[0]);
    close(fds[1]);
    loop_destroy(l);
}

static void on_writable(loop_t *l, loop_io_t *io, uint32_t revents)
{
    io_rec_t *r = container_of(io, io_rec_t, io);
    r->calls++;
    r->revents |= revents;
    loop_stop(l);
}

static void test_loop_io_modify_to_epollout(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    io_rec_t w = {0};
    /* the write end watched for nothing readable first: no call */
    assert_int_equal(loop_io_add(l, &w.io, fds[1], 0, on_writable), 0);
    assert_int_equal(loop_io_modify(l, &w.io, EPOLLOUT), 0);
    assert_int_equal(w.io.events, EPOLLOUT);
    assert_int_equal(loop_io_modify(l, &w.io, EPOLLOUT), 0);   /* unchanged: no-op */
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    assert_int_equal(w.calls, 1);
    assert_true(w.revents & EPOLLOUT);
    loop_io_remove(l, &w.io);
    loop_timer_cancel(&g.t);
    close(fds[0]);
    close(fds[1]);
    loop_destroy(l);
}

static void test_loop_io_add_bad_fd_is_eio(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    loop_io_t io = {0};
    assert_int_equal(loop_io_add(l, &io, -1, EPOLLIN, on_read), HERALD_EIO);
    loop_destroy(l);
}

/* Two watchers ready in the same batch; whichever runs first tears the other down
 * (fd = -1, as conn_close does): the stale event must be dropped. */
typedef struct stale_io {
    loop_io_t io;
    int calls;
    struct stale_io *other;
} stale_io_t;

static void on_stale(loop_t *l, loop_io_t *io, uint32_t revents)
{
    (void)revents;
    stale_io_t *self = container_of(io, stale_io_t, io);
    self->calls++;
    char b[8];
    ssize_t n = read(io->fd, b, sizeof b);
    (void)n;
    if (self->other->io.fd >= 0) {
        loop_io_remove(l, &self->other->io);
        self->other->io.fd = -1;
    }
}

static void test_loop_io_stale_event_after_close_in_batch_dropped(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    stale_io_t s[2];
    memset(s, 0, sizeof s);
    s[0].other = &s[1];
    s[1].other = &s[0];
    int fds[2][2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe2(fds[i], O_NONBLOCK | O_CLOEXEC), 0);
        assert_int_equal(loop_io_add(l, &s[i].io, fds[i][0], EPOLLIN, on_stale), 0);
        assert_int_equal(write(fds[i][1], "x", 1), 1);
    }
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, loop_now_ms(l) + 2 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    /* both were readable the whole time: without the fd check both would run */
    assert_int_equal(s[0].calls + s[1].calls, 1);
    for (int i = 0; i < 2; i++) {
        if (s[i].io.fd >= 0) loop_io_remove(l, &s[i].io);
        close(fds[i][0]);
        close(fds[i][1]);
    }
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

/* ---- after_batch and stop ---- */

typedef struct hook_ctx {
    int calls;
    int stop_after;
    bool io_seen_before_hook;
    io_rec_t *io;
} hook_ctx_t;

static void on_hook(loop_t *l, void *ctx)
{
    hook_ctx_t *h = ctx;
    h->calls++;
    if (h->io && h->io->calls > 0 && h->calls == 1) h->io_seen_before_hook = true;
    if (h->calls >= h->stop_after) loop_stop(l);
}

static void test_loop_after_batch_hook_called_with_ctx_and_can_stop(void **state)
{
    (void)state;
    hook_ctx_t h = {.stop_after = 3};
    loop_t *l = loop_create(on_hook, &h);
    assert_non_null(l);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_false(g.fired);
    /* the iteration that stopped may still finish its own second hook call */
    assert_in_range(h.calls, 3, 4);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

static void test_loop_after_batch_runs_after_io_callbacks(void **state)
{
    (void)state;
    hook_ctx_t h = {.stop_after = 1};
    loop_t *l = loop_create(on_hook, &h);
    assert_non_null(l);
    int fds[2];
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    io_rec_t r = {0};
    h.io = &r;
    assert_int_equal(loop_io_add(l, &r.io, fds[0], EPOLLIN, on_read), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(r.calls, 1);
    assert_true(h.io_seen_before_hook);
    loop_io_remove(l, &r.io);
    loop_timer_cancel(&g.t);
    close(fds[0]);
    close(fds[1]);
    loop_destroy(l);
}

static void test_loop_stop_before_run_returns_at_once(void **state)
{
    (void)state;
    hook_ctx_t h = {.stop_after = 1000};
    loop_t *l = loop_create(on_hook, &h);
    assert_non_null(l);
    loop_stop(l);
    uint64_t t0 = time_mono_ms();
    assert_int_equal(loop_run(l), 0);
    assert_true(time_mono_ms() - t0 < LOOP_TICK_MS);
    assert_int_equal(h.calls, 0);
    loop_destroy(l);
}

static void test_loop_now_advances_while_running(void **state)
{
    (void)state;
    loop_t *l = loop_create(NULL, NULL);
    assert_non_null(l);
    uint64_t before = loop_now_ms(l);
    assert_true(before <= time_mono_ms());
    loop_timer_t stop = {0};
    loop_timer_set(l, &stop, before + 3 * LOOP_TICK_MS, stop_loop);
    guard_t g;
    arm_guard(l, &g, 2000);
    assert_int_equal(loop_run(l), 0);
    assert_true(loop_now_ms(l) + LOOP_TICK_MS >= before + 3 * LOOP_TICK_MS);
    loop_timer_cancel(&g.t);
    loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_timers_fire_in_deadline_order_across_ticks),
        cmocka_unit_test(test_loop_many_timers_each_fire_once_in_tick_order),
        cmocka_unit_test(test_loop_timer_in_the_past_fires_at_next_sweep),
        cmocka_unit_test(test_loop_rearm_inside_callback_fires_again),
        cmocka_unit_test(test_loop_rearm_with_past_deadline_waits_a_tick),
        cmocka_unit_test(test_loop_set_on_armed_timer_moves_it),
        cmocka_unit_test(test_loop_cancelled_timer_never_fires),
        cmocka_unit_test(test_loop_cancel_from_callback_in_same_sweep),
        cmocka_unit_test(test_loop_deadline_past_one_revolution_does_not_fire_early),
        cmocka_unit_test(test_loop_io_pipe_readable_calls_back),
        cmocka_unit_test(test_loop_io_eventfd_wakes_loop),
        cmocka_unit_test(test_loop_io_removed_watcher_not_called),
        cmocka_unit_test(test_loop_io_modify_to_epollout),
        cmocka_unit_test(test_loop_io_add_bad_fd_is_eio),
        cmocka_unit_test(test_loop_io_stale_event_after_close_in_batch_dropped),
        cmocka_unit_test(test_loop_after_batch_hook_called_with_ctx_and_can_stop),
        cmocka_unit_test(test_loop_after_batch_runs_after_io_callbacks),
        cmocka_unit_test(test_loop_stop_before_run_returns_at_once),
        cmocka_unit_test(test_loop_now_advances_while_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
