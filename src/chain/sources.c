#include "chain/sources.h"
#include "chain/abi.h"
#include "chain/evm.h"
#include "auth/policy.h"
#include "core/err.h"
#include "core/waiter.h"
#include "hub/sequencer.h"
#include "log.h"
#include "proto/native.h"
#include "server.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUBLISH_WAIT_MS 30000
#define SEEN_KEEP_BLOCKS 100000   /* items this far below the cursor are forgotten: no reorg goes that deep */

/* ---- the state database ---- */

static int db_open(sources_t *ss, const char *data_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sources.db", data_dir);
    if (sqlite3_open_v2(path, &ss->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(ss->db, 5000) != SQLITE_OK ||
        sqlite3_exec(ss->db,
                     "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE IF NOT EXISTS cursor(source TEXT PRIMARY KEY, block INTEGER NOT NULL);"
                     "CREATE TABLE IF NOT EXISTS seen(source TEXT NOT NULL, key TEXT NOT NULL, state INTEGER NOT NULL,"
                     " block INTEGER NOT NULL, PRIMARY KEY(source, key));",
                     NULL, NULL, NULL) != SQLITE_OK) {
        log_msg(LOG_ERROR, "cannot open the sources state", "path", path, "error",
                ss->db ? sqlite3_errmsg(ss->db) : "out of memory", NULL);
        return HERALD_EIO;
    }
    return 0;
}

int sources_seen(sources_t *ss, const source_t *src, const char *key)
{
    int state = SEEN_NONE;
    pthread_mutex_lock(&ss->db_lock);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ss->db, "SELECT state FROM seen WHERE source=? AND key=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) state = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&ss->db_lock);
    return state;
}

void sources_mark(sources_t *ss, const source_t *src, const char *key, int state, uint64_t block)
{
    pthread_mutex_lock(&ss->db_lock);
    sqlite3_stmt *st;
    int rc = SQLITE_ERROR;
    if (sqlite3_prepare_v2(ss->db, "INSERT OR REPLACE INTO seen(source, key, state, block) VALUES(?,?,?,?)", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, state);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)block);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&ss->db_lock);
    if (rc != SQLITE_DONE) log_msg(LOG_WARN, "cannot record a source item", "source", src->name, "key", key, NULL);
}

int64_t sources_cursor(sources_t *ss, const source_t *src)
{
    int64_t block = -1;
    pthread_mutex_lock(&ss->db_lock);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ss->db, "SELECT block FROM cursor WHERE source=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) block = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&ss->db_lock);
    return block;
}

void sources_set_cursor(sources_t *ss, const source_t *src, uint64_t block)
{
    pthread_mutex_lock(&ss->db_lock);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ss->db, "INSERT OR REPLACE INTO cursor(source, block) VALUES(?,?)", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)block);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    /* bounded: what lies far below the cursor cannot come back */
    if (block > SEEN_KEEP_BLOCKS &&
        sqlite3_prepare_v2(ss->db, "DELETE FROM seen WHERE source=? AND block<?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, src->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(block - SEEN_KEEP_BLOCKS));
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&ss->db_lock);
    atomic_store(&((source_t *)src)->count.block, (long long)block);
}

/* ---- publishing from a source's thread ---- */

static void on_published(void *arg, int status, const publish_result_t *r)
{
    (void)r;
    waiter_finish(arg, status, NULL, 0);
}

int sources_publish_wait(sources_t *ss, const char *channel, const char *name, const char *data,
                         const char *idem_key)
{
    server_t *s = ss->server;
    waiter_t *w = waiter_new();
    if (!w) return HERALD_ENOMEM;
    publish_result_t out;
    int rc = sequencer_publish(s->seq, channel, strlen(channel), name, strlen(name), data, strlen(data), idem_key,
                               idem_key ? strlen(idem_key) : 0, on_published, w, &out);
    if (rc != SEQUENCER_PENDING) {   /* done at once (memory-only history), or refused: no callback */
        waiter_put(w), waiter_put(w);
        return rc < 0 ? rc : 0;
    }
    /* Once the sequencer took the event it will be stored and delivered, so the
     * answer is awaited even during a shutdown: giving up early would leave the
     * event unmarked and publish it again after a restart. The workers and the
     * cluster engine answer before they stop (server_stop ends the sources
     * first); the bound covers a dependency that hangs. */
    rc = waiter_wait(w, PUBLISH_WAIT_MS, NULL, NULL);
    return rc < 0 ? rc : 0;
}

/* ---- templates and names ---- */

typedef struct fill_ctx {
    json_t *fields;
    char *scratch[16];         /* JSON text of non-string values, freed after */
    size_t n;
} fill_ctx_t;

