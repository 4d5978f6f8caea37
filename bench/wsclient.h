/* wsclient: the client side of RFC 6455 as the load generator needs it, without I/O.
 * Builds the upgrade request, recognizes the 101 answer, encodes masked client
 * frames and parses (unmasked) server frame headers.
 *
 * The load generator deliberately does not reuse herald's own ws_codec: a client
 * that shares the server's codec would share its bugs, and a benchmark is also a
 * check that the server speaks to an independent implementation.
 *
 * Owns nothing; every function borrows its buffers. Pure functions, any thread. */
#ifndef BENCH_WSCLIENT_H
#define BENCH_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum {
    WSC_OP_CONT = 0x0, WSC_OP_TEXT = 0x1, WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8, WSC_OP_PING = 0x9, WSC_OP_PONG = 0xA,
};

/* Largest client frame header: 2 + 8 (64-bit length) + 4 (mask). */
#define WSC_MAX_HEADER 14

typedef struct wsc_frame {
    bool fin;
    uint8_t opcode;
    bool masked;            /* a server must not mask; tolerated, and unmasked */
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len;
} wsc_frame_t;

/* Writes "GET path HTTP/1.1 ... Upgrade: websocket" into out. Returns the length, or
 * HERALD_ETOOBIG when cap is too small. */
int wsc_handshake_request(char *out, size_t cap, const char *host, int port, const char *path);

/* Looks for the end of the server's answer in buf[0..len). Returns the header length
 * when it is a complete "101" answer, HERALD_NEED_MORE, or HERALD_EPROTO for any
 * other status (the status code goes to *status when known). */
int wsc_handshake_parse(const uint8_t *buf, size_t len, int *status);

/* Parses one frame header. Returns its length, HERALD_NEED_MORE, or HERALD_EPROTO
 * (RSV bits set, or a 64-bit length with the top bit set). */
int wsc_frame_parse(const uint8_t *buf, size_t len, wsc_frame_t *out);

/* Encodes one final client frame: header, then payload masked with mask (4 bytes).
 * out must hold WSC_MAX_HEADER + len bytes. Returns the frame length. */
size_t wsc_frame_encode(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                        const uint8_t mask[4]);

/* XORs data[0..len) with mask, as if data started at payload byte `offset`. */
void wsc_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

#endif
