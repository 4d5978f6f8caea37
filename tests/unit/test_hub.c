/* hub + sequencer: subscriptions and fan-out checked against a naive model, the
 * subscription floor, $all, slow consumers closed in the middle of a fan-out, and
 * the sequencer's offsets, recovery, history and idempotency keys.
 *
 * The worker, server and connections are minimal: zeroed structs with the fields
 * that conn_send and the hub touch (worker->cfg, worker->server->metrics, the send
 * queue, the dirty list). The sequencer's dispatch callback records events instead
 * of posting them to worker inboxes, and the test plays the worker: it fans the
 * recorded events out when it chooses, so events can sit "in the inbox" while
 * connections subscribe and unsubscribe. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "core/conn.h"
#include "core/err.h"
#include "core/loop.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/sequencer.h"
#include "server.h"
#include "worker.h"

/* ---- fixture ---- */

typedef struct recorder {
    event_t **ev;        /* references, in dispatch order */
    size_t head, n, cap;
} recorder_t;

static void record_dispatch(void *ctx, struct event *ev)
{
    recorder_t *r = ctx;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 64;
        event_t **a = realloc(r->ev, ncap * sizeof *a);
        assert_non_null(a);
        r->ev = a;
        r->cap = ncap;
    }
    r->ev[r->n++] = event_ref(ev);
}

typedef struct fx {
    config_t cfg;
    server_t srv;
    worker_t w;
    recorder_t rec;
    sequencer_t *seq;
    hub_t *hub;
} fx_t;

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f || config_defaults(&f->cfg) != 0) return -1;
    f->cfg.history.durable = false;   /* the hub's logic, without the store's thread */
    f->srv.cfg = &f->cfg;
    f->seq = sequencer_create(&f->cfg, record_dispatch, &f->rec);
    f->hub = hub_create(f->seq);
    if (!f->seq || !f->hub) return -1;
    f->srv.seq = f->seq;
    f->w.server = &f->srv;
    f->w.cfg = &f->cfg;
    f->w.hub = f->hub;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    hub_destroy(f->hub);
    sequencer_destroy(f->seq);
    for (size_t i = 0; i < f->rec.n; i++) event_unref(f->rec.ev[i]);
    free(f->rec.ev);
    if (f->w.loop) loop_destroy(f->w.loop);
    config_free(&f->cfg);
    free(f);
    return 0;
}

/* A connection as far as the hub and conn_send are concerned: no socket. */
static conn_t *fake_conn(fx_t *f, event_format_t fmt)
{
    conn_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->worker = &f->w;
    c->out.items = c->out.inline_items;
    c->out.cap = OUTQ_INLINE;
    c->io.fd = -1;
    c->state = CONN_OPEN;
    c->format = (uint8_t)fmt;
    return c;
}

/* What the worker's flush would do once everything is written: drop the queue. */
static void drain_queue(conn_t *c)
{
    outq_t *q = &c->out;
    for (uint32_t i = 0; i < q->count; i++) frame_unref(q->items[(q->head + i) % q->cap].frame);
    if (q->items != q->inline_items) free(q->items);
    q->items = q->inline_items;
    q->cap = OUTQ_INLINE;
    q->head = q->count = 0;
    q->bytes = 0;
}

static frame_t *queued(const conn_t *c, uint32_t i)
{
    assert_true(i < c->out.count);
    return c->out.items[(c->out.head + i) % c->out.cap].frame;
}

static void free_fake_conn(fx_t *f, conn_t *c)
{
    for (conn_t **pp = &f->w.dirty; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    }
    hub_unsubscribe_all(f->hub, c);
    drain_queue(c);
    free(c);
}

static void clear_dirty(fx_t *f)
{
    while (f->w.dirty) {
        conn_t *c = f->w.dirty;
        f->w.dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
    }
}

static int sub(fx_t *f, conn_t *c, const char *ch, uint64_t *latest)
{
    seq_snapshot_t snap;
    int rc = hub_subscribe(f->hub, c, ch, strlen(ch), NULL, &snap);
    if (latest) *latest = snap.latest;
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    return rc;
}

