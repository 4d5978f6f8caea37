/* libFuzzer target for the Redis wire records (src/cluster/wire.c) and redis://
 * URLs (src/cluster/redis_io.c).
 *
 * The first byte chooses: even, the rest is an event record as read from a
 * history list or a pub/sub message; odd, it is a redis.url value. A record that
 * parses must give back a well-formed event (offset > 0, a 1-255 byte name, the
 * data being the record's tail), and writing that event's tail again and
 * prefixing its offset and seq must parse to the same fields. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_io.h"
#include "cluster/wire.h"
#include "hub/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *rec = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] % 2 == 1) {
        char *url = strndup(rec, len);
        redis_url_t u;
        char why[256];
        if (url && redis_url_parse(url, &u, why, sizeof why) == 0) {
            assert(u.host && *u.host && u.port >= 1 && u.port <= 65535 && u.db >= 0);
            redis_url_free(&u);
        }
        free(url);
        return 0;
    }
    event_t *ev = wire_parse("ch", 2, rec, len);
    if (!ev) return 0;
    assert(ev->offset > 0 && ev->name_len >= 1 && ev->name_len <= 255);
    buf_t b = {0};
    if (buf_printf(&b, "%llu %llu ", (unsigned long long)ev->offset, (unsigned long long)ev->seq) == 0 &&
        wire_tail(&b, ev->wall_ms, ev->id, ev->name, ev->name_len, ev->data, ev->data_len) == 0) {
        event_t *again = wire_parse("ch", 2, b.data, b.len);
        assert(again);
        assert(again->offset == ev->offset && again->seq == ev->seq && again->wall_ms == ev->wall_ms);
        assert(strcmp(again->id, ev->id) == 0);
        assert(again->name_len == ev->name_len && memcmp(again->name, ev->name, ev->name_len) == 0);
        assert(again->data_len == ev->data_len && memcmp(again->data, ev->data, ev->data_len) == 0);
        event_unref(again);
    }
    buf_free(&b);
    event_unref(ev);
    return 0;
}
