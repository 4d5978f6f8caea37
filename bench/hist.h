/* hist: a fixed-size log-linear latency histogram (nanoseconds).
 * Values below 128 ns are exact; above, each power of two is split into 64
 * buckets, so a reported percentile is within 1/64 (1.6%) of the true value.
 * Recording is O(1) and never allocates: millions of deliveries per second cost
 * one increment each, where keeping every sample would cost 8 bytes each.
 *
 * Owns its counters (embedded, no heap). Single-threaded. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_LINEAR 128     /* 2 << HIST_SUB_BITS */
#define HIST_BUCKETS (HIST_LINEAR + (64 - 7) * 64)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t buckets[HIST_BUCKETS];
} hist_t;

void hist_init(hist_t *h);
void hist_record(hist_t *h, uint64_t value_ns);

/* The value at quantile q (0..1): the upper bound of the bucket holding the
 * ceil(q * count)-th smallest value, capped at the maximum seen. 0 when empty. */
uint64_t hist_quantile(const hist_t *h, double q);

#endif
