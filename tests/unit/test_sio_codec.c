/* sio_codec: every Engine.IO type, polling bodies (several records, empty records,
 * trailing separator, base64 records, the packet limit), the Socket.IO packets real
 * clients send, the malformed ones a strict server refuses, and encoders pinned to
 * the bytes the reference socket.io-parser / engine.io-parser produce, then read
 * back by the parser. Every parsed input sits against a guard page so an over-read
 * faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/err.h"
#include "core/util.h"
#include "proto/sio_codec.h"

/* ---- guard-page input ---- */

typedef struct guarded {
    char *base;
    size_t size;
    char *p;   /* the copy, its last byte right before an inaccessible page */
} guarded_t;

static guarded_t guard(const char *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + page - 1) / page + 1;
    guarded_t g = {.size = (data_pages + 1) * page};
    g.base = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g.base != MAP_FAILED);
    assert_int_equal(mprotect(g.base + data_pages * page, page, PROT_NONE), 0);
    g.p = g.base + data_pages * page - n;
    if (n) memcpy(g.p, s, n);
    return g;
}

static void unguard(guarded_t *g) { munmap(g->base, g->size); }

/* sio_parse on a guarded copy of s[0..n). */
static int sio_parse_n(const char *s, size_t n, sio_packet_t *out, guarded_t *g)
{
    *g = guard(s, n);
    return sio_parse(g->p, n, out);
}

/* Parses a packet that must be accepted; the caller checks and releases. */
#define PARSE_OK(lit, pkt, g) assert_int_equal(sio_parse_n(lit, strlen(lit), pkt, g), 0)

static void assert_nsp(const sio_packet_t *p, const char *nsp)
{
    assert_int_equal(p->nsp_len, strlen(nsp));
    assert_memory_equal(p->nsp, nsp, p->nsp_len);
}

/* The payload serialized compactly with sorted keys, for comparison. */
static void assert_json(const json_t *v, const char *expected)
{
    assert_non_null(v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(s);
    assert_string_equal(s, expected);
    free(s);
}

/* Must be refused, leaving no reference and the defaults behind. */
static void assert_sio_bad_n(const char *s, size_t n)
{
    sio_packet_t p;
    guarded_t g;
    int rc = sio_parse_n(s, n, &p, &g);
    if (rc != HERALD_EINVAL) {
        print_error("accepted or wrong code %d: \"%.*s\"\n", rc, (int)n, s);
        sio_packet_clear(&p);
    }
    assert_int_equal(rc, HERALD_EINVAL);
    assert_null(p.data);
    assert_int_equal(p.ack_id, SIO_NO_ACK);
    assert_int_equal(p.attachments, 0);
    unguard(&g);
}

static void assert_sio_bad(const char *s) { assert_sio_bad_n(s, strlen(s)); }

/* ---- Engine.IO packets ---- */

static void test_eio_parse_every_type(void **st)
{
    (void)st;
    static const struct { const char *in; int type; const char *data; } cases[] = {
        {"0{\"sid\":\"x\"}", EIO_OPEN, "{\"sid\":\"x\"}"},
        {"1", EIO_CLOSE, ""},
        {"2", EIO_PING, ""},
        {"2probe", EIO_PING, "probe"},
        {"3", EIO_PONG, ""},
        {"3probe", EIO_PONG, "probe"},
        {"4hello", EIO_MESSAGE, "hello"},
        {"4", EIO_MESSAGE, ""},
        {"5", EIO_UPGRADE, ""},
        {"6", EIO_NOOP, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].in);
        guarded_t g = guard(cases[i].in, n);
        eio_packet_t p;
        assert_int_equal(eio_parse(g.p, n, &p), 0);
        assert_int_equal(p.type, cases[i].type);
        assert_false(p.binary);
        assert_int_equal(p.len, strlen(cases[i].data));
        assert_ptr_equal(p.data, g.p + 1);
        assert_memory_equal(p.data, cases[i].data, p.len);
        unguard(&g);
    }
}

static void test_eio_parse_empty_is_einval(void **st)
{
    (void)st;
    eio_packet_t p;
    guarded_t g = guard("", 0);
    assert_int_equal(eio_parse(g.p, 0, &p), HERALD_EINVAL);
    assert_int_equal(eio_parse(NULL, 0, &p), HERALD_EINVAL);
    unguard(&g);
}

static void test_eio_parse_unknown_types(void **st)
{
    (void)st;
    static const char *const bad[] = {"7", "9x", "/", "a", " 4", "\x1e", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        eio_packet_t p;
        guarded_t g = guard(bad[i], strlen(bad[i]));
        assert_int_equal(eio_parse(g.p, strlen(bad[i]), &p), HERALD_EINVAL);
        unguard(&g);
    }
}

