/* Tests for http_request: framing (Content-Length, chunked, pipelining, upgrade),
 * split input down to one byte per feed, keep-alive rules, every limit, and the
 * query and token helpers. Input is placed flush against a PROT_NONE page so an
 * over-read crashes instead of passing by luck. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/err.h"
#include "http/http_request.h"

/* ---- guard-page input ---------------------------------------------------- */

#define GUARD_AREA (256 * 1024)

typedef struct guard {
    char *map;
    size_t page;
    size_t area;   /* usable bytes before the PROT_NONE page */
} guard_t;

static int guard_setup(void **state)
{
    guard_t *g = calloc(1, sizeof *g);
    if (!g)
        return -1;
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    g->area = GUARD_AREA;
    g->map = mmap(NULL, g->area + g->page, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + g->area, g->page, PROT_NONE) != 0) {
        free(g);
        return -1;
    }
    *state = g;
    return 0;
}

static int guard_teardown(void **state)
{
    guard_t *g = *state;
    munmap(g->map, g->area + g->page);
    free(g);
    return 0;
}

/* Copies s[0..len) so that its last byte is the last readable byte. */
static const char *guard_place(guard_t *g, const char *s, size_t len)
{
    assert_true(len <= g->area);
    char *p = g->map + g->area - len;
    memcpy(p, s, len);
    return p;
}

/* Feeds s in pieces of `step` bytes, each piece flush against the guard page.
 * Returns the bytes consumed until the request completed (or all of them), or the
 * negative error. A piece is always consumed whole unless the request completes. */
static long feed_steps(guard_t *g, http_request_t *r, const char *s, size_t len, size_t step)
{
    size_t off = 0;
    while (off < len && !r->complete) {
        size_t n = len - off < step ? len - off : step;
        long got = http_request_feed(r, guard_place(g, s + off, n), n);
        if (got < 0)
            return got;
        off += (size_t)got;
        if ((size_t)got < n) {
            assert_true(r->complete);   /* a short read means the request ended */
            break;
        }
    }
    return (long)off;
}

static long feed_str(guard_t *g, http_request_t *r, const char *s)
{
    return http_request_feed(r, guard_place(g, s, strlen(s)), strlen(s));
}

/* ---- sample requests ------------------------------------------------------ */

static const char GET_REQ[] =
    "GET /api/history?channel=jobs&since=4 HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n";

static void check_get(const http_request_t *r)
{
    assert_true(r->head_complete);
    assert_true(r->complete);
    assert_false(r->upgrade);
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->target, "/api/history?channel=jobs&since=4");
    assert_string_equal(r->path, "/api/history");
    assert_string_equal(r->query, "channel=jobs&since=4");
    assert_int_equal(r->header_count, 3);
    assert_string_equal(r->headers[0].name, "Host");
    assert_string_equal(r->headers[0].value, "localhost:8080");
    assert_int_equal(r->headers[0].value_len, strlen("localhost:8080"));
    assert_string_equal(http_request_header(r, "user-agent"), "curl/7.88.1");
    assert_string_equal(http_request_header(r, "Accept"), "*/*");
    assert_null(r->body);
    assert_int_equal(r->body_len, 0);
    assert_true(r->keep_alive);
    assert_int_equal(r->http_major, 1);
    assert_int_equal(r->http_minor, 1);
}

static const char POST_REQ[] =
    "POST /api/publish HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 41\r\n"
    "\r\n"
    "{\"channel\":\"jobs\",\"event\":\"e\",\"data\":{}}\n";

static void check_post(const http_request_t *r)
{
    assert_true(r->complete);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->path, "/api/publish");
    assert_string_equal(r->query, "");
    assert_int_equal(r->header_count, 3);
    assert_string_equal(http_request_header(r, "content-length"), "41");
    assert_non_null(r->body);
    assert_int_equal(r->body_len, 41);
    assert_memory_equal(r->body, "{\"channel\":\"jobs\",\"event\":\"e\",\"data\":{}}\n", 41);
    assert_int_equal(r->body[41], '\0');
}

/* Chunk extensions on two chunks, an upper-case hex size, and two trailers. */
static const char CHUNKED_REQ[] =
    "POST /broadcast HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;name=value\r\n"
    "hello\r\n"
    "1;a;b=\"q\"\r\n"
    " \r\n"
    "A\r\n"
    "0123456789\r\n"
    "0\r\n"
    "X-Trailer: t1\r\n"
    "X-Other: t2\r\n"
    "\r\n";

