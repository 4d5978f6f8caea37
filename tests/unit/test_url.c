#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "http/url.h"

static url_t parse_ok(const char *s)
{
    url_t u;
    assert_int_equal(url_parse(s, &u), 0);
    return u;
}

static void test_url_http_default_port_and_root_path(void **state)
{
    (void)state;
    url_t u = parse_ok("http://127.0.0.1");
    assert_int_equal(u.scheme, URL_HTTP);
    assert_false(u.tls);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 80);
    assert_false(u.explicit_port);
    assert_string_equal(u.target, "/");
}

static void test_url_scheme_defaults_and_case(void **state)
{
    (void)state;
    url_t u = parse_ok("HTTPS://example.com");
    assert_int_equal(u.scheme, URL_HTTPS);
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
    u = parse_ok("ws://h/ws");
    assert_int_equal(u.scheme, URL_WS);
    assert_int_equal(u.port, 80);
    u = parse_ok("wss://h/ws");
    assert_int_equal(u.scheme, URL_WSS);
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
}

static void test_url_port_path_query_kept_fragment_dropped(void **state)
{
    (void)state;
    url_t u = parse_ok("ws://localhost:8080/ws?token=abc&x=1#frag");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 8080);
    assert_true(u.explicit_port);
    assert_string_equal(u.target, "/ws?token=abc&x=1");
}

static void test_url_query_without_path_gets_slash(void **state)
{
    (void)state;
    url_t u = parse_ok("http://h:1?a=b");
    assert_int_equal(u.port, 1);
    assert_string_equal(u.target, "/?a=b");
}

static void test_url_ipv6_brackets_with_and_without_port(void **state)
{
    (void)state;
    url_t u = parse_ok("ws://[::1]:9000/ws");
    assert_true(u.ipv6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.target, "/ws");
    u = parse_ok("http://[2001:db8::7]");
    assert_string_equal(u.host, "2001:db8::7");
    assert_int_equal(u.port, 80);
}

static void test_url_empty_port_means_default(void **state)
{
    (void)state;
    url_t u = parse_ok("http://h:/x");
    assert_int_equal(u.port, 80);
    assert_false(u.explicit_port);
}

static void test_url_port_bounds(void **state)
{
    (void)state;
    url_t u;
    assert_int_equal(parse_ok("http://h:65535").port, 65535);
    assert_int_equal(url_parse("http://h:65536", &u), HERALD_EINVAL);
    assert_int_equal(url_parse("http://h:0", &u), HERALD_EINVAL);
    assert_int_equal(url_parse("http://h:123456", &u), HERALD_EINVAL);
    assert_int_equal(url_parse("http://h:80a", &u), HERALD_EINVAL);
    assert_int_equal(url_parse("http://h:-1", &u), HERALD_EINVAL);
}

static void test_url_refuses_malformed(void **state)
{
    (void)state;
    url_t u;
    static const char *bad[] = {
        "", "127.0.0.1:8080", "ftp://h/", "http:/h", "http://", "http:///path", "http://:80",
        "http://user:pw@h/", "http://h /x", "http://h/a b", "http://h/\x01", "ws://[::1/ws",
        "ws://[::1]x/ws", "ws://[]/", "ws://[zz::1]/", "http://h]/", "httpx://h",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = url_parse(bad[i], &u);
        if (rc != HERALD_EINVAL)
            fail_msg("'%s' gave %d, expected EINVAL", bad[i], rc);
    }
}

static void test_url_host_too_long(void **state)
{
    (void)state;
    char s[400] = "http://";
    memset(s + 7, 'a', 300);
    s[307] = '\0';
    url_t u;
    assert_int_equal(url_parse(s, &u), HERALD_ETOOBIG);
}

static void test_url_host_header_default_port_omitted(void **state)
{
    (void)state;
    char out[300];
    url_t u = parse_ok("http://example.com:80/");
    assert_int_equal(url_host_header(&u, out, sizeof(out)), 11);
    assert_string_equal(out, "example.com");
    u = parse_ok("ws://[::1]:8080/ws");
    url_host_header(&u, out, sizeof(out));
    assert_string_equal(out, "[::1]:8080");
    u = parse_ok("wss://h");
    url_host_header(&u, out, sizeof(out));
    assert_string_equal(out, "h");
    assert_int_equal(url_host_header(&u, out, 1), HERALD_ETOOBIG);
}

static void test_url_query_append_encodes_and_separates(void **state)
{
    (void)state;
    url_t u = parse_ok("ws://h/ws");
    assert_int_equal(url_query_append(&u, "token", "a b/c+d=é"), 0);
    assert_string_equal(u.target, "/ws?token=a%20b%2Fc%2Bd%3D%C3%A9");
    u = parse_ok("ws://h/ws?x=1");
    assert_int_equal(url_query_append(&u, "token", "t-1._~"), 0);
    assert_string_equal(u.target, "/ws?x=1&token=t-1._~");
    u = parse_ok("ws://h/ws?");
    url_query_append(&u, "k", "v");
    assert_string_equal(u.target, "/ws?k=v");
    u = parse_ok("ws://h/ws?a=1&");
    url_query_append(&u, "k", "v");
    assert_string_equal(u.target, "/ws?a=1&k=v");
}

static void test_url_query_append_overflow_leaves_target(void **state)
{
    (void)state;
    url_t u = parse_ok("ws://h/ws");
    char big[URL_MAX_TARGET];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(url_query_append(&u, "token", big), HERALD_ETOOBIG);
    assert_string_equal(u.target, "/ws");
    /* exactly filling the buffer: "/ws?token=" is 10 bytes, plus the NUL */
    big[URL_MAX_TARGET - 11] = '\0';
    assert_int_equal(url_query_append(&u, "token", big), 0);
    assert_int_equal(strlen(u.target), URL_MAX_TARGET - 1);
}

static void test_url_path_join_slashes_and_query(void **state)
{
    (void)state;
    url_t u = parse_ok("http://h:8080");
    assert_int_equal(url_path_join(&u, "api/publish"), 0);
    assert_string_equal(u.target, "/api/publish");
    u = parse_ok("http://h/base/?q=1");
    url_path_join(&u, "/api/publish");
    assert_string_equal(u.target, "/base/api/publish");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_http_default_port_and_root_path),
        cmocka_unit_test(test_url_scheme_defaults_and_case),
        cmocka_unit_test(test_url_port_path_query_kept_fragment_dropped),
        cmocka_unit_test(test_url_query_without_path_gets_slash),
        cmocka_unit_test(test_url_ipv6_brackets_with_and_without_port),
        cmocka_unit_test(test_url_empty_port_means_default),
        cmocka_unit_test(test_url_port_bounds),
        cmocka_unit_test(test_url_refuses_malformed),
        cmocka_unit_test(test_url_host_too_long),
        cmocka_unit_test(test_url_host_header_default_port_omitted),
        cmocka_unit_test(test_url_query_append_encodes_and_separates),
        cmocka_unit_test(test_url_query_append_overflow_leaves_target),
        cmocka_unit_test(test_url_path_join_slashes_and_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
