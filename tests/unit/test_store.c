/* store + the durable sequencer: the SQLite event log on its own (what survives a
 * reopen, the read queries' after/min_ts/limit, retention by count, idempotency
 * keys, the epoch, group commit from several threads, close committing what is
 * queued, open failures), then the sequencer with history.durable on top of it
 * (publishes pending until committed, snapshots seeing only committed offsets,
 * restart restoring offsets, history, epoch and idempotency keys, TTL and size
 * applied when loading, a failed commit).
 *
 * Each test has its own mkdtemp directory, removed afterwards. The commit callback
 * runs on the store's writer thread, so it only records (under a mutex) and the
 * test thread asserts; every wait on it is bounded. A commit is held back or made
 * to fail with a second SQLite connection to the same file: a write transaction
 * keeps the writer waiting (busy timeout), a trigger makes its insert fail. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "core/err.h"
#include "core/util.h"
#include "hub/event.h"
#include "hub/sequencer.h"
#include "store/store.h"

#define WAIT_MS 10000          /* bound on every wait for the writer thread */
#define MAX_RECS 4096

/* ---- temporary directories ---- */

static void tmp_make(char out[64])
{
    snprintf(out, 64, "/tmp/herald-store-XXXXXX");
    assert_non_null(mkdtemp(out));
}

