/* libFuzzer target for http_request. The first 4 input bytes choose the sizes of
 * the pieces the rest is fed in (cycled; 0 means "all that is left"), so the same
 * requests are also parsed split at arbitrary points. Each piece is copied into a
 * heap block of exactly its size, so reading past it is caught. After each complete
 * request the object is reset and the rest parsed as pipelined requests. Results
 * are checked against the header's promises, and the query / token / decoding
 * helpers are run on what was parsed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_request.h"

#define FUZZ_MAX_BODY 256      /* small, so 413 paths are reached */
#define FUZZ_MAX_REQUESTS 64

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* out must hold exactly min(n, size - 1) bytes before its NUL. */
static void check_decoded(long n, const char *out, size_t size)
{
    if (n < 0)
        return;
    size_t want = (size_t)n < size - 1 ? (size_t)n : size - 1;
    CHECK(strlen(out) == want);
}

static void exercise_helpers(const http_request_t *r)
{
    char small[5], big[64];
    static const char *keys[] = {"channel", "token", "since", "a", ""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (size_t i = 0; i < 3; i++) {
            long n = http_query_param(r->query, keys[k], i, small, sizeof small);
            check_decoded(n, small, sizeof small);
            long m = http_query_param(r->query, keys[k], i, big, sizeof big);
            CHECK(n == m);
            check_decoded(m, big, sizeof big);
            if (n < 0)
                break;
        }
    }
    long n = http_percent_decode(r->path, strlen(r->path), big, sizeof big);
    check_decoded(n, big, sizeof big);
    if (n >= 0)
        CHECK((size_t)n <= strlen(r->path));
    const char *conn = http_request_header(r, "connection");
    if (conn) {
        (void)http_header_has_token(conn, "upgrade");
        (void)http_header_has_token(conn, "close");
    }
}

static void check_request(const http_request_t *r)
{
    CHECK(r->head_complete);
    CHECK(r->method && r->method[0]);
    size_t tlen = strlen(r->target);
    CHECK(tlen > 0 && tlen <= HTTP_MAX_TARGET_BYTES);
    size_t plen = strlen(r->path);
    CHECK(plen <= tlen && memcmp(r->path, r->target, plen) == 0);
    const char *q = strchr(r->target, '?');
    if (q)
        CHECK(plen == (size_t)(q - r->target) && strcmp(r->query, q + 1) == 0);
    else
        CHECK(plen == tlen && r->query[0] == '\0');
    CHECK(r->header_count <= HTTP_MAX_HEADERS);
    CHECK(r->head_bytes <= HTTP_MAX_HEAD_BYTES);
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header_t *h = &r->headers[i];
        CHECK(h->name && h->name[0] && h->value);
        CHECK(strlen(h->value) == h->value_len);
        if (h->value_len)
            CHECK(!is_blank(h->value[0]) && !is_blank(h->value[h->value_len - 1]));
        CHECK(http_request_header(r, h->name) != NULL);
    }
    CHECK(r->body_len <= FUZZ_MAX_BODY);
    if (r->body_len) {
        CHECK(r->body != NULL && r->body[r->body_len] == '\0');
        CHECK(r->body_cap > r->body_len);
    }
    exercise_helpers(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t steps[4];
    memcpy(steps, data, 4);
    data += 4;
    size -= 4;

    http_request_t r;
    http_request_init(&r, FUZZ_MAX_BODY);
    size_t off = 0, k = 0;
    int requests = 0;
    while (off < size && requests < FUZZ_MAX_REQUESTS) {
        size_t step = steps[k++ % 4];
        if (step == 0 || step > size - off)
            step = size - off;
        char *piece = malloc(step);
        if (!piece)
            break;
        memcpy(piece, data + off, step);
        long n = http_request_feed(&r, piece, step);
        free(piece);
        if (n < 0) {
            CHECK(r.error_status == 400 || r.error_status == 413 ||
                  r.error_status == 414 || r.error_status == 431);
            CHECK(http_request_feed(&r, "x", 1) == n);   /* the error sticks */
            break;
        }
        CHECK((size_t)n <= step);
        off += (size_t)n;
        if (!r.complete) {
            CHECK((size_t)n == step);   /* short only at the end of a request */
            continue;
        }
        check_request(&r);
        if (r.upgrade)
            break;   /* the rest is another protocol */
        http_request_reset(&r);
        CHECK(r.arena == NULL && r.body == NULL);
        requests++;
    }
    http_request_deinit(&r);
    return 0;
}
