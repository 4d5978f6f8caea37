/* ws_codec: frame header boundaries, encode round trips, masking at odd offsets,
 * close helpers, the reader fed whole, byte by byte and in random splits, every
 * 1002/1007/1009 rule, stop semantics, buffer ownership, handshake helpers, and
 * guard-page placement to catch over-reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/err.h"
#include "ws/utf8.h"
#include "ws/ws_codec.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};   /* RFC 6455 5.7 */

#define FIN 0x80

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Builds a frame independently of ws_frame_header_encode: b0 is the raw first byte
 * (FIN, RSV, opcode); the payload is masked with MASK when `masked`. */
static size_t frame(uint8_t *out, uint8_t b0, bool masked, const void *payload, size_t n)
{
    size_t k = 0;
    uint8_t m = masked ? 0x80 : 0;
    out[k++] = b0;
    if (n <= 125) {
        out[k++] = (uint8_t)(m | n);
    } else if (n <= 0xffff) {
        out[k++] = m | 126;
        out[k++] = (uint8_t)(n >> 8);
        out[k++] = (uint8_t)n;
    } else {
        out[k++] = m | 127;
        for (int s = 56; s >= 0; s -= 8)
            out[k++] = (uint8_t)((uint64_t)n >> s);
    }
    if (masked) {
        memcpy(out + k, MASK, 4);
        k += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < n; i++)
        out[k + i] = masked ? (uint8_t)(p[i] ^ MASK[i & 3]) : p[i];
    return k + n;
}

/* A header alone announcing `len` (any 64-bit value) in the 64-bit form. */
static size_t header64(uint8_t *out, uint8_t b0, bool masked, uint64_t len)
{
    size_t k = 0;
    out[k++] = b0;
    out[k++] = (masked ? 0x80 : 0) | 127;
    for (int s = 56; s >= 0; s -= 8)
        out[k++] = (uint8_t)(len >> s);
    if (masked) {
        memcpy(out + k, MASK, 4);
        k += 4;
    }
    return k;
}

#define MAX_EVENTS 64

struct event {
    char kind;            /* 'M' message, 'C' control */
    uint8_t opcode;
    size_t len;
    uint64_t hash;        /* FNV-1a of the whole payload */
    uint8_t head[160];    /* first bytes of the payload */
    bool data_nonnull;
    bool zero_copy;       /* data pointed into the fed buffer */
};

struct rec {
    struct event ev[MAX_EVENTS];
    int n;
    int stop_at;          /* return non-zero on this event index; -1: never */
    ws_reader_t *r;
    bool deinit_in_cb;    /* the stopping callback frees the reader's buffer itself */
    const uint8_t *fed_lo, *fed_hi;
    bool buf_null_in_cb;  /* r->buf was NULL during every message callback */
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int record(struct rec *rc, char kind, uint8_t op, uint8_t *data, size_t len)
{
    assert_true(rc->n < MAX_EVENTS);
    struct event *e = &rc->ev[rc->n];
    e->kind = kind;
    e->opcode = op;
    e->len = len;
    e->data_nonnull = data != NULL;
    e->hash = fnv(data, len);
    memcpy(e->head, data, len < sizeof(e->head) ? len : sizeof(e->head));
    e->zero_copy = rc->fed_lo && data >= rc->fed_lo && data + len <= rc->fed_hi;
    if (len) {   /* the data is writable */
        uint8_t t = data[len - 1];
        data[len - 1] = (uint8_t)~t;
        data[len - 1] = t;
    }
    if (kind == 'M' && rc->r && rc->r->buf != NULL)
        rc->buf_null_in_cb = false;
    int idx = rc->n++;
    if (idx == rc->stop_at) {
        if (rc->deinit_in_cb)
            ws_reader_deinit(rc->r);
        return 1;
    }
    return 0;
}

static int on_message(void *ctx, uint8_t op, uint8_t *data, size_t len)
{
    return record(ctx, 'M', op, data, len);
}

static int on_control(void *ctx, uint8_t op, uint8_t *data, size_t len)
{
    return record(ctx, 'C', op, data, len);
}

static const ws_reader_callbacks_t CB = {on_message, on_control};

static void rec_init(struct rec *rc, ws_reader_t *r)
{
    memset(rc, 0, sizeof(*rc));
    rc->stop_at = -1;
    rc->r = r;
    rc->buf_null_in_cb = true;
}

/* Feeds stream[0..n) in pieces of the given sizes (0-terminated, repeated), each
 * piece copied into its own exact-size heap block so ASan sees any over-read.
 * Returns the first non-zero result. */
static int feed_pieces(ws_reader_t *r, const uint8_t *stream, size_t n, uint64_t *seed,
                       size_t maxpiece, struct rec *rc)
{
    size_t pos = 0;
    while (pos < n) {
        size_t k = seed ? 1 + rng_next(seed) % maxpiece : maxpiece;
        if (k > n - pos)
            k = n - pos;
        uint8_t *piece = malloc(k);
        assert_non_null(piece);
        memcpy(piece, stream + pos, k);
        int ret = ws_reader_feed(r, piece, k, &CB, rc);
        free(piece);
        pos += k;
        if (ret)
            return ret;
    }
    return 0;
}

/* Feeds a copy of stream whole. */
static int feed_whole(ws_reader_t *r, const uint8_t *stream, size_t n, struct rec *rc)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, stream, n);
    rc->fed_lo = copy;
    rc->fed_hi = copy + n;
    int ret = ws_reader_feed(r, copy, n, &CB, rc);
    rc->fed_lo = rc->fed_hi = NULL;
    free(copy);
    return ret;
}

/* Expects `err` and close code `code` from the stream, fed whole and byte by byte,
 * with the reader's buffer released after the error. */
static void expect_fail(bool server, uint64_t max, const uint8_t *s, size_t n, int err, int code)
{
    for (int mode = 0; mode < 2; mode++) {
        ws_reader_t r;
        struct rec rc;
        ws_reader_init(&r, server, max);
        rec_init(&rc, &r);
        int ret = mode == 0 ? feed_whole(&r, s, n, &rc) : feed_pieces(&r, s, n, NULL, 1, &rc);
        assert_int_equal(ret, err);
        assert_int_equal(r.close_code, code);
        assert_null(r.buf);
        /* Sticky: the connection is failed, more bytes change nothing. */
        int delivered = rc.n;
        uint8_t more[2] = {FIN | WS_OP_TEXT, 0};
        assert_int_equal(ws_reader_feed(&r, more, sizeof(more), &CB, &rc), err);
        assert_int_equal(rc.n, delivered);
        ws_reader_deinit(&r);
    }
}

