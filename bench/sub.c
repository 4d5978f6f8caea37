#include "sub.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "wsclient.h"

/* Larger messages are refused: the benchmark's events are a few hundred bytes, and
 * the shared receive buffer must hold a whole frame plus what was carried over. */
#define SUB_MAX_MESSAGE (1u << 20)
#define SUB_MAX_CONTROL 512

/* Ends the subscriber with a message for the report; returns HERALD_ECLOSED so a
 * caller can `return fail(...)` and its caller knows the subscriber is gone. */
static int fail(bench_t *b, sub_t *s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(bench_t *b, sub_t *s, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bench_error(b, "subscriber %ld: %s", s->idx, msg);
    sub_close(b, s);
    return HERALD_ECLOSED;
}

static int grow(uint8_t **buf, uint32_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need)
        ncap *= 2;
    uint8_t *p = realloc(*buf, ncap);
    if (!p)
        return HERALD_ENOMEM;
    *buf = p;
    *cap = (uint32_t)ncap;
    return 0;
}

static uint64_t rng_next(bench_t *b)
{
    uint64_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return x;
}

static void set_want_out(bench_t *b, sub_t *s, bool on)
{
    if (s->want_out == on)
        return;
    s->want_out = on;
    bench_watch(b, s->fd, s, on, false);
}

/* Try the write first; only what the kernel refuses is queued, and only then is
 * EPOLLOUT armed. */
static int sub_write(bench_t *b, sub_t *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (s->out_len == 0) {
        ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return fail(b, s, "send: %s", strerror(errno));
        if (n > 0)
            off = (size_t)n;
    }
    if (off == len)
        return 0;
    if (grow(&s->out, &s->out_cap, s->out_len + (len - off)) < 0)
        return fail(b, s, "out of memory");
    memcpy(s->out + s->out_len, data + off, len - off);
    s->out_len += (uint32_t)(len - off);
    set_want_out(b, s, true);
    return 0;
}

static int flush_out(bench_t *b, sub_t *s)
{
    if (s->out_len) {
        ssize_t n = send(s->fd, s->out, s->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return fail(b, s, "send: %s", strerror(errno));
        }
        memmove(s->out, s->out + n, s->out_len - (size_t)n);
        s->out_len -= (uint32_t)n;
    }
    if (s->out_len == 0)
        set_want_out(b, s, false);
    return 0;
}

