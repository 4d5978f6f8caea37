/* jwt: verification of the JSON Web Tokens clients present (SPEC 3, 5 auth.jwt, 9).
 *
 * Owns the verification keys (a copy of auth.jwt.secret, the parsed public key of
 * auth.jwt.public_key_file) and the rules a token must pass: compact JWS only,
 * strict base64url, an `alg` that is both configured and matching the key it would
 * be checked with (so an RS256 public key can never serve as an HMAC secret),
 * `none` always refused, `crit` refused, `typ` absent or "JWT", then exp / nbf with
 * leeway, iss, aud, a non-empty `sub` and the optional `channels` claim. The
 * signature is checked before the payload is parsed.
 *
 * Does not: issue tokens, fetch keys (no jku / x5u / JWKS), decide what a token
 * allows (that is the policy module), log anything, or read the clock (the caller
 * passes now_s). Protocol code without I/O: after jwt_verifier_create the verifier
 * is immutable, and jwt_verify may be called from any thread concurrently. */
#ifndef HERALD_JWT_H
#define HERALD_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Longer tokens are refused as malformed before any decoding: a bounded amount of
 * work per attempt, and the decoded parts fit one stack buffer. */
#define JWT_MAX_TOKEN 8192

typedef struct jwt_verifier jwt_verifier_t;

/* From the config: HS256/HS384/HS512 with auth.jwt.secret; RS256 and/or ES256
 * (P-256) with the public key in auth.jwt.public_key_file (PEM: a "PUBLIC KEY", an
 * "RSA PUBLIC KEY" or a "CERTIFICATE"); only the algorithms listed in
 * auth.jwt.algorithms are accepted. Returns NULL with a message in err when the
 * config cannot be used: unreadable or unparsable key, key type matching no listed
 * RS256/ES256, an EC key not on P-256, an RSA key under 2048 bits (RFC 7518 3.3),
 * RS256/ES256 listed without a key file, an empty secret, an unknown algorithm.
 * An HS algorithm listed without a secret (the default ["HS256"] of an
 * anonymous-only setup) is not an error: every token is then refused.
 * Nothing of cfg is kept (it may be freed afterwards); err never holds the secret. */
jwt_verifier_t *jwt_verifier_create(const config_t *cfg, char *err, size_t err_size);
void jwt_verifier_destroy(jwt_verifier_t *v);

typedef struct jwt_claims {
    char *sub;               /* non-empty; becomes connection.user */
    char **channels;         /* the `channels` claim, NULL when absent */
    size_t channel_count;
    int64_t exp;             /* 0 if none; the caller may close the connection then */
} jwt_claims_t;

/* Verifies a compact JWS (header.payload.signature, base64url without padding),
 * reading exactly len bytes of token (no terminator needed). Returns 0 with *out
 * filled (release with jwt_claims_free), or a negative code with *out zeroed and
 * *reason a static string saying why:
 *   HERALD_EINVAL   "malformed" (shape, encoding, JSON, claim types, over JWT_MAX_TOKEN)
 *   HERALD_EUNAUTH  "algorithm not allowed", "unsupported typ", "unsupported crit",
 *                   "bad signature", "expired", "not yet valid", "wrong issuer",
 *                   "wrong audience", "missing sub"
 *   HERALD_ENOMEM   "out of memory"
 * exp: refused when now_s > exp + leeway; nbf: refused when now_s + leeway < nbf;
 * iat is ignored. The reason is safe to show to the client. */
int jwt_verify(const jwt_verifier_t *v, const char *token, size_t len, int64_t now_s, jwt_claims_t *out,
               const char **reason);

/* Frees what jwt_verify put in c and zeroes it; a zeroed c is fine. */
void jwt_claims_free(jwt_claims_t *c);

#endif