/* Removes a directory tree built by the test (herald.db, -wal, -shm, subdirs). */
static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
            else unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static struct timespec deadline_in(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* ---- a second connection to the store's file ---- */

static sqlite3 *db_open(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/herald.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) print_error("sqlite: %s: %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
}

/* Holds the write lock: the store's writer waits in BEGIN IMMEDIATE (busy timeout
 * 5 s) until db_release, so its batch stays pending meanwhile. */
static sqlite3 *db_hold(const char *dir)
{
    sqlite3 *db = db_open(dir);
    db_exec(db, "BEGIN IMMEDIATE");
    return db;
}

static void db_release(sqlite3 *db)
{
    db_exec(db, "COMMIT");
    sqlite3_close(db);
}

/* ================= the store alone ================= */

typedef struct rec {
    char channel[16];
    uint64_t offset;
    uintptr_t ctx;
    int status;
} rec_t;

/* What the writer thread handed back. */
typedef struct sink {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t items, callbacks, failed, overflow;
    rec_t recs[MAX_RECS];
} sink_t;

static void sink_committed(void *arg, int status, store_item_t *items, size_t n)
{
    sink_t *s = arg;
    pthread_mutex_lock(&s->lock);
    s->callbacks++;
    for (size_t i = 0; i < n; i++) {
        if (status < 0) s->failed++;
        if (s->items < MAX_RECS) {
            rec_t *r = &s->recs[s->items];
            snprintf(r->channel, sizeof r->channel, "%s", items[i].ev->channel);
            r->offset = items[i].ev->offset;
            r->ctx = (uintptr_t)items[i].ctx;
            r->status = status;
        } else {
            s->overflow++;
        }
        s->items++;
        /* the callee takes the references */
        event_unref(items[i].ev);
        free(items[i].idem_key);
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits (bounded) until `want` items were handed back; returns how many were. */
static size_t sink_wait(sink_t *s, size_t want)
{
    struct timespec dl = deadline_in(WAIT_MS);
    pthread_mutex_lock(&s->lock);
    while (s->items < want)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &dl) == ETIMEDOUT) break;
    size_t n = s->items;
    pthread_mutex_unlock(&s->lock);
    return n;
}

typedef struct sfx {
    char dir[64];
    store_t *st;
    sink_t sink;
} sfx_t;

static int sfx_setup(void **state)
{
    sfx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    tmp_make(f->dir);
    pthread_mutex_init(&f->sink.lock, NULL);
    pthread_cond_init(&f->sink.cond, NULL);
    *state = f;
    return 0;
}

static int sfx_teardown(void **state)
{
    sfx_t *f = *state;
    store_close(f->st);
    pthread_cond_destroy(&f->sink.cond);
    pthread_mutex_destroy(&f->sink.lock);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static void sfx_open(sfx_t *f)
{
    f->st = store_open(f->dir, true, 3600, sink_committed, &f->sink);
    assert_non_null(f->st);
}

static void sfx_reopen(sfx_t *f)
{
    store_close(f->st);
    f->st = NULL;
    sfx_open(f);
}

static int put_item(store_t *st, const char *ch, uint64_t off, uint64_t ts, const char *data, const char *key,
                    uint64_t expires, uint32_t keep, uintptr_t ctx)
{
    event_t *ev = event_create(ch, strlen(ch), "evt", 3, data, strlen(data), off, ts, NULL);
    if (!ev) return HERALD_ENOMEM;
    store_item_t it = {.ev = ev, .idem_key = key ? strdup(key) : NULL, .idem_expires_ms = expires, .keep = keep,
                       .ctx = (void *)ctx};
    int rc = store_append(st, &it);
    if (rc < 0) {
        event_unref(ev);
        free(it.idem_key);
    }
    return rc;
}

static void put(sfx_t *f, const char *ch, uint64_t off, uint64_t ts, const char *data, uint32_t keep)
{
    assert_int_equal(put_item(f->st, ch, off, ts, data, NULL, 0, keep, off), 0);
}

/* store_load_events results */
typedef struct loaded {
    size_t n;
    uint64_t off[64], ts[64];
    char id[64][UUID_STR_LEN];
    char name[64][16];
    char data[64][32];
} loaded_t;

static void collect_event(void *arg, uint64_t offset, const char *id, const char *name, const char *data,
                          uint64_t ts)
{
    loaded_t *l = arg;
    if (l->n >= 64) {
        l->n++;
        return;
    }
    l->off[l->n] = offset;
    l->ts[l->n] = ts;
    snprintf(l->id[l->n], UUID_STR_LEN, "%s", id);
    snprintf(l->name[l->n], sizeof l->name[0], "%s", name);
    snprintf(l->data[l->n], sizeof l->data[0], "%s", data);
    l->n++;
}

static void load(sfx_t *f, const char *ch, uint64_t after, uint64_t min_ts, uint32_t limit, loaded_t *l)
{
    memset(l, 0, sizeof *l);
    assert_int_equal(store_load_events(f->st, ch, strlen(ch), after, min_ts, limit, collect_event, l), 0);
}

static uint64_t chan_offset(sfx_t *f, const char *ch)
{
    uint64_t off = 12345;
    assert_int_equal(store_channel_offset(f->st, ch, strlen(ch), &off), 0);
    return off;
}

static void test_store_reopen_keeps_offsets_and_events(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t t0 = time_wall_ms() - 60000;
    char data[32];
    for (uint64_t i = 1; i <= 5; i++) {
        snprintf(data, sizeof data, "{\"n\":%llu}", (unsigned long long)i);
        put(f, "jobs", i, t0 + i, data, 100);
    }
    put(f, "user:0xabc", 1, t0, "[1,2]", 100);
    put(f, "user:0xabc", 2, t0, "\"two\"", 100);
    assert_int_equal(sink_wait(&f->sink, 7), 7);
    assert_int_equal(f->sink.failed, 0);
    sfx_reopen(f);
    assert_int_equal(chan_offset(f, "jobs"), 5);
    assert_int_equal(chan_offset(f, "user:0xabc"), 2);
    assert_int_equal(chan_offset(f, "nope"), 0);
    assert_int_equal(chan_offset(f, "job"), 0);   /* no prefix match */

    loaded_t l;
    load(f, "jobs", 0, 0, 100, &l);
    assert_int_equal(l.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(l.off[i], i + 1);
        assert_int_equal(l.ts[i], t0 + i + 1);
        assert_string_equal(l.name[i], "evt");
        snprintf(data, sizeof data, "{\"n\":%zu}", i + 1);
        assert_string_equal(l.data[i], data);
        assert_int_equal(strlen(l.id[i]), 36);
    }
    load(f, "user:0xabc", 0, 0, 100, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.data[0], "[1,2]");
    assert_string_equal(l.data[1], "\"two\"");
    load(f, "nope", 0, 0, 100, &l);
    assert_int_equal(l.n, 0);
}

static void test_store_event_id_and_text_round_trip(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    const char *id = "0b4e7a52-8e1c-4f3d-9a6b-2c1d0e9f8a7b";
    const char *data = "{\"s\":\"\xc3\xa9\\u0000\"}";   /* UTF-8 and an escaped NUL stay text */
    event_t *ev = event_create("ch", 2, "TIP_SENT", 8, data, strlen(data), 1, 42, id);
    assert_non_null(ev);
    store_item_t it = {.ev = ev, .keep = 10};
    assert_int_equal(store_append(f->st, &it), 0);
    assert_int_equal(sink_wait(&f->sink, 1), 1);
    sfx_reopen(f);
    loaded_t l;
    load(f, "ch", 0, 0, 10, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.id[0], id);
    assert_string_equal(l.name[0], "TIP_SENT");
    assert_string_equal(l.data[0], data);
    assert_int_equal(l.ts[0], 42);
}

static void test_store_load_events_after_min_ts_and_limit_newest(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t t0 = time_wall_ms() - 60000;
    for (uint64_t i = 1; i <= 10; i++) put(f, "c", i, t0 + i * 10, "1", 100);
    assert_int_equal(sink_wait(&f->sink, 10), 10);
    loaded_t l;

    load(f, "c", 3, 0, 100, &l);                 /* after: strictly greater */
    assert_int_equal(l.n, 7);
    assert_int_equal(l.off[0], 4);
    assert_int_equal(l.off[6], 10);

    load(f, "c", 0, t0 + 50, 100, &l);           /* min_ts: inclusive */
    assert_int_equal(l.n, 6);
    assert_int_equal(l.off[0], 5);

    load(f, "c", 0, 0, 3, &l);                   /* limit: the newest, oldest first */
    assert_int_equal(l.n, 3);
    assert_int_equal(l.off[0], 8);
    assert_int_equal(l.off[1], 9);
    assert_int_equal(l.off[2], 10);

    load(f, "c", 2, t0 + 40, 2, &l);             /* all three together */
    assert_int_equal(l.n, 2);
    assert_int_equal(l.off[0], 9);
    assert_int_equal(l.off[1], 10);

    load(f, "c", 0, 0, 0, &l);                   /* limit 0: nothing */
    assert_int_equal(l.n, 0);
    load(f, "c", 10, 0, 100, &l);                /* after the latest: nothing */
    assert_int_equal(l.n, 0);
    load(f, "c", 0, t0 + 1000, 100, &l);         /* all too old */
    assert_int_equal(l.n, 0);
}

static void test_store_retention_keeps_last_keep_events(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t now = time_wall_ms();
    for (uint64_t i = 1; i <= 10; i++) put(f, "small", i, now, "0", 3);
    for (uint64_t i = 1; i <= 10; i++) put(f, "big", i, now, "0", 100);
    for (uint64_t i = 1; i <= 2; i++) put(f, "none", i, now, "0", 0);   /* history size 0 */
    assert_int_equal(sink_wait(&f->sink, 22), 22);
    sfx_reopen(f);
    loaded_t l;
    load(f, "small", 0, 0, 100, &l);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.off[0], 8);
    assert_int_equal(l.off[2], 10);
    assert_int_equal(chan_offset(f, "small"), 10);   /* the offset outlives the events */
    load(f, "big", 0, 0, 100, &l);
    assert_int_equal(l.n, 10);
    load(f, "none", 0, 0, 100, &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(chan_offset(f, "none"), 2);
}

typedef struct idem_rec {
    size_t n;
    char channel[8][16], key[8][16], id[8][UUID_STR_LEN];
    uint64_t offset[8], expires[8];
} idem_rec_t;

static void collect_idem(void *arg, const char *channel, const char *key, uint64_t offset, const char *id,
                         uint64_t expires_ms)
{
    idem_rec_t *r = arg;
    if (r->n >= 8) {
        r->n++;
        return;
    }
    snprintf(r->channel[r->n], 16, "%s", channel);
    snprintf(r->key[r->n], 16, "%s", key);
    snprintf(r->id[r->n], UUID_STR_LEN, "%s", id);
    r->offset[r->n] = offset;
    r->expires[r->n] = expires_ms;
    r->n++;
}

static void test_store_idempotency_unexpired_only_by_expiry(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t now = time_wall_ms();
    /* appended out of expiry order; "k-exact" expires exactly at the load's now */
    assert_int_equal(put_item(f->st, "a", 1, now, "1", "k3", now + 30000, 100, 1), 0);
    assert_int_equal(put_item(f->st, "a", 2, now, "1", "k1", now + 10000, 100, 2), 0);
    assert_int_equal(put_item(f->st, "b", 1, now, "1", "k2", now + 20000, 100, 3), 0);
    assert_int_equal(put_item(f->st, "b", 2, now, "1", "k-old", now + 2000, 100, 4), 0);
    assert_int_equal(put_item(f->st, "b", 3, now, "1", "k-exact", now + 5000, 100, 5), 0);
    assert_int_equal(put_item(f->st, "b", 4, now, "1", NULL, 0, 100, 6), 0);
    assert_int_equal(sink_wait(&f->sink, 6), 6);
    sfx_reopen(f);

    idem_rec_t r = {0};
    assert_int_equal(store_load_idempotency(f->st, now + 5000, collect_idem, &r), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.key[0], "k1");
    assert_string_equal(r.channel[0], "a");
    assert_int_equal(r.offset[0], 2);
    assert_int_equal(r.expires[0], now + 10000);
    assert_string_equal(r.key[1], "k2");
    assert_string_equal(r.channel[1], "b");
    assert_int_equal(r.offset[1], 1);
    assert_string_equal(r.key[2], "k3");
    assert_int_equal(r.offset[2], 1);
    for (size_t i = 0; i < 3; i++) assert_int_equal(strlen(r.id[i]), 36);

    memset(&r, 0, sizeof r);
    assert_int_equal(store_load_idempotency(f->st, now, collect_idem, &r), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.key[0], "k-old");
    memset(&r, 0, sizeof r);
    assert_int_equal(store_load_idempotency(f->st, now + 30000, collect_idem, &r), 0);
    assert_int_equal(r.n, 0);
}

static void test_store_idempotency_same_key_other_channel_kept_apart(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t now = time_wall_ms();
    assert_int_equal(put_item(f->st, "a", 1, now, "1", "k", now + 10000, 100, 1), 0);
    assert_int_equal(put_item(f->st, "b", 7, now, "1", "k", now + 20000, 100, 2), 0);
    assert_int_equal(sink_wait(&f->sink, 2), 2);
    idem_rec_t r = {0};
    assert_int_equal(store_load_idempotency(f->st, now, collect_idem, &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.channel[0], "a");
    assert_int_equal(r.offset[0], 1);
    assert_string_equal(r.channel[1], "b");
    assert_int_equal(r.offset[1], 7);
}

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

static void test_store_epoch_kept_on_reopen_new_for_new_dir(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    char first[64];
    snprintf(first, sizeof first, "%s", store_epoch(f->st));
    assert_true(strlen(first) >= 8);
    assert_true(is_hex(first));
    sfx_reopen(f);
    assert_string_equal(store_epoch(f->st), first);
    sfx_reopen(f);
    assert_string_equal(store_epoch(f->st), first);

    char other[64];
    tmp_make(other);
    sink_t *s2 = calloc(1, sizeof *s2);
    assert_non_null(s2);
    pthread_mutex_init(&s2->lock, NULL);
    pthread_cond_init(&s2->cond, NULL);
    store_t *st2 = store_open(other, false, 60, sink_committed, s2);
    assert_non_null(st2);
    assert_string_not_equal(store_epoch(st2), first);
    store_close(st2);
    pthread_cond_destroy(&s2->cond);
    pthread_mutex_destroy(&s2->lock);
    free(s2);
    rm_tree(other);
}

static void test_store_open_creates_missing_data_dir(void **state)
{
    sfx_t *f = *state;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/data", f->dir);
    store_t *st = store_open(sub, false, 60, sink_committed, &f->sink);
    assert_non_null(st);
    struct stat sb;
    char db[160];
    snprintf(db, sizeof db, "%s/herald.db", sub);
    assert_int_equal(stat(db, &sb), 0);
    store_close(st);
}

static void test_store_open_fails_cleanly(void **state)
{
    sfx_t *f = *state;
    char path[160];
    /* data_dir below a regular file: cannot be created */
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/file/data", f->dir);
    assert_null(store_open(path, false, 60, sink_committed, &f->sink));
    /* herald.db is a directory: SQLite cannot open it */
    snprintf(path, sizeof path, "%s/dbdir", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char db[200];
    snprintf(db, sizeof db, "%s/herald.db", path);
    assert_int_equal(mkdir(db, 0700), 0);
    assert_null(store_open(path, false, 60, sink_committed, &f->sink));
}

static void test_store_close_commits_everything_queued(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t now = time_wall_ms();
    for (uint64_t i = 1; i <= 300; i++) put(f, "q", i, now, "0", 1000);
    store_close(f->st);   /* no wait: close itself must drain the queue */
    f->st = NULL;
    assert_int_equal(f->sink.items, 300);
    assert_int_equal(f->sink.failed, 0);
    sfx_open(f);
    assert_int_equal(chan_offset(f, "q"), 300);
    loaded_t l;
    load(f, "q", 290, 0, 1000, &l);
    assert_int_equal(l.n, 10);
}

static void test_store_channel_offset_never_goes_back(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    uint64_t now = time_wall_ms();
    put(f, "m", 5, now, "0", 100);
    put(f, "m", 3, now, "0", 100);   /* a late, lower offset does not lower the channel's */
    assert_int_equal(sink_wait(&f->sink, 2), 2);
    assert_int_equal(chan_offset(f, "m"), 5);
}

/* ---- group commit ---- */

#define GC_THREADS 4
#define GC_PER_THREAD 500

typedef struct gc_arg {
    store_t *st;
    pthread_barrier_t *go;
    unsigned t;
    int errors;
} gc_arg_t;

static void *gc_appender(void *p)
{
    gc_arg_t *a = p;
    char ch[16];
    snprintf(ch, sizeof ch, "g%u", a->t);
    uint64_t now = time_wall_ms();
    pthread_barrier_wait(a->go);
    for (uint64_t i = 1; i <= GC_PER_THREAD; i++) {
        /* ctx: thread and sequence number, to check the hand-back order */
        uintptr_t ctx = ((uintptr_t)a->t << 20) | (uintptr_t)i;
        if (put_item(a->st, ch, i, now, "{\"x\":1}", NULL, 0, 1000, ctx) < 0) a->errors++;
    }
    return NULL;
}

typedef struct order_check {
    uint64_t next;
    size_t n;
} order_check_t;

static void check_order(void *arg, uint64_t offset, const char *id, const char *name, const char *data, uint64_t ts)
{
    order_check_t *o = arg;
    if (offset == o->next) o->next++;
    o->n++;
}

static void test_store_group_commit_from_four_threads(void **state)
{
    sfx_t *f = *state;
    sfx_open(f);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, GC_THREADS);
    pthread_t th[GC_THREADS];
    gc_arg_t args[GC_THREADS];
    for (unsigned t = 0; t < GC_THREADS; t++) {
        args[t] = (gc_arg_t){f->st, &go, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, gc_appender, &args[t]), 0);
    }
    for (unsigned t = 0; t < GC_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].errors, 0);
    }
    pthread_barrier_destroy(&go);
    const size_t total = GC_THREADS * GC_PER_THREAD;
    assert_int_equal(sink_wait(&f->sink, total), total);
    pthread_mutex_lock(&f->sink.lock);
    size_t callbacks = f->sink.callbacks;
    pthread_mutex_unlock(&f->sink.lock);
    assert_int_equal(f->sink.failed, 0);
    assert_int_equal(f->sink.overflow, 0);

    /* per channel, handed back in append order */
    uint64_t next[GC_THREADS];
    for (unsigned t = 0; t < GC_THREADS; t++) next[t] = 1;
    for (size_t i = 0; i < total; i++) {
        const rec_t *r = &f->sink.recs[i];
        unsigned t = (unsigned)(r->ctx >> 20);
        assert_true(t < GC_THREADS);
        char want[16];
        snprintf(want, sizeof want, "g%u", t);
        assert_string_equal(r->channel, want);
        assert_int_equal(r->offset, next[t]);
        assert_int_equal(r->ctx & 0xfffff, next[t]);
        next[t]++;
    }
    /* batches: one transaction (and one callback) for several appends */
    print_message("group commit: %zu items in %zu callbacks\n", total, callbacks);
    assert_true(callbacks >= 1);
    assert_true(callbacks < total);

    sfx_reopen(f);
    for (unsigned t = 0; t < GC_THREADS; t++) {
        char ch[16];
        snprintf(ch, sizeof ch, "g%u", t);
        assert_int_equal(chan_offset(f, ch), GC_PER_THREAD);
        order_check_t o = {1, 0};
        assert_int_equal(store_load_events(f->st, ch, strlen(ch), 0, 0, 1000, check_order, &o), 0);
        assert_int_equal(o.n, GC_PER_THREAD);
        assert_int_equal(o.next, GC_PER_THREAD + 1);
    }
}

