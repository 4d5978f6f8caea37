#include "auth/jwt.h"
#include "core/err.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum key_kind { KEY_HMAC, KEY_RSA, KEY_EC_P256 } key_kind_t;

/* The only algorithms herald knows. Each is bound to one key kind: the binding,
 * not the token, decides which key checks a signature, which is what defeats
 * HS/RS confusion (an RS256 public key is never handed to HMAC). */
typedef struct alg {
    const char *name;
    key_kind_t kind;
    const EVP_MD *(*md)(void);
} alg_t;

static const alg_t algs[] = {
    {"HS256", KEY_HMAC, EVP_sha256},
    {"HS384", KEY_HMAC, EVP_sha384},
    {"HS512", KEY_HMAC, EVP_sha512},
    {"RS256", KEY_RSA, EVP_sha256},
    {"ES256", KEY_EC_P256, EVP_sha256},
};
#define ALG_COUNT (sizeof algs / sizeof *algs)

#define ES256_SIG_LEN 64
#define RSA_MIN_BITS 2048

struct jwt_verifier {
    unsigned usable;             /* bit i: algs[i] is listed and its key is here */
    unsigned char *secret;       /* auth.jwt.secret bytes, cleansed on destroy */
    size_t secret_len;
    EVP_PKEY *pkey;              /* RSA or EC P-256 public key, or NULL */
    key_kind_t pkey_kind;
    size_t rsa_sig_len;          /* modulus bytes: the only valid RS256 signature length */
    char *issuer, *audience;     /* NULL: not checked */
    int64_t leeway_s;
};