static void check_chunked(const http_request_t *r)
{
    assert_true(r->complete);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->path, "/broadcast");
    assert_int_equal(r->body_len, 16);
    assert_string_equal(r->body, "hello 0123456789");
    /* trailers are consumed but are not headers of the request */
    assert_int_equal(r->header_count, 2);
    assert_null(http_request_header(r, "X-Trailer"));
    assert_string_equal(http_request_header(r, "transfer-encoding"), "chunked");
    assert_true(r->keep_alive);
}

/* ---- framing -------------------------------------------------------------- */

static void test_http_get_simple(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    size_t len = strlen(GET_REQ);
    assert_int_equal(http_request_feed(&r, guard_place(*state, GET_REQ, len), len), len);
    check_get(&r);
    http_request_deinit(&r);
}

static void test_http_post_content_length_body(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_str(*state, &r, POST_REQ), strlen(POST_REQ));
    check_post(&r);
    http_request_deinit(&r);
}

static void test_http_content_length_exactly_max_accepted(void **state)
{
    http_request_t r;
    http_request_init(&r, 41);
    assert_int_equal(feed_str(*state, &r, POST_REQ), strlen(POST_REQ));
    check_post(&r);
    http_request_deinit(&r);
}

static void test_http_chunked_extensions_and_trailers(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_str(*state, &r, CHUNKED_REQ), strlen(CHUNKED_REQ));
    check_chunked(&r);
    http_request_deinit(&r);
}

static void test_http_get_byte_by_byte(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_steps(*state, &r, GET_REQ, strlen(GET_REQ), 1), strlen(GET_REQ));
    check_get(&r);
    http_request_deinit(&r);
}

static void test_http_post_byte_by_byte(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_steps(*state, &r, POST_REQ, strlen(POST_REQ), 1), strlen(POST_REQ));
    check_post(&r);
    http_request_deinit(&r);
}

static void test_http_chunked_byte_by_byte(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_steps(*state, &r, CHUNKED_REQ, strlen(CHUNKED_REQ), 1),
                     strlen(CHUNKED_REQ));
    check_chunked(&r);
    http_request_deinit(&r);
}

/* Every split point of each sample, so the target, a name and a value are each cut
 * somewhere in the middle at least once and must be joined. */
static void test_http_split_at_every_offset(void **state)
{
    static const struct {
        const char *req;
        void (*check)(const http_request_t *);
    } cases[] = {{GET_REQ, check_get}, {POST_REQ, check_post}, {CHUNKED_REQ, check_chunked}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len = strlen(cases[c].req);
        for (size_t k = 1; k < len; k++) {
            http_request_t r;
            http_request_init(&r, 1024);
            long a = http_request_feed(&r, guard_place(*state, cases[c].req, k), k);
            assert_int_equal(a, k);
            assert_false(r.complete);
            long b = http_request_feed(&r, guard_place(*state, cases[c].req + k, len - k), len - k);
            assert_int_equal(b, len - k);
            cases[c].check(&r);
            http_request_deinit(&r);
        }
    }
}

static void test_http_header_split_inside_name_and_value(void **state)
{
    const char *parts[] = {"GET /p?x=1 HTTP/1.1\r\nX-Lo", "ng-Na", "me: first ha", "lf-second",
                           " half\r\nHost: h\r", "\n\r", "\n"};
    http_request_t r;
    http_request_init(&r, 0);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        assert_int_equal(feed_str(*state, &r, parts[i]), strlen(parts[i]));
    assert_true(r.complete);
    assert_int_equal(r.header_count, 2);
    assert_string_equal(r.headers[0].name, "X-Long-Name");
    assert_string_equal(r.headers[0].value, "first half-second half");
    assert_string_equal(http_request_header(&r, "x-long-name"), "first half-second half");
    assert_string_equal(r.path, "/p");
    assert_string_equal(r.query, "x=1");
    http_request_deinit(&r);
}

static void test_http_pipelined_first_feed_consumes_exactly_first(void **state)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s%s", POST_REQ, GET_REQ);
    http_request_t r;
    http_request_init(&r, 1024);
    const char *in = guard_place(*state, buf, (size_t)n);
    long got = http_request_feed(&r, in, (size_t)n);
    assert_int_equal(got, strlen(POST_REQ));
    check_post(&r);
    /* complete without a reset: nothing more is consumed */
    assert_int_equal(http_request_feed(&r, in + got, (size_t)n - (size_t)got), 0);
    http_request_reset(&r);
    assert_int_equal(http_request_feed(&r, in + got, (size_t)n - (size_t)got), strlen(GET_REQ));
    check_get(&r);
    http_request_deinit(&r);
}