static void expect_ok_events(bool server, const uint8_t *s, size_t n, int nevents)
{
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, server, 0);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, s, n, &rc), 0);
    assert_int_equal(rc.n, nevents);
    assert_int_equal(r.close_code, 0);
    ws_reader_deinit(&r);
}

/* ---- frame header ---- */

static void test_ws_parse_len7_max_125(void **state)
{
    (void)state;
    uint8_t b[2] = {FIN | WS_OP_TEXT, 125};
    ws_frame_header_t h;
    assert_int_equal(ws_frame_header_parse(b, 2, &h), 2);
    assert_true(h.fin);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_false(h.masked);
    assert_int_equal(h.payload_len, 125);
    assert_int_equal(h.header_len, 2);
}

static void test_ws_parse_len16_boundaries_126_and_65535(void **state)
{
    (void)state;
    ws_frame_header_t h;
    uint8_t a[4] = {WS_OP_BINARY, 126, 0x00, 0x7e};
    assert_int_equal(ws_frame_header_parse(a, 4, &h), 4);
    assert_int_equal(h.payload_len, 126);
    assert_false(h.fin);
    uint8_t b[4] = {FIN | WS_OP_BINARY, 126, 0xff, 0xff};
    assert_int_equal(ws_frame_header_parse(b, 4, &h), 4);
    assert_int_equal(h.payload_len, 65535);
}

