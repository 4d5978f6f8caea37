/* util: ISO-8601 timestamps, UUID v4 text, JSON string escaping into buf_t. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "core/err.h"
#include "core/util.h"

/* ---- time_iso8601 ---- */

static void assert_iso(uint64_t wall_ms, const char *want)
{
    char out[ISO_TIME_LEN];
    memset(out, 'x', sizeof out);
    time_iso8601(wall_ms, out);
    assert_string_equal(out, want);
    assert_int_equal(strlen(out), ISO_TIME_LEN - 1);
}

static void test_iso8601_epoch_zero(void **state)
{
    (void)state;
    assert_iso(0, "1970-01-01T00:00:00.000Z");
}

static void test_iso8601_2026_with_milliseconds(void **state)
{
    (void)state;
    /* 2026-03-15T12:34:56Z is 1773578096 s */
    assert_iso(1773578096ull * 1000 + 789, "2026-03-15T12:34:56.789Z");
    assert_iso(1767225600ull * 1000, "2026-01-01T00:00:00.000Z");
}

static void test_iso8601_millisecond_padding(void **state)
{
    (void)state;
    assert_iso(1767225600ull * 1000 + 7, "2026-01-01T00:00:00.007Z");
    assert_iso(1767225600ull * 1000 + 45, "2026-01-01T00:00:00.045Z");
    /* 999 ms must not carry into the seconds */
    assert_iso(1767225600ull * 1000 - 1, "2025-12-31T23:59:59.999Z");
}

static void test_iso8601_leap_day_last_millisecond(void **state)
{
    (void)state;
    /* 2024-02-29T23:59:59Z is 1709251199 s */
    assert_iso(1709251199ull * 1000 + 999, "2024-02-29T23:59:59.999Z");
    assert_iso(1709251200ull * 1000, "2024-03-01T00:00:00.000Z");
}

static void test_iso8601_year_9999_keeps_fixed_width(void **state)
{
    (void)state;
    assert_iso(253402300799ull * 1000 + 999, "9999-12-31T23:59:59.999Z");
}

/* ---- uuid_v4 ---- */

static bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static void assert_uuid_v4_shape(const char *u)
{
    assert_int_equal(strlen(u), UUID_STR_LEN - 1);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(u[i], '-');
        } else if (!is_lower_hex(u[i])) {
            fail_msg("uuid %s: position %d is '%c', not a lowercase hex digit", u, i, u[i]);
        }
    }
    assert_int_equal(u[14], '4');                         /* version nibble */
    if (!strchr("89ab", u[19])) fail_msg("uuid %s: variant nibble '%c' not in [89ab]", u, u[19]);
}

