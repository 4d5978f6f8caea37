/* chainhook: webhook bodies into print events. The fixtures in
 * tests/fixtures/chainhook/ are deliveries for a stream-pay contract
 * (SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-pay-v1), shaped as chainhook
 * 1.x's serialize_stacks_payload_to_json writes them, the end-to-end tests post
 * the same files:
 *   apply-decoded.json       block A (150001), decode_clarity_values on ("value")
 *   apply-raw.json           the same block with decode_clarity_values off ("raw_value")
 *   apply-both.json          the same block with both, consistent
 *   apply-next.json          block B (150002): a withdrawal and a cancellation
 *   rollback.json            B rolled back
 *   reorg.json               B rolled back, its sibling B' applied in the same delivery
 *   duplicate.json           block A twice in one delivery (decoded, then raw)
 *   apply-big-amount.json    block C, an amount beyond 64 bits as a bare JSON number
 *   apply-big-amount-raw.json  the same as raw_value
 *   apply-undecodable.json   block B with the cancellation's raw_value cut short
 *   malformed-*.json         bodies to answer 400
 * The decoded values in the fixtures were written by a transcription of Chainhook's
 * serialize_to_json and the raw values by @stacks/transactions, so comparing the
 * two here checks herald's decoder against both. */
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

#include "chain/chainhook.h"

#define FIXTURE_DIR "tests/fixtures/chainhook/"
#define CONTRACT "SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-pay-v1"
#define TOKEN "SP1PQHQKV0RJXZFY1DGX8MNSNYVE3VGZJSRCBGD7R.stream-token"
#define ALICE "SP2J6ZY48GV1EZ5V2V5RB9MP66SW86PYKKNRV9EJ7"
#define BOB "SPA2MZWV9N67TBYVWTE0PSSKMJ2F6YXW7CBE6YPW"
#define HASH_A "0x9e632a51a6b0d337a0e214087e296fe76e4567ae69687daaf52cadbcca9aca94"
#define HASH_B "0x3968fdbe3864ee37c4d1bebf536941c057a2df66785f02fccad7d0aaa5aa0fbd"
#define HASH_B2 "0x8020ba1a2e23d1586d1ea349368d1d1d25cbbd59bd2c9b0a0636ee6d1facd204"
#define TX_CREATE1 "0xa73990b74d664565c94a636376c7de36b3a40ee2572b3393dfd96415d116faf9"
#define TX_CREATE2 "0xc43deebe5d71cfbfac88e938f3313cc781e0bae4606adc29576abad3fc685af6"
#define TX_WITHDRAW1 "0xf8bfb786d83c3aac56d0926d134f6927974bc15fe14b2a3c07691ea495b0b539"
#define TX_CANCEL2 "0x0b7065ab6d44c8b25d7124b60a460bf94a5f34587d8bf9611ddfa1fb207ada5b"
#define TX_WITHDRAW2 "0xafd04d3288cad9456ff0dd2278877434fb472a40f51619ed3ecefd2138cf33da"

