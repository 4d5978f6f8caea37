/* ratelimit: a token bucket per connection for limits.messages_per_second
 * (SPEC 9.7). The bucket holds one second's worth of messages and refills
 * continuously; a message finding it empty is refused (`rate_limited`). A client
 * refused again and again, with no full second free of refusals, for
 * RATELIMIT_CLOSE_MS is flooding and is closed with 1008. 16 bytes, embedded in
 * the connection; loop thread of the connection. */
#ifndef HERALD_RATELIMIT_H
#define HERALD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_CLOSE_MS 5000
#define RATELIMIT_CALM_MS 1000     /* a second without refusals ends a flood */

typedef struct ratelimit {
    float tokens;
    uint32_t last_ms;        /* low 32 bits of the monotonic clock (differences only); 0: unused */
    uint32_t flood_since;    /* first refusal of the current flood; 0: none */
    uint32_t last_refusal;
} ratelimit_t;

typedef enum ratelimit_verdict { RATE_OK = 0, RATE_REFUSE, RATE_CLOSE } ratelimit_verdict_t;

/* One message at now_ms, at `per_second` (0: no limit). */
ratelimit_verdict_t ratelimit_take(ratelimit_t *r, uint32_t per_second, uint64_t now_ms);

#endif
