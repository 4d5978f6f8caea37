/* jwt: tokens signed here with OpenSSL (HMAC, RSA PKCS#1 v1.5, ECDSA P-256 as raw
 * r||s) against verifiers built from configs. Keys are generated once per run and
 * their public halves written as PEM (SPKI, PKCS#1, certificate) into a temporary
 * directory. Covers: every algorithm valid, alg none and algorithm confusion
 * refused, time claims at the leeway boundary, iss / aud / sub / channels, strict
 * shape and base64url, tampering, key-loading errors, a guard page and
 * concurrent use. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "config.h"
#include "core/err.h"

#define NOW 1700000000LL
#define SECRET "herald-test-secret-0123456789abcdef"
#define TOK_CAP 20000

typedef struct keys {
    EVP_PKEY *rsa, *ec, *ec384, *rsa1024;
    char dir[64];
    char rsa_pub[128], rsa_pkcs1[128], rsa_cert[128], ec_pub[128], ec384_pub[128], rsa1024_pub[128];
    char garbage[128], missing[128];
    char *rsa_pem;             /* text of rsa_pub: the secret of the confusion attack */
    size_t rsa_pem_len;
} keys_t;

/* ---- token building ---- */

static size_t b64url(const void *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* "b64(hdr).b64(payload)" into out; returns its length. */
static size_t signing_input(char *out, const char *hdr, const char *payload)
{
    size_t n = b64url(hdr, strlen(hdr), out);
    out[n++] = '.';
    n += b64url(payload, strlen(payload), out + n);
    return n;
}

static size_t append_sig(char *out, size_t n, const void *sig, size_t sn)
{
    out[n++] = '.';
    return n + b64url(sig, sn, out + n);
}

static size_t tok_raw(char *out, const char *hdr, const char *payload, const void *sig, size_t sn)
{
    return append_sig(out, signing_input(out, hdr, payload), sig, sn);
}

static size_t tok_hmac(char *out, const char *hdr, const char *payload, const EVP_MD *md, const void *key,
                       size_t keylen)
{
    size_t n = signing_input(out, hdr, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    assert_non_null(HMAC(md, key, (int)keylen, (unsigned char *)out, n, mac, &ml));
    return append_sig(out, n, mac, ml);
}

static size_t tok_hs256(char *out, const char *payload)
{
    return tok_hmac(out, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, EVP_sha256(), SECRET, strlen(SECRET));
}

/* Signs with an RSA key (RS256) or an EC key (ES256, converted from DER to r||s;
 * der_out keeps OpenSSL's DER form when asked, for the wrong-format test). */
static size_t tok_pkey(char *out, const char *hdr, const char *payload, EVP_PKEY *key, bool der_out)
{
    size_t n = signing_input(out, hdr, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    size_t sl = 0;
    assert_int_equal(EVP_DigestSign(ctx, NULL, &sl, (unsigned char *)out, n), 1);
    unsigned char *sig = malloc(sl);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (unsigned char *)out, n), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_is_a(key, "EC") && !der_out) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
        assert_non_null(es);
        unsigned char raw[64];
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        n = append_sig(out, n, raw, sizeof raw);
    } else {
        n = append_sig(out, n, sig, sl);
    }
    free(sig);
    return n;
}

/* ---- verifiers ---- */

typedef struct vopts {
    const char *secret;
    const char *key_file;
    const char *algs;          /* comma-separated; NULL keeps the default ["HS256"] */
    const char *issuer, *audience;
    uint32_t leeway;
    bool leeway_set;
} vopts_t;

static void set_algs(config_t *c, const char *csv)
{
    for (size_t i = 0; i < c->auth.jwt_algorithm_count; i++) free(c->auth.jwt_algorithms[i]);
    free(c->auth.jwt_algorithms);
    c->auth.jwt_algorithms = calloc(8, sizeof(char *));
    c->auth.jwt_algorithm_count = 0;
    char *copy = strdup(csv), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        c->auth.jwt_algorithms[c->auth.jwt_algorithm_count++] = strdup(t);
    free(copy);
}

static jwt_verifier_t *make_verifier(const vopts_t *o, char *err, size_t en)
{
    config_t c;
    assert_int_equal(config_defaults(&c), 0);
    if (o->secret) c.auth.jwt_secret = strdup(o->secret);
    if (o->key_file) c.auth.jwt_public_key_file = strdup(o->key_file);
    if (o->algs) set_algs(&c, o->algs);
    if (o->issuer) c.auth.jwt_issuer = strdup(o->issuer);
    if (o->audience) c.auth.jwt_audience = strdup(o->audience);
    if (o->leeway_set) c.auth.jwt_leeway_s = o->leeway;
    err[0] = '\0';
    jwt_verifier_t *v = jwt_verifier_create(&c, err, en);
    config_free(&c);
    return v;
}

static jwt_verifier_t *must_verifier(const vopts_t *o)
{
    char err[256];
    jwt_verifier_t *v = make_verifier(o, err, sizeof err);
    if (!v) fail_msg("jwt_verifier_create: %s", err);
    return v;
}

static jwt_verifier_t *hs256_verifier(void)
{
    return must_verifier(&(vopts_t){.secret = SECRET});
}

/* Verifies and returns the code; *why gets the reason; claims freed unless kept. */
static int verify(const jwt_verifier_t *v, const char *tok, size_t n, const char **why)
{
    jwt_claims_t c;
    const char *r = "unset";
    int rc = jwt_verify(v, tok, n, NOW, &c, &r);
    if (rc != 0) {
        assert_null(c.sub);
        assert_null(c.channels);
        assert_int_equal(c.channel_count, 0);
    } else {
        assert_non_null(c.sub);
    }
    jwt_claims_free(&c);
    if (why) *why = rc == 0 ? NULL : r;
    return rc;
}