static void test_ws_parse_len64_boundary_65536(void **state)
{
    (void)state;
    ws_frame_header_t h;
    uint8_t b[10] = {FIN | WS_OP_BINARY, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_int_equal(ws_frame_header_parse(b, 10, &h), 10);
    assert_int_equal(h.payload_len, 65536);
    uint8_t big[10] = {FIN | WS_OP_BINARY, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(ws_frame_header_parse(big, 10, &h), 10);
    assert_true(h.payload_len == 0x7fffffffffffffffull);
}

static void test_ws_parse_len64_top_bit_refused(void **state)
{
    (void)state;
    ws_frame_header_t h;
    uint8_t b[14] = {FIN | WS_OP_BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    assert_int_equal(ws_frame_header_parse(b, 14, &h), HERALD_EPROTO);
    /* Known from the first length byte: no need to wait for the rest. */
    assert_int_equal(ws_frame_header_parse(b, 3, &h), HERALD_EPROTO);
    assert_int_equal(ws_frame_header_parse(b, 2, &h), HERALD_NEED_MORE);
}

static void test_ws_parse_noncanonical_length_accepted(void **state)
{
    (void)state;
    ws_frame_header_t h;
    uint8_t a[4] = {FIN | WS_OP_TEXT, 126, 0, 5};
    assert_int_equal(ws_frame_header_parse(a, 4, &h), 4);
    assert_int_equal(h.payload_len, 5);
    uint8_t b[10] = {FIN | WS_OP_TEXT, 127, 0, 0, 0, 0, 0, 0, 0, 5};
    assert_int_equal(ws_frame_header_parse(b, 10, &h), 10);
    assert_int_equal(h.payload_len, 5);
}

static void test_ws_parse_fields_rsv_opcode_mask(void **state)
{
    (void)state;
    ws_frame_header_t h;
    uint8_t b[6] = {0x70 | 0x0b, 0x80 | 3, 1, 2, 3, 4};
    assert_int_equal(ws_frame_header_parse(b, 6, &h), 6);
    assert_false(h.fin);
    assert_int_equal(h.rsv, 7);
    assert_int_equal(h.opcode, 0x0b);
    assert_true(h.masked);
    assert_memory_equal(h.mask, "\x01\x02\x03\x04", 4);
    assert_int_equal(h.payload_len, 3);
    uint8_t c[2] = {FIN | 0x20 | WS_OP_PING, 0};
    assert_int_equal(ws_frame_header_parse(c, 2, &h), 2);
    assert_int_equal(h.rsv, 2);
}

/* Every prefix shorter than the header is NEED_MORE, for each header size. */
static void test_ws_parse_need_more_at_each_byte(void **state)
{
    (void)state;
    static const struct { uint8_t b[14]; size_t hl; } hs[] = {
        {{FIN | 1, 5}, 2},
        {{FIN | 1, 0x80 | 5, 1, 2, 3, 4}, 6},
        {{FIN | 2, 126, 1, 0}, 4},
        {{FIN | 2, 0x80 | 126, 1, 0, 1, 2, 3, 4}, 8},
        {{FIN | 2, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 10},
        {{FIN | 2, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 14},
    };
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        ws_frame_header_t h;
        for (size_t k = 0; k < hs[i].hl; k++)
            assert_int_equal(ws_frame_header_parse(hs[i].b, k, &h), HERALD_NEED_MORE);
        assert_int_equal(ws_frame_header_parse(hs[i].b, hs[i].hl, &h), (int)hs[i].hl);
        assert_int_equal(h.header_len, hs[i].hl);
    }
}

/* ---- encode ---- */

static void test_ws_encode_roundtrip_all_length_forms(void **state)
{
    (void)state;
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 0xffffffffull,
                                    0x100000000ull, 0x7fffffffffffffffull};
    static const size_t hl_plain[] = {2, 2, 2, 4, 4, 4, 10, 10, 10, 10};
    static const uint8_t ops[] = {WS_OP_CONT, WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE,
                                  WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t o = 0; o < sizeof(ops); o++) {
            for (int fin = 0; fin < 2; fin++) {
                for (int m = 0; m < 2; m++) {
                    uint8_t out[WS_MAX_HEADER_LEN + 2];
                    memset(out, 0xee, sizeof(out));
                    size_t n = ws_frame_header_encode(out, ops[o], fin, lens[i], m ? MASK : NULL);
                    assert_int_equal(n, hl_plain[i] + (m ? 4 : 0));
                    assert_int_equal(out[WS_MAX_HEADER_LEN], 0xee);   /* no overrun */
                    ws_frame_header_t h;
                    assert_int_equal(ws_frame_header_parse(out, n, &h), (int)n);
                    assert_int_equal(h.fin, fin);
                    assert_int_equal(h.rsv, 0);
                    assert_int_equal(h.opcode, ops[o]);
                    assert_int_equal(h.masked, m);
                    assert_true(h.payload_len == lens[i]);
                    if (m)
                        assert_memory_equal(h.mask, MASK, 4);
                }
            }
        }
    }
}

static void test_ws_encode_server_text_bytes(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_HEADER_LEN];
    assert_int_equal(ws_frame_header_encode(out, WS_OP_TEXT, true, 5, NULL), 2);
    assert_memory_equal(out, "\x81\x05", 2);   /* RFC 6455 5.7 "Hello" */
    assert_int_equal(ws_frame_header_encode(out, WS_OP_BINARY, true, 256, NULL), 4);
    assert_memory_equal(out, "\x82\x7e\x01\x00", 4);
    assert_int_equal(ws_frame_header_encode(out, WS_OP_BINARY, true, 65536, NULL), 10);
    assert_memory_equal(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
}

/* ---- masking ---- */

static void test_ws_mask_rfc_example(void **state)
{
    (void)state;
    uint8_t p[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_mask_apply(p, 5, MASK, 0);
    assert_memory_equal(p, "Hello", 5);
}

static void test_ws_mask_odd_offsets_and_alignments(void **state)
{
    (void)state;
    uint8_t buf[64], want[64];
    for (size_t align = 0; align < 8; align++) {
        for (uint64_t off = 0; off < 9; off++) {
            for (size_t len = 0; len <= 40; len++) {
                for (size_t i = 0; i < len; i++)
                    buf[align + i] = want[i] = (uint8_t)(i * 7 + len + off);
                for (size_t i = 0; i < len; i++)
                    want[i] ^= MASK[(off + i) & 3];
                buf[align + len] = 0x5a;
                ws_mask_apply(buf + align, len, MASK, off);
                assert_memory_equal(buf + align, want, len);
                assert_int_equal(buf[align + len], 0x5a);
            }
        }
    }
    /* A huge offset: only offset mod 4 matters. */
    uint8_t a[3] = {0, 0, 0};
    ws_mask_apply(a, 3, MASK, 0xfffffffffffffffdull);   /* == 1 mod 4 */
    assert_memory_equal(a, "\xfa\x21\x3d", 3);
}

static void test_ws_mask_in_pieces_equals_whole(void **state)
{
    (void)state;
    uint8_t whole[200], pieces[200];
    for (size_t i = 0; i < sizeof(whole); i++)
        whole[i] = pieces[i] = (uint8_t)(i * 31);
    ws_mask_apply(whole, sizeof(whole), MASK, 0);
    size_t pos = 0, step = 1;
    while (pos < sizeof(pieces)) {
        size_t k = step < sizeof(pieces) - pos ? step : sizeof(pieces) - pos;
        ws_mask_apply(pieces + pos, k, MASK, pos);
        pos += k;
        step += 2;   /* 1, 3, 5, ...: every offset mod 4 */
    }
    assert_memory_equal(whole, pieces, sizeof(whole));
}

/* ---- close helpers ---- */

static void test_ws_close_code_valid_ranges(void **state)
{
    (void)state;
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4001, 4003, 4008, 4999};
    static const uint16_t bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                                   2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(ws_close_code_valid(ok[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ws_close_code_valid(bad[i]));
}

static void test_ws_close_payload_code_and_reason(void **state)
{
    (void)state;
    uint8_t out[125];
    assert_int_equal(ws_close_payload(out, 1000, NULL), 2);
    assert_memory_equal(out, "\x03\xe8", 2);
    assert_int_equal(ws_close_payload(out, 4001, "unauthorized"), 14);
    assert_memory_equal(out, "\x0f\xa1unauthorized", 14);
    assert_int_equal(ws_close_payload(out, 1001, ""), 2);
}

static void test_ws_close_payload_truncates_at_char_boundary(void **state)
{
    (void)state;
    uint8_t out[125];
    char reason[300];
    memset(reason, 'r', 200);
    reason[200] = '\0';
    assert_int_equal(ws_close_payload(out, 1000, reason), 125);
    reason[123] = '\0';   /* exactly 123: kept whole */
    assert_int_equal(ws_close_payload(out, 1000, reason), 125);
    reason[123] = 'r';
    reason[124] = '\0';   /* 124: one byte cut */
    assert_int_equal(ws_close_payload(out, 1000, reason), 125);
    /* 122 ASCII bytes then 2-byte characters: byte 123 would split one. */
    memset(reason, 'a', 122);
    for (int i = 0; i < 20; i++) {
        reason[122 + 2 * i] = (char)0xc3;
        reason[123 + 2 * i] = (char)0xa9;
    }
    reason[162] = '\0';
    size_t n = ws_close_payload(out, 1000, reason);
    assert_int_equal(n, 124);
    assert_true(utf8_valid(out + 2, n - 2));
    /* A 4-byte character straddling the limit is dropped whole. */
    memset(reason, 'a', 121);
    memcpy(reason + 121, "\xf0\x9f\x98\x80zz", 7);
    n = ws_close_payload(out, 1000, reason);
    assert_int_equal(n, 123);
    assert_true(utf8_valid(out + 2, n - 2));
}

/* ---- handshake ---- */

static void test_ws_accept_key_rfc_example(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 1.3, checked against an independent SHA-1 + base64. */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    memset(out, 'x', sizeof(out));
    ws_accept_key(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Uses key_len, not the NUL. */
    char padded[40] = "dGhlIHNhbXBsZSBub25jZQ==trailing";
    ws_accept_key(padded, 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_ws_accept_key_long_key_path(void **state)
{
    (void)state;
    /* A key too long for the stack buffer takes the streaming digest path; the
     * expected value is base64(SHA-1("A" x 300 + GUID)) computed independently. */
    char key[300];
    memset(key, 'A', sizeof(key));
    char out[29];
    ws_accept_key(key, sizeof(key), out);
    assert_string_equal(out, "1szRWwPIjahTL1oI0cZjbE2Eppg=");
}

static void test_ws_key_valid_16_bytes_only(void **state)
{
    (void)state;
    assert_true(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
    assert_true(ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA==", 24));
    assert_true(ws_key_valid("+/+/+/+/+/+/+/+/+/+/+w==", 24));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ===", 25));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQAA", 24));    /* 18 bytes, no padding */
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZ===", 24));    /* 15 bytes */
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQA=", 24));    /* 17 bytes */
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25j*Q==", 24));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25j Q==", 24));
    assert_false(ws_key_valid("", 0));
    assert_false(ws_key_valid(NULL, 24));
}

/* ---- reader: the happy paths ---- */

/* A stream exercising every path: single frames of each length form, a fragmented
 * binary message with an interleaved ping and pong and an empty fragment, a text
 * message whose multi-byte characters straddle fragments, empty messages, close. */
static size_t build_stream(uint8_t *s, bool masked)
{
    size_t n = 0;
    static uint8_t big[70000], mid[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 13 + (i >> 8));
    for (size_t i = 0; i < sizeof(mid); i++)
        mid[i] = (uint8_t)('a' + i % 26);
    n += frame(s + n, FIN | WS_OP_TEXT, masked, "Hello", 5);
    n += frame(s + n, WS_OP_BINARY, masked, "abc", 3);
    n += frame(s + n, FIN | WS_OP_PING, masked, "p1", 2);
    n += frame(s + n, WS_OP_CONT, masked, "", 0);
    n += frame(s + n, FIN | WS_OP_PONG, masked, "", 0);
    n += frame(s + n, FIN | WS_OP_CONT, masked, "defgh", 5);
    /* "κόσμε" cut inside characters. */
    n += frame(s + n, WS_OP_TEXT, masked, "\xce\xba\xe1", 3);
    n += frame(s + n, WS_OP_CONT, masked, "\xbd", 1);
    n += frame(s + n, FIN | WS_OP_CONT, masked, "\xb9\xcf\x83\xce\xbc\xce\xb5", 7);
    n += frame(s + n, FIN | WS_OP_TEXT, masked, mid, sizeof(mid));
    n += frame(s + n, FIN | WS_OP_BINARY, masked, big, sizeof(big));
    n += frame(s + n, FIN | WS_OP_TEXT, masked, "", 0);
    n += frame(s + n, WS_OP_TEXT, masked, "", 0);
    n += frame(s + n, FIN | WS_OP_CONT, masked, "", 0);
    n += frame(s + n, WS_OP_BINARY, masked, mid, 200);
    n += frame(s + n, FIN | WS_OP_CONT, masked, big, 1000);
    n += frame(s + n, FIN | WS_OP_CLOSE, masked, "\x03\xe8" "bye", 5);
    return n;
}

#define STREAM_EVENTS 11
#define STREAM_MAX 72000

static void check_stream_events(const struct rec *rc)
{
    assert_int_equal(rc->n, STREAM_EVENTS);
    const struct event *e = rc->ev;
    assert_int_equal(e[0].kind, 'M');
    assert_int_equal(e[0].opcode, WS_OP_TEXT);
    assert_int_equal(e[0].len, 5);
    assert_memory_equal(e[0].head, "Hello", 5);
    assert_int_equal(e[1].kind, 'C');
    assert_int_equal(e[1].opcode, WS_OP_PING);
    assert_memory_equal(e[1].head, "p1", 2);
    assert_int_equal(e[2].kind, 'C');
    assert_int_equal(e[2].opcode, WS_OP_PONG);
    assert_int_equal(e[2].len, 0);
    assert_int_equal(e[3].kind, 'M');
    assert_int_equal(e[3].opcode, WS_OP_BINARY);
    assert_int_equal(e[3].len, 8);
    assert_memory_equal(e[3].head, "abcdefgh", 8);
    assert_int_equal(e[4].opcode, WS_OP_TEXT);
    assert_int_equal(e[4].len, 11);
    assert_memory_equal(e[4].head, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    assert_int_equal(e[5].len, 300);
    assert_memory_equal(e[5].head, "abcdefghijklmnopqrstuvwxyzabcd", 30);
    assert_int_equal(e[6].opcode, WS_OP_BINARY);
    assert_int_equal(e[6].len, 70000);
    assert_int_equal(e[7].len, 0);
    assert_int_equal(e[7].opcode, WS_OP_TEXT);
    assert_true(e[7].data_nonnull);
    assert_int_equal(e[8].len, 0);
    assert_int_equal(e[8].opcode, WS_OP_TEXT);
    assert_true(e[8].data_nonnull);
    assert_int_equal(e[9].opcode, WS_OP_BINARY);
    assert_int_equal(e[9].len, 1200);
    assert_int_equal(e[10].kind, 'C');
    assert_int_equal(e[10].opcode, WS_OP_CLOSE);
    assert_int_equal(e[10].len, 5);
    assert_memory_equal(e[10].head, "\x03\xe8" "bye", 5);
}

static uint8_t g_stream[STREAM_MAX];

static void build_expected(struct rec *want, bool masked, size_t *n)
{
    *n = build_stream(g_stream, masked);
    ws_reader_t r;
    ws_reader_init(&r, masked, 0);
    rec_init(want, &r);
    assert_int_equal(feed_whole(&r, g_stream, *n, want), 0);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

static void compare_events(const struct rec *a, const struct rec *b)
{
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_int_equal(a->ev[i].kind, b->ev[i].kind);
        assert_int_equal(a->ev[i].opcode, b->ev[i].opcode);
        assert_int_equal(a->ev[i].len, b->ev[i].len);
        assert_true(a->ev[i].hash == b->ev[i].hash);
    }
}

static void test_ws_reader_whole_stream_events(void **state)
{
    (void)state;
    static struct rec want;
    size_t n;
    for (int masked = 0; masked < 2; masked++) {
        build_expected(&want, masked, &n);
        check_stream_events(&want);
    }
}

static void test_ws_reader_byte_by_byte_same_events(void **state)
{
    (void)state;
    static struct rec want, got;
    for (int masked = 0; masked < 2; masked++) {
        size_t n;
        build_expected(&want, masked, &n);
        ws_reader_t r;
        ws_reader_init(&r, masked, 0);
        rec_init(&got, &r);
        assert_int_equal(feed_pieces(&r, g_stream, n, NULL, 1, &got), 0);
        compare_events(&want, &got);
        assert_null(r.buf);
        assert_false(r.in_message);
        assert_int_equal(r.partial_len, 0);
        ws_reader_deinit(&r);
    }
}

static void test_ws_reader_random_splits_same_events(void **state)
{
    (void)state;
    static struct rec want, got;
    uint64_t seed = 0x243f6a8885a308d3ull;
    for (int masked = 0; masked < 2; masked++) {
        size_t n;
        build_expected(&want, masked, &n);
        static const size_t maxp[] = {2, 3, 7, 16, 130, 1000, 20000};
        for (int iter = 0; iter < 70; iter++) {
            ws_reader_t r;
            ws_reader_init(&r, masked, 0);
            rec_init(&got, &r);
            assert_int_equal(feed_pieces(&r, g_stream, n, &seed, maxp[iter % 7], &got), 0);
            compare_events(&want, &got);
            assert_null(r.buf);
            ws_reader_deinit(&r);
        }
    }
}

static void test_ws_reader_whole_message_is_zero_copy(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "zero copy", 9);
    n += frame(s + n, FIN | WS_OP_PING, true, "pp", 2);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, s, n, &rc), 0);
    assert_int_equal(rc.n, 2);
    assert_true(rc.ev[0].zero_copy);
    assert_true(rc.ev[1].zero_copy);
    assert_true(rc.buf_null_in_cb);   /* nothing was copied into the reader */
    assert_memory_equal(rc.ev[0].head, "zero copy", 9);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

/* The ping between fragments is delivered at once, before the message. */
static void test_ws_reader_fragmented_interleaved_ping(void **state)
{
    (void)state;
    uint8_t s[128];
    size_t n = frame(s, WS_OP_TEXT, true, "frag", 4);
    n += frame(s + n, FIN | WS_OP_PING, true, "hb", 2);
    n += frame(s + n, WS_OP_CONT, true, "mented ", 7);
    n += frame(s + n, FIN | WS_OP_PONG, true, "x", 1);
    n += frame(s + n, FIN | WS_OP_CONT, true, "text", 4);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    /* Fragment by fragment, checking state between them. */
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, s, n);
    size_t f1 = 2 + 4 + 4;
    assert_int_equal(ws_reader_feed(&r, copy, f1, &CB, &rc), 0);
    assert_true(r.in_message);
    assert_non_null(r.buf);
    assert_int_equal(rc.n, 0);
    size_t f2 = 2 + 4 + 2;
    assert_int_equal(ws_reader_feed(&r, copy + f1, f2, &CB, &rc), 0);
    assert_int_equal(rc.n, 1);
    assert_int_equal(rc.ev[0].kind, 'C');
    assert_int_equal(rc.ev[0].opcode, WS_OP_PING);
    assert_int_equal(ws_reader_feed(&r, copy + f1 + f2, n - f1 - f2, &CB, &rc), 0);
    free(copy);
    assert_int_equal(rc.n, 3);
    assert_int_equal(rc.ev[1].opcode, WS_OP_PONG);
    assert_int_equal(rc.ev[2].kind, 'M');
    assert_int_equal(rc.ev[2].opcode, WS_OP_TEXT);
    assert_int_equal(rc.ev[2].len, 15);
    assert_memory_equal(rc.ev[2].head, "fragmented text", 15);
    assert_false(r.in_message);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

static void test_ws_reader_buf_null_after_fragmented_message(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, WS_OP_BINARY, true, "ab", 2);
    n += frame(s + n, FIN | WS_OP_CONT, true, "cd", 2);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, s, n, &rc), 0);
    assert_int_equal(rc.n, 1);
    assert_int_equal(rc.ev[0].len, 4);
    assert_memory_equal(rc.ev[0].head, "abcd", 4);
    assert_null(r.buf);
    assert_int_equal(r.buf_len, 0);
    assert_int_equal(r.buf_cap, 0);
    ws_reader_deinit(&r);
}

/* A single frame split over feeds is buffered, then the buffer is freed. */
static void test_ws_reader_buf_freed_after_split_frame(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "split in two", 12);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    assert_int_equal(ws_reader_feed(&r, s, 9, &CB, &rc), 0);
    assert_non_null(r.buf);
    assert_int_equal(r.partial_len, 9);
    assert_int_equal(ws_reader_feed(&r, s + 9, n - 9, &CB, &rc), 0);
    assert_int_equal(rc.n, 1);
    assert_memory_equal(rc.ev[0].head, "split in two", 12);
    assert_null(r.buf);
    /* Cut inside the header this time. */
    n = frame(s, FIN | WS_OP_TEXT, true, "again", 5);
    assert_int_equal(ws_reader_feed(&r, s, 1, &CB, &rc), 0);
    assert_non_null(r.buf);
    assert_int_equal(ws_reader_feed(&r, s + 1, n - 1, &CB, &rc), 0);
    assert_int_equal(rc.n, 2);
    assert_memory_equal(rc.ev[1].head, "again", 5);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

/* A big frame trickling in keeps the buffer within about twice what arrived. */
static void test_ws_reader_buffer_grows_with_received_bytes(void **state)
{
    (void)state;
    static uint8_t big[70000];
    static uint8_t s[70100];
    memset(big, 'b', sizeof(big));
    size_t fl = frame(s, FIN | WS_OP_BINARY, true, big, sizeof(big));
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    for (size_t pos = 0; pos < fl; pos += 100) {
        size_t k = fl - pos < 100 ? fl - pos : 100;
        assert_int_equal(ws_reader_feed(&r, s + pos, k, &CB, &rc), 0);
        if (r.buf)
            assert_true(r.buf_cap <= 2 * r.buf_len + 256);
    }
    assert_int_equal(rc.n, 1);
    assert_int_equal(rc.ev[0].len, 70000);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

/* A header announcing 2^63-1 bytes with no limit: nothing overflows and nothing
 * near that size is allocated. */
static void test_ws_reader_len64_huge_no_overflow(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t hl = header64(s, FIN | WS_OP_BINARY, false, 0x7fffffffffffffffull);
    memset(s + hl, 'z', 20);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, false, 0);
    rec_init(&rc, &r);
    assert_int_equal(ws_reader_feed(&r, s, hl + 20, &CB, &rc), 0);
    assert_int_equal(r.partial_len, hl + 20);
    assert_true(r.buf_cap <= 256);
    assert_int_equal(ws_reader_feed(&r, s + hl, 20, &CB, &rc), 0);
    assert_int_equal(rc.n, 0);
    ws_reader_deinit(&r);
    assert_null(r.buf);
    /* The same as a continuation after a fragment, with a limit: 1009, no wrap. */
    size_t n = frame(s, WS_OP_BINARY, false, "abc", 3);
    n += header64(s + n, FIN | WS_OP_CONT, false, 0x7fffffffffffffffull);
    expect_fail(false, 1ull << 63, s, n, HERALD_ETOOBIG, WS_CLOSE_TOO_BIG);
    expect_fail(false, 10, s, n, HERALD_ETOOBIG, WS_CLOSE_TOO_BIG);
}

/* ---- reader: 1002 ---- */

static void test_ws_reader_server_rejects_unmasked(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_TEXT, false, "hi", 2);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    n = frame(s, FIN | WS_OP_PING, false, "", 0);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
}