static void test_uuid_v4_version_and_variant_nibbles(void **state)
{
    (void)state;
    /* 2,000 samples: the variant nibble takes each of its 4 values with near certainty */
    bool variant_seen[4] = {false};
    for (int i = 0; i < 2000; i++) {
        char u[UUID_STR_LEN];
        memset(u, 'Z', sizeof u);
        uuid_v4(u);
        assert_uuid_v4_shape(u);
        variant_seen[strchr("89ab", u[19]) - "89ab"] = true;
    }
    for (int i = 0; i < 4; i++) assert_true(variant_seen[i]);
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void test_uuid_v4_no_repeats_in_many(void **state)
{
    (void)state;
    enum { N = 4096 };
    char (*u)[UUID_STR_LEN] = malloc(N * sizeof *u);
    assert_non_null(u);
    for (int i = 0; i < N; i++) uuid_v4(u[i]);
    qsort(u, N, sizeof *u, cmp_str);
    for (int i = 1; i < N; i++) assert_string_not_equal(u[i - 1], u[i]);
    free(u);
}

/* ---- buf_append_json_str ---- */

static char *json_escape(const char *s, size_t n)
{
    buf_t b = {0};
    assert_int_equal(buf_append_json_str(&b, s, n), 0);
    assert_int_equal(strlen(b.data), b.len);
    return b.data;
}

static void assert_escaped(const char *s, size_t n, const char *want)
{
    char *got = json_escape(s, n);
    assert_string_equal(got, want);
    free(got);
}

static void test_json_str_empty_is_two_quotes(void **state)
{
    (void)state;
    assert_escaped("", 0, "\"\"");
}

static void test_json_str_quote_and_backslash(void **state)
{
    (void)state;
    assert_escaped("a\"b", 3, "\"a\\\"b\"");
    assert_escaped("a\\b", 3, "\"a\\\\b\"");
    assert_escaped("\\\"", 2, "\"\\\\\\\"\"");
    /* '/' needs no escape */
    assert_escaped("a/b", 3, "\"a/b\"");
}

static void test_json_str_short_escapes_for_newline_cr_tab(void **state)
{
    (void)state;
    assert_escaped("\n\r\t", 3, "\"\\n\\r\\t\"");
}

static void test_json_str_other_controls_as_u00xx(void **state)
{
    (void)state;
    assert_escaped("\x01", 1, "\"\\u0001\"");
    assert_escaped("\x08\x0c", 2, "\"\\u0008\\u000c\"");
    assert_escaped("\x1f", 1, "\"\\u001f\"");
    assert_escaped("\x1b[0m", 4, "\"\\u001b[0m\"");
}

static void test_json_str_embedded_nul_is_escaped_not_truncating(void **state)
{
    (void)state;
    assert_escaped("a\0b", 3, "\"a\\u0000b\"");
}

static void test_json_str_space_del_and_utf8_pass_through(void **state)
{
    (void)state;
    assert_escaped(" ~\x7f", 3, "\" ~\x7f\"");
    assert_escaped("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
}

static void test_json_str_length_bounds_input(void **state)
{
    (void)state;
    /* only n bytes are read, not up to the NUL */
    assert_escaped("abcdef", 3, "\"abc\"");
}

static void test_json_str_appends_after_existing_content(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "{\"k\":"), 0);
    assert_int_equal(buf_append_json_str(&b, "v\"", 2), 0);
    assert_int_equal(buf_append_str(&b, "}"), 0);
    assert_string_equal(b.data, "{\"k\":\"v\\\"\"}");
    assert_int_equal(b.len, strlen(b.data));
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

/* Every byte 0x01..0x7f, escaped, parses back to itself. */
static void test_json_str_every_ascii_byte_round_trips_through_jansson(void **state)
{
    (void)state;
    char in[127];
    for (int i = 0; i < 127; i++) in[i] = (char)(i + 1);
    char *out = json_escape(in, sizeof in);
    json_error_t err;
    json_t *v = json_loads(out, JSON_DECODE_ANY, &err);
    if (!v) fail_msg("escaped text does not parse: %s: %s", err.text, out);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), sizeof in);
    assert_memory_equal(json_string_value(v), in, sizeof in);
    json_decref(v);
    free(out);
}

/* Worst case growth: every byte becomes six. */
static void test_json_str_all_controls_grow_sixfold(void **state)
{
    (void)state;
    enum { N = 10000 };
    char *in = malloc(N);
    assert_non_null(in);
    memset(in, 0x01, N);
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "x", 1), 0);
    assert_int_equal(buf_append_json_str(&b, in, N), 0);
    assert_int_equal(b.len, 1 + 2 + (size_t)N * 6);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 1 + 1 + 6 * (N - 1), "\\u0001\"", 7);
    buf_free(&b);
    free(in);
}

/* ---- buf_printf / buf_append ---- */

static void test_buf_printf_grows_past_initial_capacity(void **state)
{
    (void)state;
    buf_t b = {0};
    for (int i = 0; i < 1000; i++) assert_int_equal(buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    assert_string_equal(b.data + b.len - 4, "999,");
    buf_free(&b);
}

static void test_buf_append_zero_bytes_gives_empty_string(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601_epoch_zero),
        cmocka_unit_test(test_iso8601_2026_with_milliseconds),
        cmocka_unit_test(test_iso8601_millisecond_padding),
        cmocka_unit_test(test_iso8601_leap_day_last_millisecond),
        cmocka_unit_test(test_iso8601_year_9999_keeps_fixed_width),
        cmocka_unit_test(test_uuid_v4_version_and_variant_nibbles),
        cmocka_unit_test(test_uuid_v4_no_repeats_in_many),
        cmocka_unit_test(test_json_str_empty_is_two_quotes),
        cmocka_unit_test(test_json_str_quote_and_backslash),
        cmocka_unit_test(test_json_str_short_escapes_for_newline_cr_tab),
        cmocka_unit_test(test_json_str_other_controls_as_u00xx),
        cmocka_unit_test(test_json_str_embedded_nul_is_escaped_not_truncating),
        cmocka_unit_test(test_json_str_space_del_and_utf8_pass_through),
        cmocka_unit_test(test_json_str_length_bounds_input),
        cmocka_unit_test(test_json_str_appends_after_existing_content),
        cmocka_unit_test(test_json_str_every_ascii_byte_round_trips_through_jansson),
        cmocka_unit_test(test_json_str_all_controls_grow_sixfold),
        cmocka_unit_test(test_buf_printf_grows_past_initial_capacity),
        cmocka_unit_test(test_buf_append_zero_bytes_gives_empty_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
