#include "hub/sequencer.h"
#include "auth/policy.h"
#include "cluster/cluster.h"
#include "core/err.h"
#include "core/strmap.h"
#include "hub/event.h"
#include "log.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* channel (<= 255 bytes), NUL, idempotency key (<= 255 bytes) */
#define HERALD_IDEM_PROBE 512

typedef struct seq_channel {
    strmap_node_t node;
    uint64_t offset;         /* latest assigned; 0 before the first event */
    uint64_t dispatched;     /* latest stored and dispatched: what readers see */
    long subscribers;        /* connections on this node */
    /* history: a ring of the last ring_cap events, oldest at ring_head */
    event_t **ring;
    uint32_t ring_cap, ring_count, ring_head;
    uint32_t ttl_s;
    /* cluster mode (redis.url): this node's copy of a channel Redis orders */
    uint8_t state;           /* CH_LIVE, CH_COLD (first read pending), CH_CATCHING_UP (a gap) */
    uint32_t sync_gen;       /* counts failed reads: waiters give up when it moves */
    uint64_t used_ms;        /* last subscribe or read: kept in Redis a while after */
    event_t **held;          /* events that arrived while reading, applied after it */
    uint32_t held_count, held_cap;
    size_t name_len;
    char name[];
} seq_channel_t;

enum { CH_LIVE = 0, CH_COLD, CH_CATCHING_UP };

#define CLUSTER_WAIT_MS 2000         /* a subscriber waits this long for a channel's first read */
#define CLUSTER_LINGER_MS 5000       /* a channel nobody here subscribes to leaves Redis after this */
#define CLUSTER_HELD_MAX 100000      /* beyond this a syncing channel relies on the read alone */

/* Retired epoch strings: readers may still hold them, so they live until the end. */
typedef struct old_epoch {
    struct old_epoch *next;
    char s[];
} old_epoch_t;

/* An idempotency key seen recently. Keys expire in insertion order (one TTL for
 * all), so a FIFO list is the expiry queue. */
typedef struct idem_entry {
    strmap_node_t node;       /* key: channel NUL idempotency key */
    struct idem_entry *fifo_next;
    bool in_map;              /* false once forgotten (its write failed); freed at expiry */
    uint64_t expires_ms;
    uint64_t offset;
    char id[UUID_STR_LEN];
    char key[];
} idem_entry_t;

/* A durable publish waiting for its commit. */
typedef struct pending {
    publish_done_fn done;
    void *arg;
} pending_t;

struct sequencer {
    pthread_mutex_t lock;
    store_t *store;          /* NULL: history in memory only */
    strmap_t channels;
    long active;             /* channels with subscribers > 0 */
    strmap_t idem;
    idem_entry_t *idem_head, *idem_tail;
    char epoch[33];
    size_t sweep_bucket;     /* where the next sweep continues */
    uint64_t seq;            /* the last event made visible, node-wide */
    sequencer_dispatch_fn dispatch;
    void *ctx;
    const config_t *cfg;
    /* cluster mode */
    bool clustered;          /* redis.url is set: Redis orders and stores events */
    cluster_t *cluster;
    pthread_cond_t synced;   /* a channel's first read completed or failed */
    _Atomic(const char *) epoch_now;   /* the cluster's epoch (s->epoch until known) */
    old_epoch_t *old_epochs;
};

/* ---- idempotency keys ---- */

/* Lock held. Forgets keys past their TTL. */
static void idem_expire(sequencer_t *s, uint64_t now_ms)
{
    while (s->idem_head && s->idem_head->expires_ms <= now_ms) {
        idem_entry_t *e = s->idem_head;
        s->idem_head = e->fifo_next;
        if (!s->idem_head) s->idem_tail = NULL;
        if (e->in_map) strmap_remove(&s->idem, &e->node);
        free(e);
    }
}

static idem_entry_t *idem_new(const char *channel, size_t clen, const char *key, size_t klen)
{
    idem_entry_t *e = calloc(1, sizeof *e + clen + klen + 2);
    if (!e) return NULL;
    memcpy(e->key, channel, clen);
    memcpy(e->key + clen + 1, key, klen);
    e->node.key = e->key;
    e->node.key_len = clen + 1 + klen;
    return e;
}

