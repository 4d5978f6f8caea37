/* pub: one publisher connection: HTTP/1.1 keep-alive with many requests in flight
 * (pipelined). Each request publishes one numbered event whose data carries its
 * sequence number and a CLOCK_MONOTONIC timestamp; responses are matched to
 * requests in order, to count acknowledgements and time them.
 *
 * Targets: herald's and the peers' POST /api/publish {"channel","event","data"},
 * or nchan's POST /pub?id=<channel> with the data as the body.
 *
 * Owns: its socket, its output/input buffers, the ring of send times.
 * Single-threaded, on the bench loop. */
#ifndef BENCH_PUB_H
#define BENCH_PUB_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

enum pub_state { PUB_NEW, PUB_CONNECTING, PUB_OPEN, PUB_DEAD };

struct pub {
    int kind;               /* BENCH_KIND_PUB */
    int fd;
    int idx;
    uint8_t state;
    uint8_t want_out;
    int reconnects;
    char *out;              /* requests not yet taken by the kernel */
    size_t out_len, out_off, out_cap;
    char *in;               /* an incomplete response carried to the next read */
    size_t in_len, in_cap;
    char *body;             /* scratch for one request body */
    size_t body_cap;
    uint64_t *sent;         /* ring: send time of each request in flight, oldest first */
    int head, inflight;
};

/* Allocates the buffers and connects. Returns 0 or a negative code. */
int pub_start(bench_t *b, pub_t *p, int idx);

/* Queues requests for events b->next_seq .. limit-1 while fewer than the pipeline
 * depth are in flight, then writes them in one go. */
void pub_fill(bench_t *b, pub_t *p, long limit);

void pub_on_event(bench_t *b, pub_t *p, uint32_t events);

/* Closes the socket and frees everything; idempotent. */
void pub_close(bench_t *b, pub_t *p);

#endif
