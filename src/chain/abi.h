/* abi: Solidity event signatures and the decoding of one EVM log into JSON.
 * Owns the signature grammar (shared with config validation, so `config check` and
 * the running source agree on what a signature means), canonical signatures and
 * their topic0, and the ABI head/tail decoding of topics and data.
 * Not the JSON-RPC client, not templates, not the "_chain" metadata: the evm
 * source does those. No I/O, no state between calls; any thread.
 *
 * Logs come from a remote node and are treated as hostile: every read is bounds
 * checked, every offset and length is checked against the data before it is used,
 * and the work done (so the memory the result takes) is bounded by a small multiple
 * of the data's size, even when offsets alias each other. */
#ifndef HERALD_ABI_H
#define HERALD_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define ABI_MAX_PARAMS 32    /* parameters of one event */
#define ABI_NAME_MAX 64      /* bytes of a parameter name, NUL included */
#define ABI_MAX_INDEXED 3    /* topics 1..3; topic0 is the signature's hash */
#define ABI_TYPE_MAX 96      /* bytes of a type as written, e.g. "uint256[3][][2]" */
#define ABI_MAX_DIMS 8       /* array suffixes of one type */

/* type is canonical: "uint" is "uint256", "int" is "int256", also inside arrays
 * ("uint[3][]" is "uint256[3][]"). */
typedef struct abi_param {
    char *name;
    char *type;
    bool indexed;
} abi_param_t;

typedef struct abi_event {
    char *name;
    char *canonical;         /* "TipSent(address,address,uint256,string)" */
    uint8_t topic0[32];      /* keccak256(canonical) */
    char topic0_hex[67];     /* "0x" + 64 lowercase hex digits */
    abi_param_t *params;
    size_t count;
} abi_event_t;

/* Parses a signature as written in config:
 *   "TipSent(address indexed tipper, address indexed creator, uint256 amount, string tipMode)"
 * Spaces and tabs may surround every token. Every parameter needs a name (they
 * become the keys of the decoded object), names are distinct, at most 3 are
 * indexed. Types: address, bool, string, bytes, bytes1..bytes32, uint8..uint256
 * and int8..int256 in steps of 8 (bare uint/int are 256), function, and arrays of
 * those: T[], T[k] with k >= 1, nested (uint8[2][] is a dynamic array of uint8[2]).
 * No tuples, no fixed-point types, no anonymous events.
 * Returns 0 with *out filled (free it with abi_event_free), or -1 with a one-line
 * reason in why and *out empty. */
int abi_event_parse(const char *signature, abi_event_t *out, char *why, size_t why_len);

/* Frees what abi_event_parse allocated and zeroes *ev; safe on a zeroed event and
 * twice. */
void abi_event_free(abi_event_t *ev);

/* Decodes one log of ev. Borrows everything; returns a new reference.
 * topics: the log's topics as "0x" + 64 hex digits; topics[0] must equal
 *   ev->topic0_hex (any case) and there must be exactly one more topic per indexed
 *   parameter, in parameter order.
 * data_hex: the log's data, "0x" and an even number of hex digits ("0x" alone when
 *   every parameter is indexed).
 * Returns a new JSON object {name: value, ...} in parameter order, or NULL with a
 * one-line reason in why (wrong topic count, bad hex, short data, an offset or a
 * length out of range, a value that does not fit its type).
 *
 * Values:
 *   address        "0x" + 40 lowercase hex (the word's high 12 bytes must be zero)
 *   bool           true / false (the word must be 0 or 1)
 *   uintN          decimal string (must fit N bits); intN: decimal string, "-" when
 *                  negative (the word must be the sign extension of an N-bit value)
 *   bytesN         "0x" + 2N hex (the word's remaining bytes must be zero)
 *   function       "0x" + 48 hex (address and selector; the rest must be zero)
 *   bytes          "0x" + hex
 *   string         a JSON string when the bytes are valid UTF-8, otherwise "0x" + the
 *                  hex of the raw bytes (a contract may emit any bytes as a string;
 *                  dropping the event would lose it, and JSON cannot carry them)
 *   T[] and T[k]   JSON arrays, by the ABI's head/tail rules, nested as declared
 * An indexed string, bytes or array is stored by the EVM as the keccak256 of its
 * encoding, so its value is that topic, "0x" + 64 lowercase hex. Indexed static
 * types are decoded from their topic like a data word.
 * Dynamic bytes and strings need their content in the data but not the zero
 * padding after it; data after the last value is ignored, as the ABI allows. */
json_t *abi_decode_log(const abi_event_t *ev, const char *const *topics, size_t topic_count, const char *data_hex,
                       char *why, size_t why_len);

/* Writes the decimal form of the 32-byte big-endian unsigned number w into out
 * (78 digits at most, and a NUL). Returns the length. */
size_t abi_u256_dec(const uint8_t w[32], char out[80]);

#endif
