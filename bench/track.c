#include "track.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int track_init(track_t *t, long nsubs, long events, bool targeted)
{
    memset(t, 0, sizeof *t);
    t->nsubs = nsubs;
    t->events = events;
    t->targeted = targeted;
    if (nsubs <= 0)
        return 0;
    t->stride = targeted ? (uint64_t)(events + nsubs - 1) / (uint64_t)nsubs : (uint64_t)events;
    /* Round each subscriber's row to whole bytes so rows never share a byte. */
    t->stride = (t->stride + 7) & ~(uint64_t)7;
    size_t bytes = (size_t)(t->stride / 8) * (size_t)nsubs;
    t->bits = calloc(bytes ? bytes : 1, 1);
    if (!t->bits)
        return HERALD_ENOMEM;
    return 0;
}

void track_deinit(track_t *t)
{
    free(t->bits);
    t->bits = NULL;
}

uint64_t track_expected(const track_t *t, long sub)
{
    if (!t->targeted)
        return (uint64_t)t->events;
    if (sub >= t->events)
        return 0;
    return (uint64_t)((t->events - 1 - sub) / t->nsubs + 1);
}

int track_deliver(track_t *t, long sub, uint64_t seq)
{
    if (sub < 0 || sub >= t->nsubs || seq >= (uint64_t)t->events) {
        t->misrouted++;
        return TRACK_MISROUTED;
    }
    uint64_t local = seq;
    if (t->targeted) {
        if (seq % (uint64_t)t->nsubs != (uint64_t)sub) {
            t->misrouted++;
            return TRACK_MISROUTED;
        }
        local = seq / (uint64_t)t->nsubs;
    }
    uint8_t *byte = t->bits + (size_t)(t->stride / 8) * (size_t)sub + local / 8;
    uint8_t bit = (uint8_t)(1u << (local & 7));
    if (*byte & bit) {
        t->duplicates++;
        return TRACK_DUP;
    }
    *byte |= bit;
    t->unique++;
    return TRACK_NEW;
}

uint64_t track_received(const track_t *t, long sub)
{
    if (sub < 0 || sub >= t->nsubs)
        return 0;
    const uint8_t *row = t->bits + (size_t)(t->stride / 8) * (size_t)sub;
    uint64_t n = 0;
    for (uint64_t i = 0; i < t->stride / 8; i++)
        n += (uint64_t)__builtin_popcount(row[i]);
    return n;
}
