/* clarity: Clarity values from their consensus serialization to JSON.
 *
 * The JSON is the one Chainhook puts in "value" when a predicate has
 * decode_clarity_values: true, so that a source configured either way publishes
 * the same data (SPEC 8, "Chainhook event data"). Chainhook builds it in
 * serialize_to_json() of components/chainhook-sdk/src/chainhooks/stacks/mod.rs
 * (hirosystems/chainhook, chainhook-sdk 0.12), from the stacks-core clarity crate's
 * Display implementations:
 *   int, uint       json!(i128) / json!(u128) with serde_json's arbitrary_precision
 *                   feature (chainhook-sdk/Cargo.toml): a bare JSON number, exact,
 *                   up to 39 digits: u1000 -> 1000, -5 -> -5
 *   bool            true / false
 *   principal       Display of PrincipalData: "SP2J6Z...EJ7", contract principals
 *                   "SP2J6Z...EJ7.stream-pay-v1" (no leading quote)
 *   buffer          format!("0x{}", BuffData): "0x" + lowercase hex, "0x" when empty
 *   string-ascii    the string: "stream-created"
 *   string-utf8     the string, its characters concatenated: "og ⭐"
 *   optional        none -> null; (some v) -> v itself, no wrapper
 *   response        {"result": {"success": true|false, "value": v}}
 *   tuple           an object, keys in the tuple's (sorted) order
 *   list            an array
 * A print event then reads {"type": "SmartContractEvent", "position": {"index": N},
 * "data": {"contract_identifier", "topic": "print", "value": <that JSON>}}; without
 * decode_clarity_values the data has "raw_value": "0x<serialization>" instead
 * (SmartContractEventData's #[serde(rename = "raw_value")] hex_value, in
 * chainhook-types-rs). A payload seen in the wild (chainhook 1.x, a send-many-memo
 * print) shows a buffer as "0x636174616d6172616e2073776170", confirming the buffer
 * form. When Chainhook cannot deserialize a value it writes the hex, without "0x",
 * as the "value" string (serialized_decoded_clarity_value); herald, decoding a
 * raw_value itself, reports such a print undecodable instead of guessing.
 *
 * Where herald must differ: jansson's integers are 64-bit. An int or uint that fits
 * in an int64 is a JSON number, exactly as above; one outside that range (a uint
 * above 9223372036854775807, an int below -9223372036854775808) is its decimal
 * string, "340282366920938463463374607431768211455", rather than a number JSON
 * parsers in browsers would round anyway. chainhook.c turns such numbers in a
 * decoded "value" into the same strings, so both paths agree.
 *
 * The serialization is SIP-005's (see clarity.h). Where the consensus deserializer
 * in stacks-core is stricter than a plain reading, herald follows it: string-ascii
 * holds only printable ASCII and whitespace (is_ascii_alphanumeric, punctuation or
 * whitespace), string-utf8 is valid UTF-8, tuple and contract names follow
 * ClarityName / ContractName, a tuple has at least one field and no repeated name.
 * Tuples also must list their names in order (what every encoder writes, Clarity's
 * BTreeMap and stacks.js alike): a value out of order is not one a node produced.
 *
 * c32check (stacks-network/c32check, src/encoding.ts, src/checksum.ts): the payload
 * hash160 || checksum is read as one big-endian number and written in base 32 with
 * the alphabet 0-9 A-Z less I L O U, without leading zero digits, then one '0' is
 * put back per leading zero byte; the address is "S", the version's digit, that. */
#include "chain/clarity.h"
#include "core/util.h"
#include "ws/utf8.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CV_INT = 0x00, CV_UINT = 0x01, CV_BUFFER = 0x02, CV_TRUE = 0x03, CV_FALSE = 0x04,
    CV_PRINCIPAL = 0x05, CV_CONTRACT = 0x06, CV_OK = 0x07, CV_ERR = 0x08, CV_NONE = 0x09,
    CV_SOME = 0x0a, CV_LIST = 0x0b, CV_TUPLE = 0x0c, CV_ASCII = 0x0d, CV_UTF8 = 0x0e,
};

#define NAME_MAX_LEN 128   /* ClarityName and ContractName (Stacks 2.1 and later) */

static const char C32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

