/* util: small helpers every module uses: clocks, ISO-8601 timestamps, UUID v4,
 * a per-thread random generator, JSON string escaping into a growable buffer.
 * No shared state: the random generator lives in thread-local storage (seeded from
 * getrandom on first use). Any thread. */
#ifndef HERALD_UTIL_H
#define HERALD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define UUID_STR_LEN 37   /* 36 characters and a NUL */
#define ISO_TIME_LEN 25   /* "2026-01-01T00:00:00.000Z" and a NUL */

uint64_t time_mono_ms(void);        /* CLOCK_MONOTONIC, milliseconds */
uint64_t time_mono_ns(void);
uint64_t time_wall_ms(void);        /* CLOCK_REALTIME, ms since the epoch */
void time_iso8601(uint64_t wall_ms, char out[ISO_TIME_LEN]);

uint64_t rand_u64(void);            /* fast, per-thread, not for secrets */
void rand_secure(void *out, size_t len);   /* getrandom: tokens, keys, masks */
void uuid_v4(char out[UUID_STR_LEN]);

/* A growable byte buffer. Owns data. */
typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

int buf_reserve(buf_t *b, size_t extra);           /* 0 or HERALD_ENOMEM */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The value of one hex digit, either case, or -1. */
int hex_nibble(char c);
/* n bytes as 2n lowercase hex digits at out (no terminator). */
void hex_encode(char *out, const uint8_t *p, size_t n);

/* Appends s[0..n) as a quoted JSON string. */
int buf_append_json_str(buf_t *b, const char *s, size_t n);
void buf_free(buf_t *b);

#endif
