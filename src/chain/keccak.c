#include "chain/keccak.h"

#include <string.h>

/* Keccak-f[1600] on 25 64-bit lanes, written from the Keccak reference
 * (FIPS 202 section 3.2 step mappings, the same permutation as SHA-3). Lanes are
 * loaded and stored byte by byte in little-endian order, so the code does not
 * depend on the host's byte order. */

#define RATE 136 /* bytes: 1600 - 2 * 256 bits of capacity */

static const uint64_t round_const[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho offsets and pi destinations, walked along the pi cycle starting at lane 1 */
static const unsigned rho[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
                                 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
static const unsigned pi[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
                                15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

static uint64_t rotl(uint64_t x, unsigned n) { return (x << n) | (x >> (64 - n)); }

static void keccak_f(uint64_t a[25])
{
    for (int round = 0; round < 24; round++) {
        uint64_t c[5], t;
        /* theta: each column's parity into its neighbours */
        for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        for (int x = 0; x < 5; x++) {
            t = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
            for (int y = 0; y < 25; y += 5) a[y + x] ^= t;
        }
        /* rho and pi together: rotate each lane and move it along the cycle */
        t = a[1];
        for (int i = 0; i < 24; i++) {
            uint64_t next = a[pi[i]];
            a[pi[i]] = rotl(t, rho[i]);
            t = next;
        }
        /* chi: the only non-linear step, row by row */
        for (int y = 0; y < 25; y += 5) {
            for (int x = 0; x < 5; x++) c[x] = a[y + x];
            for (int x = 0; x < 5; x++) a[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
        }
        /* iota */
        a[0] ^= round_const[round];
    }
}

static void absorb_block(uint64_t a[25], const uint8_t *p)
{
    for (int i = 0; i < RATE / 8; i++) {
        uint64_t lane = 0;
        for (int b = 7; b >= 0; b--) lane = (lane << 8) | p[8 * i + b];
        a[i] ^= lane;
    }
    keccak_f(a);
}

void keccak256(const void *data, size_t len, uint8_t out[32])
{
    uint64_t a[25] = {0};
    const uint8_t *p = data;
    for (; len >= RATE; p += RATE, len -= RATE) absorb_block(a, p);
    /* the last, partial block (possibly empty) with Keccak's pad10*1: 0x01 after the
     * message, 0x80 in the block's last byte (0x81 when they meet) */
    uint8_t last[RATE] = {0};
    if (len) memcpy(last, p, len);
    last[len] ^= 0x01;
    last[RATE - 1] ^= 0x80;
    absorb_block(a, last);
    for (int i = 0; i < 32; i++) out[i] = (uint8_t)(a[i / 8] >> (8 * (i % 8)));
}
