#include "pub.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "httpresp.h"

/* After this many lost connections a publisher gives up: the server is refusing
 * service and the report should say so rather than loop. */
#define PUB_MAX_RECONNECTS 20

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap < need)
        ncap *= 2;
    char *p = realloc(*buf, ncap);
    if (!p)
        return HERALD_ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

static int connect_now(bench_t *b, pub_t *p)
{
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        bench_error(b, "publisher %d: socket: %s", p->idx, strerror(errno));
        p->state = PUB_DEAD;
        return HERALD_EIO;
    }
    int one = 1;
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct sockaddr_in *to = bench_addr(b, p->idx);
    if (connect(p->fd, (const struct sockaddr *)to, sizeof *to) < 0 &&
        errno != EINPROGRESS) {
        bench_error(b, "publisher %d: connect: %s", p->idx, strerror(errno));
        close(p->fd);
        p->fd = -1;
        p->state = PUB_DEAD;
        return HERALD_EIO;
    }
    p->state = PUB_CONNECTING;
    p->want_out = 1;
    return bench_watch(b, p->fd, p, true, true);
}

/* The connection broke: what was in flight has an unknown outcome and counts as a
 * publish error; connect again unless that has happened too often. */
static void reconnect(bench_t *b, pub_t *p, const char *why)
{
    bench_error(b, "publisher %d: %s", p->idx, why);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    b->pub_errors += p->inflight;
    p->inflight = 0;
    p->head = 0;
    p->out_len = p->out_off = 0;
    p->in_len = 0;
    if (++p->reconnects > PUB_MAX_RECONNECTS) {
        p->state = PUB_DEAD;
        return;
    }
    connect_now(b, p);
}

static void set_want_out(bench_t *b, pub_t *p, bool on)
{
    if (p->want_out == on)
        return;
    p->want_out = on;
    bench_watch(b, p->fd, p, on, false);
}

static void flush(bench_t *b, pub_t *p)
{
    while (p->out_off < p->out_len) {
        ssize_t n = send(p->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            reconnect(b, p, strerror(errno));
            return;
        }
        p->out_off += (size_t)n;
    }
    if (p->out_off == p->out_len)
        p->out_len = p->out_off = 0;
    set_want_out(b, p, p->out_len != 0);
}

/* Appends one POST for event `seq` to the output buffer. */
static int append_request(bench_t *b, pub_t *p, long seq, uint64_t ts)
{
    const bench_opts_t *o = b->opt;
    char ch[300];
    long target = o->workload == BENCH_TARGETED ? seq % o->conns : 0;
    bench_channel(b, target, ch, sizeof ch);

    /* data: {"seq":N,"ts":T,"pad":"xxx"} -- the pad makes event size a knob */
    size_t pad = (size_t)o->payload_bytes;
    if (reserve(&p->body, &p->body_cap, 640 + pad) < 0)
        return HERALD_ENOMEM;
    int n;
    if (o->proto == BENCH_NCHAN)
        n = snprintf(p->body, 640, "{\"seq\":%ld,\"ts\":%llu", seq, (unsigned long long)ts);
    else
        n = snprintf(p->body, 640, "{\"channel\":\"%s\",\"event\":\"%s\",\"data\":{\"seq\":%ld,\"ts\":%llu",
                     ch, o->event, seq, (unsigned long long)ts);
    if (n < 0 || n >= 600)
        return HERALD_ETOOBIG;
    size_t len = (size_t)n;
    if (pad) {
        memcpy(p->body + len, ",\"pad\":\"", 8);
        len += 8;
        memset(p->body + len, 'x', pad);
        len += pad;
        p->body[len++] = '"';
    }
    p->body[len++] = '}';
    if (o->proto != BENCH_NCHAN)
        p->body[len++] = '}';

    char head[800];
    int h, port = bench_port(b, p->idx);
    if (o->proto == BENCH_NCHAN)
        h = snprintf(head, sizeof head, "POST %s%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     o->pub_path ? o->pub_path : "/pub?id=", ch, o->host, port, len);
    else
        h = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     o->pub_path ? o->pub_path : "/api/publish", o->host, port, len);
    if (h < 0 || (size_t)h >= sizeof head)
        return HERALD_ETOOBIG;
    if (reserve(&p->out, &p->out_cap, p->out_len + (size_t)h + len) < 0)
        return HERALD_ENOMEM;
    memcpy(p->out + p->out_len, head, (size_t)h);
    memcpy(p->out + p->out_len + h, p->body, len);
    p->out_len += (size_t)h + len;
    return 0;
}

