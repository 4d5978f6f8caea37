/* abi: event signatures (canonical form, topic0, refusals) and the decoding of
 * hand-built logs: every value kind at its edges, arrays by the head/tail rules,
 * indexed values, and hostile data (truncation, offsets and lengths out of range,
 * aliasing offsets, a guard page behind the input).
 *
 * The data below is written word by word; each log's encoding was also checked
 * against ethers 6 (AbiCoder.decode) when the test was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "chain/abi.h"

/* 24 bytes of zeros or ones: a word is Z48 or F48 and 16 more hex digits */
#define Z48 "000000000000000000000000000000000000000000000000"
#define F48 "ffffffffffffffffffffffffffffffffffffffffffffffff"
#define U(x16) Z48 x16
#define ZERO U("0000000000000000")
#define ONE U("0000000000000001")
#define ADDR_PAD "000000000000000000000000"
_Static_assert(sizeof Z48 == 49 && sizeof F48 == 49 && sizeof ADDR_PAD == 25, "word macros");

#define TIPSENT "TipSent(address indexed tipper, address indexed creator, uint256 amount, string tipMode)"
#define TIPSENT_TOPIC0 "0x47699a4a144a6ecb85d9f1d3f809cbb382de4ad771c46d73422dd419cebec465"
#define TIPPER_TOPIC "0x" ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddc4"
/* mixed case on purpose: addresses come back lowercase */
#define CREATOR_TOPIC "0x" ADDR_PAD "Ab8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
#define TIPSENT_DATA                                                                                                  \
    "0x" U("00b1a2bc2ec50000") /* amount: 50000000000000000 wei, 0.05 ETH */                                            \
        U("0000000000000040")  /* tipMode: its tail starts 0x40 into the data */                                      \
        U("0000000000000007")  /* tipMode's length */                                                                 \
        "696e7374616e74" "00000000000000000000000000000000000000000000000000" /* "instant", padded */

static char why[256];

static void parse_ok(const char *sig, abi_event_t *ev)
{
    why[0] = '\0';
    if (abi_event_parse(sig, ev, why, sizeof why) != 0) fail_msg("refused %s: %s", sig, why);
}

/* Decodes data_hex as a log of sig whose only topic is topic0. */
static json_t *decode_data(const char *sig, const char *data_hex)
{
    abi_event_t ev;
    parse_ok(sig, &ev);
    const char *topics[] = {ev.topic0_hex};
    why[0] = '\0';
    json_t *v = abi_decode_log(&ev, topics, 1, data_hex, why, sizeof why);
    abi_event_free(&ev);
    return v;
}

static void assert_json(json_t *v, const char *want)
{
    if (!v) fail_msg("decoding failed: %s", why);
    char *got = json_dumps(v, JSON_COMPACT);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_decref(v);
}

static void expect_data(const char *sig, const char *data_hex, const char *want)
{
    assert_json(decode_data(sig, data_hex), want);
}

static void expect_refused(const char *sig, const char *data_hex, const char *reason)
{
    json_t *v = decode_data(sig, data_hex);
    if (v) {
        char *s = json_dumps(v, JSON_COMPACT);
        fail_msg("accepted %s as %s", data_hex, s);
    }
    if (!strstr(why, reason)) fail_msg("reason \"%s\" does not say \"%s\"", why, reason);
}

/* ------------------------------------------------------------------ signatures */

static void test_abi_parse_tipsent_canonical_and_topic0(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok(TIPSENT, &ev);
    assert_string_equal(ev.name, "TipSent");
    assert_string_equal(ev.canonical, "TipSent(address,address,uint256,string)");
    assert_string_equal(ev.topic0_hex, TIPSENT_TOPIC0);
    assert_int_equal(ev.topic0[0], 0x47);
    assert_int_equal(ev.topic0[31], 0x65);
    assert_int_equal(ev.count, 4);
    static const char *const names[] = {"tipper", "creator", "amount", "tipMode"};
    static const char *const types[] = {"address", "address", "uint256", "string"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(ev.params[i].name, names[i]);
        assert_string_equal(ev.params[i].type, types[i]);
        assert_int_equal(ev.params[i].indexed, i < 2);
    }
    abi_event_free(&ev);
    abi_event_free(&ev); /* zeroed: a second free is harmless */
    assert_null(ev.params);
}

