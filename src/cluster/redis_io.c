#include "cluster/redis_io.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

static void on_io(loop_t *loop, loop_io_t *io, uint32_t revents)
{
    (void)loop;
    redis_io_t *rio = (redis_io_t *)((char *)io - offsetof(redis_io_t, io));
    /* either call may end in hiredis freeing the context: cleanup clears rio->ac */
    if (rio->ac && (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(rio->ac);
    if (rio->ac && (revents & (EPOLLOUT | EPOLLERR))) redisAsyncHandleWrite(rio->ac);
}

static void update(redis_io_t *rio, uint32_t events)
{
    if (!rio->ac) return;
    if (!rio->added) {
        if (loop_io_add(rio->loop, &rio->io, rio->ac->c.fd, events, on_io) == 0) rio->added = true;
        return;
    }
    if (events != rio->io.events) loop_io_modify(rio->loop, &rio->io, events);
}

static void add_read(void *p) { redis_io_t *r = p; update(r, r->io.events | EPOLLIN); }
static void del_read(void *p) { redis_io_t *r = p; update(r, r->io.events & ~(uint32_t)EPOLLIN); }
static void add_write(void *p) { redis_io_t *r = p; update(r, r->io.events | EPOLLOUT); }
static void del_write(void *p) { redis_io_t *r = p; update(r, r->io.events & ~(uint32_t)EPOLLOUT); }

static void cleanup(void *p)
{
    redis_io_t *r = p;
    if (r->added) loop_io_remove(r->loop, &r->io);
    r->added = false;
    r->io.events = 0;
    r->ac = NULL;
}

int redis_io_attach(redis_io_t *rio, loop_t *loop, redisAsyncContext *ac)
{
    if (ac->ev.data) return -1;
    memset(rio, 0, sizeof *rio);
    rio->loop = loop;
    rio->ac = ac;
    ac->ev.data = rio;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}

/* Percent-decodes s[0..n) into a new string (passwords may carry reserved characters). */
static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

int redis_url_parse(const char *url, redis_url_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(why, why_len, "rediss:// (TLS) is not supported by this build's hiredis; use redis:// on a "
                               "private network or a local TLS tunnel");
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(why, why_len, "must start with redis://");
        return -1;
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@') at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p) out->user = decode(p, (size_t)(colon - p));
            out->password = decode(colon + 1, (size_t)(at - colon - 1));
        } else {
            out->password = decode(p, (size_t)(at - p));   /* redis://password@host */
        }
        p = at + 1;
    }
    const char *host_end = end;
    if (*p == '[') {   /* [ipv6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) goto bad;
        out->host = strndup(p + 1, (size_t)(rb - p - 1));
        p = rb + 1;
        host_end = p;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        host_end = colon ? colon : end;
        out->host = strndup(p, (size_t)(host_end - p));
        p = host_end;
    }
    if (!out->host || !*out->host) goto bad;
    if (p < end && *p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) goto bad;
        out->port = (int)port;
    } else if (p != end) {
        goto bad;
    }
    if (*end == '/' && end[1]) {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if ((*e && *e != '?') || db < 0 || db > 1000000) goto bad;
        out->db = (int)db;
    }
    return 0;
bad:
    redis_url_free(out);
    snprintf(why, why_len, "not a valid redis://[[user]:password@]host[:port][/db] URL");
    return -1;
}

void redis_url_free(redis_url_t *u)
{
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof *u);
}