/* ================= the durable sequencer ================= */

typedef struct done_rec {
    int status;
    publish_result_t r;
    uint64_t tag;             /* the publish's sequence number */
} done_rec_t;

typedef struct qfx {
    char dir[64];
    config_t cfg;
    sequencer_t *seq;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    event_t *disp[512];      /* references, in dispatch order */
    size_t ndisp;
    done_rec_t done[512];
    size_t ndone;
} qfx_t;

/* Runs on the store's thread with the sequencer's lock held: record only. */
static void q_dispatch(void *ctx, struct event *ev)
{
    qfx_t *f = ctx;
    pthread_mutex_lock(&f->lock);
    if (f->ndisp < 512) f->disp[f->ndisp++] = event_ref(ev);
    pthread_mutex_unlock(&f->lock);
}

/* What a publish hands to done: the fixture and the publish's sequence number. */
typedef struct pub_slot {
    qfx_t *f;
    uint64_t seqno;
} pub_slot_t;

/* Runs on the store's thread after the sequencer's lock is released. */
static void q_done(void *arg, int status, const publish_result_t *r)
{
    pub_slot_t *slot = arg;
    qfx_t *f = slot->f;
    pthread_mutex_lock(&f->lock);
    if (f->ndone < 512) {
        f->done[f->ndone].status = status;
        f->done[f->ndone].r = *r;
        f->done[f->ndone].tag = slot->seqno;
        f->ndone++;
    }
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    free(slot);
}