/* Lock held. Takes e (registered, or freed when it cannot be). */
static void idem_add(sequencer_t *s, idem_entry_t *e)
{
    if (strmap_insert(&s->idem, &e->node) < 0) {
        free(e);
        return;
    }
    e->in_map = true;
    if (s->idem_tail) s->idem_tail->fifo_next = e;
    else s->idem_head = e;
    s->idem_tail = e;
}

static void load_idem(void *arg, const char *channel, const char *key, uint64_t offset, const char *id,
                      uint64_t expires_ms)
{
    sequencer_t *s = arg;
    idem_entry_t *e = idem_new(channel, strlen(channel), key, strlen(key));
    if (!e) return;
    e->offset = offset;
    e->expires_ms = expires_ms;
    snprintf(e->id, sizeof e->id, "%s", id);
    idem_add(s, e);
}

/* ---- the durable store ---- */

static uint32_t max_ttl(const config_t *cfg)
{
    uint32_t t = cfg->history.ttl_s;
    for (size_t i = 0; i < cfg->channel_rule_count; i++)
        if (cfg->channels[i].history_ttl_s > t) t = cfg->channels[i].history_ttl_s;
    return t;
}

typedef struct loader {
    seq_channel_t *ch;
    int rc;
} loader_t;

static int store_in_ring(seq_channel_t *ch, event_t *ev);

static void load_event(void *arg, uint64_t offset, const char *id, const char *name, const char *data, uint64_t ts)
{
    loader_t *l = arg;
    event_t *ev = event_create(l->ch->name, l->ch->name_len, name, strlen(name), data, strlen(data), offset, ts, id);
    if (!ev || store_in_ring(l->ch, ev) < 0) l->rc = HERALD_ENOMEM;
    event_unref(ev);
}

/* Lock held. A channel met for the first time continues where the store left it. */
static int load_channel(sequencer_t *s, seq_channel_t *ch)
{
    if (store_channel_offset(s->store, ch->name, ch->name_len, &ch->offset) < 0) return HERALD_EIO;
    ch->dispatched = ch->offset;
    if (ch->offset == 0 || ch->ring_cap == 0) return 0;
    uint64_t min_ts = time_wall_ms() - (uint64_t)ch->ttl_s * 1000;
    loader_t l = {ch, 0};
    if (store_load_events(s->store, ch->name, ch->name_len, 0, min_ts, ch->ring_cap, load_event, &l) < 0)
        return HERALD_EIO;
    return l.rc;
}

/* Lock held. The key registered for an event whose write failed: a retry must
 * publish again. Looked up by name (the entry may have expired meanwhile). */
static void idem_forget(sequencer_t *s, const event_t *ev, const char *key)
{
    char probe[HERALD_IDEM_PROBE];
    size_t klen = strlen(key);
    if (ev->channel_len + 1 + klen > sizeof probe) return;
    memcpy(probe, ev->channel, ev->channel_len);
    probe[ev->channel_len] = '\0';
    memcpy(probe + ev->channel_len + 1, key, klen);
    idem_entry_t *e = (idem_entry_t *)strmap_get(&s->idem, probe, ev->channel_len + 1 + klen);
    if (e && e->offset == ev->offset) {
        strmap_remove(&s->idem, &e->node);
        e->in_map = false;   /* freed when it reaches the front of the expiry queue */
    }
}

/* Lock held. Makes a committed event visible: history, then every worker. */
static void make_visible(sequencer_t *s, seq_channel_t *ch, event_t *ev)
{
    if (s->clustered) {   /* Redis numbered it: the order is the cluster's */
        if (ev->seq > s->seq) s->seq = ev->seq;
    } else {
        ev->seq = ++s->seq;   /* before any worker sees it: frames that carry it are encoded later */
    }
    if (store_in_ring(ch, ev) < 0)
        log_msg(LOG_WARN, "out of memory: event not kept in history", "channel", ch->name, NULL);
    ch->dispatched = ev->offset;
    s->dispatch(s->ctx, ev);
}

/* The store's thread: a batch is on disk (or failed). Events become visible in
 * offset order under the lock; then each publisher learns its result. */
