/* strmap: a string-keyed hash map with separate chaining, for the channel tables
 * of the hub and the sequencer. Keys are borrowed from the values (each entry
 * embeds its key), so the map itself only owns its bucket array.
 *
 * Usage: embed strmap_node_t in the value, set node.key/key_len, insert. Lookups
 * compare hash then bytes. The bucket array doubles when the load passes 1.
 * Not thread-safe; the owner serialises access. */
#ifndef HERALD_STRMAP_H
#define HERALD_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_node {
    struct strmap_node *next;
    uint64_t hash;
    const char *key;
    size_t key_len;
} strmap_node_t;

typedef struct strmap {
    strmap_node_t **buckets;
    size_t bucket_count;     /* a power of two, or 0 before the first insert */
    size_t count;
} strmap_t;

uint64_t strmap_hash(const char *key, size_t len);
strmap_node_t *strmap_get(const strmap_t *m, const char *key, size_t len);
/* Inserts a node whose key/key_len are set (the key must not be present).
 * Returns 0 or HERALD_ENOMEM. */
int strmap_insert(strmap_t *m, strmap_node_t *node);
void strmap_remove(strmap_t *m, strmap_node_t *node);
void strmap_deinit(strmap_t *m);   /* frees the bucket array, not the nodes */

/* Iteration: for (it = strmap_first(m, &b); it; it = strmap_next(m, it, &b)) */
strmap_node_t *strmap_first(const strmap_t *m, size_t *bucket);
strmap_node_t *strmap_next(const strmap_t *m, strmap_node_t *n, size_t *bucket);

#endif
