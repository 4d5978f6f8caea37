/* authn: who a new client connection is (SPEC 3, 5, 6).
 *
 * A JWT comes from `?token=` or `Authorization: Bearer`; a valid one makes its
 * `sub` the connection's user and its `channels` claim available to the `claim`
 * policy. An access token (routes with auth "access_token", or the
 * `access_token` policy) comes from the same places and brings its channel
 * scopes. What a connection proved is kept in conn->auth, allocated only for
 * connections that proved something.
 *
 * Loop thread of the connection; the verifier and token store it uses are
 * thread-safe. */
#ifndef HERALD_AUTHN_H
#define HERALD_AUTHN_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/policy.h"
#include "core/conn.h"
#include "http/http_request.h"

typedef struct conn_auth {
    char **claims;            /* JWT `channels` claim */
    size_t claim_count;
    char **scopes;            /* access token channel patterns */
    size_t scope_count;
    char token_id[16];        /* the access token's public id, "" if none */
} conn_auth_t;

void conn_auth_free(conn_auth_t *a);

/* The credential a request carries (?token= first, then Bearer), copied into out.
 * Returns 1, 0 when there is none, or HERALD_ETOOBIG when it does not fit (to be
 * refused: a credential is never silently ignored). */
int authn_credential(const http_request_t *req, char *out, size_t out_size);

/* Authenticates c with the request's JWT. Returns 0 (valid token, or none and
 * anonymous connections are allowed), or HERALD_EUNAUTH with *reason set. */
int authn_jwt(conn_t *c, const http_request_t *req, const char **reason);

/* Authenticates c with the request's access token. 0 or HERALD_EUNAUTH/EIO. */
int authn_access_token(conn_t *c, const http_request_t *req, const char **reason);

/* /ws: an access token (htk_...) if the credential is one, else a JWT. */
int authn_any(conn_t *c, const http_request_t *req, const char **reason);

/* The same with a credential already in hand (Socket.IO's CONNECT auth.token). A
 * NULL token is "none given". */
int authn_jwt_token(conn_t *c, const char *token, size_t len, const char **reason);
int authn_access_token_str(conn_t *c, const char *token, size_t len, const char **reason);
int authn_token(conn_t *c, const char *token, size_t len, const char **reason);

/* The principal for policy checks; borrows from c. */
principal_t authn_principal(const conn_t *c);

#endif
