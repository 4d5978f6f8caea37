/* event: the native envelope of SPEC section 3, byte for byte; JSON escaping of
 * names; the data and Socket.IO frames, each encoded once; reference counts.
 * The WebSocket header is checked here by hand, not with herald's codec, so a bug
 * in the codec cannot hide one here. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "core/frame.h"
#include "hub/event.h"

#define S(lit) lit, sizeof(lit) - 1

/* 2026-01-01T00:00:00Z */
#define T2026 (1767225600ull * 1000)
#define ID "0f8fad5b-d9cb-469f-a165-70867728950e"

/* Checks a server text frame (FIN, opcode 1, unmasked) and returns its payload. */
static const uint8_t *ws_text_payload(const frame_t *f, size_t *len)
{
    assert_true(f->len >= 2);
    assert_int_equal(f->data[0], 0x81);
    assert_int_equal(f->data[1] & 0x80, 0);   /* server frames are not masked */
    size_t hl, pl = f->data[1] & 0x7f;
    if (pl < 126) {
        hl = 2;
    } else if (pl == 126) {
        assert_true(f->len >= 4);
        pl = ((size_t)f->data[2] << 8) | f->data[3];
        assert_true(pl >= 126);           /* minimal encoding */
        hl = 4;
    } else {
        assert_true(f->len >= 10);
        pl = 0;
        for (int i = 2; i < 10; i++) pl = (pl << 8) | f->data[i];
        assert_true(pl > 65535);
        hl = 10;
    }
    assert_int_equal(f->len, hl + pl);
    *len = pl;
    return f->data + hl;
}

static void assert_payload(const frame_t *f, const char *want)
{
    size_t n;
    const uint8_t *p = ws_text_payload(f, &n);
    if (n != strlen(want) || memcmp(p, want, n) != 0)
        fail_msg("payload\n  got  %.*s\n  want %s", (int)n, (const char *)p, want);
}

static event_t *mk(const char *ch, const char *name, const char *data, uint64_t offset, uint64_t ms)
{
    event_t *e = event_create(ch, strlen(ch), name, strlen(name), data, strlen(data), offset, ms, ID);
    assert_non_null(e);
    return e;
}

/* ---- the native envelope ---- */

static void test_event_native_envelope_exact_field_order(void **state)
{
    (void)state;
    event_t *e = mk("jobs", "job_created", "{\"a\":1,\"b\":[true,null]}", 42, T2026);
    const char *want = "{\"type\":\"job_created\",\"channel\":\"jobs\",\"data\":{\"a\":1,\"b\":[true,null]},"
                       "\"id\":\"" ID "\",\"offset\":42,\"timestamp\":\"2026-01-01T00:00:00.000Z\"}";
    size_t n;
    const char *env = event_envelope(e, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(env, want, n);
    frame_t *f = event_frame(e, EVENT_FMT_NATIVE);
    assert_non_null(f);
    assert_payload(f, want);
    /* the envelope is the frame's payload, not a copy */
    assert_ptr_equal(env, (const char *)f->data + e->envelope_offset);
    event_unref(e);
}

static void test_event_fields_kept(void **state)
{
    (void)state;
    event_t *e = mk("market:m1", "TIP_SENT", "7", 1, T2026 + 5);
    assert_int_equal(e->offset, 1);
    assert_int_equal(e->wall_ms, T2026 + 5);
    assert_string_equal(e->id, ID);
    assert_string_equal(e->channel, "market:m1");
    assert_int_equal(e->channel_len, 9);
    assert_string_equal(e->name, "TIP_SENT");
    assert_int_equal(e->name_len, 8);
    assert_string_equal(e->data, "7");
    assert_int_equal(e->data_len, 1);
    assert_int_equal(atomic_load(&e->refs), 1);
    event_unref(e);
}

static void test_event_timestamp_has_milliseconds_and_large_offset(void **state)
{
    (void)state;
    /* 2026-03-15T12:34:56.789Z; an offset past 2^53 printed exactly */
    event_t *e = mk("c", "e", "null", 9007199254740993ull, 1773578096ull * 1000 + 789);
    const char *want = "{\"type\":\"e\",\"channel\":\"c\",\"data\":null,\"id\":\"" ID
                       "\",\"offset\":9007199254740993,\"timestamp\":\"2026-03-15T12:34:56.789Z\"}";
    assert_payload(event_frame(e, EVENT_FMT_NATIVE), want);
    event_unref(e);
}

static void test_event_names_json_escaped(void **state)
{
    (void)state;
    /* a channel name cannot hold a quote (policy), but an event name may */
    event_t *e = mk("a\\b", "say \"hi\"\n", "{}", 3, T2026);
    const char *want = "{\"type\":\"say \\\"hi\\\"\\n\",\"channel\":\"a\\\\b\",\"data\":{},\"id\":\"" ID
                       "\",\"offset\":3,\"timestamp\":\"2026-01-01T00:00:00.000Z\"}";
    assert_payload(event_frame(e, EVENT_FMT_NATIVE), want);
    /* and it parses back to the original strings */
    size_t n;
    const char *env = event_envelope(e, &n);
    json_t *v = json_loadb(env, n, 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "type")), "say \"hi\"\n");
    assert_string_equal(json_string_value(json_object_get(v, "channel")), "a\\b");
    assert_int_equal(json_integer_value(json_object_get(v, "offset")), 3);
    json_decref(v);
    event_unref(e);
}

