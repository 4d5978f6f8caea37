/* hub: which of this worker's connections subscribe to which channel, and the
 * fan-out of an event to them.
 *
 * Both indexes, like Redis pub/sub: channel -> members (an array, so fan-out walks
 * contiguous memory; removal swaps the last member in) and connection -> its
 * subscriptions (a list through conn->subs). Each subscription remembers the offset
 * it was taken at, and fan-out skips events at or below it: an event already in
 * this worker's inbox when a client subscribed (or one it recovered from history)
 * is never delivered twice.
 *
 * Subscribing also registers the subscriber with the sequencer, which keeps the
 * node-wide counts and hands back the channel's current offset and epoch.
 *
 * Owns: its channel table and subscription records. Does not own connections or
 * events. Called on the owning worker's loop thread only. */
#ifndef HERALD_HUB_H
#define HERALD_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "hub/sequencer.h"

struct sequencer;
struct event;
struct hub_channel;

typedef struct sub {
    struct sub *conn_next;          /* next subscription of the same connection */
    conn_t *conn;
    struct hub_channel *channel;
    uint32_t index;                 /* position in channel->members */
    uint64_t after_offset;          /* deliver only events with a larger offset */
} sub_t;

typedef struct hub hub_t;

hub_t *hub_create(struct sequencer *seq);
void hub_destroy(hub_t *h);

/* Subscribes c to channel. On success snap->latest is the channel's latest offset
 * at this instant: fan-out delivers only events above it. With since, snap also
 * holds the stored events the client missed (see sequencer_subscribe), which the
 * caller sends before anything else reaches the connection; release snap after.
 * Returns 0, HERALD_EEXIST (already subscribed: snap->latest set, no recovery), or
 * HERALD_ENOMEM. */
int hub_subscribe(hub_t *h, conn_t *c, const char *channel, size_t len, const seq_since_t *since,
                  seq_snapshot_t *snap);

/* Returns 0, or HERALD_ENOTFOUND when c was not subscribed. */
int hub_unsubscribe(hub_t *h, conn_t *c, const char *channel, size_t len);
void hub_unsubscribe_all(hub_t *h, conn_t *c);
bool hub_is_subscribed(const hub_t *h, const conn_t *c, const char *channel, size_t len);

/* Hands every subscription of `from` to `to` (both on this worker), keeping their
 * floors: a session changing transport loses and repeats nothing. */
void hub_move(hub_t *h, conn_t *from, conn_t *to);

/* Queues ev to every local subscriber of its channel. Returns the number of
 * deliveries queued. */
size_t hub_fanout(hub_t *h, struct event *ev);

/* Queues ev to every connection in the list that receives $all. */
size_t hub_fanout_all(conn_t *list, struct event *ev);

size_t hub_channel_count(const hub_t *h);

/* The channel a subscription is to. Borrowed. */
const char *hub_channel_name(const sub_t *s);
size_t hub_channel_name_len(const sub_t *s);

#endif