static char *slurp(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, FIXTURE_DIR "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (tests run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static void parse_fixture(const char *name, chainhook_payload_t *p)
{
    size_t len;
    char *body = slurp(name, &len);
    char why[256] = "";
    if (chainhook_parse(body, len, p, why, sizeof why) != 0) fail_msg("%s: %s", name, why);
    free(body);   /* the payload keeps its own JSON: the body may go */
}

static int parse_str(const char *body, chainhook_payload_t *p, char *why, size_t why_len)
{
    return chainhook_parse(body, strlen(body), p, why, why_len);
}

static void expect_print(const chainhook_print_t *pr, int kind, uint64_t bindex, const char *bhash, const char *tx,
                         uint64_t eindex, const char *contract)
{
    assert_int_equal(pr->kind, kind);
    assert_int_equal(pr->block_index, bindex);
    assert_string_equal(pr->block_hash, bhash);
    assert_string_equal(pr->tx_hash, tx);
    assert_int_equal(pr->event_index, eindex);
    assert_string_equal(pr->contract, contract);
}

static void expect_json(const chainhook_print_t *pr, const char *want)
{
    if (!pr->value) fail_msg("no value: %s", pr->why);
    json_error_t err;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &err);
    if (!w) fail_msg("bad expectation: %s", err.text);
    if (!json_equal(pr->value, w)) {
        char *g = json_dumps(pr->value, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("got  %s\nwant %s", g, want);
    }
    json_decref(w);
}

static const char *str_field(const chainhook_print_t *pr, const char *key)
{
    return json_string_value(json_object_get(pr->value, key));
}

static json_int_t int_field(const chainhook_print_t *pr, const char *key)
{
    json_t *v = json_object_get(pr->value, key);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

/* ---- fixtures ---- */

static void check_block_a(const chainhook_payload_t *p, size_t at)
{
    const chainhook_print_t *pr = p->prints + at;
    expect_print(&pr[0], CHAINHOOK_APPLY, 150001, HASH_A, TX_CREATE1, 11, CONTRACT);
    expect_json(&pr[0], "{\"amount\":1000,\"end-block\":154321,\"event\":\"stream-created\",\"memo\":null,"
                         "\"recipient\":\"" BOB "\",\"sender\":\"" ALICE "\",\"start-block\":150001,\"stream-id\":1}");
    expect_print(&pr[1], CHAINHOOK_APPLY, 150001, HASH_A, TX_CREATE2, 13, TOKEN);
    expect_json(&pr[1], "{\"result\":{\"success\":true,\"value\":2500000}}");
    expect_print(&pr[2], CHAINHOOK_APPLY, 150001, HASH_A, TX_CREATE2, 14, CONTRACT);
    expect_json(&pr[2], "{\"amount\":2500000,\"end-block\":160000,\"event\":\"stream-created\","
                         "\"memo\":\"rent \\u2014 march \\u2b50\",\"recipient\":\"" ALICE "\",\"sender\":\"" BOB "\","
                         "\"start-block\":150001,\"stream-id\":2}");
}

static void test_chainhook_apply_decoded(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("apply-decoded.json", &p);
    assert_int_equal(p.count, 3);   /* the STX and FT transfers are not prints */
    check_block_a(&p, 0);
    chainhook_payload_free(&p);
}

static void test_chainhook_apply_raw(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("apply-raw.json", &p);
    assert_int_equal(p.count, 3);
    check_block_a(&p, 0);
    chainhook_payload_free(&p);
}

/* Herald's decoding of every raw_value equals Chainhook's "value" for it. */
static void test_chainhook_raw_decodes_as_chainhook_does(void **state)
{
    (void)state;
    const char *pairs[][2] = {
        {"apply-decoded.json", "apply-raw.json"},
        {"apply-big-amount.json", "apply-big-amount-raw.json"},
    };
    for (size_t i = 0; i < 2; i++) {
        chainhook_payload_t d, r;
        parse_fixture(pairs[i][0], &d);
        parse_fixture(pairs[i][1], &r);
        assert_int_equal(d.count, r.count);
        assert_true(d.count > 0);
        for (size_t k = 0; k < d.count; k++) {
            assert_non_null(d.prints[k].value);
            assert_non_null(r.prints[k].value);
            if (!json_equal(d.prints[k].value, r.prints[k].value)) fail_msg("%s print %zu differs", pairs[i][1], k);
            assert_int_equal(d.prints[k].event_index, r.prints[k].event_index);
        }
        chainhook_payload_free(&d);
        chainhook_payload_free(&r);
    }
}

/* Both given and consistent: the same result; given and different: "value" wins. */
static void test_chainhook_value_preferred_over_raw(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("apply-both.json", &p);
    assert_int_equal(p.count, 3);
    check_block_a(&p, 0);
    chainhook_payload_free(&p);

    const char *body =
        "{\"apply\":[{\"block_identifier\":{\"index\":7,\"hash\":\"0xb7\"},\"transactions\":[{"
        "\"transaction_identifier\":{\"hash\":\"0xt1\"},\"metadata\":{\"receipt\":{\"events\":["
        "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":0},\"data\":{\"contract_identifier\":\"" CONTRACT "\","
        "\"topic\":\"print\",\"value\":{\"from\":\"value\"},\"raw_value\":\"0x03\"}},"
        "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":1},\"data\":{\"contract_identifier\":\"" CONTRACT "\","
        "\"topic\":\"print\",\"value\":{\"from\":\"value\"},\"raw_value\":\"0xzz\"}}"
        "]}}}]}],\"rollback\":[]}";
    char why[128];
    assert_int_equal(parse_str(body, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 2);
    expect_json(&p.prints[0], "{\"from\":\"value\"}");
    expect_json(&p.prints[1], "{\"from\":\"value\"}");   /* a bad raw_value beside a value is not looked at */
    chainhook_payload_free(&p);
}

static void test_chainhook_apply_next(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("apply-next.json", &p);
    assert_int_equal(p.count, 2);
    expect_print(&p.prints[0], CHAINHOOK_APPLY, 150002, HASH_B, TX_WITHDRAW1, 1, CONTRACT);
    expect_json(&p.prints[0], "{\"amount\":250,\"event\":\"stream-withdrawn\",\"recipient\":\"" BOB "\","
                               "\"remaining\":750,\"stream-id\":1,\"total-withdrawn\":250}");
    expect_print(&p.prints[1], CHAINHOOK_APPLY, 150002, HASH_B, TX_CANCEL2, 2, CONTRACT);
    expect_json(&p.prints[1], "{\"cancelled-by\":\"" BOB "\",\"event\":\"stream-cancelled\",\"stream-id\":2,"
                               "\"unvested-amount\":2000000,\"vested-amount\":500000}");
    chainhook_payload_free(&p);
}

static void test_chainhook_rollback(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("rollback.json", &p);
    assert_int_equal(p.count, 2);
    expect_print(&p.prints[0], CHAINHOOK_ROLLBACK, 150002, HASH_B, TX_WITHDRAW1, 1, CONTRACT);
    expect_print(&p.prints[1], CHAINHOOK_ROLLBACK, 150002, HASH_B, TX_CANCEL2, 2, CONTRACT);
    assert_string_equal(str_field(&p.prints[1], "event"), "stream-cancelled");
    chainhook_payload_free(&p);
}

/* B rolled back before B' applies, though "apply" comes first in the body. */
static void test_chainhook_reorg_rollback_before_apply(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("reorg.json", &p);
    assert_int_equal(p.count, 4);
    expect_print(&p.prints[0], CHAINHOOK_ROLLBACK, 150002, HASH_B, TX_WITHDRAW1, 1, CONTRACT);
    expect_print(&p.prints[1], CHAINHOOK_ROLLBACK, 150002, HASH_B, TX_CANCEL2, 2, CONTRACT);
    expect_print(&p.prints[2], CHAINHOOK_APPLY, 150002, HASH_B2, TX_WITHDRAW2, 1, CONTRACT);
    assert_int_equal(int_field(&p.prints[2], "stream-id"), 2);
    assert_int_equal(int_field(&p.prints[2], "amount"), 100000);
    /* the withdrawal mined again: same transaction, another block and event index */
    expect_print(&p.prints[3], CHAINHOOK_APPLY, 150002, HASH_B2, TX_WITHDRAW1, 3, CONTRACT);
    assert_true(json_equal(p.prints[0].value, p.prints[3].value));
    chainhook_payload_free(&p);
}

/* A delivery that repeats a block yields its prints twice, with the same keys and
 * values: deduplication is the source's. */
static void test_chainhook_duplicate_block(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("duplicate.json", &p);
    assert_int_equal(p.count, 6);
    check_block_a(&p, 0);
    check_block_a(&p, 3);
    chainhook_payload_free(&p);
}

/* Chainhook writes a u128 as a bare number of up to 39 digits: the body is still
 * accepted, and the amount is the decimal string herald's own decoder gives. */
static void test_chainhook_big_amount(void **state)
{
    (void)state;
    const char *names[] = {"apply-big-amount.json", "apply-big-amount-raw.json"};
    for (size_t i = 0; i < 2; i++) {
        chainhook_payload_t p;
        parse_fixture(names[i], &p);
        assert_int_equal(p.count, 1);
        expect_print(&p.prints[0], CHAINHOOK_APPLY, 150003, p.prints[0].block_hash, p.prints[0].tx_hash, 0, CONTRACT);
        assert_string_equal(str_field(&p.prints[0], "amount"), "100000000000000000000");
        assert_int_equal(int_field(&p.prints[0], "stream-id"), 3);
        chainhook_payload_free(&p);
    }
}

static void test_chainhook_undecodable_print_kept(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("apply-undecodable.json", &p);
    assert_int_equal(p.count, 2);
    assert_non_null(p.prints[0].value);
    assert_string_equal(str_field(&p.prints[0], "event"), "stream-withdrawn");
    expect_print(&p.prints[1], CHAINHOOK_APPLY, 150002, HASH_B, TX_CANCEL2, 2, CONTRACT);
    assert_null(p.prints[1].value);
    if (!strstr(p.prints[1].why, "raw_value:")) fail_msg("why: %s", p.prints[1].why);
    chainhook_payload_free(&p);
}

static void test_chainhook_malformed_fixtures(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"malformed-not-json.json", "not JSON"},
        {"malformed-no-arrays.json", "no apply or rollback"},
        {"malformed-apply-not-array.json", "must be arrays"},
        {"malformed-block-no-identifier.json", "apply[0]: no block_identifier"},
        {"malformed-tx-no-hash.json", "apply[0].transactions[0]: no transaction_identifier.hash"},
        {"malformed-print-no-contract.json", "no contract_identifier"},
        {"malformed-chainhooks-v2.json", "Chainhooks 2.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len;
        char *body = slurp(cases[i][0], &len);
        chainhook_payload_t p;
        char why[256] = "";
        if (chainhook_parse(body, len, &p, why, sizeof why) != -1) fail_msg("%s accepted", cases[i][0]);
        if (!strstr(why, cases[i][1])) fail_msg("%s: reason \"%s\" lacks \"%s\"", cases[i][0], why, cases[i][1]);
        assert_null(p.root);
        assert_null(p.prints);
        assert_int_equal(p.count, 0);
        chainhook_payload_free(&p);
        free(body);
    }
}

