#include "auth/tokens.h"
#include "core/err.h"
#include "core/util.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct tokens {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS tokens(id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, channels TEXT NOT NULL,"
    " label TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS tokens_revoked ON tokens(revoked_at);"
    "CREATE INDEX IF NOT EXISTS tokens_created ON tokens(created_at);";   /* tokens_export since a time */

void token_info_free(token_info_t *t)
{
    for (size_t i = 0; i < t->channel_count; i++) free(t->channels[i]);
    free(t->channels);
    free(t->label);
    memset(t, 0, sizeof *t);
}

tokens_t *tokens_open(const char *data_dir)
{
    if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
        log_msg(LOG_ERROR, "cannot create data_dir", "path", data_dir, "error", strerror(errno), NULL);
        return NULL;
    }
    tokens_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->lock, NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/herald.db", data_dir);
    if (sqlite3_open_v2(path, &t->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(t->db, 5000) != SQLITE_OK ||
        sqlite3_exec(t->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(t->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        log_msg(LOG_ERROR, "cannot open the token store", "path", path, "error",
                t->db ? sqlite3_errmsg(t->db) : "open failed", NULL);
        tokens_close(t);
        return NULL;
    }
    return t;
}

void tokens_close(tokens_t *t)
{
    if (!t) return;
    sqlite3_close(t->db);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void sha256(const char *s, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    EVP_Digest(s, len, out, &n, EVP_sha256(), NULL);
}

static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18], out[o++] = a[(v >> 12) & 63], out[o++] = a[(v >> 6) & 63], out[o++] = a[v & 63];
    }
    if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18], out[o++] = a[(v >> 12) & 63], out[o++] = a[(v >> 6) & 63];
    } else if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18], out[o++] = a[(v >> 12) & 63];
    }
    out[o] = '\0';
}

/* Fills channels from the stored JSON array text. */
static int parse_channels(const char *text, token_info_t *out)
{
    json_t *arr = json_loads(text, 0, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return HERALD_EINVAL;
    }
    size_t n = json_array_size(arr);
    out->channels = calloc(n ? n : 1, sizeof *out->channels);
    if (!out->channels) {
        json_decref(arr);
        return HERALD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = json_string_value(json_array_get(arr, i));
        if (c && (out->channels[out->channel_count] = strdup(c))) out->channel_count++;
    }
    json_decref(arr);
    return 0;
}

static int row_to_info(sqlite3_stmt *q, token_info_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text(q, 0));
    const char *label = (const char *)sqlite3_column_text(q, 2);
    if (label && !(out->label = strdup(label))) return HERALD_ENOMEM;
    out->created_at_ms = sqlite3_column_int64(q, 3);
    return parse_channels((const char *)sqlite3_column_text(q, 1), out);
}

int tokens_create(tokens_t *t, char *const *channels, size_t n, const char *label, token_info_t *out)
{
    memset(out, 0, sizeof *out);
    unsigned char raw[32], idraw[4], hash[32];
    rand_secure(raw, sizeof raw);
    rand_secure(idraw, sizeof idraw);
    memcpy(out->secret, "htk_", 4);
    base64url(raw, sizeof raw, out->secret + 4);
    snprintf(out->id, sizeof out->id, "%02x%02x%02x%02x", idraw[0], idraw[1], idraw[2], idraw[3]);
    sha256(out->secret, strlen(out->secret), hash);
    out->created_at_ms = (int64_t)time_wall_ms();
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_string(channels[i]));
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text) return HERALD_ENOMEM;
    int rc = parse_channels(text, out);
    if (rc == 0 && label && !(out->label = strdup(label))) rc = HERALD_ENOMEM;
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    if (rc == 0 && sqlite3_prepare_v2(t->db,
                                      "INSERT INTO tokens(id, hash, channels, label, created_at) VALUES (?,?,?,?,?)",
                                      -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, out->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, text, -1, SQLITE_STATIC);
        if (label) sqlite3_bind_text(q, 4, label, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, out->created_at_ms);
        rc = sqlite3_step(q) == SQLITE_DONE ? 0 : HERALD_EIO;
    } else if (rc == 0) {
        rc = HERALD_EIO;
    }
    if (rc == HERALD_EIO) log_msg(LOG_ERROR, "token store error", "error", sqlite3_errmsg(t->db), NULL);
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    free(text);
    if (rc) token_info_free(out);
    return rc;
}

