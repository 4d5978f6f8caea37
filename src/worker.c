#include "worker.h"
#include "core/err.h"
#include "http/http_conn.h"
#include "http/http_response.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/sequencer.h"
#include "auth/authn.h"
#include "auth/tokens.h"
#include "log.h"
#include "store/store.h"
#include "proto/ws_transport.h"
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static void after_batch(loop_t *loop, void *ctx);
static void on_accept(loop_t *loop, loop_io_t *io, uint32_t revents);
static void on_wake(loop_t *loop, loop_io_t *io, uint32_t revents);
static void on_housekeeping(loop_t *loop, loop_timer_t *t);

int worker_init(worker_t *w, struct server *s, unsigned index, int listen_fd)
{
    memset(w, 0, sizeof *w);
    w->server = s;
    w->cfg = s->cfg;
    w->index = index;
    w->listen_fd = listen_fd;
    w->wake_fd = -1;
    pthread_mutex_init(&w->inbox_lock, NULL);
    w->loop = loop_create(after_batch, w);
    w->hub = hub_create(s->seq);
    w->rbuf = malloc(WORKER_READ_BUFFER);
    w->tls_buf = malloc(WORKER_TLS_BUFFER);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->ping_frame = frame_ws(WS_OP_PING, NULL, 0);
    if (!w->loop || !w->hub || !w->rbuf || !w->tls_buf || w->wake_fd < 0 || !w->ping_frame) return HERALD_ENOMEM;
    if (loop_io_add(w->loop, &w->wake_io, w->wake_fd, EPOLLIN, on_wake) < 0) return HERALD_EIO;
    if (loop_io_add(w->loop, &w->listen_io, listen_fd, EPOLLIN, on_accept) < 0) return HERALD_EIO;
    if (index == 0) loop_timer_set(w->loop, &w->housekeeping, time_mono_ms() + 1000, on_housekeeping);
    return 0;
}

static void free_closed(worker_t *w)
{
    while (w->dirty) {   /* closed while on the flush list: bury them */
        conn_t *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->state == CONN_CLOSED) worker_bury(w, c);
    }
    while (w->graveyard) {
        conn_t *c = w->graveyard;
        w->graveyard = c->dirty_next;
        conn_free(c);
    }
}

void worker_deinit(worker_t *w)
{
    /* close whatever is left (a shutdown that timed out), then free it */
    while (w->conns) conn_close(w->conns);
    free_closed(w);
    free(w->inbox);
    free(w->inbox_work);
    hub_destroy(w->hub);
    if (w->listen_fd >= 0) close(w->listen_fd);
    if (w->wake_fd >= 0) close(w->wake_fd);
    loop_destroy(w->loop);
    free(w->rbuf);
    free(w->tls_buf);
    frame_unref(w->ping_frame);
    pthread_mutex_destroy(&w->inbox_lock);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    store_defer_kicks();   /* group commit: one writer wake-up per loop batch (store.h) */
    if (loop_run(w->loop) < 0) log_msg(LOG_ERROR, "event loop failed", NULL);
    return NULL;
}

int worker_start(worker_t *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : HERALD_EIO;
}

void worker_join(worker_t *w) { pthread_join(w->thread, NULL); }

int worker_call(worker_t *w, worker_fn fn, void *arg)
{
    return worker_post(w, INBOX_CALL, arg, (uint64_t)(uintptr_t)fn);
}

int worker_post(worker_t *w, int kind, void *ptr, uint64_t a)
{
    pthread_mutex_lock(&w->inbox_lock);
    if (w->inbox_len == w->inbox_cap) {
        size_t ncap = w->inbox_cap ? w->inbox_cap * 2 : 64;
        inbox_msg_t *n = realloc(w->inbox, ncap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&w->inbox_lock);
            return HERALD_ENOMEM;
        }
        w->inbox = n;
        w->inbox_cap = ncap;
    }
    bool was_empty = w->inbox_len == 0;
    w->inbox[w->inbox_len++] = (inbox_msg_t){kind, ptr, a};
    pthread_mutex_unlock(&w->inbox_lock);
    /* one wake-up per burst: only the first message after a drain writes */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t r = write(w->wake_fd, &one, sizeof one);
        (void)r;
    }
    return 0;
}

void worker_mark_dirty(worker_t *w, conn_t *c)
{
    c->dirty = true;
    c->dirty_next = w->dirty;
    w->dirty = c;
}

