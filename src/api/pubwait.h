/* pubwait: one client request that publishes one or more events and answers once
 * all of them are acknowledged. With the durable store an event is acknowledged
 * only after its commit, on the store's thread; pubwait carries each result back
 * to the connection's worker and calls `finish` there once, whether every publish
 * completed at once (memory-only history, duplicates) or later.
 *
 * The connection is held (conn_hold) until finish has run, and an HTTP request is
 * deferred meanwhile (pipelined requests wait their turn). Owns the results
 * array. Created and finished on the connection's worker; the completions may
 * come from the store's thread. */
#ifndef HERALD_PUBWAIT_H
#define HERALD_PUBWAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/conn.h"
#include "hub/sequencer.h"

typedef struct pubwait pubwait_t;
typedef void (*pubwait_finish_fn)(pubwait_t *pw);

struct pubwait {
    conn_t *conn;
    struct worker *origin;
    pubwait_finish_fn finish;
    void *ctx;                  /* the caller's */
    atomic_int outstanding;     /* publishes not yet acknowledged, + 1 while issuing */
    atomic_int status;          /* 0, or the first failure */
    bool http;                  /* answered through an HTTP slot when it finishes later */
    struct http_slot *slot;     /* that slot, or NULL (finished at once) */
    size_t count;
    publish_result_t results[]; /* one per publish, in issue order */
};

pubwait_t *pubwait_create(conn_t *c, size_t count, bool http, pubwait_finish_fn finish, void *ctx);

/* Publishes event i of the request. */
void pubwait_publish(pubwait_t *pw, size_t i, const char *channel, size_t channel_len, const char *name,
                     size_t name_len, const char *data, size_t data_len, const char *idem_key, size_t idem_len);

/* Every publish is issued: finish now if all are done, else when the last is. */
void pubwait_start(pubwait_t *pw);

/* Called by finish when it is done with pw: releases the connection, frees pw. */
void pubwait_free(pubwait_t *pw);

#endif