static const char *fill_lookup(void *arg, const char *key, size_t len)
{
    fill_ctx_t *f = arg;
    char name[256];
    if (len >= sizeof name) return NULL;
    memcpy(name, key, len);
    name[len] = '\0';
    json_t *v = json_object_get(f->fields, name);
    if (json_is_string(v)) return json_string_value(v);
    if (!(json_is_number(v) || json_is_boolean(v)) || f->n == sizeof f->scratch / sizeof *f->scratch) return NULL;
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text) f->scratch[f->n++] = text;
    return text;
}

char *sources_fill(const char *tmpl, json_t *fields)
{
    fill_ctx_t f = {.fields = fields};
    char *out = policy_expand_template(tmpl, fill_lookup, &f);
    for (size_t i = 0; i < f.n; i++) free(f.scratch[i]);
    return out;
}

char *sources_removed_name(const source_t *src, const char *event)
{
    json_t *o = json_pack("{ss}", "event", event);
    char *out = o ? sources_fill(src->removed_event ? src->removed_event : "{event}:removed", o) : NULL;
    json_decref(o);
    return out;
}

bool sources_event_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= 255 && !native_is_control_name(name, n);
}

/* ---- building the sources from the config ---- */

static const char *str(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static int build_evm(source_t *src, json_t *o)
{
    src->url = str(o, "url");
    const char *addr = str(o, "address");
    snprintf(src->address, sizeof src->address, "%s", addr ? addr : "");
    for (char *p = src->address; *p; p++)
        if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
    json_t *sb = json_object_get(o, "start_block");
    if (json_is_integer(sb)) src->start_number = (uint64_t)json_integer_value(sb);
    else src->start_block = json_is_string(sb) ? json_string_value(sb) : "latest";
    src->confirmations = (uint32_t)json_integer_value(json_object_get(o, "confirmations"));
    json_t *r = json_object_get(o, "backfill_max_range");
    src->backfill_max_range = json_is_integer(r) ? (uint32_t)json_integer_value(r) : 2000;
    json_t *evs = json_object_get(o, "events");
    src->event_count = json_array_size(evs);
    src->events = calloc(src->event_count + 1, sizeof *src->events);
    if (!src->events) return HERALD_ENOMEM;
    for (size_t i = 0; i < src->event_count; i++) {
        json_t *e = json_array_get(evs, i);
        evm_event_cfg_t *ec = &src->events[i];
        char why[256];
        ec->abi = calloc(1, sizeof *ec->abi);
        if (!ec->abi || abi_event_parse(str(e, "signature"), ec->abi, why, sizeof why) < 0) {
            log_msg(LOG_ERROR, "cannot use an event signature", "source", src->name, "error", why, NULL);
            return HERALD_EINVAL;
        }
        ec->channel = str(e, "channel");
        ec->event = str(e, "event") ? str(e, "event") : ec->abi->name;
    }
    return 0;
}

static int build_chainhook(source_t *src, json_t *o)
{
    src->path = str(o, "path");
    src->authorization = str(o, "authorization");
    if (!src->authorization)
        log_msg(LOG_WARN, "chainhook source without authorization: it accepts direct loopback requests only", "source",
                src->name, "path", src->path, NULL);
    json_t *prints = json_object_get(o, "prints");
    src->print_count = json_array_size(prints);
    src->prints = calloc(src->print_count + 1, sizeof *src->prints);
    if (!src->prints) return HERALD_ENOMEM;
    for (size_t i = 0; i < src->print_count; i++) {
        json_t *p = json_array_get(prints, i);
        src->prints[i].contract = str(p, "contract");
        src->prints[i].channel = str(p, "channel");
        src->prints[i].event = str(p, "event") ? str(p, "event") : "{event}";
    }
    return 0;
}

int sources_create(server_t *s, const config_t *cfg, sources_t **out)
{
    *out = NULL;
    size_t n = json_array_size(cfg->sources);
    if (n == 0) return 0;
    sources_t *ss = calloc(1, sizeof *ss);
    if (!ss || !(ss->list = calloc(n, sizeof *ss->list))) {
        free(ss);
        return HERALD_ENOMEM;
    }
    ss->server = s;
    pthread_mutex_init(&ss->db_lock, NULL);
    ss->count = n;
    int rc = db_open(ss, cfg->data_dir);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *o = json_array_get(cfg->sources, i);
        source_t *src = &ss->list[i];
        src->all = ss;
        src->name = str(o, "name");
        src->removed_event = str(o, "removed_event");
        atomic_init(&src->count.block, -1);
        const char *type = str(o, "type");
        if (type && strcmp(type, "evm") == 0) {
            src->type = SOURCE_EVM;
            rc = build_evm(src, o);
            int64_t cur = rc == 0 ? sources_cursor(ss, src) : -1;
            atomic_store(&src->count.block, (long long)cur);
        } else {
            src->type = SOURCE_CHAINHOOK;
            rc = build_chainhook(src, o);
        }
    }
    if (rc < 0) {
        sources_destroy(ss);
        return rc;
    }
    *out = ss;
    return 0;
}