static event_t *publish(fx_t *f, const char *ch, const char *name, const char *data)
{
    publish_result_t r;
    size_t before = f->rec.n;
    assert_int_equal(sequencer_publish(f->seq, ch, strlen(ch), name, strlen(name), data, strlen(data), NULL, 0, NULL, NULL, &r),
                     0);
    assert_int_equal(f->rec.n, before + 1);
    event_t *ev = f->rec.ev[before];
    assert_int_equal(ev->offset, r.offset);
    assert_string_equal(ev->id, r.id);
    assert_false(r.duplicate);
    return ev;
}

/* ---- the naive model ---- */

enum { NCONN = 6, NCHAN = 4, MAX_STEPS = 1500 };
static const char *const chan_names[NCHAN] = {"jobs", "user:0xabc", "market:m1", "c"};

typedef struct model {
    bool sub[NCONN][NCHAN];
    uint64_t floor[NCONN][NCHAN];   /* deliver only offsets above */
    uint64_t latest[NCHAN];
    frame_t **expect[NCONN];        /* the frames each queue must hold, in order */
    uint32_t expect_n[NCONN], expect_cap[NCONN];
} model_t;

/* What the random runs exercised, so a run that tests nothing fails. */
typedef struct coverage {
    unsigned delivered, floor_skips, eexist, enotfound, heap_queues;
} coverage_t;

static int chan_index(const char *name, size_t len)
{
    for (int i = 0; i < NCHAN; i++)
        if (strlen(chan_names[i]) == len && memcmp(chan_names[i], name, len) == 0) return i;
    fail_msg("unknown channel %.*s", (int)len, name);
    return -1;
}

static void expect_push(model_t *m, int c, frame_t *fr)
{
    if (m->expect_n[c] == m->expect_cap[c]) {
        m->expect_cap[c] = m->expect_cap[c] ? m->expect_cap[c] * 2 : 16;
        m->expect[c] = realloc(m->expect[c], m->expect_cap[c] * sizeof *m->expect[c]);
        assert_non_null(m->expect[c]);
    }
    m->expect[c][m->expect_n[c]++] = fr;
}

static void check_queues(const model_t *m, conn_t *const *conns, uint64_t seed, int step)
{
    for (int c = 0; c < NCONN; c++) {
        if (conns[c]->out.count != m->expect_n[c])
            fail_msg("seed %llu step %d: conn %d has %u frames queued, model %u", (unsigned long long)seed, step, c,
                     conns[c]->out.count, m->expect_n[c]);
        for (uint32_t i = 0; i < m->expect_n[c]; i++)
            if (queued(conns[c], i) != m->expect[c][i])
                fail_msg("seed %llu step %d: conn %d frame %u differs from the model", (unsigned long long)seed,
                         step, c, i);
    }
}

