#include "hub/event.h"
#include "ws/ws_codec.h"

#include <stdlib.h>
#include <string.h>

/* Wraps JSON text built in b into a WebSocket text frame, without a second copy of
 * the payload beyond the one into the frame. */
static frame_t *ws_text_frame(const buf_t *b, uint32_t *payload_offset)
{
    uint8_t hdr[WS_MAX_HEADER_LEN];
    size_t hl = ws_frame_header_encode(hdr, WS_OP_TEXT, true, b->len, NULL);
    frame_t *f = frame_new(hl + b->len);
    if (!f) return NULL;
    memcpy(f->data, hdr, hl);
    memcpy(f->data + hl, b->data, b->len);
    if (payload_offset) *payload_offset = (uint32_t)hl;
    return f;
}

static frame_t *encode_native(const event_t *e, uint32_t *payload_offset)
{
    char ts[ISO_TIME_LEN];
    time_iso8601(e->wall_ms, ts);
    buf_t b = {0};
    int rc = buf_append_str(&b, "{\"type\":");
    rc |= buf_append_json_str(&b, e->name, e->name_len);
    rc |= buf_append_str(&b, ",\"channel\":");
    rc |= buf_append_json_str(&b, e->channel, e->channel_len);
    rc |= buf_append_str(&b, ",\"data\":");
    rc |= buf_append(&b, e->data, e->data_len);
    rc |= buf_printf(&b, ",\"id\":\"%s\",\"offset\":%llu,\"timestamp\":\"%s\"}", e->id,
                     (unsigned long long)e->offset, ts);
    frame_t *f = rc ? NULL : ws_text_frame(&b, payload_offset);
    buf_free(&b);
    return f;
}

static frame_t *encode(const event_t *e, event_format_t fmt)
{
    buf_t b = {0};
    int rc = 0;
    switch (fmt) {
    case EVENT_FMT_NATIVE:
        return encode_native(e, NULL);
    case EVENT_FMT_DATA:
        rc = buf_append(&b, e->data, e->data_len);
        break;
    case EVENT_FMT_SOCKETIO:
    case EVENT_FMT_SOCKETIO_RAW:
    case EVENT_FMT_SOCKETIO_REC:
    case EVENT_FMT_SOCKETIO_REC_RAW: {
        rc = buf_append_str(&b, "42[");
        rc |= buf_append_json_str(&b, e->name, e->name_len);
        rc |= buf_append_str(&b, ",");
        rc |= buf_append(&b, e->data, e->data_len);
        /* with recovery, the trailing string is the offset socket.io-client 4.6+
         * keeps and sends back when it reconnects */
        if (fmt == EVENT_FMT_SOCKETIO_REC || fmt == EVENT_FMT_SOCKETIO_REC_RAW)
            rc |= buf_printf(&b, ",\"%llu\"", (unsigned long long)e->seq);
        rc |= buf_append_str(&b, "]");
        if (fmt == EVENT_FMT_SOCKETIO || fmt == EVENT_FMT_SOCKETIO_REC) break;
        frame_t *raw = rc ? NULL : frame_from(b.data, b.len);
        buf_free(&b);
        return raw;
    }
    case EVENT_FMT_SSE: {
        /* An event name is a JSON string and may hold line breaks, which would end
         * the field early: they become spaces. The envelope is JSON: no raw newline. */
        rc = buf_append_str(&b, "event: ");
        size_t start = b.len;
        rc |= buf_append(&b, e->name, e->name_len);
        for (size_t i = start; i < b.len; i++)
            if (b.data[i] == '\n' || b.data[i] == '\r') b.data[i] = ' ';
        size_t len;
        const char *env = event_envelope(e, &len);
        rc |= buf_append_str(&b, "\ndata: ");
        rc |= buf_append(&b, env, len);
        rc |= buf_append_str(&b, "\n\n");
        frame_t *f = rc ? NULL : frame_from(b.data, b.len);
        buf_free(&b);
        return f;
    }
    default:
        return NULL;
    }
    frame_t *f = rc ? NULL : ws_text_frame(&b, NULL);
    buf_free(&b);
    return f;
}

event_t *event_create(const char *channel, size_t channel_len, const char *name, size_t name_len,
                      const char *data, size_t data_len, uint64_t offset, uint64_t wall_ms,
                      const char *id)
{
    event_t *e = malloc(sizeof *e + channel_len + name_len + data_len + 3);
    if (!e) return NULL;
    atomic_init(&e->refs, 1);
    e->offset = offset;
    e->seq = 0;   /* set by the sequencer when the event becomes visible */
    e->wall_ms = wall_ms;
    if (id) {
        strncpy(e->id, id, UUID_STR_LEN - 1);
        e->id[UUID_STR_LEN - 1] = '\0';
    } else {
        uuid_v4(e->id);
    }
    char *p = e->storage;
    memcpy(p, channel, channel_len); p[channel_len] = '\0';
    e->channel = p; e->channel_len = channel_len; p += channel_len + 1;
    memcpy(p, name, name_len); p[name_len] = '\0';
    e->name = p; e->name_len = name_len; p += name_len + 1;
    memcpy(p, data, data_len); p[data_len] = '\0';
    e->data = p; e->data_len = data_len;
    for (int i = 0; i < EVENT_FMT_COUNT; i++) atomic_init(&e->frames[i], NULL);
    uint32_t off = 0;
    frame_t *f = encode_native(e, &off);
    if (!f) {
        free(e);
        return NULL;
    }
    e->envelope_offset = off;
    atomic_store_explicit(&e->frames[EVENT_FMT_NATIVE], f, memory_order_release);
    return e;
}

void event_unref(event_t *e)
{
    if (!e) return;
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
    for (int i = 0; i < EVENT_FMT_COUNT; i++) frame_unref(atomic_load(&e->frames[i]));
    free(e);
}

frame_t *event_frame(event_t *e, event_format_t fmt)
{
    frame_t *f = atomic_load_explicit(&e->frames[fmt], memory_order_acquire);
    if (f) return f;
    frame_t *made = encode(e, fmt);
    if (!made) return NULL;
    frame_t *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&e->frames[fmt], &expected, made,
                                                memory_order_acq_rel, memory_order_acquire))
        return made;
    frame_unref(made);   /* another worker won the race: use its frame */
    return expected;
}

int event_append_envelopes(buf_t *b, event_t *const *events, size_t n)
{
    int rc = buf_append_str(b, "[");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *env = event_envelope(events[i], &len);
        if (i) rc |= buf_append_str(b, ",");
        rc |= buf_append(b, env, len);
    }
    return rc | buf_append_str(b, "]");
}