static void test_abi_parse_transfer_topic0(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok("Transfer(address indexed from, address indexed to, uint256 value)", &ev);
    assert_string_equal(ev.canonical, "Transfer(address,address,uint256)");
    assert_string_equal(ev.topic0_hex, "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
    abi_event_free(&ev);
}

static void test_abi_parse_uint_int_canonical(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok("\tE ( uint a ,int b,uint[3][] c , int[] indexed d, uint8 e, int256[2] f, bytes g, bytes1 h,"
             " function i, bool[] j )  ",
             &ev);
    assert_string_equal(ev.canonical,
                        "E(uint256,int256,uint256[3][],int256[],uint8,int256[2],bytes,bytes1,function,bool[])");
    assert_string_equal(ev.params[2].type, "uint256[3][]");
    assert_string_equal(ev.params[3].type, "int256[]");
    assert_true(ev.params[3].indexed);
    assert_false(ev.params[4].indexed);
    assert_int_equal(ev.count, 10);
    abi_event_free(&ev);
    /* "uint" and "uint256" are one event: the same topic0 */
    abi_event_t a, b;
    parse_ok("E(uint x)", &a);
    parse_ok("E(uint256 y)", &b);
    assert_string_equal(a.topic0_hex, b.topic0_hex);
    abi_event_free(&a);
    abi_event_free(&b);
}

static void test_abi_parse_no_parameters(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok("  Ping ( ) ", &ev);
    assert_string_equal(ev.canonical, "Ping()");
    assert_int_equal(ev.count, 0);
    abi_event_free(&ev);
}

static void test_abi_parse_refusals(void **state)
{
    (void)state;
    static const struct { const char *sig, *reason; } bad[] = {
        {"", "must start with the event name"},
        {"(uint256 x)", "must start with the event name"},
        {"Transfer address", "expected '(' after the event name"},
        {"Transfer(address, address)", "parameter 1 needs a name"},
        {"T(uint256 indexed)", "parameter 1 needs a name"},
        {"T(uint256 x, uint256 x)", "parameter name x repeats"},
        {"T(uint256 x", "expected ',' or ')' after parameter 1"},
        {"T(uint256 x) extra", "unexpected text after ')'"},
        {"T(address indexed a, address indexed b, address indexed c, address indexed d)",
         "at most 3 parameters can be indexed"},
        {"T(uint7 x)", "parameter 1: \"uint7\" is not an ABI type"},
        {"T(uint264 x)", "\"uint264\" is not an ABI type"},
        {"T(uint0 x)", "\"uint0\" is not an ABI type"},
        {"T(uint08 x)", "\"uint08\" is not an ABI type"},
        {"T(int12 x)", "\"int12\" is not an ABI type"},
        {"T(bytes33 x)", "\"bytes33\" is not an ABI type"},
        {"T(bytes0 x)", "\"bytes0\" is not an ABI type"},
        {"T(byte x)", "\"byte\" is not an ABI type"},
        {"T(tuple x)", "parameter 1: tuples (structs) are not supported"},
        {"T(uint8 a, (address,uint256) t)", "parameter 2: tuples (structs) are not supported"},
        {"T(tuple(address,uint256)[] t)", "parameter 1: tuples (structs) are not supported"},
        {"T(fixed128x18 x)", "is not an ABI type"},
        {"T(uint256[0] x)", "\"uint256[0]\" is not an ABI type"},
        {"T(uint256[01] x)", "is not an ABI type"},
        {"T(uint256[ x)", "is not an ABI type"},
        {"T(uint256] x)", "is not an ABI type"},
        {"T(uint256[2]x] y)", "is not an ABI type"},
        {"T(bool x, (uint256 a) y)", "parameter 2: tuples (structs) are not supported"},
        {"T(uint256[][][][][][][][][] x)", "more than 8 array dimensions"},
        {"T(uint256[1024][1025] x)", "too large an array"},
        {"T(uint256[10000000][] x)", "is not an ABI type"},
        {"T(string[2000000] x)", "too large an array"},
        {"T(uint256 a, uint256 b c)", "expected ',' or ')' after parameter 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        abi_event_t ev;
        memset(&ev, 0xa5, sizeof ev);
        why[0] = '\0';
        if (abi_event_parse(bad[i].sig, &ev, why, sizeof why) == 0) fail_msg("accepted %s", bad[i].sig);
        if (!strstr(why, bad[i].reason)) fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].sig, why, bad[i].reason);
        assert_null(ev.params); /* refused: nothing to free */
        assert_null(ev.canonical);
    }
    abi_event_t ev;
    assert_int_equal(abi_event_parse(NULL, &ev, why, sizeof why), -1);
    /* 32 parameters are fine, a 33rd is not */
    char sig[1024] = "Many(";
    for (int i = 0; i < 33; i++) snprintf(sig + strlen(sig), sizeof sig - strlen(sig), "%suint8 p%d", i ? "," : "", i);
    strcat(sig, ")");
    assert_int_equal(abi_event_parse(sig, &ev, why, sizeof why), -1);
    assert_string_equal(why, "more than 32 parameters");
    char *last = strrchr(sig, ',');
    last[0] = ')', last[1] = '\0';
    parse_ok(sig, &ev);
    assert_int_equal(ev.count, 32);
    abi_event_free(&ev);
}

