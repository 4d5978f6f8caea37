/* clarity: known answers for every Clarity type and for c32check addresses, the
 * int64 / int128 edges, nesting, every way a serialization can be malformed, every
 * truncation of valid values, and a guard page behind the input.
 *
 * Where the answers come from:
 * - serializations: produced with @stacks/transactions 7.6 (cvToHex), the library
 *   wallets and apps use to build these values;
 * - the decoded JSON: Chainhook's serialize_to_json (hirosystems/chainhook,
 *   components/chainhook-sdk/src/chainhooks/stacks/mod.rs), see src/chain/clarity.c;
 * - the Alice tuple: hirosystems/stacks-encoding-native-js,
 *   examples/encode-values.ts and examples/decode-cv-to-object.ts (its hex, its
 *   address SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW for hash 142a7f9b...);
 * - c32 addresses: stacks-network/c32check, tests/unitTests/src/index.ts
 *   (c32addressTests: 5 hashes x 6 versions), and the pair
 *   ST1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRTPGZGM / SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R
 *   (the devnet deployer and its mainnet form, one hash under versions 26 and 22). */
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

#include "chain/clarity.h"

static void hex_to_bytes(const char *hex, uint8_t *out, size_t *n)
{
    if (hex[0] == '0' && hex[1] == 'x') hex += 2;
    size_t len = strlen(hex) / 2;
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    *n = len;
}

/* Decodes hex and compares with the JSON text want (parsed, so key order and
 * spacing do not matter; json_equal compares integers by value and type). */
static void expect(const char *hex, const char *want)
{
    char why[128] = "";
    json_t *got = clarity_decode_hex(hex, strlen(hex), why, sizeof why);
    if (!got) fail_msg("%s: %s", hex, why);
    json_error_t err;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &err);
    if (!w) fail_msg("bad expectation %s: %s", want, err.text);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("%s\n  got  %s\n  want %s", hex, g, want);
    }
    json_decref(got);
    json_decref(w);
}

static void expect_fail(const char *hex, const char *why_part)
{
    char why[128] = "";
    json_t *got = clarity_decode_hex(hex, strlen(hex), why, sizeof why);
    if (got) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("accepted %s as %s", hex, g);
    }
    if (!strstr(why, why_part)) fail_msg("%s: reason \"%s\" lacks \"%s\"", hex, why, why_part);
}

/* ---- each type ---- */

static void test_clarity_uint_and_int(void **state)
{
    (void)state;
    expect("0x0100000000000000000000000000000000", "0");
    expect("0x01000000000000000000000000000003e8", "1000");
    expect("0x00ffffffffffffffffffffffffffffffff", "-1");
    expect("0x00000000000000000000000000000000fa", "250");
    expect("0x0000000000000000000000000000000000", "0");
}

static void test_clarity_int128_min_max(void **state)
{
    (void)state;
    expect("0x007fffffffffffffffffffffffffffffff", "\"170141183460469231731687303715884105727\"");
    expect("0x0080000000000000000000000000000000", "\"-170141183460469231731687303715884105728\"");
    expect("0x01ffffffffffffffffffffffffffffffff", "\"340282366920938463463374607431768211455\"");
}

/* Up to int64 a JSON number, exactly as Chainhook; beyond, the decimal string. */
static void test_clarity_int64_boundary(void **state)
{
    (void)state;
    expect("0x0000000000000000007fffffffffffffff", "9223372036854775807");
    expect("0x0000000000000000008000000000000000", "\"9223372036854775808\"");
    expect("0x00ffffffffffffffff8000000000000000", "-9223372036854775808");
    expect("0x00ffffffffffffffff7fffffffffffffff", "\"-9223372036854775809\"");
    expect("0x0100000000000000007fffffffffffffff", "9223372036854775807");
    expect("0x0100000000000000008000000000000000", "\"9223372036854775808\"");
    expect("0x010000000000000000ffffffffffffffff", "\"18446744073709551615\"");
    expect("0x0100000000000000010000000000000000", "\"18446744073709551616\"");
    /* a uint with the top bit set is not negative */
    expect("0x0180000000000000000000000000000000", "\"170141183460469231731687303715884105728\"");
}