void worker_migrate(worker_t *w, conn_t *c, worker_t *to)
{
    if (c->migrate_to || c->is_virtual) return;
    conn_pause_reading(c, true);
    c->migrate_to = to;
    c->migrate_next = w->migrating;
    w->migrating = c;
}

/* After the flush: out of this loop entirely, then posted to the new worker. */
static void hand_over(worker_t *w)
{
    while (w->migrating) {
        conn_t *c = w->migrating;
        w->migrating = c->migrate_next;
        c->migrate_next = NULL;
        if (c->state == CONN_CLOSED) continue;   /* buried already */
        loop_io_remove(w->loop, &c->io);
        loop_timer_cancel(&c->timer);
        if (c->prev) c->prev->next = c->next;
        else w->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
        w->conn_count--;
        worker_t *to = c->migrate_to;
        if (worker_post(to, INBOX_ADOPT, c, 0) < 0) {   /* out of memory: the connection is lost */
            close(c->io.fd);
            conn_free(c);
        }
    }
}

static void adopt(worker_t *w, conn_t *c)
{
    c->worker = w;
    c->migrate_to = NULL;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    conn_watch(c);
    if (c->out.count > 0) worker_mark_dirty(w, c);
    if (c->handler && c->handler->on_adopted) c->handler->on_adopted(c);
}

void worker_bury(worker_t *w, conn_t *c)
{
    /* A dirty connection is still on the flush list; after_batch skips closed ones
     * and buries them there, so it must not be linked twice. A held one is buried
     * by its last conn_release. */
    if (c->dirty || c->holds) return;
    c->dirty_next = w->graveyard;
    w->graveyard = c;
}

static void on_accept(loop_t *loop, loop_io_t *io, uint32_t revents)
{
    (void)loop;
    (void)revents;
    worker_t *w = (worker_t *)((char *)io - offsetof(worker_t, listen_io));
    for (int i = 0; i < 64; i++) {   /* bounded: other sockets get their turn */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(w->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_msg(LOG_WARN, "out of file descriptors: raise ulimit -n", NULL);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = conn_create(w, fd, (struct sockaddr *)&ss, sl);
        if (!c) {
            close(fd);
            continue;
        }
        http_conn_start(c);
    }
}

static long disconnect_matching(worker_t *w, const char *who, int by)
{
    char id[37];
    long n = 0;
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (!c->counted) continue;
        bool match;
        if (by == DISCONNECT_CONNECTION) {
            conn_id_str(c, id);
            match = strcmp(id, who) == 0;
        } else if (by == DISCONNECT_TOKEN) {
            match = c->auth && strcmp(c->auth->token_id, who) == 0;
        } else if (by == DISCONNECT_ALL) {
            match = true;
        } else {
            match = c->user && strcmp(c->user, who) == 0;
        }
        if (match && c->state == CONN_OPEN && !c->ws_close_sent) {
            if (by == DISCONNECT_ALL) ws_transport_close(c, WS_CLOSE_RESTART, "history lost: resubscribe");
            else ws_transport_close(c, WS_CLOSE_DISCONNECTED, "disconnected");
            n++;
        }
    }
    return n;
}

static void handle_disconnect(worker_t *w, disconnect_req_t *r)
{
    long n = w->conns ? disconnect_matching(w, r->who, r->by) : 0;
    atomic_fetch_add(&r->count, n);
    if (atomic_fetch_sub(&r->remaining, 1) != 1) return;
    if (r->done) worker_call(r->origin, r->done, r);
    else free(r);
}

int worker_broadcast_disconnect(struct server *s, disconnect_req_t *r)
{
    atomic_init(&r->remaining, (int)s->worker_count);
    atomic_init(&r->count, 0);
    for (unsigned i = 0; i < s->worker_count; i++) {
        if (worker_post(&s->workers[i], INBOX_DISCONNECT, r, 0) < 0 && atomic_fetch_sub(&r->remaining, 1) == 1) {
            if (r->done) worker_call(r->origin, r->done, r);   /* the others already answered */
            else free(r);
        }
    }
    return 0;
}

static void revoked(void *arg, const char *id)
{
    server_t *s = arg;
    size_t len = strlen(id);
    disconnect_req_t *r = calloc(1, sizeof *r + len + 1);
    if (!r) return;
    memcpy(r->who, id, len);
    r->by = DISCONNECT_TOKEN;
    worker_broadcast_disconnect(s, r);
}

