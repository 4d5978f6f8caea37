#include "auth/authn.h"
#include "auth/jwt.h"
#include "auth/tokens.h"
#include "core/err.h"
#include "server.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CREDENTIAL_MAX 8192

void conn_auth_free(conn_auth_t *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->claim_count; i++) free(a->claims[i]);
    for (size_t i = 0; i < a->scope_count; i++) free(a->scopes[i]);
    free(a->claims);
    free(a->scopes);
    free(a);
}

int authn_credential(const http_request_t *req, char *out, size_t out_size)
{
    long n = http_query_param(req->query, "token", 0, out, out_size);
    if (n > 0) return (size_t)n < out_size ? 1 : HERALD_ETOOBIG;
    const char *h = http_request_header(req, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0 && strlen(h + 7) > 0) {
        if (strlen(h + 7) >= out_size) return HERALD_ETOOBIG;
        strcpy(out, h + 7);
        return 1;
    }
    return 0;
}

static conn_auth_t *auth_of(conn_t *c)
{
    if (!c->auth) c->auth = calloc(1, sizeof(conn_auth_t));
    return c->auth;
}

int authn_jwt(conn_t *c, const http_request_t *req, const char **reason)
{
    char *token = malloc(CREDENTIAL_MAX);
    if (!token) {
        *reason = "out of memory";
        return HERALD_EUNAUTH;
    }
    int found = authn_credential(req, token, CREDENTIAL_MAX);
    int rc;
    if (found < 0) {   /* a credential too long is refused, never taken for none */
        *reason = "token too long";
        rc = HERALD_EUNAUTH;
    } else {
        rc = authn_jwt_token(c, found ? token : NULL, found ? strlen(token) : 0, reason);
    }
    free(token);
    return rc;
}

int authn_jwt_token(conn_t *c, const char *token, size_t len, const char **reason)
{
    const config_t *cfg = c->worker->cfg;
    server_t *s = c->worker->server;
    if (!token) {
        if (cfg->auth.anonymous) return 0;
        *reason = "a token is required";
        return HERALD_EUNAUTH;
    }
    if (!s->jwt) {
        *reason = "this server verifies no tokens (auth.jwt is not configured)";
        return HERALD_EUNAUTH;
    }
    jwt_claims_t claims;
    int rc = jwt_verify(s->jwt, token, len, (int64_t)time(NULL), &claims, reason);
    if (rc < 0) return HERALD_EUNAUTH;
    conn_auth_t *a = auth_of(c);
    if (!a) {
        jwt_claims_free(&claims);
        *reason = "out of memory";
        return HERALD_EUNAUTH;
    }
    free(c->user);
    c->user = claims.sub;   /* taken over */
    claims.sub = NULL;
    a->claims = claims.channels;
    a->claim_count = claims.channel_count;
    claims.channels = NULL;
    claims.channel_count = 0;
    jwt_claims_free(&claims);
    return 0;
}

int authn_access_token(conn_t *c, const http_request_t *req, const char **reason)
{
    char token[128];
    int found = authn_credential(req, token, sizeof token);
    if (found <= 0) {
        *reason = found < 0 ? "unknown or revoked access token" : "an access token is required";
        return HERALD_EUNAUTH;
    }
    return authn_access_token_str(c, token, strlen(token), reason);
}

int authn_access_token_str(conn_t *c, const char *token, size_t len, const char **reason)
{
    server_t *s = c->worker->server;
    token_info_t info;
    int rc = s->tokens ? tokens_lookup(s->tokens, token, len, &info) : HERALD_EIO;
    if (rc < 0) {
        *reason = rc == HERALD_ENOTFOUND ? "unknown or revoked access token" : "the token store is unavailable";
        return HERALD_EUNAUTH;
    }
    conn_auth_t *a = auth_of(c);
    if (!a) {
        token_info_free(&info);
        *reason = "out of memory";
        return HERALD_EUNAUTH;
    }
    a->scopes = info.channels;
    a->scope_count = info.channel_count;
    info.channels = NULL;
    info.channel_count = 0;
    snprintf(a->token_id, sizeof a->token_id, "%s", info.id);
    token_info_free(&info);
    return 0;
}

int authn_any(conn_t *c, const http_request_t *req, const char **reason)
{
    char head[8] = "";   /* the credential's first characters tell its kind */
    if (http_query_param(req->query, "token", 0, head, sizeof head) < 0) {
        const char *h = http_request_header(req, "Authorization");
        if (h && strncasecmp(h, "Bearer ", 7) == 0) snprintf(head, sizeof head, "%s", h + 7);
    }
    if (strncmp(head, "htk_", 4) == 0) return authn_access_token(c, req, reason);
    return authn_jwt(c, req, reason);
}

int authn_token(conn_t *c, const char *token, size_t len, const char **reason)
{
    if (token && len >= 4 && memcmp(token, "htk_", 4) == 0) return authn_access_token_str(c, token, len, reason);
    return authn_jwt_token(c, token, len, reason);
}

principal_t authn_principal(const conn_t *c)
{
    principal_t p = {.user = c->user};
    if (c->auth) {
        p.claim_channels = (const char *const *)c->auth->claims;
        p.claim_channel_count = c->auth->claim_count;
        if (c->auth->scope_count) {
            p.token_scopes = (const char *const *)c->auth->scopes;
            p.token_scope_count = c->auth->scope_count;
        }
    }
    return p;
}