static void on_committed(void *arg, int status, store_item_t *items, size_t n)
{
    sequencer_t *s = arg;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        event_t *ev = items[i].ev;
        seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, ev->channel, ev->channel_len);
        if (status == 0 && ch) {
            make_visible(s, ch, ev);
        } else if (ch && ch->dispatched < ev->offset) {
            /* lost: later events of the channel may still be visible; skip the gap */
            ch->dispatched = ev->offset;
        }
        if (status < 0 && items[i].idem_key) idem_forget(s, ev, items[i].idem_key);
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        pending_t *p = items[i].ctx;
        publish_result_t r = {.offset = items[i].ev->offset};
        memcpy(r.id, items[i].ev->id, UUID_STR_LEN);
        p->done(p->arg, status, &r);
        free(p);
        free(items[i].idem_key);
        event_unref(items[i].ev);
    }
}

/* ---- lifecycle ---- */

sequencer_t *sequencer_create(const config_t *cfg, sequencer_dispatch_fn dispatch, void *ctx)
{
    sequencer_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->dispatch = dispatch;
    s->ctx = ctx;
    s->cfg = cfg;
    atomic_init(&s->epoch_now, s->epoch);
    s->clustered = cfg->redis.url != NULL;
    if (s->clustered) {   /* history lives in Redis; the epoch comes from it */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->synced, &ca);
        pthread_condattr_destroy(&ca);
        return s;
    }
    if (cfg->history.durable) {
        s->store = store_open(cfg->data_dir, cfg->history.fsync, max_ttl(cfg), on_committed, s);
        if (!s->store) {
            sequencer_destroy(s);
            return NULL;
        }
        snprintf(s->epoch, sizeof s->epoch, "%s", store_epoch(s->store));
        store_load_idempotency(s->store, time_wall_ms(), load_idem, s);
        return s;
    }
    /* memory only: history ends with the process, and the epoch says so */
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

void sequencer_flush(sequencer_t *s)
{
    if (!s || !s->store) return;
    store_close(s->store);   /* commits and dispatches what is queued */
    s->store = NULL;
}

static void channel_free(seq_channel_t *ch)
{
    for (uint32_t i = 0; i < ch->held_count; i++) event_unref(ch->held[i]);
    free(ch->held);
    for (uint32_t i = 0; i < ch->ring_count; i++) event_unref(ch->ring[(ch->ring_head + i) % ch->ring_cap]);
    free(ch->ring);
    free(ch);
}

void sequencer_destroy(sequencer_t *s)
{
    if (!s) return;
    sequencer_flush(s);
    size_t b;
    strmap_node_t *n = strmap_first(&s->channels, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&s->channels, n, &b);
        channel_free((seq_channel_t *)n);
        n = next;
    }
    strmap_deinit(&s->channels);
    while (s->idem_head) {
        idem_entry_t *e = s->idem_head;
        s->idem_head = e->fifo_next;
        free(e);
    }
    strmap_deinit(&s->idem);
    while (s->old_epochs) {
        old_epoch_t *o = s->old_epochs;
        s->old_epochs = o->next;
        free(o);
    }
    if (s->clustered) pthread_cond_destroy(&s->synced);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *sequencer_epoch(const sequencer_t *s)
{
    return atomic_load(&((sequencer_t *)s)->epoch_now);
}

void seq_snapshot_release(seq_snapshot_t *snap)
{
    for (size_t i = 0; i < snap->event_count; i++) event_unref(snap->events[i]);
    free(snap->events);
    snap->events = NULL;
    snap->event_count = 0;
}

/* ---- channels and their history ---- */

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
    const channel_rule_t *rule = policy_find_rule_any_user(s->cfg, name, len);
    ch->ring_cap = rule ? rule->history_size : s->cfg->history.size;
    ch->ttl_s = rule ? rule->history_ttl_s : s->cfg->history.ttl_s;
    if (s->clustered) {
        /* Redis has the channel's offset and history: subscribe there and read them */
        ch->state = CH_COLD;
        ch->used_ms = time_mono_ms();
        if (!s->cluster || strmap_insert(&s->channels, &ch->node) < 0) {
            channel_free(ch);
            return NULL;
        }
        if (cluster_want(s->cluster, name, len, true, 0) < 0) {
            strmap_remove(&s->channels, &ch->node);
            channel_free(ch);
            return NULL;
        }
        return ch;
    }
    if ((s->store && load_channel(s, ch) < 0) || strmap_insert(&s->channels, &ch->node) < 0) {
        channel_free(ch);
        return NULL;
    }
    return ch;
}

