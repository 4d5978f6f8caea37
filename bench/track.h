/* track: which subscriber has received which event, to count losses, duplicates,
 * and misrouted deliveries exactly, not just totals.
 *
 * Events are numbered 0..events-1 by the publisher. In broadcast mode every
 * subscriber expects every event; in targeted mode event `seq` belongs to
 * subscriber seq % nsubs alone. One bit per expected (subscriber, event) pair:
 * 5,000 subscribers x 2,000 events is 1.25 MB. Order is not judged here: event
 * numbers follow the publisher's order, and with several publisher connections the
 * server may rightly sequence them differently (sub checks the server's offsets).
 *
 * Owns its bitmap. Single-threaded. */
#ifndef BENCH_TRACK_H
#define BENCH_TRACK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct track {
    long nsubs;
    long events;
    bool targeted;
    uint64_t stride;        /* bits per subscriber */
    uint8_t *bits;
    uint64_t unique, duplicates, misrouted;
} track_t;

enum { TRACK_NEW = 1, TRACK_DUP = 0, TRACK_MISROUTED = -1 };

/* Returns 0 or HERALD_ENOMEM. */
int track_init(track_t *t, long nsubs, long events, bool targeted);
void track_deinit(track_t *t);

/* How many events subscriber `sub` should receive. */
uint64_t track_expected(const track_t *t, long sub);

/* Records that `sub` received event `seq`: TRACK_NEW, TRACK_DUP, or
 * TRACK_MISROUTED (an event that was not meant for it, or not published). */
int track_deliver(track_t *t, long sub, uint64_t seq);

/* Deliveries subscriber `sub` has received (unique). O(stride / 8). */
uint64_t track_received(const track_t *t, long sub);

#endif
