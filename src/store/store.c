#include "store/store.h"
#include "core/err.h"
#include "core/util.h"
#include "hub/event.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PRUNE_EVERY_MS 10000
/* WAL pages between automatic checkpoints (SQLite's default is 1000). Events go
 * to many channels, so nearly every event dirties its own page: a checkpoint
 * every 1000 frames copied about one page per event back into the database. With
 * 10,000 frames, pages written several times between checkpoints are copied once.
 * The cost is a WAL file of up to ~40 MB. That took the publish-bound bench
 * (8,000 channels) from 37k to 42k events/s on one core. */
#define WAL_CHECKPOINT_PAGES 10000

enum { W_INSERT_EVENT, W_UPSERT_CHANNEL, W_DROP_OLDEST, W_INSERT_IDEM, W_PRUNE_EVENTS, W_PRUNE_IDEM, W_COUNT };
enum { R_OFFSET, R_EVENTS, R_IDEM, R_COUNT };

static const char *const writer_sql[W_COUNT] = {
    [W_INSERT_EVENT] = "INSERT OR REPLACE INTO events(channel, offset, id, name, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
    [W_UPSERT_CHANNEL] = "INSERT INTO channels(name, offset) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET offset = excluded.offset WHERE excluded.offset > offset",
    [W_DROP_OLDEST] = "DELETE FROM events WHERE channel = ? AND offset <= ?",
    [W_INSERT_IDEM] = "INSERT OR REPLACE INTO idempotency(channel, key, offset, id, expires_ms) VALUES (?, ?, ?, ?, ?)",
    [W_PRUNE_EVENTS] = "DELETE FROM events WHERE ts < ?",
    [W_PRUNE_IDEM] = "DELETE FROM idempotency WHERE expires_ms <= ?",
};