static size_t q_count_done(qfx_t *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->ndone;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static size_t q_count_disp(qfx_t *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->ndisp;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static size_t q_wait_done(qfx_t *f, size_t want)
{
    struct timespec dl = deadline_in(WAIT_MS);
    pthread_mutex_lock(&f->lock);
    while (f->ndone < want)
        if (pthread_cond_timedwait(&f->cond, &f->lock, &dl) == ETIMEDOUT) break;
    size_t n = f->ndone;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void q_start(qfx_t *f)
{
    f->seq = sequencer_create(&f->cfg, q_dispatch, f);
    assert_non_null(f->seq);
}

static int qfx_setup(void **state)
{
    qfx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    tmp_make(f->dir);
    if (config_defaults(&f->cfg) != 0) return -1;
    free(f->cfg.data_dir);
    f->cfg.data_dir = strdup(f->dir);
    f->cfg.history.durable = true;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->seq = sequencer_create(&f->cfg, q_dispatch, f);
    if (!f->seq) return -1;
    *state = f;
    return 0;
}

static int qfx_teardown(void **state)
{
    qfx_t *f = *state;
    sequencer_destroy(f->seq);
    for (size_t i = 0; i < f->ndisp; i++) event_unref(f->disp[i]);
    config_free(&f->cfg);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static void q_restart(qfx_t *f)
{
    sequencer_destroy(f->seq);
    f->seq = NULL;
    q_start(f);
}

/* Publishes; seqno is handed back in done_rec.tag. */
static int q_pub(qfx_t *f, const char *ch, const char *data, const char *key, uint64_t seqno, publish_result_t *out)
{
    pub_slot_t *slot = malloc(sizeof *slot);
    assert_non_null(slot);
    *slot = (pub_slot_t){f, seqno};
    memset(out, 0, sizeof *out);
    int rc = sequencer_publish(f->seq, ch, strlen(ch), "evt", 3, data, strlen(data), key, key ? strlen(key) : 0,
                               q_done, slot, out);
    if (rc != SEQUENCER_PENDING) free(slot);   /* done is not called */
    return rc;
}

/* Publishes and waits for the commit; returns the offset. */
static uint64_t q_pub_wait(qfx_t *f, const char *ch, const char *data, const char *key)
{
    publish_result_t out;
    size_t before = q_count_done(f);
    assert_int_equal(q_pub(f, ch, data, key, before + 1, &out), SEQUENCER_PENDING);
    assert_int_equal(q_wait_done(f, before + 1), before + 1);
    assert_int_equal(f->done[before].status, 0);
    assert_int_equal(f->done[before].r.offset, out.offset);
    return out.offset;
}

static void history(qfx_t *f, const char *ch, bool has_since, uint64_t since, size_t limit, seq_snapshot_t *snap)
{
    assert_int_equal(sequencer_history(f->seq, ch, strlen(ch), has_since, since, limit, snap), 0);
}

static void test_seq_durable_publish_pending_until_committed(void **state)
{
    qfx_t *f = *state;
    publish_result_t out[3];
    for (uint64_t i = 0; i < 3; i++) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%llu}", (unsigned long long)i);
        assert_int_equal(q_pub(f, "jobs", data, NULL, i + 1, &out[i]), SEQUENCER_PENDING);
        assert_false(out[i].duplicate);
    }
    assert_int_equal(q_wait_done(f, 3), 3);
    sleep_ms(50);   /* no second call for any of them */
    assert_int_equal(q_count_done(f), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f->done[i].status, 0);
        assert_int_equal(f->done[i].tag, i + 1);          /* acknowledged in publish order */
        assert_int_equal(f->done[i].r.offset, i + 1);
        assert_false(f->done[i].r.duplicate);
        assert_string_equal(f->done[i].r.id, out[i].id);
    }
    /* visible and dispatched once committed, in offset order */
    assert_int_equal(q_count_disp(f), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f->disp[i]->offset, i + 1);
        assert_string_equal(f->disp[i]->id, out[i].id);
    }
    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 3);
}