int sources_start(sources_t *ss)
{
    if (!ss) return 0;
    for (size_t i = 0; i < ss->count; i++) {
        source_t *src = &ss->list[i];
        if (src->type != SOURCE_EVM) continue;
        int rc = evm_start(src);
        if (rc < 0) return rc;
    }
    return 0;
}

void sources_stop(sources_t *ss)
{
    if (!ss) return;
    ss->stop = 1;
    for (size_t i = 0; i < ss->count; i++)
        if (ss->list[i].type == SOURCE_EVM) evm_stop(&ss->list[i]);
}

void sources_destroy(sources_t *ss)
{
    if (!ss) return;
    sources_stop(ss);
    for (size_t i = 0; i < ss->count; i++) {
        source_t *src = &ss->list[i];
        for (size_t k = 0; src->events && k < src->event_count; k++) {
            if (src->events[k].abi) abi_event_free(src->events[k].abi);
            free(src->events[k].abi);
        }
        free(src->events);
        free(src->prints);
    }
    if (ss->db) sqlite3_close(ss->db);
    pthread_mutex_destroy(&ss->db_lock);
    free(ss->list);
    free(ss);
}

/* ---- /stats and /metrics ---- */

int sources_render_stats(sources_t *ss, buf_t *b)
{
    if (!ss) return 0;
    int rc = buf_append_str(b, ",\"sources\":{");
    for (size_t i = 0; i < ss->count; i++) {
        source_t *src = &ss->list[i];
        source_counters_t *k = &src->count;
        if (i) rc |= buf_append_str(b, ",");
        rc |= buf_append_json_str(b, src->name, strlen(src->name));
        if (src->type == SOURCE_EVM) {
            long long block = atomic_load(&k->block);
            rc |= buf_printf(b, ":{\"type\":\"evm\",\"connected\":%s,\"block\":", atomic_load(&k->connected) ? "true" : "false");
            rc |= block >= 0 ? buf_printf(b, "%lld", block) : buf_append_str(b, "null");
            rc |= buf_printf(b, ",\"events\":%ld,\"removed\":%ld,\"duplicates\":%ld,\"skipped\":%ld,\"errors\":%ld}",
                             atomic_load(&k->events), atomic_load(&k->removed), atomic_load(&k->duplicates),
                             atomic_load(&k->skipped), atomic_load(&k->errors));
        } else {
            rc |= buf_printf(b, ":{\"type\":\"chainhook\",\"events\":%ld,\"removed\":%ld,\"duplicates\":%ld,"
                                "\"skipped\":%ld}",
                             atomic_load(&k->events), atomic_load(&k->removed), atomic_load(&k->duplicates),
                             atomic_load(&k->skipped));
        }
    }
    rc |= buf_append_str(b, "}");
    return rc ? HERALD_ENOMEM : 0;
}

int sources_render_metrics(sources_t *ss, buf_t *b)
{
    if (!ss) return 0;
    int rc = buf_append_str(b, "# HELP herald_source_connected Whether an evm source's node answers.\n"
                               "# TYPE herald_source_connected gauge\n");
    for (size_t i = 0; i < ss->count; i++)
        if (ss->list[i].type == SOURCE_EVM)
            rc |= buf_printf(b, "herald_source_connected{source=\"%s\"} %d\n", ss->list[i].name,
                             atomic_load(&ss->list[i].count.connected) ? 1 : 0);
    rc |= buf_append_str(b, "# HELP herald_source_block The last block an evm source processed.\n"
                            "# TYPE herald_source_block gauge\n");
    for (size_t i = 0; i < ss->count; i++) {
        long long block = atomic_load(&ss->list[i].count.block);
        if (ss->list[i].type == SOURCE_EVM && block >= 0)
            rc |= buf_printf(b, "herald_source_block{source=\"%s\"} %lld\n", ss->list[i].name, block);
    }
    rc |= buf_append_str(b, "# HELP herald_source_events_total Events a source published.\n"
                            "# TYPE herald_source_events_total counter\n");
    for (size_t i = 0; i < ss->count; i++)
        rc |= buf_printf(b, "herald_source_events_total{source=\"%s\"} %ld\n", ss->list[i].name,
                         atomic_load(&ss->list[i].count.events));
    return rc ? HERALD_ENOMEM : 0;
}