static void test_eio_parse_b_prefix_base64_is_binary_message(void **st)
{
    (void)st;
    eio_packet_t p;
    guarded_t g = guard("bAQID", 5);   /* engine.io-parser: Buffer [1,2,3] */
    assert_int_equal(eio_parse(g.p, 5, &p), 0);
    assert_int_equal(p.type, EIO_MESSAGE);
    assert_true(p.binary);
    assert_int_equal(p.len, 4);
    assert_memory_equal(p.data, "AQID", 4);
    unguard(&g);

    g = guard("baGk=", 5);   /* "hi", padded */
    assert_int_equal(eio_parse(g.p, 5, &p), 0);
    assert_true(p.binary);
    assert_int_equal(p.len, 4);
    unguard(&g);

    g = guard("b", 1);   /* an empty buffer */
    assert_int_equal(eio_parse(g.p, 1, &p), 0);
    assert_true(p.binary);
    assert_int_equal(p.len, 0);
    unguard(&g);
}

static void test_eio_parse_b_prefix_bad_base64(void **st)
{
    (void)st;
    static const char *const bad[] = {"bAQI", "bA", "bAQ=D", "b=AAA", "bAQ-_", "bA===", "bAQ D", "b4hello"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        eio_packet_t p;
        guarded_t g = guard(bad[i], strlen(bad[i]));
        assert_int_equal(eio_parse(g.p, strlen(bad[i]), &p), HERALD_EINVAL);
        unguard(&g);
    }
}

/* ---- polling bodies ---- */

#define MAX_SEEN 8

typedef struct seen {
    int n;
    int stop_at;   /* return 99 on this call (1-based); 0 never */
    eio_packet_t p[MAX_SEEN];
} seen_t;

static int collect(void *arg, const eio_packet_t *p)
{
    seen_t *s = arg;
    assert_true(s->n < MAX_SEEN);
    s->p[s->n++] = *p;
    return s->n == s->stop_at ? 99 : 0;
}

static int payload(const char *body, size_t len, size_t max, seen_t *s, guarded_t *g)
{
    *g = guard(body, len);
    return eio_parse_payload(g->p, len, max, collect, s);
}

static void assert_seen(const seen_t *s, int i, int type, bool binary, const char *data)
{
    assert_int_equal(s->p[i].type, type);
    assert_int_equal(s->p[i].binary, binary);
    assert_int_equal(s->p[i].len, strlen(data));
    assert_memory_equal(s->p[i].data, data, s->p[i].len);
}

static void test_eio_payload_several_records_in_order(void **st)
{
    (void)st;
    /* engine.io-parser encodePayload of message "40", message 42["a"], Buffer "hi", pong */
    static const char body[] = "440\x1e" "442[\"a\"]\x1e" "baGk=\x1e" "3";
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload(body, sizeof body - 1, 16, &s, &g), 0);
    assert_int_equal(s.n, 4);
    assert_seen(&s, 0, EIO_MESSAGE, false, "40");
    assert_seen(&s, 1, EIO_MESSAGE, false, "42[\"a\"]");
    assert_seen(&s, 2, EIO_MESSAGE, true, "aGk=");
    assert_seen(&s, 3, EIO_PONG, false, "");
    unguard(&g);
}

static void test_eio_payload_single_record_without_separator(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("2probe", 6, 1, &s, &g), 0);
    assert_int_equal(s.n, 1);
    assert_seen(&s, 0, EIO_PING, false, "probe");
    unguard(&g);
}

static void test_eio_payload_empty_record_in_middle(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("4a\x1e\x1e" "2", 5, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 1);   /* the record before it was delivered */
    assert_seen(&s, 0, EIO_MESSAGE, false, "a");
    unguard(&g);
}

static void test_eio_payload_trailing_separator(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("4a\x1e", 3, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 1);
    unguard(&g);
}

static void test_eio_payload_leading_separator(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("\x1e" "4a", 3, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 0);
    unguard(&g);
}

static void test_eio_payload_empty_body(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("", 0, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 0);
    unguard(&g);
}

static void test_eio_payload_bad_record_stops_delivery(void **st)
{
    (void)st;
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload("41\x1e" "9x\x1e" "42", 8, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 1);
    unguard(&g);

    s = (seen_t){0};
    assert_int_equal(payload("4a\x1e" "b!!!!\x1e" "4b", 11, 16, &s, &g), HERALD_EINVAL);
    assert_int_equal(s.n, 1);
    unguard(&g);
}

static void test_eio_payload_max_packets_boundary(void **st)
{
    (void)st;
    static const char body[] = "41\x1e" "42\x1e" "43";
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload(body, sizeof body - 1, 3, &s, &g), 0);
    assert_int_equal(s.n, 3);
    unguard(&g);

    s = (seen_t){0};
    assert_int_equal(payload(body, sizeof body - 1, 2, &s, &g), HERALD_ETOOBIG);
    assert_int_equal(s.n, 0);   /* refused before any delivery */
    unguard(&g);

    s = (seen_t){0};
    assert_int_equal(payload("6", 1, 0, &s, &g), HERALD_ETOOBIG);
    assert_int_equal(s.n, 0);
    unguard(&g);
}