static void expect_refused(const jwt_verifier_t *v, const char *tok, size_t n, int code, const char *reason)
{
    const char *why = NULL;
    int rc = verify(v, tok, n, &why);
    if (rc != code || !why || strcmp(why, reason) != 0)
        fail_msg("token %.120s: got %d (%s), want %d (%s)", tok, rc, why ? why : "-", code, reason);
}

static void expect_ok(const jwt_verifier_t *v, const char *tok, size_t n)
{
    const char *why = NULL;
    int rc = verify(v, tok, n, &why);
    if (rc != 0) fail_msg("token %.120s refused: %d (%s)", tok, rc, why ? why : "-");
}

/* ---- valid tokens ---- */

static void test_jwt_hs256_valid_claims_filled(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":\"ignored\"}");
    jwt_claims_t c;
    const char *why = NULL;
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_string_equal(c.sub, "alice");
    assert_int_equal(c.exp, 1700000100);
    assert_null(c.channels);
    assert_int_equal(c.channel_count, 0);
    jwt_claims_free(&c);
    assert_null(c.sub);
    jwt_claims_free(&c);    /* a zeroed claims set frees again harmlessly */
    /* no exp: exp reads 0 */
    n = tok_hs256(tok, "{\"sub\":\"bob\"}");
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_int_equal(c.exp, 0);
    jwt_claims_free(&c);
    jwt_verifier_destroy(v);
}

static void test_jwt_hs384_hs512_valid_each_only_when_listed(void **state)
{
    (void)state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.secret = SECRET, .algs = "HS256,HS384,HS512"});
    char tok[TOK_CAP];
    const struct { const char *hdr; const EVP_MD *md; } cases[] = {
        {"{\"alg\":\"HS256\"}", EVP_sha256()},
        {"{\"alg\":\"HS384\"}", EVP_sha384()},
        {"{\"alg\":\"HS512\"}", EVP_sha512()},
    };
    for (size_t i = 0; i < 3; i++) {
        size_t n = tok_hmac(tok, cases[i].hdr, "{\"sub\":\"u\"}", cases[i].md, SECRET, strlen(SECRET));
        expect_ok(v, tok, n);
        /* a digest other than the one alg names is a bad signature */
        n = tok_hmac(tok, cases[i].hdr, "{\"sub\":\"u\"}", cases[(i + 1) % 3].md, SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
        /* the right digest with another secret as well */
        n = tok_hmac(tok, cases[i].hdr, "{\"sub\":\"u\"}", cases[i].md, "other", 5);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    }
    jwt_verifier_destroy(v);
}

/* The right MAC with a byte more, or a byte less: only the exact length holds. */
static void test_jwt_hmac_signature_extra_or_missing_bytes_refused(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    size_t n = signing_input(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"x\"}");
    unsigned char mac[EVP_MAX_MD_SIZE + 1] = {0};
    unsigned int ml = 0;
    assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok, n, mac, &ml));
    assert_int_equal(ml, 32);
    size_t lens[] = {32, 33, 31, 0, 64};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        size_t tn = append_sig(tok, n, mac, lens[i]);
        if (i == 0)
            expect_ok(v, tok, tn);
        else
            expect_refused(v, tok, tn, HERALD_EUNAUTH, "bad signature");
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_rs256_valid(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->rsa_pub, .algs = "RS256"});
    char tok[TOK_CAP];
    size_t n = tok_pkey(tok, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"sub\":\"r\"}", k->rsa, false);
    expect_ok(v, tok, n);
    jwt_verifier_destroy(v);
}

static void test_jwt_es256_valid_raw_signature(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->ec_pub, .algs = "ES256"});
    char tok[TOK_CAP];
    /* several signatures: r or s with leading zero bytes come up now and then */
    for (int i = 0; i < 20; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"sub\":\"e%d\"}", i);
        size_t n = tok_pkey(tok, "{\"alg\":\"ES256\"}", payload, k->ec, false);
        expect_ok(v, tok, n);
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_rs256_key_formats_pkcs1_and_certificate(void **state)
{
    keys_t *k = *state;
    char tok[TOK_CAP];
    size_t n = tok_pkey(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"r\"}", k->rsa, false);
    const char *files[] = {k->rsa_pkcs1, k->rsa_cert};
    for (size_t i = 0; i < 2; i++) {
        jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = files[i], .algs = "RS256"});
        expect_ok(v, tok, n);
        jwt_verifier_destroy(v);
    }
}

static void test_jwt_mixed_config_each_alg_with_its_key(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.secret = SECRET, .key_file = k->rsa_pub,
                                                 .algs = "HS256,RS256,ES256"});
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"h\"}");
    expect_ok(v, tok, n);
    n = tok_pkey(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"r\"}", k->rsa, false);
    expect_ok(v, tok, n);
    /* ES256 is listed but the key is RSA: nothing can check it */
    n = tok_pkey(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"e\"}", k->ec, false);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    jwt_verifier_destroy(v);
}

/* ---- algorithm refusals ---- */