/* ------------------------------------------------------------------ numbers */

static void test_abi_u256_dec_edges(void **state)
{
    (void)state;
    static const struct { const char *hex, *dec; } cases[] = {
        {"00", "0"},
        {"01", "1"},
        {"3b9ac9ff", "999999999"},
        {"3b9aca00", "1000000000"}, /* one group boundary: a zero-padded group after it */
        {"0de0b6b3a7640000", "1000000000000000000"},
        {"010000000000000000", "18446744073709551616"},
        {"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
         "115792089237316195423570985008687907853269984665640564039457584007913129639935"},
        {"8000000000000000000000000000000000000000000000000000000000000000",
         "57896044618658097711785492504343953926634992332820282019728792003956564819968"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t w[32] = {0};
        size_t n = strlen(cases[i].hex) / 2;
        for (size_t j = 0; j < n; j++) {
            unsigned b;
            sscanf(cases[i].hex + 2 * j, "%2x", &b);
            w[32 - n + j] = (uint8_t)b;
        }
        char out[80];
        assert_int_equal(abi_u256_dec(w, out), strlen(cases[i].dec));
        assert_string_equal(out, cases[i].dec);
    }
}

/* ------------------------------------------------------------------ logs */

static void test_abi_decode_tipsent(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok(TIPSENT, &ev);
    const char *topics[] = {TIPSENT_TOPIC0, TIPPER_TOPIC, CREATOR_TOPIC};
    assert_json(abi_decode_log(&ev, topics, 3, TIPSENT_DATA, why, sizeof why),
                "{\"tipper\":\"0x5b38da6a701c568545dcfcb03fcb875f56beddc4\","
                "\"creator\":\"0xab8483f64d9c6d1ecf9b849ae677dd3315835cb2\","
                "\"amount\":\"50000000000000000\",\"tipMode\":\"instant\"}");
    /* topic0 compares without case */
    const char *upper[] = {"0x47699A4A144A6ECB85D9F1D3F809CBB382DE4AD771C46D73422DD419CEBEC465", TIPPER_TOPIC,
                           CREATOR_TOPIC};
    json_t *v = abi_decode_log(&ev, upper, 3, TIPSENT_DATA, why, sizeof why);
    assert_non_null(v);
    json_decref(v);
    abi_event_free(&ev);
}

static void test_abi_decode_topic_refusals(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok(TIPSENT, &ev);
    const char *two[] = {TIPSENT_TOPIC0, TIPPER_TOPIC};
    assert_null(abi_decode_log(&ev, two, 2, TIPSENT_DATA, why, sizeof why));
    assert_string_equal(why, "TipSent has 2 indexed parameters: expected 3 topics, got 2");
    const char *four[] = {TIPSENT_TOPIC0, TIPPER_TOPIC, CREATOR_TOPIC, CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, four, 4, TIPSENT_DATA, why, sizeof why));
    assert_non_null(strstr(why, "expected 3 topics, got 4"));
    const char *transfer[] = {"0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef", TIPPER_TOPIC,
                              CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, transfer, 3, TIPSENT_DATA, why, sizeof why));
    assert_string_equal(why, "topic0 is not the hash of TipSent(address,address,uint256,string)");
    const char *short0[] = {"0x47699a4a", TIPPER_TOPIC, CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, short0, 3, TIPSENT_DATA, why, sizeof why));
    const char *null0[] = {NULL, TIPPER_TOPIC, CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, null0, 3, TIPSENT_DATA, why, sizeof why));
    static const char *const bad_topics[] = {
        "0x" ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddc",    /* 63 digits */
        "0x" ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddc40", /* 65 digits */
        "0x" ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddcg",   /* not hex */
        "00" ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddc4",   /* no 0x */
        NULL,
    };
    for (size_t i = 0; i < sizeof bad_topics / sizeof *bad_topics; i++) {
        const char *t[] = {TIPSENT_TOPIC0, bad_topics[i], CREATOR_TOPIC};
        why[0] = '\0';
        assert_null(abi_decode_log(&ev, t, 3, TIPSENT_DATA, why, sizeof why));
        assert_string_equal(why, "tipper: topic is not 0x and 64 hex digits");
    }
    /* an indexed address is checked like a data word */
    const char *high[] = {TIPSENT_TOPIC0, "0x000000000000000000000001" "5b38da6a701c568545dcfcb03fcb875f56beddc4",
                          CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, high, 3, TIPSENT_DATA, why, sizeof why));
    assert_string_equal(why, "tipper: address with non-zero high bytes");
    abi_event_free(&ev);
}