static void test_seq_durable_snapshot_while_pending_sees_committed_offset(void **state)
{
    qfx_t *f = *state;
    assert_int_equal(q_pub_wait(f, "jobs", "1", NULL), 1);

    sqlite3 *hold = db_hold(f->dir);
    publish_result_t out;
    assert_int_equal(q_pub(f, "jobs", "2", NULL, 2, &out), SEQUENCER_PENDING);
    assert_int_equal(out.offset, 2);   /* assigned now, visible after the commit */
    sleep_ms(200);
    assert_int_equal(q_count_done(f), 1);
    assert_int_equal(q_count_disp(f), 1);

    seq_snapshot_t snap;
    assert_int_equal(sequencer_subscribe(f->seq, "jobs", 4, NULL, &snap), 0);
    assert_int_equal(snap.latest, 1);
    seq_snapshot_release(&snap);

    seq_since_t since = {0, sequencer_epoch(f->seq)};
    assert_int_equal(sequencer_subscribe(f->seq, "jobs", 4, &since, &snap), 0);
    assert_int_equal(snap.latest, 1);
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 1);
    assert_int_equal(snap.events[0]->offset, 1);
    seq_snapshot_release(&snap);

    since.offset = 1;
    assert_int_equal(sequencer_subscribe(f->seq, "jobs", 4, &since, &snap), 0);
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);

    since.offset = 2;   /* the pending offset is not yet something a client can have seen */
    assert_int_equal(sequencer_subscribe(f->seq, "jobs", 4, &since, &snap), 0);
    assert_false(snap.recovered);
    seq_snapshot_release(&snap);

    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 1);
    history(f, "jobs", false, 0, 100, &snap);
    assert_int_equal(snap.latest, 1);
    assert_int_equal(snap.event_count, 1);
    seq_snapshot_release(&snap);

    db_release(hold);
    assert_int_equal(q_wait_done(f, 2), 2);
    assert_int_equal(f->done[1].status, 0);
    assert_int_equal(f->done[1].r.offset, 2);
    assert_int_equal(q_count_disp(f), 2);
    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 2);
    for (int i = 0; i < 4; i++) sequencer_unsubscribe(f->seq, "jobs", 4);
}