static void test_jwt_alg_none_refused_with_and_without_signature(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *hdrs[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
                          "{\"alg\":\"none\",\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < 4; i++) {
        size_t n = tok_raw(tok, hdrs[i], "{\"sub\":\"x\"}", "", 0);
        assert_int_equal(tok[n - 1], '.');
        expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
        n = tok_raw(tok, hdrs[i], "{\"sub\":\"x\"}", "sig", 3);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
        /* alg none signed with the real secret is still none */
        n = tok_hmac(tok, hdrs[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
        /* two parts only: not a JWS at all */
        n = signing_input(tok, hdrs[i], "{\"sub\":\"x\"}");
        expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_alg_not_listed_refused(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    size_t n = tok_hmac(tok, "{\"alg\":\"HS512\"}", "{\"sub\":\"x\"}", EVP_sha512(), SECRET, strlen(SECRET));
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    /* unknown and differently-cased names */
    const char *hdrs[] = {"{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}", "{\"alg\":\"PS256\"}", "{\"alg\":\"\"}"};
    for (size_t i = 0; i < 4; i++) {
        n = tok_hmac(tok, hdrs[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    }
    jwt_verifier_destroy(v);
}

/* The classic confusion: the attacker knows the RSA public key and HMACs a token
 * with its PEM text, hoping the verifier hands "the key" to HMAC. */
static void test_jwt_hs256_signed_with_rsa_public_pem_refused(void **state)
{
    keys_t *k = *state;
    char tok[TOK_CAP];
    size_t n = tok_hmac(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"admin\"}", EVP_sha256(), k->rsa_pem, k->rsa_pem_len);
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->rsa_pub, .algs = "RS256"});
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    jwt_verifier_destroy(v);
    /* with HS256 listed too, only the configured secret is an HMAC key */
    v = must_verifier(&(vopts_t){.secret = SECRET, .key_file = k->rsa_pub, .algs = "HS256,RS256"});
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    jwt_verifier_destroy(v);
    /* without a trailing newline, or the key without PEM armour: same */
    n = tok_hmac(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"admin\"}", EVP_sha256(), k->rsa_pem, k->rsa_pem_len - 1);
    v = must_verifier(&(vopts_t){.key_file = k->rsa_pub, .algs = "RS256"});
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    jwt_verifier_destroy(v);
}

static void test_jwt_rs256_token_against_ec_key_refused(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->ec_pub, .algs = "RS256,ES256"});
    char tok[TOK_CAP];
    size_t n = tok_pkey(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"x\"}", k->rsa, false);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    /* an ES256 signature presented as RS256 */
    n = tok_pkey(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", k->ec, false);
    expect_ok(v, tok, n);
    char hdr_rs[64];
    size_t hl = b64url("{\"alg\":\"RS256\"}", 15, hdr_rs);
    char swapped[TOK_CAP];
    const char *dot = strchr(tok, '.');
    memcpy(swapped, hdr_rs, hl);
    strcpy(swapped + hl, dot);
    expect_refused(v, swapped, strlen(swapped), HERALD_EUNAUTH, "algorithm not allowed");
    jwt_verifier_destroy(v);
}

static void test_jwt_default_config_without_secret_refuses_every_token(void **state)
{
    (void)state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){0});
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\"}");
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    /* an empty HMAC key must not be what "no secret" means */
    n = tok_hmac(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"x\"}", EVP_sha256(), "", 0);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "algorithm not allowed");
    jwt_verifier_destroy(v);
}

/* ---- header rules ---- */

static void test_jwt_typ_case_insensitive_jwt_only(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *ok[] = {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
                        "{\"typ\":\"Jwt\",\"alg\":\"HS256\"}", "{\"alg\":\"HS256\",\"kid\":\"k1\"}"};
    for (size_t i = 0; i < 4; i++) {
        size_t n = tok_hmac(tok, ok[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_ok(v, tok, n);
    }
    const char *bad[] = {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", "{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
                         "{\"alg\":\"HS256\",\"typ\":1}", "{\"alg\":\"HS256\",\"typ\":null}",
                         "{\"alg\":\"HS256\",\"typ\":\"\"}"};
    for (size_t i = 0; i < 5; i++) {
        size_t n = tok_hmac(tok, bad[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EUNAUTH, "unsupported typ");
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_crit_present_refused(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *bad[] = {"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", "{\"alg\":\"HS256\",\"crit\":[]}",
                         "{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = tok_hmac(tok, bad[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EUNAUTH, "unsupported crit");
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_header_not_object_or_alg_not_string_malformed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *bad[] = {"[\"HS256\"]", "\"HS256\"", "{\"alg\":\"HS256\"", "{\"alg\":256}", "{}",
                         "{\"alg\":null}", "", "{\"alg\":\"HS256\"} x", "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
                         "{\"alg\":\"HS256\",\"alg\":\"none\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = tok_hmac(tok, bad[i], "{\"sub\":\"x\"}", EVP_sha256(), SECRET, strlen(SECRET));
        expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    }
    jwt_verifier_destroy(v);
}

/* ---- time claims ---- */

static void test_jwt_exp_leeway_boundary(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();     /* default leeway 5 */
    char tok[TOK_CAP], payload[128];
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld}", NOW - 5);
    size_t n = tok_hs256(tok, payload);
    expect_ok(v, tok, n);
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld}", NOW - 6);
    n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "expired");
    jwt_verifier_destroy(v);

    v = must_verifier(&(vopts_t){.secret = SECRET, .leeway_set = true, .leeway = 0});
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld}", NOW);
    n = tok_hs256(tok, payload);
    expect_ok(v, tok, n);
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld}", NOW - 1);
    n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "expired");
    jwt_verifier_destroy(v);
}

static void test_jwt_nbf_future_refused_leeway_boundary(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP], payload[128];
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"nbf\":%lld}", NOW + 5);
    size_t n = tok_hs256(tok, payload);
    expect_ok(v, tok, n);
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"nbf\":%lld}", NOW + 6);
    n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "not yet valid");
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"nbf\":%lld}", NOW + 3600);
    n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "not yet valid");
    jwt_verifier_destroy(v);
}