#define SWEEP_BUCKETS_PER_SECOND 4096

/* Worker 0, every second: a token revoked by the CLI (another process) closes its
 * connections here within a second or two; a slice of the channel table is swept
 * (a full pass every channels/4096 seconds). */
static void on_housekeeping(loop_t *loop, loop_timer_t *t)
{
    worker_t *w = (worker_t *)((char *)t - offsetof(worker_t, housekeeping));
    server_t *s = w->server;
    if (s->tokens) s->tokens_checked_ms = tokens_revoked_since(s->tokens, s->tokens_checked_ms, revoked, s) + 1;
    sequencer_sweep(s->seq, SWEEP_BUCKETS_PER_SECOND);
    loop_timer_set(loop, t, loop_now_ms(loop) + 1000, on_housekeeping);
}

static void begin_shutdown(worker_t *w)
{
    if (w->shutting_down) return;
    w->shutting_down = true;
    w->shutdown_deadline_ms = loop_now_ms(w->loop) + (uint64_t)w->cfg->shutdown_timeout_s * 1000;
    loop_io_remove(w->loop, &w->listen_io);
    close(w->listen_fd);
    w->listen_fd = -1;
    w->listen_io.fd = -1;
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->websocket) ws_transport_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        else if (c->counted) conn_close(c);   /* streaming HTTP (SSE, polling) */
        else if (!c->req) conn_close(c);      /* idle keep-alive */
        else http_set_close(c);               /* finish the request in flight, then close */
    }
}

/* Fan-out happens here, once per batch: every event that arrived since the last
 * batch is queued to its subscribers, and the flush below then writes several
 * frames per system call to each connection. Returns the number of messages. */
static size_t drain_inbox(worker_t *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    inbox_msg_t *msgs = w->inbox;
    size_t n = w->inbox_len, cap = w->inbox_cap;
    w->inbox = w->inbox_work;
    w->inbox_cap = w->inbox_work_cap;
    w->inbox_len = 0;
    pthread_mutex_unlock(&w->inbox_lock);
    w->inbox_work = msgs;
    w->inbox_work_cap = cap;
    if (n == 0) return 0;

    uint64_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        inbox_msg_t *m = &msgs[i];
        switch (m->kind) {
        case INBOX_EVENT: {
            event_t *ev = m->ptr;
            if (ev->channel_len == 4 && memcmp(ev->channel, "$all", 4) == 0)
                delivered += hub_fanout_all(w->conns, ev);
            else
                delivered += hub_fanout(w->hub, ev);
            event_unref(ev);
            break;
        }
        case INBOX_DISCONNECT:
            handle_disconnect(w, m->ptr);
            break;
        case INBOX_CALL:
            ((worker_fn)(uintptr_t)m->a)(w, m->ptr);
            break;
        case INBOX_ADOPT:
            adopt(w, m->ptr);
            break;
        case INBOX_SHUTDOWN:
            begin_shutdown(w);
            break;
        }
    }
    if (delivered)
        atomic_fetch_add_explicit(&w->server->metrics.delivered, delivered, memory_order_relaxed);
    return n;
}

size_t worker_drain(worker_t *w) { return drain_inbox(w); }

static void on_wake(loop_t *loop, loop_io_t *io, uint32_t revents)
{
    (void)loop;
    (void)revents;
    worker_t *w = (worker_t *)((char *)io - offsetof(worker_t, wake_io));
    uint64_t v;
    ssize_t r = read(w->wake_fd, &v, sizeof v);
    (void)r;
    /* the inbox itself is drained in after_batch, with everything else */
}

static void after_batch(loop_t *loop, void *ctx)
{
    worker_t *w = ctx;
    drain_inbox(w);
    store_kick();   /* what this batch published is committed while its output is written */
    /* Flush every connection that got output in this batch. A flush can close a
     * connection (write error); closing never adds to the dirty list. */
    while (w->dirty) {
        conn_t *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->state == CONN_CLOSED) {
            worker_bury(w, c);
            continue;
        }
        conn_flush(c);
    }
    hand_over(w);
    while (w->graveyard) {
        conn_t *c = w->graveyard;
        w->graveyard = c->dirty_next;
        conn_free(c);
    }
    if (w->shutting_down && (w->conns == NULL || loop_now_ms(loop) >= w->shutdown_deadline_ms))
        loop_stop(loop);
}