static void test_http_pipelined_two_gets_in_one_buffer(void **state)
{
    const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n";
    size_t first = strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    http_request_t r;
    http_request_init(&r, 0);
    const char *in = guard_place(*state, two, strlen(two));
    assert_int_equal(http_request_feed(&r, in, strlen(two)), first);
    assert_string_equal(r.path, "/a");
    assert_string_equal(http_request_header(&r, "host"), "x");
    http_request_reset(&r);
    assert_int_equal(http_request_feed(&r, in + first, strlen(two) - first), strlen(two) - first);
    assert_true(r.complete);
    assert_string_equal(r.path, "/b");
    assert_string_equal(http_request_header(&r, "host"), "y");
    http_request_deinit(&r);
}

static void test_http_head_complete_before_body(void **state)
{
    size_t head = strstr(POST_REQ, "\r\n\r\n") + 4 - POST_REQ;
    http_request_t r;
    http_request_init(&r, 1024);
    assert_null(http_request_header(&r, "host"));   /* nothing valid yet */
    assert_int_equal(http_request_feed(&r, guard_place(*state, POST_REQ, head), head), head);
    assert_true(r.head_complete);
    assert_false(r.complete);
    assert_string_equal(http_request_header(&r, "Host"), "localhost");
    assert_null(r.body);
    assert_int_equal(feed_str(*state, &r, POST_REQ + head), strlen(POST_REQ + head));
    check_post(&r);
    http_request_deinit(&r);
}

static void test_http_reset_frees_all_heap(void **state)
{
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_str(*state, &r, POST_REQ), strlen(POST_REQ));
    assert_non_null(r.arena);
    assert_non_null(r.body);
    http_request_reset(&r);
    assert_null(r.arena);
    assert_null(r.body);
    assert_int_equal(r.arena_cap, 0);
    assert_int_equal(r.body_cap, 0);
    assert_int_equal(r.max_body_bytes, 1024);
    assert_false(r.complete);
    assert_int_equal(r.header_count, 0);
    assert_string_equal(r.path, "");
    /* and the object parses again */
    assert_int_equal(feed_str(*state, &r, GET_REQ), strlen(GET_REQ));
    check_get(&r);
    http_request_deinit(&r);
    http_request_deinit(&r);   /* twice is harmless */
}

/* ---- keep-alive and upgrade ----------------------------------------------- */

static void test_http10_without_keep_alive_closes(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.0\r\nHost: h\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_int_equal(r.http_minor, 0);
    assert_false(r.keep_alive);
    http_request_deinit(&r);
}

static void test_http10_with_keep_alive_header_stays_open(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_true(r.keep_alive);
    http_request_deinit(&r);
}

static void test_http11_connection_close(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_false(r.keep_alive);
    http_request_deinit(&r);
}

static void test_http11_keep_alive_by_default(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_true(r.keep_alive);
    http_request_deinit(&r);
}

static const char UPGRADE_HEAD[] =
    "GET /ws?token=abc HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static void test_http_upgrade_leaves_frame_bytes_unconsumed(void **state)
{
    char buf[512];
    /* a masked WebSocket frame right behind the head, as a fast client sends it */
    size_t head = strlen(UPGRADE_HEAD);
    memcpy(buf, UPGRADE_HEAD, head);
    memcpy(buf + head, "\x81\x82\x01\x02\x03\x04xy", 8);
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(http_request_feed(&r, guard_place(*state, buf, head + 8), head + 8), head);
    assert_true(r.complete);
    assert_true(r.upgrade);
    assert_string_equal(r.path, "/ws");
    assert_true(http_header_has_token(http_request_header(&r, "connection"), "upgrade"));
    assert_string_equal(http_request_header(&r, "upgrade"), "websocket");
    assert_null(r.body);
    http_request_deinit(&r);
}

