/* sub: one subscriber connection of the load generator, for each protocol:
 * native (herald /ws and the ws peer), socketio (Engine.IO v4 over websocket) and
 * nchan (raw websocket messages). Runs the handshake state machine up to "ready"
 * (subscription confirmed), then parses each event's seq and ts and reports it to
 * the tracker and the latency histogram.
 *
 * Owns: its socket and its small carry-over buffers. Does not own: the shared
 * receive buffer, the counters (bench_t). Single-threaded, on the bench loop. */
#ifndef BENCH_SUB_H
#define BENCH_SUB_H

#include <stdint.h>

#include "bench.h"

enum sub_state {
    SUB_NEW,            /* not started */
    SUB_CONNECTING,     /* TCP connect in progress */
    SUB_UPGRADING,      /* upgrade request sent, waiting for 101 */
    SUB_EIO_OPEN,       /* socketio: waiting for the Engine.IO open packet "0{...}" */
    SUB_SIO_CONNECT,    /* socketio: "40" sent, waiting for "40{...}" */
    SUB_SUBSCRIBING,    /* subscribe sent, waiting for its confirmation */
    SUB_READY,
    SUB_CLOSED,         /* was ready, then the connection ended */
    SUB_FAILED,         /* never became ready */
};

struct sub {
    int kind;               /* BENCH_KIND_SUB */
    int fd;
    long idx;
    uint8_t state;
    uint8_t msg_op;         /* opcode of the fragmented message being joined */
    uint8_t want_out;       /* EPOLLOUT armed */
    uint8_t *in;            /* bytes of an incomplete frame carried to the next read */
    uint32_t in_len, in_cap;
    uint8_t *msg;           /* fragments of a message in progress */
    uint32_t msg_len, msg_cap;
    uint8_t *out;           /* bytes the kernel did not take yet */
    uint32_t out_len, out_cap;
    uint64_t last_offset;   /* native: the channel offset of the previous event */
};

/* Opens the connection (non-blocking connect) and registers it. Returns 0, or a
 * negative code after marking the subscriber failed. */
int sub_start(bench_t *b, sub_t *s);

/* Handles epoll events for the subscriber. */
void sub_on_event(bench_t *b, sub_t *s, uint32_t events);

/* Closes the socket and frees the buffers; idempotent. */
void sub_close(bench_t *b, sub_t *s);

#endif
