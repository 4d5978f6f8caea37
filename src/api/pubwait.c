#include "api/pubwait.h"
#include "core/err.h"
#include "core/util.h"
#include "http/http_conn.h"
#include "server.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

pubwait_t *pubwait_create(conn_t *c, size_t count, bool http, pubwait_finish_fn finish, void *ctx)
{
    pubwait_t *pw = calloc(1, sizeof *pw + count * sizeof pw->results[0]);
    if (!pw) return NULL;
    pw->conn = c;
    pw->origin = c->worker;
    pw->finish = finish;
    pw->ctx = ctx;
    pw->http = http;
    pw->count = count;
    atomic_init(&pw->outstanding, 1);
    atomic_init(&pw->status, 0);
    conn_hold(c);
    return pw;
}

static void run_finish(struct worker *w, void *arg)
{
    (void)w;
    pubwait_t *pw = arg;
    if (pw->slot) http_conn_answering(pw->conn, pw->slot);   /* the answer takes its place in line */
    pw->finish(pw);
}

static void one_done(pubwait_t *pw, int status, bool on_origin)
{
    if (status < 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&pw->status, &zero, status);
    }
    if (atomic_fetch_sub(&pw->outstanding, 1) != 1) return;
    if (on_origin) run_finish(pw->origin, pw);
    else if (worker_call(pw->origin, run_finish, pw) < 0) run_finish(pw->origin, pw);   /* out of memory */
}

typedef struct slot {
    pubwait_t *pw;
    size_t i;
    uint64_t t0;
} slot_t;

static void on_committed(void *arg, int status, const publish_result_t *r)
{
    slot_t *sl = arg;
    pubwait_t *pw = sl->pw;
    pw->results[sl->i] = *r;
    if (status == 0) metrics_observe_publish(&pw->origin->server->metrics, time_mono_ns() - sl->t0);
    free(sl);
    one_done(pw, status, false);
}

void pubwait_publish(pubwait_t *pw, size_t i, const char *channel, size_t channel_len, const char *name,
                     size_t name_len, const char *data, size_t data_len, const char *idem_key, size_t idem_len)
{
    server_t *s = pw->origin->server;
    slot_t *sl = malloc(sizeof *sl);
    if (!sl) {
        int zero = 0;
        atomic_compare_exchange_strong(&pw->status, &zero, HERALD_ENOMEM);
        return;
    }
    uint64_t t0 = time_mono_ns();
    *sl = (slot_t){pw, i, t0};
    atomic_fetch_add(&pw->outstanding, 1);
    int rc = sequencer_publish(s->seq, channel, channel_len, name, name_len, data, data_len, idem_key, idem_len,
                               on_committed, sl, &pw->results[i]);
    if (rc != SEQUENCER_PENDING) {
        free(sl);
        if (rc == 0) metrics_observe_publish(&s->metrics, time_mono_ns() - t0);
        one_done(pw, rc, true);
    }
}

void pubwait_start(pubwait_t *pw)
{
    if (atomic_load(&pw->outstanding) > 1 && pw->http) pw->slot = http_conn_defer(pw->conn);
    one_done(pw, 0, true);
}

void pubwait_free(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    if (pw->slot) http_conn_answered(c, pw->slot);
    conn_release(c);
    free(pw);
}