int tokens_lookup(tokens_t *t, const char *secret, size_t len, token_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (len != TOKEN_SECRET_LEN || memcmp(secret, "htk_", 4) != 0) return HERALD_ENOTFOUND;
    unsigned char hash[32];
    sha256(secret, len, hash);
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    int rc = HERALD_EIO;
    /* looked up by hash: equality on a digest reveals nothing usable about the secret */
    if (sqlite3_prepare_v2(t->db,
                           "SELECT id, channels, label, created_at FROM tokens WHERE hash = ? AND revoked_at IS NULL",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_STATIC);
        int s = sqlite3_step(q);
        rc = s == SQLITE_ROW ? row_to_info(q, out) : s == SQLITE_DONE ? HERALD_ENOTFOUND : HERALD_EIO;
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    if (rc < 0) token_info_free(out);
    return rc;
}

int tokens_list(tokens_t *t, tokens_each_fn fn, void *arg)
{
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    int rc = HERALD_EIO;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT id, channels, label, created_at FROM tokens WHERE revoked_at IS NULL "
                           "ORDER BY created_at, id",
                           -1, &q, NULL) == SQLITE_OK) {
        int s;
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            token_info_t info;
            if (row_to_info(q, &info) == 0) fn(arg, &info);
            token_info_free(&info);
        }
        rc = s == SQLITE_DONE ? 0 : HERALD_EIO;
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int tokens_revoke(tokens_t *t, const char *id_or_secret, char id_out[TOKEN_ID_LEN + 1])
{
    unsigned char hash[32];
    sha256(id_or_secret, strlen(id_or_secret), hash);
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    int rc = HERALD_EIO;
    if (sqlite3_prepare_v2(t->db,
                           "UPDATE tokens SET revoked_at = ? WHERE (id = ? OR hash = ?) AND revoked_at IS NULL "
                           "RETURNING id",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, (sqlite3_int64)time_wall_ms());
        sqlite3_bind_text(q, 2, id_or_secret, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, hash, sizeof hash, SQLITE_STATIC);
        int s = sqlite3_step(q);
        if (s == SQLITE_ROW) {
            snprintf(id_out, TOKEN_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(q, 0));
            rc = 0;
        } else {
            rc = s == SQLITE_DONE ? HERALD_ENOTFOUND : HERALD_EIO;
        }
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int64_t tokens_revoked_since(tokens_t *t, int64_t since_ms, void (*fn)(void *arg, const char *id), void *arg)
{
    int64_t newest = since_ms;   /* callers pass the previous result + 1 */
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT id, revoked_at FROM tokens WHERE revoked_at >= ? ORDER BY revoked_at", -1,
                           &q, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, since_ms);
        while (sqlite3_step(q) == SQLITE_ROW) {
            fn(arg, (const char *)sqlite3_column_text(q, 0));
            int64_t at = sqlite3_column_int64(q, 1);
            if (at > newest) newest = at;
        }
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    return newest;
}

/* ---- sharing between the nodes of a cluster ---- */

int64_t tokens_fingerprint(tokens_t *t)
{
    int64_t fp = -1;
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT count(*), coalesce(max(created_at), 0), count(revoked_at), "
                           "coalesce(max(revoked_at), 0), coalesce(sum(created_at % 1000003), 0) FROM tokens",
                           -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        uint64_t h = 1469598103934665603ull;   /* FNV-1a over the five numbers */
        for (int i = 0; i < 5; i++) {
            uint64_t v = (uint64_t)sqlite3_column_int64(q, i);
            for (int b = 0; b < 8; b++) h = (h ^ ((v >> (8 * b)) & 0xff)) * 1099511628211ull;
        }
        fp = (int64_t)(h >> 1);
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    return fp;
}

json_t *tokens_export(tokens_t *t, int64_t since_ms)
{
    json_t *rows = json_array();
    if (!rows) return NULL;
    pthread_mutex_lock(&t->lock);
    sqlite3_stmt *q = NULL;
    int s = SQLITE_ERROR;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT id, hash, channels, label, created_at, revoked_at FROM tokens "
                           "WHERE created_at >= ?1 OR revoked_at >= ?1 ORDER BY id",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, since_ms);
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            char hex[65];
            const unsigned char *hash = sqlite3_column_blob(q, 1);
            if (!hash || sqlite3_column_bytes(q, 1) != 32) continue;
            hex_encode(hex, hash, 32);
            hex[64] = '\0';
            json_t *channels = json_loads((const char *)sqlite3_column_text(q, 2), 0, NULL);
            const char *label = (const char *)sqlite3_column_text(q, 3);
            json_t *row = json_pack("{ss ss so* so sI so}", "id", (const char *)sqlite3_column_text(q, 0), "hash",
                                    hex, "channels", channels, "label", label ? json_string(label) : json_null(),
                                    "created_at", (json_int_t)sqlite3_column_int64(q, 4), "revoked_at",
                                    sqlite3_column_type(q, 5) == SQLITE_NULL
                                        ? json_null()
                                        : json_integer((json_int_t)sqlite3_column_int64(q, 5)));
            if (row) json_array_append_new(rows, row);
        }
    }
    sqlite3_finalize(q);
    pthread_mutex_unlock(&t->lock);
    if (s != SQLITE_DONE) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}

