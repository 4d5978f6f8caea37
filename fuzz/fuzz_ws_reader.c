/* libFuzzer target for ws_reader: arbitrary bytes fed in pieces, checking the
 * reader's invariants after every feed and the callbacks' guarantees on every
 * delivery.
 *
 * Input: byte 0 chooses the run, the rest is the wire stream.
 *   bit 0     server (masked frames expected) or client
 *   bits 1-2  split: 0 whole, 1 byte by byte, 2 pieces of 1..16, 3 pieces of 1..300
 *   bits 3-5  stop (callback returns non-zero) at the Nth delivery; 0 never
 *   bits 6-7  seed for the piece sizes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "ws/utf8.h"
#include "ws/ws_codec.h"

#define MAX_MESSAGE 512

struct fuzz_ctx {
    unsigned calls;
    unsigned stop_at;
    volatile uint8_t sink;
};

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Reads and writes every byte, so ASan flags a delivery outside live memory. */
static void touch(struct fuzz_ctx *c, uint8_t *data, size_t len)
{
    check(data != NULL);
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        acc ^= data[i];
        data[i] = (uint8_t)~data[i];
        data[i] = (uint8_t)~data[i];
    }
    c->sink = acc;
}

static int stop_here(struct fuzz_ctx *c)
{
    c->calls++;
    return c->stop_at && c->calls == c->stop_at;
}

static int on_message(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    struct fuzz_ctx *c = ctx;
    touch(c, data, len);
    check(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY);
    check(len <= MAX_MESSAGE);
    if (opcode == WS_OP_TEXT)
        check(utf8_valid(data, len));
    return stop_here(c);
}

static int on_control(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    struct fuzz_ctx *c = ctx;
    touch(c, data, len);
    check(opcode == WS_OP_CLOSE || opcode == WS_OP_PING || opcode == WS_OP_PONG);
    check(len <= 125);
    if (opcode == WS_OP_CLOSE && len > 0) {
        check(len >= 2);
        check(ws_close_code_valid((uint16_t)(data[0] << 8 | data[1])));
        check(utf8_valid(data + 2, len - 2));
    }
    return stop_here(c);
}

static size_t piece_size(unsigned split, uint64_t *seed, size_t left)
{
    size_t k;
    if (split == 0)
        return left;
    if (split == 1)
        return 1;
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    k = 1 + (size_t)(x % (split == 2 ? 16 : 300));
    return k < left ? k : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    bool server = sel & 1;
    unsigned split = (sel >> 1) & 3;
    struct fuzz_ctx c = {.calls = 0, .stop_at = (sel >> 3) & 7};
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(sel >> 6) << 32);
    static const ws_reader_callbacks_t cb = {on_message, on_control};

    ws_reader_t r;
    ws_reader_init(&r, server, MAX_MESSAGE);
    size_t pos = 0;
    while (pos < size) {
        size_t k = piece_size(split, &seed, size - pos);
        /* Each piece in its own exact-size block: reading past it is caught. */
        uint8_t *piece = malloc(k);
        check(piece != NULL);
        memcpy(piece, data + pos, k);
        int rc = ws_reader_feed(&r, piece, k, &cb, &c);
        free(piece);
        pos += k;
        if (rc == HERALD_ESTOP)
            break;
        if (rc < 0) {
            check(rc == HERALD_EPROTO || rc == HERALD_EUTF8 || rc == HERALD_ETOOBIG ||
                  rc == HERALD_ENOMEM);
            check(r.close_code == WS_CLOSE_PROTOCOL || r.close_code == WS_CLOSE_BAD_DATA ||
                  r.close_code == WS_CLOSE_TOO_BIG || r.close_code == WS_CLOSE_INTERNAL);
            check(r.buf == NULL);
            /* The failure is sticky. */
            uint8_t one = 0x81;
            check(ws_reader_feed(&r, &one, 1, &cb, &c) == rc);
            break;
        }
        check(rc == 0);
        check(r.partial_len <= r.buf_len && r.buf_len <= r.buf_cap);
        check((r.buf == NULL) == (r.buf_cap == 0));
        /* Idle means no heap. */
        if (!r.in_message && r.partial_len == 0)
            check(r.buf == NULL);
        /* A message in progress never exceeds the limit, whatever is buffered. */
        check(r.buf_len - r.partial_len <= MAX_MESSAGE);
        /* A partial frame is at most a header plus a control payload or the rest
         * of a message under the limit. */
        check(r.partial_len <= WS_MAX_HEADER_LEN + MAX_MESSAGE);
    }
    ws_reader_deinit(&r);
    check(r.buf == NULL);
    return 0;
}