static void set_err(char *err, size_t n, const char *fmt, ...)
{
    if (!err || n == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static const alg_t *alg_find(const char *name, size_t *index)
{
    for (size_t i = 0; i < ALG_COUNT; i++)
        if (strcmp(name, algs[i].name) == 0) {
            if (index) *index = i;
            return &algs[i];
        }
    return NULL;
}

/* ---- key loading --------------------------------------------------------- */

/* A "PUBLIC KEY" or "RSA PUBLIC KEY" PEM through the decoders; failing that, the
 * key of a "CERTIFICATE" (identity providers often publish certificates). */
static EVP_PKEY *pem_load_public(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    if (!bio) return NULL;
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dctx) {
        if (OSSL_DECODER_from_bio(dctx, bio) != 1) pkey = NULL;
        OSSL_DECODER_CTX_free(dctx);
    }
    if (!pkey && BIO_reset(bio) == 0) {
        /* an empty password rather than OpenSSL's default terminal prompt: a
         * certificate is never encrypted, and a server must never block on a tty */
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, (void *)"");
        if (x) {
            pkey = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(bio);
    return pkey;
}

static int ec_curve_nid(const EVP_PKEY *pkey)
{
    char name[80];
    size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, name, sizeof name, &len) != 1) return NID_undef;
    int nid = OBJ_sn2nid(name);
    return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

static int load_key(jwt_verifier_t *v, const char *path, char *err, size_t en)
{
    v->pkey = pem_load_public(path);
    if (!v->pkey) {
        set_err(err, en, "auth.jwt.public_key_file %.200s: cannot read a PEM public key or certificate", path);
        return HERALD_EINVAL;
    }
    if (EVP_PKEY_is_a(v->pkey, "RSA")) {
        if (EVP_PKEY_get_bits(v->pkey) < RSA_MIN_BITS) {
            set_err(err, en, "auth.jwt.public_key_file %.200s: RSA key under %d bits", path, RSA_MIN_BITS);
            return HERALD_EINVAL;
        }
        int size = EVP_PKEY_get_size(v->pkey);
        if (size <= 0) {
            set_err(err, en, "auth.jwt.public_key_file %.200s: unusable RSA key", path);
            return HERALD_EINVAL;
        }
        v->pkey_kind = KEY_RSA;
        v->rsa_sig_len = (size_t)size;
        return 0;
    }
    if (EVP_PKEY_is_a(v->pkey, "EC")) {
        if (ec_curve_nid(v->pkey) != NID_X9_62_prime256v1) {
            set_err(err, en, "auth.jwt.public_key_file %.200s: EC key not on P-256 (ES256 needs P-256)", path);
            return HERALD_EINVAL;
        }
        v->pkey_kind = KEY_EC_P256;
        return 0;
    }
    set_err(err, en, "auth.jwt.public_key_file %.200s: neither an RSA nor an EC key", path);
    return HERALD_EINVAL;
}

/* Marks each listed algorithm usable when its key is present. A public-key
 * algorithm without a key file, or a key file that no listed algorithm can use,
 * is a configuration error; an HS algorithm without a secret is the
 * anonymous-only default and only makes HS tokens fail. */
static int bind_algorithms(jwt_verifier_t *v, const config_t *cfg, char *err, size_t en)
{
    bool key_used = false;
    for (size_t i = 0; i < cfg->auth.jwt_algorithm_count; i++) {
        const char *name = cfg->auth.jwt_algorithms[i];
        size_t idx = 0;
        const alg_t *a = name ? alg_find(name, &idx) : NULL;
        if (!a) {
            set_err(err, en, "auth.jwt.algorithms: \"%.40s\" is not one of HS256, HS384, HS512, RS256, ES256",
                    name ? name : "");
            return HERALD_EINVAL;
        }
        if (a->kind == KEY_HMAC) {
            if (v->secret) v->usable |= 1u << idx;
            continue;
        }
        if (!v->pkey) {
            set_err(err, en, "auth.jwt.algorithms: %s needs auth.jwt.public_key_file", a->name);
            return HERALD_EINVAL;
        }
        if (a->kind == v->pkey_kind) {
            v->usable |= 1u << idx;
            key_used = true;
        }
    }
    if (v->pkey && !key_used) {
        set_err(err, en, "auth.jwt.public_key_file holds an %s key but auth.jwt.algorithms lists no %s",
                v->pkey_kind == KEY_RSA ? "RSA" : "EC P-256", v->pkey_kind == KEY_RSA ? "RS256" : "ES256");
        return HERALD_EINVAL;
    }
    return 0;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

jwt_verifier_t *jwt_verifier_create(const config_t *cfg, char *err, size_t err_size)
{
    if (!cfg) {
        set_err(err, err_size, "no configuration");
        return NULL;
    }
    jwt_verifier_t *v = calloc(1, sizeof *v);
    if (!v) {
        set_err(err, err_size, "out of memory");
        return NULL;
    }
    v->leeway_s = cfg->auth.jwt_leeway_s;
    const char *secret = cfg->auth.jwt_secret;
    if (secret) {
        size_t n = strlen(secret);
        /* an empty HMAC key would let anyone sign; INT_MAX is HMAC()'s key limit */
        if (n == 0 || n > INT_MAX) {
            set_err(err, err_size, "auth.jwt.secret is empty");
            goto fail;
        }
        if (!(v->secret = malloc(n))) goto oom;
        memcpy(v->secret, secret, n);
        v->secret_len = n;
    }
    if (cfg->auth.jwt_public_key_file && load_key(v, cfg->auth.jwt_public_key_file, err, err_size) != 0)
        goto fail;
    if (bind_algorithms(v, cfg, err, err_size) != 0) goto fail;
    bool oom = false;
    v->issuer = dup_or_null(cfg->auth.jwt_issuer, &oom);
    v->audience = dup_or_null(cfg->auth.jwt_audience, &oom);
    if (oom) goto oom;
    ERR_clear_error();
    return v;
oom:
    set_err(err, err_size, "out of memory");
fail:
    /* OpenSSL's per-thread error queue must not leak into unrelated callers */
    ERR_clear_error();
    jwt_verifier_destroy(v);
    return NULL;
}

void jwt_verifier_destroy(jwt_verifier_t *v)
{
    if (!v) return;
    if (v->secret) OPENSSL_clear_free(v->secret, v->secret_len);
    EVP_PKEY_free(v->pkey);
    free(v->issuer);
    free(v->audience);
    free(v);
}

/* ---- decoding ------------------------------------------------------------ */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Strict base64url (RFC 7515 2): no padding, no other characters, and the unused
 * low bits of the last character zero, so each byte string has exactly one
 * encoding and a signature cannot be varied without changing its bytes.
 * out must hold n * 3 / 4 bytes. */
static int b64url_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    if (n % 4 == 1) return HERALD_EINVAL;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int val = b64url_value((unsigned char)in[i]);
        if (val < 0) return HERALD_EINVAL;
        acc = (acc << 6) | (uint32_t)val;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    if (acc != 0) return HERALD_EINVAL;
    *out_len = o;
    return 0;
}

/* ---- checks -------------------------------------------------------------- */

static int refuse(const char **reason, const char *why, int code)
{
    if (reason) *reason = why;
    return code;
}

#define MALFORMED(reason) refuse(reason, "malformed", HERALD_EINVAL)
#define DENIED(reason, why) refuse(reason, why, HERALD_EUNAUTH)
#define NOMEM(reason) refuse(reason, "out of memory", HERALD_ENOMEM)

/* Duplicate members are refused: parsers disagree on which one wins, and a token
 * must mean one thing to every reader. */
static json_t *json_parse_object(const uint8_t *p, size_t n)
{
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int check_header(const jwt_verifier_t *v, const uint8_t *p, size_t n, const alg_t **alg,
                        const char **reason)
{
    json_t *h = json_parse_object(p, n);
    if (!h) return MALFORMED(reason);
    int rc = 0;
    json_t *a = json_object_get(h, "alg");
    json_t *typ = json_object_get(h, "typ");
    size_t idx = 0;
    if (!json_is_string(a)) {
        rc = MALFORMED(reason);
    } else if (!(*alg = alg_find(json_string_value(a), &idx)) || !(v->usable & (1u << idx))) {
        /* "none" is in no table, so it lands here whatever the config says */
        rc = DENIED(reason, "algorithm not allowed");
    } else if (typ && !(json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0)) {
        rc = DENIED(reason, "unsupported typ");
    } else if (json_object_get(h, "crit")) {
        /* we understand no extension, and crit means "refuse unless you do" */
        rc = DENIED(reason, "unsupported crit");
    }
    json_decref(h);
    return rc;
}

static int digest_verify(EVP_PKEY *pkey, const EVP_MD *md, const char *data, size_t n, const uint8_t *sig,
                         size_t sn)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return HERALD_ENOMEM;
    bool ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, sn, (const unsigned char *)data, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : HERALD_EUNAUTH;
}

/* JWS carries ECDSA as raw r||s, 32 bytes each (RFC 7518 3.4); OpenSSL wants DER. */
static int es256_verify(EVP_PKEY *pkey, const char *data, size_t n, const uint8_t *sig)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, ES256_SIG_LEN / 2, NULL);
    BIGNUM *s = BN_bin2bn(sig + ES256_SIG_LEN / 2, ES256_SIG_LEN / 2, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return HERALD_ENOMEM;
    }
    /* two INTEGERs of at most 33 bytes in a SEQUENCE: 72 bytes at most */
    unsigned char der[80];
    int rc = HERALD_EUNAUTH;
    if (i2d_ECDSA_SIG(es, NULL) <= (int)sizeof der) {
        unsigned char *p = der;
        int dl = i2d_ECDSA_SIG(es, &p);
        if (dl > 0) rc = digest_verify(pkey, EVP_sha256(), data, n, der, (size_t)dl);
    }
    ECDSA_SIG_free(es);
    return rc;
}

