/* chainhook: a Chainhook webhook body into its print events (see chainhook.h).
 *
 * The body is parsed once with jansson and kept: the prints borrow their hashes
 * and contract identifiers from it instead of copying them. Every field the
 * source needs is checked for its JSON type here, so the caller can answer 400
 * for the whole delivery before publishing anything; fields it does not need
 * (timestamps, metadata, operations) are not looked at, so Chainhook may add
 * fields without breaking herald.
 *
 * One wrinkle: chainhook-sdk writes decoded Clarity integers with serde_json's
 * arbitrary_precision, so a uint amount can be a JSON number of up to 39 digits.
 * jansson refuses integers beyond 64 bits outright ("too big integer"), which would
 * turn a legitimate delivery into a 400 that Chainhook retries forever. When, and
 * only when, jansson says so, the body is copied with such integer literals
 * quoted, making them the decimal strings clarity.c writes for the same values. */
#include "chain/chainhook.h"
#include "chain/clarity.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    chainhook_payload_t *out;
    size_t cap;
    char *why;
    size_t why_len;
} parser_t;

static int fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *ps, const char *fmt, ...)
{
    if (ps->why && ps->why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->why, ps->why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- integers beyond 64 bits ---- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* s[0..n) is a JSON integer literal (-?(0|[1-9][0-9]*)) outside int64's range. */
static bool big_integer(const char *s, size_t n)
{
    bool neg = n && s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - neg;
    if (nd < 19 || d[0] == '0') return false;
    for (size_t i = 0; i < nd; i++)
        if (!is_digit(d[i])) return false;
    if (nd > 19) return true;
    return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

/* Copies body with every out-of-range integer literal outside strings quoted.
 * Returns 0 or -1 (out of memory). */
static int quote_big_integers(const char *body, size_t len, buf_t *b)
{
    bool in_str = false;
    size_t i = 0, from = 0;   /* body[from..i) is pending verbatim */
    while (i < len) {
        char c = body[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            i++;
            continue;
        }
        if (c == '"') {
            in_str = true;
            i++;
            continue;
        }
        if (c != '-' && !is_digit(c)) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && (is_digit(body[i]) || strchr("+-.eE", body[i]))) i++;
        if (!big_integer(body + start, i - start)) continue;
        if (buf_append(b, body + from, start - from) || buf_append(b, "\"", 1) ||
            buf_append(b, body + start, i - start) || buf_append(b, "\"", 1))
            return -1;
        from = i;
    }
    if (i > len) i = len;   /* a body ending in a lone backslash inside a string */
    return buf_append(b, body + from, i - from) ? -1 : 0;
}

static json_t *load(const char *body, size_t len, parser_t *ps)
{
    /* NUL is allowed in strings (a string-utf8 may hold U+0000); the strings the
     * prints borrow are checked for it below. Duplicate keys are refused: which
     * one a consumer would see is anybody's guess. */
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    json_error_t err;
    json_t *root = json_loadb(body, len, flags, &err);
    if (root || json_error_code(&err) != json_error_numeric_overflow) {
        if (!root) fail(ps, "not JSON: %s (line %d, column %d)", err.text, err.line, err.column);
        return root;
    }
    buf_t b = {0};
    if (quote_big_integers(body, len, &b) < 0) {
        buf_free(&b);
        fail(ps, "out of memory");
        return NULL;
    }
    root = json_loadb(b.data ? b.data : "", b.len, flags, &err);
    buf_free(&b);
    if (!root) fail(ps, "not JSON: %s (line %d, column %d)", err.text, err.line, err.column);
    return root;
}

/* ---- shape ---- */

/* A string member without NUL (it is borrowed as a C string); NULL when absent or
 * not such a string. */
static const char *str_member(json_t *obj, const char *key, bool non_empty)
{
    json_t *s = json_object_get(obj, key);
    if (!json_is_string(s)) return NULL;
    const char *v = json_string_value(s);
    if (strlen(v) != json_string_length(s) || (non_empty && !*v)) return NULL;
    return v;
}

static bool index_member(json_t *obj, const char *key, uint64_t *out)
{
    json_t *n = json_object_get(obj, key);
    if (!json_is_integer(n) || json_integer_value(n) < 0) return false;
    *out = (uint64_t)json_integer_value(n);
    return true;
}

static chainhook_print_t *push(parser_t *ps)
{
    chainhook_payload_t *o = ps->out;
    if (o->count == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        chainhook_print_t *p = realloc(o->prints, cap * sizeof *p);
        if (!p) return NULL;
        o->prints = p;
        ps->cap = cap;
    }
    chainhook_print_t *pr = &o->prints[o->count++];
    memset(pr, 0, sizeof *pr);
    return pr;
}

/* The print's value: "value" when present (even null: a printed none), else
 * raw_value decoded. Never fails the delivery: an undecodable print keeps a reason. */
static void print_value(chainhook_print_t *pr, json_t *data)
{
    json_t *v = json_object_get(data, "value");
    if (v) {
        /* A copy, so the caller may add to it (e.g. "_chain") without touching the
         * payload or another print. */
        pr->value = json_deep_copy(v);
        if (!pr->value) snprintf(pr->why, sizeof pr->why, "out of memory");
        return;
    }
    json_t *raw = json_object_get(data, "raw_value");
    if (!raw) {
        snprintf(pr->why, sizeof pr->why, "neither value nor raw_value");
        return;
    }
    if (!json_is_string(raw)) {
        snprintf(pr->why, sizeof pr->why, "raw_value is not a string");
        return;
    }
    char why[sizeof pr->why - 16];
    pr->value = clarity_decode_hex(json_string_value(raw), json_string_length(raw), why, sizeof why);
    if (!pr->value) snprintf(pr->why, sizeof pr->why, "raw_value: %s", why);
}

/* Stable insertion sort by event index: a receipt has a handful of events. */
static void sort_by_event(chainhook_print_t *p, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        chainhook_print_t t = p[i];
        size_t j = i;
        for (; j > 0 && p[j - 1].event_index > t.event_index; j--) p[j] = p[j - 1];
        p[j] = t;
    }
}

static int events(parser_t *ps, json_t *evs, const char *where, int kind, uint64_t bindex, const char *bhash,
                  const char *txhash)
{
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev) {
        if (!json_is_object(ev)) return fail(ps, "%s.events[%zu]: not an object", where, i);
        const char *type = str_member(ev, "type", true);
        if (!type) return fail(ps, "%s.events[%zu]: no type", where, i);
        if (strcmp(type, "SmartContractEvent") != 0) continue;
        json_t *data = json_object_get(ev, "data");
        if (!json_is_object(data)) return fail(ps, "%s.events[%zu]: no data object", where, i);
        const char *topic = str_member(data, "topic", false);
        if (!topic) return fail(ps, "%s.events[%zu]: no topic", where, i);
        if (strcmp(topic, "print") != 0) continue;
        const char *contract = str_member(data, "contract_identifier", true);
        if (!contract) return fail(ps, "%s.events[%zu]: no contract_identifier", where, i);
        /* position.index identifies the event in the block; payloads from before
         * chainhook had it fall back on the event's place in the receipt. */
        uint64_t eindex = i;
        json_t *pos = json_object_get(ev, "position");
        if (pos && (!json_is_object(pos) || !index_member(pos, "index", &eindex)))
            return fail(ps, "%s.events[%zu]: position without a non-negative integer index", where, i);
        chainhook_print_t *pr = push(ps);
        if (!pr) return fail(ps, "out of memory");
        pr->kind = kind;
        pr->block_index = bindex;
        pr->block_hash = bhash;
        pr->tx_hash = txhash;
        pr->event_index = eindex;
        pr->contract = contract;
        print_value(pr, data);
    }
    return 0;
}