static void test_http_upgrade_byte_by_byte_stops_at_head(void **state)
{
    char buf[512];
    size_t head = strlen(UPGRADE_HEAD);
    memcpy(buf, UPGRADE_HEAD, head);
    memcpy(buf + head, "\x81\x80\x00\x00\x00\x00", 6);
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(feed_steps(*state, &r, buf, head + 6, 1), head);
    assert_true(r.upgrade);
    assert_int_equal(http_request_feed(&r, guard_place(*state, buf + head, 6), 6), 0);
    http_request_deinit(&r);
}

static void test_http_upgrade_header_without_connection_is_not_upgrade(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_false(r.upgrade);
    http_request_deinit(&r);
}

/* ---- limits --------------------------------------------------------------- */

static size_t build_headers(char *buf, size_t size, size_t count)
{
    size_t n = (size_t)snprintf(buf, size, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(buf + n, size - n, "X-H%zu: v%zu\r\n", i, i);
    n += (size_t)snprintf(buf + n, size - n, "\r\n");
    assert_true(n < size);
    return n;
}

static void test_http_limit_64_headers_accepted(void **state)
{
    char buf[4096];
    size_t n = build_headers(buf, sizeof buf, HTTP_MAX_HEADERS);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, buf, n), n), n);
    assert_true(r.complete);
    assert_int_equal(r.header_count, HTTP_MAX_HEADERS);
    assert_string_equal(http_request_header(&r, "x-h63"), "v63");
    http_request_deinit(&r);
}

static void test_http_limit_65_headers_431(void **state)
{
    char buf[4096];
    size_t n = build_headers(buf, sizeof buf, HTTP_MAX_HEADERS + 1);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, buf, n), n), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    assert_false(r.complete);
    http_request_deinit(&r);
}

/* A head of exactly `total` bytes: one header padded to fit. */
static char *build_head(size_t total)
{
    const char *pre = "GET / HTTP/1.1\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    assert_true(total > fixed);
    char *s = malloc(total + 1);
    assert_non_null(s);
    size_t n = strlen(pre);
    memcpy(s, pre, n);
    memset(s + n, 'a', total - fixed);
    memcpy(s + total - strlen(post), post, strlen(post) + 1);
    return s;
}

static void test_http_limit_head_exactly_max_accepted(void **state)
{
    char *s = build_head(HTTP_MAX_HEAD_BYTES);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, HTTP_MAX_HEAD_BYTES),
                                       HTTP_MAX_HEAD_BYTES), HTTP_MAX_HEAD_BYTES);
    assert_true(r.complete);
    http_request_reset(&r);
    /* the same boundary one byte at a time */
    assert_int_equal(feed_steps(*state, &r, s, HTTP_MAX_HEAD_BYTES, 1), HTTP_MAX_HEAD_BYTES);
    assert_true(r.complete);
    http_request_deinit(&r);
    free(s);
}

static void test_http_limit_head_one_over_max_431(void **state)
{
    char *s = build_head(HTTP_MAX_HEAD_BYTES + 1);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, HTTP_MAX_HEAD_BYTES + 1),
                                       HTTP_MAX_HEAD_BYTES + 1), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    http_request_reset(&r);
    assert_int_equal(feed_steps(*state, &r, s, HTTP_MAX_HEAD_BYTES + 1, 1), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    http_request_deinit(&r);
    free(s);
}

/* Far below http_parser's own 80 KiB cap: herald's limit must be the one that acts,
 * and the arena must stay near the limit, not grow with the input. */
static void test_http_limit_huge_header_431_bounded_memory(void **state)
{
    size_t n = 200 * 1024;
    char *s = build_head(n);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, n), n), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    assert_true(r.arena_cap <= 2 * HTTP_MAX_HEAD_BYTES);
    /* an errored request keeps its error */
    assert_int_equal(feed_str(*state, &r, "\r\n"), HERALD_ETOOBIG);
    http_request_deinit(&r);
    free(s);
}

static void test_http_limit_blank_lines_before_request_count_431(void **state)
{
    size_t n = HTTP_MAX_HEAD_BYTES + 64;
    char *s = malloc(n);
    assert_non_null(s);
    for (size_t i = 0; i < n; i += 2)
        memcpy(s + i, "\r\n", 2);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, n), n), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    http_request_deinit(&r);
    free(s);
}

static char *build_target_request(size_t target_len, size_t *len)
{
    char *s = malloc(target_len + 64);
    assert_non_null(s);
    size_t n = 0;
    memcpy(s, "GET /", 5);
    n = 5;
    memset(s + n, 'p', target_len - 1);
    n += target_len - 1;
    memcpy(s + n, " HTTP/1.1\r\n\r\n", 13);
    n += 13;
    *len = n;
    return s;
}