static void test_clarity_bool_optional_response(void **state)
{
    (void)state;
    expect("0x03", "true");
    expect("0x04", "false");
    expect("0x09", "null");
    expect("0x0a0100000000000000000000000000000005", "5");   /* (some u5) is 5 */
    expect("0x0a09", "null");                                /* (some none) is null too */
    expect("0x0700000000000000000000000000000000fa", "{\"result\":{\"success\":true,\"value\":250}}");
    expect("0x080100000000000000000000000000000193", "{\"result\":{\"success\":false,\"value\":403}}");
    expect("0x0703", "{\"result\":{\"success\":true,\"value\":true}}");   /* (ok true), Chainhook's docs' example */
}

static void test_clarity_buffer(void **state)
{
    (void)state;
    expect("0x0200000000", "\"0x\"");
    expect("0x0200000005deadbeef00", "\"0xdeadbeef00\"");
    /* the memo of a send-many-memo print in a Chainhook payload seen in the wild */
    expect("0x020000000e636174616d6172616e2073776170", "\"0x636174616d6172616e2073776170\"");
}

static void test_clarity_strings(void **state)
{
    (void)state;
    expect("0x0d0000001248656c6c6f2c2073747265616d21207e7b7d", "\"Hello, stream! ~{}\"");
    expect("0x0d00000000", "\"\"");
    expect("0x0d000000066109620a630d", "\"a\\tb\\nc\\r\"");
    expect("0x0e0000000e6f6720e2ad9020f09f92b820c3a9", "\"og \\u2b50 \\ud83d\\udcb8 \\u00e9\"");
    expect("0x0e00000000", "\"\"");
}

static void test_clarity_principals(void **state)
{
    (void)state;
    expect("0x0516a46ff88886c2ef9762d970b4d2c63678835bd39d", "\"SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7\"");
    expect("0x051a6d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce", "\"ST1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRTPGZGM\"");
    expect("0x05160000000000000000000000000000000000000000", "\"SP000000000000000000002Q6VF78\"");
    expect("0x06166d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce0d73747265616d2d7061792d7631",
           "\"SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-pay-v1\"");
}

static void test_clarity_list_and_tuple(void **state)
{
    (void)state;
    expect("0x0b00000000", "[]");
    expect("0x0b00000003010000000000000000000000000000000101000000000000000000000000000000020100000000000000000000000000000003",
           "[1,2,3]");
    /* names with Clarity's symbol characters, in byte order: "<=" < "a!?" < "z_9+" */
    expect("0x0c00000003023c3d01000000000000000000000000000000020361213f0100000000000000000000000000000001047a5f392b0100000000000000000000000000000003",
           "{\"<=\":2,\"a!?\":1,\"z_9+\":3}");
    /* a name sorts before its extensions: "a" < "ab" < "b" */
    expect("0x0c0000000301610302616204016203", "{\"a\":true,\"ab\":false,\"b\":true}");
}

/* A stream-pay print as the contract emits it. */
static void test_clarity_stream_created_print(void **state)
{
    (void)state;
    expect("0x0c0000000506616d6f756e7401000000000000000000000000000003e8056576656e740d0000000e73747265616d2d6372656174"
           "656409726563697069656e740516142a7f9b4d4c7d2fdbe69c0b6733a484f37bbc3b0673656e6465720516a46ff88886c2ef9762"
           "d970b4d2c63678835bd39d0973747265616d2d69640100000000000000000000000000000001",
           "{\"amount\":1000,\"event\":\"stream-created\",\"recipient\":\"SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW\","
           "\"sender\":\"SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7\",\"stream-id\":1}");
}

/* Tuples, lists, optionals and responses inside each other. */
static void test_clarity_nested(void **state)
{
    (void)state;
    expect("0x0c0000000505666c6167730b00000002030407686973746f72790b000000020a0c0000000202617401000000000000000000000000"
           "000249f1026f6b070909056f776e65720a06166d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce057661756c7403726573080c000000"
           "0204636f646500ffffffffffffffffffffffffffffffd6036d73670d000000046e6f70650973747265616d2d6964010000000000000000"
           "0000000000000007",
           "{\"flags\":[true,false],"
           "\"history\":[{\"at\":150001,\"ok\":{\"result\":{\"success\":true,\"value\":null}}},null],"
           "\"owner\":\"SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.vault\","
           "\"res\":{\"result\":{\"success\":false,\"value\":{\"code\":-42,\"msg\":\"nope\"}}},"
           "\"stream-id\":7}");
}