static void check_index(fx_t *f, const model_t *m, conn_t *const *conns, uint64_t seed, int step)
{
    size_t active = 0;
    for (int ch = 0; ch < NCHAN; ch++) {
        bool any = false;
        for (int c = 0; c < NCONN; c++) {
            bool is = hub_is_subscribed(f->hub, conns[c], chan_names[ch], strlen(chan_names[ch]));
            if (is != m->sub[c][ch])
                fail_msg("seed %llu step %d: conn %d on %s: hub %d, model %d", (unsigned long long)seed, step, c,
                         chan_names[ch], is, m->sub[c][ch]);
            any |= m->sub[c][ch];
        }
        active += any;
    }
    for (int c = 0; c < NCONN; c++) {
        uint32_t n = 0;
        for (int ch = 0; ch < NCHAN; ch++) n += m->sub[c][ch];
        assert_int_equal(conns[c]->sub_count, n);
    }
    assert_int_equal(hub_channel_count(f->hub), active);
    assert_int_equal(sequencer_active_channels(f->seq), (long)active);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Fans out the oldest recorded event not yet fanned out, and checks the result. */
static void model_fanout_one(fx_t *f, model_t *m, conn_t *const *conns, uint64_t seed, int step, coverage_t *cov)
{
    event_t *ev = f->rec.ev[f->rec.head++];
    int ch = chan_index(ev->channel, ev->channel_len);
    size_t want = 0;
    for (int c = 0; c < NCONN; c++) {
        if (!m->sub[c][ch]) continue;
        if (ev->offset <= m->floor[c][ch]) {
            cov->floor_skips++;
            continue;
        }
        cov->delivered++;
        m->floor[c][ch] = ev->offset;
        frame_t *fr = event_frame(ev, (event_format_t)conns[c]->format);
        assert_non_null(fr);
        expect_push(m, c, fr);
        want++;
    }
    size_t got = hub_fanout(f->hub, ev);
    if (got != want)
        fail_msg("seed %llu step %d: %s offset %llu delivered %zu times, model %zu", (unsigned long long)seed, step,
                 chan_names[ch], (unsigned long long)ev->offset, got, want);
    check_queues(m, conns, seed, step);
    for (int c = 0; c < NCONN; c++) cov->heap_queues += conns[c]->out.items != conns[c]->out.inline_items;
}

static void run_model(fx_t *f, uint64_t seed, coverage_t *cov)
{
    model_t m;
    memset(&m, 0, sizeof m);
    for (int ch = 0; ch < NCHAN; ch++) m.latest[ch] = sequencer_latest(f->seq, chan_names[ch], strlen(chan_names[ch]));
    conn_t *conns[NCONN];
    for (int c = 0; c < NCONN; c++) conns[c] = fake_conn(f, (event_format_t)(c % EVENT_FMT_COUNT));
    uint64_t rs = seed * 2654435761u + 1;
    char data[64];
    for (int step = 0; step < MAX_STEPS; step++) {
        uint64_t r = xorshift(&rs);
        int c = (int)((r >> 8) % NCONN), ch = (int)((r >> 16) % NCHAN);
        const char *name = chan_names[ch];
        unsigned op = (unsigned)(r >> 32) % 100;
        if (op < 25) {                                   /* subscribe */
            uint64_t latest = 12345;
            int rc = sub(f, conns[c], name, &latest);
            assert_int_equal(latest, m.latest[ch]);
            if (m.sub[c][ch]) {
                assert_int_equal(rc, HERALD_EEXIST);     /* floor unchanged */
                cov->eexist++;
            } else {
                assert_int_equal(rc, 0);
                m.sub[c][ch] = true;
                m.floor[c][ch] = m.latest[ch];           /* events already sequenced are not for it */
            }
        } else if (op < 40) {                            /* unsubscribe */
            int rc = hub_unsubscribe(f->hub, conns[c], name, strlen(name));
            assert_int_equal(rc, m.sub[c][ch] ? 0 : HERALD_ENOTFOUND);
            cov->enotfound += !m.sub[c][ch];
            m.sub[c][ch] = false;
        } else if (op < 45) {                            /* unsubscribe_all */
            hub_unsubscribe_all(f->hub, conns[c]);
            for (int k = 0; k < NCHAN; k++) m.sub[c][k] = false;
        } else if (op < 72) {                            /* publish: the event waits in the "inbox" */
            snprintf(data, sizeof data, "{\"step\":%d}", step);
            event_t *ev = publish(f, name, "tick", data);
            m.latest[ch]++;
            assert_int_equal(ev->offset, m.latest[ch]);
        } else if (op < 95) {                            /* the worker drains some of its inbox */
            size_t k = 1 + (size_t)(r >> 48) % 4;
            while (k-- > 0 && f->rec.head < f->rec.n) model_fanout_one(f, &m, conns, seed, step, cov);
        } else {                                         /* every queue written out */
            for (int k = 0; k < NCONN; k++) {
                drain_queue(conns[k]);
                m.expect_n[k] = 0;
            }
            clear_dirty(f);
        }
        check_index(f, &m, conns, seed, step);
    }
    while (f->rec.head < f->rec.n) model_fanout_one(f, &m, conns, seed, MAX_STEPS, cov);
    for (int c = 0; c < NCONN; c++) {
        free_fake_conn(f, conns[c]);
        free(m.expect[c]);
    }
    clear_dirty(f);
    assert_int_equal(hub_channel_count(f->hub), 0);
    assert_int_equal(sequencer_active_channels(f->seq), 0);
}

static void test_hub_random_ops_match_naive_model(void **state)
{
    fx_t *f = *state;
    /* one fixture, several seeds one after the other: offsets keep growing */
    static const uint64_t seeds[] = {1, 2, 3, 42, 1234567};
    coverage_t cov = {0};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) run_model(f, seeds[i], &cov);
    assert_true(cov.delivered > 1000);
    assert_true(cov.floor_skips > 50);
    assert_true(cov.eexist > 50);
    assert_true(cov.enotfound > 50);
    assert_true(cov.heap_queues > 0);   /* queues past the inline slots were compared too */
}

