#include "core/strmap.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64-bit: channel names are short, and the tables are not exposed to
 * adversarial collision floods beyond what max_channels_per_connection bounds. */
uint64_t strmap_hash(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

strmap_node_t *strmap_get(const strmap_t *m, const char *key, size_t len)
{
    if (!m->bucket_count) return NULL;
    uint64_t h = strmap_hash(key, len);
    for (strmap_node_t *n = m->buckets[h & (m->bucket_count - 1)]; n; n = n->next)
        if (n->hash == h && n->key_len == len && memcmp(n->key, key, len) == 0) return n;
    return NULL;
}

static int grow(strmap_t *m)
{
    size_t nb = m->bucket_count ? m->bucket_count * 2 : 16;
    strmap_node_t **b = calloc(nb, sizeof *b);
    if (!b) return HERALD_ENOMEM;
    for (size_t i = 0; i < m->bucket_count; i++) {
        for (strmap_node_t *n = m->buckets[i], *next; n; n = next) {
            next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->bucket_count = nb;
    return 0;
}

int strmap_insert(strmap_t *m, strmap_node_t *node)
{
    if (m->count + 1 > m->bucket_count && grow(m) < 0) return HERALD_ENOMEM;
    node->hash = strmap_hash(node->key, node->key_len);
    size_t j = node->hash & (m->bucket_count - 1);
    node->next = m->buckets[j];
    m->buckets[j] = node;
    m->count++;
    return 0;
}

void strmap_remove(strmap_t *m, strmap_node_t *node)
{
    if (!m->bucket_count) return;
    strmap_node_t **pp = &m->buckets[node->hash & (m->bucket_count - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if (*pp == node) {
            *pp = node->next;
            node->next = NULL;
            m->count--;
            return;
        }
    }
}

void strmap_deinit(strmap_t *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->bucket_count = m->count = 0;
}

strmap_node_t *strmap_first(const strmap_t *m, size_t *bucket)
{
    for (size_t i = 0; i < m->bucket_count; i++) {
        if (m->buckets[i]) {
            *bucket = i;
            return m->buckets[i];
        }
    }
    return NULL;
}

strmap_node_t *strmap_next(const strmap_t *m, strmap_node_t *n, size_t *bucket)
{
    if (n->next) return n->next;
    for (size_t i = *bucket + 1; i < m->bucket_count; i++) {
        if (m->buckets[i]) {
            *bucket = i;
            return m->buckets[i];
        }
    }
    return NULL;
}
