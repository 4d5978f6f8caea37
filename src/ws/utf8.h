/* utf8: incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). The state is one small integer carried between calls,
 * so a text message split over frames and reads is checked as it arrives and
 * rejected at the first bad byte (RFC 6455 8.1, close 1007). No allocation, no state
 * outside the caller's integer; any thread. */
#ifndef HERALD_UTF8_H
#define HERALD_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define UTF8_ACCEPT 0u   /* at a character boundary: the text so far is valid */
#define UTF8_REJECT 1u   /* invalid: stays REJECT whatever follows */

/* Feeds s[0..n) to the validator in state `state` (start with UTF8_ACCEPT) and returns
 * the new state: UTF8_ACCEPT, UTF8_REJECT, or another value meaning "inside a
 * character, valid so far". */
uint32_t utf8_feed(uint32_t state, const uint8_t *s, size_t n);

/* Whole-buffer check: true when s[0..n) is complete, valid UTF-8. */
bool utf8_valid(const uint8_t *s, size_t n);

#endif
