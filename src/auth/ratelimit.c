#include "auth/ratelimit.h"

ratelimit_verdict_t ratelimit_take(ratelimit_t *r, uint32_t per_second, uint64_t now_ms)
{
    if (per_second == 0) return RATE_OK;
    uint32_t now = (uint32_t)now_ms | 1u;   /* never 0: 0 means "unset" */
    if (!r->last_ms) {
        r->tokens = (float)per_second;
        r->last_ms = now;
    }
    uint32_t elapsed = now - r->last_ms;
    r->last_ms = now;
    r->tokens += (float)elapsed * (float)per_second / 1000.0f;
    if (r->tokens > (float)per_second) r->tokens = (float)per_second;
    if (r->tokens >= 1.0f) {
        r->tokens -= 1.0f;
        return RATE_OK;
    }
    /* Bursts that refill the bucket in between still count as one flood, as long
     * as no whole second passes without a refusal. */
    if (!r->flood_since || now - r->last_refusal >= RATELIMIT_CALM_MS) r->flood_since = now;
    r->last_refusal = now;
    return now - r->flood_since >= RATELIMIT_CLOSE_MS ? RATE_CLOSE : RATE_REFUSE;
}