static void test_jwt_time_claims_reals_extremes_and_wrong_types(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP], payload[128];
    /* reals round toward refusal: exp down, nbf up */
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld.9}", NOW - 6);
    size_t n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "expired");
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"exp\":%lld.5}", NOW - 5);
    n = tok_hs256(tok, payload);
    expect_ok(v, tok, n);
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"nbf\":%lld.1}", NOW + 5);
    n = tok_hs256(tok, payload);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "not yet valid");
    /* far future exp and far past nbf: no overflow with the leeway */
    const char *ok[] = {"{\"sub\":\"x\",\"exp\":9223372036854775807}", "{\"sub\":\"x\",\"exp\":1e300}",
                        "{\"sub\":\"x\",\"nbf\":-9223372036854775808}", "{\"sub\":\"x\",\"nbf\":-1e300}",
                        "{\"sub\":\"x\",\"iat\":{\"any\":1}}"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        n = tok_hs256(tok, ok[i]);
        expect_ok(v, tok, n);
    }
    const char *expired[] = {"{\"sub\":\"x\",\"exp\":-9223372036854775808}", "{\"sub\":\"x\",\"exp\":-1e300}",
                             "{\"sub\":\"x\",\"exp\":0}"};
    for (size_t i = 0; i < sizeof expired / sizeof *expired; i++) {
        n = tok_hs256(tok, expired[i]);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "expired");
    }
    n = tok_hs256(tok, "{\"sub\":\"x\",\"nbf\":1e300}");
    expect_refused(v, tok, n, HERALD_EUNAUTH, "not yet valid");
    const char *bad[] = {"{\"sub\":\"x\",\"exp\":\"1700000100\"}", "{\"sub\":\"x\",\"exp\":null}",
                         "{\"sub\":\"x\",\"nbf\":true}", "{\"sub\":\"x\",\"exp\":[1]}",
                         "{\"sub\":\"x\",\"exp\":1e400}", "{\"sub\":\"x\",\"exp\":99999999999999999999}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    }
    /* the clamped exp is what the caller sees */
    n = tok_hs256(tok, "{\"sub\":\"x\",\"exp\":1e300}");
    jwt_claims_t c;
    const char *why;
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_true(c.exp == INT64_MAX);
    jwt_claims_free(&c);
    jwt_verifier_destroy(v);
}

/* ---- iss, aud, sub, channels ---- */

static void test_jwt_issuer_checked_only_when_configured(void **state)
{
    (void)state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.secret = SECRET, .issuer = "https://auth.example"});
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\",\"iss\":\"https://auth.example\"}");
    expect_ok(v, tok, n);
    const char *bad[] = {"{\"sub\":\"x\"}", "{\"sub\":\"x\",\"iss\":\"https://auth.example/\"}",
                         "{\"sub\":\"x\",\"iss\":\"HTTPS://auth.example\"}", "{\"sub\":\"x\",\"iss\":null}",
                         "{\"sub\":\"x\",\"iss\":[\"https://auth.example\"]}", "{\"sub\":\"x\",\"iss\":\"\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "wrong issuer");
    }
    jwt_verifier_destroy(v);
    v = hs256_verifier();
    n = tok_hs256(tok, "{\"sub\":\"x\",\"iss\":42}");
    expect_ok(v, tok, n);
    jwt_verifier_destroy(v);
}

static void test_jwt_audience_string_or_array(void **state)
{
    (void)state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.secret = SECRET, .audience = "herald"});
    char tok[TOK_CAP];
    const char *ok[] = {"{\"sub\":\"x\",\"aud\":\"herald\"}", "{\"sub\":\"x\",\"aud\":[\"api\",\"herald\"]}",
                        "{\"sub\":\"x\",\"aud\":[1,null,\"herald\"]}"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t n = tok_hs256(tok, ok[i]);
        expect_ok(v, tok, n);
    }
    const char *bad[] = {"{\"sub\":\"x\"}", "{\"sub\":\"x\",\"aud\":\"Herald\"}", "{\"sub\":\"x\",\"aud\":[]}",
                         "{\"sub\":\"x\",\"aud\":[\"api\"]}", "{\"sub\":\"x\",\"aud\":[[\"herald\"]]}",
                         "{\"sub\":\"x\",\"aud\":{\"herald\":1}}", "{\"sub\":\"x\",\"aud\":\"herald2\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "wrong audience");
    }
    jwt_verifier_destroy(v);
}

static void test_jwt_sub_missing_empty_or_not_string_refused(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *bad[] = {"{}", "{\"sub\":\"\"}", "{\"sub\":42}", "{\"sub\":null}", "{\"sub\":[\"x\"]}",
                         "{\"Sub\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "missing sub");
    }
    /* a NUL inside sub would cut connection.user short: the JSON is refused */
    size_t n = tok_hs256(tok, "{\"sub\":\"ad\\u0000min\"}");
    expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    /* escapes and UTF-8 come through decoded */
    n = tok_hs256(tok, "{\"sub\":\"user:0x\\u00e9\\/\"}");
    jwt_claims_t c;
    const char *why;
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_string_equal(c.sub, "user:0x\xc3\xa9/");
    jwt_claims_free(&c);
    jwt_verifier_destroy(v);
}

static void test_jwt_channels_claim_parsed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\",\"channels\":[\"market:m1\",\"jobs\",\"\"],\"other\":{\"a\":[1]}}");
    jwt_claims_t c;
    const char *why;
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_int_equal(c.channel_count, 3);
    assert_string_equal(c.channels[0], "market:m1");
    assert_string_equal(c.channels[1], "jobs");
    assert_string_equal(c.channels[2], "");
    jwt_claims_free(&c);
    assert_null(c.channels);
    n = tok_hs256(tok, "{\"sub\":\"x\",\"channels\":[]}");
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, &why), 0);
    assert_int_equal(c.channel_count, 0);
    jwt_claims_free(&c);
    const char *bad[] = {"{\"sub\":\"x\",\"channels\":\"jobs\"}", "{\"sub\":\"x\",\"channels\":[\"jobs\",1]}",
                         "{\"sub\":\"x\",\"channels\":[null]}", "{\"sub\":\"x\",\"channels\":{\"jobs\":true}}",
                         "{\"sub\":\"x\",\"channels\":null}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    }
    jwt_verifier_destroy(v);
}

/* ---- shape and encoding ---- */

