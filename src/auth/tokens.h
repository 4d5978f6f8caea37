/* tokens: access tokens for clients that cannot hold a JWT (a stream overlay in
 * OBS), kept in the embedded store (SPEC 6, 9.5).
 *
 * A token is `htk_` + 43 base64url characters (256 random bits); only its SHA-256
 * is stored, next to a short public id (8 hex characters), the channel patterns it
 * is scoped to, a label and its creation time. Revoking marks the row, so a server
 * on the same data dir notices a revocation made by the CLI (tokens_revoked_since).
 *
 * Owns: its own connection to data_dir/herald.db (WAL: the server, the durable
 * event log and the CLI share the file). Thread-safe: a mutex around the
 * connection. */
#ifndef HERALD_TOKENS_H
#define HERALD_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define TOKEN_ID_LEN 8          /* hex characters */
#define TOKEN_SECRET_LEN 47     /* "htk_" + 43 */

typedef struct tokens tokens_t;

typedef struct token_info {
    char id[TOKEN_ID_LEN + 1];
    char secret[TOKEN_SECRET_LEN + 1];   /* only filled by tokens_create */
    char **channels;                     /* patterns */
    size_t channel_count;
    char *label;                         /* may be NULL */
    int64_t created_at_ms;
} token_info_t;

void token_info_free(token_info_t *t);

/* Opens (creating the directory and table). NULL and logged on failure. */
tokens_t *tokens_open(const char *data_dir);
void tokens_close(tokens_t *t);

/* A new token scoped to channels (patterns, validated by the caller). Returns 0 or
 * a negative error; out->secret is the only copy of the secret there will be. */
int tokens_create(tokens_t *t, char *const *channels, size_t n, const char *label, token_info_t *out);

/* The live (not revoked) token with this secret: 0, HERALD_ENOTFOUND, or error. */
int tokens_lookup(tokens_t *t, const char *secret, size_t len, token_info_t *out);

typedef void (*tokens_each_fn)(void *arg, const token_info_t *info);
/* Every live token, oldest first. */
int tokens_list(tokens_t *t, tokens_each_fn fn, void *arg);

/* Revokes by id or by secret. id_out receives the id. 0, HERALD_ENOTFOUND, or error. */
int tokens_revoke(tokens_t *t, const char *id_or_secret, char id_out[TOKEN_ID_LEN + 1]);

/* Calls fn(arg, id) for every token revoked at or after since_ms (wall clock ms).
 * Returns the newest revocation time seen, or since_ms. */
int64_t tokens_revoked_since(tokens_t *t, int64_t since_ms, void (*fn)(void *arg, const char *id), void *arg);

/* Sharing between the nodes of a cluster (the Redis engine, src/cluster/cluster.c).
 *
 * A number that changes whenever a token is created or revoked here (by this
 * process, the CLI, or an import); -1 on a store error. */
int64_t tokens_fingerprint(tokens_t *t);
/* The tokens created or revoked at or after since_ms (0: every token), revoked
 * ones included, as a JSON array of {"id","hash" (SHA-256, hex),"channels",
 * "label","created_at","revoked_at" (null or ms)}. NULL on a store error. */
json_t *tokens_export(tokens_t *t, int64_t since_ms);
/* Rows from other nodes (an array of the above), in one transaction: a row
 * unknown here is inserted (a clashing id or hash is ignored); one revoked there
 * and live here is revoked here, and revoked(arg, id) is called for it after the
 * commit (its connections are to close); a revocation is never undone. Malformed
 * rows are skipped and counted in *bad. Returns how many rows changed the table,
 * or an error (nothing imported). */
enum { TOKENS_IMPORT_ADDED = 1, TOKENS_IMPORT_REVOKED = 2 };
int tokens_import(tokens_t *t, const json_t *rows, void (*revoked)(void *arg, const char *id), void *arg,
                  size_t *bad);

#endif
