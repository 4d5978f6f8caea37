#include "hub/sequencer.h"
#include "core/err.h"
#include "core/strmap.h"
#include "hub/event.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct seq_channel {
    strmap_node_t node;
    uint64_t offset;         /* latest assigned; 0 before the first event */
    long subscribers;        /* connections on this node */
    size_t name_len;
    char name[];
} seq_channel_t;

struct sequencer {
    pthread_mutex_t lock;
    strmap_t channels;
    long active;             /* channels with subscribers > 0 */
    char epoch[17];
    sequencer_dispatch_fn dispatch;
    void *ctx;
    const config_t *cfg;
};

sequencer_t *sequencer_create(const config_t *cfg, sequencer_dispatch_fn dispatch, void *ctx)
{
    sequencer_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->dispatch = dispatch;
    s->ctx = ctx;
    s->cfg = cfg;
    uint8_t r[8];
    rand_secure(r, sizeof r);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        s->epoch[2 * i] = hex[r[i] >> 4];
        s->epoch[2 * i + 1] = hex[r[i] & 15];
    }
    s->epoch[16] = '\0';
    return s;
}

void sequencer_destroy(sequencer_t *s)
{
    if (!s) return;
    size_t b;
    strmap_node_t *n = strmap_first(&s->channels, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&s->channels, n, &b);
        free(n);
        n = next;
    }
    strmap_deinit(&s->channels);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *sequencer_epoch(const sequencer_t *s) { return s->epoch; }

/* Lock held. */
static seq_channel_t *get_or_create(sequencer_t *s, const char *name, size_t len)
{
    seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, name, len);
    if (ch) return ch;
    ch = calloc(1, sizeof *ch + len + 1);
    if (!ch) return NULL;
    memcpy(ch->name, name, len);
    ch->name_len = len;
    ch->node.key = ch->name;
    ch->node.key_len = len;
    if (strmap_insert(&s->channels, &ch->node) < 0) {
        free(ch);
        return NULL;
    }
    return ch;
}

/* Lock held. A channel with no subscribers and no events carries no state worth
 * keeping. (With events it keeps its offset: offsets never go back.) */
static void maybe_drop(sequencer_t *s, seq_channel_t *ch)
{
    if (ch->subscribers == 0 && ch->offset == 0) {
        strmap_remove(&s->channels, &ch->node);
        free(ch);
    }
}

int sequencer_publish(sequencer_t *s, const char *channel, size_t channel_len, const char *name,
                      size_t name_len, const char *data, size_t data_len, publish_result_t *out)
{
    uint64_t now = time_wall_ms();
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = get_or_create(s, channel, channel_len);
    if (!ch) {
        pthread_mutex_unlock(&s->lock);
        return HERALD_ENOMEM;
    }
    event_t *ev = event_create(channel, channel_len, name, name_len, data, data_len, ch->offset + 1,
                               now, NULL);
    if (!ev) {
        maybe_drop(s, ch);
        pthread_mutex_unlock(&s->lock);
        return HERALD_ENOMEM;
    }
    ch->offset++;
    if (out) {
        out->offset = ev->offset;
        memcpy(out->id, ev->id, UUID_STR_LEN);
        out->duplicate = false;
    }
    s->dispatch(s->ctx, ev);
    pthread_mutex_unlock(&s->lock);
    event_unref(ev);
    return 0;
}

uint64_t sequencer_subscribe(sequencer_t *s, const char *channel, size_t len)
{
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = get_or_create(s, channel, len);
    uint64_t off = 0;
    if (ch) {
        if (ch->subscribers++ == 0) s->active++;
        off = ch->offset;
    }
    pthread_mutex_unlock(&s->lock);
    return off;
}

void sequencer_unsubscribe(sequencer_t *s, const char *channel, size_t len)
{
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, channel, len);
    if (ch && ch->subscribers > 0) {
        if (--ch->subscribers == 0) s->active--;
        maybe_drop(s, ch);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t sequencer_latest(sequencer_t *s, const char *channel, size_t len)
{
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, channel, len);
    uint64_t off = ch ? ch->offset : 0;
    pthread_mutex_unlock(&s->lock);
    return off;
}

long sequencer_active_channels(sequencer_t *s)
{
    pthread_mutex_lock(&s->lock);
    long n = s->active;
    pthread_mutex_unlock(&s->lock);
    return n;
}

typedef struct { const char *name; size_t len; long count; } ranked_t;

static int by_count_desc(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

int sequencer_render_by_channel(sequencer_t *s, size_t limit, buf_t *b)
{
    pthread_mutex_lock(&s->lock);
    ranked_t *r = malloc((s->channels.count + 1) * sizeof *r);
    if (!r) {
        pthread_mutex_unlock(&s->lock);
        return HERALD_ENOMEM;
    }
    size_t n = 0, bucket;
    for (strmap_node_t *it = strmap_first(&s->channels, &bucket); it; it = strmap_next(&s->channels, it, &bucket)) {
        seq_channel_t *ch = (seq_channel_t *)it;
        if (ch->subscribers <= 0 || strcmp(ch->name, "$all") == 0) continue;
        r[n++] = (ranked_t){ch->name, ch->name_len, ch->subscribers};
    }
    qsort(r, n, sizeof *r, by_count_desc);
    int rc = buf_append_str(b, "{");
    for (size_t i = 0; i < n && i < limit; i++) {
        if (i) rc |= buf_append_str(b, ",");
        rc |= buf_append_json_str(b, r[i].name, r[i].len);
        rc |= buf_printf(b, ":%ld", r[i].count);
    }
    rc |= buf_append_str(b, "}");
    pthread_mutex_unlock(&s->lock);
    free(r);
    return rc ? HERALD_ENOMEM : 0;
}