static void test_jwt_malformed_part_count_and_extra_dots(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP], bad[TOK_CAP + 8];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\"}");
    expect_ok(v, tok, n);
    const char *first = strchr(tok, '.'), *second = strchr(first + 1, '.');
    /* empty, one part, two parts */
    expect_refused(v, tok, 0, HERALD_EINVAL, "malformed");
    expect_refused(v, tok, (size_t)(first - tok), HERALD_EINVAL, "malformed");
    expect_refused(v, tok, (size_t)(second - tok), HERALD_EINVAL, "malformed");
    /* a trailing dot, a fourth part, a doubled dot */
    const char *forms[] = {"%s.", "%s.c2ln", "%s..", ".%s"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(bad, sizeof bad, forms[i], tok);
        expect_refused(v, bad, strlen(bad), HERALD_EINVAL, "malformed");
    }
    size_t hl = (size_t)(first - tok);
    memcpy(bad, tok, hl);
    bad[hl] = '.';
    strcpy(bad + hl + 1, first);
    expect_refused(v, bad, strlen(bad), HERALD_EINVAL, "malformed");
    expect_refused(v, "..", 2, HERALD_EINVAL, "malformed");
    expect_refused(v, "...", 3, HERALD_EINVAL, "malformed");
    /* empty payload part: decodes to nothing, which is not JSON */
    n = tok_hmac(tok, "{\"alg\":\"HS256\"}", "", EVP_sha256(), SECRET, strlen(SECRET));
    expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    jwt_verifier_destroy(v);
}

/* Replaces the character at index i of a copy of tok and expects "malformed". */
static void expect_char_malformed(const jwt_verifier_t *v, const char *tok, size_t n, size_t i, char c)
{
    char bad[TOK_CAP];
    memcpy(bad, tok, n);
    bad[i] = c;
    expect_refused(v, bad, n, HERALD_EINVAL, "malformed");
}

static void test_jwt_malformed_base64url_strict(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP], bad[TOK_CAP + 8];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\"}");
    const char *first = strchr(tok, '.'), *second = strchr(first + 1, '.');
    size_t parts[3] = {0, (size_t)(first - tok) + 1, (size_t)(second - tok) + 1};
    /* standard-alphabet, padding, blanks, NUL, high bytes: in each part */
    const char chars[] = {'+', '/', '=', ' ', '\0', '\n', '\x80', '\xff', '%', '*'};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < sizeof chars; i++) expect_char_malformed(v, tok, n, parts[p] + 1, chars[i]);
    /* padding appended to the signature */
    snprintf(bad, sizeof bad, "%s=", tok);
    expect_refused(v, bad, strlen(bad), HERALD_EINVAL, "malformed");
    /* a part of 4k+1 characters cannot be base64 (the signature has 43) */
    n = tok_hs256(tok, "{\"sub\":\"x\"}");
    snprintf(bad, sizeof bad, "%sAA", tok);
    expect_refused(v, bad, strlen(bad), HERALD_EINVAL, "malformed");
    /* non-canonical trailing bits: HS256's 32 bytes end in a character holding
     * 4 bits of data and 2 zero bits; setting a zero bit keeps the decoded bytes
     * but changes the text, and must not verify */
    n = tok_hs256(tok, "{\"sub\":\"x\"}");
    char last = tok[n - 1];
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t val = (size_t)(strchr(alpha, last) - alpha);
    assert_int_equal(val & 3, 0);
    expect_char_malformed(v, tok, n, n - 1, alpha[val | 1]);
    expect_char_malformed(v, tok, n, n - 1, alpha[val | 2]);
    jwt_verifier_destroy(v);
}

static void test_jwt_payload_not_json_or_not_object_malformed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    const char *bad[] = {"sub=x", "{\"sub\":\"x\"", "[\"sub\",\"x\"]", "\"x\"", "42", "null",
                         "{\"sub\":\"x\"}{}", "{\"sub\":\"x\",\"sub\":\"admin\"}", "{\"sub\":\"\xff\"}",
                         "{\"sub\":\"x\"} trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = tok_hs256(tok, bad[i]);
        expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    }
    /* whitespace around the object is JSON */
    size_t n = tok_hs256(tok, " \n{\"sub\":\"x\"}\t ");
    expect_ok(v, tok, n);
    jwt_verifier_destroy(v);
}

static void test_jwt_es256_signature_wrong_length_or_der_refused(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->ec_pub, .algs = "ES256"});
    char tok[TOK_CAP];
    uint8_t sig[72] = {0};
    size_t lens[] = {0, 1, 32, 63, 65, 72};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        size_t n = tok_raw(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", sig, lens[i]);
        expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    }
    /* all-zero r and s are out of range */
    size_t n = tok_raw(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", sig, 64);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    memset(sig, 0xff, 64);
    n = tok_raw(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", sig, 64);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    /* OpenSSL's own DER form is not what JWS carries */
    n = tok_pkey(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}", k->ec, true);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    jwt_verifier_destroy(v);
}

static void test_jwt_rs256_signature_wrong_length_refused(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.key_file = k->rsa_pub, .algs = "RS256"});
    char tok[TOK_CAP];
    size_t n = tok_pkey(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"x\"}", k->rsa, false);
    expect_ok(v, tok, n);
    /* one byte short, and a leading zero byte added (same number, wrong size) */
    uint8_t sig[257] = {0};
    const char *dot = strrchr(tok, '.');
    assert_int_equal(strlen(dot + 1), 342);
    n = tok_raw(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"x\"}", sig, 255);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    /* a leading zero byte added */
    n = tok_raw(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"x\"}", sig, sizeof sig);
    expect_refused(v, tok, n, HERALD_EUNAUTH, "bad signature");
    jwt_verifier_destroy(v);
}

static void test_jwt_huge_token_malformed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    static char huge[1 << 20];
    memset(huge, 'A', sizeof huge);
    huge[100] = '.';
    huge[200] = '.';
    expect_refused(v, huge, sizeof huge, HERALD_EINVAL, "malformed");
    expect_refused(v, huge, JWT_MAX_TOKEN + 1, HERALD_EINVAL, "malformed");
    expect_refused(v, huge, (size_t)-1, HERALD_EINVAL, "malformed");
    jwt_verifier_destroy(v);
}

/* Bytes that base64url-encode to exactly c characters (c % 4 != 1). */
static size_t bytes_for_chars(size_t c)
{
    return c / 4 * 3 + (c % 4 ? c % 4 - 1 : 0);
}