static void test_ws_reader_client_rejects_masked(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "hi", 2);
    expect_fail(false, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    n = frame(s, FIN | WS_OP_TEXT, false, "hi", 2);
    expect_ok_events(false, s, n, 1);
}

static void test_ws_reader_rsv_bits_rejected(void **state)
{
    (void)state;
    static const uint8_t rsv[] = {0x10, 0x20, 0x40, 0x70};
    for (size_t i = 0; i < sizeof(rsv); i++) {
        uint8_t s[32];
        size_t n = frame(s, FIN | rsv[i] | WS_OP_TEXT, true, "hi", 2);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
        n = frame(s, FIN | rsv[i] | WS_OP_PING, true, "", 0);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    }
}

static void test_ws_reader_reserved_opcodes_rejected(void **state)
{
    (void)state;
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t s[32];
        size_t n = frame(s, FIN | ops[i], true, "x", 1);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
        n = frame(s, ops[i], true, "", 0);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    }
}

static void test_ws_reader_control_not_fin_rejected(void **state)
{
    (void)state;
    static const uint8_t ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t s[32];
        size_t n = frame(s, ops[i], true, "", 0);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    }
}

static void test_ws_reader_control_over_125_rejected(void **state)
{
    (void)state;
    uint8_t payload[126], s[200];
    memset(payload, 'p', sizeof(payload));
    size_t n = frame(s, FIN | WS_OP_PING, true, payload, 125);
    expect_ok_events(true, s, n, 1);
    n = frame(s, FIN | WS_OP_PING, true, payload, 126);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    /* Refused from the header alone: 126 bytes never need to arrive. */
    expect_fail(true, 0, s, 8, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    n = frame(s, FIN | WS_OP_PONG, true, payload, 126);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
}

static void test_ws_reader_continuation_without_start_rejected(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_CONT, true, "x", 1);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    n = frame(s, WS_OP_CONT, true, "", 0);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    /* After a finished fragmented message, a stray continuation. */
    n = frame(s, WS_OP_TEXT, true, "a", 1);
    n += frame(s + n, FIN | WS_OP_CONT, true, "b", 1);
    n += frame(s + n, FIN | WS_OP_CONT, true, "c", 1);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
}