static void test_abi_decode_uint256_max_and_uint8_range(void **state)
{
    (void)state;
    expect_data("E(uint256 a, uint a2, uint8 b, uint64 c)",
                "0x" F48 "ffffffffffffffff" F48 "ffffffffffffffff" U("00000000000000ff") U("ffffffffffffffff"),
                "{\"a\":\"115792089237316195423570985008687907853269984665640564039457584007913129639935\","
                "\"a2\":\"115792089237316195423570985008687907853269984665640564039457584007913129639935\","
                "\"b\":\"255\",\"c\":\"18446744073709551615\"}");
    expect_data("E(uint256 z)", "0x" ZERO, "{\"z\":\"0\"}");
    expect_refused("E(uint8 b)", "0x" U("0000000000000100"), "b: value does not fit uint8");
    expect_refused("E(uint64 c)", "0x" "000000000000000000000000000000000000000000000001" "0000000000000000",
                   "c: value does not fit uint64");
    expect_refused("E(uint248 d)", "0x" "01" "00000000000000000000000000000000000000000000000000000000000000",
                   "value does not fit uint248");
}

static void test_abi_decode_int_extremes(void **state)
{
    (void)state;
    expect_data("E(int256 a, int8 b, int8 c, int int_min, int16 d, int8 zero)",
                "0x" F48 "ffffffffffffffff"                                          /* -1 */
                    F48 "ffffffffffffff80"                                           /* -128 */
                    U("000000000000007f")                                            /* 127 */
                    "80000000000000000000000000000000" "00000000000000000000000000000000" /* -2^255 */
                    F48 "ffffffffffff8000"                                           /* int16 -32768 */
                    ZERO,
                "{\"a\":\"-1\",\"b\":\"-128\",\"c\":\"127\","
                "\"int_min\":\"-57896044618658097711785492504343953926634992332820282019728792003956564819968\","
                "\"d\":\"-32768\",\"zero\":\"0\"}");
    expect_data("E(int256 m)", "0x" "7fffffffffffffffffffffffffffffff" "ffffffffffffffffffffffffffffffff",
                "{\"m\":\"57896044618658097711785492504343953926634992332820282019728792003956564819967\"}");
}

static void test_abi_decode_int8_bad_sign_extension(void **state)
{
    (void)state;
    /* 128 without its sign bits, and 127 with them: neither is an int8 */
    expect_refused("E(int8 b)", "0x" U("0000000000000080"), "b: value is not a sign-extended int8");
    expect_refused("E(int8 b)", "0x" F48 "ffffffffffffff7f", "b: value is not a sign-extended int8");
    expect_refused("E(int8 b)", "0x" "fe" "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff80",
                   "not a sign-extended int8");
    /* int128: the high 16 bytes must repeat bit 127 */
    expect_refused("E(int128 b)", "0x" "00000000000000000000000000000001" "80000000000000000000000000000000",
                   "b: value is not a sign-extended int128");
    expect_data("E(int128 b)", "0x" "ffffffffffffffffffffffffffffffff" "80000000000000000000000000000000",
                "{\"b\":\"-170141183460469231731687303715884105728\"}");
}