/* ---- shapes, inline ---- */

#define BLOCK(events) \
    "{\"block_identifier\":{\"index\":5,\"hash\":\"0xb5\"},\"transactions\":[{\"transaction_identifier\":" \
    "{\"hash\":\"0xt5\"},\"metadata\":{\"receipt\":{\"events\":[" events "]}}}]}"
#define PRINT(index, raw) \
    "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":" #index "},\"data\":{\"contract_identifier\":" \
    "\"" CONTRACT "\",\"topic\":\"print\",\"raw_value\":\"" raw "\"}}"

static void expect_shape_error(const char *body, const char *why_part)
{
    chainhook_payload_t p;
    char why[256] = "";
    if (chainhook_parse(body, strlen(body), &p, why, sizeof why) != -1) fail_msg("accepted: %s", body);
    if (!strstr(why, why_part)) fail_msg("%s\n  reason \"%s\" lacks \"%s\"", body, why, why_part);
    assert_int_equal(p.count, 0);
    assert_null(p.root);
}

static void test_chainhook_shape_errors(void **state)
{
    (void)state;
    expect_shape_error("", "not JSON");
    expect_shape_error("   ", "not JSON");
    expect_shape_error("{\"apply\":[]", "not JSON");
    expect_shape_error("[]", "not a JSON object");
    expect_shape_error("\"apply\"", "not JSON");   /* jansson wants an object or array at the top */
    expect_shape_error("{}", "no apply or rollback");
    expect_shape_error("{\"apply\":{}}", "must be arrays");
    expect_shape_error("{\"apply\":[],\"rollback\":null}", "must be arrays");
    expect_shape_error("{\"apply\":[1]}", "apply[0]: not an object");
    expect_shape_error("{\"rollback\":[{}]}", "rollback[0]: no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":1},\"transactions\":[]}]}", "no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"hash\":\"0x1\"},\"transactions\":[]}]}", "no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":-1,\"hash\":\"0x1\"},\"transactions\":[]}]}",
                       "no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":\"1\",\"hash\":\"0x1\"},\"transactions\":[]}]}",
                       "no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":1,\"hash\":\"\"},\"transactions\":[]}]}",
                       "no block_identifier");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":1,\"hash\":\"0x1\"}}]}", "no transactions");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":1,\"hash\":\"0x1\"},\"transactions\":[7]}]}",
                       "transactions[0]: not an object");
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":1,\"hash\":\"0x1\"},\"transactions\":["
                       "{\"transaction_identifier\":{\"hash\":\"0xt\"},\"metadata\":{}}]}]}",
                       "no metadata.receipt.events");
    expect_shape_error("{\"apply\":[" BLOCK("3") "]}", "events[0]: not an object");
    expect_shape_error("{\"apply\":[" BLOCK("{\"data\":{}}") "]}", "events[0]: no type");
    expect_shape_error("{\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\"}") "]}", "no data object");
    expect_shape_error("{\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\",\"data\":{}}") "]}", "no topic");
    expect_shape_error("{\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\",\"position\":{\"index\":-2},"
                                            "\"data\":{\"topic\":\"print\",\"contract_identifier\":\"a.b\"}}") "]}",
                       "position without");
    expect_shape_error("{\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\",\"position\":3,"
                                            "\"data\":{\"topic\":\"print\",\"contract_identifier\":\"a.b\"}}") "]}",
                       "position without");
    /* a NUL inside a string the prints borrow would cut it short */
    expect_shape_error("{\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\",\"data\":{\"topic\":\"print\","
                                            "\"contract_identifier\":\"" CONTRACT "\\u0000x\",\"raw_value\":\"0x03\"}}") "]}",
                       "no contract_identifier");
    /* duplicate keys: which one counts is ambiguous */
    expect_shape_error("{\"apply\":[],\"apply\":[]}", "duplicate");
    /* a block index beyond 64 bits becomes a string, so not an index */
    expect_shape_error("{\"apply\":[{\"block_identifier\":{\"index\":99999999999999999999,\"hash\":\"0x1\"},"
                       "\"transactions\":[]}]}",
                       "no block_identifier");
    /* a real too large is still not JSON herald can read */
    expect_shape_error("{\"apply\":[],\"x\":1e999999}", "not JSON");
    chainhook_payload_t p;
    assert_int_equal(chainhook_parse(NULL, 0, &p, NULL, 0), -1);   /* no why buffer: no crash */
}

