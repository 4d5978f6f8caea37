/* The Redis wire records and redis:// URLs (src/cluster/wire.c, redis_io.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "cluster/redis_io.h"
#include "cluster/wire.h"
#include "hub/event.h"

static const char ID[] = "3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f";

static void test_wire_round_trip(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "7 42 "), 0);
    const char data[] = "{\"creatorId\":\"abc\",\"amountEth\":\"0.05\"}";
    assert_int_equal(wire_tail(&b, 1763784000123ULL, ID, "TIP_SENT", 8, data, strlen(data)), 0);
    event_t *ev = wire_parse("creator:abc", 11, b.data, b.len);
    assert_non_null(ev);
    assert_int_equal(ev->offset, 7);
    assert_int_equal(ev->seq, 42);
    assert_int_equal(ev->wall_ms, 1763784000123ULL);
    assert_string_equal(ev->id, ID);
    assert_int_equal(ev->name_len, 8);
    assert_memory_equal(ev->name, "TIP_SENT", 8);
    assert_int_equal(ev->data_len, strlen(data));
    assert_memory_equal(ev->data, data, strlen(data));
    assert_string_equal(ev->channel, "creator:abc");
    /* the native envelope is built from the parsed fields */
    size_t elen;
    const char *env = event_envelope(ev, &elen);
    assert_non_null(memmem(env, elen, "\"offset\":7", 10));
    event_unref(ev);
    buf_free(&b);
}

static void test_wire_name_may_hold_spaces_and_digits(void **state)
{
    (void)state;
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "1 1 "), 0);
    assert_int_equal(wire_tail(&b, 5, ID, "a 12 b", 6, "[1, 2]", 6), 0);
    event_t *ev = wire_parse("c", 1, b.data, b.len);
    assert_non_null(ev);
    assert_memory_equal(ev->name, "a 12 b", 6);
    assert_memory_equal(ev->data, "[1, 2]", 6);
    event_unref(ev);
    buf_free(&b);
}

static void test_wire_rejects_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "7",
        "7 42",
        "0 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 1 ax",     /* offset 0 */
        "x 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 1 ax",     /* not a number */
        "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6 1 ax",      /* short id */
        "1 1 5 3F2B8C1E-9A4D-4B7E-8C2F-1A2B3C4D5E6F 1 ax",     /* not lowercase hex */
        "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 0 ax",     /* empty name */
        "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 2 ax",     /* name takes all: no data */
        "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 256 ax",   /* name over 255 */
        "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 99999999999999999999 ax",
        "12345678901234567890 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 1 ax",   /* 20 digits */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        event_t *ev = wire_parse("c", 1, bad[i], strlen(bad[i]));
        if (ev) fail_msg("accepted: %s", bad[i]);
    }
    event_t *ok = wire_parse("c", 1, "1 1 5 3f2b8c1e-9a4d-4b7e-8c2f-1a2b3c4d5e6f 1 ax", 47);
    assert_non_null(ok);
    event_unref(ok);
}

static void test_redis_url(void **state)
{
    (void)state;
    redis_url_t u;
    char why[200];
    assert_int_equal(redis_url_parse("redis://127.0.0.1:16379", &u, why, sizeof why), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 16379);
    assert_null(u.password);
    assert_int_equal(u.db, 0);
    redis_url_free(&u);

    assert_int_equal(redis_url_parse("redis://redis.internal", &u, why, sizeof why), 0);
    assert_string_equal(u.host, "redis.internal");
    assert_int_equal(u.port, 6379);
    redis_url_free(&u);

    assert_int_equal(redis_url_parse("redis://:s3cr%40t@h:1/3", &u, why, sizeof why), 0);
    assert_null(u.user);
    assert_string_equal(u.password, "s3cr@t");
    assert_int_equal(u.db, 3);
    redis_url_free(&u);

    assert_int_equal(redis_url_parse("redis://herald:pw@[::1]:7000", &u, why, sizeof why), 0);
    assert_string_equal(u.user, "herald");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    redis_url_free(&u);

    assert_int_equal(redis_url_parse("rediss://h:6380", &u, why, sizeof why), -1);
    assert_non_null(strstr(why, "TLS"));
    const char *bad[] = {"http://h", "redis://", "redis://h:0", "redis://h:70000", "redis://h:12x", "redis://h/x",
                         "redis://[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (redis_url_parse(bad[i], &u, why, sizeof why) == 0) fail_msg("accepted: %s", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_round_trip),
        cmocka_unit_test(test_wire_name_may_hold_spaces_and_digits),
        cmocka_unit_test(test_wire_rejects_malformed),
        cmocka_unit_test(test_redis_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