/* stacks-encoding-native-js's example tuple, every kind of leaf in one value. */
static void test_clarity_alice_tuple(void **state)
{
    (void)state;
    expect("0x0c00000007066163746976650307616464726573730516142a7f9b4d4c7d2fdbe69c0b6733a484f37bbc3b05616c6961730d000000"
           "05416c6963650762616c616e636501000000000000000000000000000007d00470696e670700000000000000000000000000000000fa"
           "0a7075626c69635f6b65790a020000002102d4dada83bff981f0cb7ebafcfc6fc7cb5e078b9ee2302a93aae19fb90f872e58047461"
           "67730b000000030e0000000b636f6e7472696275746f720e000000066f6720e2ad900e00000007636c6172697479",
           "{\"active\":true,\"address\":\"SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW\",\"alias\":\"Alice\","
           "\"balance\":2000,\"ping\":{\"result\":{\"success\":true,\"value\":250}},"
           "\"public_key\":\"0x02d4dada83bff981f0cb7ebafcfc6fc7cb5e078b9ee2302a93aae19fb90f872e58\","
           "\"tags\":[\"contributor\",\"og \\u2b50\",\"clarity\"]}");
}

/* Keys come out in the tuple's order, as Chainhook's BTreeMap writes them. */
static void test_clarity_tuple_key_order(void **state)
{
    (void)state;
    const char *hex = "0x0c00000003023c3d01000000000000000000000000000000020361213f0100000000000000000000000000000001047a5f392b0100000000000000000000000000000003";
    json_t *j = clarity_decode_hex(hex, strlen(hex), NULL, 0);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(s, "{\"<=\":2,\"a!?\":1,\"z_9+\":3}");
    free(s);
    json_decref(j);
}

static void test_clarity_hex_forms(void **state)
{
    (void)state;
    expect("0516A46FF88886C2EF9762D970B4D2C63678835BD39D", "\"SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7\"");
    expect("0X03", "true");
    expect("03", "true");
    uint8_t b[] = {0x0d, 0, 0, 0, 2, 'h', 'i'};
    json_t *j = clarity_decode(b, sizeof b, NULL, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), "hi");
    json_decref(j);
    /* the length given is honoured: what follows is not read */
    j = clarity_decode_hex("0x03ZZZZ", 4, NULL, 0);
    assert_non_null(j);
    assert_true(json_is_true(j));
    json_decref(j);
}

/* ---- depth ---- */

static char *nested_hex(size_t wrappers, const char *wrapper, const char *leaf)
{
    size_t wl = strlen(wrapper), ll = strlen(leaf);
    char *s = malloc(2 + wrappers * wl + ll + 1);
    strcpy(s, "0x");
    for (size_t i = 0; i < wrappers; i++) memcpy(s + 2 + i * wl, wrapper, wl);
    strcpy(s + 2 + wrappers * wl, leaf);
    return s;
}

static void test_clarity_depth_limit(void **state)
{
    (void)state;
    const char *wrappers[] = {"0a", "07", "08", "0b00000001", "0c000000010161"};
    for (size_t w = 0; w < sizeof wrappers / sizeof *wrappers; w++) {
        char *ok = nested_hex(CLARITY_MAX_DEPTH, wrappers[w], "03");
        char why[128] = "";
        json_t *j = clarity_decode_hex(ok, strlen(ok), why, sizeof why);
        if (!j) fail_msg("depth %d of %s refused: %s", CLARITY_MAX_DEPTH, wrappers[w], why);
        json_decref(j);
        free(ok);
        char *deep = nested_hex(CLARITY_MAX_DEPTH + 1, wrappers[w], "03");
        expect_fail(deep, "deeper");
        free(deep);
    }
    /* 64 somes around true is just true */
    char *s = nested_hex(CLARITY_MAX_DEPTH, "0a", "03");
    expect(s, "true");
    free(s);
    /* a long run of wrappers fails on depth, not on the stack */
    char *huge = nested_hex(100000, "0a", "03");
    expect_fail(huge, "deeper");
    free(huge);
}

/* ---- malformed ---- */

