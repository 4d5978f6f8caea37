#include "core/conn.h"
#include "auth/authn.h"
#include "core/err.h"
#include "core/tls.h"
#include "core/util.h"
#include "hub/hub.h"
#include "http/http_conn.h"
#include "http/http_request.h"
#include "server.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define FLUSH_IOV_MAX 64

static void on_io(loop_t *loop, loop_io_t *io, uint32_t revents);
static void outq_consume(outq_t *q, size_t n);

/* What the connection waits for: input unless it ended or is paused, output
 * readiness only after a short write. */
static uint32_t wanted_events(const conn_t *c)
{
    return (c->read_eof || c->read_paused ? 0 : EPOLLIN | EPOLLRDHUP) | (c->write_blocked ? EPOLLOUT : 0);
}

static void update_events(conn_t *c) { loop_io_modify(c->worker->loop, &c->io, wanted_events(c)); }
static void on_timer_fired(loop_t *loop, loop_timer_t *t);

conn_t *conn_create(worker_t *w, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->worker = w;
    c->out.items = c->out.inline_items;
    c->out.cap = OUTQ_INLINE;
    c->io.fd = -1;
    if (peer && peer->sa_family == AF_INET && peer_len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
        c->peer.sin6_family = AF_INET6;
        c->peer.sin6_port = in->sin_port;
        c->peer.sin6_addr.s6_addr[10] = 0xff;
        c->peer.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&c->peer.sin6_addr.s6_addr[12], &in->sin_addr, 4);
    } else if (peer && peer->sa_family == AF_INET6 && peer_len >= sizeof(struct sockaddr_in6)) {
        memcpy(&c->peer, peer, sizeof c->peer);
    }
    if (w->server->tls_ctx && !(c->tls = tls_new(w->server->tls_ctx, fd))) {
        free(c);
        return NULL;
    }
    if (loop_io_add(w->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_io) < 0) {
        tls_free(c->tls);
        free(c);
        return NULL;
    }
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    return c;
}

conn_t *conn_create_virtual(worker_t *w)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->worker = w;
    c->is_virtual = true;
    c->out.items = c->out.inline_items;
    c->out.cap = OUTQ_INLINE;
    c->io.fd = -1;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->conn_count++;
    return c;
}

void conn_watch(conn_t *c) { loop_io_add(c->worker->loop, &c->io, c->io.fd, wanted_events(c), on_io); }

/* ---- send queue ---- */

static int outq_push(outq_t *q, frame_t *f, bool is_event)
{
    if (q->count == q->cap) {
        uint32_t ncap = q->cap * 2;
        out_item_t *n = malloc(ncap * sizeof *n);
        if (!n) return HERALD_ENOMEM;
        for (uint32_t i = 0; i < q->count; i++) n[i] = q->items[(q->head + i) % q->cap];
        if (q->items != q->inline_items) free(q->items);
        q->items = n;
        q->cap = ncap;
        q->head = 0;
    }
    out_item_t *it = &q->items[(q->head + q->count) % q->cap];
    it->frame = f;
    it->offset = 0;
    it->is_event = is_event;
    q->count++;
    q->bytes += f->len;
    return 0;
}

/* Back to the inline slots once empty: a connection that keeps up holds no heap. */
static void outq_compact(outq_t *q)
{
    if (q->count == 0) {
        if (q->items != q->inline_items) free(q->items);
        q->items = q->inline_items;
        q->cap = OUTQ_INLINE;
        q->head = 0;
    }
}

/* Drops everything queued; returns how many event frames were discarded. */
static uint64_t outq_clear(outq_t *q)
{
    uint64_t events = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        out_item_t *it = &q->items[(q->head + i) % q->cap];
        events += it->is_event;
        frame_unref(it->frame);
    }
    q->count = 0;
    q->bytes = 0;
    outq_compact(q);
    return events;
}

