#include "cluster/wire.h"
#include "core/err.h"
#include "hub/event.h"

#include <string.h>

int wire_tail(buf_t *b, uint64_t ts_ms, const char *id, const char *name, size_t name_len, const char *data,
              size_t data_len)
{
    int rc = buf_printf(b, "%llu %s %zu ", (unsigned long long)ts_ms, id, name_len);
    rc |= buf_append(b, name, name_len);
    rc |= buf_append(b, data, data_len);
    return rc ? HERALD_ENOMEM : 0;
}

/* A decimal number of at most 19 digits followed by one space. */
static int number(const char **p, const char *end, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(*q - '0');
        q++, digits++;
    }
    if (digits == 0 || q >= end || *q != ' ') return -1;
    *out = v;
    *p = q + 1;
    return 0;
}

event_t *wire_parse(const char *channel, size_t channel_len, const char *rec, size_t len)
{
    const char *p = rec, *end = rec + len;
    uint64_t offset, seq, ts, name_len;
    if (number(&p, end, &offset) < 0 || offset == 0 || number(&p, end, &seq) < 0 || number(&p, end, &ts) < 0)
        return NULL;
    if ((size_t)(end - p) < UUID_STR_LEN || p[UUID_STR_LEN - 1] != ' ') return NULL;
    char id[UUID_STR_LEN];
    memcpy(id, p, UUID_STR_LEN - 1);
    id[UUID_STR_LEN - 1] = '\0';
    for (int i = 0; i < UUID_STR_LEN - 1; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f') || id[i] == '-')) return NULL;
    p += UUID_STR_LEN;
    if (number(&p, end, &name_len) < 0 || name_len == 0 || name_len > 255 || name_len >= (uint64_t)(end - p))
        return NULL;
    const char *name = p, *data = p + name_len;
    size_t data_len = (size_t)(end - data);
    event_t *ev = event_create(channel, channel_len, name, (size_t)name_len, data, data_len, offset, ts, id);
    if (ev) ev->seq = seq;
    return ev;
}