/* ---- targeted cases ---- */

static void test_hub_event_at_or_below_subscribe_snapshot_not_delivered(void **state)
{
    fx_t *f = *state;
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE);
    event_t *e1 = publish(f, "jobs", "a", "1");
    event_t *e2 = publish(f, "jobs", "b", "2");
    uint64_t latest = 0;
    assert_int_equal(sub(f, c, "jobs", &latest), 0);
    assert_int_equal(latest, 2);
    event_t *e3 = publish(f, "jobs", "c", "3");
    /* e1 and e2 were in the inbox before the subscription: not delivered */
    assert_int_equal(hub_fanout(f->hub, e1), 0);
    assert_int_equal(hub_fanout(f->hub, e2), 0);
    assert_int_equal(c->out.count, 0);
    assert_int_equal(hub_fanout(f->hub, e3), 1);
    assert_int_equal(c->out.count, 1);
    assert_ptr_equal(queued(c, 0), event_frame(e3, EVENT_FMT_NATIVE));
    /* the same event again (a duplicate in the inbox) is not queued twice */
    assert_int_equal(hub_fanout(f->hub, e3), 0);
    assert_int_equal(c->out.count, 1);
    free_fake_conn(f, c);
    clear_dirty(f);
}

static void test_hub_subscribe_twice_is_eexist_and_one_delivery(void **state)
{
    fx_t *f = *state;
    conn_t *c = fake_conn(f, EVENT_FMT_DATA);
    uint64_t latest = 99;
    assert_int_equal(sub(f, c, "jobs", &latest), 0);
    assert_int_equal(latest, 0);
    event_t *e1 = publish(f, "jobs", "a", "{\"x\":1}");
    assert_int_equal(sub(f, c, "jobs", &latest), HERALD_EEXIST);
    assert_int_equal(latest, 1);
    assert_int_equal(c->sub_count, 1);
    /* the second subscribe did not raise the floor past e1 */
    assert_int_equal(hub_fanout(f->hub, e1), 1);
    assert_int_equal(c->out.count, 1);
    assert_ptr_equal(queued(c, 0), event_frame(e1, EVENT_FMT_DATA));
    assert_int_equal(sequencer_active_channels(f->seq), 1);
    free_fake_conn(f, c);
    assert_int_equal(sequencer_active_channels(f->seq), 0);
    clear_dirty(f);
}

static void test_hub_unsubscribed_conn_gets_nothing_channel_freed(void **state)
{
    fx_t *f = *state;
    conn_t *a = fake_conn(f, EVENT_FMT_NATIVE), *b = fake_conn(f, EVENT_FMT_NATIVE);
    assert_int_equal(sub(f, a, "jobs", NULL), 0);
    assert_int_equal(sub(f, b, "jobs", NULL), 0);
    assert_int_equal(hub_channel_count(f->hub), 1);
    assert_int_equal(hub_unsubscribe(f->hub, a, "jobs", 4), 0);
    assert_int_equal(hub_unsubscribe(f->hub, a, "jobs", 4), HERALD_ENOTFOUND);
    event_t *e = publish(f, "jobs", "x", "1");
    assert_int_equal(hub_fanout(f->hub, e), 1);
    assert_int_equal(a->out.count, 0);
    assert_int_equal(b->out.count, 1);
    assert_int_equal(hub_unsubscribe(f->hub, b, "jobs", 4), 0);
    assert_int_equal(hub_channel_count(f->hub), 0);
    event_t *e2 = publish(f, "jobs", "y", "2");
    assert_int_equal(hub_fanout(f->hub, e2), 0);
    free_fake_conn(f, a);
    free_fake_conn(f, b);
    clear_dirty(f);
}

