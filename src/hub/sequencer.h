/* sequencer: the node's one ordering point. For every channel it keeps the latest
 * offset, the epoch, and how many connections on this node subscribe; publishing
 * assigns the next offset, builds the shared event and dispatches it to every
 * worker, all under one lock, so each worker's inbox receives a channel's events in
 * offset order.
 *
 * History (the events kept for recovery) and the durable store attach here: the
 * seams are sequencer_publish (store before dispatch) and sequencer_subscribe
 * (snapshot under the same lock as registration).
 *
 * Owns: the channel table and its state. Thread-safe: any thread; the dispatch
 * callback runs with the lock held and must not call back into the sequencer. */
#ifndef HERALD_SEQUENCER_H
#define HERALD_SEQUENCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core/util.h"

struct event;

typedef void (*sequencer_dispatch_fn)(void *ctx, struct event *ev);

typedef struct sequencer sequencer_t;

sequencer_t *sequencer_create(const config_t *cfg, sequencer_dispatch_fn dispatch, void *ctx);
void sequencer_destroy(sequencer_t *s);

/* The node's epoch (a random string chosen at start). Borrowed, lives as long as s. */
const char *sequencer_epoch(const sequencer_t *s);

typedef struct publish_result {
    uint64_t offset;
    char id[UUID_STR_LEN];
    bool duplicate;
} publish_result_t;

/* Sequences and dispatches one event. data is compact JSON text. Returns 0 or
 * HERALD_ENOMEM. */
int sequencer_publish(sequencer_t *s, const char *channel, size_t channel_len, const char *name,
                      size_t name_len, const char *data, size_t data_len, publish_result_t *out);

/* Registers one more local subscriber and returns the channel's latest offset. */
uint64_t sequencer_subscribe(sequencer_t *s, const char *channel, size_t len);
void sequencer_unsubscribe(sequencer_t *s, const char *channel, size_t len);
uint64_t sequencer_latest(sequencer_t *s, const char *channel, size_t len);

/* Channels with at least one subscriber on this node. */
long sequencer_active_channels(sequencer_t *s);

/* Appends {"name":count,...} of the `limit` channels with most subscribers
 * (ties by name), excluding $all, to b. */
int sequencer_render_by_channel(sequencer_t *s, size_t limit, buf_t *b);

#endif
