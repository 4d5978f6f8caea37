#include "auth/ratelimit.h"

ratelimit_verdict_t ratelimit_take(ratelimit_t *r, uint32_t per_second, uint64_t now_ms)
{
    if (per_second == 0) return RATE_OK;
    uint32_t now = (uint32_t)now_ms | 1u;   /* never 0: 0 means "not drained" */
    if (!r->started) {
        r->started = 1;
        r->tokens = (float)per_second;
        r->last_ms = now;
    }
    uint32_t elapsed = now - r->last_ms;
    r->last_ms = now;
    r->tokens += (float)elapsed * (float)per_second / 1000.0f;
    if (r->tokens > (float)per_second) r->tokens = (float)per_second;
    if (r->tokens >= 1.0f) {
        r->tokens -= 1.0f;
        /* Only a bucket with room to spare ends a flood: a client sending at twice
         * the rate gets every other message through but stays drained. */
        if (r->tokens >= 1.0f) r->drained_since = 0;
        return RATE_OK;
    }
    if (!r->drained_since) r->drained_since = now;
    return now - r->drained_since >= RATELIMIT_CLOSE_MS ? RATE_CLOSE : RATE_REFUSE;
}