static void test_hub_fanout_shares_one_frame_per_format(void **state)
{
    fx_t *f = *state;
    conn_t *c[6];
    for (int i = 0; i < 6; i++) {
        c[i] = fake_conn(f, (event_format_t)(i % 3));
        assert_int_equal(sub(f, c[i], "market:m1", NULL), 0);
    }
    event_t *e = publish(f, "market:m1", "price", "{\"p\":1}");
    assert_int_equal(hub_fanout(f->hub, e), 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c[i]->out.count, 1);
        assert_ptr_equal(queued(c[i], 0), event_frame(e, (event_format_t)(i % 3)));
        assert_int_equal(c[i]->out.bytes, queued(c[i], 0)->len);
        assert_true(c[i]->dirty);   /* on the worker's flush list */
    }
    /* each format's frame: the event's reference plus two queued ones */
    for (int fmt = 0; fmt < 3; fmt++) assert_int_equal(atomic_load(&event_frame(e, (event_format_t)fmt)->refs), 3);
    /* every connection is on the dirty list exactly once */
    int listed = 0;
    for (conn_t *d = f->w.dirty; d; d = d->dirty_next) listed++;
    assert_int_equal(listed, 6);
    for (int i = 0; i < 6; i++) free_fake_conn(f, c[i]);
    for (int fmt = 0; fmt < 3; fmt++) assert_int_equal(atomic_load(&event_frame(e, (event_format_t)fmt)->refs), 1);
    clear_dirty(f);
}

static void test_hub_fanout_all_only_open_in_all_connections(void **state)
{
    fx_t *f = *state;
    conn_t *c[4];
    for (int i = 0; i < 4; i++) c[i] = fake_conn(f, EVENT_FMT_NATIVE);
    c[0]->in_all = true;
    c[1]->in_all = false;
    c[2]->in_all = true;
    c[3]->in_all = true;
    c[3]->state = CONN_DRAINING;
    for (int i = 0; i < 3; i++) c[i]->next = c[i + 1];
    event_t *e = publish(f, "$all", "notice", "{}");
    assert_int_equal(hub_fanout_all(c[0], e), 2);
    assert_int_equal(c[0]->out.count, 1);
    assert_int_equal(c[1]->out.count, 0);
    assert_int_equal(c[2]->out.count, 1);
    assert_int_equal(c[3]->out.count, 0);
    for (int i = 0; i < 4; i++) free_fake_conn(f, c[i]);
    clear_dirty(f);
}

/* ---- slow consumers closed during a fan-out (real connections on socketpairs) ---- */

typedef struct real_conn {
    conn_t *c;
    int peer;
} real_conn_t;

static real_conn_t real_conn(fx_t *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    conn_t *c = conn_create(&f->w, sv[0], NULL, 0);
    assert_non_null(c);
    c->state = CONN_OPEN;
    c->format = EVENT_FMT_NATIVE;
    c->counted = true;   /* a client connection: the send queue limit applies */
    c->proto = PROTO_WS;
    atomic_fetch_add(&f->srv.metrics.connections[PROTO_WS], 1);
    atomic_fetch_add(&f->srv.client_connections, 1);
    return (real_conn_t){c, sv[1]};
}

/* What the worker does after a batch: flush list, then free the closed. */
static void after_batch(fx_t *f)
{
    while (f->w.dirty) {
        conn_t *c = f->w.dirty;
        f->w.dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->state == CONN_CLOSED) worker_bury(&f->w, c);
        else drain_queue(c);
    }
    while (f->w.graveyard) {
        conn_t *c = f->w.graveyard;
        f->w.graveyard = c->dirty_next;
        conn_free(c);
    }
}

static void close_all_real(fx_t *f)
{
    while (f->w.conns) conn_close(f->w.conns);
    after_batch(f);
}

/* Members [A, B, C] of one channel; B's queue is near its limit. The fan-out walks
 * from the end: C, then B (closed, C swapped into its slot), then A. Everyone but B
 * gets the event exactly once. */