void pub_fill(bench_t *b, pub_t *p, long limit)
{
    if (p->state != PUB_OPEN)
        return;
    const bench_opts_t *o = b->opt;
    uint64_t now = bench_now_ns();
    int added = 0;
    while (p->inflight < o->pipeline && b->next_seq < limit) {
        long seq = b->next_seq;
        /* The latency workload stamps the time the event was due, not the time it
         * left: if the server makes the publisher wait, that wait is latency too
         * (no coordinated omission). */
        uint64_t ts = now;
        if (o->workload == BENCH_LATENCY)
            ts = b->t_run_start + (uint64_t)((double)seq * 1e9 / o->rate);
        if (append_request(b, p, seq, ts) < 0) {
            bench_error(b, "publisher %d: cannot build request %ld", p->idx, seq);
            p->state = PUB_DEAD;
            return;
        }
        p->sent[(p->head + p->inflight) % o->pipeline] = now;
        p->inflight++;
        b->next_seq++;
        added++;
    }
    if (!added)
        return;
    if (!b->t_first_pub)
        b->t_first_pub = now;
    flush(b, p);
}

static void on_response(bench_t *b, pub_t *p, const httpresp_t *r)
{
    uint64_t sent = p->sent[p->head];
    p->head = (p->head + 1) % b->opt->pipeline;
    p->inflight--;
    hist_record(&b->ack, b->now > sent ? b->now - sent : 0);
    b->t_last_ack = b->now;
    if (r->status / 100 == 2) {
        b->acked++;
    } else {
        b->pub_errors++;
        if (!b->first_bad_status) {
            b->first_bad_status = r->status;
            bench_error(b, "publish answered HTTP %d", r->status);
        }
    }
}

static void on_readable(bench_t *b, pub_t *p)
{
    char *buf = (char *)b->rbuf;
    size_t have = p->in_len;
    if (have)
        memcpy(buf, p->in, have);
    ssize_t n = recv(p->fd, buf + have, b->rbuf_cap - have, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            reconnect(b, p, strerror(errno));
        return;
    }
    if (n == 0) {
        reconnect(b, p, "connection closed by the server");
        return;
    }
    b->now = bench_now_ns();
    size_t total = have + (size_t)n, pos = 0;
    while (pos < total) {
        httpresp_t r;
        int len = httpresp_parse(buf + pos, total - pos, &r);
        if (len == HERALD_NEED_MORE)
            break;
        if (len < 0) {
            reconnect(b, p, "unparsable HTTP response");
            return;
        }
        if (p->inflight == 0) {
            reconnect(b, p, "response without a request");
            return;
        }
        pos += (size_t)len;
        on_response(b, p, &r);
        if (r.close) {
            reconnect(b, p, "server closed the keep-alive connection");
            return;
        }
    }
    size_t rest = total - pos;
    if (rest && reserve(&p->in, &p->in_cap, rest) < 0) {
        reconnect(b, p, "out of memory");
        return;
    }
    if (rest)
        memmove(p->in, buf + pos, rest);
    p->in_len = rest;
}

int pub_start(bench_t *b, pub_t *p, int idx)
{
    memset(p, 0, sizeof *p);
    p->kind = BENCH_KIND_PUB;
    p->idx = idx;
    p->fd = -1;
    p->sent = calloc((size_t)b->opt->pipeline, sizeof *p->sent);
    if (!p->sent) {
        p->state = PUB_DEAD;
        return HERALD_ENOMEM;
    }
    return connect_now(b, p);
}

void pub_on_event(bench_t *b, pub_t *p, uint32_t events)
{
    if (p->fd < 0)
        return;
    if (p->state == PUB_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
            err = errno;
        if (err) {
            reconnect(b, p, strerror(err));
            return;
        }
        p->state = PUB_OPEN;
        set_want_out(b, p, false);
        return;
    }
    if (events & EPOLLOUT) {
        flush(b, p);
        if (p->state != PUB_OPEN)   /* the write failed: reconnecting or dead */
            return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(b, p);
}

void pub_close(bench_t *b, pub_t *p)
{
    (void)b;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->state != PUB_NEW)
        p->state = PUB_DEAD;
    free(p->out);
    free(p->in);
    free(p->body);
    free(p->sent);
    p->out = p->in = p->body = NULL;
    p->sent = NULL;
    p->out_len = p->out_off = p->out_cap = p->in_len = p->in_cap = p->body_cap = 0;
}
