#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof *h);
}

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);     /* >= 7 */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & 63u;
    return HIST_LINEAR + (e - 7) * 64 + sub;
}

/* Largest value that falls in bucket b. */
static uint64_t bucket_top(unsigned b)
{
    if (b < HIST_LINEAR)
        return b;
    unsigned e = (b - HIST_LINEAR) / 64 + 7;
    uint64_t sub = (b - HIST_LINEAR) % 64;
    uint64_t low = (64 + sub) << (e - HIST_SUB_BITS);
    return low + (((uint64_t)1 << (e - HIST_SUB_BITS)) - 1);
}

void hist_record(hist_t *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t top = bucket_top(b);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}