static void test_http_limit_target_exactly_max_accepted(void **state)
{
    size_t len;
    char *s = build_target_request(HTTP_MAX_TARGET_BYTES, &len);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, len), len), len);
    assert_true(r.complete);
    assert_int_equal(strlen(r.target), HTTP_MAX_TARGET_BYTES);
    http_request_deinit(&r);
    free(s);
}

static void test_http_limit_long_target_414(void **state)
{
    size_t len;
    char *s = build_target_request(HTTP_MAX_TARGET_BYTES + 1, &len);
    http_request_t r;
    http_request_init(&r, 0);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, len), len), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 414);
    http_request_reset(&r);
    assert_int_equal(feed_steps(*state, &r, s, len, 7), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 414);
    http_request_deinit(&r);
    free(s);
}

static void test_http_limit_content_length_413_before_body(void **state)
{
    /* only the head is sent: the refusal must not wait for (or buffer) the body */
    const char *head = "POST /api/publish HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
    http_request_t r;
    http_request_init(&r, 100);
    assert_int_equal(feed_str(*state, &r, head), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 413);
    assert_true(r.head_complete);
    assert_null(r.body);
    assert_int_equal(r.body_cap, 0);
    http_request_deinit(&r);
}

static void test_http_limit_content_length_huge_413_no_allocation(void **state)
{
    const char *req = "POST / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\nabc";
    http_request_t r;
    http_request_init(&r, 1 << 20);
    assert_int_equal(feed_str(*state, &r, req), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 413);
    assert_null(r.body);
    http_request_deinit(&r);
}

static void test_http_limit_chunked_413_at_chunk_header(void **state)
{
    const char *req = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n";
    http_request_t r;
    http_request_init(&r, 10);
    assert_int_equal(feed_str(*state, &r, req), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 413);
    assert_int_equal(r.body_len, 5);   /* the second chunk was refused unread */
    http_request_reset(&r);
    /* the announced size alone is enough: its data never has to arrive */
    assert_int_equal(feed_str(*state, &r, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          "5\r\nhello\r\n6\r\n"), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 413);
    http_request_reset(&r);
    assert_int_equal(feed_steps(*state, &r, req, strlen(req), 1), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 413);
    http_request_deinit(&r);
}

static void test_http_limit_chunked_exactly_max_accepted(void **state)
{
    const char *req = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    http_request_t r;
    http_request_init(&r, 10);
    assert_int_equal(feed_str(*state, &r, req), strlen(req));
    assert_true(r.complete);
    assert_string_equal(r.body, "helloworld");
    assert_true(r.body_cap <= 11);
    http_request_deinit(&r);
}

static void test_http_limit_chunk_extension_too_long_400(void **state)
{
    size_t n = 0, ext = HTTP_MAX_CHUNK_LINE_BYTES + 10;
    char *s = malloc(ext + 128);
    assert_non_null(s);
    n += (size_t)sprintf(s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(s + n, 'x', ext);
    n += ext;
    n += (size_t)sprintf(s + n, "\r\nA\r\n0\r\n\r\n");
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, n), n), HERALD_EINVAL);
    assert_int_equal(r.error_status, 400);
    http_request_deinit(&r);
    free(s);
}

static void test_http_limit_trailers_too_large_431(void **state)
{
    size_t pad = HTTP_MAX_HEAD_BYTES + 100, n = 0;
    char *s = malloc(pad + 256);
    assert_non_null(s);
    n += (size_t)sprintf(s, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "1\r\nA\r\n0\r\nX-T: ");
    memset(s + n, 't', pad);
    n += pad;
    n += (size_t)sprintf(s + n, "\r\n\r\n");
    http_request_t r;
    http_request_init(&r, 1024);
    assert_int_equal(http_request_feed(&r, guard_place(*state, s, n), n), HERALD_ETOOBIG);
    assert_int_equal(r.error_status, 431);
    http_request_deinit(&r);
    free(s);
}

/* ---- malformed input ------------------------------------------------------ */

typedef struct sample {
    const char *s;
    size_t len;   /* explicit: some samples hold a NUL */
} sample_t;
#define SAMPLE(lit) {lit, sizeof(lit) - 1}

/* Each sample whole, then one byte per feed (a CRLF split across feeds must be
 * checked the same way). */