/* The signature over header.payload as they appear in the token. Lengths are
 * checked first: a signature of the wrong size is refused without any crypto. */
static int check_signature(const jwt_verifier_t *v, const alg_t *a, const char *data, size_t n,
                           const uint8_t *sig, size_t sn)
{
    switch (a->kind) {
    case KEY_HMAC: {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (!HMAC(a->md(), v->secret, (int)v->secret_len, (const unsigned char *)data, n, mac, &ml))
            return HERALD_ENOMEM;
        int rc = ml == sn && CRYPTO_memcmp(mac, sig, ml) == 0 ? 0 : HERALD_EUNAUTH;
        /* the expected MAC of an attacker's token is worth nothing left on a stack */
        OPENSSL_cleanse(mac, sizeof mac);
        return rc;
    }
    case KEY_RSA:
        if (sn != v->rsa_sig_len) return HERALD_EUNAUTH;
        return digest_verify(v->pkey, a->md(), data, n, sig, sn);
    case KEY_EC_P256:
        if (sn != ES256_SIG_LEN) return HERALD_EUNAUTH;
        return es256_verify(v->pkey, data, n, sig);
    }
    return HERALD_EUNAUTH;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* A NumericDate (RFC 7519 2): integer or real seconds. Reals are rounded toward
 * refusal (exp down, nbf up) and clamped into int64. -1 when present but not a
 * number, 0 when absent, 1 when read. */
static int claim_time(json_t *claims, const char *key, bool round_up, int64_t *t)
{
    json_t *j = json_object_get(claims, key);
    if (!j) return 0;
    if (json_is_integer(j)) {
        *t = (int64_t)json_integer_value(j);
        return 1;
    }
    if (!json_is_real(j)) return -1;
    double d = json_real_value(j);
    d = round_up ? ceil(d) : floor(d);
    if (d >= 9223372036854775807.0)
        *t = INT64_MAX;
    else if (d <= -9223372036854775807.0)
        *t = INT64_MIN;
    else
        *t = (int64_t)d;
    return 1;
}

static bool audience_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud)) return false;
    size_t i;
    json_t *e;
    json_array_foreach(aud, i, e)
        if (json_is_string(e) && strcmp(json_string_value(e), want) == 0) return true;
    return false;
}