static void test_abi_decode_fixed_bytes_and_padding(void **state)
{
    (void)state;
    expect_data("E(bytes32 a, bytes4 b, bytes1 c)",
                "0x" "000102030405060708090a0b0c0d0e0f" "101112131415161718191a1b1c1d1eff"
                     "deadbeef" "00000000000000000000000000000000000000000000000000000000"
                     "ab" "00000000000000000000000000000000000000000000000000000000000000",
                "{\"a\":\"0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff\","
                "\"b\":\"0xdeadbeef\",\"c\":\"0xab\"}");
    expect_refused("E(bytes4 b)", "0x" "deadbeef" "00000000000000000000000000000000000000000000000000000001",
                   "b: bytes4 with non-zero padding");
    expect_refused("E(bytes4 b)", "0x" "deadbeef" "80000000000000000000000000000000000000000000000000000000",
                   "bytes4 with non-zero padding");
}

static void test_abi_decode_bool(void **state)
{
    (void)state;
    expect_data("E(bool t, bool f)", "0x" ONE ZERO, "{\"t\":true,\"f\":false}");
    expect_refused("E(bool b)", "0x" U("0000000000000002"), "b: bool that is neither 0 nor 1");
    expect_refused("E(bool b)", "0x" "01" "00000000000000000000000000000000000000000000000000000000000001",
                   "bool that is neither 0 nor 1");
}

static void test_abi_decode_address_and_function(void **state)
{
    (void)state;
    expect_data("E(address a, function f)",
                "0x" ADDR_PAD "ab8483f64d9c6d1ecf9b849ae677dd3315835cb2"
                     "ab8483f64d9c6d1ecf9b849ae677dd3315835cb2" "a9059cbb" "0000000000000000",
                "{\"a\":\"0xab8483f64d9c6d1ecf9b849ae677dd3315835cb2\","
                "\"f\":\"0xab8483f64d9c6d1ecf9b849ae677dd3315835cb2a9059cbb\"}");
    expect_refused("E(address a)", "0x" "ff0000000000000000000000" "ab8483f64d9c6d1ecf9b849ae677dd3315835cb2",
                   "a: address with non-zero high bytes");
    expect_refused("E(function f)",
                   "0x" "ab8483f64d9c6d1ecf9b849ae677dd3315835cb2" "a9059cbb" "0000000000000001",
                   "f: function with non-zero padding");
}

static void test_abi_decode_bytes_and_strings(void **state)
{
    (void)state;
    expect_data("E(bytes b, string empty, string raw, string utf8, bytes none)",
                "0x" U("00000000000000a0") /* b at 0xa0 */
                    U("00000000000000e0")  /* empty at 0xe0 */
                    U("0000000000000100")  /* raw at 0x100 */
                    U("0000000000000140")  /* utf8 at 0x140 */
                    U("0000000000000180")  /* none at 0x180 */
                    U("0000000000000003") "010203" "0000000000000000000000000000000000000000000000000000000000"
                    ZERO                    /* empty: length 0, no content */
                    U("0000000000000003") "fffe41" "0000000000000000000000000000000000000000000000000000000000"
                    U("0000000000000007") "c3a9e282ac00" "41" "00000000000000000000000000000000000000000000000000"
                    ZERO,
                "{\"b\":\"0x010203\",\"empty\":\"\",\"raw\":\"0xfffe41\",\"utf8\":\"\xc3\xa9\xe2\x82\xac\\u0000A\","
                "\"none\":\"0x\"}");
    /* a string of 40 bytes spans two content words */
    expect_data("E(string s)",
                "0x" U("0000000000000020") U("0000000000000028")
                    "30313233343536373839303132333435" "36373839303132333435363738393031"
                    "3233343536373839" "000000000000000000000000000000000000000000000000",
                "{\"s\":\"0123456789012345678901234567890123456789\"}");
}