static void test_chainhook_only_prints_kept(void **state)
{
    (void)state;
    const char *body =
        "{\"apply\":[" BLOCK(
            "{\"type\":\"STXTransferEvent\",\"data\":{\"sender\":\"a\",\"recipient\":\"b\",\"amount\":\"1\"},\"position\":{\"index\":0}},"
            "{\"type\":\"SmartContractEvent\",\"data\":{\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"other\",\"raw_value\":\"0x03\"},\"position\":{\"index\":1}},"
            "{\"type\":\"DataVarSetEvent\",\"data\":{},\"position\":{\"index\":2}},"
            PRINT(3, "0x04")) "]}";
    chainhook_payload_t p;
    char why[128];
    assert_int_equal(parse_str(body, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 1);
    assert_int_equal(p.prints[0].event_index, 3);
    assert_true(json_is_false(p.prints[0].value));
    chainhook_payload_free(&p);
}

/* A transaction's prints come out by event index, whatever the receipt's order. */
static void test_chainhook_prints_sorted_within_tx(void **state)
{
    (void)state;
    const char *body = "{\"rollback\":[" BLOCK(PRINT(462, "0x0100000000000000000000000000000003") ","
                                                 PRINT(460, "0x0100000000000000000000000000000001") ","
                                                 PRINT(461, "0x0100000000000000000000000000000002")) "]}";
    chainhook_payload_t p;
    char why[128];
    assert_int_equal(parse_str(body, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(p.prints[i].kind, CHAINHOOK_ROLLBACK);
        assert_int_equal(p.prints[i].event_index, 460 + i);
        assert_int_equal(json_integer_value(p.prints[i].value), (json_int_t)(i + 1));
    }
    chainhook_payload_free(&p);
}

/* Old payloads had no position: the event's place in the receipt stands in. */
static void test_chainhook_no_position(void **state)
{
    (void)state;
    const char *body = "{\"apply\":[" BLOCK(
        "{\"type\":\"STXTransferEvent\",\"data\":{}},"
        "{\"type\":\"SmartContractEvent\",\"data\":{\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"print\",\"raw_value\":\"0x03\"}}") "]}";
    chainhook_payload_t p;
    char why[128];
    assert_int_equal(parse_str(body, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 1);
    assert_int_equal(p.prints[0].event_index, 1);
    chainhook_payload_free(&p);
}

static void test_chainhook_print_value_cases(void **state)
{
    (void)state;
    const char *body = "{\"apply\":[" BLOCK(
        "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":0},\"data\":{\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"print\"}},"
        "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":1},\"data\":{\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"print\",\"raw_value\":3}},"
        "{\"type\":\"SmartContractEvent\",\"position\":{\"index\":2},\"data\":{\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"print\",\"value\":null}},"
        PRINT(3, "0x0f") ","
        PRINT(4, "") ","
        PRINT(5, "0x0d0000000568656c6c6f")) "]}";
    chainhook_payload_t p;
    char why[128];
    assert_int_equal(parse_str(body, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 6);
    assert_null(p.prints[0].value);
    assert_string_equal(p.prints[0].why, "neither value nor raw_value");
    assert_null(p.prints[1].value);
    assert_string_equal(p.prints[1].why, "raw_value is not a string");
    /* a printed none, decoded by Chainhook: a JSON null value, not a missing one */
    assert_non_null(p.prints[2].value);
    assert_true(json_is_null(p.prints[2].value));
    assert_string_equal(p.prints[2].why, "");
    assert_null(p.prints[3].value);
    assert_string_equal(p.prints[3].why, "raw_value: unknown type byte 0x0f");
    assert_null(p.prints[4].value);
    assert_string_equal(p.prints[4].why, "raw_value: empty value");
    assert_string_equal(json_string_value(p.prints[5].value), "hello");
    for (size_t i = 0; i < p.count; i++) assert_true(p.prints[i].value || p.prints[i].why[0]);
    chainhook_payload_free(&p);
}

/* Only integer literals outside strings, beyond int64, are quoted. */
static void test_chainhook_big_integers_only_where_needed(void **state)
{
    (void)state;
    const char *body =
        "{\"rollback\":[],\"fee\":-99999999999999999999999,\"note\":\"x\\\" 123456789012345678901234 \\\\\","
        "\"ok\":[9223372036854775807,-9223372036854775808,1.5e300,0],"
        "\"apply\":[" BLOCK("{\"type\":\"SmartContractEvent\",\"position\":{\"index\":0},\"data\":{"
                            "\"contract_identifier\":\"" CONTRACT "\",\"topic\":\"print\",\"value\":{"
                            "\"a\":340282366920938463463374607431768211455,\"b\":-170141183460469231731687303715884105728,"
                            "\"c\":9223372036854775808,\"d\":-9223372036854775809,\"e\":[18446744073709551615,1]}}}") "]}";
    chainhook_payload_t p;
    char why[256] = "";
    if (parse_str(body, &p, why, sizeof why) != 0) fail_msg("%s", why);
    assert_int_equal(p.count, 1);
    expect_json(&p.prints[0], "{\"a\":\"340282366920938463463374607431768211455\","
                               "\"b\":\"-170141183460469231731687303715884105728\","
                               "\"c\":\"9223372036854775808\",\"d\":\"-9223372036854775809\","
                               "\"e\":[\"18446744073709551615\",1]}");
    json_t *root = p.root;
    assert_string_equal(json_string_value(json_object_get(root, "note")), "x\" 123456789012345678901234 \\");
    assert_string_equal(json_string_value(json_object_get(root, "fee")), "-99999999999999999999999");
    json_t *ok = json_object_get(root, "ok");
    assert_int_equal(json_integer_value(json_array_get(ok, 0)), INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(ok, 1)), INT64_MIN);
    assert_true(json_is_real(json_array_get(ok, 2)));
    chainhook_payload_free(&p);
    /* a leading zero stays invalid JSON rather than becoming a string */
    expect_shape_error("{\"apply\":[],\"x\":012345678901234567890}", "not JSON");
}

static void test_chainhook_empty_deliveries(void **state)
{
    (void)state;
    const char *bodies[] = {"{\"apply\":[],\"rollback\":[]}", "{\"apply\":[]}", "{\"rollback\":[]}",
                            "{\"apply\":[" BLOCK("") "]}"};
    for (size_t i = 0; i < 4; i++) {
        chainhook_payload_t p;
        char why[128];
        assert_int_equal(parse_str(bodies[i], &p, why, sizeof why), 0);
        assert_int_equal(p.count, 0);
        assert_non_null(p.root);
        chainhook_payload_free(&p);
    }
}

/* The caller may change a print's value (add "_chain") without touching the
 * payload or the other prints; freeing is idempotent. */
static void test_chainhook_values_are_owned_copies(void **state)
{
    (void)state;
    chainhook_payload_t p;
    parse_fixture("duplicate.json", &p);
    json_object_set_new(p.prints[0].value, "_chain", json_string("x"));
    assert_null(json_object_get(p.prints[3].value, "_chain"));
    json_t *orig = json_object_get(json_object_get(json_array_get(json_object_get(json_object_get(json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(p.root, "apply"), 0), "transactions"), 0),
        "metadata"), "receipt"), "events"), 0), "data"), "value");
    assert_non_null(orig);
    assert_null(json_object_get(orig, "_chain"));
    json_t *keep = json_incref(p.prints[1].value);
    chainhook_payload_free(&p);
    chainhook_payload_free(&p);
    assert_null(p.root);
    assert_int_equal(p.count, 0);
    assert_true(json_is_object(keep));   /* still alive on its own reference */
    json_decref(keep);
    chainhook_payload_t zero = {0};
    chainhook_payload_free(&zero);
    chainhook_payload_free(NULL);
}