static int copy_channels(json_t *list, jwt_claims_t *out, const char **reason)
{
    if (!json_is_array(list)) return MALFORMED(reason);
    size_t n = json_array_size(list), i;
    json_t *e;
    json_array_foreach(list, i, e)
        if (!json_is_string(e)) return MALFORMED(reason);
    if (n == 0) return 0;
    if (!(out->channels = calloc(n, sizeof *out->channels))) return NOMEM(reason);
    json_array_foreach(list, i, e) {
        if (!(out->channels[i] = strdup(json_string_value(e)))) return NOMEM(reason);
        out->channel_count = i + 1;
    }
    return 0;
}

static int check_claims(const jwt_verifier_t *v, json_t *c, int64_t now, jwt_claims_t *out, const char **reason)
{
    int64_t exp = 0, nbf = 0;
    int has_exp = claim_time(c, "exp", false, &exp);
    int has_nbf = claim_time(c, "nbf", true, &nbf);
    if (has_exp < 0 || has_nbf < 0) return MALFORMED(reason);
    if (has_exp && now > sat_add(exp, v->leeway_s)) return DENIED(reason, "expired");
    if (has_nbf && sat_add(now, v->leeway_s) < nbf) return DENIED(reason, "not yet valid");
    if (v->issuer) {
        json_t *iss = json_object_get(c, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), v->issuer) != 0)
            return DENIED(reason, "wrong issuer");
    }
    if (v->audience && !audience_matches(json_object_get(c, "aud"), v->audience))
        return DENIED(reason, "wrong audience");
    json_t *sub = json_object_get(c, "sub");
    if (!json_is_string(sub) || json_string_length(sub) == 0) return DENIED(reason, "missing sub");
    json_t *channels = json_object_get(c, "channels");
    if (channels) {
        int rc = copy_channels(channels, out, reason);
        if (rc != 0) return rc;
    }
    if (!(out->sub = strdup(json_string_value(sub)))) return NOMEM(reason);
    out->exp = has_exp ? exp : 0;
    return 0;
}

/* ---- verify -------------------------------------------------------------- */

int jwt_verify(const jwt_verifier_t *v, const char *token, size_t len, int64_t now_s, jwt_claims_t *out,
               const char **reason)
{
    if (out) memset(out, 0, sizeof *out);
    if (!v || !token || !out || len == 0 || len > JWT_MAX_TOKEN) return MALFORMED(reason);

    const char *end = token + len;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1))) return MALFORMED(reason);

    /* Decoded sizes are at most 3/4 of the encoded ones, so the three parts fit
     * one buffer the size of the longest token: no allocation before the JSON. */
    uint8_t buf[JWT_MAX_TOKEN];
    uint8_t *hdr = buf, *sig, *payload;
    size_t hn = 0, sn = 0, pn = 0;
    if (b64url_decode(token, (size_t)(dot1 - token), hdr, &hn) != 0) return MALFORMED(reason);
    sig = hdr + hn;
    if (b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig, &sn) != 0) return MALFORMED(reason);
    payload = sig + sn;
    if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, &pn) != 0) return MALFORMED(reason);

    const alg_t *a = NULL;
    int rc = check_header(v, hdr, hn, &a, reason);
    if (rc != 0) goto done;
    /* Nothing of the payload is parsed before its signature holds. */
    rc = check_signature(v, a, token, (size_t)(dot2 - token), sig, sn);
    if (rc != 0) {
        rc = rc == HERALD_ENOMEM ? NOMEM(reason) : DENIED(reason, "bad signature");
        goto done;
    }
    json_t *claims = json_parse_object(payload, pn);
    if (!claims) {
        rc = MALFORMED(reason);
        goto done;
    }
    rc = check_claims(v, claims, now_s, out, reason);
    json_decref(claims);
    if (rc != 0) jwt_claims_free(out);
done:
    ERR_clear_error();
    return rc;
}

void jwt_claims_free(jwt_claims_t *c)
{
    if (!c) return;
    free(c->sub);
    for (size_t i = 0; i < c->channel_count; i++) free(c->channels[i]);
    free(c->channels);
    memset(c, 0, sizeof *c);
}
