/* libFuzzer target for jwt_verify against fixed HS256 verifiers, checking the
 * result contract on every input and, for accepted tokens, the claims against an
 * independent parse of the payload.
 *
 * Input: byte 0 chooses the run, the rest is the material.
 *   bit 0     0: the rest is the token as is (shape, base64url, header paths);
 *             1: byte 1 is the header length h, then h header bytes, then the
 *                payload bytes; both are base64url-encoded and signed with HS256,
 *                so the JSON of header and payload is reached
 *   bit 1     verifier: plain, or with issuer, audience and leeway 0
 *   bits 2-4  the clock: an index into `clocks`
 *   bit 5     (bit 0 set) sign with a wrong secret
 *   bit 6     (bit 0 set) sign with HS384 instead of HS256 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/jwt.h"
#include "config.h"
#include "core/err.h"

#define SECRET "fuzz-secret-herald"
#define ISSUER "https://issuer.herald"
#define AUDIENCE "herald"

/* Built once: libFuzzer runs inputs in one process, and verifiers are immutable. */
static jwt_verifier_t *verifiers[2];

static const int64_t clocks[8] = {
    0, 1, 1700000000, 1800000000, -1, INT64_MAX, INT64_MIN, 4102444800,
};

static void check(int cond)
{
    if (!cond)
        abort();
}

static jwt_verifier_t *make_verifier(bool strict)
{
    config_t c;
    check(config_defaults(&c) == 0);
    c.auth.jwt_secret = strdup(SECRET);
    if (strict) {
        c.auth.jwt_issuer = strdup(ISSUER);
        c.auth.jwt_audience = strdup(AUDIENCE);
        c.auth.jwt_leeway_s = 0;
    }
    /* HS384 listed too, so bit 6 reaches verification rather than the alg check */
    for (size_t i = 0; i < c.auth.jwt_algorithm_count; i++)
        free(c.auth.jwt_algorithms[i]);
    free(c.auth.jwt_algorithms);
    c.auth.jwt_algorithms = calloc(2, sizeof(char *));
    check(c.auth.jwt_algorithms != NULL);
    c.auth.jwt_algorithms[0] = strdup("HS256");
    c.auth.jwt_algorithms[1] = strdup("HS384");
    c.auth.jwt_algorithm_count = 2;
    char err[256];
    jwt_verifier_t *v = jwt_verifier_create(&c, err, sizeof err);
    check(v != NULL);
    config_free(&c);
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verifiers[0] = make_verifier(false);
    verifiers[1] = make_verifier(true);
    return 0;
}

static size_t b64url(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i >= 1) {
        uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = tab[(v >> 6) & 63];
    }
    return o;
}

/* An accepted token's claims agree with jansson's own reading of the payload. */
static void check_claims(const jwt_claims_t *c, const uint8_t *payload, size_t pn)
{
    check(c->sub != NULL && c->sub[0] != '\0');
    check((c->channels == NULL) == (c->channel_count == 0));
    for (size_t i = 0; i < c->channel_count; i++)
        check(c->channels[i] != NULL);
    if (!payload)
        return;
    json_t *j = json_loadb((const char *)payload, pn, 0, NULL);
    check(json_is_object(j));
    check(strcmp(json_string_value(json_object_get(j, "sub")), c->sub) == 0);
    json_t *ch = json_object_get(j, "channels");
    check(json_array_size(ch) == c->channel_count);
    for (size_t i = 0; i < c->channel_count; i++)
        check(strcmp(json_string_value(json_array_get(ch, i)), c->channels[i]) == 0);
    json_decref(j);
}

static void run(const jwt_verifier_t *v, const char *tok, size_t n, int64_t now, const uint8_t *payload,
                size_t pn)
{
    jwt_claims_t c;
    const char *reason = NULL;
    int rc = jwt_verify(v, tok, n, now, &c, &reason);
    if (rc == 0) {
        check(n <= JWT_MAX_TOKEN);
        check_claims(&c, payload, pn);
    } else {
        check(rc == HERALD_EINVAL || rc == HERALD_EUNAUTH || rc == HERALD_ENOMEM);
        check(reason != NULL && reason[0] != '\0');
        check(c.sub == NULL && c.channels == NULL && c.channel_count == 0 && c.exp == 0);
    }
    jwt_claims_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    const jwt_verifier_t *v = verifiers[(sel >> 1) & 1];
    int64_t now = clocks[(sel >> 2) & 7];

    if (!(sel & 1)) {
        /* an exact-size copy: reading past the token is caught */
        char *tok = malloc(size ? size : 1);
        check(tok != NULL);
        memcpy(tok, data, size);
        run(v, tok, size, now, NULL, 0);
        free(tok);
        return 0;
    }
    if (size < 1 || size > 3 * JWT_MAX_TOKEN)
        return 0;
    size_t hl = data[0] < size - 1 ? data[0] : size - 1;
    const uint8_t *hdr = data + 1, *payload = hdr + hl;
    size_t pl = size - 1 - hl;
    size_t cap = (hl + pl) / 3 * 4 + 8 + 2 + (EVP_MAX_MD_SIZE / 3 + 1) * 4;
    char *buf = malloc(cap);
    check(buf != NULL);
    size_t n = b64url(hdr, hl, buf);
    buf[n++] = '.';
    n += b64url(payload, pl, buf + n);
    const EVP_MD *md = sel & 0x40 ? EVP_sha384() : EVP_sha256();
    const char *key = sel & 0x20 ? "wrong" : SECRET;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    check(HMAC(md, key, (int)strlen(key), (const unsigned char *)buf, n, mac, &ml) != NULL);
    buf[n++] = '.';
    n += b64url(mac, ml, buf + n);
    check(n <= cap);
    char *tok = malloc(n);
    check(tok != NULL);
    memcpy(tok, buf, n);
    free(buf);
    run(v, tok, n, now, payload, pl);
    free(tok);
    return 0;
}
