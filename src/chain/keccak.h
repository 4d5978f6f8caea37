/* keccak: Keccak-256 as Ethereum uses it (the original Keccak submission's padding,
 * 0x01 ... 0x80), for event topics. Not SHA3-256, which pads with 0x06 and so hashes
 * to different values: OpenSSL 3.0 has only the latter, hence this file.
 * No allocation, no state between calls; any thread. Not constant-time, and needs
 * not be: it hashes public event signatures. */
#ifndef HERALD_KECCAK_H
#define HERALD_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/* out = Keccak-256(data[0..len)); data may be NULL when len is 0. */
void keccak256(const void *data, size_t len, uint8_t out[32]);

#endif