static void test_ws_reader_new_message_inside_fragmented_rejected(void **state)
{
    (void)state;
    static const uint8_t second[] = {FIN | WS_OP_TEXT, FIN | WS_OP_BINARY, WS_OP_TEXT};
    for (size_t i = 0; i < sizeof(second); i++) {
        uint8_t s[32];
        size_t n = frame(s, WS_OP_BINARY, true, "ab", 2);
        n += frame(s + n, second[i], true, "cd", 2);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    }
}

static void test_ws_reader_len64_top_bit_is_1002(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = header64(s, FIN | WS_OP_BINARY, true, 0x8000000000000000ull);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    expect_fail(true, 0, s, 3, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
}

/* ---- reader: close frames ---- */

static void test_ws_reader_close_payload_1_byte_rejected(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_CLOSE, true, "\x03", 1);
    expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
}

static void test_ws_reader_close_invalid_codes_rejected(void **state)
{
    (void)state;
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]}, s[32];
        size_t n = frame(s, FIN | WS_OP_CLOSE, true, p, 2);
        expect_fail(true, 0, s, n, HERALD_EPROTO, WS_CLOSE_PROTOCOL);
    }
}

static void test_ws_reader_close_valid_codes_delivered(void **state)
{
    (void)state;
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint8_t p[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]}, s[32];
        size_t n = frame(s, FIN | WS_OP_CLOSE, true, p, 2);
        ws_reader_t r;
        struct rec rc;
        ws_reader_init(&r, true, 0);
        rec_init(&rc, &r);
        assert_int_equal(feed_whole(&r, s, n, &rc), 0);
        assert_int_equal(rc.n, 1);
        assert_int_equal(rc.ev[0].opcode, WS_OP_CLOSE);
        assert_memory_equal(rc.ev[0].head, p, 2);
        ws_reader_deinit(&r);
    }
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_CLOSE, true, "", 0);
    expect_ok_events(true, s, n, 1);
    /* 2-byte code + 123-byte reason: the largest close. */
    uint8_t p[125], s2[140];
    memset(p, 'r', sizeof(p));
    p[0] = 0x03, p[1] = 0xe8;
    n = frame(s2, FIN | WS_OP_CLOSE, true, p, 125);
    expect_ok_events(true, s2, n, 1);
}