static void test_event_names_with_control_and_utf8(void **state)
{
    (void)state;
    event_t *e = mk("caf\xc3\xa9", "x\x01y", "1", 1, T2026);
    const char *want = "{\"type\":\"x\\u0001y\",\"channel\":\"caf\xc3\xa9\",\"data\":1,\"id\":\"" ID
                       "\",\"offset\":1,\"timestamp\":\"2026-01-01T00:00:00.000Z\"}";
    assert_payload(event_frame(e, EVENT_FMT_NATIVE), want);
    event_unref(e);
}

static void test_event_null_id_gets_uuid_v4(void **state)
{
    (void)state;
    event_t *e = event_create(S("jobs"), S("x"), S("1"), 1, T2026, NULL);
    assert_non_null(e);
    assert_int_equal(strlen(e->id), 36);
    assert_int_equal(e->id[14], '4');
    size_t n;
    const char *env = event_envelope(e, &n);
    json_t *v = json_loadb(env, n, 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "id")), e->id);
    json_decref(v);
    event_unref(e);
}

static void test_event_overlong_id_truncated_to_uuid_length(void **state)
{
    (void)state;
    const char *id = ID "EXTRA-CHARACTERS";
    event_t *e = event_create(S("jobs"), S("x"), S("1"), 1, T2026, id);
    assert_non_null(e);
    assert_string_equal(e->id, ID);
    event_unref(e);
}

/* Lengths do the work, not NULs: the inputs are slices of longer strings. */
static void test_event_inputs_are_length_bounded_slices(void **state)
{
    (void)state;
    event_t *e = event_create("jobsXX", 4, "doneYY", 4, "[1,2]ZZ", 5, 2, T2026, ID);
    assert_non_null(e);
    const char *want = "{\"type\":\"done\",\"channel\":\"jobs\",\"data\":[1,2],\"id\":\"" ID
                       "\",\"offset\":2,\"timestamp\":\"2026-01-01T00:00:00.000Z\"}";
    assert_payload(event_frame(e, EVENT_FMT_NATIVE), want);
    assert_string_equal(e->channel, "jobs");
    assert_string_equal(e->data, "[1,2]");
    event_unref(e);
}

/* Payload lengths across the 7-bit, 16-bit and 64-bit header forms. */
static void test_event_frame_header_length_forms(void **state)
{
    (void)state;
    static const size_t sizes[] = {10, 200, 70000};
    for (size_t i = 0; i < 3; i++) {
        size_t dl = sizes[i];
        char *data = malloc(dl + 1);
        assert_non_null(data);
        data[0] = '"';
        memset(data + 1, 'x', dl - 2);
        data[dl - 1] = '"';
        data[dl] = '\0';
        event_t *e = event_create(S("c"), S("e"), data, dl, 1, T2026, ID);
        assert_non_null(e);
        size_t n;
        ws_text_payload(event_frame(e, EVENT_FMT_DATA), &n);
        assert_int_equal(n, dl);
        const uint8_t *p = ws_text_payload(event_frame(e, EVENT_FMT_NATIVE), &n);
        size_t el;
        const char *env = event_envelope(e, &el);
        assert_ptr_equal(p, (const uint8_t *)env);
        assert_int_equal(n, el);
        event_unref(e);
        free(data);
    }
}

/* ---- other formats ---- */

static void test_event_data_format_is_data_alone(void **state)
{
    (void)state;
    const char *data = "{\"type\":\"TIP_SENT\",\"creatorId\":\"c1\",\"amountEth\":\"0.05\"}";
    event_t *e = mk("creator:c1", "TIP_SENT", data, 5, T2026);
    frame_t *f = event_frame(e, EVENT_FMT_DATA);
    assert_non_null(f);
    assert_payload(f, data);
    event_unref(e);
}

static void test_event_socketio_format_42_array(void **state)
{
    (void)state;
    event_t *e = mk("market:m1", "price", "{\"p\":1.5}", 5, T2026);
    frame_t *f = event_frame(e, EVENT_FMT_SOCKETIO);
    assert_non_null(f);
    assert_payload(f, "42[\"price\",{\"p\":1.5}]");
    event_unref(e);
}

/* The trailing string is the connection-state-recovery offset: the sequence number
 * the event got when it became visible; the raw form (long-polling) is the same
 * text without the WebSocket header. */