static void run_slow_middle(fx_t *f, int slow_index)
{
    f->w.loop = f->w.loop ? f->w.loop : loop_create(NULL, NULL);
    assert_non_null(f->w.loop);
    real_conn_t rc[3];
    for (int i = 0; i < 3; i++) {
        rc[i] = real_conn(f);
        assert_int_equal(sub(f, rc[i].c, "jobs", NULL), 0);
        assert_int_equal(sub(f, rc[i].c, "other", NULL), 0);
    }
    event_t *e = publish(f, "jobs", "x", "{\"n\":1}");
    frame_t *fr = event_frame(e, EVENT_FMT_NATIVE);
    f->cfg.limits.send_queue_bytes = 3 * fr->len;
    /* the slow one already holds three unwritten frames: one more passes the limit */
    conn_t *slow = rc[slow_index].c;
    for (int k = 0; k < 3; k++) assert_int_equal(conn_send(slow, frame_ref(fr), true), 0);
    unsigned long dropped0 = atomic_load(&f->srv.metrics.dropped);

    assert_int_equal(hub_fanout(f->hub, e), 2);
    for (int i = 0; i < 3; i++) {
        if (i == slow_index) continue;
        assert_int_equal(rc[i].c->out.count, 1);
        assert_ptr_equal(queued(rc[i].c, 0), fr);
        assert_true(hub_is_subscribed(f->hub, rc[i].c, "jobs", 4));
    }
    assert_int_equal(slow->state, CONN_CLOSED);
    assert_int_equal(slow->close_code, WS_CLOSE_SLOW_CONSUMER);
    assert_int_equal(slow->out.count, 0);
    assert_null(slow->subs);                             /* out of every channel */
    assert_int_equal(atomic_load(&f->srv.metrics.slow_consumers), 1);
    /* the refused event plus the three that were queued */
    assert_int_equal(atomic_load(&f->srv.metrics.dropped) - dropped0, 4);
    assert_int_equal(sequencer_active_channels(f->seq), 2);
    /* the next event reaches the two others once each */
    event_t *e2 = publish(f, "jobs", "y", "2");
    assert_int_equal(hub_fanout(f->hub, e2), 2);
    after_batch(f);    /* frees the slow one: ASan checks nothing still points at it */
    for (int i = 0; i < 3; i++) close(rc[i].peer);
    close_all_real(f);
    assert_int_equal(hub_channel_count(f->hub), 0);
    assert_int_equal(atomic_load(&f->srv.client_connections), 0);
    f->cfg.limits.send_queue_bytes = 1048576;
    atomic_store(&f->srv.metrics.slow_consumers, 0);
}

static void test_hub_slow_consumer_in_middle_closed_others_delivered_once(void **state)
{
    run_slow_middle(*state, 1);
}

static void test_hub_slow_consumer_first_member_closed_others_delivered_once(void **state)
{
    run_slow_middle(*state, 0);
}

static void test_hub_slow_consumer_last_member_closed_others_delivered_once(void **state)
{
    run_slow_middle(*state, 2);
}

/* The only member closes as a slow consumer: the channel is freed during its own
 * fan-out, which must stop touching it. */
static void test_hub_slow_sole_member_frees_channel_during_fanout(void **state)
{
    fx_t *f = *state;
    f->w.loop = loop_create(NULL, NULL);
    assert_non_null(f->w.loop);
    real_conn_t rc = real_conn(f);
    assert_int_equal(sub(f, rc.c, "solo", NULL), 0);
    event_t *e = publish(f, "solo", "x", "1");
    f->cfg.limits.send_queue_bytes = 1;   /* any frame passes it */
    assert_int_equal(hub_fanout(f->hub, e), 0);
    assert_int_equal(rc.c->state, CONN_CLOSED);
    assert_int_equal(hub_channel_count(f->hub), 0);
    assert_int_equal(atomic_load(&f->srv.metrics.dropped), 1);
    after_batch(f);
    close(rc.peer);
    close_all_real(f);
    f->cfg.limits.send_queue_bytes = 1048576;
}

/* ---- sequencer ---- */