void conn_output_written(conn_t *c) { outq_consume(&c->out, c->out.bytes); outq_compact(&c->out); }

static void close_slow_consumer(conn_t *c)
{
    server_t *s = c->worker->server;
    atomic_fetch_add_explicit(&s->metrics.slow_consumers, 1, memory_order_relaxed);
    /* The close frame can only follow whole frames: if the head frame is half
     * written, the stream cannot carry a valid close, so the TCP close says it. */
    bool clean = c->out.count == 0 || c->out.items[c->out.head].offset == 0;
    uint64_t dropped = outq_clear(&c->out);
    atomic_fetch_add_explicit(&s->metrics.dropped, dropped, memory_order_relaxed);
    if (clean && c->websocket && !c->tls) {   /* through TLS it would need a record: skip */
        frame_t *f = frame_ws_close(WS_CLOSE_SLOW_CONSUMER, "slow consumer");
        if (f) {
            ssize_t w = send(c->io.fd, f->data, f->len, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            frame_unref(f);
        }
    }
    c->close_code = WS_CLOSE_SLOW_CONSUMER;
    conn_close(c);
}

int conn_send(conn_t *c, frame_t *f, bool is_event)
{
    if (c->state == CONN_CLOSED || (is_event && c->ws_close_sent)) {
        frame_unref(f);
        return HERALD_ECLOSED;
    }
    const config_t *cfg = c->worker->cfg;
    if (c->counted && c->out.bytes + f->len > cfg->limits.send_queue_bytes) {
        frame_unref(f);
        if (is_event) atomic_fetch_add_explicit(&c->worker->server->metrics.dropped, 1, memory_order_relaxed);
        close_slow_consumer(c);
        return HERALD_ECLOSED;
    }
    if (outq_push(&c->out, f, is_event) < 0) {
        frame_unref(f);
        conn_close(c);
        return HERALD_ECLOSED;
    }
    if (!c->dirty && !c->write_blocked) worker_mark_dirty(c->worker, c);
    return 0;
}

int conn_send_bytes(conn_t *c, const void *p, size_t n)
{
    frame_t *f = frame_from(p, n);
    if (!f) {
        conn_close(c);
        return HERALD_ENOMEM;
    }
    return conn_send(c, f, false);
}

/* Drops n written bytes from the front of the queue. */
static void outq_consume(outq_t *q, size_t n)
{
    q->bytes -= n;
    while (n > 0) {
        out_item_t *it = &q->items[q->head];
        size_t rem = it->frame->len - it->offset;
        if (n < rem) {
            it->offset += (uint32_t)n;
            break;
        }
        n -= rem;
        frame_unref(it->frame);
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
}

/* TLS cannot gather: queued frames are copied into one record-sized buffer per
 * write. A write that would block is retried with exactly the same bytes, as
 * OpenSSL requires, so its length is remembered. Returns false when it stopped
 * (blocked or closed). */
static bool flush_tls(conn_t *c)
{
    outq_t *q = &c->out;
    uint8_t *buf = c->worker->tls_buf;
    while (q->count > 0) {
        size_t want = c->tls_retry_len ? c->tls_retry_len : (q->bytes < WORKER_TLS_BUFFER ? q->bytes : WORKER_TLS_BUFFER);
        size_t got = 0;
        for (uint32_t i = 0; i < q->count && got < want; i++) {
            out_item_t *it = &q->items[(q->head + i) % q->cap];
            size_t n = it->frame->len - it->offset;
            if (n > want - got) n = want - got;
            memcpy(buf + got, it->frame->data + it->offset, n);
            got += n;
        }
        ssize_t w = tls_write(c->tls, buf, got);
        if (w < 0) {
            if (errno == EAGAIN) {
                c->tls_retry_len = (uint32_t)got;
                return false;
            }
            conn_close(c);
            return false;
        }
        c->tls_retry_len = 0;
        outq_consume(q, (size_t)w);
    }
    return true;
}

void conn_flush(conn_t *c)
{
    outq_t *q = &c->out;
    if (c->is_virtual) {
        if (c->handler && c->handler->on_flush) c->handler->on_flush(c);
        return;
    }
    if (c->tls) flush_tls(c);
    while (!c->tls && q->count > 0 && c->state != CONN_CLOSED) {
        struct iovec iov[FLUSH_IOV_MAX];
        int n = 0;
        size_t want = 0;
        for (uint32_t i = 0; i < q->count && n < FLUSH_IOV_MAX; i++) {
            out_item_t *it = &q->items[(q->head + i) % q->cap];
            iov[n].iov_base = it->frame->data + it->offset;
            iov[n].iov_len = it->frame->len - it->offset;
            want += iov[n].iov_len;
            n++;
        }
        ssize_t w = writev(c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            conn_close(c);   /* EPIPE, ECONNRESET: the peer is gone */
            return;
        }
        outq_consume(q, (size_t)w);
        if ((size_t)w < want) break;   /* kernel buffer full: wait for EPOLLOUT */
    }
    if (c->state == CONN_CLOSED) return;
    if (q->count > 0) {
        if (!c->write_blocked) {
            c->write_blocked = true;
            update_events(c);
        }
        return;
    }
    outq_compact(q);
    if (c->write_blocked) {
        c->write_blocked = false;
        update_events(c);
    }
    if (c->state == CONN_DRAINING) {
        conn_close(c);
        return;
    }
    if (c->handler && c->handler->on_drained) c->handler->on_drained(c);
}

/* ---- events from the loop ---- */

static void on_io(loop_t *loop, loop_io_t *io, uint32_t revents)
{
    (void)loop;
    conn_t *c = (conn_t *)((char *)io - offsetof(conn_t, io));
    if (revents & EPOLLOUT) {
        conn_flush(c);
        if (c->state == CONN_CLOSED) return;
    }
    if (c->read_eof || c->read_paused) {
        if (revents & (EPOLLHUP | EPOLLERR)) conn_close(c);
        return;
    }
    if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        worker_t *w = c->worker;
        ssize_t n;
        if (c->tls) {
            /* OpenSSL may hold decrypted bytes the socket no longer signals: drain them */
            int rounds = 0;
            while ((n = tls_read(c->tls, w->rbuf, WORKER_READ_BUFFER)) > 0 && c->state == CONN_OPEN) {
                if (c->handler) c->handler->on_data(c, w->rbuf, (size_t)n);
                if (c->state != CONN_OPEN || !c->tls || tls_pending(c->tls) == 0 || ++rounds == 16) break;
            }
            if (c->state == CONN_OPEN && c->tls && c->out.count > 0 && !c->dirty && !c->write_blocked)
                worker_mark_dirty(w, c);   /* a handshake may have produced output too */
            if (n > 0 || c->state == CONN_CLOSED) return;
        } else {
            n = read(c->io.fd, w->rbuf, WORKER_READ_BUFFER);
        }
        if (n > 0) {
            if (c->state == CONN_OPEN && c->handler) c->handler->on_data(c, w->rbuf, (size_t)n);
        } else if (n == 0) {
            c->read_eof = true;
            if (c->state == CONN_CLOSED) return;
            update_events(c);
            if (c->handler && c->handler->on_eof && c->state == CONN_OPEN) c->handler->on_eof(c);
            else conn_close(c);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c);
        }
    }
}