static void test_clarity_bad_hex(void **state)
{
    (void)state;
    expect_fail("", "empty");
    expect_fail("0x", "empty");
    expect_fail("0x030", "odd");
    expect_fail("0x0g", "not hex");
    expect_fail("0x 3", "not hex");
    expect_fail("xx03", "not hex");
    char why[64];
    assert_null(clarity_decode_hex(NULL, 0, why, sizeof why));
    assert_null(clarity_decode(NULL, 0, why, sizeof why));
    /* no why buffer: still NULL, no crash */
    assert_null(clarity_decode_hex("0x0f", 4, NULL, 0));
}

static void test_clarity_bad_type_byte(void **state)
{
    (void)state;
    expect_fail("0x0f", "unknown type byte 0x0f");
    expect_fail("0xff", "unknown type byte 0xff");
    expect_fail("0x0a0f", "unknown type byte 0x0f");
    expect_fail("0x0b000000010103", "uint: truncated");
}

static void test_clarity_trailing_bytes(void **state)
{
    (void)state;
    expect_fail("0x0303", "1 trailing");
    expect_fail("0x090000", "2 trailing");
    expect_fail("0x0200000000ff", "1 trailing");
}

static void test_clarity_length_overflow(void **state)
{
    (void)state;
    expect_fail("0x02ffffffff00", "beyond the input");
    expect_fail("0x0200000002ff", "beyond the input");
    expect_fail("0x0bffffffff03", "beyond the input");
    expect_fail("0x0a", "a value is missing");
    expect_fail("0x07", "a value is missing");
    expect_fail("0x0cffffffff0161", "beyond the input");
    expect_fail("0x0d80000000", "beyond the input");
    expect_fail("0x0e0000000561ff", "beyond the input");
    expect_fail("0x0d000000", "truncated length");
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d0561", "beyond the input");
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d", "truncated name length");
}

static void test_clarity_bad_principal(void **state)
{
    (void)state;
    expect_fail("0x0520a46ff88886c2ef9762d970b4d2c63678835bd39d", "version 32");
    expect_fail("0x05ffa46ff88886c2ef9762d970b4d2c63678835bd39d", "version 255");
    expect_fail("0x0516a46ff88886c2ef9762d970b4d2c63678835bd3", "principal: truncated");
    /* contract names: a letter first, then letters, digits, - and _ */
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d00", "invalid contract name");
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d013a", "invalid contract name");
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d0261ff", "invalid contract name");
    expect_fail("0x0616a46ff88886c2ef9762d970b4d2c63678835bd39d03612e62", "invalid contract name");
}

static void test_clarity_bad_tuple(void **state)
{
    (void)state;
    expect_fail("0x0c00000000", "no fields");
    /* "b" then "a": out of order; "a" twice: repeated */
    expect_fail("0x0c00000002016203016103", "out of order or repeated");
    expect_fail("0x0c00000002016103016103", "out of order or repeated");
    /* "ab" before "a" is out of order too (a prefix sorts first) */
    expect_fail("0x0c0000000202616203016103", "out of order or repeated");
    expect_fail("0x0c00000001000303", "invalid field name");
    expect_fail("0x0c00000001013103", "invalid field name");      /* "1" */
    expect_fail("0x0c00000001022d2d03", "invalid field name");    /* "--" */
    expect_fail("0x0c0000000102612203", "invalid field name");    /* "a\"" */
    expect_fail("0x0c00000001016103ff", "trailing");
    expect_fail("0x0c0000000105616263", "truncated field name");
}

static void test_clarity_bad_strings(void **state)
{
    (void)state;
    expect_fail("0x0d0000000161ff", "trailing");
    expect_fail("0x0d0000000180", "byte 0x80 not allowed");
    expect_fail("0x0d0000000100", "byte 0x00 not allowed");
    expect_fail("0x0d000000010b", "byte 0x0b not allowed");   /* \v is not Rust's ASCII whitespace */
    expect_fail("0x0d000000017f", "byte 0x7f not allowed");
    expect_fail("0x0e00000002c0af", "invalid UTF-8");          /* overlong '/' */
    expect_fail("0x0e00000003eda080", "invalid UTF-8");        /* a surrogate */
    expect_fail("0x0e00000002e2ad", "invalid UTF-8");          /* cut inside a character */
    expect_fail("0x0e00000004f4908080", "invalid UTF-8");      /* above U+10FFFF */
    /* U+0000 is valid UTF-8 and stays in the JSON string */
    json_t *j = clarity_decode_hex("0x0e00000003610062", 18, NULL, 0);
    assert_non_null(j);
    assert_int_equal(json_string_length(j), 3);
    assert_memory_equal(json_string_value(j), "a\0b", 3);
    json_decref(j);
}