static void test_jwt_exactly_max_token_accepted_one_more_malformed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    static char tok[TOK_CAP];
    char payload[8192];
    /* header, '.', payload, '.', 43 characters of HS256 signature */
    size_t hdr = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27, payload);
    size_t chars = JWT_MAX_TOKEN - hdr - 1 - 1 - 43;
    assert_int_not_equal(chars % 4, 1);
    size_t plen = bytes_for_chars(chars);
    size_t fixed = strlen("{\"sub\":\"x\",\"pad\":\"\"}");
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"pad\":\"%0*d\"}", (int)(plen - fixed), 0);
    size_t n = tok_hs256(tok, payload);
    assert_int_equal(n, JWT_MAX_TOKEN);
    expect_ok(v, tok, n);
    /* one byte more in the claim: at least one character more */
    snprintf(payload, sizeof payload, "{\"sub\":\"x\",\"pad\":\"%0*d\"}", (int)(plen - fixed + 1), 0);
    n = tok_hs256(tok, payload);
    assert_true(n > JWT_MAX_TOKEN);
    expect_refused(v, tok, n, HERALD_EINVAL, "malformed");
    jwt_verifier_destroy(v);
}

/* ---- tampering ---- */

static void test_jwt_tampered_payload_or_signature_refused(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *hs = hs256_verifier();
    jwt_verifier_t *rs = must_verifier(&(vopts_t){.key_file = k->rsa_pub, .algs = "RS256"});
    jwt_verifier_t *es = must_verifier(&(vopts_t){.key_file = k->ec_pub, .algs = "ES256"});
    char tok[TOK_CAP], other[TOK_CAP], mix[TOK_CAP * 2];
    for (int which = 0; which < 3; which++) {
        const jwt_verifier_t *v = which == 0 ? hs : which == 1 ? rs : es;
        size_t n, on;
        if (which == 0) {
            n = tok_hs256(tok, "{\"sub\":\"alice\"}");
            on = tok_hs256(other, "{\"sub\":\"admin\"}");
        } else {
            EVP_PKEY *key = which == 1 ? k->rsa : k->ec;
            const char *hdr = which == 1 ? "{\"alg\":\"RS256\"}" : "{\"alg\":\"ES256\"}";
            n = tok_pkey(tok, hdr, "{\"sub\":\"alice\"}", key, false);
            on = tok_pkey(other, hdr, "{\"sub\":\"admin\"}", key, false);
        }
        expect_ok(v, tok, n);
        expect_ok(v, other, on);
        /* header and signature of one, payload of the other */
        const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
        const char *o1 = strchr(other, '.'), *o2 = strrchr(other, '.');
        int m = snprintf(mix, sizeof mix, "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(o2 - o1), o1, d2);
        expect_refused(v, mix, (size_t)m, HERALD_EUNAUTH, "bad signature");
        /* one bit of the signature: flip a middle character between two letters */
        memcpy(mix, tok, n);
        size_t mid = (size_t)(d2 - tok) + 5;
        mix[mid] = mix[mid] == 'A' ? 'B' : 'A';
        expect_refused(v, mix, n, HERALD_EUNAUTH, "bad signature");
        /* a character of the payload */
        memcpy(mix, tok, n);
        mid = (size_t)(d1 - tok) + 2;
        mix[mid] = mix[mid] == 'A' ? 'B' : 'A';
        expect_refused(v, mix, n, HERALD_EUNAUTH, "bad signature");
        /* the signature stripped */
        expect_refused(v, tok, (size_t)(d2 - tok) + 1, HERALD_EUNAUTH, "bad signature");
    }
    jwt_verifier_destroy(hs);
    jwt_verifier_destroy(rs);
    jwt_verifier_destroy(es);
}

/* ---- configuration ---- */

static void expect_create_fails(const vopts_t *o, const char *in_err)
{
    char err[256];
    jwt_verifier_t *v = make_verifier(o, err, sizeof err);
    if (v) {
        jwt_verifier_destroy(v);
        fail_msg("verifier created; expected an error containing \"%s\"", in_err);
    }
    if (!strstr(err, in_err)) fail_msg("error \"%s\" lacks \"%s\"", err, in_err);
    if (strstr(err, SECRET)) fail_msg("error \"%s\" shows the secret", err);
}

static void test_jwt_create_refuses_unusable_config(void **state)
{
    keys_t *k = *state;
    expect_create_fails(&(vopts_t){.key_file = k->missing, .algs = "RS256"}, "public_key_file");
    expect_create_fails(&(vopts_t){.key_file = k->garbage, .algs = "RS256"}, "cannot read");
    expect_create_fails(&(vopts_t){.algs = "RS256"}, "RS256 needs auth.jwt.public_key_file");
    expect_create_fails(&(vopts_t){.secret = SECRET, .algs = "HS256,ES256"}, "ES256 needs");
    expect_create_fails(&(vopts_t){.key_file = k->ec_pub, .algs = "RS256"}, "lists no ES256");
    expect_create_fails(&(vopts_t){.key_file = k->rsa_pub, .algs = "ES256"}, "lists no RS256");
    expect_create_fails(&(vopts_t){.key_file = k->ec384_pub, .algs = "ES256"}, "P-256");
    expect_create_fails(&(vopts_t){.key_file = k->rsa1024_pub, .algs = "RS256"}, "2048");
    expect_create_fails(&(vopts_t){.secret = "", .algs = "HS256"}, "secret is empty");
    expect_create_fails(&(vopts_t){.secret = SECRET, .algs = "HS256,none"}, "\"none\"");
    expect_create_fails(&(vopts_t){.secret = SECRET, .algs = "PS256"}, "\"PS256\"");
    /* a NULL or zero-size err buffer is allowed */
    config_t c;
    assert_int_equal(config_defaults(&c), 0);
    c.auth.jwt_public_key_file = strdup(k->garbage);
    set_algs(&c, "RS256");
    assert_null(jwt_verifier_create(&c, NULL, 0));
    config_free(&c);
    assert_null(jwt_verifier_create(NULL, NULL, 0));
    jwt_verifier_destroy(NULL);
}

static void test_jwt_verifier_outlives_config(void **state)
{
    keys_t *k = *state;
    config_t c;
    assert_int_equal(config_defaults(&c), 0);
    c.auth.jwt_secret = strdup(SECRET);
    c.auth.jwt_public_key_file = strdup(k->ec_pub);
    c.auth.jwt_issuer = strdup("iss");
    c.auth.jwt_audience = strdup("aud");
    set_algs(&c, "HS256,ES256");
    char err[256];
    jwt_verifier_t *v = jwt_verifier_create(&c, err, sizeof err);
    assert_non_null(v);
    /* scribble over and free every string the verifier could have borrowed */
    memset(c.auth.jwt_secret, 'z', strlen(c.auth.jwt_secret));
    memset(c.auth.jwt_issuer, 'z', strlen(c.auth.jwt_issuer));
    config_free(&c);
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\",\"iss\":\"iss\",\"aud\":\"aud\"}");
    expect_ok(v, tok, n);
    n = tok_pkey(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\",\"iss\":\"iss\",\"aud\":[\"aud\"]}", k->ec, false);
    expect_ok(v, tok, n);
    jwt_verifier_destroy(v);
}