/* Lock held, cluster mode. The channel, once this node holds Redis's state of it:
 * a channel met for the first time waits for its first read (the lock is released
 * meanwhile), at most CLUSTER_WAIT_MS. NULL when Redis cannot be reached. */
static seq_channel_t *cluster_acquire(sequencer_t *s, const char *name, size_t len)
{
    bool existed = strmap_get(&s->channels, name, len) != NULL;
    seq_channel_t *ch = get_or_create(s, name, len);   /* a new one asks Redis at once */
    if (!ch) return NULL;
    ch->used_ms = time_mono_ms();
    if (ch->state != CH_COLD) return ch;
    if (!cluster_is_up(s->cluster, NULL, 0)) return NULL;
    /* an earlier read may have failed: ask again (a read more is harmless) */
    if (existed && cluster_want(s->cluster, name, len, true, 0) < 0) return NULL;
    uint32_t gen = ch->sync_gen;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CLUSTER_WAIT_MS / 1000;
    until.tv_nsec += (long)(CLUSTER_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    /* ch stays meanwhile: the sweep lets a channel go only after CLUSTER_LINGER_MS unused */
    while (ch->state == CH_COLD && ch->sync_gen == gen)
        if (pthread_cond_timedwait(&s->synced, &s->lock, &until) == ETIMEDOUT) break;
    return ch->state == CH_COLD ? NULL : ch;
}

/* Lock held. A channel to read: one this node has not met yet may have a stored
 * past, loaded now (the caller drops it again with maybe_drop if it stays idle). */
static seq_channel_t *find_for_read(sequencer_t *s, const char *name, size_t len)
{
    if (s->clustered) return cluster_acquire(s, name, len);
    return s->store ? get_or_create(s, name, len) : (seq_channel_t *)strmap_get(&s->channels, name, len);
}

/* Lock held. A channel with no subscribers and no events carries no state worth
 * keeping. (With events it keeps its offset: offsets never go back.) */
static void maybe_drop(sequencer_t *s, seq_channel_t *ch)
{
    if (s->clustered) return;   /* the sweep lets it go after CLUSTER_LINGER_MS */
    if (ch->subscribers == 0 && ch->offset == 0) {
        strmap_remove(&s->channels, &ch->node);
        channel_free(ch);
    }
}

/* Lock held. Drops events older than the channel's TTL from the front. */
static void expire(seq_channel_t *ch, uint64_t now_ms)
{
    uint64_t ttl_ms = (uint64_t)ch->ttl_s * 1000;
    while (ch->ring_count > 0) {
        event_t *e = ch->ring[ch->ring_head];
        if (e->wall_ms + ttl_ms > now_ms) break;
        event_unref(e);
        ch->ring_head = (ch->ring_head + 1) % ch->ring_cap;
        ch->ring_count--;
    }
}

/* Lock held. Takes a reference to ev. */
static int store_in_ring(seq_channel_t *ch, event_t *ev)
{
    if (ch->ring_cap == 0) return 0;
    if (!ch->ring) {
        ch->ring = calloc(ch->ring_cap, sizeof *ch->ring);
        if (!ch->ring) return HERALD_ENOMEM;
    }
    if (ch->ring_count == ch->ring_cap) {
        event_unref(ch->ring[ch->ring_head]);
        ch->ring_head = (ch->ring_head + 1) % ch->ring_cap;
        ch->ring_count--;
    }
    ch->ring[(ch->ring_head + ch->ring_count) % ch->ring_cap] = event_ref(ev);
    ch->ring_count++;
    expire(ch, time_wall_ms());
    return 0;
}

/* Lock held. Copies references to the stored events with offset > after, at most
 * limit of them (the first ones, or the last ones when `last`). */
static int collect(seq_channel_t *ch, uint64_t after, size_t limit, bool last, seq_snapshot_t *snap)
{
    uint32_t first = 0;
    while (first < ch->ring_count && ch->ring[(ch->ring_head + first) % ch->ring_cap]->offset <= after) first++;
    size_t n = ch->ring_count - first;
    if (n > limit) {
        if (last) first += (uint32_t)(n - limit);
        n = limit;
    }
    if (n == 0) return 0;
    snap->events = malloc(n * sizeof *snap->events);
    if (!snap->events) return HERALD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        snap->events[i] = event_ref(ch->ring[(ch->ring_head + first + i) % ch->ring_cap]);
    snap->event_count = n;
    return 0;
}

/* ---- publishing ---- */

/* Lock held. A repeated idempotency key: the first publish's result. */
static bool idem_seen(sequencer_t *s, idem_entry_t *probe, uint64_t now, publish_result_t *out)
{
    idem_expire(s, now);
    idem_entry_t *seen = (idem_entry_t *)strmap_get(&s->idem, probe->node.key, probe->node.key_len);
    if (!seen) return false;
    out->offset = seen->offset;
    memcpy(out->id, seen->id, UUID_STR_LEN);
    out->duplicate = true;
    return true;
}

/* Cluster mode: Redis answered a publish. */
static void on_cluster_published(void *arg, int status, uint64_t offset, const char *id, bool duplicate)
{
    pending_t *p = arg;
    publish_result_t r = {.offset = offset, .duplicate = duplicate};
    snprintf(r.id, sizeof r.id, "%s", id);
    p->done(p->arg, status, &r);
    free(p);
}

/* Cluster mode: the script in Redis assigns the offset, keeps the history and the
 * idempotency key, and announces the event to every node (this one included). */
static int cluster_publish_one(sequencer_t *s, const char *channel, size_t channel_len, const char *name,
                               size_t name_len, const char *data, size_t data_len, const char *idem_key,
                               size_t idem_len, publish_done_fn done, void *arg)
{
    const channel_rule_t *rule = policy_find_rule_any_user(s->cfg, channel, channel_len);
    uint32_t keep = rule ? rule->history_size : s->cfg->history.size;
    uint32_t ttl = rule ? rule->history_ttl_s : s->cfg->history.ttl_s;
    pending_t *p = calloc(1, sizeof *p);
    if (!p) return HERALD_ENOMEM;
    p->done = done;
    p->arg = arg;
    int rc = s->cluster ? cluster_publish(s->cluster, channel, channel_len, name, name_len, data, data_len, idem_key,
                                          idem_len, keep, ttl, s->cfg->history.idempotency_ttl_s,
                                          on_cluster_published, p)
                        : HERALD_EUNAVAIL;
    if (rc < 0) {
        free(p);
        return rc;
    }
    return SEQUENCER_PENDING;
}

int sequencer_publish(sequencer_t *s, const char *channel, size_t channel_len, const char *name,
                      size_t name_len, const char *data, size_t data_len, const char *idem_key,
                      size_t idem_len, publish_done_fn done, void *arg, publish_result_t *out)
{
    if (s->clustered)
        return cluster_publish_one(s, channel, channel_len, name, name_len, data, data_len, idem_key, idem_len, done,
                                   arg);
    uint64_t now = time_wall_ms();
    idem_entry_t *fresh = idem_key ? idem_new(channel, channel_len, idem_key, idem_len) : NULL;
    pending_t *p = s->store ? calloc(1, sizeof *p) : NULL;
    char *key_copy = s->store && idem_key ? strndup(idem_key, idem_len) : NULL;
    if ((idem_key && !fresh) || (s->store && !p) || (s->store && idem_key && !key_copy)) {
        free(fresh), free(p), free(key_copy);
        return HERALD_ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    if (fresh && idem_seen(s, fresh, now, out)) {
        pthread_mutex_unlock(&s->lock);
        free(fresh), free(p), free(key_copy);
        return 0;
    }
    seq_channel_t *ch = get_or_create(s, channel, channel_len);
    event_t *ev = ch ? event_create(channel, channel_len, name, name_len, data, data_len, ch->offset + 1, now, NULL)
                     : NULL;
    if (!ev) {
        if (ch) maybe_drop(s, ch);
        pthread_mutex_unlock(&s->lock);
        free(fresh), free(p), free(key_copy);
        return ch ? HERALD_ENOMEM : HERALD_EUNAVAIL;
    }
    ch->offset++;
    out->offset = ev->offset;
    memcpy(out->id, ev->id, UUID_STR_LEN);
    out->duplicate = false;
    if (fresh) {
        fresh->offset = ev->offset;
        memcpy(fresh->id, ev->id, UUID_STR_LEN);
        fresh->expires_ms = now + (uint64_t)s->cfg->history.idempotency_ttl_s * 1000;
    }
    if (s->store) {
        /* Appended under the lock: the store commits, and the sequencer makes
         * visible, in offset order. The key is registered now so a retry racing
         * the commit is already a duplicate. */
        p->done = done;
        p->arg = arg;
        store_item_t item = {.ev = ev, .idem_key = key_copy, .idem_expires_ms = fresh ? fresh->expires_ms : 0,
                             .keep = ch->ring_cap, .ctx = p};
        if (store_append(s->store, &item) < 0) {
            ch->offset--;
            pthread_mutex_unlock(&s->lock);
            event_unref(ev);
            free(fresh), free(p), free(key_copy);
            return HERALD_ENOMEM;
        }
        if (fresh) idem_add(s, fresh);
        pthread_mutex_unlock(&s->lock);
        return SEQUENCER_PENDING;
    }
    if (fresh) idem_add(s, fresh);
    make_visible(s, ch, ev);
    pthread_mutex_unlock(&s->lock);
    event_unref(ev);
    return 0;
}

int sequencer_subscribe(sequencer_t *s, const char *channel, size_t len, const seq_since_t *since,
                        seq_snapshot_t *snap)
{
    memset(snap, 0, sizeof *snap);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = s->clustered ? cluster_acquire(s, channel, len) : get_or_create(s, channel, len);
    if (!ch) {
        pthread_mutex_unlock(&s->lock);
        return s->clustered ? HERALD_EUNAVAIL : HERALD_ENOMEM;
    }
    if (ch->subscribers++ == 0) s->active++;
    snap->latest = ch->dispatched;
    if (since) {
        expire(ch, time_wall_ms());
        bool same_epoch = !since->epoch || strcmp(since->epoch, sequencer_epoch(s)) == 0;
        /* history reaches back when the first event after `since` is still stored */
        uint64_t oldest = ch->ring_count ? ch->ring[ch->ring_head]->offset : ch->dispatched + 1;
        snap->recovered = same_epoch && since->offset <= ch->dispatched && since->offset + 1 >= oldest;
        if (snap->recovered) rc = collect(ch, since->offset, SIZE_MAX, false, snap);
    }
    if (rc < 0 && --ch->subscribers == 0) {   /* undo: the caller does not subscribe */
        s->active--;
        maybe_drop(s, ch);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
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
    seq_channel_t *ch = find_for_read(s, channel, len);
    uint64_t off = ch ? ch->dispatched : 0;
    if (ch) maybe_drop(s, ch);
    pthread_mutex_unlock(&s->lock);
    return off;
}

int sequencer_history(sequencer_t *s, const char *channel, size_t len, bool has_since, uint64_t since,
                      size_t limit, seq_snapshot_t *snap)
{
    memset(snap, 0, sizeof *snap);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = find_for_read(s, channel, len);
    if (ch) {
        expire(ch, time_wall_ms());
        snap->latest = ch->dispatched;
        rc = collect(ch, has_since ? since : 0, limit, !has_since, snap);
        maybe_drop(s, ch);
    } else if (s->clustered) {
        rc = HERALD_EUNAVAIL;   /* Redis holds it and cannot be asked */
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool sequencer_since_seq(sequencer_t *s, const char *channel, size_t len, uint64_t seq, uint64_t *since)
{
    bool known = false;
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = find_for_read(s, channel, len);
    if (ch) {
        expire(ch, time_wall_ms());
        if (ch->ring_count == 0) {
            /* nothing stored: whole only if nothing happened after seq */
            known = seq >= s->seq || ch->dispatched == 0;
            *since = ch->dispatched;
        } else {
            uint32_t i = 0;
            while (i < ch->ring_count && ch->ring[(ch->ring_head + i) % ch->ring_cap]->seq <= seq) i++;
            event_t *first = ch->ring[ch->ring_head];
            if (i > 0) {   /* the client saw up to the i-th stored event */
                *since = ch->ring[(ch->ring_head + i - 1) % ch->ring_cap]->offset;
                known = true;
            } else if (first->offset == 1) {   /* all of the channel is stored: it saw none */
                *since = 0;
                known = true;
            }
        }
        maybe_drop(s, ch);
    }
    pthread_mutex_unlock(&s->lock);
    return known;
}

void sequencer_sweep(sequencer_t *s, size_t buckets)
{
    uint64_t now = time_wall_ms(), mono = time_mono_ms();
    pthread_mutex_lock(&s->lock);
    for (size_t n = 0; n < buckets && s->channels.bucket_count; n++) {
        size_t b = s->sweep_bucket++ % s->channels.bucket_count;
        strmap_node_t *it = s->channels.buckets[b];
        while (it) {
            strmap_node_t *next = it->next;
            seq_channel_t *ch = (seq_channel_t *)it;
            expire(ch, now);
            if (s->clustered) {
                /* nobody here listens lately: leave the channel in Redis too */
                if (ch->subscribers == 0 && ch->name_len && strcmp(ch->name, "$all") != 0 &&
                    mono - ch->used_ms >= CLUSTER_LINGER_MS && cluster_want(s->cluster, ch->name, ch->name_len, false, 0) == 0) {
                    strmap_remove(&s->channels, &ch->node);
                    channel_free(ch);
                } else if (ch->ring_count == 0 && ch->ring) {
                    free(ch->ring);
                    ch->ring = NULL;
                    ch->ring_head = 0;
                }
            } else if (ch->subscribers == 0 && ch->ring_count == 0 && s->store && ch->dispatched == ch->offset) {
                strmap_remove(&s->channels, &ch->node);
                channel_free(ch);
            } else if (ch->ring_count == 0 && ch->ring) {
                free(ch->ring);   /* an idle channel keeps its offset, not its ring */
                ch->ring = NULL;
                ch->ring_head = 0;
            }
            it = next;
        }
    }
    pthread_mutex_unlock(&s->lock);
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

/* ---- cluster mode: what the Redis engine learns ---- */

int sequencer_attach_cluster(sequencer_t *s, cluster_t *cluster)
{
    pthread_mutex_lock(&s->lock);
    s->cluster = cluster;
    /* every node delivers $all, subscribed or not */
    seq_channel_t *all = get_or_create(s, "$all", 4);
    pthread_mutex_unlock(&s->lock);
    return all ? 0 : HERALD_ENOMEM;
}

/* Lock held. Keeps ev to apply once the channel's read completes. */
static void hold(seq_channel_t *ch, event_t *ev)
{
    if (ch->held_count == ch->held_cap) {
        if (ch->held_cap >= CLUSTER_HELD_MAX) return;   /* the read will bring it */
        uint32_t ncap = ch->held_cap ? ch->held_cap * 2 : 8;
        event_t **n = realloc(ch->held, ncap * sizeof *n);
        if (!n) return;
        ch->held = n;
        ch->held_cap = ncap;
    }
    ch->held[ch->held_count++] = event_ref(ev);
}

/* Lock held. Makes ev visible if it is the channel's next event. A later one
 * means events were missed: the channel catches up from Redis's history. */
static void cluster_apply(sequencer_t *s, seq_channel_t *ch, event_t *ev, bool own)
{
    if (ev->offset <= ch->dispatched) return;   /* seen: the publish answer and its pub/sub copy */
    if (ev->offset == ch->dispatched + 1) {
        ch->offset = ev->offset;
        make_visible(s, ch, ev);
        return;
    }
    if (own) return;   /* this node's answer overtook pub/sub: the copies in between are coming */
    ch->state = CH_CATCHING_UP;
    hold(ch, ev);
    if (cluster_want(s->cluster, ch->name, ch->name_len, true, ch->dispatched) < 0)
        log_msg(LOG_WARN, "cannot ask redis for a channel's history", "channel", ch->name, NULL);
}

void sequencer_cluster_event(sequencer_t *s, event_t *ev, bool own)
{
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, ev->channel, ev->channel_len);
    if (ch) {
        if (ch->state == CH_LIVE) cluster_apply(s, ch, ev, own);
        else hold(ch, ev);
    }
    pthread_mutex_unlock(&s->lock);
}

void sequencer_cluster_synced(sequencer_t *s, const char *channel, size_t len, int status, uint64_t offset,
                              event_t **events, size_t count)
{
    pthread_mutex_lock(&s->lock);
    seq_channel_t *ch = (seq_channel_t *)strmap_get(&s->channels, channel, len);
    if (ch && status < 0) {
        if (ch->state == CH_COLD) {   /* waiting subscribers give up */
            ch->sync_gen++;
            pthread_cond_broadcast(&s->synced);
        }
    } else if (ch) {
        uint64_t now = time_wall_ms();
        uint64_t ttl_ms = (uint64_t)ch->ttl_s * 1000;
        if (ch->state == CH_COLD) {
            /* first read: the history is the past, nobody here has seen any of it */
            for (size_t i = 0; i < count; i++) {
                if (events[i]->offset <= offset && events[i]->wall_ms + ttl_ms > now) store_in_ring(ch, events[i]);
                if (events[i]->seq > s->seq) s->seq = events[i]->seq;
            }
            ch->offset = ch->dispatched = offset;
        } else {
            /* a resync: what this node missed, in order */
            for (size_t i = 0; i < count; i++) {
                if (events[i]->offset <= ch->dispatched || events[i]->offset > offset) continue;
                if (events[i]->offset != ch->dispatched + 1)
                    log_msg(LOG_WARN, "events lost: redis history did not reach back far enough", "channel",
                            ch->name, NULL);
                ch->offset = events[i]->offset;
                make_visible(s, ch, events[i]);
            }
            if (offset > ch->dispatched) {
                log_msg(LOG_WARN, "events lost: redis history did not reach back far enough", "channel", ch->name,
                        NULL);
                ch->offset = ch->dispatched = offset;
            }
        }
        /* then what arrived meanwhile, in order */
        ch->state = CH_LIVE;
        for (uint32_t i = 0; i < ch->held_count; i++) {
            event_t *ev = ch->held[i];
            if (ch->state == CH_LIVE) {
                if (ev->offset > ch->dispatched + 1) ch->dispatched = ch->offset = ev->offset - 1;   /* cannot be filled */
                cluster_apply(s, ch, ev, false);
            }
            event_unref(ev);
        }
        ch->held_count = 0;
        pthread_cond_broadcast(&s->synced);
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < count; i++) event_unref(events[i]);
}

bool sequencer_cluster_link(sequencer_t *s, bool up, const char *epoch)
{
    if (!up) return false;
    bool changed = false;
    pthread_mutex_lock(&s->lock);
    const char *cur = atomic_load(&s->epoch_now);
    if (strcmp(cur, epoch) != 0) {
        size_t n = strlen(epoch);
        old_epoch_t *o = malloc(sizeof *o + n + 1);
        if (o) {
            memcpy(o->s, epoch, n + 1);
            o->next = s->old_epochs;
            s->old_epochs = o;
            changed = cur[0] != '\0';   /* not the first: Redis lost what it had */
            atomic_store(&s->epoch_now, o->s);
        }
    }
    if (changed) {
        /* offsets start again: forget this node's copy of every channel */
        size_t b;
        for (strmap_node_t *it = strmap_first(&s->channels, &b); it; it = strmap_next(&s->channels, it, &b)) {
            seq_channel_t *ch = (seq_channel_t *)it;
            for (uint32_t i = 0; i < ch->ring_count; i++) event_unref(ch->ring[(ch->ring_head + i) % ch->ring_cap]);
            ch->ring_count = ch->ring_head = 0;
            ch->offset = ch->dispatched = 0;
            ch->state = CH_CATCHING_UP;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return changed;
}
