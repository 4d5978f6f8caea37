/* sequencer: the node's one ordering point. For every channel it keeps the latest
 * offset, the recent events (history, per the channel's rule: `size` events for
 * `ttl_s` seconds), and how many connections on this node subscribe; publishing
 * assigns the next offset, stores the event and dispatches it to every worker, all
 * under one lock, so each worker's inbox receives a channel's events in offset
 * order, and a subscriber's snapshot (offset + missed events) is exact.
 *
 * Also: idempotency keys (a repeated key within history.idempotency_ttl_s returns
 * the first publish's result and delivers nothing).
 *
 * With the durable store (history.durable), an event is written to it before it is
 * dispatched or acknowledged, and a channel met for the first time gets its offset
 * and recent events from it. A channel's `dispatched` offset (what subscribers and
 * history can see) then trails its assigned offset by the events being committed.
 *
 * Owns: the channel table, the stored events (references), the idempotency table.
 * Thread-safe: any thread; the dispatch callback runs with the lock held and must
 * not call back into the sequencer. */
#ifndef HERALD_SEQUENCER_H
#define HERALD_SEQUENCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core/util.h"

struct event;
struct cluster;

typedef void (*sequencer_dispatch_fn)(void *ctx, struct event *ev);

typedef struct sequencer sequencer_t;

/* Opens the durable store when history.durable is set (NULL and logged on failure). */
sequencer_t *sequencer_create(const config_t *cfg, sequencer_dispatch_fn dispatch, void *ctx);
/* Writes and dispatches everything still queued for the store, then closes it:
 * call once the workers no longer publish, while they can still take events. */
void sequencer_flush(sequencer_t *s);
void sequencer_destroy(sequencer_t *s);

/* The node's epoch (a random string chosen at start). Borrowed, lives as long as s. */
const char *sequencer_epoch(const sequencer_t *s);

typedef struct publish_result {
    uint64_t offset;
    char id[UUID_STR_LEN];
    bool duplicate;          /* the idempotency key was seen: nothing was published */
} publish_result_t;

/* Called once a durable publish is committed (status 0) or failed (status < 0),
 * on the store's thread: hand the result back to the caller's worker from there. */
typedef void (*publish_done_fn)(void *arg, int status, const publish_result_t *r);

#define SEQUENCER_PENDING 1

/* Sequences one event (data is compact JSON text; idem_key may be NULL). Without
 * the durable store it is stored in memory and dispatched at once: returns 0 with
 * *out filled (also for a duplicate idempotency key). With the store it returns
 * SEQUENCER_PENDING, and once the event is committed it is stored, dispatched and
 * done(arg, ...) is called. Negative: an error, done is not called. */
int sequencer_publish(sequencer_t *s, const char *channel, size_t channel_len, const char *name,
                      size_t name_len, const char *data, size_t data_len, const char *idem_key,
                      size_t idem_len, publish_done_fn done, void *arg, publish_result_t *out);

/* Where a client says it was: recover the events after `offset`. */
typedef struct seq_since {
    uint64_t offset;
    const char *epoch;       /* NULL: the client did not say */
} seq_since_t;

/* A consistent view of a channel: its latest offset and, when asked, stored events
 * (references the caller releases with seq_snapshot_release). */
typedef struct seq_snapshot {
    uint64_t latest;
    bool recovered;          /* subscribe with since: every missed event is in events */
    struct event **events;   /* in offset order */
    size_t event_count;
} seq_snapshot_t;

void seq_snapshot_release(seq_snapshot_t *snap);

/* Registers one more local subscriber and fills snap->latest. With since, also the
 * stored events after since->offset when history reaches back (recovered), else
 * none (recovered false). Returns 0 or HERALD_ENOMEM. */
int sequencer_subscribe(sequencer_t *s, const char *channel, size_t len, const seq_since_t *since,
                        seq_snapshot_t *snap);
void sequencer_unsubscribe(sequencer_t *s, const char *channel, size_t len);
uint64_t sequencer_latest(sequencer_t *s, const char *channel, size_t len);

/* Stored events of a channel: with has_since, the first `limit` after `since`;
 * otherwise the last `limit`. */
int sequencer_history(sequencer_t *s, const char *channel, size_t len, bool has_since, uint64_t since,
                      size_t limit, seq_snapshot_t *snap);

/* Socket.IO recovery: the channel offset a client had reached when the last event
 * it received (of any channel) was the one made visible as number `seq`. False
 * when history cannot tell (it no longer reaches back that far). */
bool sequencer_since_seq(sequencer_t *s, const char *channel, size_t len, uint64_t seq, uint64_t *since);

/* Housekeeping, a few buckets of the channel table per call: drops expired
 * events, frees empty rings, and forgets channels nobody subscribes to whose state
 * is all in the store. Bounds memory to live channels and events within TTL. */
void sequencer_sweep(sequencer_t *s, size_t buckets);

/* Channels with at least one subscriber on this node. */
long sequencer_active_channels(sequencer_t *s);

/* Appends {"name":count,...} of the `limit` channels with most subscribers
 * (ties by name), excluding $all, to b. */
int sequencer_render_by_channel(sequencer_t *s, size_t limit, buf_t *b);

/* ---- cluster mode (redis.url set) ----
 * Redis orders and stores every channel's events; this node keeps a copy of the
 * channels its clients use (offset, recent events), read from Redis when first
 * used and kept current by the events Redis announces. Publishing returns
 * SEQUENCER_PENDING and completes when Redis answered. A channel first met
 * blocks its first subscriber or reader (on its worker thread) until its read
 * arrives, at most 2 s; HERALD_EUNAVAIL when Redis is down. Channels nobody on
 * this node used for 5 s are let go by the sweep (and unsubscribed in Redis). */

/* Before the workers start. */
int sequencer_attach_cluster(sequencer_t *s, struct cluster *cluster);
/* The cluster engine's hooks (its thread). */
void sequencer_cluster_event(sequencer_t *s, struct event *ev, bool own);
void sequencer_cluster_synced(sequencer_t *s, const char *channel, size_t len, int status, uint64_t offset,
                              struct event **events, size_t count);
/* Returns true when the cluster's epoch changed (Redis lost its data): every
 * client must then be told to start over. */
bool sequencer_cluster_link(sequencer_t *s, bool up, const char *epoch);

#endif
