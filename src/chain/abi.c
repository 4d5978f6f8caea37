#include "chain/abi.h"
#include "chain/keccak.h"
#include "core/util.h"
#include "ws/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Static arrays are capped so that a type's head size is computed without
 * overflow and stays far below any real log: 2^20 words is 32 MiB of data. */
#define STATIC_WORDS_MAX (1u << 20)
#define DIM_MAX 1000000u

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_alpha(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

/* ------------------------------------------------------------------ types */

typedef enum kind { K_ADDRESS, K_BOOL, K_STRING, K_BYTES, K_FIXED_BYTES, K_UINT, K_INT, K_FUNCTION } kind_t;

/* A decimal size suffix: "" (0, meaning the default), or lo..hi in steps of step. */
static bool bits(const char *d, size_t n, unsigned lo, unsigned hi, unsigned step, unsigned *out)
{
    *out = 0;
    if (n == 0) return true;
    if (n > 3 || d[0] == '0') return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(d[i])) return false;
        v = v * 10 + (unsigned)(d[i] - '0');
    }
    *out = v;
    return v >= lo && v <= hi && v % step == 0;
}

/* The elementary type t[0..len) (no array suffix). n: bits of uintN/intN (256
 * for bare uint/int), bytes of bytesN. */
static bool base_kind(const char *t, size_t len, kind_t *kind, unsigned *n)
{
    static const struct { const char *name; kind_t kind; } fixed[] = {
        {"address", K_ADDRESS}, {"bool", K_BOOL}, {"string", K_STRING}, {"bytes", K_BYTES}, {"function", K_FUNCTION},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (strlen(fixed[i].name) == len && memcmp(t, fixed[i].name, len) == 0) {
            *kind = fixed[i].kind;
            *n = 0;
            return true;
        }
    }
    bool ok = false;
    if (len >= 4 && memcmp(t, "uint", 4) == 0) *kind = K_UINT, ok = bits(t + 4, len - 4, 8, 256, 8, n);
    else if (len >= 3 && memcmp(t, "int", 3) == 0) *kind = K_INT, ok = bits(t + 3, len - 3, 8, 256, 8, n);
    else if (len > 5 && memcmp(t, "bytes", 5) == 0) *kind = K_FIXED_BYTES, ok = bits(t + 5, len - 5, 1, 32, 1, n);
    if (ok && *n == 0) *n = 256; /* bytes alone matched above; "" here is uint/int */
    return ok;
}

/* What the decoder needs of a canonical type: its base, its outermost array
 * suffix (t[0..elem_len) is the element type), whether it is encoded in the tail,
 * and its head size in words when it is not. */
typedef struct tinfo {
    kind_t kind;
    unsigned n;
    bool array;
    uint64_t k;        /* elements of T[k]; 0 for T[] */
    size_t elem_len;
    bool dynamic;
    uint64_t words;    /* head words: 1 when dynamic */
} tinfo_t;

static void type_info(const char *t, size_t len, tinfo_t *ti)
{
    size_t base = 0;
    while (base < len && t[base] != '[') base++;
    /* canonical types were checked by abi_event_parse: the base is known */
    if (!base_kind(t, base, &ti->kind, &ti->n)) ti->kind = K_BYTES;
    ti->dynamic = ti->kind == K_STRING || ti->kind == K_BYTES;
    ti->array = false;
    ti->k = 0;
    ti->elem_len = len;
    uint64_t words = 1;
    for (size_t i = base; i < len;) {
        size_t j = i + 1;
        uint64_t k = 0;
        while (j < len && is_digit(t[j])) k = k * 10 + (uint64_t)(t[j++] - '0');
        if (j == i + 1) ti->dynamic = true;
        else if (words <= STATIC_WORDS_MAX) words *= k;
        ti->array = true;
        ti->k = k;
        ti->elem_len = i;
        i = j + 1;
    }
    ti->words = ti->dynamic ? 1 : words;
}

/* Checks the type t[0..len) of parameter idx and writes its canonical form to out.
 * Returns false with why set. */