static int send_frame(bench_t *b, sub_t *s, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t frame[WSC_MAX_HEADER + SUB_MAX_CONTROL];
    if (len > SUB_MAX_CONTROL)
        return fail(b, s, "outgoing message too large");
    uint64_t r = rng_next(b);
    uint8_t mask[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    size_t n = wsc_frame_encode(frame, opcode, payload, len, mask);
    return sub_write(b, s, frame, n);
}

static int send_text(bench_t *b, sub_t *s, const char *text)
{
    return send_frame(b, s, WSC_OP_TEXT, text, strlen(text));
}

static void become_ready(bench_t *b, sub_t *s)
{
    s->state = SUB_READY;
    b->handshakes_inflight--;
    b->subs_ready++;
}

/* Finds `"key"` followed by optional blanks, ':' and an unsigned integer. */
static bool find_uint(const uint8_t *data, size_t len, const char *key, size_t klen,
                      uint64_t *out)
{
    const uint8_t *p = memmem(data, len, key, klen);
    if (!p)
        return false;
    const uint8_t *end = data + len;
    p += klen;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    *out = v;
    return true;
}

/* An event: the data the publisher sent carries "seq" and "ts". Only new
 * deliveries are timed: a duplicate's latency would say nothing useful. */
static void on_event(bench_t *b, sub_t *s, const uint8_t *data, size_t len)
{
    uint64_t seq, ts;
    if (!find_uint(data, len, "\"seq\"", 5, &seq)) {
        b->unparsed++;
        return;
    }
    b->deliveries++;
    /* herald's envelope carries the channel offset: each subscriber must see it grow.
     * (The publisher's numbers cannot tell: several publisher connections race.) */
    uint64_t offset;
    if (b->opt->proto == BENCH_NATIVE && find_uint(data, len, "\"offset\"", 8, &offset)) {
        if (offset <= s->last_offset)
            b->reordered++;
        else
            s->last_offset = offset;
    }
    if (track_deliver(&b->track, s->idx, seq) != TRACK_NEW)
        return;
    b->t_last_delivery = b->now;
    if (find_uint(data, len, "\"ts\"", 4, &ts) && ts <= b->now)
        hist_record(&b->latency, b->now - ts);
}

static int send_subscribe(bench_t *b, sub_t *s)
{
    char ch[300], msg[400];
    bench_channel(b, s->idx, ch, sizeof ch);
    if (b->opt->proto == BENCH_SOCKETIO)
        snprintf(msg, sizeof msg, "421[\"subscribe\",\"%s\"]", ch);   /* ack id 1 */
    else
        snprintf(msg, sizeof msg, "{\"type\":\"subscribe\",\"channels\":[\"%s\"]}", ch);
    s->state = SUB_SUBSCRIBING;
    return send_text(b, s, msg);
}

/* Native control messages are rare (one or two per connection), so jansson is
 * affordable here; events take the fast path in on_event. */
static int native_control(bench_t *b, sub_t *s, const uint8_t *data, size_t len)
{
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    int rc = 0;
    if (!type) {
        b->unparsed++;
    } else if (strcmp(type, "subscribed") == 0 && s->state == SUB_SUBSCRIBING) {
        become_ready(b, s);
    } else if (strcmp(type, "error") == 0) {
        json_t *d = json_object_get(m, "data");
        const char *code = json_string_value(json_object_get(d, "code"));
        const char *text = json_string_value(json_object_get(d, "message"));
        rc = fail(b, s, "server error %s: %s", code ? code : "?", text ? text : "");
    }
    json_decref(m);
    return rc;
}

static int native_message(bench_t *b, sub_t *s, uint8_t *data, size_t len)
{
    if (memmem(data, len, "\"seq\"", 5)) {
        on_event(b, s, data, len);
        return 0;
    }
    return native_control(b, s, data, len);
}

static int sio_message(bench_t *b, sub_t *s, uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    switch (d[0]) {
    case '0':   /* Engine.IO open */
        if (s->state != SUB_EIO_OPEN)
            return 0;
        s->state = SUB_SIO_CONNECT;
        return send_text(b, s, "40");
    case '1':
        return fail(b, s, "engine.io close packet");
    case '2':   /* the server's heartbeat ping */
        return send_text(b, s, "3");
    case '4':
        break;
    default:
        return 0;
    }
    if (n < 2)
        return 0;
    switch (d[1]) {
    case '2':
        on_event(b, s, d, n);
        return 0;
    case '0':
        if (s->state != SUB_SIO_CONNECT)
            return 0;
        return send_subscribe(b, s);
    case '3':
        if (s->state != SUB_SUBSCRIBING || n < 3 || d[2] != '1')
            return 0;
        if (!memmem(d, n, "\"success\":true", 14))
            return fail(b, s, "subscribe refused: %.*s", (int)(n > 120 ? 120 : n), d);
        become_ready(b, s);
        return 0;
    case '4':
        return fail(b, s, "socket.io connect error: %.*s", (int)(n > 120 ? 120 : n), d);
    case '1':
        return fail(b, s, "socket.io disconnect");
    default:
        return 0;
    }
}

static int on_message(bench_t *b, sub_t *s, uint8_t *data, size_t len)
{
    switch (b->opt->proto) {
    case BENCH_NATIVE:
        return native_message(b, s, data, len);
    case BENCH_SOCKETIO:
        return sio_message(b, s, data, len);
    default:
        /* nchan delivers the published body as is. */
        on_event(b, s, data, len);
        return 0;
    }
}

static int on_frame(bench_t *b, sub_t *s, const wsc_frame_t *f, uint8_t *p, size_t n)
{
    switch (f->opcode) {
    case WSC_OP_TEXT:
    case WSC_OP_BINARY:
        if (s->msg_op)
            return fail(b, s, "data frame inside a fragmented message");
        if (f->fin)
            return on_message(b, s, p, n);
        s->msg_op = f->opcode;
        __attribute__((fallthrough));   /* the first fragment is kept like the others */
    case WSC_OP_CONT:
        if (!s->msg_op)
            return fail(b, s, "continuation without a message");
        if (s->msg_len + n > SUB_MAX_MESSAGE || grow(&s->msg, &s->msg_cap, s->msg_len + n) < 0)
            return fail(b, s, "fragmented message too large");
        memcpy(s->msg + s->msg_len, p, n);
        s->msg_len += (uint32_t)n;
        if (f->opcode == WSC_OP_CONT && f->fin) {
            uint32_t len = s->msg_len;
            s->msg_len = 0;
            s->msg_op = 0;
            return on_message(b, s, s->msg, len);
        }
        return 0;
    case WSC_OP_PING:
        return send_frame(b, s, WSC_OP_PONG, p, n);
    case WSC_OP_PONG:
        return 0;
    case WSC_OP_CLOSE: {
        unsigned code = n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005;
        return fail(b, s, "closed by the server, code %u %.*s", code,
                    (int)(n > 2 ? n - 2 : 0), (const char *)p + 2);
    }
    default:
        return fail(b, s, "unknown opcode %u", f->opcode);
    }
}

static int after_upgrade(bench_t *b, sub_t *s)
{
    switch (b->opt->proto) {
    case BENCH_NATIVE:
        return send_subscribe(b, s);
    case BENCH_SOCKETIO:
        s->state = SUB_EIO_OPEN;
        return 0;
    default:
        /* nchan subscribes the websocket to the channel named in the URL before it
         * answers 101: the upgrade is the confirmation. */
        become_ready(b, s);
        return 0;
    }
}

/* Keeps the bytes of an incomplete frame for the next read. */
static int carry(bench_t *b, sub_t *s, const uint8_t *rest, size_t n)
{
    if (n && grow(&s->in, &s->in_cap, n) < 0)
        return fail(b, s, "out of memory");
    if (n)
        memmove(s->in, rest, n);
    s->in_len = (uint32_t)n;
    return 0;
}

static void on_readable(bench_t *b, sub_t *s)
{
    size_t have = s->in_len;
    if (have)
        memcpy(b->rbuf, s->in, have);
    ssize_t n = recv(s->fd, b->rbuf + have, b->rbuf_cap - have, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fail(b, s, "recv: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        fail(b, s, "connection closed by the server");
        return;
    }
    b->now = bench_now_ns();
    size_t total = have + (size_t)n, pos = 0;
    uint8_t *buf = b->rbuf;

    if (s->state == SUB_UPGRADING) {
        int status;
        int r = wsc_handshake_parse(buf, total, &status);
        if (r == HERALD_NEED_MORE) {
            if (total > 16384)
                fail(b, s, "upgrade answer too long");
            else
                carry(b, s, buf, total);
            return;
        }
        if (r < 0) {
            fail(b, s, "upgrade refused: HTTP %d", status);
            return;
        }
        pos = (size_t)r;
        if (after_upgrade(b, s) < 0)
            return;
    }
    while (pos < total) {
        wsc_frame_t f;
        int hl = wsc_frame_parse(buf + pos, total - pos, &f);
        if (hl == HERALD_NEED_MORE)
            break;
        if (hl < 0) {
            fail(b, s, "bad frame header");
            return;
        }
        if (f.payload_len > SUB_MAX_MESSAGE) {
            fail(b, s, "frame of %llu bytes", (unsigned long long)f.payload_len);
            return;
        }
        if (total - pos - (size_t)hl < f.payload_len)
            break;
        uint8_t *p = buf + pos + hl;
        if (f.masked)
            wsc_unmask(p, (size_t)f.payload_len, f.mask, 0);
        if (on_frame(b, s, &f, p, (size_t)f.payload_len) < 0)
            return;
        pos += (size_t)hl + (size_t)f.payload_len;
    }
    carry(b, s, buf + pos, total - pos);
}

static void on_writable(bench_t *b, sub_t *s)
{
    if (s->state != SUB_CONNECTING) {
        flush_out(b, s);
        return;
    }
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        err = errno;
    if (err) {
        fail(b, s, "connect: %s", strerror(err));
        return;
    }
    char path[400], ch[300], req[600];
    const bench_opts_t *o = b->opt;
    if (o->proto == BENCH_NCHAN) {
        bench_channel(b, s->idx, ch, sizeof ch);
        snprintf(path, sizeof path, "%s%s", o->sub_path ? o->sub_path : "/sub?id=", ch);
    } else if (o->proto == BENCH_SOCKETIO) {
        snprintf(path, sizeof path, "%s",
                 o->sub_path ? o->sub_path : "/socket.io/?EIO=4&transport=websocket");
    } else {
        snprintf(path, sizeof path, "%s", o->sub_path ? o->sub_path : "/ws");
    }
    int n = wsc_handshake_request(req, sizeof req, o->host, bench_port(b, s->idx), path);
    if (n < 0) {
        fail(b, s, "path too long");
        return;
    }
    s->state = SUB_UPGRADING;
    if (sub_write(b, s, (const uint8_t *)req, (size_t)n) < 0)
        return;
    if (s->out_len == 0)
        set_want_out(b, s, false);
}

int sub_start(bench_t *b, sub_t *s)
{
    s->kind = BENCH_KIND_SUB;
    s->state = SUB_CONNECTING;
    b->subs_started++;
    b->handshakes_inflight++;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return fail(b, s, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct sockaddr_in *to = bench_addr(b, s->idx);
    if (connect(s->fd, (const struct sockaddr *)to, sizeof *to) < 0 &&
        errno != EINPROGRESS)
        return fail(b, s, "connect: %s", strerror(errno));
    s->want_out = 1;
    if (bench_watch(b, s->fd, s, true, true) < 0)
        return fail(b, s, "epoll_ctl: %s", strerror(errno));
    return 0;
}

void sub_on_event(bench_t *b, sub_t *s, uint32_t events)
{
    /* An event for a subscriber closed earlier in the same batch: drop it. */
    if (s->fd < 0)
        return;
    if (s->state == SUB_CONNECTING) {
        on_writable(b, s);   /* reads SO_ERROR, so it also covers EPOLLERR/HUP */
        return;
    }
    if (events & EPOLLOUT) {
        on_writable(b, s);
        if (s->fd < 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(b, s);
}

void sub_close(bench_t *b, sub_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);   /* also leaves the epoll set */
        s->fd = -1;
    }
    if (s->state == SUB_READY) {
        s->state = SUB_CLOSED;
        b->subs_lost++;
    } else if (s->state != SUB_CLOSED && s->state != SUB_FAILED && s->state != SUB_NEW) {
        s->state = SUB_FAILED;
        b->handshakes_inflight--;
        b->subs_failed++;
    }
    free(s->in);
    free(s->msg);
    free(s->out);
    s->in = s->msg = s->out = NULL;
    s->in_len = s->in_cap = s->msg_len = s->msg_cap = s->out_len = s->out_cap = 0;
    s->msg_op = 0;
    s->want_out = 0;
}