static void test_jwt_verify_null_arguments_malformed(void **state)
{
    (void)state;
    jwt_verifier_t *v = hs256_verifier();
    char tok[TOK_CAP];
    size_t n = tok_hs256(tok, "{\"sub\":\"x\"}");
    jwt_claims_t c;
    const char *why = NULL;
    assert_int_equal(jwt_verify(NULL, tok, n, NOW, &c, &why), HERALD_EINVAL);
    assert_null(c.sub);
    assert_int_equal(jwt_verify(v, NULL, 5, NOW, &c, &why), HERALD_EINVAL);
    assert_int_equal(jwt_verify(v, tok, n, NOW, NULL, &why), HERALD_EINVAL);
    /* reason may be NULL */
    char other[TOK_CAP];
    size_t on = tok_hmac(other, "{\"alg\":\"HS256\"}", "{\"sub\":\"x\"}", EVP_sha256(), "k", 1);
    assert_int_equal(jwt_verify(v, other, on, NOW, &c, NULL), HERALD_EUNAUTH);
    assert_int_equal(jwt_verify(v, tok, n, NOW, &c, NULL), 0);
    jwt_claims_free(&c);
    jwt_claims_free(NULL);
    jwt_verifier_destroy(v);
}

/* ---- memory safety ---- */

/* Every prefix of a valid token, flush against a PROT_NONE page: a read past
 * token[len - 1] faults. */
static void test_jwt_guard_page_no_overread(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *hs = hs256_verifier();
    jwt_verifier_t *es = must_verifier(&(vopts_t){.key_file = k->ec_pub, .algs = "ES256"});
    long pg = sysconf(_SC_PAGESIZE);
    size_t area = (size_t)pg * 4;
    uint8_t *map = mmap(NULL, area + (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + area, (size_t)pg, PROT_NONE), 0);
    char *end = (char *)map + area;
    char tok[TOK_CAP];
    for (int which = 0; which < 2; which++) {
        const jwt_verifier_t *v = which == 0 ? hs : es;
        size_t n = which == 0 ? tok_hs256(tok, "{\"sub\":\"guard\",\"channels\":[\"a\"],\"exp\":1800000000}")
                              : tok_pkey(tok, "{\"alg\":\"ES256\"}", "{\"sub\":\"guard\"}", k->ec, false);
        assert_true(n < area);
        memcpy(end - n, tok, n);
        expect_ok(v, end - n, n);
        for (size_t len = 0; len < n; len++) {
            memcpy(end - len, tok, len);
            const char *why;
            assert_int_not_equal(verify(v, end - len, len, &why), 0);
        }
    }
    munmap(map, area + (size_t)pg);
    jwt_verifier_destroy(hs);
    jwt_verifier_destroy(es);
}

typedef struct thread_arg {
    const jwt_verifier_t *v;
    const char *good, *bad;
    size_t good_len, bad_len;
    int failures;
} thread_arg_t;

static void *verify_loop(void *p)
{
    thread_arg_t *a = p;
    for (int i = 0; i < 200; i++) {
        jwt_claims_t c;
        const char *why;
        if (jwt_verify(a->v, a->good, a->good_len, NOW, &c, &why) != 0 || strcmp(c.sub, "t") != 0) a->failures++;
        jwt_claims_free(&c);
        if (jwt_verify(a->v, a->bad, a->bad_len, NOW, &c, &why) != HERALD_EUNAUTH) a->failures++;
    }
    return NULL;
}

static void test_jwt_concurrent_verify_one_verifier(void **state)
{
    keys_t *k = *state;
    jwt_verifier_t *v = must_verifier(&(vopts_t){.secret = SECRET, .key_file = k->ec_pub, .algs = "HS256,ES256"});
    char good[2][TOK_CAP], bad[2][TOK_CAP];
    size_t gl[2], bl[2];
    gl[0] = tok_hs256(good[0], "{\"sub\":\"t\"}");
    bl[0] = tok_hmac(bad[0], "{\"alg\":\"HS256\"}", "{\"sub\":\"t\"}", EVP_sha256(), "x", 1);
    gl[1] = tok_pkey(good[1], "{\"alg\":\"ES256\"}", "{\"sub\":\"t\"}", k->ec, false);
    bl[1] = tok_pkey(bad[1], "{\"alg\":\"ES256\"}", "{\"sub\":\"t\"}", k->ec, true);
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){v, good[i % 2], bad[i % 2], gl[i % 2], bl[i % 2], 0};
        assert_int_equal(pthread_create(&th[i], NULL, verify_loop, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    jwt_verifier_destroy(v);
}

/* ---- key fixtures ---- */

static void write_pem(const char *path, EVP_PKEY *key, const char *structure)
{
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    if (!structure) {
        assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    } else {
        OSSL_ENCODER_CTX *e = OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_PUBLIC_KEY, "PEM", structure, NULL);
        assert_non_null(e);
        assert_int_equal(OSSL_ENCODER_to_bio(e, bio), 1);
        OSSL_ENCODER_CTX_free(e);
    }
    BIO_free(bio);
}