static bool type_canon(const char *t, size_t len, size_t idx, char out[ABI_TYPE_MAX], char *why, size_t wl)
{
    int shown = (int)(len > 40 ? 40 : len);
    size_t base = 0;
    while (base < len && t[base] != '[') base++;
    kind_t kind;
    unsigned n;
    if (len == 0 || !base_kind(t, base, &kind, &n)) goto not_abi;
    bool bare = (kind == K_UINT && base == 4) || (kind == K_INT && base == 3);
    size_t o = (size_t)snprintf(out, ABI_TYPE_MAX, "%.*s%s", (int)base, t, bare ? "256" : "");
    bool dynamic = kind == K_STRING || kind == K_BYTES;
    uint64_t words = 1;
    unsigned dims = 0;
    for (size_t i = base; i < len;) {
        if (t[i] != '[') goto not_abi;
        size_t j = i + 1;
        uint64_t k = 0;
        while (j < len && is_digit(t[j]) && j - i <= 7) k = k * 10 + (uint64_t)(t[j++] - '0');
        if (j >= len || t[j] != ']' || (j > i + 1 && t[i + 1] == '0')) goto not_abi;
        if (++dims > ABI_MAX_DIMS) {
            snprintf(why, wl, "parameter %zu: \"%.*s\" has more than %d array dimensions", idx, shown, t,
                     ABI_MAX_DIMS);
            return false;
        }
        if (j == i + 1) {
            dynamic = true;
        } else if (k > DIM_MAX || (!dynamic && (words *= k) > STATIC_WORDS_MAX)) {
            snprintf(why, wl, "parameter %zu: \"%.*s\" is too large an array", idx, shown, t);
            return false;
        }
        if (o + (j + 1 - i) >= ABI_TYPE_MAX) goto not_abi;
        memcpy(out + o, t + i, j + 1 - i);
        o += j + 1 - i;
        out[o] = '\0';
        i = j + 1;
    }
    return true;
not_abi:
    snprintf(why, wl, "parameter %zu: \"%.*s\" is not an ABI type", idx, shown, t);
    return false;
}

/* ------------------------------------------------------------------ signatures */

typedef struct sig_param {
    char name[ABI_NAME_MAX];
    char type[ABI_TYPE_MAX];
    bool indexed;
} sig_param_t;

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* Solidity identifiers; 0 when there is none. */
static size_t ident_len(const char *p)
{
    size_t n = 0;
    if (!(is_alpha(*p) || *p == '_' || *p == '$')) return 0;
    while (is_alpha(p[n]) || is_digit(p[n]) || p[n] == '_' || p[n] == '$') n++;
    return n;
}

/* One `type [indexed] name`; returns the text after it, or NULL with why set. */
static const char *parse_param(const char *p, sig_param_t *ps, size_t n, char *why, size_t wl)
{
    sig_param_t *sp = &ps[n];
    size_t tl = 0;
    if (*p == '(' || (strncmp(p, "tuple", 5) == 0 && (p[5] == '(' || p[5] == '[' || p[5] == ' '))) {
        snprintf(why, wl, "parameter %zu: tuples (structs) are not supported", n + 1);
        return NULL;
    }
    while (is_alpha(p[tl]) || is_digit(p[tl]) || p[tl] == '[' || p[tl] == ']') tl++;
    if (!type_canon(p, tl, n + 1, sp->type, why, wl)) return NULL;
    p = skip_spaces(p + tl);
    size_t nl = ident_len(p);
    /* "indexed" is a keyword, never a name: "uint256 indexed" has no name */
    sp->indexed = nl == 7 && memcmp(p, "indexed", 7) == 0;
    if (sp->indexed) {
        p = skip_spaces(p + 7);
        nl = ident_len(p);
    }
    if (nl == 0 || nl >= ABI_NAME_MAX) {
        snprintf(why, wl, "parameter %zu needs a name (Name(type [indexed] name, ...))", n + 1);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (strlen(ps[i].name) == nl && memcmp(ps[i].name, p, nl) == 0) {
            snprintf(why, wl, "parameter name %.*s repeats", (int)nl, p);
            return NULL;
        }
    }
    memcpy(sp->name, p, nl);
    sp->name[nl] = '\0';
    return skip_spaces(p + nl);
}

