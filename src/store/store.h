/* store: the embedded durable event log (SQLite in WAL mode under data_dir).
 *
 * Writes go through one writer thread with group commit: publishers append to a
 * queue, the writer takes everything queued, writes it in one transaction, and only
 * then hands the batch back (store_committed_fn), so an event is acknowledged and
 * delivered only once it is on disk, and a burst of publishers shares one fsync.
 * Reads (a channel's offset and recent events, idempotency keys) use a second
 * connection and may run on any thread under the caller's lock.
 *
 * Tables: events(channel, offset, id, name, data, ts), channels(name, offset),
 * idempotency(channel, key, offset, id, expires_ms), meta(key, value) for the
 * node's epoch. Retention: a channel keeps its last `keep` events, and events older
 * than the longest TTL are pruned, so the file stays bounded.
 *
 * Owns: both database connections, the writer thread, the queue. Thread-safe as
 * stated per function. */
#ifndef HERALD_STORE_H
#define HERALD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;

typedef struct store store_t;

/* One queued write: the event, and the idempotency key it was published with. */
typedef struct store_item {
    struct event *ev;         /* a reference owned by the item */
    char *idem_key;           /* heap, or NULL */
    uint64_t idem_expires_ms;
    uint32_t keep;            /* events of this channel to keep (its history size) */
    void *ctx;                /* the caller's, handed back with the batch */
} store_item_t;

/* Called on the writer thread with a committed (status 0) or failed (status < 0)
 * batch, in queue order. The callee takes the event references and idem keys. */
typedef void (*store_committed_fn)(void *arg, int status, store_item_t *items, size_t n);

/* Opens (creating) data_dir/herald.db. synchronous_full: fsync every commit, so a
 * committed event survives power loss too; without it (SQLite's synchronous=NORMAL
 * in WAL mode) a commit is a write to the log file, which survives any crash of
 * herald itself (kill -9 included) and is synced at checkpoints. Returns NULL and
 * logs on failure. */
store_t *store_open(const char *data_dir, bool synchronous_full, uint32_t max_ttl_s,
                    store_committed_fn committed, void *arg);
/* Stops the writer after it has committed everything queued; closes. */
void store_close(store_t *st);

/* The node's epoch: kept in the store, chosen on first use. Borrowed. */
const char *store_epoch(const store_t *st);

/* Any thread. Appends an item (taken over). Returns 0 or HERALD_ENOMEM. */
int store_append(store_t *st, const store_item_t *item);
/* Group commit on an event loop's thread: after store_defer_kicks, this thread's
 * appends leave the writer asleep until store_kick (called once per loop batch). */
void store_defer_kicks(void);
void store_kick(void);

/* Reads, any thread, serialised by the caller. */
/* The channel's last assigned offset (0 if unknown). */
int store_channel_offset(store_t *st, const char *channel, size_t len, uint64_t *offset);
/* Calls fn for the channel's events with offset > after and ts >= min_ts, oldest
 * first, at most limit of them (the newest ones). */
typedef void (*store_event_fn)(void *arg, uint64_t offset, const char *id, const char *name, const char *data,
                               uint64_t ts_ms);
int store_load_events(store_t *st, const char *channel, size_t len, uint64_t after, uint64_t min_ts, uint32_t limit,
                      store_event_fn fn, void *arg);
/* Unexpired idempotency keys, for loading at start. */
typedef void (*store_idem_fn)(void *arg, const char *channel, const char *key, uint64_t offset, const char *id,
                              uint64_t expires_ms);
int store_load_idempotency(store_t *st, uint64_t now_ms, store_idem_fn fn, void *arg);

#endif
