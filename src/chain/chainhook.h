/* chainhook: the body of a Stacks Chainhook webhook (chainhook 1.x, "http_post"
 * action), read into the list of contract print events it carries.
 * Owns the payload's shape and the choice of each print's value (decoded "value",
 * else "raw_value" decoded by clarity.c). Not HTTP, not authorization, not the
 * contract -> channel mapping, not deduplication or retractions: the chainhook
 * source does those with what this returns. No I/O, no state between calls; any
 * thread.
 *
 * The shape, as chainhook-sdk's serialize_stacks_payload_to_json writes it:
 *   {"apply": [block...], "rollback": [block...], "chainhook": {...}, ...}
 *   block: {"block_identifier": {"index": N, "hash": "0x..."}, "transactions": [tx...], ...}
 *   tx:    {"transaction_identifier": {"hash": "0x..."},
 *           "metadata": {"receipt": {"events": [event...]}, ...}, ...}
 *   event: {"type": "SmartContractEvent", "position": {"index": N},
 *           "data": {"contract_identifier": "SP....name", "topic": "print",
 *                    "value": <decoded JSON> | "raw_value": "0x..."}}
 * Other event types and topics are skipped. The hosted "Chainhooks 2.0" envelope
 * ({"event": {"apply": ...}}) is a different format and is refused by name. */
#ifndef HERALD_CHAINHOOK_H
#define HERALD_CHAINHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum { CHAINHOOK_APPLY = 1, CHAINHOOK_ROLLBACK = 2 };

typedef struct chainhook_print {
    int kind;                 /* CHAINHOOK_APPLY or CHAINHOOK_ROLLBACK */
    uint64_t block_index;
    const char *block_hash;   /* borrowed from the payload's JSON, lives as long as the payload */
    const char *tx_hash;      /* borrowed, likewise */
    uint64_t event_index;     /* the event's position.index (its place in the receipt when absent) */
    const char *contract;     /* contract_identifier, borrowed */
    json_t *value;            /* owned: the decoded value ("value" when given, else raw_value decoded); NULL when undecodable */
    char why[128];            /* why value is NULL */
} chainhook_print_t;

typedef struct chainhook_payload {
    json_t *root;             /* the parsed body; the borrowed strings above live in it */
    chainhook_print_t *prints;
    size_t count;
} chainhook_payload_t;

/* Parses a webhook body. Returns 0 with every print event (topic "print") of every
 * block in the order to apply them: all rollback blocks first (in the order given),
 * then apply blocks; within a block, transactions in the order given and each
 * transaction's prints by event index (Chainhook does not always list a receipt's
 * events in order). Or returns -1 with a one-line reason in why when the body is
 * not JSON or not of the Chainhook shape (no apply/rollback arrays, a block without
 * identifier, a transaction without hash or receipt events, a print without
 * contract_identifier, ...): the caller answers 400, *out is left empty.
 * An undecodable print (bad raw_value, neither value nor raw_value) is kept with
 * value NULL and why set: the caller logs, counts and skips it and publishes the
 * rest. A "value" that is given wins over "raw_value"; integers in it beyond 64 bits
 * become decimal strings, as clarity.c writes them. Borrows body. */
int chainhook_parse(const char *body, size_t len, chainhook_payload_t *out, char *why, size_t why_len);

/* Frees the prints' values and the JSON and zeroes *p; safe on a zeroed payload
 * and twice. */
void chainhook_payload_free(chainhook_payload_t *p);

#endif