static void expect_all_400(guard_t *g, const sample_t *bad, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        for (size_t step = 0; step < 2; step++) {
            http_request_t r;
            http_request_init(&r, 1024);
            long got = feed_steps(g, &r, bad[i].s, bad[i].len, step ? 1 : bad[i].len);
            int status = r.error_status;
            bool complete = r.complete;
            http_request_deinit(&r);
            if (got != HERALD_EINVAL || status != 400 || complete)
                fail_msg("case %zu (%s), step %zu: got %ld, status %d", i, bad[i].s, step,
                         got, status);
        }
    }
}

static void test_http_malformed_request_line_400(void **state)
{
    static const sample_t bad[] = {
        SAMPLE("GET\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1 extra\r\n\r\n"),
        SAMPLE("G@T / HTTP/1.1\r\n\r\n"),
        SAMPLE("GET / HTTP/2.0\r\n\r\n"),
        SAMPLE("GET / HTTP/0.9\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\rX\n\r\n"),
        SAMPLE("GET /a b HTTP/1.1\r\n\r\n"),
        SAMPLE("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        SAMPLE(" GET / HTTP/1.1\r\n\r\n"),
        SAMPLE("GET /\x01 HTTP/1.1\r\n\r\n"),
        SAMPLE("GET /\ta HTTP/1.1\r\n\r\n"),
        SAMPLE("GET /\0 HTTP/1.1\r\n\r\n"),
    };
    expect_all_400(*state, bad, sizeof bad / sizeof bad[0]);
}

static void test_http_malformed_header_400(void **state)
{
    static const sample_t bad[] = {
        SAMPLE("GET / HTTP/1.1\nHost\n\n"),
        SAMPLE("GET / HTTP/1.1\r\nBad Name: v\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\nBad\"Name: v\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\n: v\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\nHost: h\r\n\rX"),
        SAMPLE("GET / HTTP/1.1\r\nX: \0v\r\n\r\n"),   /* a NUL where http_parser does not look */
        SAMPLE("GET / HTTP/1.1\r\nX: v\0\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\nX: \x01\r\n\r\n"),
        SAMPLE("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"),
    };
    expect_all_400(*state, bad, sizeof bad / sizeof bad[0]);
}

static void test_http_bad_chunk_size_400(void **state)
{
    static const sample_t bad[] = {
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\rX\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\rX"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n"),
    };
    expect_all_400(*state, bad, sizeof bad / sizeof bad[0]);
}

/* Request smuggling shapes: both framings at once, or a coding we cannot read. */
static void test_http_ambiguous_framing_400(void **state)
{
    static const sample_t bad[] = {
        SAMPLE("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
        SAMPLE("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        SAMPLE("POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc"),
        /* the lax library build would frame this as chunked under a name with a space */
        SAMPLE("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    };
    expect_all_400(*state, bad, sizeof bad / sizeof bad[0]);
}

/* ---- headers -------------------------------------------------------------- */

static void test_http_header_lookup_case_insensitive(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.1\r\ncontent-TYPE: text/plain\r\n"
                                     "X-Api-Key: k1\r\nx-api-key: k2\r\n\r\n") > 0);
    assert_string_equal(http_request_header(&r, "Content-Type"), "text/plain");
    assert_string_equal(http_request_header(&r, "CONTENT-type"), "text/plain");
    assert_string_equal(http_request_header(&r, "X-API-KEY"), "k1");   /* the first one */
    assert_null(http_request_header(&r, "Content-Length"));
    assert_null(http_request_header(&r, "content-typ"));
    http_request_deinit(&r);
}

static void test_http_header_value_blanks_trimmed_and_empty_value(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET / HTTP/1.1\r\nX-A: \t spaced  value \t \r\n"
                                     "X-Empty:\r\nX-Blank:   \r\nX-B: b\r\n\r\n") > 0);
    assert_true(r.complete);
    assert_int_equal(r.header_count, 4);
    assert_string_equal(http_request_header(&r, "x-a"), "spaced  value");
    assert_int_equal(r.headers[0].value_len, strlen("spaced  value"));
    assert_string_equal(http_request_header(&r, "x-empty"), "");
    assert_int_equal(r.headers[1].value_len, 0);
    assert_string_equal(http_request_header(&r, "x-blank"), "");
    assert_string_equal(http_request_header(&r, "x-b"), "b");
    http_request_deinit(&r);
}