static int block(parser_t *ps, json_t *blk, const char *list, size_t bi, int kind)
{
    if (!json_is_object(blk)) return fail(ps, "%s[%zu]: not an object", list, bi);
    json_t *id = json_object_get(blk, "block_identifier");
    uint64_t bindex;
    const char *bhash = json_is_object(id) ? str_member(id, "hash", true) : NULL;
    if (!bhash || !index_member(id, "index", &bindex))
        return fail(ps, "%s[%zu]: no block_identifier {index, hash}", list, bi);
    json_t *txs = json_object_get(blk, "transactions");
    if (!json_is_array(txs)) return fail(ps, "%s[%zu]: no transactions array", list, bi);
    size_t ti;
    json_t *tx;
    json_array_foreach(txs, ti, tx) {
        char where[96];
        snprintf(where, sizeof where, "%s[%zu].transactions[%zu]", list, bi, ti);
        if (!json_is_object(tx)) return fail(ps, "%s: not an object", where);
        json_t *tid = json_object_get(tx, "transaction_identifier");
        const char *txhash = json_is_object(tid) ? str_member(tid, "hash", true) : NULL;
        if (!txhash) return fail(ps, "%s: no transaction_identifier.hash", where);
        json_t *meta = json_object_get(tx, "metadata");
        json_t *receipt = json_is_object(meta) ? json_object_get(meta, "receipt") : NULL;
        json_t *evs = json_is_object(receipt) ? json_object_get(receipt, "events") : NULL;
        if (!json_is_array(evs)) return fail(ps, "%s: no metadata.receipt.events array", where);
        size_t first = ps->out->count;
        if (events(ps, evs, where, kind, bindex, bhash, txhash) < 0) return -1;
        sort_by_event(ps->out->prints + first, ps->out->count - first);
    }
    return 0;
}

static int blocks(parser_t *ps, json_t *arr, const char *list, int kind)
{
    size_t i;
    json_t *blk;
    json_array_foreach(arr, i, blk) {
        if (block(ps, blk, list, i, kind) < 0) return -1;
    }
    return 0;
}

int chainhook_parse(const char *body, size_t len, chainhook_payload_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    parser_t ps = {out, 0, why, why_len};
    if (!body) return fail(&ps, "no body");
    json_t *root = load(body, len, &ps);
    if (!root) return -1;
    out->root = root;
    int rc;
    json_t *apply = json_object_get(root, "apply"), *rollback = json_object_get(root, "rollback");
    if (!json_is_object(root)) {
        rc = fail(&ps, "not a JSON object");
    } else if (!apply && !rollback) {
        json_t *ev = json_object_get(root, "event");
        rc = json_is_object(ev) && (json_object_get(ev, "apply") || json_object_get(ev, "rollback"))
                 ? fail(&ps, "a Chainhooks 2.0 payload ({\"event\": {\"apply\": ...}}): not supported, use chainhook 1.x")
                 : fail(&ps, "no apply or rollback array");
    } else if ((apply && !json_is_array(apply)) || (rollback && !json_is_array(rollback))) {
        rc = fail(&ps, "apply and rollback must be arrays");
    } else {
        /* Rollbacks first: in a reorg delivery the blocks to undo come before the
         * ones that replace them. */
        rc = rollback ? blocks(&ps, rollback, "rollback", CHAINHOOK_ROLLBACK) : 0;
        if (rc == 0 && apply) rc = blocks(&ps, apply, "apply", CHAINHOOK_APPLY);
    }
    if (rc < 0) chainhook_payload_free(out);
    return rc;
}

void chainhook_payload_free(chainhook_payload_t *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->count; i++) json_decref(p->prints[i].value);
    free(p->prints);
    json_decref(p->root);
    memset(p, 0, sizeof *p);
}
