/* sources: the chain event sources of SPEC section 8 (`sources` in the config),
 * and what they share.
 *
 * - evm (src/chain/evm.c): one thread per source reads a contract's logs over a
 *   JSON-RPC WebSocket and publishes the decoded events.
 * - chainhook (src/chain/chainhook_source.c): Stacks Chainhook posts its payloads
 *   to a configured path; the worker that receives one publishes its prints.
 *
 * Shared here: the sources built from the config; a small SQLite file,
 * <data_dir>/sources.db, that remembers for each source its cursor (the last
 * processed block) and which items it has published or retracted (so an item is
 * published once across reconnects, repeated deliveries and restarts); counters
 * for /stats and /metrics; publishing through the sequencer and waiting for the
 * acknowledgement.
 *
 * Every published item also carries an idempotency key derived from its identity
 * ("<type>:<source>:<item key>"), so a crash between the acknowledgement and the
 * state write, or two nodes of a cluster running the same source, still publish
 * it once (within history.idempotency_ttl_s).
 *
 * Owns: the sources, their threads (through evm.c), the state database. Thread-safe
 * as stated per function. */
#ifndef HERALD_SOURCES_H
#define HERALD_SOURCES_H

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "core/util.h"

struct server;
struct conn;
struct http_request;
struct abi_event;
struct evm_runtime;

enum source_type { SOURCE_EVM = 1, SOURCE_CHAINHOOK };
enum seen_state { SEEN_NONE = 0, SEEN_APPLIED = 1, SEEN_REMOVED = 2 };

typedef struct source_counters {
    atomic_bool connected;     /* evm: the node answers */
    atomic_llong block;        /* evm: last processed block; -1 unknown */
    atomic_long events;        /* published */
    atomic_long removed;       /* retractions published */
    atomic_long skipped;       /* undecodable or unusable items */
    atomic_long duplicates;    /* items seen before */
    atomic_long errors;        /* connection and protocol errors */
} source_counters_t;

/* One configured event of an evm source. */
typedef struct evm_event_cfg {
    struct abi_event *abi;
    const char *channel;       /* template over the event's parameters */
    const char *event;         /* template, or the signature's name */
} evm_event_cfg_t;

/* One configured print of a chainhook source. */
typedef struct print_cfg {
    const char *contract;
    const char *channel;       /* template over the printed tuple's fields */
    const char *event;         /* template; "{event}" by default */
} print_cfg_t;

typedef struct source {
    int type;                  /* enum source_type */
    const char *name;          /* borrowed from the config */
    const char *removed_event; /* template with {event}; "{event}:removed" by default */
    source_counters_t count;
    struct sources *all;
    /* evm */
    const char *url;
    char address[43];          /* lowercase 0x + 40 hex */
    const char *start_block;   /* "latest", "earliest", or NULL with start_number */
    uint64_t start_number;
    uint32_t confirmations;
    uint32_t backfill_max_range;
    evm_event_cfg_t *events;
    size_t event_count;
    struct evm_runtime *rt;
    /* chainhook */
    const char *path;
    const char *authorization; /* NULL: no check */
    print_cfg_t *prints;
    size_t print_count;
} source_t;

typedef struct sources {
    struct server *server;
    source_t *list;
    size_t count;
    volatile sig_atomic_t stop;   /* evm threads end when set */
    pthread_mutex_t db_lock;
    struct sqlite3 *db;
} sources_t;

/* Builds the sources of cfg (NULL when it has none) and opens sources.db. Returns
 * 0 (with *out, possibly NULL) or a negative error, logged. */
int sources_create(struct server *s, const config_t *cfg, sources_t **out);
/* Starts the evm threads. */
int sources_start(sources_t *ss);
/* Ends the evm threads (each within about a second), before the workers stop. */
void sources_stop(sources_t *ss);
void sources_destroy(sources_t *ss);

/* Worker thread: when req's path belongs to a chainhook source, answers it and
 * returns true (chainhook_source.c). */
bool sources_route(sources_t *ss, struct conn *c, struct http_request *req);

/* "sources":{...} for /stats (appended with a leading comma), and the metrics. */
int sources_render_stats(sources_t *ss, buf_t *b);
int sources_render_metrics(sources_t *ss, buf_t *b);

/* ---- shared by the source kinds (any thread) ---- */

/* The state of an item (SEEN_*), and recording a new one. block orders pruning. */
int sources_seen(sources_t *ss, const source_t *src, const char *key);
void sources_mark(sources_t *ss, const source_t *src, const char *key, int state, uint64_t block);
/* The cursor: -1 when none is stored. */
int64_t sources_cursor(sources_t *ss, const source_t *src);
void sources_set_cursor(sources_t *ss, const source_t *src, uint64_t block);

/* Publishes and waits for the acknowledgement (source threads only, never a
 * worker). Returns 0 (also for a duplicate idempotency key) or an error. */
int sources_publish_wait(sources_t *ss, const char *channel, const char *name, const char *data,
                         const char *idem_key);

/* The event name removed_event gives for `event`. Heap string. */
char *sources_removed_name(const source_t *src, const char *event);

/* Fills a template from a JSON object's fields: strings as they are, numbers and
 * booleans as JSON text. NULL when a field is missing or is not a scalar. */
char *sources_fill(const char *tmpl, json_t *fields);

/* Whether name can be published (1-255 bytes, not a control message type). */
bool sources_event_name_ok(const char *name);

#endif
