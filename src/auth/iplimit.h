/* iplimit: who is the client (its address, believing X-Forwarded-For only from
 * trusted proxies), and the per-address connection rate limit
 * (limits.connections_per_ip_per_second, SPEC 9.7).
 *
 * Addresses are 16 bytes, IPv4 mapped into IPv6 (::ffff:a.b.c.d). The limiter
 * counts new connections per address in the current second; its table is cleared
 * when the second changes, so its memory is bounded by one second's distinct
 * addresses. Owns its table; thread-safe (a mutex: taken once per upgrade). */
#ifndef HERALD_IPLIMIT_H
#define HERALD_IPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cidr {
    uint8_t addr[16];
    uint8_t prefix;          /* 0..128, counted on the mapped form */
} cidr_t;

/* "10.0.0.0/8", "::1", "192.168.1.7". Returns 0 or HERALD_EINVAL. */
int cidr_parse(const char *s, cidr_t *out);
bool cidr_contains(const cidr_t *c, const uint8_t addr[16]);
/* An IPv4 or IPv6 address (blanks around it allowed). Returns 0 or HERALD_EINVAL. */
int ip_parse(const char *s, size_t len, uint8_t out[16]);

/* The client's address: the peer, unless the peer is a trusted proxy and the
 * request has X-Forwarded-For, whose entries are then walked from the right,
 * skipping trusted proxies; the first other one is the client. */
void client_address(const uint8_t peer[16], const char *forwarded_for, const cidr_t *trusted, size_t n,
                    uint8_t out[16]);

typedef struct iplimit iplimit_t;

iplimit_t *iplimit_create(void);
void iplimit_destroy(iplimit_t *l);
/* Counts one connection from addr; false when it is over per_second (0: no limit). */
bool iplimit_allow(iplimit_t *l, const uint8_t addr[16], uint32_t per_second, uint64_t now_ms);

#endif