static void on_timer_fired(loop_t *loop, loop_timer_t *t)
{
    (void)loop;
    conn_t *c = (conn_t *)((char *)t - offsetof(conn_t, timer));
    if (c->state == CONN_CLOSED) return;
    if (c->state == CONN_DRAINING) {   /* the grace time of close_after_flush ran out */
        conn_close(c);
        return;
    }
    if (c->handler && c->handler->on_timer) c->handler->on_timer(c);
}

void conn_set_timeout(conn_t *c, uint64_t ms_from_now)
{
    if (c->state == CONN_CLOSED) return;
    loop_timer_set(c->worker->loop, &c->timer, loop_now_ms(c->worker->loop) + ms_from_now, on_timer_fired);
}

void conn_become_client(conn_t *c, int proto)
{
    server_t *s = c->worker->server;
    c->counted = true;
    c->proto = (uint8_t)proto;
    c->in_all = true;
    atomic_fetch_add_explicit(&s->metrics.connections[proto], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->client_connections, 1, memory_order_relaxed);
    rand_secure(c->conn_id, sizeof c->conn_id);
    c->conn_id[6] = (uint8_t)((c->conn_id[6] & 0x0f) | 0x40);
    c->conn_id[8] = (uint8_t)((c->conn_id[8] & 0x3f) | 0x80);
}