static void test_event_socketio_carries_recovery_offset(void **state)
{
    (void)state;
    event_t *e = mk("jobs", "job_created", "{\"id\":1}", 3, T2026);
    e->seq = 12345;
    assert_payload(event_frame(e, EVENT_FMT_SOCKETIO_REC), "42[\"job_created\",{\"id\":1},\"12345\"]");
    assert_payload(event_frame(e, EVENT_FMT_SOCKETIO), "42[\"job_created\",{\"id\":1}]");
    frame_t *raw = event_frame(e, EVENT_FMT_SOCKETIO_REC_RAW);
    assert_non_null(raw);
    assert_int_equal(raw->len, strlen("42[\"job_created\",{\"id\":1},\"12345\"]"));
    assert_memory_equal(raw->data, "42[\"job_created\",{\"id\":1},\"12345\"]", raw->len);
    event_unref(e);
}

static void test_event_socketio_array_data_is_one_argument(void **state)
{
    (void)state;
    /* SPEC 9.11: the data array stays one argument, and the name is escaped */
    event_t *e = mk("c", "a\"b", "[1,2]", 5, T2026);
    assert_payload(event_frame(e, EVENT_FMT_SOCKETIO), "42[\"a\\\"b\",[1,2]]");
    event_unref(e);
}

static void test_event_frame_encoded_once_same_pointer(void **state)
{
    (void)state;
    event_t *e = mk("jobs", "x", "{}", 1, T2026);
    assert_null(atomic_load(&e->frames[EVENT_FMT_DATA]));       /* lazily encoded */
    assert_null(atomic_load(&e->frames[EVENT_FMT_SOCKETIO]));
    for (int fmt = 0; fmt < EVENT_FMT_COUNT; fmt++) {
        frame_t *a = event_frame(e, (event_format_t)fmt);
        frame_t *b = event_frame(e, (event_format_t)fmt);
        assert_non_null(a);
        assert_ptr_equal(a, b);
        assert_ptr_equal(a, atomic_load(&e->frames[fmt]));
        /* the event holds the one reference; a borrowed frame adds none */
        assert_int_equal(atomic_load(&a->refs), 1);
    }
    assert_ptr_not_equal(event_frame(e, EVENT_FMT_DATA), event_frame(e, EVENT_FMT_SOCKETIO));
    event_unref(e);
}

/* ---- reference counts ---- */

static void test_event_refcount_last_unref_frees(void **state)
{
    (void)state;
    event_t *e = mk("jobs", "x", "{}", 1, T2026);
    assert_ptr_equal(event_ref(e), e);
    assert_ptr_equal(event_ref(e), e);
    assert_int_equal(atomic_load(&e->refs), 3);
    event_unref(e);
    event_unref(e);
    assert_int_equal(atomic_load(&e->refs), 1);
    /* still whole: a use after a premature free would trip AddressSanitizer */
    assert_string_equal(e->channel, "jobs");
    event_unref(e);   /* the last: event and frames freed (the leak check sees the rest) */
    event_unref(NULL);
}

/* A receiver's queued frame outlives the event that made it. */
static void test_event_queued_frame_outlives_event(void **state)
{
    (void)state;
    event_t *e = mk("jobs", "x", "{\"k\":\"v\"}", 1, T2026);
    frame_t *native = frame_ref(event_frame(e, EVENT_FMT_NATIVE));
    frame_t *sio = frame_ref(event_frame(e, EVENT_FMT_SOCKETIO));
    assert_int_equal(atomic_load(&native->refs), 2);
    assert_int_equal(atomic_load(&sio->refs), 2);
    event_unref(e);
    assert_int_equal(atomic_load(&native->refs), 1);
    assert_int_equal(atomic_load(&sio->refs), 1);
    assert_payload(sio, "42[\"x\",{\"k\":\"v\"}]");
    size_t n;
    ws_text_payload(native, &n);
    assert_true(n > 0);
    frame_unref(native);
    frame_unref(sio);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_native_envelope_exact_field_order),
        cmocka_unit_test(test_event_fields_kept),
        cmocka_unit_test(test_event_timestamp_has_milliseconds_and_large_offset),
        cmocka_unit_test(test_event_names_json_escaped),
        cmocka_unit_test(test_event_names_with_control_and_utf8),
        cmocka_unit_test(test_event_null_id_gets_uuid_v4),
        cmocka_unit_test(test_event_overlong_id_truncated_to_uuid_length),
        cmocka_unit_test(test_event_inputs_are_length_bounded_slices),
        cmocka_unit_test(test_event_frame_header_length_forms),
        cmocka_unit_test(test_event_data_format_is_data_alone),
        cmocka_unit_test(test_event_socketio_format_42_array),
        cmocka_unit_test(test_event_socketio_array_data_is_one_argument),
        cmocka_unit_test(test_event_socketio_carries_recovery_offset),
        cmocka_unit_test(test_event_frame_encoded_once_same_pointer),
        cmocka_unit_test(test_event_refcount_last_unref_frees),
        cmocka_unit_test(test_event_queued_frame_outlives_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
