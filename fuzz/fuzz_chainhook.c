/* libFuzzer target for Chainhook webhook bodies (src/chain/chainhook.c) and the
 * Clarity decoder under them (src/chain/clarity.c).
 *
 * The first byte chooses: 0x01, the rest is a Clarity value as hex text
 * (clarity_decode_hex); 0x02, the rest is a serialized value (clarity_decode);
 * anything else, the whole input is a webhook body (chainhook_parse), so payloads
 * saved from a real delivery are seeds as they are.
 * Checked: a value decodes or says why, a decoded value serializes to JSON (valid
 * UTF-8, no invalid keys), the bytes and their hex decode alike; a body parses or
 * says why and leaves nothing behind, and a parsed one lists rollbacks before
 * applies, with every print carrying its keys and a value or a reason. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chainhook.h"
#include "chain/clarity.h"

static void check_value(json_t *v)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    assert(s);
    free(s);
}

static void fuzz_clarity_hex(const uint8_t *data, size_t size)
{
    char why[128] = "";
    json_t *v = clarity_decode_hex((const char *)data, size, why, sizeof why);
    assert(v || why[0]);
    if (v) check_value(v);
    json_decref(v);
}

static void fuzz_clarity_bytes(const uint8_t *data, size_t size)
{
    char why[128] = "";
    json_t *v = clarity_decode(data, size, why, sizeof why);
    assert(v || why[0]);
    /* the same bytes as hex decode to the same value */
    char *hex = malloc(2 + 2 * size + 1);
    assert(hex);
    static const char hx[] = "0123456789abcdef";
    hex[0] = '0', hex[1] = 'x';
    for (size_t i = 0; i < size; i++) hex[2 + 2 * i] = hx[data[i] >> 4], hex[3 + 2 * i] = hx[data[i] & 15];
    json_t *w = clarity_decode_hex(hex, 2 + 2 * size, NULL, 0);
    assert((v == NULL) == (w == NULL));
    if (v) {
        check_value(v);
        assert(json_equal(v, w));
    }
    json_decref(v);
    json_decref(w);
    free(hex);
}

static void fuzz_body(const uint8_t *data, size_t size)
{
    chainhook_payload_t p;
    char why[256] = "";
    int rc = chainhook_parse((const char *)data, size, &p, why, sizeof why);
    assert(rc == 0 || rc == -1);
    if (rc < 0) {
        assert(why[0]);
        assert(!p.root && !p.prints && p.count == 0);
        return;
    }
    assert(p.root);
    bool seen_apply = false;
    for (size_t i = 0; i < p.count; i++) {
        const chainhook_print_t *pr = &p.prints[i];
        assert(pr->kind == CHAINHOOK_APPLY || pr->kind == CHAINHOOK_ROLLBACK);
        if (pr->kind == CHAINHOOK_APPLY) seen_apply = true;
        else assert(!seen_apply);
        assert(pr->block_hash && pr->block_hash[0]);
        assert(pr->tx_hash && pr->tx_hash[0]);
        assert(pr->contract && pr->contract[0]);
        assert(pr->value || pr->why[0]);
        assert(memchr(pr->why, '\0', sizeof pr->why));
        if (pr->value) check_value(pr->value);
        /* within one transaction, prints come by event index */
        if (i > 0 && pr[-1].tx_hash == pr->tx_hash && pr[-1].block_hash == pr->block_hash)
            assert(pr[-1].event_index <= pr->event_index);
    }
    chainhook_payload_free(&p);
    assert(!p.root && p.count == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 1 && data[0] == 0x01) fuzz_clarity_hex(data + 1, size - 1);
    else if (size >= 1 && data[0] == 0x02) fuzz_clarity_bytes(data + 1, size - 1);
    else fuzz_body(data, size);
    return 0;
}