static void test_seq_durable_duplicate_key_while_first_pending(void **state)
{
    qfx_t *f = *state;
    sqlite3 *hold = db_hold(f->dir);
    publish_result_t first, again;
    assert_int_equal(q_pub(f, "orders", "1", "key-1", 1, &first), SEQUENCER_PENDING);
    /* the retry races the commit: already a duplicate, with the first's result */
    assert_int_equal(q_pub(f, "orders", "1", "key-1", 2, &again), 0);
    assert_true(again.duplicate);
    assert_int_equal(again.offset, first.offset);
    assert_string_equal(again.id, first.id);
    db_release(hold);
    assert_int_equal(q_wait_done(f, 1), 1);
    sleep_ms(50);
    assert_int_equal(q_count_done(f), 1);
    assert_int_equal(q_count_disp(f), 1);
}

static void test_seq_durable_restart_restores_offsets_history_epoch(void **state)
{
    qfx_t *f = *state;
    char ids[5][UUID_STR_LEN];
    for (int i = 0; i < 5; i++) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%d}", i + 1);
        assert_int_equal(q_pub_wait(f, "jobs", data, NULL), (uint64_t)i + 1);
        memcpy(ids[i], f->done[i].r.id, UUID_STR_LEN);
    }
    q_pub_wait(f, "other", "true", NULL);
    q_pub_wait(f, "other", "false", NULL);
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", sequencer_epoch(f->seq));

    q_restart(f);
    assert_string_equal(sequencer_epoch(f->seq), epoch);

    seq_snapshot_t snap;
    history(f, "jobs", false, 0, 100, &snap);
    assert_int_equal(snap.latest, 5);
    assert_int_equal(snap.event_count, 5);
    for (size_t i = 0; i < 5; i++) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%zu}", i + 1);
        assert_int_equal(snap.events[i]->offset, i + 1);
        assert_string_equal(snap.events[i]->id, ids[i]);
        assert_string_equal(snap.events[i]->name, "evt");
        assert_string_equal(snap.events[i]->data, data);
    }
    seq_snapshot_release(&snap);
    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 5);

    history(f, "jobs", true, 3, 1, &snap);   /* since: the first `limit` after it */
    assert_int_equal(snap.event_count, 1);
    assert_int_equal(snap.events[0]->offset, 4);
    seq_snapshot_release(&snap);

    /* recovery across the restart: same epoch reaches back, another does not */
    seq_since_t since = {2, epoch};
    assert_int_equal(sequencer_subscribe(f->seq, "other", 5, &since, &snap), 0);
    assert_int_equal(snap.latest, 2);
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    since.offset = 0;
    assert_int_equal(sequencer_subscribe(f->seq, "other", 5, &since, &snap), 0);
    assert_true(snap.recovered);
    assert_int_equal(snap.event_count, 2);
    assert_string_equal(snap.events[1]->data, "false");
    seq_snapshot_release(&snap);
    since.epoch = "not-the-epoch";
    assert_int_equal(sequencer_subscribe(f->seq, "other", 5, &since, &snap), 0);
    assert_false(snap.recovered);
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    for (int i = 0; i < 3; i++) sequencer_unsubscribe(f->seq, "other", 5);

    /* publishing continues after the stored offset */
    assert_int_equal(q_pub_wait(f, "jobs", "6", NULL), 6);
    assert_int_equal(q_pub_wait(f, "other", "3", NULL), 3);
}

