/* clarity: Stacks Clarity values, from their consensus serialization (SIP-005) to
 * the JSON that Chainhook's decode_clarity_values gives (the format and its source
 * are at the top of clarity.c), and c32check addresses for principals.
 * Not the webhook payload (chainhook.c), not templates or channels (the source).
 * No I/O, no state between calls; any thread.
 *
 * Values arrive in webhook bodies and are treated as hostile: every length is
 * checked against the bytes left before anything is read or allocated, nesting is
 * bounded (CLARITY_MAX_DEPTH), so the work and the memory are a small multiple of
 * the input's size.
 *
 * Serialization, one type byte then:
 *   0x00 int       16 bytes, big-endian two's complement
 *   0x01 uint      16 bytes, big-endian
 *   0x02 buffer    u32 length, bytes
 *   0x03 true, 0x04 false
 *   0x05 standard principal   version byte, 20-byte hash160
 *   0x06 contract principal   version byte, 20-byte hash160, u8 name length, name
 *   0x07 (ok v), 0x08 (err v) a value follows
 *   0x09 none, 0x0a (some v)
 *   0x0b list      u32 count, values
 *   0x0c tuple     u32 count, then (u8 name length, name, value), names in order
 *   0x0d string-ascii  u32 length, bytes
 *   0x0e string-utf8   u32 length, bytes
 * Lengths and counts are big-endian. */
#ifndef HERALD_CLARITY_H
#define HERALD_CLARITY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define CLARITY_MAX_DEPTH 64     /* nested some/ok/err/list/tuple levels */
#define CLARITY_ADDRESS_MAX 48   /* "S" + version char + at most 39 c32 digits + NUL */

/* Decodes one serialized value given as hex text: "0x..." or bare hex, either
 * case, an even number of digits. Borrows hex; returns a new reference, or NULL
 * with a one-line reason in why (bad hex, unknown type byte, a length or count
 * beyond the input, trailing bytes, nesting deeper than CLARITY_MAX_DEPTH, a
 * string-ascii byte Clarity does not allow, invalid UTF-8, a bad tuple or
 * contract name, out of memory). */
json_t *clarity_decode_hex(const char *hex, size_t len, char *why, size_t why_len);

/* The same from the bytes themselves. */
json_t *clarity_decode(const uint8_t *data, size_t len, char *why, size_t why_len);

/* Writes the c32check address of a standard principal ("S", the version's c32
 * digit, c32 of hash160 || checksum) into out: "SP..." for version 22 (mainnet
 * single-sig), "SM..." 20, "ST..." 26, "SN..." 21. The checksum is the first 4
 * bytes of sha256(sha256(version || hash160)). Returns the length, or -1 when
 * version is not below 32 or out_len is too small (CLARITY_ADDRESS_MAX is enough). */
int clarity_c32_address(uint8_t version, const uint8_t hash160[20], char *out, size_t out_len);

#endif