static void test_abi_decode_arrays(void **state)
{
    (void)state;
    expect_data("E(uint256[] a)",
                "0x" U("0000000000000020") U("0000000000000003") ONE U("0000000000000002") U("0000000000000003"),
                "{\"a\":[\"1\",\"2\",\"3\"]}");
    expect_data("E(uint256[] a)", "0x" U("0000000000000020") ZERO, "{\"a\":[]}");
    /* string[]: the element offsets count from just after the length word */
    expect_data("E(string[] s)",
                "0x" U("0000000000000020") U("0000000000000002")
                    U("0000000000000040") U("0000000000000080")
                    ONE "61" "00000000000000000000000000000000000000000000000000000000000000"
                    U("0000000000000002") "6263" "000000000000000000000000000000000000000000000000000000000000",
                "{\"s\":[\"a\",\"bc\"]}");
    /* uint8[2][]: a dynamic array of static pairs, laid out inline */
    expect_data("E(uint8[2][] m)",
                "0x" U("0000000000000020") U("0000000000000002") ONE U("0000000000000002") U("0000000000000003")
                    U("0000000000000004"),
                "{\"m\":[[\"1\",\"2\"],[\"3\",\"4\"]]}");
    /* a static array sits in the head and moves the next offset along */
    expect_data("E(uint256[2] p, string q, bool r)",
                "0x" U("0000000000000005") U("0000000000000006") U("0000000000000080") ONE
                    U("0000000000000002") "6869" "000000000000000000000000000000000000000000000000000000000000",
                "{\"p\":[\"5\",\"6\"],\"q\":\"hi\",\"r\":true}");
    /* string[2]: static length, dynamic elements, so it goes to the tail */
    expect_data("E(string[2] s)",
                "0x" U("0000000000000020") U("0000000000000040") U("0000000000000080")
                    ONE "78" "00000000000000000000000000000000000000000000000000000000000000" ZERO,
                "{\"s\":[\"x\",\"\"]}");
    /* uint256[][]: arrays of arrays, offsets relative to each inner frame */
    expect_data("E(uint256[][] n)",
                "0x" U("0000000000000020") U("0000000000000002") U("0000000000000040") U("0000000000000080")
                    ONE U("0000000000000007") U("0000000000000002") U("0000000000000008") U("0000000000000009"),
                "{\"n\":[[\"7\"],[\"8\",\"9\"]]}");
    /* arrays of every elementary kind decode their elements by the same rules */
    expect_data("E(address[] a, bool[2] b, int8[] c)",
                "0x" U("0000000000000080") ONE ZERO U("00000000000000c0")
                    ONE ADDR_PAD "5b38da6a701c568545dcfcb03fcb875f56beddc4"
                    ONE F48 "fffffffffffffffe",
                "{\"a\":[\"0x5b38da6a701c568545dcfcb03fcb875f56beddc4\"],\"b\":[true,false],\"c\":[\"-2\"]}");
    expect_refused("E(bool[] b)", "0x" U("0000000000000020") ONE U("0000000000000002"), "b: bool that is neither");
}

static void test_abi_decode_indexed_dynamic_gives_topic(void **state)
{
    (void)state;
    abi_event_t ev;
    parse_ok("Named(string indexed label, uint256[2] indexed pair, int8 indexed delta, uint256 v)", &ev);
    const char *topics[] = {
        ev.topic0_hex,
        "0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8", /* keccak256("hello") */
        "0xABCDEF0000000000000000000000000000000000000000000000000000000001",
        "0x" F48 "ffffffffffffff80",
    };
    assert_json(abi_decode_log(&ev, topics, 4, "0x" U("0000000000000007"), why, sizeof why),
                "{\"label\":\"0x1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8\","
                "\"pair\":\"0xabcdef0000000000000000000000000000000000000000000000000000000001\","
                "\"delta\":\"-128\",\"v\":\"7\"}");
    abi_event_free(&ev);
    /* all indexed: the data is empty */
    parse_ok("Flags(bool indexed on, bytes indexed blob, bytes4 indexed sel)", &ev);
    const char *t2[] = {ev.topic0_hex, "0x" ONE, "0x" F48 "ffffffffffffffff", "0xa9059cbb" Z48 "00000000"};
    assert_json(abi_decode_log(&ev, t2, 4, "0x", why, sizeof why),
                "{\"on\":true,\"blob\":\"0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\","
                "\"sel\":\"0xa9059cbb\"}");
    const char *t3[] = {ev.topic0_hex, "0x" U("0000000000000002"), "0x" ZERO, "0x" ZERO};
    assert_null(abi_decode_log(&ev, t3, 4, "0x", why, sizeof why));
    assert_string_equal(why, "on: bool that is neither 0 nor 1");
    abi_event_free(&ev);
}