/* Every proper prefix of a valid value is refused with a reason. */
static void test_clarity_every_truncation_fails(void **state)
{
    (void)state;
    const char *valid[] = {
        "0x0c00000007066163746976650307616464726573730516142a7f9b4d4c7d2fdbe69c0b6733a484f37bbc3b05616c6961730d000000"
        "05416c6963650762616c616e636501000000000000000000000000000007d00470696e670700000000000000000000000000000000fa"
        "0a7075626c69635f6b65790a020000002102d4dada83bff981f0cb7ebafcfc6fc7cb5e078b9ee2302a93aae19fb90f872e58047461"
        "67730b000000030e0000000b636f6e7472696275746f720e000000066f6720e2ad900e00000007636c6172697479",
        "0x06166d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce0d73747265616d2d7061792d7631",
        "0x080c0000000204636f646500ffffffffffffffffffffffffffffffd6036d73670d000000046e6f7065",
    };
    for (size_t v = 0; v < sizeof valid / sizeof *valid; v++) {
        size_t len = strlen(valid[v]);
        json_t *whole = clarity_decode_hex(valid[v], len, NULL, 0);
        assert_non_null(whole);
        json_decref(whole);
        for (size_t cut = 4; cut < len; cut += 2) {
            char why[128] = "";
            json_t *j = clarity_decode_hex(valid[v], cut, why, sizeof why);
            if (j) fail_msg("prefix of %zu hex digits accepted", cut - 2);
            if (!why[0]) fail_msg("prefix of %zu hex digits: no reason", cut - 2);
        }
    }
}

/* The decoder never reads past the input: each value and each of its prefixes is
 * placed against a page that cannot be read. */
static void test_clarity_guard_page_no_overread(void **state)
{
    (void)state;
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
    uint8_t *end = map + pg;
    const char *hexes[] = {
        "0x0c0000000505666c6167730b00000002030407686973746f72790b000000020a0c0000000202617401000000000000000000000000"
        "000249f1026f6b070909056f776e65720a06166d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce057661756c7403726573080c000000"
        "0204636f646500ffffffffffffffffffffffffffffffd6036d73670d000000046e6f70650973747265616d2d6964010000000000000000"
        "0000000000000007",
        "0x0e0000000e6f6720e2ad9020f09f92b820c3a9",
        "0x0200000005deadbeef00",
        "0x007fffffffffffffffffffffffffffffff",
    };
    uint8_t bytes[512];
    for (size_t h = 0; h < sizeof hexes / sizeof *hexes; h++) {
        size_t n;
        hex_to_bytes(hexes[h], bytes, &n);
        for (size_t len = 0; len <= n; len++) {
            memcpy(end - len, bytes, len);
            json_t *j = clarity_decode(end - len, len, NULL, 0);
            assert_true(len == n ? j != NULL : j == NULL);
            json_decref(j);
        }
        /* and as hex text against the page */
        size_t hl = strlen(hexes[h]);
        memcpy(end - hl, hexes[h], hl);
        json_t *j = clarity_decode_hex((const char *)end - hl, hl, NULL, 0);
        assert_non_null(j);
        json_decref(j);
    }
    munmap(map, (size_t)pg * 2);
}

/* ---- c32check ---- */

static void check_address(uint8_t version, const char *hash_hex, const char *want)
{
    uint8_t hash[20];
    size_t n;
    hex_to_bytes(hash_hex, hash, &n);
    assert_int_equal(n, 20);
    char out[CLARITY_ADDRESS_MAX];
    int len = clarity_c32_address(version, hash, out, sizeof out);
    if (len < 0 || strcmp(out, want) != 0) fail_msg("version %u %s: got %s, want %s", version, hash_hex, len < 0 ? "(error)" : out, want);
    assert_int_equal((size_t)len, strlen(want));
}

