#include "core/frame.h"
#include "ws/ws_codec.h"

#include <stdlib.h>
#include <string.h>

frame_t *frame_new(size_t len)
{
    if (len > UINT32_MAX) return NULL;
    frame_t *f = malloc(sizeof *f + len);
    if (!f) return NULL;
    atomic_init(&f->refs, 1);
    f->len = (uint32_t)len;
    return f;
}

frame_t *frame_from(const void *bytes, size_t len)
{
    frame_t *f = frame_new(len);
    if (f) memcpy(f->data, bytes, len);
    return f;
}

void frame_unref(frame_t *f)
{
    if (!f) return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) free(f);
}

frame_t *frame_ws(uint8_t opcode, const void *payload, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER_LEN];
    size_t hl = ws_frame_header_encode(hdr, opcode, true, len, NULL);
    frame_t *f = frame_new(hl + len);
    if (!f) return NULL;
    memcpy(f->data, hdr, hl);
    if (len) memcpy(f->data + hl, payload, len);
    return f;
}

frame_t *frame_ws_close(uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t n = ws_close_payload(payload, code, reason);
    return frame_ws(0x8, payload, n);
}
