/* wire: how an event is written in Redis (in a channel's history list and in the
 * pub/sub message that announces it) and read back.
 *
 * One text record: "<offset> <seq> <ts_ms> <id> <name_len> <name><data>". The
 * publisher writes the tail from <ts_ms> on; the publish script prefixes the offset
 * and the cluster-wide sequence number it assigns. The channel is not repeated:
 * it is the history key's or the pub/sub channel's suffix.
 *
 * Redis is trusted to hold what herald wrote, but records are still parsed with
 * every length checked (fuzz/fuzz_cluster_wire.c). No state; any thread. */
#ifndef HERALD_CLUSTER_WIRE_H
#define HERALD_CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct event;

/* Appends "<ts_ms> <id> <name_len> <name><data>" to b. Returns 0 or HERALD_ENOMEM. */
int wire_tail(buf_t *b, uint64_t ts_ms, const char *id, const char *name, size_t name_len, const char *data,
              size_t data_len);

/* Parses a whole record of `channel` into a new event (seq set). NULL when the
 * record is malformed (or out of memory). */
struct event *wire_parse(const char *channel, size_t channel_len, const char *rec, size_t len);

#endif
