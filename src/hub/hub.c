#include "hub/hub.h"
#include "core/err.h"
#include "core/strmap.h"
#include "hub/event.h"
#include "hub/sequencer.h"

#include <stdlib.h>
#include <string.h>

typedef struct hub_channel {
    strmap_node_t node;
    sub_t **members;
    uint32_t count, cap;
    size_t name_len;
    char name[];
} hub_channel_t;

struct hub {
    strmap_t channels;
    struct sequencer *seq;
};

hub_t *hub_create(struct sequencer *seq)
{
    hub_t *h = calloc(1, sizeof *h);
    if (h) h->seq = seq;
    return h;
}

void hub_destroy(hub_t *h)
{
    if (!h) return;
    size_t b;
    strmap_node_t *n = strmap_first(&h->channels, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&h->channels, n, &b);
        hub_channel_t *ch = (hub_channel_t *)n;
        free(ch->members);
        free(ch);
        n = next;
    }
    strmap_deinit(&h->channels);
    free(h);
}

static sub_t *find_sub(const conn_t *c, const char *channel, size_t len)
{
    for (sub_t *s = c->subs; s; s = s->conn_next)
        if (s->channel->name_len == len && memcmp(s->channel->name, channel, len) == 0) return s;
    return NULL;
}

bool hub_is_subscribed(const hub_t *h, const conn_t *c, const char *channel, size_t len)
{
    (void)h;
    return find_sub(c, channel, len) != NULL;
}

int hub_subscribe(hub_t *h, conn_t *c, const char *channel, size_t len, const seq_since_t *since,
                  seq_snapshot_t *snap)
{
    memset(snap, 0, sizeof *snap);
    sub_t *existing = find_sub(c, channel, len);
    if (existing) {
        snap->latest = sequencer_latest(h->seq, channel, len);
        return HERALD_EEXIST;
    }
    hub_channel_t *ch = (hub_channel_t *)strmap_get(&h->channels, channel, len);
    if (!ch) {
        ch = calloc(1, sizeof *ch + len + 1);
        if (!ch) return HERALD_ENOMEM;
        memcpy(ch->name, channel, len);
        ch->name_len = len;
        ch->node.key = ch->name;
        ch->node.key_len = len;
        if (strmap_insert(&h->channels, &ch->node) < 0) {
            free(ch);
            return HERALD_ENOMEM;
        }
    }
    if (ch->count == ch->cap) {
        uint32_t ncap = ch->cap ? ch->cap * 2 : 4;
        sub_t **m = realloc(ch->members, ncap * sizeof *m);
        if (!m) return HERALD_ENOMEM;
        ch->members = m;
        ch->cap = ncap;
    }
    sub_t *s = malloc(sizeof *s);
    if (!s) return HERALD_ENOMEM;
    /* The snapshot and the registration happen under the sequencer's lock, so every
     * event with a larger offset reaches this worker's inbox after this point. */
    int rc = sequencer_subscribe(h->seq, channel, len, since, snap);
    if (rc < 0) {
        free(s);
        if (ch->count == 0) {
            strmap_remove(&h->channels, &ch->node);
            free(ch->members);
            free(ch);
        }
        return rc;   /* HERALD_ENOMEM, or HERALD_EUNAVAIL (Redis is down) */
    }
    uint64_t off = snap->latest;
    s->conn = c;
    s->channel = ch;
    s->index = ch->count;
    s->after_offset = off;
    s->conn_next = c->subs;
    c->subs = s;
    c->sub_count++;
    ch->members[ch->count++] = s;
    return 0;
}

static void remove_member(hub_t *h, sub_t *s)
{
    hub_channel_t *ch = s->channel;
    sub_t *last = ch->members[--ch->count];
    ch->members[s->index] = last;
    last->index = s->index;
    sequencer_unsubscribe(h->seq, ch->name, ch->name_len);
    if (ch->count == 0) {
        strmap_remove(&h->channels, &ch->node);
        free(ch->members);
        free(ch);
    }
}

int hub_unsubscribe(hub_t *h, conn_t *c, const char *channel, size_t len)
{
    for (sub_t **pp = &c->subs; *pp; pp = &(*pp)->conn_next) {
        sub_t *s = *pp;
        if (s->channel->name_len == len && memcmp(s->channel->name, channel, len) == 0) {
            *pp = s->conn_next;
            c->sub_count--;
            remove_member(h, s);
            free(s);
            return 0;
        }
    }
    return HERALD_ENOTFOUND;
}

void hub_unsubscribe_all(hub_t *h, conn_t *c)
{
    sub_t *s = c->subs;
    while (s) {
        sub_t *next = s->conn_next;
        remove_member(h, s);
        free(s);
        s = next;
    }
    c->subs = NULL;
    c->sub_count = 0;
}

void hub_move(hub_t *h, conn_t *from, conn_t *to)
{
    (void)h;
    while (from->subs) {
        sub_t *s = from->subs;
        from->subs = s->conn_next;
        from->sub_count--;
        if (find_sub(to, s->channel->name, s->channel->name_len)) {   /* already there: drop the copy */
            remove_member(h, s);
            free(s);
            continue;
        }
        s->conn = to;
        s->conn_next = to->subs;
        to->subs = s;
        to->sub_count++;
    }
}

static inline bool deliver(conn_t *c, event_t *ev)
{
    if (c->handler && c->handler->on_event) return c->handler->on_event(c, ev);
    frame_t *f = event_frame(ev, (event_format_t)c->format);
    if (!f) return false;
    return conn_send(c, frame_ref(f), true) == 0;
}

size_t hub_fanout(hub_t *h, event_t *ev)
{
    hub_channel_t *ch = (hub_channel_t *)strmap_get(&h->channels, ev->channel, ev->channel_len);
    if (!ch) return 0;
    size_t n = 0;
    /* A delivery can close a slow consumer, which removes it from members (swapping
     * the last member into its slot): walk from the end so that never skips one. */
    for (uint32_t i = ch->count; i-- > 0;) {
        if (i >= ch->count) continue;
        sub_t *s = ch->members[i];
        if (ev->offset <= s->after_offset) continue;
        s->after_offset = ev->offset;
        bool last = ch->count == 1;
        if (deliver(s->conn, ev)) n++;
        if (last && !strmap_get(&h->channels, ev->channel, ev->channel_len)) break;   /* channel freed */
    }
    return n;
}

size_t hub_fanout_all(conn_t *list, event_t *ev)
{
    size_t n = 0;
    for (conn_t *c = list, *next; c; c = next) {
        next = c->next;
        if (c->in_all && c->state == CONN_OPEN && deliver(c, ev)) n++;
    }
    return n;
}

size_t hub_channel_count(const hub_t *h) { return h->channels.count; }

const char *hub_channel_name(const sub_t *s) { return s->channel->name; }
size_t hub_channel_name_len(const sub_t *s) { return s->channel->name_len; }
