/* ws_codec: the RFC 6455 frame and message layers, without I/O.
 *
 * Frame layer: ws_frame_header_parse / ws_frame_header_encode / ws_mask_apply.
 * Message layer: ws_reader_t, fed with bytes as they arrive from any read buffer;
 * it unmasks in place, validates (masking direction, RSV bits, opcodes, control
 * frame rules, fragmentation order, incremental UTF-8 of text, close codes and
 * reasons, the message size limit) and calls back with each complete message and
 * each control frame. A message that arrives whole inside the caller's buffer is
 * handed over without a copy; only a frame split across feeds, or a fragmented
 * message, is copied into a buffer the reader owns, and that buffer is freed as
 * soon as the message is delivered, so an idle reader holds no heap memory.
 *
 * Owns: the reader's reassembly buffer. Does not own: sockets, the caller's bytes.
 * One reader per connection; not thread-safe; any thread. */
#ifndef HERALD_WS_CODEC_H
#define HERALD_WS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum ws_opcode {
    WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001, WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003, WS_CLOSE_NO_STATUS = 1005, WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_BAD_DATA = 1007, WS_CLOSE_POLICY = 1008, WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011, WS_CLOSE_RESTART = 1012,
    /* herald's own, SPEC 9.8 */
    WS_CLOSE_HEARTBEAT = 4000, WS_CLOSE_UNAUTHORIZED = 4001, WS_CLOSE_DISCONNECTED = 4003,
    WS_CLOSE_SLOW_CONSUMER = 4008,
};

/* Largest frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define WS_MAX_HEADER_LEN 14

typedef struct ws_frame_header {
    bool fin;
    uint8_t rsv;            /* the three RSV bits, shifted down: 0..7 */
    uint8_t opcode;         /* raw 4-bit opcode, validated by the reader, not here */
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len;      /* bytes of header, 2..14 */
} ws_frame_header_t;

/* Parses the frame header at buf[0..len). Returns the header length (> 0),
 * HERALD_NEED_MORE, or HERALD_EPROTO (a 64-bit length with the top bit set, or a
 * length not in its shortest form is accepted as RFC 6455 allows; only the top bit
 * is refused). Borrows buf. */
int ws_frame_header_parse(const uint8_t *buf, size_t len, ws_frame_header_t *out);

/* Writes a frame header into out (at least WS_MAX_HEADER_LEN bytes) and returns
 * its length. mask is NULL for server frames, 4 bytes for client frames (the caller
 * then masks the payload with ws_mask_apply). */
size_t ws_frame_header_encode(uint8_t *out, uint8_t opcode, bool fin, uint64_t payload_len,
                              const uint8_t *mask);

/* XORs data[0..len) with the mask, as if data started at byte `offset` of the
 * payload (so a payload can be unmasked in pieces). */
void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Builds a close frame payload: 2-byte code, then reason (truncated to fit in a
 * control frame). Returns the payload length (<= 125). */
size_t ws_close_payload(uint8_t *out /* >= 125 */, uint16_t code, const char *reason);

/* True for a close code a peer may send (RFC 6455 7.4: 1000-1003, 1007-1014,
 * 3000-4999). */
bool ws_close_code_valid(uint16_t code);

/* ---- message layer ---- */

typedef struct ws_reader_callbacks {
    /* A complete data message (TEXT already validated as UTF-8). data is writable and
     * valid only during the call. Return 0 to go on, or any non-zero value to make
     * ws_reader_feed stop at once and return HERALD_ESTOP (e.g. the handler closed
     * the connection). */
    int (*on_message)(void *ctx, uint8_t opcode, uint8_t *data, size_t len);
    /* A control frame: PING, PONG or CLOSE, payload unmasked, len <= 125. For CLOSE,
     * the payload has been validated (empty, or a valid code + UTF-8 reason). Same
     * return convention. */
    int (*on_control)(void *ctx, uint8_t opcode, uint8_t *data, size_t len);
} ws_reader_callbacks_t;

typedef struct ws_reader {
    /* configuration */
    uint64_t max_message_bytes;   /* 0: no limit */
    bool expect_masked;           /* true in a server (clients must mask), false in a client */
    /* state: kept small; an idle reader owns no heap memory */
    bool in_message;              /* between a non-final first fragment and its final one */
    uint8_t message_opcode;       /* TEXT or BINARY of the message being reassembled */
    uint32_t utf8_state;          /* incremental validation state of the current text message */
    uint8_t *buf;                 /* reassembly / partial-frame buffer, NULL when idle */
    size_t buf_len, buf_cap;
    size_t partial_len;           /* bytes at the end of buf that are an incomplete frame */
    int close_code;               /* after an error: the close code to send */
} ws_reader_t;

void ws_reader_init(ws_reader_t *r, bool expect_masked, uint64_t max_message_bytes);
void ws_reader_deinit(ws_reader_t *r);   /* frees the buffer; the reader can be reused after init */

/* Feeds data[0..len) (which the reader may modify: it unmasks in place). Consumes
 * everything: complete frames are handled, a trailing incomplete frame is kept.
 * Returns 0, HERALD_ESTOP (a callback returned non-zero), or a negative error after
 * which the connection must be closed with r->close_code:
 *   HERALD_EPROTO -> 1002 (RSV bits, unknown opcode, bad masking, control frame
 *                    fragmented or > 125 bytes, bad continuation, close payload of
 *                    1 byte or with an invalid code)
 *   HERALD_EUTF8  -> 1007 (text message or close reason not UTF-8)
 *   HERALD_ETOOBIG-> 1009 (message over max_message_bytes, known from the header)
 *   HERALD_ENOMEM -> 1011 */
int ws_reader_feed(ws_reader_t *r, uint8_t *data, size_t len,
                   const ws_reader_callbacks_t *cb, void *ctx);

/* ---- handshake helpers ---- */

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
 * out receives 28 characters and a NUL. */
void ws_accept_key(const char *key, size_t key_len, char out[29]);

/* True when key is a valid Sec-WebSocket-Key: base64 of exactly 16 bytes. */
bool ws_key_valid(const char *key, size_t key_len);

#endif