void conn_forget_client(conn_t *c)
{
    if (!c->counted) return;
    server_t *s = c->worker->server;
    c->counted = false;
    atomic_fetch_sub_explicit(&s->metrics.connections[c->proto], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->client_connections, 1, memory_order_relaxed);
}

void conn_pause_reading(conn_t *c, bool paused)
{
    if (c->state == CONN_CLOSED || c->read_paused == paused) return;
    c->read_paused = paused;
    update_events(c);
}

void conn_release(conn_t *c)
{
    if (--c->holds == 0 && c->state == CONN_CLOSED) worker_bury(c->worker, c);
}

/* ---- closing ---- */

void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSED) return;
    worker_t *w = c->worker;
    c->state = CONN_CLOSED;
    loop_timer_cancel(&c->timer);
    if (c->handler && c->handler->on_close) c->handler->on_close(c);
    hub_unsubscribe_all(w->hub, c);
    uint64_t dropped = outq_clear(&c->out);
    if (dropped) atomic_fetch_add_explicit(&w->server->metrics.dropped, dropped, memory_order_relaxed);
    if (c->counted) {
        c->counted = false;
        atomic_fetch_sub_explicit(&w->server->metrics.connections[c->proto], 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&w->server->client_connections, 1, memory_order_relaxed);
    }
    if (c->io.fd >= 0) {
        loop_io_remove(w->loop, &c->io);
        tls_free(c->tls);
        c->tls = NULL;
        close(c->io.fd);
        c->io.fd = -1;
    }
    /* unlink from the worker's connection list */
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->conn_count--;
    worker_bury(w, c);
}

void conn_close_after_flush(conn_t *c)
{
    if (c->state != CONN_OPEN) return;
    c->state = CONN_DRAINING;
    if (c->out.count == 0 && !c->dirty) {
        conn_close(c);
        return;
    }
    loop_timer_set(c->worker->loop, &c->timer, loop_now_ms(c->worker->loop) + 2000, on_timer_fired);
}

void conn_free(conn_t *c)
{
    if (c->req) {
        http_request_deinit(c->req);
        free(c->req);
    }
    ws_reader_deinit(&c->ws);
    while (c->slots) {   /* HTTP answers never written: the connection closed first */
        http_slot_t *s = c->slots;
        c->slots = s->next;
        frame_unref(s->response);
        free(s);
    }
    free(c->user);
    conn_auth_free(c->auth);
    free(c->stash);
    free(c);
}

void conn_peer_str(const conn_t *c, char *out, size_t out_size)
{
    const uint8_t *a = c->peer.sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) inet_ntop(AF_INET, a + 12, out, (socklen_t)out_size);
    else inet_ntop(AF_INET6, a, out, (socklen_t)out_size);
}

bool conn_peer_is_loopback(const conn_t *c)
{
    const uint8_t *a = c->peer.sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) return a[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(&c->peer.sin6_addr);
}

void conn_id_str(const conn_t *c, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[c->conn_id[i] >> 4];
        *o++ = hex[c->conn_id[i] & 15];
    }
    *o = '\0';
}
