/* event: one published event, immutable once sequenced, shared by every worker.
 *
 * Holds the event's fields and, per wire format, the frame that carries it, each
 * encoded at most once (the native envelope eagerly, because history replies and
 * every native client need it; the others on first use by any worker, installed
 * with a compare-and-swap so concurrent workers agree on one frame).
 *
 * Ownership: event_create returns a new reference; event_ref / event_unref; the
 * frames live as long as the event (a receiver that queues one takes its own frame
 * reference). Any thread. */
#ifndef HERALD_EVENT_H
#define HERALD_EVENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/frame.h"
#include "core/util.h"

typedef enum event_format {
    EVENT_FMT_NATIVE = 0,   /* WebSocket text frame: the section-3 envelope */
    EVENT_FMT_DATA,         /* WebSocket text frame: the event's data alone (route format "data") */
    EVENT_FMT_SOCKETIO,     /* WebSocket text frame: 42["<event>",<data>] */
    EVENT_FMT_SSE,          /* "event: <event>\ndata: <envelope>\n\n" (the id line is per connection) */
    EVENT_FMT_SOCKETIO_RAW, /* 42["<event>",<data>] alone: an Engine.IO long-polling record */
    EVENT_FMT_SOCKETIO_REC, /* with connection state recovery: 42["<event>",<data>,"<seq>"] */
    EVENT_FMT_SOCKETIO_REC_RAW,
    EVENT_FMT_COUNT
} event_format_t;

typedef struct event {
    atomic_uint refs;
    uint64_t offset;
    uint64_t seq;          /* node-wide order of becoming visible (Socket.IO recovery offsets); 0: loaded */
    uint64_t wall_ms;
    char id[UUID_STR_LEN];
    const char *channel;   /* NUL-terminated, inside the event's own allocation */
    size_t channel_len;
    const char *name;
    size_t name_len;
    const char *data;      /* compact JSON text */
    size_t data_len;
    uint32_t envelope_offset;   /* where the JSON envelope starts in frames[NATIVE] */
    _Atomic(frame_t *) frames[EVENT_FMT_COUNT];
    char storage[];
} event_t;

/* Builds an event and its native frame. data is JSON text (already validated and
 * compact). Returns NULL when out of memory. */
event_t *event_create(const char *channel, size_t channel_len, const char *name, size_t name_len,
                      const char *data, size_t data_len, uint64_t offset, uint64_t wall_ms,
                      const char *id);

static inline event_t *event_ref(event_t *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}
void event_unref(event_t *e);

/* The frame for a format, encoded on first use. Borrowed: valid while the caller
 * holds the event; frame_ref it to queue it. NULL only when out of memory. */
frame_t *event_frame(event_t *e, event_format_t fmt);

/* The JSON envelope text (no WebSocket header), borrowed. */
static inline const char *event_envelope(const event_t *e, size_t *len)
{
    frame_t *f = atomic_load_explicit((_Atomic(frame_t *) *)&e->frames[EVENT_FMT_NATIVE],
                                      memory_order_acquire);
    *len = f->len - e->envelope_offset;
    return (const char *)f->data + e->envelope_offset;
}

/* Appends the envelopes of events[0..n) as a JSON array to b. */
int event_append_envelopes(buf_t *b, event_t *const *events, size_t n);

#endif
