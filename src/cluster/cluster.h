/* cluster: the Redis engine that makes several herald nodes behave as one.
 *
 * One thread with its own event loop holds two hiredis connections to Redis:
 *   - commands: publishes (one Lua script assigns the channel's next offset and the
 *     cluster-wide sequence number, appends the event to the channel's history list,
 *     records the idempotency key and PUBLISHes the event, atomically), reads of a
 *     channel's offset and history, node heartbeats, cluster stats, sessions;
 *   - pub/sub: the channels this node has local subscribers for, plus `$all`, the
 *     control channel every node listens to (disconnects), and this node's own
 *     reply channel.
 * Other threads hand it work through a queue woken by an eventfd; what it learns
 * goes back through hooks (to the sequencer and the server), called on its thread.
 *
 * Per channel it keeps the Redis subscription state (none, subscribing, subscribed,
 * unsubscribing) and issues the next command only once Redis answered the last, so
 * a channel left and joined again quickly is never lost. After a channel is
 * subscribed (and after every reconnect) its offset and history are read: the
 * sequencer fills any gap from them.
 *
 * Redis keys (P is redis.prefix): P:offsets (hash channel -> latest offset),
 * P:h:<channel> (history list), P:seq, P:epoch, P:i:<channel>\n<key> (idempotency),
 * P:nodes (hash node -> heartbeat), P:sio:<pid> (Socket.IO sessions for recovery),
 * P:tokens, P:tokens:ver and P:tokens:log (access tokens, mirrored into every node's store);
 * pub/sub channels P:c:<channel>, P:ctl and P:ctl:<node>.
 *
 * Owns: the thread, the loop, both connections, the queue and the channel states.
 * Thread-safe as stated per function. */
#ifndef HERALD_CLUSTER_H
#define HERALD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "config.h"
#include "core/util.h"

struct event;

typedef struct cluster cluster_t;

typedef struct cluster_hooks {
    void *ctx;
    /* An event read from Redis (a pub/sub message, or the answer to this node's own
     * publish when own). The callee takes its own reference if it keeps it. */
    void (*event)(void *ctx, struct event *ev, bool own);
    /* A channel's state after (re)subscribing: status 0 with its latest offset and
     * stored events (oldest first; the callee takes the references), or status < 0
     * when it could not be read (Redis unavailable). */
    void (*synced)(void *ctx, const char *channel, size_t len, int status, uint64_t offset, struct event **events,
                   size_t count);
    /* Both connections are ready (with the cluster's epoch), or one was lost. */
    void (*link)(void *ctx, bool up, const char *epoch);
    /* Another node asks to close connections (enum disconnect_by, who); answer with
     * cluster_disconnect_answer(reply, count) from any thread. */
    void (*disconnect)(void *ctx, int by, const char *who, void *reply);
    /* Appends this node's heartbeat fields ("connections":N,...) without braces. */
    void (*stats)(void *ctx, buf_t *b);
    /* Access tokens shared between the nodes (all three, or none): a fingerprint of
     * the local table, its rows created or revoked at or after since_ms (0: all; a
     * new JSON array, tokens_export's format), and rows of other nodes to take in
     * (borrowed). */
    int64_t (*tokens_fingerprint)(void *ctx);
    json_t *(*tokens_export)(void *ctx, int64_t since_ms);
    void (*tokens_import)(void *ctx, json_t *rows);
} cluster_hooks_t;

/* Parses redis.url and node_id (resolved by the caller). NULL with why filled when
 * the URL cannot be used. Nothing connects before cluster_start. */
cluster_t *cluster_create(const config_t *cfg, const char *node_id, const cluster_hooks_t *hooks, char *why,
                          size_t why_len);
/* Starts the thread, which connects (and keeps reconnecting with backoff). */
int cluster_start(cluster_t *c);
/* Waits for answers to what was sent (bounded), disconnects, joins the thread. */
void cluster_stop(cluster_t *c);
void cluster_destroy(cluster_t *c);

/* Any thread. Whether both connections are ready; why (if given) says what is not. */
bool cluster_is_up(cluster_t *c, char *why, size_t why_len);
const char *cluster_node_id(const cluster_t *c);

/* Any thread. Publishes through Redis. done runs on the engine's thread with the
 * result (status < 0: not published, or unknown because the connection dropped).
 * Returns 0 (done will be called) or HERALD_EUNAVAIL / HERALD_ENOMEM (it will not). */
typedef void (*cluster_publish_fn)(void *arg, int status, uint64_t offset, const char *id, bool duplicate);
int cluster_publish(cluster_t *c, const char *channel, size_t channel_len, const char *name, size_t name_len,
                    const char *data, size_t data_len, const char *idem_key, size_t idem_len, uint32_t keep,
                    uint32_t ttl_s, uint32_t idem_ttl_s, cluster_publish_fn done, void *arg);

/* Any thread (never blocks, never calls a hook itself). want: subscribe to the
 * channel in Redis and read its state (hooks.synced; with an error at once while
 * Redis is down), `known` being the latest offset this node has seen (Redis never
 * goes back below it). !want: unsubscribe. Returns 0, or an error (nothing will
 * be called back). */
int cluster_want(cluster_t *c, const char *channel, size_t len, bool want, uint64_t known);

/* Any thread. Asks every other node to close matching connections; done(arg, n)
 * runs on the engine's thread with their total once all answered or after 1 s.
 * Returns 0 or HERALD_ENOMEM (done not called). */
typedef void (*cluster_count_fn)(void *arg, long count);
int cluster_disconnect(cluster_t *c, int by, const char *who, cluster_count_fn done, void *arg);
void cluster_disconnect_answer(cluster_t *c, void *reply, long count);

/* Any thread. done runs on the engine's thread with the cluster stats JSON object
 * (status 0), or status < 0. Returns 0 or an error (done not called). */
typedef void (*cluster_json_fn)(void *arg, int status, const char *json, size_t len);
int cluster_stats(cluster_t *c, cluster_json_fn done, void *arg);

/* Socket.IO sessions kept for connection state recovery on any node. save: fire
 * and forget. take: blocks the calling (worker) thread for at most timeout_ms;
 * returns 1 with the blob in out (taken: it can be recovered once), 0 when there is
 * none, < 0 when Redis could not answer. */
void cluster_session_save(cluster_t *c, const char *pid, size_t pid_len, const char *blob, size_t blob_len,
                          uint32_t ttl_ms);
int cluster_session_take(cluster_t *c, const char *pid, size_t pid_len, buf_t *out, unsigned timeout_ms);

#endif