static void test_http_header_has_token(void **state)
{
    (void)state;
    assert_true(http_header_has_token("keep-alive, Upgrade", "upgrade"));
    assert_true(http_header_has_token("Upgrade", "UPGRADE"));
    assert_true(http_header_has_token(" keep-alive ,\tupgrade\t", "upgrade"));
    assert_true(http_header_has_token("a,,upgrade", "upgrade"));
    assert_false(http_header_has_token("keep-alive, Upgrade2", "upgrade"));
    assert_false(http_header_has_token("keep-alive, upgrad", "upgrade"));
    assert_false(http_header_has_token("keep-alive; upgrade", "upgrade"));
    assert_false(http_header_has_token("", "upgrade"));
    assert_false(http_header_has_token(NULL, "upgrade"));
    assert_false(http_header_has_token("a, ,b", ""));
}

/* ---- query and percent-decoding ------------------------------------------- */

static void test_http_query_param_repeated_keys_and_decoding(void **state)
{
    (void)state;
    const char *q = "channel=a&channel=b%3Ac&token=x%2By+z&empty=&flag&&chan%6Eel=d";
    char out[64];
    assert_int_equal(http_query_param(q, "channel", 0, out, sizeof out), 1);
    assert_string_equal(out, "a");
    assert_int_equal(http_query_param(q, "channel", 1, out, sizeof out), 3);
    assert_string_equal(out, "b:c");
    assert_int_equal(http_query_param(q, "channel", 2, out, sizeof out), 1);   /* encoded key */
    assert_string_equal(out, "d");
    assert_int_equal(http_query_param(q, "channel", 3, out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param(q, "token", 0, out, sizeof out), 5);
    assert_string_equal(out, "x+y z");
    assert_int_equal(http_query_param(q, "empty", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param(q, "flag", 0, out, sizeof out), 0);
    assert_int_equal(http_query_param(q, "chan", 0, out, sizeof out), -1);
    assert_int_equal(http_query_param(q, "missing", 0, out, sizeof out), -1);
    assert_int_equal(http_query_param("", "channel", 0, out, sizeof out), -1);
    assert_int_equal(http_query_param(NULL, "channel", 0, out, sizeof out), -1);
}

static void test_http_query_param_truncates_and_keeps_bad_escapes(void **state)
{
    (void)state;
    char out[4];
    /* full length returned, out truncated to 3 bytes + NUL */
    assert_int_equal(http_query_param("k=abcdef", "k", 0, out, sizeof out), 6);
    assert_string_equal(out, "abc");
    char big[32];
    /* invalid escapes and %00 stay literal: the result is a C string of that length */
    assert_int_equal(http_query_param("k=%zz%4%00", "k", 0, big, sizeof big), 8);
    assert_string_equal(big, "%zz%4%00");
    assert_int_equal(http_query_param("k=%", "k", 0, big, sizeof big), 1);
    assert_string_equal(big, "%");
}

static void test_http_query_params_from_parsed_request(void **state)
{
    http_request_t r;
    http_request_init(&r, 0);
    assert_true(feed_str(*state, &r, "GET /events?channel=a&channel=b&since=%7B%7D HTTP/1.1\r\n\r\n") > 0);
    char out[32];
    assert_string_equal(r.path, "/events");
    assert_int_equal(http_query_param(r.query, "channel", 0, out, sizeof out), 1);
    assert_string_equal(out, "a");
    assert_int_equal(http_query_param(r.query, "channel", 1, out, sizeof out), 1);
    assert_string_equal(out, "b");
    assert_int_equal(http_query_param(r.query, "since", 0, out, sizeof out), 2);
    assert_string_equal(out, "{}");
    http_request_deinit(&r);
}

static void test_http_percent_decode(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(http_percent_decode("a%20b%2fc+d", 11, out, sizeof out), 7);
    assert_string_equal(out, "a b/c+d");
    assert_int_equal(http_percent_decode("%E2%82%AC", 9, out, sizeof out), 3);
    assert_string_equal(out, "\xe2\x82\xac");
    assert_int_equal(http_percent_decode("abc", 2, out, sizeof out), 2);   /* len, not NUL */
    assert_string_equal(out, "ab");
    assert_int_equal(http_percent_decode("%zz", 3, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("ab%4", 4, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%4", 2, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%", 1, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("a%00b", 5, out, sizeof out), -1);
    assert_int_equal(http_percent_decode("%41", 2, out, sizeof out), -1);   /* cut by len */
    char small[3];
    assert_int_equal(http_percent_decode("%41%42%43%44", 12, small, sizeof small), 4);
    assert_string_equal(small, "AB");
    assert_int_equal(http_percent_decode("", 0, small, sizeof small), 0);
    assert_string_equal(small, "");
}

/* ---- guard page ----------------------------------------------------------- */

/* Each request ends on the last readable byte; so do the strings given to the
 * decoders with an explicit length (a truncated escape must not look past it). */
static void test_http_guard_page_no_over_read(void **state)
{
    guard_t *g = *state;
    static const char *reqs[] = {GET_REQ, POST_REQ, CHUNKED_REQ, UPGRADE_HEAD,
                                 "GET / HTTP/1.1\r\nHost: h\r\n\r", "GET /x?", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        for (size_t step = 1; step <= 3; step++) {
            http_request_t r;
            http_request_init(&r, 1024);
            long got = feed_steps(g, &r, reqs[i], strlen(reqs[i]), step == 3 ? 4096 : step);
            assert_int_equal(got, strlen(reqs[i]));
            assert_int_equal(r.complete, i < 4);
            http_request_deinit(&r);
        }
    }
    char out[16];
    const char *esc = guard_place(g, "ab%4", 4);
    assert_int_equal(http_percent_decode(esc, 4, out, sizeof out), -1);
    esc = guard_place(g, "ab%", 3);
    assert_int_equal(http_percent_decode(esc, 3, out, sizeof out), -1);
    esc = guard_place(g, "k=v%4\0", 6);
    assert_int_equal(http_query_param(esc, "k", 0, out, sizeof out), 3);
    assert_string_equal(out, "v%4");
    esc = guard_place(g, "keep-alive, upgrade\0", 20);
    assert_true(http_header_has_token(esc, "upgrade"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, guard_setup, guard_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_http_get_simple),
        T(test_http_post_content_length_body),
        T(test_http_content_length_exactly_max_accepted),
        T(test_http_chunked_extensions_and_trailers),
        T(test_http_get_byte_by_byte),
        T(test_http_post_byte_by_byte),
        T(test_http_chunked_byte_by_byte),
        T(test_http_split_at_every_offset),
        T(test_http_header_split_inside_name_and_value),
        T(test_http_pipelined_first_feed_consumes_exactly_first),
        T(test_http_pipelined_two_gets_in_one_buffer),
        T(test_http_head_complete_before_body),
        T(test_http_reset_frees_all_heap),
        T(test_http10_without_keep_alive_closes),
        T(test_http10_with_keep_alive_header_stays_open),
        T(test_http11_connection_close),
        T(test_http11_keep_alive_by_default),
        T(test_http_upgrade_leaves_frame_bytes_unconsumed),
        T(test_http_upgrade_byte_by_byte_stops_at_head),
        T(test_http_upgrade_header_without_connection_is_not_upgrade),
        T(test_http_limit_64_headers_accepted),
        T(test_http_limit_65_headers_431),
        T(test_http_limit_head_exactly_max_accepted),
        T(test_http_limit_head_one_over_max_431),
        T(test_http_limit_huge_header_431_bounded_memory),
        T(test_http_limit_blank_lines_before_request_count_431),
        T(test_http_limit_target_exactly_max_accepted),
        T(test_http_limit_long_target_414),
        T(test_http_limit_content_length_413_before_body),
        T(test_http_limit_content_length_huge_413_no_allocation),
        T(test_http_limit_chunked_413_at_chunk_header),
        T(test_http_limit_chunked_exactly_max_accepted),
        T(test_http_limit_chunk_extension_too_long_400),
        T(test_http_limit_trailers_too_large_431),
        T(test_http_malformed_request_line_400),
        T(test_http_malformed_header_400),
        T(test_http_bad_chunk_size_400),
        T(test_http_ambiguous_framing_400),
        T(test_http_header_lookup_case_insensitive),
        T(test_http_header_value_blanks_trimmed_and_empty_value),
        T(test_http_header_has_token),
        T(test_http_query_param_repeated_keys_and_decoding),
        T(test_http_query_param_truncates_and_keeps_bad_escapes),
        T(test_http_query_params_from_parsed_request),
        T(test_http_percent_decode),
        T(test_http_guard_page_no_over_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