typedef struct reader {
    const uint8_t *p, *end;
    char *why;
    size_t why_len;
} reader_t;

static json_t *fail(reader_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *fail(reader_t *r, const char *fmt, ...)
{
    if (r->why && r->why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->why, r->why_len, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static size_t left(const reader_t *r) { return (size_t)(r->end - r->p); }

/* A big-endian u32 length, checked against the bytes left when each element takes
 * at least min_each bytes: a count of 4 billion is refused before any loop runs. */
static bool length(reader_t *r, const char *what, size_t min_each, uint32_t *out)
{
    if (left(r) < 4) {
        fail(r, "%s: truncated length", what);
        return false;
    }
    uint32_t n = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    if (min_each && (uint64_t)n * min_each > left(r)) {
        fail(r, "%s: length %u beyond the input (%zu bytes left)", what, n, left(r));
        return false;
    }
    *out = n;
    return true;
}

/* ---- integers ---- */

/* Divides the 16-byte big-endian number m by 10 in place; returns the remainder. */
static unsigned div10(uint8_t m[16])
{
    unsigned rem = 0;
    for (int i = 0; i < 16; i++) {
        unsigned cur = rem << 8 | m[i];
        m[i] = (uint8_t)(cur / 10);
        rem = cur % 10;
    }
    return rem;
}

static json_t *integer(const uint8_t b[16], bool is_signed)
{
    uint8_t m[16];
    memcpy(m, b, 16);
    bool neg = is_signed && (m[0] & 0x80);
    if (neg) {   /* magnitude = two's complement; -2^127 gives 2^127, which fits unsigned */
        unsigned carry = 1;
        for (int i = 15; i >= 0; i--) {
            unsigned v = (uint8_t)~m[i] + carry;
            m[i] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    bool high_zero = true;
    for (int i = 0; i < 8; i++) high_zero &= m[i] == 0;
    if (high_zero) {
        uint64_t mag = 0;
        for (int i = 8; i < 16; i++) mag = mag << 8 | m[i];
        if (!neg && mag <= (uint64_t)INT64_MAX) return json_integer((json_int_t)mag);
        if (neg && mag <= (uint64_t)INT64_MAX) return json_integer(-(json_int_t)mag);
        if (neg && mag == (uint64_t)INT64_MAX + 1) return json_integer(INT64_MIN);
    }
    /* Beyond jansson's 64 bits: the decimal string (see the top of this file). */
    char digits[48];
    size_t n = sizeof digits;
    digits[--n] = '\0';
    bool zero;
    do {
        digits[--n] = (char)('0' + div10(m));
        zero = true;
        for (int i = 0; i < 16; i++) zero &= m[i] == 0;
    } while (!zero);
    if (neg) digits[--n] = '-';
    return json_string(digits + n);
}

/* ---- names ---- */

static bool is_alpha(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* ClarityName: a letter, then letters, digits and - _ ! ? + < > = / and star; or a
 * lone - + = / or star; or < > <= >= (stacks-core's CLARITY_NAME_REGEX). */
static bool clarity_name_ok(const uint8_t *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN) return false;
    if (n == 1 && strchr("-+=/*<>", s[0])) return true;
    if (n == 2 && (s[0] == '<' || s[0] == '>') && s[1] == '=') return true;
    if (!is_alpha(s[0])) return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && !strchr("-_!?+<>=/*", s[i])) return false;
    return true;
}

/* ContractName: ^[a-zA-Z]([a-zA-Z0-9]|[-_])*$ */
static bool contract_name_ok(const uint8_t *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN || !is_alpha(s[0])) return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-' && s[i] != '_') return false;
    return true;
}

/* Rust's u8::is_ascii_alphanumeric || is_ascii_punctuation || is_ascii_whitespace:
 * the printable range and \t \n \f \r (not \v). */
static bool ascii_ok(uint8_t c)
{
    return (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

/* ---- c32check ---- */

int clarity_c32_address(uint8_t version, const uint8_t hash160[20], char *out, size_t out_len)
{
    if (version >= 32 || !out) return -1;
    uint8_t data[24], pre[21], h1[32], h2[32];
    pre[0] = version;
    memcpy(pre + 1, hash160, 20);
    SHA256(pre, sizeof pre, h1);
    SHA256(h1, sizeof h1, h2);
    memcpy(data, hash160, 20);
    memcpy(data + 20, h2, 4);

    /* Least significant digit first: 192 bits give at most 39 digits. */
    char rev[40];
    size_t nd = 0;
    unsigned acc = 0, bits = 0;
    for (int i = 23; i >= 0; i--) {
        acc |= (unsigned)data[i] << bits;
        bits += 8;
        while (bits >= 5) {
            rev[nd++] = C32[acc & 31];
            acc >>= 5;
            bits -= 5;
        }
    }
    if (bits) rev[nd++] = C32[acc & 31];
    while (nd && rev[nd - 1] == '0') nd--;
    size_t zeros = 0;
    while (zeros < 24 && data[zeros] == 0) zeros++;

    size_t total = 2 + zeros + nd;
    if (out_len < total + 1) return -1;
    size_t k = 0;
    out[k++] = 'S';
    out[k++] = C32[version];
    for (size_t i = 0; i < zeros; i++) out[k++] = '0';
    while (nd) out[k++] = rev[--nd];
    out[k] = '\0';
    return (int)k;
}

/* ---- values ---- */

static json_t *value(reader_t *r, int depth);

static json_t *hex_string(const uint8_t *b, size_t n)
{
    char *s = malloc(2 + 2 * n + 1);
    if (!s) return NULL;
    s[0] = '0', s[1] = 'x';
    hex_encode(s + 2, b, n);
    s[2 + 2 * n] = '\0';
    json_t *j = json_stringn_nocheck(s, 2 + 2 * n);
    free(s);
    return j;
}

static json_t *principal(reader_t *r, bool contract)
{
    if (left(r) < 21) return fail(r, "principal: truncated");
    uint8_t version = r->p[0];
    if (version >= 32) return fail(r, "principal: version %u is not a c32 version", version);
    char addr[CLARITY_ADDRESS_MAX + 1 + NAME_MAX_LEN + 1];
    int n = clarity_c32_address(version, r->p + 1, addr, CLARITY_ADDRESS_MAX);
    if (n < 0) return fail(r, "principal: cannot encode");
    r->p += 21;
    if (!contract) return json_string(addr);
    if (left(r) < 1) return fail(r, "contract principal: truncated name length");
    size_t name_len = *r->p++;
    if (left(r) < name_len) return fail(r, "contract principal: name of %zu bytes beyond the input", name_len);
    if (!contract_name_ok(r->p, name_len)) return fail(r, "contract principal: invalid contract name");
    addr[n] = '.';
    memcpy(addr + n + 1, r->p, name_len);
    addr[n + 1 + name_len] = '\0';
    r->p += name_len;
    return json_string(addr);
}

static json_t *response(reader_t *r, bool ok, int depth)
{
    json_t *inner = value(r, depth + 1);
    if (!inner) return NULL;
    json_t *res = json_pack("{s:{s:b,s:o}}", "result", "success", ok, "value", inner);
    return res ? res : fail(r, "out of memory");
}

static json_t *list(reader_t *r, int depth)
{
    uint32_t count;
    if (!length(r, "list", 1, &count)) return NULL;
    json_t *arr = json_array();
    if (!arr) return fail(r, "out of memory");
    for (uint32_t i = 0; i < count; i++) {
        json_t *v = value(r, depth + 1);
        if (!v || json_array_append_new(arr, v) < 0) {
            json_decref(arr);
            return v ? fail(r, "out of memory") : NULL;
        }
    }
    return arr;
}

/* Name order is byte order, a shorter name before its extensions (Rust's str Ord,
 * the order of Clarity's BTreeMap). */
static int name_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static json_t *tuple(reader_t *r, int depth)
{
    uint32_t count;
    /* each field: a name length, a name of at least 1 byte, a value of at least 1 */
    if (!length(r, "tuple", 3, &count)) return NULL;
    if (count == 0) return fail(r, "tuple: no fields");
    json_t *obj = json_object();
    if (!obj) return fail(r, "out of memory");
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (left(r) < 1) goto truncated;
        size_t n = *r->p++;
        if (left(r) < n) goto truncated;
        const uint8_t *name = r->p;
        if (!clarity_name_ok(name, n)) {
            json_decref(obj);
            return fail(r, "tuple: invalid field name");
        }
        if (prev && name_cmp(prev, prev_len, name, n) >= 0) {
            json_decref(obj);
            return fail(r, "tuple: field %.*s out of order or repeated", (int)n, (const char *)name);
        }
        prev = name, prev_len = n;
        r->p += n;
        json_t *v = value(r, depth + 1);
        if (!v) {
            json_decref(obj);
            return NULL;
        }
        char key[NAME_MAX_LEN + 1];
        memcpy(key, name, n);
        key[n] = '\0';
        if (json_object_set_new_nocheck(obj, key, v) < 0) {
            json_decref(obj);
            return fail(r, "out of memory");
        }
    }
    return obj;
truncated:
    json_decref(obj);
    return fail(r, "tuple: truncated field name");
}

static json_t *text(reader_t *r, bool utf8)
{
    const char *what = utf8 ? "string-utf8" : "string-ascii";
    uint32_t n;
    if (!length(r, what, 1, &n)) return NULL;
    const uint8_t *s = r->p;
    if (utf8) {
        if (!utf8_valid(s, n)) return fail(r, "string-utf8: invalid UTF-8");
    } else {
        for (uint32_t i = 0; i < n; i++)
            if (!ascii_ok(s[i])) return fail(r, "string-ascii: byte 0x%02x not allowed", s[i]);
    }
    r->p += n;
    json_t *j = json_stringn_nocheck((const char *)s, n);
    return j ? j : fail(r, "out of memory");
}

static json_t *value(reader_t *r, int depth)
{
    if (depth > CLARITY_MAX_DEPTH) return fail(r, "nested deeper than %d", CLARITY_MAX_DEPTH);
    if (left(r) < 1) return fail(r, "truncated: a value is missing");
    uint8_t type = *r->p++;
    json_t *j;
    switch (type) {
    case CV_INT:
    case CV_UINT:
        if (left(r) < 16) return fail(r, "%s: truncated", type == CV_INT ? "int" : "uint");
        j = integer(r->p, type == CV_INT);
        r->p += 16;
        return j ? j : fail(r, "out of memory");
    case CV_BUFFER: {
        uint32_t n;
        if (!length(r, "buffer", 1, &n)) return NULL;
        j = hex_string(r->p, n);
        r->p += n;
        return j ? j : fail(r, "out of memory");
    }
    case CV_TRUE: return json_true();
    case CV_FALSE: return json_false();
    case CV_PRINCIPAL: return principal(r, false);
    case CV_CONTRACT: return principal(r, true);
    case CV_OK: return response(r, true, depth);
    case CV_ERR: return response(r, false, depth);
    case CV_NONE: return json_null();
    case CV_SOME: return value(r, depth + 1);   /* (some v) is v, as Chainhook writes it */
    case CV_LIST: return list(r, depth);
    case CV_TUPLE: return tuple(r, depth);
    case CV_ASCII: return text(r, false);
    case CV_UTF8: return text(r, true);
    default: return fail(r, "unknown type byte 0x%02x", type);
    }
}

json_t *clarity_decode(const uint8_t *data, size_t len, char *why, size_t why_len)
{
    reader_t r = {data, data + len, why, why_len};
    if (!data || len == 0) return fail(&r, "empty value");
    json_t *j = value(&r, 0);
    if (j && r.p != r.end) {
        json_decref(j);
        return fail(&r, "%zu trailing bytes after the value", left(&r));
    }
    return j;
}

json_t *clarity_decode_hex(const char *hex, size_t len, char *why, size_t why_len)
{
    reader_t r = {NULL, NULL, why, why_len};
    if (!hex) return fail(&r, "no hex");
    if (len >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) hex += 2, len -= 2;
    if (len == 0) return fail(&r, "empty value");
    if (len % 2) return fail(&r, "odd number of hex digits");
    size_t n = len / 2;
    uint8_t *b = malloc(n);
    if (!b) return fail(&r, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return fail(&r, "not hex at offset %zu", 2 * i + (hi < 0 ? 0 : 1));
        }
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    json_t *j = clarity_decode(b, n, why, why_len);
    free(b);
    return j;
}