/* jansson gets the length: a body against an unreadable page is read no further. */
static void test_chainhook_guard_page(void **state)
{
    (void)state;
    size_t len;
    char *body = slurp("reorg.json", &len);
    long pg = sysconf(_SC_PAGESIZE);
    size_t pages = (len + (size_t)pg - 1) / (size_t)pg + 1;
    char *map = mmap(NULL, pages * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    char *end = map + (pages - 1) * (size_t)pg;
    assert_int_equal(mprotect(end, (size_t)pg, PROT_NONE), 0);
    memcpy(end - len, body, len);
    chainhook_payload_t p;
    char why[128];
    assert_int_equal(chainhook_parse(end - len, len, &p, why, sizeof why), 0);
    assert_int_equal(p.count, 4);
    chainhook_payload_free(&p);
    for (size_t cut = 1; cut < len; cut += 97) {
        assert_int_equal(chainhook_parse(end - cut, cut, &p, why, sizeof why), -1);
    }
    munmap(map, pages * (size_t)pg);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chainhook_apply_decoded),
        cmocka_unit_test(test_chainhook_apply_raw),
        cmocka_unit_test(test_chainhook_raw_decodes_as_chainhook_does),
        cmocka_unit_test(test_chainhook_value_preferred_over_raw),
        cmocka_unit_test(test_chainhook_apply_next),
        cmocka_unit_test(test_chainhook_rollback),
        cmocka_unit_test(test_chainhook_reorg_rollback_before_apply),
        cmocka_unit_test(test_chainhook_duplicate_block),
        cmocka_unit_test(test_chainhook_big_amount),
        cmocka_unit_test(test_chainhook_undecodable_print_kept),
        cmocka_unit_test(test_chainhook_malformed_fixtures),
        cmocka_unit_test(test_chainhook_shape_errors),
        cmocka_unit_test(test_chainhook_only_prints_kept),
        cmocka_unit_test(test_chainhook_prints_sorted_within_tx),
        cmocka_unit_test(test_chainhook_no_position),
        cmocka_unit_test(test_chainhook_print_value_cases),
        cmocka_unit_test(test_chainhook_big_integers_only_where_needed),
        cmocka_unit_test(test_chainhook_empty_deliveries),
        cmocka_unit_test(test_chainhook_values_are_owned_copies),
        cmocka_unit_test(test_chainhook_guard_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