static void test_ws_reader_close_reason_not_utf8_is_1007(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_CLOSE, true, "\x03\xe8" "ok\xff", 5);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    n = frame(s, FIN | WS_OP_CLOSE, true, "\x03\xe8" "\xce", 3);   /* truncated */
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    n = frame(s, FIN | WS_OP_CLOSE, true, "\x03\xe8" "\xed\xa0\x80", 5);   /* surrogate */
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    n = frame(s, FIN | WS_OP_CLOSE, true, "\x03\xe8" "\xce\xba", 4);
    expect_ok_events(true, s, n, 1);
}

/* ---- reader: 1007 ---- */

static void test_ws_reader_text_invalid_utf8_is_1007(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "ab\xc0\x80", 4);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    n = frame(s, FIN | WS_OP_TEXT, true, "\xf4\x90\x80\x80", 4);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    /* Binary is not checked. */
    n = frame(s, FIN | WS_OP_BINARY, true, "ab\xc0\x80", 4);
    expect_ok_events(true, s, n, 1);
}

static void test_ws_reader_text_truncated_at_end_is_1007(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "ab\xe2\x82", 4);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    n = frame(s, WS_OP_TEXT, true, "ab\xe2", 3);
    n += frame(s + n, FIN | WS_OP_CONT, true, "\x82", 1);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    /* The same cut, completed in the final fragment, is fine. */
    n = frame(s, WS_OP_TEXT, true, "ab\xe2", 3);
    n += frame(s + n, FIN | WS_OP_CONT, true, "\x82\xac", 2);
    expect_ok_events(true, s, n, 1);
}

/* The first fragment is enough to fail: the rest never needs to arrive. */
static void test_ws_reader_text_bad_first_fragment_fails_fast(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, WS_OP_TEXT, true, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", 20);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    /* A bad byte in a middle fragment, with a ping before it. */
    n = frame(s, WS_OP_TEXT, true, "ok", 2);
    n += frame(s + n, FIN | WS_OP_PING, true, "", 0);
    n += frame(s + n, WS_OP_CONT, true, "\xff", 1);
    expect_fail(true, 0, s, n, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
}

/* A single text frame cut mid-payload fails on the bytes that have arrived. */
static void test_ws_reader_text_split_frame_fails_before_complete(void **state)
{
    (void)state;
    uint8_t payload[100], s[128];
    memset(payload, 'a', sizeof(payload));
    payload[3] = 0xff;
    (void)frame(s, FIN | WS_OP_TEXT, true, payload, sizeof(payload));
    size_t hl = 2 + 4;
    expect_fail(true, 0, s, hl + 4, HERALD_EUTF8, WS_CLOSE_BAD_DATA);
    /* Header in one feed, the first payload bytes in the next. */
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    assert_int_equal(ws_reader_feed(&r, s, hl, &CB, &rc), 0);
    assert_int_equal(ws_reader_feed(&r, s + hl, 2, &CB, &rc), 0);
    assert_int_equal(ws_reader_feed(&r, s + hl + 2, 2, &CB, &rc), HERALD_EUTF8);
    assert_int_equal(r.close_code, WS_CLOSE_BAD_DATA);
    assert_null(r.buf);
    ws_reader_deinit(&r);
}

/* ---- reader: 1009 ---- */

static void test_ws_reader_too_big_from_header_alone(void **state)
{
    (void)state;
    uint8_t s[32];
    /* The header of a 1001-byte frame against a 1000-byte limit; no payload sent. */
    uint8_t h[8] = {FIN | WS_OP_BINARY, 0x80 | 126, 0x03, 0xe9, 1, 2, 3, 4};
    expect_fail(true, 1000, h, sizeof(h), HERALD_ETOOBIG, WS_CLOSE_TOO_BIG);
    size_t n = header64(s, FIN | WS_OP_TEXT, true, 1ull << 40);
    expect_fail(true, 1000, s, n, HERALD_ETOOBIG, WS_CLOSE_TOO_BIG);
    /* Exactly the limit is fine. */
    static uint8_t p[1000], big[1100];
    memset(p, 'x', sizeof(p));
    n = frame(big, FIN | WS_OP_TEXT, true, p, 1000);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 1000);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, big, n, &rc), 0);
    assert_int_equal(rc.n, 1);
    ws_reader_deinit(&r);
}