/* `Name(type [indexed] name, ...)` into ps; returns the count, or -1 with why set. */
static int parse_sig(const char *s, size_t *name_len, sig_param_t *ps, char *why, size_t wl)
{
    const char *p = skip_spaces(s);
    size_t nl = ident_len(p), n = 0, indexed = 0;
    if (nl == 0) {
        snprintf(why, wl, "must start with the event name: Name(type [indexed] name, ...)");
        return -1;
    }
    *name_len = nl;
    p = skip_spaces(p + nl);
    if (*p != '(') {
        snprintf(why, wl, "expected '(' after the event name");
        return -1;
    }
    p = skip_spaces(p + 1);
    if (*p != ')') {
        for (;;) {
            if (n == ABI_MAX_PARAMS) {
                snprintf(why, wl, "more than %d parameters", ABI_MAX_PARAMS);
                return -1;
            }
            if (!(p = parse_param(p, ps, n, why, wl))) return -1;
            indexed += ps[n++].indexed;
            if (*p == ')') break;
            if (*p != ',') {
                snprintf(why, wl, "expected ',' or ')' after parameter %zu", n);
                return -1;
            }
            p = skip_spaces(p + 1);
        }
    }
    if (*skip_spaces(p + 1) != '\0') {
        snprintf(why, wl, "unexpected text after ')'");
        return -1;
    }
    if (indexed > ABI_MAX_INDEXED) {
        snprintf(why, wl, "at most %d parameters can be indexed", ABI_MAX_INDEXED);
        return -1;
    }
    return (int)n;
}

void abi_event_free(abi_event_t *ev)
{
    if (!ev) return;
    for (size_t i = 0; i < ev->count; i++) {
        free(ev->params[i].name);
        free(ev->params[i].type);
    }
    free(ev->params);
    free(ev->name);
    free(ev->canonical);
    memset(ev, 0, sizeof *ev);
}