static bool hex32(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64) return false;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            int d = c >= 'A' && c <= 'F' ? -1 : hex_nibble(c);   /* lowercase only: the stored form */
            if (d < 0) return false;
            v = v * 16 + (unsigned)d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static bool id_ok(const char *id)
{
    if (!id || strlen(id) != TOKEN_ID_LEN) return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

/* One row, under t->lock inside the import's transaction: TOKENS_IMPORT_ADDED,
 * TOKENS_IMPORT_REVOKED, 0, HERALD_EINVAL (malformed) or HERALD_EIO. */
static int import_row(tokens_t *t, const json_t *row, sqlite3_int64 now)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    json_t *channels = json_object_get(row, "channels"), *label = json_object_get(row, "label");
    json_t *created = json_object_get(row, "created_at");
    bool revoked = json_is_integer(json_object_get(row, "revoked_at"));
    unsigned char hash[32];
    if (!id_ok(id) || !hex32(json_string_value(json_object_get(row, "hash")), hash) || !json_is_array(channels) ||
        json_array_size(channels) == 0 || !(json_is_null(label) || json_is_string(label)) || !json_is_integer(created))
        return HERALD_EINVAL;
    for (size_t i = 0; i < json_array_size(channels); i++)
        if (!json_is_string(json_array_get(channels, i))) return HERALD_EINVAL;
    char *text = json_dumps(channels, JSON_COMPACT);
    if (!text) return HERALD_ENOMEM;
    int changed = 0, rc = HERALD_EIO;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(t->db,
                           "INSERT OR IGNORE INTO tokens(id, hash, channels, label, created_at, revoked_at) "
                           "VALUES (?,?,?,?,?,?)",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, hash, sizeof hash, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, text, -1, SQLITE_STATIC);
        if (json_is_string(label)) sqlite3_bind_text(q, 4, json_string_value(label), -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, (sqlite3_int64)json_integer_value(created));
        if (revoked) sqlite3_bind_int64(q, 6, now);
        rc = sqlite3_step(q) == SQLITE_DONE ? 0 : HERALD_EIO;
        changed = rc == 0 && sqlite3_changes(t->db) > 0 ? TOKENS_IMPORT_ADDED : 0;
    }
    sqlite3_finalize(q);
    q = NULL;
    if (rc == 0 && !changed && revoked) {
        /* known here and revoked elsewhere: only the same token (id and hash) */
        rc = HERALD_EIO;
        if (sqlite3_prepare_v2(t->db, "UPDATE tokens SET revoked_at = ? WHERE id = ? AND hash = ? AND revoked_at IS NULL",
                               -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, now);
            sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(q, 3, hash, sizeof hash, SQLITE_STATIC);
            rc = sqlite3_step(q) == SQLITE_DONE ? 0 : HERALD_EIO;
            changed = rc == 0 && sqlite3_changes(t->db) > 0 ? TOKENS_IMPORT_REVOKED : 0;
        }
        sqlite3_finalize(q);
    }
    free(text);
    return rc < 0 ? rc : changed;
}

int tokens_import(tokens_t *t, const json_t *rows, void (*revoked)(void *arg, const char *id), void *arg,
                  size_t *bad)
{
    *bad = 0;
    if (!json_is_array(rows)) return HERALD_EINVAL;
    /* A revocation seen here is stamped with this node's clock, so the workers'
     * tokens_revoked_since sees it too. One transaction: one sync for the lot. */
    sqlite3_int64 now = (sqlite3_int64)time_wall_ms();
    size_t n = json_array_size(rows);
    unsigned char *outcome = calloc(n ? n : 1, 1);
    if (!outcome) return HERALD_ENOMEM;
    pthread_mutex_lock(&t->lock);
    int rc = sqlite3_exec(t->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : HERALD_EIO;
    int changed = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int r = import_row(t, json_array_get(rows, i), now);
        if (r == HERALD_EINVAL) {
            (*bad)++;
        } else if (r < 0) {
            rc = r;
        } else {
            outcome[i] = (unsigned char)r;
            changed += r > 0;
        }
    }
    if (rc == 0 && sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rc = HERALD_EIO;
    if (rc < 0) {
        log_msg(LOG_ERROR, "token store error", "error", sqlite3_errmsg(t->db), NULL);
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; rc == 0 && revoked && i < n; i++)
        if (outcome[i] == TOKENS_IMPORT_REVOKED)
            revoked(arg, json_string_value(json_object_get(json_array_get(rows, i), "id")));
    free(outcome);
    return rc < 0 ? rc : changed;
}