/* After a restart, sequencer_latest knows a channel the store has events for
 * before anything else (a publish, subscribe or history read) has loaded it. */
static void test_seq_durable_latest_after_restart_before_other_access(void **state)
{
    qfx_t *f = *state;
    q_pub_wait(f, "jobs", "1", NULL);
    q_pub_wait(f, "jobs", "2", NULL);
    q_restart(f);
    assert_int_equal(sequencer_latest(f->seq, "jobs", 4), 2);
}

static void test_seq_durable_idempotency_key_survives_restart(void **state)
{
    qfx_t *f = *state;
    assert_int_equal(q_pub_wait(f, "orders", "{\"a\":1}", "pay-1"), 1);
    char first_id[UUID_STR_LEN];
    memcpy(first_id, f->done[0].r.id, UUID_STR_LEN);
    assert_int_equal(q_pub_wait(f, "orders", "{\"a\":2}", NULL), 2);
    size_t disp_before = q_count_disp(f);

    q_restart(f);
    publish_result_t out;
    assert_int_equal(q_pub(f, "orders", "{\"a\":1}", "pay-1", 99, &out), 0);   /* not pending */
    assert_true(out.duplicate);
    assert_int_equal(out.offset, 1);
    assert_string_equal(out.id, first_id);
    sleep_ms(50);
    assert_int_equal(q_count_disp(f), disp_before);   /* nothing delivered */
    assert_int_equal(q_count_done(f), 2);

    seq_snapshot_t snap;
    history(f, "orders", false, 0, 100, &snap);
    assert_int_equal(snap.latest, 2);
    seq_snapshot_release(&snap);

    /* the key is per channel; a new key publishes */
    assert_int_equal(q_pub_wait(f, "refunds", "{}", "pay-1"), 1);
    assert_int_equal(q_pub_wait(f, "orders", "{}", "pay-2"), 3);
}

static void test_seq_durable_idempotency_key_expired_before_restart(void **state)
{
    qfx_t *f = *state;
    f->cfg.history.idempotency_ttl_s = 1;
    assert_int_equal(q_pub_wait(f, "orders", "1", "short"), 1);
    q_restart(f);
    sleep_ms(1100);
    /* past the TTL: a new event, though the key was loaded from the store */
    assert_int_equal(q_pub_wait(f, "orders", "1", "short"), 2);
}

static void seed_done(void *arg, int status, store_item_t *items, size_t n)
{
    int *count = arg;
    for (size_t i = 0; i < n; i++) {
        if (status == 0) (*count)++;
        event_unref(items[i].ev);
        free(items[i].idem_key);
    }
}

static void test_seq_durable_load_applies_rule_size_and_ttl(void **state)
{
    qfx_t *f = *state;
    sequencer_destroy(f->seq);
    f->seq = NULL;
    /* the store as a previous run left it: old events, and more than history.size */
    int committed = 0;
    store_t *st = store_open(f->dir, false, 3600, seed_done, &committed);
    assert_non_null(st);
    uint64_t now = time_wall_ms();
    for (uint64_t i = 1; i <= 5; i++)
        assert_int_equal(put_item(st, "old", i, now - 600000, "0", NULL, 0, 100, 0), 0);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(put_item(st, "many", i, now - 1000, "0", NULL, 0, 100, 0), 0);
    store_close(st);
    assert_int_equal(committed, 15);

    for (size_t i = 0; i < f->cfg.channel_rule_count; i++) {
        f->cfg.channels[i].history_size = 3;
        f->cfg.channels[i].history_ttl_s = 300;
    }
    f->cfg.history.size = 3;
    q_start(f);

    seq_snapshot_t snap;
    history(f, "old", false, 0, 100, &snap);
    assert_int_equal(snap.latest, 5);            /* past its TTL: no events, offset kept */
    assert_int_equal(snap.event_count, 0);
    seq_snapshot_release(&snap);
    history(f, "many", false, 0, 100, &snap);
    assert_int_equal(snap.latest, 10);
    assert_int_equal(snap.event_count, 3);       /* the rule's size */
    assert_int_equal(snap.events[0]->offset, 8);
    assert_int_equal(snap.events[2]->offset, 10);
    seq_snapshot_release(&snap);
    assert_int_equal(q_pub_wait(f, "old", "1", NULL), 6);
}

static void test_seq_durable_destroy_commits_pending_publishes(void **state)
{
    qfx_t *f = *state;
    for (uint64_t i = 1; i <= 50; i++) {
        publish_result_t out;
        assert_int_equal(q_pub(f, "burst", "0", NULL, i, &out), SEQUENCER_PENDING);
        assert_int_equal(out.offset, i);
    }
    sequencer_destroy(f->seq);   /* flushes: every publish acknowledged and dispatched */
    f->seq = NULL;
    assert_int_equal(f->ndone, 50);
    assert_int_equal(f->ndisp, 50);
    for (size_t i = 0; i < 50; i++) {
        assert_int_equal(f->done[i].status, 0);
        assert_int_equal(f->done[i].r.offset, i + 1);
        assert_int_equal(f->disp[i]->offset, i + 1);
    }
    q_start(f);
    seq_snapshot_t snap;
    history(f, "burst", true, 40, 100, &snap);
    assert_int_equal(snap.latest, 50);
    assert_int_equal(snap.event_count, 10);
    seq_snapshot_release(&snap);
}