static void write_cert(const char *path, EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"herald-test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    BIO_free(bio);
    X509_free(x);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 8192);
    *len = fread(buf, 1, 8191, f);
    fclose(f);
    return buf;
}

static int keys_setup(void **state)
{
    keys_t *k = calloc(1, sizeof *k);
    if (!k) return -1;
    strcpy(k->dir, "/tmp/herald-jwt-XXXXXX");
    if (!mkdtemp(k->dir)) return -1;
    k->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    k->rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    k->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    k->ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    if (!k->rsa || !k->rsa1024 || !k->ec || !k->ec384) return -1;
#define PATH(field, name) snprintf(k->field, sizeof k->field, "%s/%s", k->dir, name)
    PATH(rsa_pub, "rsa.pub.pem");
    PATH(rsa_pkcs1, "rsa.pkcs1.pem");
    PATH(rsa_cert, "rsa.cert.pem");
    PATH(ec_pub, "ec.pub.pem");
    PATH(ec384_pub, "ec384.pub.pem");
    PATH(rsa1024_pub, "rsa1024.pub.pem");
    PATH(garbage, "garbage.pem");
    PATH(missing, "missing.pem");
#undef PATH
    write_pem(k->rsa_pub, k->rsa, NULL);
    write_pem(k->rsa_pkcs1, k->rsa, "type-specific");
    write_cert(k->rsa_cert, k->rsa);
    write_pem(k->ec_pub, k->ec, NULL);
    write_pem(k->ec384_pub, k->ec384, NULL);
    write_pem(k->rsa1024_pub, k->rsa1024, NULL);
    FILE *f = fopen(k->garbage, "w");
    if (!f) return -1;
    fputs("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n", f);
    fclose(f);
    k->rsa_pem = read_all(k->rsa_pub, &k->rsa_pem_len);
    if (!k->rsa_pem || !strstr(k->rsa_pem, "BEGIN PUBLIC KEY")) return -1;
    f = fopen(k->rsa_pkcs1, "r");
    char line[64] = "";
    if (!f || !fgets(line, sizeof line, f) || !strstr(line, "BEGIN RSA PUBLIC KEY")) return -1;
    fclose(f);
    *state = k;
    return 0;
}

static int keys_teardown(void **state)
{
    keys_t *k = *state;
    if (!k) return 0;
    const char *files[] = {k->rsa_pub, k->rsa_pkcs1, k->rsa_cert, k->ec_pub, k->ec384_pub, k->rsa1024_pub,
                           k->garbage};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(files[i]);
    rmdir(k->dir);
    EVP_PKEY_free(k->rsa);
    EVP_PKEY_free(k->rsa1024);
    EVP_PKEY_free(k->ec);
    EVP_PKEY_free(k->ec384);
    free(k->rsa_pem);
    free(k);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_hs256_valid_claims_filled),
        cmocka_unit_test(test_jwt_hs384_hs512_valid_each_only_when_listed),
        cmocka_unit_test(test_jwt_hmac_signature_extra_or_missing_bytes_refused),
        cmocka_unit_test(test_jwt_rs256_valid),
        cmocka_unit_test(test_jwt_es256_valid_raw_signature),
        cmocka_unit_test(test_jwt_rs256_key_formats_pkcs1_and_certificate),
        cmocka_unit_test(test_jwt_mixed_config_each_alg_with_its_key),
        cmocka_unit_test(test_jwt_alg_none_refused_with_and_without_signature),
        cmocka_unit_test(test_jwt_alg_not_listed_refused),
        cmocka_unit_test(test_jwt_hs256_signed_with_rsa_public_pem_refused),
        cmocka_unit_test(test_jwt_rs256_token_against_ec_key_refused),
        cmocka_unit_test(test_jwt_default_config_without_secret_refuses_every_token),
        cmocka_unit_test(test_jwt_typ_case_insensitive_jwt_only),
        cmocka_unit_test(test_jwt_crit_present_refused),
        cmocka_unit_test(test_jwt_header_not_object_or_alg_not_string_malformed),
        cmocka_unit_test(test_jwt_exp_leeway_boundary),
        cmocka_unit_test(test_jwt_nbf_future_refused_leeway_boundary),
        cmocka_unit_test(test_jwt_time_claims_reals_extremes_and_wrong_types),
        cmocka_unit_test(test_jwt_issuer_checked_only_when_configured),
        cmocka_unit_test(test_jwt_audience_string_or_array),
        cmocka_unit_test(test_jwt_sub_missing_empty_or_not_string_refused),
        cmocka_unit_test(test_jwt_channels_claim_parsed),
        cmocka_unit_test(test_jwt_malformed_part_count_and_extra_dots),
        cmocka_unit_test(test_jwt_malformed_base64url_strict),
        cmocka_unit_test(test_jwt_payload_not_json_or_not_object_malformed),
        cmocka_unit_test(test_jwt_es256_signature_wrong_length_or_der_refused),
        cmocka_unit_test(test_jwt_rs256_signature_wrong_length_refused),
        cmocka_unit_test(test_jwt_huge_token_malformed),
        cmocka_unit_test(test_jwt_exactly_max_token_accepted_one_more_malformed),
        cmocka_unit_test(test_jwt_tampered_payload_or_signature_refused),
        cmocka_unit_test(test_jwt_create_refuses_unusable_config),
        cmocka_unit_test(test_jwt_verifier_outlives_config),
        cmocka_unit_test(test_jwt_verify_null_arguments_malformed),
        cmocka_unit_test(test_jwt_guard_page_no_overread),
        cmocka_unit_test(test_jwt_concurrent_verify_one_verifier),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
