/* http_request: herald's limits and string collection around http_parser.
 *
 * How the limits are enforced without trusting http_parser's global header cap:
 * the request is cut into phases (head, chunk-size line, chunk data or identity
 * body, trailers). In a phase with a byte limit, http_parser_execute() is never
 * handed more than the bytes left in that phase's budget, so a head that does not
 * end within HTTP_MAX_HEAD_BYTES is refused exactly at the limit, whatever the size
 * of the caller's buffer. The callbacks that end a phase (headers complete, chunk
 * header, chunk complete, message complete) pause the parser, so each execute()
 * stays within one phase and its byte count is charged to the right budget. The
 * cost is two or three extra execute() calls per request and per chunk.
 *
 * Debian's libhttp_parser is built with HTTP_PARSER_STRICT=0, which skips some
 * checks: it takes any byte where the LF ending the head, a chunk-size line or chunk
 * data belongs (and the CR before the latter), spaces inside header names
 * ("Transfer-Encoding : chunked" still frames the body as chunked), and any major
 * version. Those are checked here, at the same pauses, so framing cannot be read
 * two ways. Control bytes in the target and in values are refused here too. */
#include "http/http_request.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

/* What ran last; also tells which phase the request is in. */
enum {
    CB_NONE = 0,    /* nothing yet (blank lines before a request count as head) */
    CB_URL,
    CB_FIELD,
    CB_VALUE,
    CB_HEAD_END,    /* head done; the byte about to be parsed must be its final LF */
    CB_BODY,        /* identity body or none */
    CB_CHUNK_LINE,  /* inside a chunk-size line (with extensions) */
    CB_CHUNK_DATA,
    CB_TRAILERS,    /* after the last chunk: trailer fields, ignored but counted */
    CB_TRAILERS_END,/* the byte about to be parsed must be the message's final LF */
    CB_DONE,
};

#define NO_VALUE ((size_t)-1)
#define ARENA_FIRST 512
#define BODY_FIRST 1024

static size_t add_sat(size_t a, size_t b)
{
    return a > (size_t)-1 - b ? (size_t)-1 : a + b;
}

static int status_code(int status)
{
    switch (status) {
    case 400: return HERALD_EINVAL;
    case 503: return HERALD_ENOMEM;
    default: return HERALD_ETOOBIG;
    }
}

/* For callbacks: remember why, and make http_parser stop with HPE_CB_*. */
static int cb_fail(http_request_t *r, int status)
{
    if (!r->error_status)
        r->error_status = status;
    return -1;
}

static int arena_reserve(http_request_t *r, size_t extra)
{
    size_t need = r->arena_len + extra;
    if (need <= r->arena_cap)
        return 0;
    size_t cap = r->arena_cap ? r->arena_cap : ARENA_FIRST;
    while (cap < need)
        cap *= 2;   /* need is bounded by the head budget: no overflow */
    char *p = realloc(r->arena, cap);
    if (!p)
        return -1;
    r->arena = p;
    r->arena_cap = cap;
    return 0;
}

/* Appends a fragment to the arena. start opens a new string (its offset goes to
 * *off); otherwise the fragment continues the last string, which is always the
 * open one because http_parser reports the strings in order. Strings stay
 * NUL-terminated. */
static int arena_add(http_request_t *r, const char *at, size_t len, bool start, size_t *off)
{
    if (!start && r->arena_len > 0)
        r->arena_len--;   /* reopen: drop the NUL */
    if (arena_reserve(r, len + 1) < 0)
        return cb_fail(r, 503);
    if (start)
        *off = r->arena_len;
    if (len)
        memcpy(r->arena + r->arena_len, at, len);
    r->arena_len += len;
    r->arena[r->arena_len++] = '\0';
    return 0;
}

/* Control characters (HTAB allowed where blank is) and DEL: never in a target or a
 * field value. http_parser does not check the first byte of a value, so a NUL
 * there would cut the C string short of value_len. */
static bool has_ctl(const char *s, size_t len, bool blank_ok)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0x7f || (c < 0x20 && !(blank_ok && c == '\t')) || (c == ' ' && !blank_ok))
            return true;
    }
    return false;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (len > HTTP_MAX_TARGET_BYTES - r->target_len)
        return cb_fail(r, 414);
    if (has_ctl(at, len, false))
        return cb_fail(r, 400);
    if (arena_add(r, at, len, r->last_cb != CB_URL, &r->target_off) < 0)
        return -1;
    r->target_len += len;
    r->last_cb = CB_URL;
    return 0;
}