static void test_seq_offsets_per_channel_start_at_one(void **state)
{
    fx_t *f = *state;
    assert_int_equal(publish(f, "a", "x", "1")->offset, 1);
    assert_int_equal(publish(f, "a", "x", "1")->offset, 2);
    assert_int_equal(publish(f, "b", "x", "1")->offset, 1);
    assert_int_equal(publish(f, "a", "x", "1")->offset, 3);
    assert_int_equal(sequencer_latest(f->seq, "a", 1), 3);
    assert_int_equal(sequencer_latest(f->seq, "b", 1), 1);
    assert_int_equal(sequencer_latest(f->seq, "never", 5), 0);
    assert_int_equal(strlen(sequencer_epoch(f->seq)), 16);
}

static void test_seq_idempotency_key_repeat_is_duplicate_not_dispatched(void **state)
{
    fx_t *f = *state;
    publish_result_t r1, r2, r3;
    assert_int_equal(sequencer_publish(f->seq, "jobs", 4, "x", 1, "1", 1, "k1", 2, NULL, NULL, &r1), 0);
    size_t dispatched = f->rec.n;
    assert_int_equal(sequencer_publish(f->seq, "jobs", 4, "x", 1, "2", 1, "k1", 2, NULL, NULL, &r2), 0);
    assert_true(r2.duplicate);
    assert_int_equal(r2.offset, r1.offset);
    assert_string_equal(r2.id, r1.id);
    assert_int_equal(f->rec.n, dispatched);
    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 1);
    /* the same key on another channel is another event */
    assert_int_equal(sequencer_publish(f->seq, "jobs2", 5, "x", 1, "1", 1, "k1", 2, NULL, NULL, &r3), 0);
    assert_false(r3.duplicate);
    assert_int_equal(f->rec.n, dispatched + 1);
}

static void subscribe_since(fx_t *f, conn_t *c, const char *ch, uint64_t since, const char *epoch,
                            seq_snapshot_t *snap)
{
    seq_since_t s = {.offset = since, .epoch = epoch};
    assert_int_equal(hub_subscribe(f->hub, c, ch, strlen(ch), &s, snap), 0);
}

static void test_seq_subscribe_since_recovers_missed_events_in_order(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 5; i++) publish(f, "jobs", "x", "1");
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE);
    seq_snapshot_t snap;
    subscribe_since(f, c, "jobs", 2, NULL, &snap);
    assert_true(snap.recovered);
    assert_int_equal(snap.latest, 5);
    assert_int_equal(snap.event_count, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(snap.events[i]->offset, 3 + i);
    seq_snapshot_release(&snap);
    /* recovered events are not fanned out again: the floor is the snapshot */
    for (size_t i = 0; i < f->rec.n; i++) assert_int_equal(hub_fanout(f->hub, f->rec.ev[i]), 0);
    free_fake_conn(f, c);
}

static void test_seq_subscribe_since_latest_recovers_nothing_missing(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 3; i++) publish(f, "jobs", "x", "1");
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE);
    seq_snapshot_t snap;
    subscribe_since(f, c, "jobs", 3, sequencer_epoch(f->seq), &snap);
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    free_fake_conn(f, c);
}

static void test_seq_subscribe_since_other_epoch_not_recovered(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 3; i++) publish(f, "jobs", "x", "1");
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE);
    seq_snapshot_t snap;
    subscribe_since(f, c, "jobs", 1, "not-this-epoch", &snap);
    assert_false(snap.recovered);
    assert_int_equal(snap.event_count, 0);   /* SPEC 9.3: nothing sent when not recovered */
    assert_int_equal(snap.latest, 3);
    seq_snapshot_release(&snap);
    free_fake_conn(f, c);
}

static void test_seq_subscribe_since_future_offset_not_recovered(void **state)
{
    fx_t *f = *state;
    publish(f, "jobs", "x", "1");
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE);
    seq_snapshot_t snap;
    subscribe_since(f, c, "jobs", 7, NULL, &snap);
    assert_false(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    free_fake_conn(f, c);
}

/* History keeps history.size (100) events: asking from before the oldest kept one
 * cannot recover; from just before it, it can. */