static void test_seq_durable_new_dir_new_epoch(void **state)
{
    qfx_t *f = *state;
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", sequencer_epoch(f->seq));
    q_pub_wait(f, "jobs", "1", NULL);
    sequencer_destroy(f->seq);
    f->seq = NULL;
    rm_tree(f->dir);   /* the history is lost: a new epoch says so */
    q_start(f);
    assert_string_not_equal(sequencer_epoch(f->seq), epoch);
    assert_int_equal(q_pub_wait(f, "jobs", "1", NULL), 1);
}

#define FAIL_TRIGGER \
    "CREATE TRIGGER fail_broken BEFORE INSERT ON events WHEN NEW.channel = 'broken' " \
    "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"

static void test_seq_durable_failed_commit_reports_error_and_forgets_key(void **state)
{
    qfx_t *f = *state;
    assert_int_equal(q_pub_wait(f, "fine", "0", NULL), 1);
    sqlite3 *db = db_open(f->dir);
    db_exec(db, FAIL_TRIGGER);

    publish_result_t out;
    assert_int_equal(q_pub(f, "broken", "0", "retry-me", 2, &out), SEQUENCER_PENDING);
    assert_int_equal(q_wait_done(f, 2), 2);
    assert_true(f->done[1].status < 0);
    assert_int_equal(q_count_disp(f), 1);            /* not delivered */

    /* the key was forgotten: the retry publishes again (and fails again) */
    assert_int_equal(q_pub(f, "broken", "0", "retry-me", 3, &out), SEQUENCER_PENDING);
    assert_false(out.duplicate);
    assert_int_equal(q_wait_done(f, 3), 3);
    assert_true(f->done[2].status < 0);

    db_exec(db, "DROP TRIGGER fail_broken");
    sqlite3_close(db);
    uint64_t off = q_pub_wait(f, "broken", "1", "retry-me");
    assert_true(off > 0);
    assert_int_equal(q_count_disp(f), 2);
    seq_snapshot_t snap;
    history(f, "broken", false, 0, 100, &snap);
    assert_int_equal(snap.latest, off);
    assert_int_equal(snap.event_count, 1);
    assert_string_equal(snap.events[0]->data, "1");
    seq_snapshot_release(&snap);
    /* the other channel was not disturbed */
    assert_int_equal(q_pub_wait(f, "fine", "0", NULL), 2);

    q_restart(f);
    history(f, "broken", false, 0, 100, &snap);
    assert_int_equal(snap.latest, off);
    assert_int_equal(snap.event_count, 1);
    seq_snapshot_release(&snap);
    assert_int_equal(q_pub(f, "broken", "1", "retry-me", 9, &out), 0);
    assert_true(out.duplicate);
    assert_int_equal(out.offset, off);
}

/* A publish's idempotency key can expire while the publish still waits for its
 * commit (a commit slower than history.idempotency_ttl_s: here 1 s, with the writer
 * held in its busy timeout). When that commit then fails, forgetting the key must
 * not touch the expired, freed entry (AddressSanitizer checks). */
static void test_seq_durable_failed_commit_after_key_expired(void **state)
{
    qfx_t *f = *state;
    f->cfg.history.idempotency_ttl_s = 1;
    sqlite3 *hold = db_hold(f->dir);
    db_exec(hold, FAIL_TRIGGER);   /* takes effect when the writer gets in */
    publish_result_t out;
    assert_int_equal(q_pub(f, "broken", "0", "slow-key", 1, &out), SEQUENCER_PENDING);
    sleep_ms(1200);
    /* another keyed publish expires the first key while its commit is pending */
    assert_int_equal(q_pub(f, "fine", "0", "other-key", 2, &out), SEQUENCER_PENDING);
    db_release(hold);
    assert_int_equal(q_wait_done(f, 2), 2);
    assert_true(f->done[0].status < 0);
    assert_int_equal(f->done[1].status, 0);
}

#define S(t) cmocka_unit_test_setup_teardown(t, sfx_setup, sfx_teardown)
#define Q(t) cmocka_unit_test_setup_teardown(t, qfx_setup, qfx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        S(test_store_reopen_keeps_offsets_and_events),
        S(test_store_event_id_and_text_round_trip),
        S(test_store_load_events_after_min_ts_and_limit_newest),
        S(test_store_retention_keeps_last_keep_events),
        S(test_store_idempotency_unexpired_only_by_expiry),
        S(test_store_idempotency_same_key_other_channel_kept_apart),
        S(test_store_epoch_kept_on_reopen_new_for_new_dir),
        S(test_store_open_creates_missing_data_dir),
        S(test_store_open_fails_cleanly),
        S(test_store_close_commits_everything_queued),
        S(test_store_channel_offset_never_goes_back),
        S(test_store_group_commit_from_four_threads),
        Q(test_seq_durable_publish_pending_until_committed),
        Q(test_seq_durable_snapshot_while_pending_sees_committed_offset),
        Q(test_seq_durable_duplicate_key_while_first_pending),
        Q(test_seq_durable_restart_restores_offsets_history_epoch),
        Q(test_seq_durable_idempotency_key_survives_restart),
        Q(test_seq_durable_idempotency_key_expired_before_restart),
        Q(test_seq_durable_load_applies_rule_size_and_ttl),
        Q(test_seq_durable_destroy_commits_pending_publishes),
        Q(test_seq_durable_new_dir_new_epoch),
        Q(test_seq_durable_failed_commit_reports_error_and_forgets_key),
        Q(test_seq_durable_latest_after_restart_before_other_access),
        Q(test_seq_durable_failed_commit_after_key_expired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
