/* iplimit: CIDR matching, the client address behind trusted proxies, and the
 * per-address connection rate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "auth/iplimit.h"

static void ip(const char *s, uint8_t out[16]) { assert_int_equal(ip_parse(s, strlen(s), out), 0); }

static void test_cidr_ipv4_prefix_boundaries(void **state)
{
    (void)state;
    cidr_t c;
    uint8_t a[16];
    assert_int_equal(cidr_parse("10.1.0.0/16", &c), 0);
    ip("10.1.255.255", a);
    assert_true(cidr_contains(&c, a));
    ip("10.2.0.0", a);
    assert_false(cidr_contains(&c, a));
    assert_int_equal(cidr_parse("192.168.1.7", &c), 0);   /* a bare address is /32 */
    ip("192.168.1.7", a);
    assert_true(cidr_contains(&c, a));
    ip("192.168.1.6", a);
    assert_false(cidr_contains(&c, a));
    assert_int_equal(cidr_parse("0.0.0.0/0", &c), 0);     /* every IPv4, no IPv6 */
    assert_true(cidr_contains(&c, a));
    ip("::1", a);
    assert_false(cidr_contains(&c, a));
}

static void test_cidr_ipv6_and_odd_prefix(void **state)
{
    (void)state;
    cidr_t c;
    uint8_t a[16];
    assert_int_equal(cidr_parse("fd00::/7", &c), 0);
    ip("fc12::1", a);
    assert_true(cidr_contains(&c, a));
    ip("fe80::1", a);
    assert_false(cidr_contains(&c, a));
}

static void test_cidr_rejects_garbage(void **state)
{
    (void)state;
    cidr_t c;
    assert_int_equal(cidr_parse("10.0.0.0/33", &c), -2);
    assert_int_equal(cidr_parse("10.0.0/8", &c), -2);
    assert_int_equal(cidr_parse("::1/129", &c), -2);
    assert_int_equal(cidr_parse("10.0.0.0/", &c), -2);
    assert_int_equal(cidr_parse("host", &c), -2);
}

static void test_client_address_ignores_xff_from_untrusted_peer(void **state)
{
    (void)state;
    cidr_t proxy;
    cidr_parse("127.0.0.1", &proxy);
    uint8_t peer[16], out[16];
    ip("203.0.113.9", peer);
    client_address(peer, "198.51.100.1", &proxy, 1, out);
    assert_memory_equal(out, peer, 16);
}

static void test_client_address_rightmost_untrusted_hop(void **state)
{
    (void)state;
    cidr_t proxies[2];
    cidr_parse("127.0.0.1", &proxies[0]);
    cidr_parse("10.0.0.0/8", &proxies[1]);
    uint8_t peer[16], out[16], want[16];
    ip("127.0.0.1", peer);
    /* the client forged the leftmost entry; the rightmost untrusted one is real */
    client_address(peer, "6.6.6.6, 198.51.100.7, 10.1.2.3", proxies, 2, out);
    ip("198.51.100.7", want);
    assert_memory_equal(out, want, 16);
    client_address(peer, NULL, proxies, 2, out);
    assert_memory_equal(out, peer, 16);
}

static void test_iplimit_counts_per_address_per_second(void **state)
{
    (void)state;
    iplimit_t *l = iplimit_create();
    uint8_t a[16], b[16];
    ip("198.51.100.1", a);
    ip("198.51.100.2", b);
    for (int i = 0; i < 3; i++) assert_true(iplimit_allow(l, a, 3, 5000));
    assert_false(iplimit_allow(l, a, 3, 5999));
    assert_true(iplimit_allow(l, b, 3, 5999));       /* another address has its own count */
    assert_true(iplimit_allow(l, a, 3, 6000));       /* a new second */
    assert_true(iplimit_allow(l, a, 0, 6000));       /* 0: off */
    iplimit_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_ipv4_prefix_boundaries),
        cmocka_unit_test(test_cidr_ipv6_and_odd_prefix),
        cmocka_unit_test(test_cidr_rejects_garbage),
        cmocka_unit_test(test_client_address_ignores_xff_from_untrusted_peer),
        cmocka_unit_test(test_client_address_rightmost_untrusted_hop),
        cmocka_unit_test(test_iplimit_counts_per_address_per_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