static void test_abi_decode_truncated_data(void **state)
{
    (void)state;
    /* the string's length says 7 but its content is missing */
    expect_refused("E(uint256 amount, string tipMode)", "0x" U("00b1a2bc2ec50000") U("0000000000000040") U("0000000000000007"),
                   "tipMode: length 7 runs past the data");
    /* the second head is missing */
    expect_refused("E(uint256 amount, string tipMode)", "0x" U("00b1a2bc2ec50000"), "tipMode: data too short");
    expect_refused("E(uint256 amount)", "0x", "amount: data too short");
    expect_refused("E(uint256 amount)", "0x" "00b1a2bc2ec50000", "data too short");
    expect_refused("E(uint256[3] a)", "0x" ONE ONE, "a: data too short (64 bytes) for uint256[3] at 0");
    /* the array says 3 elements, two are there */
    expect_refused("E(uint256[] a)", "0x" U("0000000000000020") U("0000000000000003") ONE ONE,
                   "a: array of 3 elements runs past the data");
    /* every cut of a valid log short of the full string is refused */
    const char *full = "0x" U("00b1a2bc2ec50000") U("0000000000000040") U("0000000000000007")
        "696e7374616e74";
    char cut[300];
    for (size_t n = 2; n < strlen(full); n += 2) {
        memcpy(cut, full, n);
        cut[n] = '\0';
        json_t *v = decode_data("E(uint256 amount, string tipMode)", cut);
        if (v) fail_msg("accepted a log cut at %zu digits", n - 2);
    }
    expect_data("E(uint256 amount, string tipMode)", full, "{\"amount\":\"50000000000000000\",\"tipMode\":\"instant\"}");
}

static void test_abi_decode_offsets_out_of_range(void **state)
{
    (void)state;
    expect_refused("E(string s)", "0x" U("0000000000001000") ZERO, "s: offset out of range");
    /* an offset just past the data, and one at its very end (no room for the length) */
    expect_refused("E(string s)", "0x" U("0000000000000041") ZERO, "offset out of range");
    expect_refused("E(string s)", "0x" U("0000000000000040") ZERO, "s: data too short");
    /* high bits set: 2^255, and 2^64 */
    expect_refused("E(string s)", "0x" "80000000000000000000000000000000" "00000000000000000000000000000020" ZERO,
                   "offset out of range");
    expect_refused("E(bytes s)", "0x" "000000000000000000000000000000000000000000000001" "0000000000000020" ZERO,
                   "offset out of range");
    /* an inner offset is relative to its own frame and checked against what is left */
    expect_refused("E(string[] s)",
                   "0x" U("0000000000000020") ONE U("0000000000000040"),
                   "s: offset out of range");
    expect_refused("E(string[] s)", "0x" U("0000000000000020") ONE U("0000000000000020"), "s: data too short");
}

static void test_abi_decode_length_overflow(void **state)
{
    (void)state;
    /* lengths whose byte count would wrap a size_t, or just exceed the data */
    expect_refused("E(bytes b)", "0x" U("0000000000000020") F48 "ffffffffffffffff", "b: length out of range");
    expect_refused("E(bytes b)", "0x" U("0000000000000020") U("ffffffffffffffff"), "length out of range");
    expect_refused("E(bytes b)", "0x" U("0000000000000020") U("0000000000000021") ONE, "length 33 runs past");
    expect_refused("E(uint256[] a)", "0x" U("0000000000000020") U("0800000000000001"), "length out of range");
    expect_refused("E(uint256[] a)", "0x" U("0000000000000020") U("0000000000000040") ZERO ZERO,
                   "array of 64 elements runs past");
    /* five offsets announced, three words there */
    expect_refused("E(string[2][] a)", "0x" U("0000000000000020") U("0000000000000005") ZERO ZERO ZERO,
                   "array of 5 elements runs past");
}

static void test_abi_decode_bad_hex(void **state)
{
    (void)state;
    expect_refused("E(uint8 a)", "0x" U("000000000000000"), "odd number of hex digits");
    expect_refused("E(uint8 a)", "0x" U("000000000000000g"), "non-hex character at 65");
    expect_refused("E(uint8 a)", "00" U("0000000000000001"), "data is not 0x-prefixed hex");
    expect_refused("E(uint8 a)", "", "data is not 0x-prefixed hex");
    expect_refused("E(uint8 a)", NULL, "data is not 0x-prefixed hex");
    expect_data("E(uint8 a)", "0X" U("00000000000000FF"), "{\"a\":\"255\"}");
    /* data after the last value is ignored, as the ABI allows */
    expect_data("E(uint8 a)", "0x" ONE ONE, "{\"a\":\"1\"}");
}

/* Offsets that all point at one big string: each element is read again, so the
 * output would grow with the square of the input. The decoder stops. */