int abi_event_parse(const char *signature, abi_event_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    /* parsed into fixed buffers first (5 KiB of stack), so a refusal allocates nothing */
    sig_param_t ps[ABI_MAX_PARAMS];
    size_t name_len = 0;
    int n = parse_sig(signature ? signature : "", &name_len, ps, why, why_len);
    if (n < 0) return -1;
    const char *name = skip_spaces(signature);
    size_t clen = name_len + 2;
    for (int i = 0; i < n; i++) clen += strlen(ps[i].type) + 1;
    out->name = strndup(name, name_len);
    out->canonical = malloc(clen + 1);
    out->params = calloc(n ? (size_t)n : 1, sizeof *out->params);
    if (!out->name || !out->canonical || !out->params) goto oom;
    char *c = out->canonical;
    memcpy(c, name, name_len);
    c += name_len;
    *c++ = '(';
    for (int i = 0; i < n; i++) {
        abi_param_t *p = &out->params[i];
        out->count++;
        p->indexed = ps[i].indexed;
        if (!(p->name = strdup(ps[i].name)) || !(p->type = strdup(ps[i].type))) goto oom;
        size_t tl = strlen(p->type);
        if (i) *c++ = ',';
        memcpy(c, p->type, tl);
        c += tl;
    }
    *c++ = ')';
    *c = '\0';
    keccak256(out->canonical, (size_t)(c - out->canonical), out->topic0);
    out->topic0_hex[0] = '0';
    out->topic0_hex[1] = 'x';
    hex_encode(out->topic0_hex + 2, out->topic0, 32);
    out->topic0_hex[66] = '\0';
    return 0;
oom:
    abi_event_free(out);
    snprintf(why, why_len, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ numbers */

size_t abi_u256_dec(const uint8_t w[32], char out[80])
{
    /* eight 32-bit limbs divided by 10^9 at a time: nine digits per pass instead of
     * one, for arrays of thousands of words */
    uint32_t limb[8];
    for (int i = 0; i < 8; i++)
        limb[i] = (uint32_t)w[4 * i] << 24 | (uint32_t)w[4 * i + 1] << 16 | (uint32_t)w[4 * i + 2] << 8 | w[4 * i + 3];
    int top = 0;
    while (top < 8 && limb[top] == 0) top++;
    if (top == 8) {
        out[0] = '0', out[1] = '\0';
        return 1;
    }
    char tmp[80];
    size_t pos = sizeof tmp;
    while (top < 8) {
        uint64_t rem = 0;
        for (int i = top; i < 8; i++) {
            uint64_t cur = rem << 32 | limb[i];
            limb[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        while (top < 8 && limb[top] == 0) top++;
        /* nine digits, zero-padded, except for the most significant group */
        for (int j = 0; j < 9 && (top < 8 || rem); j++) {
            tmp[--pos] = (char)('0' + rem % 10);
            rem /= 10;
        }
    }
    size_t n = sizeof tmp - pos;
    memcpy(out, tmp + pos, n);
    out[n] = '\0';
    return n;
}

/* ------------------------------------------------------------------ decoding */

typedef struct dec {
    const uint8_t *data;
    size_t len;
    size_t budget;      /* bytes that may still be read; aliasing offsets drain it */
    const char *param;  /* for messages */
    char *why;
    size_t wl;
    bool failed;
} dec_t;

__attribute__((format(printf, 2, 3)))
static json_t *fail(dec_t *d, const char *fmt, ...)
{
    if (d->failed) return NULL; /* the innermost reason is the useful one */
    d->failed = true;
    int n = snprintf(d->why, d->wl, "%s: ", d->param);
    if (n >= 0 && (size_t)n < d->wl) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->why + n, d->wl - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static bool charge(dec_t *d, size_t n)
{
    if (n <= d->budget) {
        d->budget -= n;
        return true;
    }
    fail(d, "offsets point at the same data too many times");
    return false;
}

/* The word at pos, or NULL (and a reason) past the end. */
static const uint8_t *word_at(dec_t *d, size_t pos)
{
    if (d->len < 32 || pos > d->len - 32) {
        fail(d, "data too short (%zu bytes, a word needed at %zu)", d->len, pos);
        return NULL;
    }
    return charge(d, 32) ? d->data + pos : NULL;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* An offset or a length: a word that must be below 2^64 and within max. */
static bool word_size(dec_t *d, const uint8_t *w, size_t max, const char *what, size_t *out)
{
    uint64_t v = 0;
    for (int i = 24; i < 32; i++) v = v << 8 | w[i];
    if (!all_zero(w, 24) || v > max) {
        fail(d, "%s out of range", what);
        return false;
    }
    *out = (size_t)v;
    return true;
}

static json_t *hex_json(dec_t *d, const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 3);
    if (!s) return fail(d, "out of memory");
    s[0] = '0', s[1] = 'x';
    hex_encode(s + 2, p, n);
    json_t *v = json_stringn(s, 2 * n + 2);
    free(s);
    return v ? v : fail(d, "out of memory");
}

static json_t *dec_json(dec_t *d, const uint8_t w[32], bool negative)
{
    char s[81];
    s[0] = '-';
    size_t n = abi_u256_dec(w, s + negative);
    json_t *v = json_stringn(s, n + negative);
    return v ? v : fail(d, "out of memory");
}

static json_t *decode_int(dec_t *d, const uint8_t w[32], unsigned bits_n)
{
    size_t keep = bits_n / 8, pad = 32 - keep;
    bool negative = w[pad] & 0x80;
    for (size_t i = 0; i < pad; i++)
        if (w[i] != (negative ? 0xff : 0x00)) return fail(d, "value is not a sign-extended int%u", bits_n);
    if (!negative) return dec_json(d, w, false);
    /* magnitude of a two's complement number: invert and add one */
    uint8_t m[32];
    unsigned carry = 1;
    for (int i = 31; i >= 0; i--) {
        unsigned b = (uint8_t)~w[i] + carry;
        m[i] = (uint8_t)b;
        carry = b >> 8;
    }
    return dec_json(d, m, true);
}

/* One elementary value of a static type from its 32-byte word (data or topic). */
static json_t *decode_word(dec_t *d, kind_t kind, unsigned n, const uint8_t w[32])
{
    switch (kind) {
    case K_ADDRESS:
        if (!all_zero(w, 12)) return fail(d, "address with non-zero high bytes");
        return hex_json(d, w + 12, 20);
    case K_BOOL:
        if (!all_zero(w, 31) || w[31] > 1) return fail(d, "bool that is neither 0 nor 1");
        return w[31] ? json_true() : json_false();
    case K_UINT:
        if (!all_zero(w, 32 - n / 8)) return fail(d, "value does not fit uint%u", n);
        return dec_json(d, w, false);
    case K_INT:
        return decode_int(d, w, n);
    case K_FIXED_BYTES:
        if (!all_zero(w + n, 32 - n)) return fail(d, "bytes%u with non-zero padding", n);
        return hex_json(d, w, n);
    case K_FUNCTION:
        if (!all_zero(w + 24, 8)) return fail(d, "function with non-zero padding");
        return hex_json(d, w, 24);
    default:
        return fail(d, "not a static type");
    }
}

static json_t *decode_at(dec_t *d, const char *t, size_t tlen, size_t frame, size_t pos);

/* n values of type t whose heads follow each other from pos, offsets relative to
 * frame. The caller checked that the heads are inside the data. */
static json_t *decode_seq(dec_t *d, const char *t, size_t tlen, uint64_t n, size_t frame, size_t pos)
{
    tinfo_t ti;
    type_info(t, tlen, &ti);
    json_t *a = json_array();
    if (!a) return fail(d, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        json_t *v = decode_at(d, t, tlen, frame, pos + (size_t)(i * ti.words * 32));
        if (!v || json_array_append_new(a, v) < 0) {
            json_decref(a);
            return v ? fail(d, "out of memory") : NULL;
        }
    }
    return a;
}

/* The tail of a dynamic type, starting at `at`. */
static json_t *decode_tail(dec_t *d, const char *t, size_t tlen, const tinfo_t *ti, size_t at)
{
    size_t n = 0;
    if (!ti->array || !ti->k) {
        /* bytes, string and T[] begin with their length */
        const uint8_t *w = word_at(d, at);
        if (!w || !word_size(d, w, d->len, "length", &n)) return NULL;
        at += 32;
    }
    size_t room = d->len - at;
    if (!ti->array) {
        if (n > room) return fail(d, "length %zu runs past the data", n);
        if (!charge(d, n)) return NULL;
        const uint8_t *p = d->data + at;
        if (ti->kind == K_STRING && utf8_valid(p, n)) {
            json_t *v = json_stringn((const char *)p, n);
            return v ? v : fail(d, "out of memory");
        }
        return hex_json(d, p, n);
    }
    tinfo_t ei;
    type_info(t, ti->elem_len, &ei);
    uint64_t count = ti->k ? ti->k : n;
    /* the element heads must be in the data before any is read: a length of 2^60
     * fails here, not after 2^60 allocations */
    if (count > room / 32 / ei.words) return fail(d, "array of %llu elements runs past the data",
                                                 (unsigned long long)count);
    return decode_seq(d, t, ti->elem_len, count, at, at);
}

/* The value of type t whose head is at pos, in the frame (tuple encoding) that
 * starts at frame: offsets in heads are relative to it. */
static json_t *decode_at(dec_t *d, const char *t, size_t tlen, size_t frame, size_t pos)
{
    tinfo_t ti;
    type_info(t, tlen, &ti);
    if (ti.dynamic) {
        const uint8_t *w = word_at(d, pos);
        size_t off;
        if (!w || !word_size(d, w, d->len - frame, "offset", &off)) return NULL;
        return decode_tail(d, t, tlen, &ti, frame + off);
    }
    if (ti.words > (d->len - pos) / 32) return fail(d, "data too short (%zu bytes) for %.*s at %zu", d->len,
                                                    (int)tlen, t, pos);
    if (ti.array) return decode_seq(d, t, ti.elem_len, ti.k, frame, pos);
    const uint8_t *w = word_at(d, pos);
    return w ? decode_word(d, ti.kind, ti.n, w) : NULL;
}

/* "0x" + 64 hex digits into 32 bytes. */
static bool topic_bytes(const char *s, uint8_t out[32])
{
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
    for (int i = 0; i < 32; i++) {
        int hi = hex_nibble(s[2 + 2 * i]), lo = hi < 0 ? -1 : hex_nibble(s[3 + 2 * i]);
        if (lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[66] == '\0';
}

/* "0x" + an even number of hex digits into a new buffer (never NULL on success). */
static uint8_t *data_bytes(const char *s, size_t *len, char *why, size_t wl)
{
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) {
        snprintf(why, wl, "data is not 0x-prefixed hex");
        return NULL;
    }
    size_t digits = strlen(s + 2);
    if (digits % 2) {
        snprintf(why, wl, "data has an odd number of hex digits");
        return NULL;
    }
    uint8_t *out = malloc(digits / 2 + 1);
    if (!out) {
        snprintf(why, wl, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < digits / 2; i++) {
        int hi = hex_nibble(s[2 + 2 * i]), lo = hex_nibble(s[3 + 2 * i]);
        if (hi < 0 || lo < 0) {
            snprintf(why, wl, "data has a non-hex character at %zu", 2 + 2 * i + (hi >= 0));
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = digits / 2;
    return out;
}

static json_t *decode_topic(dec_t *d, const abi_param_t *p, const char *topic)
{
    uint8_t w[32];
    if (!topic_bytes(topic, w)) return fail(d, "topic is not 0x and 64 hex digits");
    tinfo_t ti;
    type_info(p->type, strlen(p->type), &ti);
    /* the EVM hashes every indexed array, static ones included, and string/bytes */
    if (ti.dynamic || ti.array) return hex_json(d, w, 32);
    return decode_word(d, ti.kind, ti.n, w);
}

json_t *abi_decode_log(const abi_event_t *ev, const char *const *topics, size_t topic_count, const char *data_hex,
                       char *why, size_t why_len)
{
    size_t indexed = 0;
    for (size_t i = 0; i < ev->count; i++) indexed += ev->params[i].indexed;
    if (topic_count != indexed + 1) {
        snprintf(why, why_len, "%s has %zu indexed parameters: expected %zu topics, got %zu", ev->name, indexed,
                 indexed + 1, topic_count);
        return NULL;
    }
    if (!topics[0] || strlen(topics[0]) != 66 || strncasecmp(topics[0], ev->topic0_hex, 66) != 0) {
        snprintf(why, why_len, "topic0 is not the hash of %s", ev->canonical);
        return NULL;
    }
    size_t len = 0;
    uint8_t *data = data_bytes(data_hex, &len, why, why_len);
    if (!data) return NULL;
    /* a canonical encoding reads each byte once; four times that leaves room for
     * encoders that share tails, and bounds the output of ones that loop on them */
    dec_t d = {.data = data, .len = len, .budget = 4 * len + 1024, .why = why, .wl = why_len};
    json_t *obj = json_object();
    size_t head = 0, topic = 1;
    for (size_t i = 0; obj && i < ev->count; i++) {
        const abi_param_t *p = &ev->params[i];
        d.param = p->name;
        json_t *v;
        if (p->indexed) {
            v = decode_topic(&d, p, topics[topic++]);
        } else {
            tinfo_t ti;
            size_t tl = strlen(p->type);
            type_info(p->type, tl, &ti);
            v = head <= len ? decode_at(&d, p->type, tl, 0, head)
                            : fail(&d, "data too short (%zu bytes) for a head at %zu", len, head);
            head += (size_t)ti.words * 32;
        }
        if (!v || json_object_set_new(obj, p->name, v) < 0) {
            if (v) fail(&d, "out of memory");
            json_decref(obj);
            obj = NULL;
        }
    }
    if (!obj && !d.failed) snprintf(why, why_len, "out of memory");
    free(data);
    return obj;
}
