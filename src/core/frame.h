/* frame: reference-counted, immutable bytes ready for the wire.
 *
 * A published event is encoded once per wire format into a frame, and every
 * receiver's send queue holds a reference to that one frame, never a copy. Control
 * replies and HTTP responses are frames with a single reference. References are
 * atomic because a frame made on one worker is queued on every worker.
 *
 * Ownership: frame_new returns a new reference; frame_ref adds one; frame_unref
 * drops one and frees on the last. Any thread. */
#ifndef HERALD_FRAME_H
#define HERALD_FRAME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct frame {
    atomic_uint refs;
    uint32_t len;
    uint8_t data[];
} frame_t;

/* A frame of `len` bytes (contents uninitialised). NULL when out of memory. */
frame_t *frame_new(size_t len);
frame_t *frame_from(const void *bytes, size_t len);

static inline frame_t *frame_ref(frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

/* Adds n references at once: the fan-out path takes one per receiver in a batch. */
static inline void frame_ref_n(frame_t *f, unsigned n)
{
    atomic_fetch_add_explicit(&f->refs, n, memory_order_relaxed);
}

void frame_unref(frame_t *f);

/* A WebSocket server frame (unmasked, FIN) with this opcode and payload. */
frame_t *frame_ws(uint8_t opcode, const void *payload, size_t len);

/* A WebSocket close frame with code and reason. */
frame_t *frame_ws_close(uint16_t code, const char *reason);

#endif