static void test_abi_decode_aliasing_offsets_bounded(void **state)
{
    (void)state;
    enum { N = 200, STR = 3000 };
    size_t words = 2 + 2 * N + 1 + (STR + 31) / 32; /* enough for both logs below */
    char *hex = malloc(2 + 64 * words + 1), *p = hex;
    assert_non_null(hex);
    p += sprintf(p, "0x%064x%064x", 0x20, N);
    for (int i = 0; i < N; i++) p += sprintf(p, "%064x", N * 32); /* all at the one string */
    p += sprintf(p, "%064x", STR);
    for (size_t i = 0; i < (STR + 31) / 32 * 32; i++) p += sprintf(p, "41");
    expect_refused("E(string[] s)", hex, "s: offsets point at the same data too many times");
    /* words alone: N offsets at one inner array of N numbers would give N * N values */
    p = hex + sprintf(hex, "0x%064x%064x", 0x20, N);
    for (int i = 0; i < N; i++) p += sprintf(p, "%064x", N * 32);
    p += sprintf(p, "%064x", N);
    for (int i = 0; i < N; i++) p += sprintf(p, "%064x", i);
    expect_refused("E(uint256[][] a)", hex, "a: offsets point at the same data too many times");
    /* a few shared tails are tolerated */
    sprintf(hex, "0x%064x%064x%064x%064x%064x%064x", 0x20, 2, 0x40, 0x40, 1, 0);
    hex[strlen(hex) - 64] = '4', hex[strlen(hex) - 63] = '1';
    expect_data("E(string[] s)", hex, "{\"s\":[\"A\",\"A\"]}");
    free(hex);
}

/* The data and the topics end on a guard page: a read past a string's NUL faults.
 * Every prefix of the TipSent data is decoded from the page's end; only those that
 * hold the whole string (its padding may be missing) decode. */
static void test_abi_decode_guard_page(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    abi_event_t ev;
    parse_ok(TIPSENT, &ev);
    const char *topics[] = {TIPSENT_TOPIC0, TIPPER_TOPIC, CREATOR_TOPIC};
    size_t full = strlen(TIPSENT_DATA), content_end = 2 + 3 * 64 + 14;
    for (size_t n = 0; n <= full; n++) {
        char *data = map + page - (n + 1);
        memcpy(data, TIPSENT_DATA, n);
        data[n] = '\0';
        json_t *v = abi_decode_log(&ev, topics, 3, data, why, sizeof why);
        if ((v != NULL) != (n >= content_end && n % 2 == 0)) fail_msg("prefix of %zu digits: %s", n, why);
        json_decref(v);
    }
    /* a topic cut short, against the page end */
    char *t1 = map + page - 40;
    memcpy(t1, TIPPER_TOPIC, 39);
    t1[39] = '\0';
    const char *cut[] = {TIPSENT_TOPIC0, t1, CREATOR_TOPIC};
    assert_null(abi_decode_log(&ev, cut, 3, TIPSENT_DATA, why, sizeof why));
    cut[0] = t1;
    assert_null(abi_decode_log(&ev, cut, 3, TIPSENT_DATA, why, sizeof why));
    abi_event_free(&ev);
    munmap(map, (size_t)page * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_parse_tipsent_canonical_and_topic0),
        cmocka_unit_test(test_abi_parse_transfer_topic0),
        cmocka_unit_test(test_abi_parse_uint_int_canonical),
        cmocka_unit_test(test_abi_parse_no_parameters),
        cmocka_unit_test(test_abi_parse_refusals),
        cmocka_unit_test(test_abi_u256_dec_edges),
        cmocka_unit_test(test_abi_decode_tipsent),
        cmocka_unit_test(test_abi_decode_topic_refusals),
        cmocka_unit_test(test_abi_decode_uint256_max_and_uint8_range),
        cmocka_unit_test(test_abi_decode_int_extremes),
        cmocka_unit_test(test_abi_decode_int8_bad_sign_extension),
        cmocka_unit_test(test_abi_decode_fixed_bytes_and_padding),
        cmocka_unit_test(test_abi_decode_bool),
        cmocka_unit_test(test_abi_decode_address_and_function),
        cmocka_unit_test(test_abi_decode_bytes_and_strings),
        cmocka_unit_test(test_abi_decode_arrays),
        cmocka_unit_test(test_abi_decode_indexed_dynamic_gives_topic),
        cmocka_unit_test(test_abi_decode_truncated_data),
        cmocka_unit_test(test_abi_decode_offsets_out_of_range),
        cmocka_unit_test(test_abi_decode_length_overflow),
        cmocka_unit_test(test_abi_decode_bad_hex),
        cmocka_unit_test(test_abi_decode_aliasing_offsets_bounded),
        cmocka_unit_test(test_abi_decode_guard_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