static const char *const reader_sql[R_COUNT] = {
    [R_OFFSET] = "SELECT offset FROM channels WHERE name = ?",
    [R_EVENTS] = "SELECT offset, id, name, data, ts FROM "
                 "(SELECT offset, id, name, data, ts FROM events WHERE channel = ? AND offset > ? AND ts >= ? "
                 "ORDER BY offset DESC LIMIT ?) ORDER BY offset",
    [R_IDEM] = "SELECT channel, key, offset, id, expires_ms FROM idempotency WHERE expires_ms > ? ORDER BY expires_ms",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS channels(name TEXT PRIMARY KEY, offset INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS events(channel TEXT NOT NULL, offset INTEGER NOT NULL, id TEXT NOT NULL,"
    " name TEXT NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY(channel, offset)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts);"
    "CREATE TABLE IF NOT EXISTS idempotency(channel TEXT NOT NULL, key TEXT NOT NULL, offset INTEGER NOT NULL,"
    " id TEXT NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY(channel, key)) WITHOUT ROWID;";

struct store {
    sqlite3 *wdb, *rdb;
    sqlite3_stmt *w[W_COUNT], *r[R_COUNT];
    char epoch[33];
    uint32_t max_ttl_s;
    store_committed_fn committed;
    void *arg;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    store_item_t *queue, *batch;
    size_t queue_len, queue_cap, batch_cap;
    uint64_t last_prune_ms;
};

static void log_sqlite(sqlite3 *db, const char *what)
{
    log_msg(LOG_ERROR, "store error", "operation", what, "error", db ? sqlite3_errmsg(db) : "cannot open", NULL);
}

static int open_db(const char *path, bool full, sqlite3 **out)
{
    if (sqlite3_open_v2(path, out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return HERALD_EIO;
    sqlite3_busy_timeout(*out, 5000);
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint=%d;",
             full ? "FULL" : "NORMAL", WAL_CHECKPOINT_PAGES);
    return sqlite3_exec(*out, pragmas, NULL, NULL, NULL) == SQLITE_OK ? 0 : HERALD_EIO;
}

static int load_epoch(store_t *st)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->wdb, "SELECT value FROM meta WHERE key = 'epoch'", -1, &q, NULL) != SQLITE_OK)
        return HERALD_EIO;
    if (sqlite3_step(q) == SQLITE_ROW) {
        snprintf(st->epoch, sizeof st->epoch, "%s", (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        return 0;
    }
    sqlite3_finalize(q);
    /* A new store is a new history: a new epoch tells clients of an old one so. */
    uint8_t r[8];
    rand_secure(r, sizeof r);
    for (int i = 0; i < 8; i++) snprintf(st->epoch + 2 * i, 3, "%02x", r[i]);
    if (sqlite3_prepare_v2(st->wdb, "INSERT INTO meta(key, value) VALUES ('epoch', ?)", -1, &q, NULL) != SQLITE_OK)
        return HERALD_EIO;
    sqlite3_bind_text(q, 1, st->epoch, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : HERALD_EIO;
    sqlite3_finalize(q);
    return rc;
}

static void *writer_main(void *arg);

store_t *store_open(const char *data_dir, bool synchronous_full, uint32_t max_ttl_s, store_committed_fn committed,
                    void *arg)
{
    if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
        log_msg(LOG_ERROR, "cannot create data_dir", "path", data_dir, "error", strerror(errno), NULL);
        return NULL;
    }
    store_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->max_ttl_s = max_ttl_s;
    st->committed = committed;
    st->arg = arg;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/herald.db", data_dir);
    if (open_db(path, synchronous_full, &st->wdb) < 0 ||
        sqlite3_exec(st->wdb, schema, NULL, NULL, NULL) != SQLITE_OK || load_epoch(st) < 0 ||
        open_db(path, synchronous_full, &st->rdb) < 0) {
        log_sqlite(st->wdb, path);
        store_close(st);
        return NULL;
    }
    for (int i = 0; i < W_COUNT; i++) {
        if (sqlite3_prepare_v3(st->wdb, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->w[i], NULL) != SQLITE_OK) {
            log_sqlite(st->wdb, writer_sql[i]);
            store_close(st);
            return NULL;
        }
    }
    for (int i = 0; i < R_COUNT; i++) {
        if (sqlite3_prepare_v3(st->rdb, reader_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->r[i], NULL) != SQLITE_OK) {
            log_sqlite(st->rdb, reader_sql[i]);
            store_close(st);
            return NULL;
        }
    }
    if (pthread_create(&st->thread, NULL, writer_main, st) != 0) {
        store_close(st);
        return NULL;
    }
    st->thread_started = true;
    return st;
}

void store_close(store_t *st)
{
    if (!st) return;
    if (st->thread_started) {
        pthread_mutex_lock(&st->lock);
        st->stopping = true;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->lock);
        pthread_join(st->thread, NULL);
    }
    for (int i = 0; i < W_COUNT; i++) sqlite3_finalize(st->w[i]);
    for (int i = 0; i < R_COUNT; i++) sqlite3_finalize(st->r[i]);
    sqlite3_close(st->wdb);
    sqlite3_close(st->rdb);
    free(st->queue);
    free(st->batch);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

const char *store_epoch(const store_t *st) { return st->epoch; }

/* Group commit: on a worker's thread the writer is woken once per loop batch
 * (store_kick from after_batch) rather than by the first append, so one commit
 * takes every publish the batch read, instead of the writer waking (and, on a
 * shared core, preempting the worker) for the first one. */
static _Thread_local bool defer_kicks;
static _Thread_local store_t *deferred_kick;

int store_append(store_t *st, const store_item_t *item)
{
    pthread_mutex_lock(&st->lock);
    if (st->queue_len == st->queue_cap) {
        size_t ncap = st->queue_cap ? st->queue_cap * 2 : 256;
        store_item_t *q = realloc(st->queue, ncap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&st->lock);
            return HERALD_ENOMEM;
        }
        st->queue = q;
        st->queue_cap = ncap;
    }
    st->queue[st->queue_len++] = *item;
    if (st->queue_len == 1) {
        if (defer_kicks) deferred_kick = st;   /* the writer starts when this thread's batch ends */
        else pthread_cond_signal(&st->cond);
    }
    pthread_mutex_unlock(&st->lock);
    return 0;
}

void store_defer_kicks(void) { defer_kicks = true; }

void store_kick(void)
{
    store_t *st = deferred_kick;
    if (!st) return;
    deferred_kick = NULL;
    pthread_mutex_lock(&st->lock);
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

static bool step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE;
}

static bool write_item(store_t *st, const store_item_t *it)
{
    const event_t *e = it->ev;
    sqlite3_stmt *s = st->w[W_INSERT_EVENT];
    sqlite3_bind_text(s, 1, e->channel, (int)e->channel_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)e->offset);
    sqlite3_bind_text(s, 3, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, e->name, (int)e->name_len, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, e->data, (int)e->data_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)e->wall_ms);
    if (!step_done(s)) return false;
    s = st->w[W_UPSERT_CHANNEL];
    sqlite3_bind_text(s, 1, e->channel, (int)e->channel_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)e->offset);
    if (!step_done(s)) return false;
    /* retention by count: the event that falls out of the channel's history */
    if (e->offset > it->keep) {
        s = st->w[W_DROP_OLDEST];
        sqlite3_bind_text(s, 1, e->channel, (int)e->channel_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)(e->offset - it->keep));
        if (!step_done(s)) return false;
    }
    if (it->idem_key) {
        s = st->w[W_INSERT_IDEM];
        sqlite3_bind_text(s, 1, e->channel, (int)e->channel_len, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, it->idem_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)e->offset);
        sqlite3_bind_text(s, 4, e->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)it->idem_expires_ms);
        if (!step_done(s)) return false;
    }
    return true;
}