/* RFC 9110 token characters: what a header name may hold. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (r->last_cb >= CB_HEAD_END)
        return 0;   /* a trailer: not a header of the request; its bytes are budgeted */
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i]))
            return cb_fail(r, 400);
    if (r->last_cb == CB_FIELD) {
        size_t unused;
        return arena_add(r, at, len, false, &unused);
    }
    if (r->header_count == HTTP_MAX_HEADERS)
        return cb_fail(r, 431);
    size_t i = r->header_count++;
    r->value_off[i] = NO_VALUE;
    r->headers[i].name = NULL;
    r->headers[i].value = NULL;
    r->headers[i].value_len = 0;
    r->last_cb = CB_FIELD;
    return arena_add(r, at, len, true, &r->name_off[i]);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (r->last_cb >= CB_HEAD_END)
        return 0;
    if (r->header_count == 0)
        return cb_fail(r, 400);   /* http_parser never does this; keep the arrays safe */
    if (has_ctl(at, len, true))
        return cb_fail(r, 400);
    size_t i = r->header_count - 1;
    bool start = r->last_cb != CB_VALUE;
    if (arena_add(r, at, len, start, &r->value_off[i]) < 0)
        return -1;
    r->headers[i].value_len += len;
    r->last_cb = CB_VALUE;
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Turns the collected offsets into pointers; the arena does not move after this. */
static int finish_head(http_request_t *r)
{
    if (!r->arena)
        return cb_fail(r, 400);   /* no target: http_parser would not get here */
    /* path needs its own NUL when a query follows: copy it to the arena's end */
    size_t path_off = r->target_off;
    const char *q = memchr(r->arena + r->target_off, '?', r->target_len);
    size_t query_off = NO_VALUE;
    if (q) {
        size_t plen = (size_t)(q - (r->arena + r->target_off));
        query_off = r->target_off + plen + 1;
        if (arena_reserve(r, plen + 1) < 0)
            return cb_fail(r, 503);
        path_off = r->arena_len;
        memcpy(r->arena + path_off, r->arena + r->target_off, plen);
        r->arena[path_off + plen] = '\0';
        r->arena_len += plen + 1;
    }
    r->target = r->arena + r->target_off;
    r->path = r->arena + path_off;
    r->query = query_off == NO_VALUE ? "" : r->arena + query_off;

    for (size_t i = 0; i < r->header_count; i++) {
        http_header_t *h = &r->headers[i];
        h->name = r->arena + r->name_off[i];
        if (r->value_off[i] == NO_VALUE) {
            h->value = "";
            h->value_len = 0;
            continue;
        }
        char *v = r->arena + r->value_off[i];
        size_t n = h->value_len;
        while (n && is_blank(*v)) {
            v++;
            n--;
        }
        while (n && is_blank(v[n - 1]))
            n--;
        v[n] = '\0';
        h->value = v;
        h->value_len = n;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_request_t *r = p->data;
    if (finish_head(r) < 0)
        return -1;
    r->method = http_method_str((enum http_method)p->method);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade = p->upgrade;
    r->head_complete = true;
    if (p->http_major != 1)
        return cb_fail(r, 400);
    /* Refused before a single body byte is read or buffered. UINT64_MAX means no
     * Content-Length. */
    if (!(p->flags & F_CHUNKED) && p->content_length != UINT64_MAX &&
        p->content_length > (uint64_t)r->max_body_bytes)
        return cb_fail(r, 413);
    r->last_cb = CB_HEAD_END;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_request_t *r = p->data;
    if (len > r->max_body_bytes - r->body_len)
        return cb_fail(r, 413);
    size_t need = r->body_len + len + 1;
    if (need > r->body_cap) {
        /* Grown as bytes arrive, not from Content-Length up front: an announced
         * length costs nothing until the client actually sends it. */
        size_t limit = add_sat(r->max_body_bytes, 1);
        if (!(p->flags & F_CHUNKED) && p->content_length <= (uint64_t)r->max_body_bytes)
            limit = need + (size_t)p->content_length;   /* content_length: still to come */
        size_t cap = r->body_cap ? r->body_cap : BODY_FIRST;
        while (cap < need && cap <= (size_t)-1 / 2)
            cap *= 2;
        if (cap < need)
            cap = need;
        if (cap > limit)
            cap = limit;
        char *b = realloc(r->body, cap);
        if (!b)
            return cb_fail(r, 503);
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    http_request_t *r = p->data;
    if (p->content_length == 0) {
        r->last_cb = CB_TRAILERS;
    } else {
        /* the chunk's announced size is refused before its data is read */
        if (p->content_length > (uint64_t)(r->max_body_bytes - r->body_len))
            return cb_fail(r, 413);
        r->last_cb = CB_CHUNK_DATA;
    }
    http_parser_pause(p, 1);
    return 0;
}

static int on_chunk_complete(http_parser *p)
{
    http_request_t *r = p->data;
    /* after trailers this is the end of the message, and http_parser has not yet
     * consumed its last byte */
    r->last_cb = r->last_cb == CB_TRAILERS ? CB_TRAILERS_END : CB_CHUNK_LINE;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_request_t *r = p->data;
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade = p->upgrade;
    r->complete = true;
    r->last_cb = CB_DONE;
    /* stop here: what follows is the next pipelined request or another protocol */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
};

void http_request_init(http_request_t *r, size_t max_body_bytes)
{
    memset(r, 0, sizeof *r);
    r->max_body_bytes = max_body_bytes;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    r->method = "";
    r->target = "";
    r->path = "";
    r->query = "";
}

void http_request_reset(http_request_t *r)
{
    size_t max_body = r->max_body_bytes;
    free(r->arena);
    free(r->body);
    http_request_init(r, max_body);
}

void http_request_deinit(http_request_t *r)
{
    http_request_reset(r);   /* leaves a harmless empty object: deinit twice is fine */
}

/* The byte budget of the current phase, or NULL when the phase has none (body
 * bytes are limited by max_body_bytes in on_body instead). */
static size_t *phase_budget(http_request_t *r, size_t *limit, int *status)
{
    switch (r->last_cb) {
    case CB_NONE:
    case CB_URL:
    case CB_FIELD:
    case CB_VALUE:
    case CB_TRAILERS:
        *limit = HTTP_MAX_HEAD_BYTES;
        *status = 431;
        return &r->head_bytes;
    case CB_CHUNK_LINE:
        /* http_parser skips chunk extensions without bound or callback */
        *limit = HTTP_MAX_CHUNK_LINE_BYTES;
        *status = 400;
        return &r->chunk_line_bytes;
    default:
        return NULL;
    }
}

static long feed_fail(http_request_t *r, int status)
{
    if (!r->error_status)
        r->error_status = status;
    return status_code(r->error_status);
}

/* Keeps the last two consumed bytes: a CRLF may straddle two feeds. */
static void remember_tail(http_request_t *r, const char *p, size_t n)
{
    if (n >= 2) {
        r->tail[0] = p[n - 2];
        r->tail[1] = p[n - 1];
    } else if (n == 1) {
        r->tail[0] = r->tail[1];
        r->tail[1] = p[0];
    }
}

/* At a pause that ends a phase: the line endings the lax library build skips. */
static bool boundary_ok(const http_request_t *r)
{
    switch (r->last_cb) {
    case CB_CHUNK_DATA:   /* a chunk-size line ended */
    case CB_TRAILERS:     /* the last chunk-size line ended */
    case CB_CHUNK_LINE:   /* chunk data and its CRLF ended */
        return r->tail[0] == '\r' && r->tail[1] == '\n';
    default:
        return true;
    }
}

long http_request_feed(http_request_t *r, const char *data, size_t len)
{
    if (r->error_status)
        return status_code(r->error_status);
    size_t off = 0;
    /* Each pass consumes bytes or crosses a phase boundary; a boundary may be
     * crossed without consuming (http_parser rereads the byte), never twice in a
     * row, so 2 * len + a few passes is a safe bound. */
    size_t max_pass = add_sat(add_sat(len, len), 8);
    for (size_t pass = 0; off < len && !r->complete; pass++) {
        if (pass >= max_pass)
            return feed_fail(r, 400);
        if (r->last_cb == CB_HEAD_END || r->last_cb == CB_TRAILERS_END) {
            if (data[off] != '\n')
                return feed_fail(r, 400);
            bool chunk_next = r->last_cb == CB_HEAD_END && (r->parser.flags & F_CHUNKED);
            r->last_cb = chunk_next ? CB_CHUNK_LINE : CB_BODY;
        }
        size_t limit = 0;
        int status = 0;
        size_t *used = phase_budget(r, &limit, &status);
        size_t chunk = len - off;
        if (used) {
            if (*used >= limit)
                return feed_fail(r, status);
            if (chunk > limit - *used)
                chunk = limit - *used;
        }
        size_t n = http_parser_execute(&r->parser, &parser_settings, data + off, chunk);
        remember_tail(r, data + off, n);
        off += n;
        if (used)
            *used += n;   /* the pause at each boundary keeps n within one phase */
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED) {
            if (!r->complete) {
                if (!boundary_ok(r))
                    return feed_fail(r, 400);
                http_parser_pause(&r->parser, 0);
                r->chunk_line_bytes = 0;
            }
            continue;
        }
        if (e != HPE_OK)
            return feed_fail(r, e == HPE_HEADER_OVERFLOW ? 431 : 400);
        if (n != chunk)
            return feed_fail(r, 400);   /* not expected from http_parser */
    }
    return (long)off;
}

const char *http_request_header(const http_request_t *r, const char *name)
{
    if (!r->head_complete)
        return NULL;
    for (size_t i = 0; i < r->header_count; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

bool http_header_has_token(const char *value, const char *token)
{
    if (!value || !token || !*token)
        return false;
    size_t tlen = strlen(token);
    const char *s = value;
    for (;;) {   /* each pass moves past one comma */
        while (is_blank(*s))
            s++;
        const char *end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        const char *e = end;
        while (e > s && is_blank(e[-1]))
            e--;
        if ((size_t)(e - s) == tlen && strncasecmp(s, token, tlen) == 0)
            return true;
        if (!*end)
            return false;
        s = end + 1;
    }
}

/* The byte of the escape at s[i] ('%'), or -1 when it is not a valid non-NUL
 * escape inside s[0..len). */
static int escape_at(const char *s, size_t len, size_t i)
{
    if (len - i < 3)
        return -1;
    int hi = hex_nibble(s[i + 1]);
    int lo = hex_nibble(s[i + 2]);
    if (hi < 0 || lo < 0 || (hi | lo) == 0)
        return -1;
    return hi * 16 + lo;
}

/* Decodes src[0..len) into out (what fits, NUL-terminated) and returns the full
 * decoded length. form: '+' is a space. strict: a bad escape fails with -1;
 * otherwise it is kept as it is. */
static long decode(const char *src, size_t len, bool form, bool strict, char *out, size_t out_size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            int v = escape_at(src, len, i);
            if (v >= 0) {
                c = (unsigned char)v;
                i += 2;
            } else if (strict) {
                if (out && out_size)
                    out[0] = '\0';
                return -1;
            }
        } else if (c == '+' && form) {
            c = ' ';
        }
        if (n + 1 < out_size)
            out[n] = (char)c;
        n++;
    }
    if (out_size)
        out[n < out_size ? n : out_size - 1] = '\0';
    return (long)n;
}

long http_percent_decode(const char *src, size_t len, char *out, size_t out_size)
{
    return decode(src, len, false, true, out, out_size);
}

/* Whether the raw (encoded) key raw[0..len) decodes to key[0..klen). */
static bool key_equals(const char *raw, size_t len, const char *key, size_t klen)
{
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '%') {
            int v = escape_at(raw, len, i);
            if (v >= 0) {
                c = (unsigned char)v;
                i += 2;
            }
        } else if (c == '+') {
            c = ' ';
        }
        if (k == klen || (unsigned char)key[k] != c)
            return false;
        k++;
    }
    return k == klen;
}

long http_query_param(const char *query, const char *key, size_t n, char *out, size_t out_size)
{
    if (out_size)
        out[0] = '\0';
    if (!query || !key)
        return -1;
    size_t klen = strlen(key);
    size_t seen = 0;
    const char *s = query;
    while (*s) {   /* each pass moves past one '&' */
        const char *amp = strchr(s, '&');
        const char *end = amp ? amp : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        const char *kend = eq ? eq : end;
        if (end > s && key_equals(s, (size_t)(kend - s), key, klen)) {
            if (seen == n) {
                const char *v = eq ? eq + 1 : end;
                return decode(v, (size_t)(end - v), true, false, out, out_size);
            }
            seen++;
        }
        if (!amp)
            break;
        s = amp + 1;
    }
    return -1;
}