static void test_ws_reader_too_big_accumulated_fragments(void **state)
{
    (void)state;
    static uint8_t p[600], s[1400];
    memset(p, 'f', sizeof(p));
    size_t n = frame(s, WS_OP_BINARY, true, p, 600);
    n += frame(s + n, WS_OP_CONT, true, p, 300);
    /* 900 so far; a header for 101 more is enough to refuse. */
    uint8_t hdr[6] = {FIN | WS_OP_CONT, 0x80 | 101, 1, 2, 3, 4};
    memcpy(s + n, hdr, sizeof(hdr));
    expect_fail(true, 1000, s, n + sizeof(hdr), HERALD_ETOOBIG, WS_CLOSE_TOO_BIG);
    /* 100 more reaches exactly 1000: delivered. */
    n += frame(s + n, FIN | WS_OP_CONT, true, p, 100);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 1000);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, s, n, &rc), 0);
    assert_int_equal(rc.n, 1);
    assert_int_equal(rc.ev[0].len, 1000);
    assert_null(r.buf);
    ws_reader_deinit(&r);
    /* Control frames do not count towards the message size. */
    n = frame(s, WS_OP_BINARY, true, p, 600);
    n += frame(s + n, FIN | WS_OP_PING, true, p, 125);
    n += frame(s + n, FIN | WS_OP_CONT, true, p, 400);
    ws_reader_init(&r, true, 1000);
    rec_init(&rc, &r);
    assert_int_equal(feed_pieces(&r, s, n, NULL, 1, &rc), 0);
    assert_int_equal(rc.n, 2);
    ws_reader_deinit(&r);
}

/* ---- reader: stop and errors ---- */

static void test_ws_reader_callback_stop_returns_estop(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, FIN | WS_OP_TEXT, true, "one", 3);
    n += frame(s + n, FIN | WS_OP_TEXT, true, "two", 3);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    rc.stop_at = 0;
    assert_int_equal(feed_whole(&r, s, n, &rc), HERALD_ESTOP);
    assert_int_equal(rc.n, 1);   /* "two" was not delivered */
    ws_reader_deinit(&r);
}

/* Stopping on a control frame between fragments leaves a buffer that deinit frees
 * (ASan's leak check fails the test otherwise). */
static void test_ws_reader_stop_on_interleaved_control_then_deinit(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, WS_OP_TEXT, true, "abc", 3);
    n += frame(s + n, FIN | WS_OP_CLOSE, true, "\x03\xe8", 2);
    n += frame(s + n, FIN | WS_OP_CONT, true, "def", 3);
    for (int mode = 0; mode < 2; mode++) {
        ws_reader_t r;
        struct rec rc;
        ws_reader_init(&r, true, 0);
        rec_init(&rc, &r);
        rc.stop_at = 0;
        int ret = mode ? feed_pieces(&r, s, n, NULL, 1, &rc) : feed_whole(&r, s, n, &rc);
        assert_int_equal(ret, HERALD_ESTOP);
        assert_int_equal(rc.n, 1);
        assert_int_equal(rc.ev[0].opcode, WS_OP_CLOSE);
        ws_reader_deinit(&r);
        assert_null(r.buf);
    }
}

/* The stopping callback may itself deinit the reader: nothing is freed twice,
 * whether the message came from the caller's buffer or the reader's. */
static void test_ws_reader_stop_with_deinit_inside_callback(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t n = frame(s, WS_OP_BINARY, true, "ab", 2);
    n += frame(s + n, FIN | WS_OP_CONT, true, "cd", 2);
    n += frame(s + n, FIN | WS_OP_TEXT, true, "later", 5);
    for (int mode = 0; mode < 3; mode++) {
        ws_reader_t r;
        struct rec rc;
        ws_reader_init(&r, true, 0);
        rec_init(&rc, &r);
        rc.stop_at = 0;
        rc.deinit_in_cb = true;
        int ret = mode == 0 ? feed_whole(&r, s, n, &rc)
                : feed_pieces(&r, s, n, NULL, mode == 1 ? 1 : 5, &rc);
        assert_int_equal(ret, HERALD_ESTOP);
        assert_int_equal(rc.n, 1);
        assert_int_equal(rc.ev[0].len, 4);
        assert_true(rc.buf_null_in_cb);   /* the buffer was handed over before the call */
        ws_reader_deinit(&r);
    }
    /* A single frame delivered from the reader's buffer (split feed). */
    n = frame(s, FIN | WS_OP_TEXT, true, "split", 5);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    rc.stop_at = 0;
    rc.deinit_in_cb = true;
    assert_int_equal(feed_pieces(&r, s, n, NULL, 3, &rc), HERALD_ESTOP);
    assert_memory_equal(rc.ev[0].head, "split", 5);
    ws_reader_deinit(&r);
}

static void test_ws_reader_error_is_sticky(void **state)
{
    (void)state;
    uint8_t s[32];
    size_t n = frame(s, FIN | WS_OP_TEXT, false, "hi", 2);
    ws_reader_t r;
    struct rec rc;
    ws_reader_init(&r, true, 0);
    rec_init(&rc, &r);
    assert_int_equal(feed_whole(&r, s, n, &rc), HERALD_EPROTO);
    n = frame(s, FIN | WS_OP_TEXT, true, "hi", 2);
    assert_int_equal(feed_whole(&r, s, n, &rc), HERALD_EPROTO);
    assert_int_equal(rc.n, 0);
    ws_reader_deinit(&r);
    /* Feeding nothing is fine and delivers nothing. */
    ws_reader_init(&r, true, 0);
    assert_int_equal(ws_reader_feed(&r, NULL, 0, &CB, &rc), 0);
    assert_null(r.buf);
}

/* ---- guard page ---- */

struct guard {
    uint8_t *map;
    size_t pg;
};

static uint8_t *guard_end(struct guard *g)
{
    g->pg = (size_t)sysconf(_SC_PAGESIZE);
    g->map = mmap(NULL, g->pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + g->pg, g->pg, PROT_NONE), 0);
    return g->map + g->pg;
}