/* One transaction for the whole batch: one fsync however many publishers. */
static int write_batch(store_t *st, const store_item_t *items, size_t n)
{
    if (sqlite3_exec(st->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        log_sqlite(st->wdb, "begin");
        return HERALD_EIO;
    }
    for (size_t i = 0; i < n; i++) {
        if (!write_item(st, &items[i])) {
            log_sqlite(st->wdb, "write event");
            sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
            return HERALD_EIO;
        }
    }
    if (sqlite3_exec(st->wdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        log_sqlite(st->wdb, "commit");
        sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
        return HERALD_EIO;
    }
    return 0;
}

/* Retention by age: nothing older than the longest TTL of any channel is needed. */
static void prune(store_t *st)
{
    uint64_t now = time_wall_ms();
    if (now - st->last_prune_ms < PRUNE_EVERY_MS) return;
    st->last_prune_ms = now;
    sqlite3_stmt *s = st->w[W_PRUNE_EVENTS];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)(now - (uint64_t)st->max_ttl_s * 1000));
    if (!step_done(s)) log_sqlite(st->wdb, "prune events");
    s = st->w[W_PRUNE_IDEM];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)now);
    if (!step_done(s)) log_sqlite(st->wdb, "prune idempotency keys");
}

static void *writer_main(void *arg)
{
    store_t *st = arg;
    st->last_prune_ms = time_wall_ms();
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (st->queue_len == 0 && !st->stopping) pthread_cond_wait(&st->cond, &st->lock);
        if (st->queue_len == 0) break;   /* stopping, and everything is written */
        store_item_t *batch = st->queue;
        size_t n = st->queue_len, cap = st->queue_cap;
        st->queue = st->batch;
        st->queue_cap = st->batch_cap;
        st->queue_len = 0;
        pthread_mutex_unlock(&st->lock);
        int rc = write_batch(st, batch, n);
        st->committed(st->arg, rc, batch, n);
        prune(st);
        pthread_mutex_lock(&st->lock);
        st->batch = batch;
        st->batch_cap = cap;
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int store_channel_offset(store_t *st, const char *channel, size_t len, uint64_t *offset)
{
    sqlite3_stmt *s = st->r[R_OFFSET];
    sqlite3_bind_text(s, 1, channel, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *offset = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : HERALD_EIO;
}

int store_load_events(store_t *st, const char *channel, size_t len, uint64_t after, uint64_t min_ts, uint32_t limit,
                      store_event_fn fn, void *arg)
{
    sqlite3_stmt *s = st->r[R_EVENTS];
    sqlite3_bind_text(s, 1, channel, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)after);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)min_ts);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)limit);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        fn(arg, (uint64_t)sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
           (const char *)sqlite3_column_text(s, 2), (const char *)sqlite3_column_text(s, 3),
           (uint64_t)sqlite3_column_int64(s, 4));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : HERALD_EIO;
}

int store_load_idempotency(store_t *st, uint64_t now_ms, store_idem_fn fn, void *arg)
{
    sqlite3_stmt *s = st->r[R_IDEM];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)now_ms);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        fn(arg, (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
           (uint64_t)sqlite3_column_int64(s, 2), (const char *)sqlite3_column_text(s, 3),
           (uint64_t)sqlite3_column_int64(s, 4));
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : HERALD_EIO;
}