static void test_clarity_c32_known_answers(void **state)
{
    (void)state;
    static const char *hashes[5] = {
        "a46ff88886c2ef9762d970b4d2c63678835bd39d", "0000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000001", "1000000000000000000000000000000000000001",
        "1000000000000000000000000000000000000000",
    };
    static const uint8_t versions[6] = {22, 0, 31, 20, 26, 21};
    static const char *want[6][5] = {
        {"SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7", "SP000000000000000000002Q6VF78", "SP00000000000000000005JA84HQ",
         "SP80000000000000000000000000000004R0CMNV", "SP800000000000000000000000000000033H8YKK"},
        {"S02J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKPVKG2CE", "S0000000000000000000002AA028H", "S000000000000000000006EKBDDS",
         "S080000000000000000000000000000007R1QC00", "S080000000000000000000000000000003ENTGCQ"},
        {"SZ2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKQ9H6DPR", "SZ000000000000000000002ZE1VMN", "SZ00000000000000000005HZ3DVN",
         "SZ80000000000000000000000000000004XBV6MS", "SZ800000000000000000000000000000007VF5G0"},
        {"SM2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKQVX8X0G", "SM0000000000000000000062QV6X", "SM00000000000000000005VR75B2",
         "SM80000000000000000000000000000004WBEWKC", "SM80000000000000000000000000000000JGSYGV"},
        {"ST2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKQYAC0RQ", "ST000000000000000000002AMW42H", "ST000000000000000000042DB08Y",
         "ST80000000000000000000000000000006BYJ4R4", "ST80000000000000000000000000000002YBNPV3"},
        {"SN2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKP6D2ZK9", "SN000000000000000000003YDHWKJ", "SN00000000000000000005341MC8",
         "SN800000000000000000000000000000066KZWY0", "SN800000000000000000000000000000006H75AK"},
    };
    for (int v = 0; v < 6; v++)
        for (int h = 0; h < 5; h++) check_address(versions[v], hashes[h], want[v][h]);
    check_address(26, "6d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce", "ST1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRTPGZGM");
    check_address(22, "6d78de7b0625dfbfc16c3a8a5735f6dc3dc3f2ce", "SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R");
    check_address(22, "142a7f9b4d4c7d2fdbe69c0b6733a484f37bbc3b", "SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW");
}

static void test_clarity_c32_bad_arguments(void **state)
{
    (void)state;
    uint8_t hash[20] = {0xa4};
    char out[CLARITY_ADDRESS_MAX];
    assert_int_equal(clarity_c32_address(32, hash, out, sizeof out), -1);
    assert_int_equal(clarity_c32_address(255, hash, out, sizeof out), -1);
    /* "SP" + 39 digits needs 42 bytes with the NUL: 41 is too few, 42 is enough */
    uint8_t big[20];
    memset(big, 0xff, sizeof big);
    assert_int_equal(clarity_c32_address(22, big, out, 41), -1);
    assert_int_equal(clarity_c32_address(22, big, out, 42), 41);
    assert_int_equal(strlen(out), 41);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clarity_uint_and_int),
        cmocka_unit_test(test_clarity_int128_min_max),
        cmocka_unit_test(test_clarity_int64_boundary),
        cmocka_unit_test(test_clarity_bool_optional_response),
        cmocka_unit_test(test_clarity_buffer),
        cmocka_unit_test(test_clarity_strings),
        cmocka_unit_test(test_clarity_principals),
        cmocka_unit_test(test_clarity_list_and_tuple),
        cmocka_unit_test(test_clarity_stream_created_print),
        cmocka_unit_test(test_clarity_nested),
        cmocka_unit_test(test_clarity_alice_tuple),
        cmocka_unit_test(test_clarity_tuple_key_order),
        cmocka_unit_test(test_clarity_hex_forms),
        cmocka_unit_test(test_clarity_depth_limit),
        cmocka_unit_test(test_clarity_bad_hex),
        cmocka_unit_test(test_clarity_bad_type_byte),
        cmocka_unit_test(test_clarity_trailing_bytes),
        cmocka_unit_test(test_clarity_length_overflow),
        cmocka_unit_test(test_clarity_bad_principal),
        cmocka_unit_test(test_clarity_bad_tuple),
        cmocka_unit_test(test_clarity_bad_strings),
        cmocka_unit_test(test_clarity_every_truncation_fails),
        cmocka_unit_test(test_clarity_guard_page_no_overread),
        cmocka_unit_test(test_clarity_c32_known_answers),
        cmocka_unit_test(test_clarity_c32_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
