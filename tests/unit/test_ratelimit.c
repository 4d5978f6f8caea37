/* ratelimit: the token bucket behind limits.messages_per_second. Time is passed in,
 * so every scenario runs instantly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/ratelimit.h"

#define T0 1000000u

static void test_ratelimit_steady_under_limit_never_refused(void **state)
{
    (void)state;
    ratelimit_t r = {0};
    for (uint64_t i = 0; i < 1000; i++)   /* 40/s for 25 s against 50/s */
        assert_int_equal(ratelimit_take(&r, 50, T0 + i * 25), RATE_OK);
}

static void test_ratelimit_burst_of_one_second_allowed_then_refused(void **state)
{
    (void)state;
    ratelimit_t r = {0};
    for (int i = 0; i < 50; i++) assert_int_equal(ratelimit_take(&r, 50, T0), RATE_OK);
    assert_int_equal(ratelimit_take(&r, 50, T0), RATE_REFUSE);
    /* 20 ms later one token has come back */
    assert_int_equal(ratelimit_take(&r, 50, T0 + 20), RATE_OK);
}

static void test_ratelimit_zero_means_unlimited(void **state)
{
    (void)state;
    ratelimit_t r = {0};
    for (int i = 0; i < 10000; i++) assert_int_equal(ratelimit_take(&r, 0, T0), RATE_OK);
}

/* A client at twice the rate, in bursts of 10 every 100 ms: the bucket refills
 * between bursts, yet it is a flood and is closed after 5 s, not before. */
static void test_ratelimit_bursty_flood_closes_after_5s(void **state)
{
    (void)state;
    ratelimit_t r = {0};
    uint64_t closed_at = 0;
    for (uint64_t t = 0; t < 10000 && !closed_at; t += 100) {
        for (int i = 0; i < 10; i++) {
            if (ratelimit_take(&r, 50, T0 + t) == RATE_CLOSE) {
                closed_at = t;
                break;
            }
        }
    }
    assert_true(closed_at >= 5000);
    assert_true(closed_at <= 7000);
}

/* Refusals separated by a calm second are two floods, neither long enough. */
static void test_ratelimit_calm_second_resets_flood(void **state)
{
    (void)state;
    ratelimit_t r = {0};
    uint64_t t = 0;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 60; i++) assert_int_not_equal(ratelimit_take(&r, 50, T0 + t), RATE_CLOSE);
        t += 1500;   /* quiet: no message at all for 1.5 s */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit_steady_under_limit_never_refused),
        cmocka_unit_test(test_ratelimit_burst_of_one_second_allowed_then_refused),
        cmocka_unit_test(test_ratelimit_zero_means_unlimited),
        cmocka_unit_test(test_ratelimit_bursty_flood_closes_after_5s),
        cmocka_unit_test(test_ratelimit_calm_second_resets_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
