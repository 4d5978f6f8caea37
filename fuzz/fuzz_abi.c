/* libFuzzer target for the ABI decoder and the signature parser (src/chain/abi.c).
 *
 * Byte 0 chooses: 0..7 one of the fixed events below (together they cover every
 * value kind, static and dynamic arrays, nesting, indexed static and dynamic
 * parameters); 8 the rest is a signature for abi_event_parse.
 * For an event, byte 1 holds flags: bit 0, the rest is passed as data_hex as it is
 * (the hex parser is fuzzed too); bit 1, topic0 is taken from the input instead of
 * being the event's (so the topic0 check is fuzzed without starving the decoder);
 * bits 2-4, the topic count (0-7). Then 32 bytes per topic after topic0 (fewer
 * topics if the input runs out), then the data, given as hex.
 * Whatever abi_decode_log returns must be NULL with a reason, or an object whose
 * keys are exactly the parameter names in order, with string, bool or array values. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/abi.h"
#include "chain/keccak.h"

static const char *const signatures[8] = {
    "TipSent(address indexed tipper, address indexed creator, uint256 amount, string tipMode)",
    "Ints(int8 a, int256 b, uint8 c, uint64 indexed d, int16 indexed e, bool f, uint u, int i)",
    "Bytes(bytes32 a, bytes4 b, bytes c, string d, function e, bytes indexed h, bytes1 z)",
    "Arrays(uint256[] a, string[] b, uint8[2][] c, string[2] d, bool[2] e)",
    "Nested(uint256[][] a, bytes[][2] b, address[3] c, bool[] indexed d, int8[2][2] e)",
    "Indexed(string indexed s, uint256[2] indexed p, bool indexed f, int8[] v)",
    "Empty()",
    "Deep(uint16[][][] a, string s, function[] f, bytes32[2][] g)",
};

static void hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '0', out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = digits[p[i] >> 4];
        out[3 + 2 * i] = digits[p[i] & 15];
    }
    out[2 + 2 * n] = '\0';
}

static void check_value(const json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) check_value(json_array_get(v, i));
        return;
    }
    assert(json_is_string(v) || json_is_boolean(v));
}

static void fuzz_signature(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);
    if (!s) return;
    abi_event_t ev;
    char why[256];
    if (abi_event_parse(s, &ev, why, sizeof why) == 0) {
        size_t indexed = 0;
        assert(ev.count <= ABI_MAX_PARAMS);
        for (size_t i = 0; i < ev.count; i++) {
            indexed += ev.params[i].indexed;
            assert(*ev.params[i].name && *ev.params[i].type && strlen(ev.params[i].name) < ABI_NAME_MAX);
            assert(strstr(ev.canonical, ev.params[i].type));
        }
        assert(indexed <= ABI_MAX_INDEXED);
        uint8_t t0[32];
        keccak256(ev.canonical, strlen(ev.canonical), t0);
        assert(memcmp(t0, ev.topic0, 32) == 0 && strlen(ev.topic0_hex) == 66);
        assert(!strchr(ev.canonical, ' '));
        abi_event_free(&ev);
    } else {
        assert(why[0] && !strchr(why, '\n'));
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0] % 9;
    if (sel == 8) {
        fuzz_signature(data + 1, size - 1);
        return 0;
    }
    if (size < 2) return 0;
    uint8_t flags = data[1];
    const uint8_t *p = data + 2, *end = data + size;

    abi_event_t ev;
    char why[256];
    int rc = abi_event_parse(signatures[sel], &ev, why, sizeof why);
    assert(rc == 0);

    char topic_buf[8][67];
    const char *topics[8];
    size_t count = (flags >> 2) & 7;
    for (size_t i = 0; i < count; i++) {
        if (i == 0 && !(flags & 2)) {
            topics[0] = ev.topic0_hex;
            continue;
        }
        if (end - p < 32) {
            count = i;
            break;
        }
        hex(topic_buf[i], p, 32);
        topics[i] = topic_buf[i];
        p += 32;
    }

    size_t rest = (size_t)(end - p);
    char *data_hex = malloc(2 * rest + 3);
    assert(data_hex);
    if (flags & 1) memcpy(data_hex, p, rest), data_hex[rest] = '\0';
    else hex(data_hex, p, rest);

    why[0] = '\0';
    json_t *obj = abi_decode_log(&ev, topics, count, data_hex, why, sizeof why);
    if (!obj) {
        assert(why[0] && !strchr(why, '\n'));
    } else {
        assert(json_is_object(obj) && json_object_size(obj) == ev.count);
        size_t i = 0;
        const char *key;
        json_t *v;
        json_object_foreach(obj, key, v) {
            assert(i < ev.count && strcmp(key, ev.params[i].name) == 0);
            check_value(v);
            i++;
        }
        json_decref(obj);
    }
    free(data_hex);
    abi_event_free(&ev);
    return 0;
}