static void test_ws_parse_guard_page_no_overread(void **state)
{
    (void)state;
    struct guard g;
    uint8_t *end = guard_end(&g);
    static const uint8_t hs[][14] = {
        {FIN | 1, 0x80 | 5, 1, 2, 3, 4},
        {FIN | 2, 0x80 | 126, 1, 0, 1, 2, 3, 4},
        {FIN | 2, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
        {FIN | 2, 127, 0x80, 0, 0, 0, 0, 1, 0, 0},
    };
    for (size_t i = 0; i < 4; i++) {
        for (size_t k = 0; k <= 14; k++) {
            memcpy(end - k, hs[i], k);
            ws_frame_header_t h;
            (void)ws_frame_header_parse(end - k, k, &h);
        }
    }
    for (size_t len = 0; len <= 20; len++) {
        memset(end - len, 0x11, len);
        ws_mask_apply(end - len, len, MASK, len);
    }
    munmap(g.map, g.pg * 2);
}

/* Frames and frame prefixes flush against the guard: whole, every prefix, and as
 * the second half of a split. */
static void test_ws_reader_guard_page_no_overread(void **state)
{
    (void)state;
    struct guard g;
    uint8_t *end = guard_end(&g);
    uint8_t s[256];
    size_t n = frame(s, WS_OP_TEXT, true, "\xce\xba", 2);
    n += frame(s + n, FIN | WS_OP_PING, true, "ping", 4);
    n += frame(s + n, FIN | WS_OP_CONT, true, "\xe1\xbd\xb9", 3);
    uint8_t mid[200];
    memset(mid, 'm', sizeof(mid));
    n += frame(s + n, FIN | WS_OP_BINARY, true, mid, sizeof(mid));
    n += frame(s + n, FIN | WS_OP_CLOSE, true, "\x03\xe8", 2);
    assert_true(n <= sizeof(s));
    for (size_t cut = 0; cut <= n; cut++) {
        ws_reader_t r;
        struct rec rc;
        ws_reader_init(&r, true, 0);
        rec_init(&rc, &r);
        /* First part flush against the guard, then the rest flush against it. */
        memcpy(end - cut, s, cut);
        assert_int_equal(ws_reader_feed(&r, end - cut, cut, &CB, &rc), 0);
        memcpy(end - (n - cut), s + cut, n - cut);
        assert_int_equal(ws_reader_feed(&r, end - (n - cut), n - cut, &CB, &rc), 0);
        assert_int_equal(rc.n, 4);
        assert_int_equal(rc.ev[1].kind, 'M');
        assert_memory_equal(rc.ev[1].head, "\xce\xba\xe1\xbd\xb9", 5);
        assert_null(r.buf);
        ws_reader_deinit(&r);
    }
    munmap(g.map, g.pg * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_parse_len7_max_125),
        cmocka_unit_test(test_ws_parse_len16_boundaries_126_and_65535),
        cmocka_unit_test(test_ws_parse_len64_boundary_65536),
        cmocka_unit_test(test_ws_parse_len64_top_bit_refused),
        cmocka_unit_test(test_ws_parse_noncanonical_length_accepted),
        cmocka_unit_test(test_ws_parse_fields_rsv_opcode_mask),
        cmocka_unit_test(test_ws_parse_need_more_at_each_byte),
        cmocka_unit_test(test_ws_encode_roundtrip_all_length_forms),
        cmocka_unit_test(test_ws_encode_server_text_bytes),
        cmocka_unit_test(test_ws_mask_rfc_example),
        cmocka_unit_test(test_ws_mask_odd_offsets_and_alignments),
        cmocka_unit_test(test_ws_mask_in_pieces_equals_whole),
        cmocka_unit_test(test_ws_close_code_valid_ranges),
        cmocka_unit_test(test_ws_close_payload_code_and_reason),
        cmocka_unit_test(test_ws_close_payload_truncates_at_char_boundary),
        cmocka_unit_test(test_ws_accept_key_rfc_example),
        cmocka_unit_test(test_ws_accept_key_long_key_path),
        cmocka_unit_test(test_ws_key_valid_16_bytes_only),
        cmocka_unit_test(test_ws_reader_whole_stream_events),
        cmocka_unit_test(test_ws_reader_byte_by_byte_same_events),
        cmocka_unit_test(test_ws_reader_random_splits_same_events),
        cmocka_unit_test(test_ws_reader_whole_message_is_zero_copy),
        cmocka_unit_test(test_ws_reader_fragmented_interleaved_ping),
        cmocka_unit_test(test_ws_reader_buf_null_after_fragmented_message),
        cmocka_unit_test(test_ws_reader_buf_freed_after_split_frame),
        cmocka_unit_test(test_ws_reader_buffer_grows_with_received_bytes),
        cmocka_unit_test(test_ws_reader_len64_huge_no_overflow),
        cmocka_unit_test(test_ws_reader_server_rejects_unmasked),
        cmocka_unit_test(test_ws_reader_client_rejects_masked),
        cmocka_unit_test(test_ws_reader_rsv_bits_rejected),
        cmocka_unit_test(test_ws_reader_reserved_opcodes_rejected),
        cmocka_unit_test(test_ws_reader_control_not_fin_rejected),
        cmocka_unit_test(test_ws_reader_control_over_125_rejected),
        cmocka_unit_test(test_ws_reader_continuation_without_start_rejected),
        cmocka_unit_test(test_ws_reader_new_message_inside_fragmented_rejected),
        cmocka_unit_test(test_ws_reader_len64_top_bit_is_1002),
        cmocka_unit_test(test_ws_reader_close_payload_1_byte_rejected),
        cmocka_unit_test(test_ws_reader_close_invalid_codes_rejected),
        cmocka_unit_test(test_ws_reader_close_valid_codes_delivered),
        cmocka_unit_test(test_ws_reader_close_reason_not_utf8_is_1007),
        cmocka_unit_test(test_ws_reader_text_invalid_utf8_is_1007),
        cmocka_unit_test(test_ws_reader_text_truncated_at_end_is_1007),
        cmocka_unit_test(test_ws_reader_text_bad_first_fragment_fails_fast),
        cmocka_unit_test(test_ws_reader_text_split_frame_fails_before_complete),
        cmocka_unit_test(test_ws_reader_too_big_from_header_alone),
        cmocka_unit_test(test_ws_reader_too_big_accumulated_fragments),
        cmocka_unit_test(test_ws_reader_callback_stop_returns_estop),
        cmocka_unit_test(test_ws_reader_stop_on_interleaved_control_then_deinit),
        cmocka_unit_test(test_ws_reader_stop_with_deinit_inside_callback),
        cmocka_unit_test(test_ws_reader_error_is_sticky),
        cmocka_unit_test(test_ws_parse_guard_page_no_overread),
        cmocka_unit_test(test_ws_reader_guard_page_no_overread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