static void test_eio_payload_callback_result_stops(void **st)
{
    (void)st;
    static const char body[] = "41\x1e" "42\x1e" "43";
    seen_t s = {.stop_at = 2};
    guarded_t g;
    assert_int_equal(payload(body, sizeof body - 1, 8, &s, &g), 99);
    assert_int_equal(s.n, 2);
    unguard(&g);
}

/* ---- Engine.IO open ---- */

static void test_eio_encode_open_matches_reference(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(eio_encode_open(&b, "AbC-123_", true, 25000, 20000, 1000000), 0);
    assert_string_equal(b.data, "0{\"sid\":\"AbC-123_\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                                "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    b.len = 0;
    assert_int_equal(eio_encode_open(&b, "s", false, 1, 2, 3), 0);
    assert_string_equal(b.data, "0{\"sid\":\"s\",\"upgrades\":[],\"pingInterval\":1,\"pingTimeout\":2,\"maxPayload\":3}");
    /* It parses as an Engine.IO open carrying a JSON object. */
    eio_packet_t p;
    assert_int_equal(eio_parse(b.data, b.len, &p), 0);
    assert_int_equal(p.type, EIO_OPEN);
    json_t *o = json_loadb(p.data, p.len, 0, NULL);
    assert_true(json_is_object(o));
    json_decref(o);
    assert_int_equal(eio_encode_open(&b, NULL, true, 1, 2, 3), HERALD_EINVAL);
    buf_free(&b);
}

/* ---- Socket.IO packets from clients ---- */

static void test_sio_connect_main_no_payload(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0", &p, &g);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_nsp(&p, "/");
    assert_int_equal(p.ack_id, SIO_NO_ACK);
    assert_int_equal(p.attachments, 0);
    assert_null(p.data);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_connect_main_auth_token(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0{\"token\":\"x\"}", &p, &g);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_nsp(&p, "/");
    assert_json(p.data, "{\"token\":\"x\"}");
    sio_packet_clear(&p);
    assert_null(p.data);
    sio_packet_clear(&p);   /* twice is harmless */
    unguard(&g);
}

static void test_sio_connect_nsp_trailing_comma_no_payload(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0/admin,", &p, &g);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_nsp(&p, "/admin");
    assert_ptr_equal(p.nsp, g.p + 1);   /* a slice of the input */
    assert_null(p.data);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_connect_nsp_auth_token(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0/admin,{\"token\":\"x\"}", &p, &g);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_nsp(&p, "/admin");
    assert_json(p.data, "{\"token\":\"x\"}");
    sio_packet_clear(&p);
    unguard(&g);
}

/* The reference decoder reads the namespace to the end when no comma follows. */
static void test_sio_connect_nsp_without_comma_at_end(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0/admin", &p, &g);
    assert_nsp(&p, "/admin");
    assert_null(p.data);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_connect_explicit_root_nsp(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("0/,{}", &p, &g);
    assert_nsp(&p, "/");
    assert_json(p.data, "{}");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_nsp_nested_and_utf8(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("2/a/b-c_d.e~f,[\"x\"]", &p, &g);
    assert_nsp(&p, "/a/b-c_d.e~f");
    sio_packet_clear(&p);
    unguard(&g);
    PARSE_OK("2/caf\xc3\xa9,[\"x\"]", &p, &g);
    assert_nsp(&p, "/caf\xc3\xa9");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_event_subscribe_string(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("2[\"subscribe\",\"jobs\"]", &p, &g);
    assert_int_equal(p.type, SIO_EVENT);
    assert_nsp(&p, "/");
    assert_int_equal(p.ack_id, SIO_NO_ACK);
    assert_json(p.data, "[\"subscribe\",\"jobs\"]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_event_ack_id_then_object(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("212[\"subscribe\",{\"room\":\"market\",\"id\":\"m1\"}]", &p, &g);
    assert_int_equal(p.type, SIO_EVENT);
    assert_int_equal(p.ack_id, 12);
    assert_json(p.data, "[\"subscribe\",{\"id\":\"m1\",\"room\":\"market\"}]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_event_nsp_and_ack_id(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("2/admin,7[\"ping\"]", &p, &g);
    assert_int_equal(p.type, SIO_EVENT);
    assert_nsp(&p, "/admin");
    assert_int_equal(p.ack_id, 7);
    assert_json(p.data, "[\"ping\"]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_ack_nsp_and_id(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("3/admin,7[{\"ok\":true}]", &p, &g);
    assert_int_equal(p.type, SIO_ACK);
    assert_nsp(&p, "/admin");
    assert_int_equal(p.ack_id, 7);
    assert_json(p.data, "[{\"ok\":true}]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_ack_empty_args(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("30[]", &p, &g);
    assert_int_equal(p.type, SIO_ACK);
    assert_int_equal(p.ack_id, 0);
    assert_json(p.data, "[]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_disconnect_main_and_nsp(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("1", &p, &g);
    assert_int_equal(p.type, SIO_DISCONNECT);
    assert_nsp(&p, "/");
    assert_null(p.data);
    sio_packet_clear(&p);
    unguard(&g);
    PARSE_OK("1/admin,", &p, &g);
    assert_int_equal(p.type, SIO_DISCONNECT);
    assert_nsp(&p, "/admin");
    assert_null(p.data);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_connect_error_object(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("4/admin,{\"message\":\"nope\"}", &p, &g);
    assert_int_equal(p.type, SIO_CONNECT_ERROR);
    assert_json(p.data, "{\"message\":\"nope\"}");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_binary_event_placeholder_left_as_is(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("51-[\"up\",{\"_placeholder\":true,\"num\":0}]", &p, &g);
    assert_int_equal(p.type, SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 1);
    assert_int_equal(p.ack_id, SIO_NO_ACK);
    assert_nsp(&p, "/");
    assert_json(p.data, "[\"up\",{\"_placeholder\":true,\"num\":0}]");
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_binary_event_nsp_ack_two_attachments(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("52-/admin,3[\"up\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", &p, &g);
    assert_int_equal(p.type, SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 2);
    assert_nsp(&p, "/admin");
    assert_int_equal(p.ack_id, 3);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_binary_ack_max_attachments(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("610-4[{\"_placeholder\":true,\"num\":0}]", &p, &g);
    assert_int_equal(p.type, SIO_BINARY_ACK);
    assert_int_equal(p.attachments, SIO_MAX_ATTACHMENTS);
    assert_int_equal(p.ack_id, 4);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_ack_id_2pow53_boundary(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("29007199254740992[\"x\"]", &p, &g);
    assert_int_equal(p.ack_id, SIO_MAX_ACK_ID);
    assert_int_equal(p.ack_id, 9007199254740992LL);
    sio_packet_clear(&p);
    unguard(&g);
    assert_sio_bad("29007199254740993[\"x\"]");
    assert_sio_bad("29999999999999999[\"x\"]");    /* 16 digits, over 2^53 */
    assert_sio_bad("212345678901234567890[\"a\"]"); /* 20 digits */
    assert_sio_bad("318446744073709551617[]");      /* wraps a 64-bit accumulator */
}

/* The reference decoder reads "007" as 7; a client never writes it, but it is a number. */
static void test_sio_ack_id_leading_zeros(void **st)
{
    (void)st;
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("2007[\"a\"]", &p, &g);
    assert_int_equal(p.ack_id, 7);
    sio_packet_clear(&p);
    unguard(&g);
    assert_sio_bad("200000000000000007[\"a\"]");   /* 18 digits */
}

/* ---- malformed packets ---- */

static void test_sio_bad_types(void **st)
{
    (void)st;
    assert_sio_bad("9");
    assert_sio_bad("7[\"a\"]");
    assert_sio_bad("a");
    assert_sio_bad("/admin,");
    assert_sio_bad_n("", 0);
    sio_packet_t p;
    assert_int_equal(sio_parse(NULL, 0, &p), HERALD_EINVAL);
}

static void test_sio_event_without_payload(void **st)
{
    (void)st;
    assert_sio_bad("2");
    assert_sio_bad("2/admin,");
    assert_sio_bad("27");
    assert_sio_bad("5");
}

static void test_sio_event_wrong_shapes(void **st)
{
    (void)st;
    assert_sio_bad("2{}");
    assert_sio_bad("2[]");
    assert_sio_bad("2[1]");            /* the reference allows numbers; herald events are named */
    assert_sio_bad("2[null,\"a\"]");
    assert_sio_bad("2[[\"a\"]]");
    assert_sio_bad("2\"a\"");
    assert_sio_bad("51-{}");
}

static void test_sio_event_bad_json(void **st)
{
    (void)st;
    assert_sio_bad("2[\"a\"");
    assert_sio_bad("2[\"a\"]x");      /* junk after the payload */
    assert_sio_bad("2[\"a\"][\"b\"]");
    assert_sio_bad("2[\"a\",]");
    assert_sio_bad("2['a']");
    assert_sio_bad("2[\"\xc3\x28\"]");  /* invalid UTF-8 inside a string */
    assert_sio_bad("2[\"a\\u0000b\"]"); /* NUL would cut C strings short */
    assert_sio_bad_n("2[\"a\"]\0", 7);
}

static void test_sio_event_reserved_names(void **st)
{
    (void)st;
    assert_sio_bad("2[\"connect\"]");
    assert_sio_bad("2[\"connect_error\",1]");
    assert_sio_bad("2/admin,[\"disconnect\"]");
    assert_sio_bad("2[\"disconnecting\"]");
    assert_sio_bad("2[\"newListener\"]");
    assert_sio_bad("23[\"removeListener\"]");
    assert_sio_bad("51-[\"connect\",{\"_placeholder\":true,\"num\":0}]");
    /* Names that only start like one are fine. */
    sio_packet_t p;
    guarded_t g;
    PARSE_OK("2[\"connected\"]", &p, &g);
    sio_packet_clear(&p);
    unguard(&g);
}

static void test_sio_nsp_followed_by_junk(void **st)
{
    (void)st;
    assert_sio_bad("0/admin{\"token\":\"x\"}");   /* comma forgotten: not a namespace */
    assert_sio_bad("0/admin junk");
    assert_sio_bad("0/admin,junk");
    assert_sio_bad("0/admin,{\"token\":\"x\"}junk");
    assert_sio_bad("2/admin[\"a\"]");
    assert_sio_bad("2/admin ,[\"a\"]");
    assert_sio_bad("2/ad\"min,[\"a\"]");
    assert_sio_bad("2/ad\\min,[\"a\"]");
    assert_sio_bad("2/ad\tmin,[\"a\"]");
    assert_sio_bad("2/ad\x7fmin,[\"a\"]");
    assert_sio_bad("2/caf\xc3,[\"a\"]");         /* truncated UTF-8 */
    assert_sio_bad("2/\xed\xa0\x80,[\"a\"]");    /* a surrogate */
}

static void test_sio_nsp_without_slash(void **st)
{
    (void)st;
    assert_sio_bad("0admin,");
    assert_sio_bad("0admin,{\"token\":\"x\"}");
    assert_sio_bad("2admin,[\"a\"]");
    assert_sio_bad("2,[\"a\"]");
}

static void test_sio_negative_looking_ack_ids(void **st)
{
    (void)st;
    assert_sio_bad("2-1[\"a\"]");
    assert_sio_bad("3-1[]");
    assert_sio_bad("2/admin,-7[\"a\"]");
    assert_sio_bad("2+7[\"a\"]");
    assert_sio_bad("2 7[\"a\"]");
    assert_sio_bad("2 [\"a\"]");     /* the reference reads " " as id 0 */
    assert_sio_bad("2\n[\"a\"]");
    assert_sio_bad("0/admin, {}");
    assert_sio_bad("27.5[\"a\"]");
    assert_sio_bad("21e3[\"a\"]");
}

static void test_sio_ack_id_where_none_belongs(void **st)
{
    (void)st;
    assert_sio_bad("012{}");
    assert_sio_bad("0/admin,1");
    assert_sio_bad("13");
    assert_sio_bad("43{\"message\":\"x\"}");
}

static void test_sio_ack_without_id(void **st)
{
    (void)st;
    assert_sio_bad("3[]");
    assert_sio_bad("3/admin,[{\"ok\":true}]");
    assert_sio_bad("61-[{\"_placeholder\":true,\"num\":0}]");
    assert_sio_bad("37{}");
    assert_sio_bad("37");
}

static void test_sio_connect_disconnect_error_shapes(void **st)
{
    (void)st;
    assert_sio_bad("0[]");
    assert_sio_bad("0\"token\"");
    assert_sio_bad("0null");
    assert_sio_bad("0{\"a\":1,\"a\":2}");   /* duplicate keys */
    assert_sio_bad("1{}");
    assert_sio_bad("1/admin,{}");
    assert_sio_bad("4");
    assert_sio_bad("4\"Authentication failed\"");
    assert_sio_bad("4[]");
}

static void test_sio_binary_attachment_header(void **st)
{
    (void)st;
    assert_sio_bad("5-[\"a\"]");
    assert_sio_bad("50-[\"a\"]");
    assert_sio_bad("511-[\"a\"]");     /* over the limit */
    assert_sio_bad("51[\"a\"]");       /* no '-' */
    assert_sio_bad("51");
    assert_sio_bad("51-");
    assert_sio_bad("5x-[\"a\"]");
    assert_sio_bad("51000-[\"a\"]");
    assert_sio_bad("6-1-3[]");
}

/* ---- encoders, pinned to the reference encoder's bytes ---- */

static void test_sio_encode_connect_main_sid(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_connect(&b, NULL, "abc", NULL), 0);
    assert_string_equal(b.data, "40{\"sid\":\"abc\"}");
    b.len = 0;
    assert_int_equal(sio_encode_connect(&b, "/", "abc", NULL), 0);
    assert_string_equal(b.data, "40{\"sid\":\"abc\"}");
    b.len = 0;
    assert_int_equal(sio_encode_connect(&b, "", "abc", NULL), 0);
    assert_string_equal(b.data, "40{\"sid\":\"abc\"}");
    buf_free(&b);
}

static void test_sio_encode_connect_nsp_sid_pid(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_connect(&b, "/admin", "abc", "p1"), 0);
    assert_string_equal(b.data, "40/admin,{\"sid\":\"abc\",\"pid\":\"p1\"}");
    buf_free(&b);
}

static void test_sio_encode_connect_error_escapes_message(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_connect_error(&b, NULL, "Authentication failed"), 0);
    assert_string_equal(b.data, "44{\"message\":\"Authentication failed\"}");
    b.len = 0;
    assert_int_equal(sio_encode_connect_error(&b, "/admin", "Invalid \"ns\"\n"), 0);
    assert_string_equal(b.data, "44/admin,{\"message\":\"Invalid \\\"ns\\\"\\n\"}");
    buf_free(&b);
}

static void test_sio_encode_disconnect_main_and_nsp(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_disconnect(&b, NULL), 0);
    assert_string_equal(b.data, "41");
    b.len = 0;
    assert_int_equal(sio_encode_disconnect(&b, "/admin"), 0);
    assert_string_equal(b.data, "41/admin,");
    buf_free(&b);
}

static void test_sio_encode_event_args(void **st)
{
    (void)st;
    buf_t b = {0};
    const char *args[] = {"{\"p\":1.5,\"s\":\"x\"}"};
    size_t lens[] = {strlen(args[0])};
    assert_int_equal(sio_encode_event(&b, NULL, "trade", 5, args, lens, 1), 0);
    assert_string_equal(b.data, "42[\"trade\",{\"p\":1.5,\"s\":\"x\"}]");
    b.len = 0;
    assert_int_equal(sio_encode_event(&b, "/", "ev", 2, NULL, NULL, 0), 0);
    assert_string_equal(b.data, "42[\"ev\"]");
    buf_free(&b);
}

static void test_sio_encode_event_escapes_name_nul_terminated_args(void **st)
{
    (void)st;
    buf_t b = {0};
    const char *args[] = {"1", "null"};
    static const char name[] = "a\"b\\c\x01\xc3\xa9";
    assert_int_equal(sio_encode_event(&b, "/admin", name, sizeof name - 1, args, NULL, 2), 0);
    assert_string_equal(b.data, "42/admin,[\"a\\\"b\\\\c\\u0001\xc3\xa9\",1,null]");
    b.len = 0;
    const char *a2[] = {"{\"a\":[1,2]}"};
    assert_int_equal(sio_encode_event(&b, "/caf\xc3\xa9", "x\ty", 3, a2, NULL, 1), 0);
    assert_string_equal(b.data, "42/caf\xc3\xa9,[\"x\\ty\",{\"a\":[1,2]}]");
    buf_free(&b);
}

static void test_sio_encode_event_empty_name_null_pointer(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_event(&b, NULL, NULL, 0, NULL, NULL, 0), 0);
    assert_string_equal(b.data, "42[\"\"]");
    b.len = 0;
    assert_int_equal(sio_encode_connect(&b, NULL, "", ""), 0);
    assert_string_equal(b.data, "40{\"sid\":\"\",\"pid\":\"\"}");
    buf_free(&b);
}

static void test_sio_encode_event_name_with_nul_byte(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_event(&b, NULL, "a\0b", 3, NULL, NULL, 0), 0);
    assert_int_equal(b.len, 14);
    assert_memory_equal(b.data, "42[\"a\\u0000b\"]", 14);
    buf_free(&b);
}

static void test_sio_encode_ack_ids(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_ack(&b, NULL, 7, "{\"ok\":true}", 11), 0);
    assert_string_equal(b.data, "437[{\"ok\":true}]");
    b.len = 0;
    assert_int_equal(sio_encode_ack(&b, "/admin", 7, "{\"ok\":true}", 11), 0);
    assert_string_equal(b.data, "43/admin,7[{\"ok\":true}]");
    b.len = 0;
    assert_int_equal(sio_encode_ack(&b, NULL, 0, NULL, 0), 0);
    assert_string_equal(b.data, "430[]");
    b.len = 0;
    assert_int_equal(sio_encode_ack(&b, NULL, 0, "ignored", 0), 0);
    assert_string_equal(b.data, "430[]");
    b.len = 0;
    static const char arg[] = "{\"success\":true,\"room\":\"market:m1\"}";
    assert_int_equal(sio_encode_ack(&b, NULL, SIO_MAX_ACK_ID, arg, sizeof arg - 1), 0);
    assert_string_equal(b.data, "439007199254740992[{\"success\":true,\"room\":\"market:m1\"}]");
    buf_free(&b);
}

static void test_sio_encode_appends_after_existing_bytes(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "X"), 0);
    assert_int_equal(sio_encode_disconnect(&b, "/a"), 0);
    assert_int_equal(sio_encode_ack(&b, NULL, 1, "2", 1), 0);
    assert_string_equal(b.data, "X41/a,431[2]");
    buf_free(&b);
}

/* Every refused argument leaves the buffer exactly as it was. */
static void test_sio_encode_refusals_leave_buffer_unchanged(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "keep"), 0);
    const char *empty[] = {""};
    const char *one[] = {"1", NULL};
    assert_int_equal(sio_encode_event(&b, NULL, "disconnect", 10, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, "connect", 7, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, "ev", 2, empty, NULL, 1), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, "ev", 2, one, NULL, 2), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, "ev", 2, NULL, NULL, 1), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, "\xc3\x28", 2, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, NULL, NULL, 1, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, "admin", "ev", 2, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_event(&b, "/a,b", "ev", 2, NULL, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_disconnect(&b, "/a b"), HERALD_EINVAL);
    assert_int_equal(sio_encode_connect(&b, NULL, NULL, NULL), HERALD_EINVAL);
    assert_int_equal(sio_encode_connect(&b, NULL, "s", "\xff"), HERALD_EINVAL);
    assert_int_equal(sio_encode_connect_error(&b, NULL, NULL), HERALD_EINVAL);
    assert_int_equal(sio_encode_connect_error(&b, "/x{", "m"), HERALD_EINVAL);
    assert_int_equal(sio_encode_ack(&b, NULL, -1, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_ack(&b, NULL, SIO_MAX_ACK_ID + 1, NULL, 0), HERALD_EINVAL);
    assert_int_equal(sio_encode_ack(&b, "nsp", 1, NULL, 0), HERALD_EINVAL);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    buf_free(&b);
}

static void test_sio_event_name_reserved_exact_match(void **st)
{
    (void)st;
    assert_true(sio_event_name_reserved("connect", 7));
    assert_true(sio_event_name_reserved("removeListener", 14));
    assert_false(sio_event_name_reserved("connect", 6));
    assert_false(sio_event_name_reserved("connects", 8));
    assert_false(sio_event_name_reserved("subscribe", 9));
    assert_false(sio_event_name_reserved("", 0));
}

/* ---- round trips: encoder output read back by the parsers ---- */

/* Strips the Engine.IO "4" and parses the Socket.IO packet from a guarded copy. */
static void reparse(const buf_t *b, sio_packet_t *p, guarded_t *g)
{
    eio_packet_t e;
    assert_int_equal(eio_parse(b->data, b->len, &e), 0);
    assert_int_equal(e.type, EIO_MESSAGE);
    assert_int_equal(sio_parse_n(e.data, e.len, p, g), 0);
}

static void test_sio_roundtrip_event_with_nsp_and_escapes(void **st)
{
    (void)st;
    buf_t b = {0};
    static const char name[] = "tr\"ade\n\xe2\x82\xac";
    const char *args[] = {"{\"p\":1}", "[1,\"x\"]", "\"s\""};
    assert_int_equal(sio_encode_event(&b, "/admin", name, sizeof name - 1, args, NULL, 3), 0);
    sio_packet_t p;
    guarded_t g;
    reparse(&b, &p, &g);
    assert_int_equal(p.type, SIO_EVENT);
    assert_nsp(&p, "/admin");
    assert_int_equal(p.ack_id, SIO_NO_ACK);
    assert_int_equal(json_array_size(p.data), 4);
    json_t *n = json_array_get(p.data, 0);
    assert_int_equal(json_string_length(n), sizeof name - 1);
    assert_memory_equal(json_string_value(n), name, sizeof name - 1);
    assert_json(json_array_get(p.data, 2), "[1,\"x\"]");
    sio_packet_clear(&p);
    unguard(&g);
    buf_free(&b);
}

static void test_sio_roundtrip_ack_max_id(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_ack(&b, "/x", SIO_MAX_ACK_ID, "{\"type\":\"pong\"}", 15), 0);
    sio_packet_t p;
    guarded_t g;
    reparse(&b, &p, &g);
    assert_int_equal(p.type, SIO_ACK);
    assert_nsp(&p, "/x");
    assert_int_equal(p.ack_id, SIO_MAX_ACK_ID);
    assert_json(p.data, "[{\"type\":\"pong\"}]");
    sio_packet_clear(&p);
    unguard(&g);
    buf_free(&b);
}

static void test_sio_roundtrip_connect_disconnect_error(void **st)
{
    (void)st;
    buf_t b = {0};
    sio_packet_t p;
    guarded_t g;
    assert_int_equal(sio_encode_connect(&b, "/admin", "s\"1", "p"), 0);
    reparse(&b, &p, &g);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_nsp(&p, "/admin");
    assert_json(p.data, "{\"pid\":\"p\",\"sid\":\"s\\\"1\"}");
    sio_packet_clear(&p);
    unguard(&g);

    b.len = 0;
    assert_int_equal(sio_encode_disconnect(&b, "/admin"), 0);
    reparse(&b, &p, &g);
    assert_int_equal(p.type, SIO_DISCONNECT);
    assert_nsp(&p, "/admin");
    sio_packet_clear(&p);
    unguard(&g);

    b.len = 0;
    assert_int_equal(sio_encode_connect_error(&b, NULL, "Authentication failed"), 0);
    reparse(&b, &p, &g);
    assert_int_equal(p.type, SIO_CONNECT_ERROR);
    assert_nsp(&p, "/");
    assert_json(p.data, "{\"message\":\"Authentication failed\"}");
    sio_packet_clear(&p);
    unguard(&g);
    buf_free(&b);
}

/* Encoded packets joined by the separator make a polling body the payload parser splits back. */
static void test_eio_payload_roundtrip_encoded_packets(void **st)
{
    (void)st;
    buf_t b = {0};
    assert_int_equal(sio_encode_connect(&b, NULL, "abc", NULL), 0);
    assert_int_equal(buf_append(&b, "\x1e", 1), 0);
    assert_int_equal(sio_encode_event(&b, NULL, "ev", 2, NULL, NULL, 0), 0);
    assert_int_equal(buf_append(&b, "\x1e" "2", 2), 0);
    seen_t s = {0};
    guarded_t g;
    assert_int_equal(payload(b.data, b.len, 3, &s, &g), 0);
    assert_int_equal(s.n, 3);
    assert_seen(&s, 0, EIO_MESSAGE, false, "0{\"sid\":\"abc\"}");
    assert_seen(&s, 1, EIO_MESSAGE, false, "2[\"ev\"]");
    assert_seen(&s, 2, EIO_PING, false, "");
    unguard(&g);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eio_parse_every_type),
        cmocka_unit_test(test_eio_parse_empty_is_einval),
        cmocka_unit_test(test_eio_parse_unknown_types),
        cmocka_unit_test(test_eio_parse_b_prefix_base64_is_binary_message),
        cmocka_unit_test(test_eio_parse_b_prefix_bad_base64),
        cmocka_unit_test(test_eio_payload_several_records_in_order),
        cmocka_unit_test(test_eio_payload_single_record_without_separator),
        cmocka_unit_test(test_eio_payload_empty_record_in_middle),
        cmocka_unit_test(test_eio_payload_trailing_separator),
        cmocka_unit_test(test_eio_payload_leading_separator),
        cmocka_unit_test(test_eio_payload_empty_body),
        cmocka_unit_test(test_eio_payload_bad_record_stops_delivery),
        cmocka_unit_test(test_eio_payload_max_packets_boundary),
        cmocka_unit_test(test_eio_payload_callback_result_stops),
        cmocka_unit_test(test_eio_encode_open_matches_reference),
        cmocka_unit_test(test_sio_connect_main_no_payload),
        cmocka_unit_test(test_sio_connect_main_auth_token),
        cmocka_unit_test(test_sio_connect_nsp_trailing_comma_no_payload),
        cmocka_unit_test(test_sio_connect_nsp_auth_token),
        cmocka_unit_test(test_sio_connect_nsp_without_comma_at_end),
        cmocka_unit_test(test_sio_connect_explicit_root_nsp),
        cmocka_unit_test(test_sio_nsp_nested_and_utf8),
        cmocka_unit_test(test_sio_event_subscribe_string),
        cmocka_unit_test(test_sio_event_ack_id_then_object),
        cmocka_unit_test(test_sio_event_nsp_and_ack_id),
        cmocka_unit_test(test_sio_ack_nsp_and_id),
        cmocka_unit_test(test_sio_ack_empty_args),
        cmocka_unit_test(test_sio_disconnect_main_and_nsp),
        cmocka_unit_test(test_sio_connect_error_object),
        cmocka_unit_test(test_sio_binary_event_placeholder_left_as_is),
        cmocka_unit_test(test_sio_binary_event_nsp_ack_two_attachments),
        cmocka_unit_test(test_sio_binary_ack_max_attachments),
        cmocka_unit_test(test_sio_ack_id_2pow53_boundary),
        cmocka_unit_test(test_sio_ack_id_leading_zeros),
        cmocka_unit_test(test_sio_bad_types),
        cmocka_unit_test(test_sio_event_without_payload),
        cmocka_unit_test(test_sio_event_wrong_shapes),
        cmocka_unit_test(test_sio_event_bad_json),
        cmocka_unit_test(test_sio_event_reserved_names),
        cmocka_unit_test(test_sio_nsp_followed_by_junk),
        cmocka_unit_test(test_sio_nsp_without_slash),
        cmocka_unit_test(test_sio_negative_looking_ack_ids),
        cmocka_unit_test(test_sio_ack_id_where_none_belongs),
        cmocka_unit_test(test_sio_ack_without_id),
        cmocka_unit_test(test_sio_connect_disconnect_error_shapes),
        cmocka_unit_test(test_sio_binary_attachment_header),
        cmocka_unit_test(test_sio_encode_connect_main_sid),
        cmocka_unit_test(test_sio_encode_connect_nsp_sid_pid),
        cmocka_unit_test(test_sio_encode_connect_error_escapes_message),
        cmocka_unit_test(test_sio_encode_disconnect_main_and_nsp),
        cmocka_unit_test(test_sio_encode_event_args),
        cmocka_unit_test(test_sio_encode_event_escapes_name_nul_terminated_args),
        cmocka_unit_test(test_sio_encode_event_empty_name_null_pointer),
        cmocka_unit_test(test_sio_encode_event_name_with_nul_byte),
        cmocka_unit_test(test_sio_encode_ack_ids),
        cmocka_unit_test(test_sio_encode_appends_after_existing_bytes),
        cmocka_unit_test(test_sio_encode_refusals_leave_buffer_unchanged),
        cmocka_unit_test(test_sio_event_name_reserved_exact_match),
        cmocka_unit_test(test_sio_roundtrip_event_with_nsp_and_escapes),
        cmocka_unit_test(test_sio_roundtrip_ack_max_id),
        cmocka_unit_test(test_sio_roundtrip_connect_disconnect_error),
        cmocka_unit_test(test_eio_payload_roundtrip_encoded_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