static void test_seq_subscribe_since_beyond_history_not_recovered(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 130; i++) publish(f, "jobs", "x", "1");
    conn_t *c = fake_conn(f, EVENT_FMT_NATIVE), *d = fake_conn(f, EVENT_FMT_NATIVE);
    seq_snapshot_t snap;
    subscribe_since(f, c, "jobs", 29, NULL, &snap);   /* needs 30..130; 31..130 kept */
    assert_false(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    subscribe_since(f, d, "jobs", 30, NULL, &snap);   /* needs 31..130 */
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 100);
    assert_int_equal(snap.events[0]->offset, 31);
    assert_int_equal(snap.events[99]->offset, 130);
    seq_snapshot_release(&snap);
    free_fake_conn(f, c);
    free_fake_conn(f, d);
}

static void test_seq_history_limit_first_after_since_or_last(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 20; i++) publish(f, "jobs", "x", "1");
    seq_snapshot_t snap;
    assert_int_equal(sequencer_history(f->seq, "jobs", 4, true, 5, 3, &snap), 0);
    assert_int_equal(snap.event_count, 3);
    assert_int_equal(snap.events[0]->offset, 6);
    assert_int_equal(snap.events[2]->offset, 8);
    assert_int_equal(snap.latest, 20);
    seq_snapshot_release(&snap);
    assert_int_equal(sequencer_history(f->seq, "jobs", 4, false, 0, 3, &snap), 0);
    assert_int_equal(snap.event_count, 3);
    assert_int_equal(snap.events[0]->offset, 18);
    assert_int_equal(snap.events[2]->offset, 20);
    seq_snapshot_release(&snap);
    assert_int_equal(sequencer_history(f->seq, "unknown", 7, false, 0, 3, &snap), 0);
    assert_int_equal(snap.event_count, 0);
    assert_int_equal(snap.latest, 0);
    seq_snapshot_release(&snap);
}

static void test_seq_render_by_channel_excludes_all_and_ranks(void **state)
{
    fx_t *f = *state;
    conn_t *c[3];
    for (int i = 0; i < 3; i++) c[i] = fake_conn(f, EVENT_FMT_NATIVE);
    for (int i = 0; i < 3; i++) assert_int_equal(sub(f, c[i], "b", NULL), 0);
    assert_int_equal(sub(f, c[0], "a", NULL), 0);
    assert_int_equal(sub(f, c[1], "$all", NULL), 0);
    assert_int_equal(sub(f, c[2], "c", NULL), 0);
    buf_t b = {0};
    assert_int_equal(sequencer_render_by_channel(f->seq, 10, &b), 0);
    assert_string_equal(b.data, "{\"b\":3,\"a\":1,\"c\":1}");
    buf_free(&b);
    assert_int_equal(sequencer_render_by_channel(f->seq, 1, &b), 0);
    assert_string_equal(b.data, "{\"b\":3}");
    buf_free(&b);
    for (int i = 0; i < 3; i++) free_fake_conn(f, c[i]);
    assert_int_equal(sequencer_render_by_channel(f->seq, 10, &b), 0);
    assert_string_equal(b.data, "{}");
    buf_free(&b);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX(test_hub_random_ops_match_naive_model),
        FX(test_hub_event_at_or_below_subscribe_snapshot_not_delivered),
        FX(test_hub_subscribe_twice_is_eexist_and_one_delivery),
        FX(test_hub_unsubscribed_conn_gets_nothing_channel_freed),
        FX(test_hub_fanout_shares_one_frame_per_format),
        FX(test_hub_fanout_all_only_open_in_all_connections),
        FX(test_hub_slow_consumer_in_middle_closed_others_delivered_once),
        FX(test_hub_slow_consumer_first_member_closed_others_delivered_once),
        FX(test_hub_slow_consumer_last_member_closed_others_delivered_once),
        FX(test_hub_slow_sole_member_frees_channel_during_fanout),
        FX(test_seq_offsets_per_channel_start_at_one),
        FX(test_seq_idempotency_key_repeat_is_duplicate_not_dispatched),
        FX(test_seq_subscribe_since_recovers_missed_events_in_order),
        FX(test_seq_subscribe_since_latest_recovers_nothing_missing),
        FX(test_seq_subscribe_since_other_epoch_not_recovered),
        FX(test_seq_subscribe_since_future_offset_not_recovered),
        FX(test_seq_subscribe_since_beyond_history_not_recovered),
        FX(test_seq_history_limit_first_after_since_or_last),
        FX(test_seq_render_by_channel_excludes_all_and_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
