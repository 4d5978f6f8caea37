#include "httpresp.h"

#include <string.h>
#include <strings.h>

#include "core/err.h"

/* True when the header line [p, e) is named `name` (case-insensitive); *val then
 * points at its value with leading blanks skipped. */
static bool header_is(const char *p, const char *e, const char *name, const char **val)
{
    size_t n = strlen(name);
    if ((size_t)(e - p) <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
        return false;
    p += n + 1;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    *val = p;
    return true;
}

static bool value_has(const char *v, const char *e, const char *token)
{
    size_t n = strlen(token);
    for (; v + n <= e; v++)
        if (strncasecmp(v, token, n) == 0)
            return true;
    return false;
}

/* Walks a chunked body starting at buf[pos]; returns the end of the message or a
 * negative code. Chunk extensions and trailers are skipped. */
static long chunked_end(const char *buf, size_t len, size_t pos)
{
    for (int guard = 0; guard < 1000000; guard++) {
        const char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
        if (!eol)
            return HERALD_NEED_MORE;
        size_t size = 0;
        const char *p = buf + pos;
        int digits = 0;
        for (; p < eol; p++, digits++) {
            int d;
            if (*p >= '0' && *p <= '9') d = *p - '0';
            else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
            else if (*p >= 'A' && *p <= 'F') d = *p - 'A' + 10;
            else break;
            if (size > ((size_t)1 << 40))
                return HERALD_EPROTO;
            size = size * 16 + (size_t)d;
        }
        if (digits == 0)
            return HERALD_EPROTO;
        pos = (size_t)(eol - buf) + 2;
        if (size == 0) {
            /* trailers, then an empty line */
            for (;;) {
                eol = memmem(buf + pos, len - pos, "\r\n", 2);
                if (!eol)
                    return HERALD_NEED_MORE;
                size_t line = (size_t)(eol - (buf + pos));
                pos += line + 2;
                if (line == 0)
                    return (long)pos;
            }
        }
        if (len - pos < size + 2)
            return HERALD_NEED_MORE;
        pos += size + 2;
    }
    return HERALD_EPROTO;
}

int httpresp_parse(const char *buf, size_t len, httpresp_t *out)
{
    const char *hend = memmem(buf, len, "\r\n\r\n", 4);
    if (!hend)
        return len > 65536 ? HERALD_EPROTO : HERALD_NEED_MORE;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return HERALD_EPROTO;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return HERALD_EPROTO;
        status = status * 10 + (buf[i] - '0');
    }
    out->status = status;
    out->close = memcmp(buf, "HTTP/1.0", 8) == 0;

    long clen = -1;
    bool chunked = false;
    /* the status line ends at or before hend's CRLF: this memchr cannot fail */
    const char *p = (const char *)memchr(buf, '\n', (size_t)(hend + 2 - buf)) + 1;
    while (p < hend + 2) {
        const char *e = memmem(p, (size_t)(hend + 2 - p), "\r\n", 2);
        if (!e)
            break;
        const char *v;
        if (header_is(p, e, "Content-Length", &v)) {
            clen = 0;
            for (; v < e && *v >= '0' && *v <= '9'; v++) {
                clen = clen * 10 + (*v - '0');
                if (clen > (1L << 30))
                    return HERALD_EPROTO;
            }
        } else if (header_is(p, e, "Transfer-Encoding", &v)) {
            chunked = value_has(v, e, "chunked");
        } else if (header_is(p, e, "Connection", &v)) {
            if (value_has(v, e, "close"))
                out->close = true;
            else if (value_has(v, e, "keep-alive"))
                out->close = false;
        }
        p = e + 2;
    }

    size_t head = (size_t)(hend - buf) + 4;
    if (status / 100 == 1 || status == 204 || status == 304)
        return (int)head;
    if (chunked) {
        return (int)chunked_end(buf, len, head);
    }
    if (clen < 0)
        return HERALD_EPROTO;
    if (len - head < (size_t)clen)
        return HERALD_NEED_MORE;
    return (int)(head + (size_t)clen);
}
