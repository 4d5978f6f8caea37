#include "auth/iplimit.h"
#include "core/err.h"
#include "core/strmap.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int ip_parse(const char *s, size_t len, uint8_t out[16])
{
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    char tmp[64];
    if (len == 0 || len >= sizeof tmp) return HERALD_EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, tmp, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : HERALD_EINVAL;
}

int cidr_parse(const char *s, cidr_t *out)
{
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    if (ip_parse(s, len, out->addr) < 0) return HERALD_EINVAL;
    bool v4 = memcmp(out->addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    int max = v4 ? 32 : 128;
    int prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || slash[1] == '\0' || p < 0 || p > max) return HERALD_EINVAL;
        prefix = (int)p;
    }
    out->prefix = (uint8_t)(v4 ? prefix + 96 : prefix);
    return 0;
}

bool cidr_contains(const cidr_t *c, const uint8_t addr[16])
{
    int bits = c->prefix, i = 0;
    for (; bits >= 8; bits -= 8, i++)
        if (c->addr[i] != addr[i]) return false;
    if (bits == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    return (c->addr[i] & mask) == (addr[i] & mask);
}

static bool trusted(const uint8_t addr[16], const cidr_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&list[i], addr)) return true;
    return false;
}

void client_address(const uint8_t peer[16], const char *forwarded_for, const cidr_t *list, size_t n,
                    uint8_t out[16])
{
    memcpy(out, peer, 16);
    if (!forwarded_for || !trusted(peer, list, n)) return;
    /* right to left: the nearest hop first; stop at the first untrusted address */
    const char *end = forwarded_for + strlen(forwarded_for);
    while (end > forwarded_for) {
        const char *start = end;
        while (start > forwarded_for && start[-1] != ',') start--;
        uint8_t a[16];
        if (ip_parse(start, (size_t)(end - start), a) < 0) return;   /* garbage: keep the last good one */
        memcpy(out, a, 16);
        if (!trusted(a, list, n)) return;
        end = start > forwarded_for ? start - 1 : start;
    }
}

typedef struct ip_count {
    strmap_node_t node;
    uint32_t count;
    uint8_t addr[16];
} ip_count_t;

struct iplimit {
    pthread_mutex_t lock;
    strmap_t table;
    uint64_t second;
};

iplimit_t *iplimit_create(void)
{
    iplimit_t *l = calloc(1, sizeof *l);
    if (l) pthread_mutex_init(&l->lock, NULL);
    return l;
}

static void clear(iplimit_t *l)
{
    size_t b;
    strmap_node_t *n = strmap_first(&l->table, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&l->table, n, &b);
        free(n);
        n = next;
    }
    strmap_deinit(&l->table);
}

void iplimit_destroy(iplimit_t *l)
{
    if (!l) return;
    clear(l);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

bool iplimit_allow(iplimit_t *l, const uint8_t addr[16], uint32_t per_second, uint64_t now_ms)
{
    if (per_second == 0) return true;
    bool ok = true;
    pthread_mutex_lock(&l->lock);
    if (now_ms / 1000 != l->second) {
        clear(l);
        l->second = now_ms / 1000;
    }
    ip_count_t *e = (ip_count_t *)strmap_get(&l->table, (const char *)addr, 16);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (e) {
            memcpy(e->addr, addr, 16);
            e->node.key = (const char *)e->addr;
            e->node.key_len = 16;
            if (strmap_insert(&l->table, &e->node) < 0) {
                free(e);
                e = NULL;
            }
        }
    }
    if (e) ok = ++e->count <= per_second;   /* out of memory: let it through */
    pthread_mutex_unlock(&l->lock);
    return ok;
}
