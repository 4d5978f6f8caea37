#include "proto/socketio.h"
#include "auth/authn.h"
#include "auth/policy.h"
#include "auth/ratelimit.h"
#include "cluster/cluster.h"
#include "core/err.h"
#include "core/strmap.h"
#include "core/util.h"
#include "http/http_conn.h"
#include "http/http_response.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/sequencer.h"
#include "metrics.h"
#include "proto/native.h"
#include "proto/sio_codec.h"
#include "proto/ws_transport.h"
#include "server.h"
#include "worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SID_LEN 20
#define SIO_MAX_PACKETS_PER_POST 256

/* ---- the sid registry: which worker owns a session ---- */

typedef struct reg_entry {
    strmap_node_t node;
    unsigned worker;
    void *session;            /* dereferenced only on its worker's thread */
    char sid[SID_LEN + 1];
} reg_entry_t;

/* A session that ended, kept for connection state recovery: a client that
 * reconnects within SIO_RECOVERY_MS with its pid and last offset gets its rooms
 * back and every event it missed (Socket.IO's maxDisconnectionDuration). */
typedef struct saved_session {
    strmap_node_t node;
    struct saved_session *fifo_next;
    uint64_t expires_ms;
    char pid[SID_LEN + 1];
    char socket_id[SID_LEN + 1];   /* given back: a recovered socket keeps its id */
    char **rooms;
    size_t room_count;
} saved_session_t;

#define SIO_RECOVERY_MS 120000

struct sio_registry {
    pthread_mutex_t lock;
    strmap_t map;
    strmap_t saved;                   /* pid -> saved_session_t */
    saved_session_t *saved_head, *saved_tail;   /* expiry order */
};

static void saved_free(saved_session_t *v)
{
    for (size_t i = 0; i < v->room_count; i++) free(v->rooms[i]);
    free(v->rooms);
    free(v);
}

/* Lock held. */
static void saved_expire(sio_registry_t *r, uint64_t now)
{
    while (r->saved_head && r->saved_head->expires_ms <= now) {
        saved_session_t *v = r->saved_head;
        r->saved_head = v->fifo_next;
        if (!r->saved_head) r->saved_tail = NULL;
        if (v->node.key) strmap_remove(&r->saved, &v->node);
        saved_free(v);
    }
}

static void saved_put(sio_registry_t *r, saved_session_t *v)
{
    v->node.key = v->pid;
    v->node.key_len = SID_LEN;
    v->expires_ms = time_mono_ms() + SIO_RECOVERY_MS;
    pthread_mutex_lock(&r->lock);
    saved_expire(r, time_mono_ms());
    if (strmap_insert(&r->saved, &v->node) < 0) {
        pthread_mutex_unlock(&r->lock);
        saved_free(v);
        return;
    }
    if (r->saved_tail) r->saved_tail->fifo_next = v;
    else r->saved_head = v;
    r->saved_tail = v;
    pthread_mutex_unlock(&r->lock);
}

/* Takes the saved session out (it can be recovered once); the caller owns the
 * rooms moved into *rooms. */
static bool saved_take(sio_registry_t *r, const char *pid, size_t len, char ***rooms, size_t *count,
                       char socket_id[SID_LEN + 1])
{
    if (len != SID_LEN) return false;
    pthread_mutex_lock(&r->lock);
    saved_expire(r, time_mono_ms());
    saved_session_t *v = (saved_session_t *)strmap_get(&r->saved, pid, len);
    if (v) {
        strmap_remove(&r->saved, &v->node);
        v->node.key = NULL;   /* freed by expiry, from the FIFO */
        *rooms = v->rooms;
        *count = v->room_count;
        memcpy(socket_id, v->socket_id, SID_LEN + 1);
        v->rooms = NULL;
        v->room_count = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return v != NULL;
}

sio_registry_t *sio_registry_create(void)
{
    sio_registry_t *r = calloc(1, sizeof *r);
    if (r) pthread_mutex_init(&r->lock, NULL);
    return r;
}

void sio_registry_destroy(sio_registry_t *r)
{
    if (!r) return;
    while (r->saved_head) {
        saved_session_t *v = r->saved_head;
        r->saved_head = v->fifo_next;
        saved_free(v);
    }
    strmap_deinit(&r->saved);
    size_t b;
    strmap_node_t *n = strmap_first(&r->map, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&r->map, n, &b);
        free(n);
        n = next;
    }
    strmap_deinit(&r->map);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static int registry_add(sio_registry_t *r, const char *sid, unsigned worker, void *session)
{
    reg_entry_t *e = calloc(1, sizeof *e);
    if (!e) return HERALD_ENOMEM;
    memcpy(e->sid, sid, SID_LEN);
    e->worker = worker;
    e->session = session;
    e->node.key = e->sid;
    e->node.key_len = SID_LEN;
    pthread_mutex_lock(&r->lock);
    int rc = strmap_insert(&r->map, &e->node);
    pthread_mutex_unlock(&r->lock);
    if (rc < 0) free(e);
    return rc;
}

static void registry_remove(sio_registry_t *r, const char *sid)
{
    pthread_mutex_lock(&r->lock);
    strmap_node_t *n = strmap_get(&r->map, sid, SID_LEN);
    if (n) strmap_remove(&r->map, n);
    pthread_mutex_unlock(&r->lock);
    free(n);
}

/* The worker owning sid (-1: unknown) and, for use on that worker only, the session. */
static int registry_owner(sio_registry_t *r, const char *sid, size_t len, void **session)
{
    if (len != SID_LEN) return -1;
    pthread_mutex_lock(&r->lock);
    reg_entry_t *e = (reg_entry_t *)strmap_get(&r->map, sid, len);
    int w = e ? (int)e->worker : -1;
    *session = e ? e->session : NULL;
    pthread_mutex_unlock(&r->lock);
    return w;
}

/* ---- sessions ---- */

typedef struct session {
    char sid[SID_LEN + 1];
    char socket_id[SID_LEN + 1];
    char pid[SID_LEN + 1];   /* private id for connection state recovery */
    conn_t *sub;             /* the subscriber: the virtual polling connection or the WebSocket */
    conn_t *poll;            /* a held HTTP connection whose GET waits for packets */
    struct http_slot *poll_slot;   /* that GET's answer's place in line */
    conn_t *probe;           /* a WebSocket in the upgrade probe */
    uint32_t namespaces;     /* bit 0: "/", bit i + 1: socketio.namespaces[i] */
    bool connected_once;     /* auto_join done */
    bool saved;              /* its rooms are kept for recovery already */
    bool probed;             /* 3probe sent: polling is paused, GETs end at once */
    char *token;             /* ?token= of the handshake, for CONNECT without auth */
} session_t;

static session_t *session_of(const conn_t *c) { return c->proto_data; }

static frame_t *heartbeat(conn_t *c, uint64_t *interval, uint64_t *timeout);
static void ws_on_open(conn_t *c, const http_request_t *req);
static void ws_on_text(conn_t *c, char *data, size_t len);
static void ws_on_binary(conn_t *c, uint8_t *data, size_t len);
static void ws_on_close(conn_t *c);
static void ws_on_closing(conn_t *c);
static bool ws_on_event(conn_t *c, event_t *ev);

/* The WebSocket transport of a session (a fresh one, or one that completed the upgrade). */
static const ws_app_t sio_ws_app = {.name = "socketio", .on_open = ws_on_open, .on_text = ws_on_text,
                                    .on_binary = ws_on_binary, .on_close = ws_on_close,
                                    .heartbeat = heartbeat, .on_event = ws_on_event, .on_closing = ws_on_closing};

static void poll_on_timer(conn_t *c);
static void poll_on_flush(conn_t *c);
static void poll_on_close(conn_t *c);
static bool poll_on_event(conn_t *c, event_t *ev);

/* The long-polling session: a virtual connection. */
static const conn_handler_t polling_handler = {.name = "socketio-polling", .on_timer = poll_on_timer,
                                               .on_flush = poll_on_flush, .on_close = poll_on_close,
                                               .on_event = poll_on_event};

static void new_id(char out[SID_LEN + 1])
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[SID_LEN];
    rand_secure(r, sizeof r);
    for (int i = 0; i < SID_LEN; i++) out[i] = a[r[i] & 63];
    out[SID_LEN] = '\0';
}

static session_t *session_new(conn_t *sub, const http_request_t *req)
{
    session_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    new_id(s->sid);
    new_id(s->socket_id);
    new_id(s->pid);
    s->sub = sub;
    char token[8192];
    int found = authn_credential(req, token, sizeof token);
    if (found > 0) s->token = strdup(token);
    else if (found < 0) s->token = strdup("\x01");   /* too long: a token that fails, not none */
    sub->proto_data = s;
    if (registry_add(sub->worker->server->sio, s->sid, sub->worker->index, s) < 0) {
        free(s->token);
        free(s);
        sub->proto_data = NULL;
        return NULL;
    }
    return s;
}

static void answer_poll(session_t *s, const char *body, size_t len);

/* Keeps the rooms of a connected session for a while, for recovery. */
static void save_for_recovery(session_t *s)
{
    conn_t *c = s->sub;
    if (!s->namespaces || s->saved || c->worker->shutting_down || !c->worker->cfg->socketio.recovery) return;
    s->saved = true;
    saved_session_t *v = calloc(1, sizeof *v);
    if (!v) return;
    memcpy(v->pid, s->pid, sizeof v->pid);
    memcpy(v->socket_id, s->socket_id, sizeof v->socket_id);
    server_t *srv = c->worker->server;
    if (srv->cluster) {
        /* kept in Redis, so the client may come back through any node:
         * "<socket id>\n<room>\n<room>..." (room names hold no control characters) */
        buf_t b = {0};
        int rc = buf_append_str(&b, v->socket_id);
        for (const sub_t *x = c->subs; x; x = x->conn_next) {
            rc |= buf_append_str(&b, "\n");
            rc |= buf_append(&b, hub_channel_name(x), hub_channel_name_len(x));
        }
        if (rc == 0) cluster_session_save(srv->cluster, v->pid, SID_LEN, b.data, b.len, SIO_RECOVERY_MS);
        buf_free(&b);
        free(v);
        return;
    }
    v->rooms = calloc(c->sub_count + 1, sizeof *v->rooms);
    for (const sub_t *x = c->subs; v->rooms && x; x = x->conn_next)
        if ((v->rooms[v->room_count] = strndup(hub_channel_name(x), hub_channel_name_len(x)))) v->room_count++;
    saved_put(srv->sio, v);
}

/* With redis.url: the saved session from Redis (whichever node kept it), taken. */
static bool cluster_take(server_t *srv, const char *pid, size_t len, char ***rooms, size_t *count,
                         char socket_id[SID_LEN + 1])
{
    buf_t b = {0};
    if (len != SID_LEN || cluster_session_take(srv->cluster, pid, len, &b, 1000) != 1 ||
        buf_append(&b, "", 1) < 0) {
        buf_free(&b);
        return false;
    }
    char *line = b.data, *nl = strchr(line, '\n');
    size_t idlen = nl ? (size_t)(nl - line) : strlen(line);
    bool ok = idlen == SID_LEN;
    if (ok) memcpy(socket_id, line, SID_LEN), socket_id[SID_LEN] = '\0';
    size_t n = 0;
    for (const char *p = line; (p = strchr(p, '\n')); p++) n++;
    *rooms = ok ? calloc(n + 1, sizeof **rooms) : NULL;
    *count = 0;
    for (char *p = nl; *rooms && p; p = nl) {
        char *start = p + 1;
        nl = strchr(start, '\n');
        size_t rl = nl ? (size_t)(nl - start) : strlen(start);
        if (rl && ((*rooms)[*count] = strndup(start, rl))) (*count)++;
    }
    buf_free(&b);
    return ok && *rooms;
}

/* The subscriber closed: the session ends with it. */
static void session_end(session_t *s)
{
    save_for_recovery(s);
    registry_remove(s->sub->worker->server->sio, s->sid);
    if (s->poll) answer_poll(s, "1", 1);
    if (s->probe) {
        s->probe->proto_data = NULL;
        ws_transport_close(s->probe, WS_CLOSE_NORMAL, "session closed");
    }
    free(s->token);
    free(s);
}

/* Ends the waiting GET with body, in its place among the connection's answers. */
static void answer_poll(session_t *s, const char *body, size_t len)
{
    conn_t *p = s->poll;
    http_slot_t *slot = s->poll_slot;
    s->poll = NULL;
    s->poll_slot = NULL;
    if (slot) http_conn_answering(p, slot);
    if (p->state == CONN_OPEN) http_respond(p, 200, "text/plain; charset=UTF-8", body, len, NULL);
    if (slot) http_conn_answered(p, slot);
    conn_release(p);
}

/* ---- sending packets ---- */

/* One Engine.IO packet to the session, over whichever transport it has. */
static void send_packet(session_t *s, const char *text, size_t len)
{
    conn_t *c = s->sub;
    if (c->state != CONN_OPEN) return;
    if (c->is_virtual) conn_send_bytes(c, text, len);
    else ws_transport_send_text(c, text, len);
}

static void send_buf(session_t *s, buf_t *b)
{
    if (b->data) send_packet(s, b->data, b->len);
    buf_free(b);
}

static void send_ack(session_t *s, const char *nsp, int64_t id, json_t *arg)
{
    if (id == SIO_NO_ACK) {
        json_decref(arg);
        return;
    }
    char *text = json_dumps(arg, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(arg);
    buf_t b = {0};
    if (text && sio_encode_ack(&b, nsp, id, text, strlen(text)) == 0) send_buf(s, &b);
    else buf_free(&b);
    free(text);
}

/* ---- namespaces ---- */

static int nsp_index(const config_t *cfg, const char *nsp, size_t len)
{
    if (len == 1 && nsp[0] == '/') return 0;
    for (size_t i = 0; i < cfg->socketio.namespace_count && i < 31; i++)
        if (strlen(cfg->socketio.namespaces[i]) == len && memcmp(cfg->socketio.namespaces[i], nsp, len) == 0)
            return (int)i + 1;
    return -1;
}

/* The namespace as a C string for encoders: NULL for "/". */
static char *nsp_str(const sio_packet_t *p)
{
    if (p->nsp_len == 1 && p->nsp[0] == '/') return NULL;
    return strndup(p->nsp, p->nsp_len);
}

/* ---- rooms ---- */

static json_t *rooms_of(const conn_t *c)
{
    json_t *a = json_array();
    for (const sub_t *s = c->subs; s; s = s->conn_next)
        json_array_append_new(a, json_stringn(hub_channel_name(s), hub_channel_name_len(s)));
    return a;
}

/* The room a subscribe names: "x", {"channel":"x"}, {"room":"market","id":"m1"}. */
static char *room_from(json_t *arg)
{
    if (json_is_string(arg)) return strndup(json_string_value(arg), json_string_length(arg));
    if (!json_is_object(arg)) return NULL;
    json_t *ch = json_object_get(arg, "channel"), *room = json_object_get(arg, "room"), *id = json_object_get(arg, "id");
    if (json_is_string(ch)) return strndup(json_string_value(ch), json_string_length(ch));
    if (!json_is_string(room)) return NULL;
    if (!id) return strndup(json_string_value(room), json_string_length(room));
    buf_t b = {0};
    if (json_is_string(id)) buf_printf(&b, "%s:%s", json_string_value(room), json_string_value(id));
    else if (json_is_integer(id)) buf_printf(&b, "%s:%lld", json_string_value(room), (long long)json_integer_value(id));
    return b.data;
}

static json_t *refusal(const char *code, const char *message)
{
    return json_pack("{sbssss}", "success", 0, "error", code, "message", message);
}

/* Joins a room: the same checks as a native subscribe. Returns the ack object. */
static json_t *join(conn_t *c, const char *room)
{
    const config_t *cfg = c->worker->cfg;
    size_t len = room ? strlen(room) : 0;
    if (!room || !channel_name_valid(room, len))
        return refusal("bad_request", room && room[0] == '$' ? "reserved channel" : "invalid channel name");
    principal_t p = authn_principal(c);
    policy_verdict_t v = policy_check(cfg, &p, POLICY_SUBSCRIBE, room, len);
    if (v != VERDICT_ALLOW)
        return refusal(v == VERDICT_UNAUTHORIZED ? "unauthorized" : "forbidden", "not allowed to join this room");
    if (!hub_is_subscribed(c->worker->hub, c, room, len) && c->sub_count >= cfg->limits.max_channels_per_connection)
        return refusal("too_many_channels", "over limits.max_channels_per_connection");
    seq_snapshot_t snap;
    int rc = hub_subscribe(c->worker->hub, c, room, len, NULL, &snap);
    if (rc < 0 && rc != HERALD_EEXIST)
        return refusal("unavailable", rc == HERALD_EUNAVAIL ? "redis is unavailable" : "out of memory");
    return json_pack("{sbss}", "success", 1, "room", room);
}

static json_t *leave(conn_t *c, const char *room)
{
    if (!room || !channel_name_valid(room, strlen(room))) return refusal("bad_request", "invalid channel name");
    hub_unsubscribe(c->worker->hub, c, room, strlen(room));
    return json_pack("{sbss}", "success", 1, "room", room);
}

/* "user:{0}": {0}, {1}, ... are the event's arguments (strings or integers),
 * {sub} the connection's user. NULL when a placeholder has no such value. */
static char *room_template(const char *tmpl, json_t *event_array, const char *user)
{
    buf_t b = {0};
    for (const char *p = tmpl; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (!close) {
            buf_append(&b, p, 1);
            p++;
            continue;
        }
        char value[128] = "";
        bool ok = false;
        if (close - p == 4 && memcmp(p, "{sub}", 5) == 0) {
            ok = user != NULL;
            if (ok) snprintf(value, sizeof value, "%s", user);
        } else {
            char *end;
            long n = strtol(p + 1, &end, 10);
            json_t *arg = end == close && n >= 0 && n < 16 ? json_array_get(event_array, (size_t)n + 1) : NULL;
            if (json_is_string(arg)) ok = (size_t)snprintf(value, sizeof value, "%s", json_string_value(arg)) < sizeof value;
            else if (json_is_integer(arg)) ok = snprintf(value, sizeof value, "%lld", (long long)json_integer_value(arg)) > 0;
        }
        if (!ok) {
            buf_free(&b);
            return NULL;
        }
        buf_append_str(&b, value);
        p = close + 1;
    }
    return b.data ? b.data : strdup("");
}

/* ---- Socket.IO packets ---- */

static frame_t *frame_for_nsp(session_t *s, event_t *ev, bool raw, int idx);

/* Rejoins the rooms of the session `pid`, as far as the rules allow the new
 * connection, and collects what it missed after `offset`. Recovered only when
 * every room's history reaches back: then the session takes the old pid, which
 * is how the client learns (socket.recovered). Otherwise the rooms are not
 * rejoined and nothing is replayed: the client refetches. */
static void recover(session_t *s, const char *pid, size_t pid_len, const char *offset, seq_snapshot_t **snaps_out,
                    size_t *n_out)
{
    conn_t *c = s->sub;
    server_t *srv = c->worker->server;
    char **rooms = NULL;
    size_t n = 0;
    char socket_id[SID_LEN + 1];
    if (srv->cluster ? !cluster_take(srv, pid, pid_len, &rooms, &n, socket_id)
                     : !saved_take(srv->sio, pid, pid_len, &rooms, &n, socket_id))
        return;
    char *end;
    unsigned long long seq = strtoull(offset, &end, 10);
    bool ok = *offset && !*end;
    uint64_t *since = calloc(n + 1, sizeof *since);
    principal_t pr = authn_principal(c);
    for (size_t i = 0; ok && since && i < n; i++)
        ok = policy_check(c->worker->cfg, &pr, POLICY_SUBSCRIBE, rooms[i], strlen(rooms[i])) == VERDICT_ALLOW &&
             sequencer_since_seq(srv->seq, rooms[i], strlen(rooms[i]), seq, &since[i]);
    seq_snapshot_t *snaps = ok && since ? calloc(n + 1, sizeof *snaps) : NULL;
    bool *joined = snaps ? calloc(n + 1, sizeof *joined) : NULL;
    ok = ok && joined;
    for (size_t i = 0; ok && i < n; i++) {
        seq_since_t want = {since[i], NULL};
        int rc = hub_subscribe(c->worker->hub, c, rooms[i], strlen(rooms[i]), &want, &snaps[i]);
        joined[i] = rc == 0;
        if (rc < 0 && rc != HERALD_EEXIST) ok = false;
        if (rc == 0 && !snaps[i].recovered) ok = false;
    }
    if (ok) {
        memcpy(s->pid, pid, SID_LEN);
        memcpy(s->socket_id, socket_id, sizeof s->socket_id);
        *snaps_out = snaps;
        *n_out = n;
    } else if (snaps) {   /* not whole: as if nothing was kept */
        for (size_t i = 0; i < n; i++) {
            if (joined[i]) hub_unsubscribe(c->worker->hub, c, rooms[i], strlen(rooms[i]));
            seq_snapshot_release(&snaps[i]);
        }
        free(snaps);
    }
    free(joined);
    for (size_t i = 0; i < n; i++) free(rooms[i]);
    free(rooms);
    free(since);
}

static void on_connect(session_t *s, const sio_packet_t *p)
{
    conn_t *c = s->sub;
    const config_t *cfg = c->worker->cfg;
    char *nsp = nsp_str(p);
    int idx = nsp_index(cfg, p->nsp, p->nsp_len);
    buf_t b = {0};
    if (idx < 0) {
        if (sio_encode_connect_error(&b, nsp, "Invalid namespace") == 0) send_buf(s, &b);
        free(nsp);
        return;
    }
    /* the first CONNECT authenticates the session; rooms are shared by namespaces */
    if (!s->connected_once) {
        json_t *auth_token = json_object_get(p->data, "token");
        const char *token = json_is_string(auth_token) ? json_string_value(auth_token) : s->token;
        const char *reason = NULL;
        if (authn_token(c, token, token ? strlen(token) : 0, &reason) < 0) {
            if (sio_encode_connect_error(&b, nsp, "Authentication failed") == 0) send_buf(s, &b);
            free(nsp);
            return;
        }
        s->connected_once = true;
        json_decref(native_auto_join(c));
    }
    /* connection state recovery: {"pid","offset"} of a session that ended lately */
    json_t *pid = json_object_get(p->data, "pid"), *offset = json_object_get(p->data, "offset");
    seq_snapshot_t *snaps = NULL;
    size_t nsnaps = 0;
    bool rec = cfg->socketio.recovery;
    if (rec && idx == 0 && json_is_string(pid) && json_is_string(offset))
        recover(s, json_string_value(pid), json_string_length(pid), json_string_value(offset), &snaps, &nsnaps);
    s->namespaces |= 1u << idx;
    if (sio_encode_connect(&b, nsp, s->socket_id, rec ? s->pid : NULL) == 0) send_buf(s, &b);
    else buf_free(&b);
    /* then what it missed, in order per room */
    for (size_t i = 0; i < nsnaps; i++) {
        for (size_t e = 0; e < snaps[i].event_count && c->state == CONN_OPEN; e++) {
            frame_t *f = frame_for_nsp(s, snaps[i].events[e], c->is_virtual, 0);
            if (f) conn_send(c, f, true);
        }
        seq_snapshot_release(&snaps[i]);
    }
    free(snaps);
    if (cfg->socketio.connected_event) {
        json_t *msg = json_pack("{ssso}", "message", "connected", "rooms", rooms_of(c));
        char *text = json_dumps(msg, JSON_COMPACT);
        const char *args[1] = {text};
        size_t lens[1] = {text ? strlen(text) : 0};
        buf_t e = {0};
        if (text && sio_encode_event(&e, nsp, cfg->socketio.connected_event, strlen(cfg->socketio.connected_event),
                                     args, lens, 1) == 0)
            send_buf(s, &e);
        else
            buf_free(&e);
        free(text);
        json_decref(msg);
    }
    free(nsp);
}

static void on_event(session_t *s, const sio_packet_t *p)
{
    conn_t *c = s->sub;
    const config_t *cfg = c->worker->cfg;
    int idx = nsp_index(cfg, p->nsp, p->nsp_len);
    if (idx < 0 || !(s->namespaces & (1u << idx))) return;   /* not connected there: ignored, as Socket.IO does */
    char *nsp = nsp_str(p);
    const char *name = json_string_value(json_array_get(p->data, 0));
    json_t *arg = json_array_get(p->data, 1);
    json_t *ack = NULL;
    if (strcmp(name, "subscribe") == 0) {
        char *room = room_from(arg);
        ack = room && strcmp(room, "$all") == 0 ? refusal("bad_request", "clients cannot join $all") : join(c, room);
        free(room);
    } else if (strcmp(name, "unsubscribe") == 0) {
        char *room = room_from(arg);
        ack = leave(c, room);
        free(room);
    } else if (strcmp(name, "getRooms") == 0) {
        ack = rooms_of(c);
    } else if (strcmp(name, "ping") == 0) {
        char ts[ISO_TIME_LEN];
        time_iso8601(time_wall_ms(), ts);
        ack = json_pack("{ssss}", "type", "pong", "timestamp", ts);
    } else {
        json_t *join_tmpl = json_object_get(cfg->socketio.join_events, name);
        json_t *leave_tmpl = json_object_get(cfg->socketio.leave_events, name);
        json_t *tmpl = join_tmpl ? join_tmpl : leave_tmpl;
        if (json_is_string(tmpl)) {
            char *room = room_template(json_string_value(tmpl), p->data, c->user);
            if (!room) ack = refusal("bad_request", "this event needs string or number arguments for its room");
            else if (join_tmpl) ack = strcmp(room, "$all") == 0 ? refusal("bad_request", "clients cannot join $all")
                                                                : join(c, room);
            else ack = leave(c, room);
            free(room);
        }
        /* other events have no handler here: ignored, like an unhandled event */
    }
    if (ack) send_ack(s, nsp, p->ack_id, ack);
    free(nsp);
}

/* One Engine.IO packet from the client, over either transport. Returns false when
 * the session was closed. */
static bool on_packet(session_t *s, const eio_packet_t *ep)
{
    conn_t *c = s->sub;
    c->last_recv_ms = loop_now_ms(c->worker->loop);
    if (ep->type == EIO_CLOSE) {
        conn_close(c);
        return false;
    }
    if (ep->type == EIO_PING) {   /* a v3-style client ping: answered, harmless */
        send_packet(s, "3", 1);
        return true;
    }
    if (ep->type != EIO_MESSAGE) return true;   /* pong, noop, upgrade: activity only */
    ratelimit_verdict_t rate = ratelimit_take(&c->rate, c->worker->cfg->limits.messages_per_second,
                                              loop_now_ms(c->worker->loop));
    if (rate == RATE_CLOSE) {   /* flooding: 1008 on a WebSocket, the end of the session on polling */
        if (c->is_virtual) conn_close(c);
        else ws_transport_close(c, WS_CLOSE_POLICY, "message rate over limits.messages_per_second");
        return false;
    }
    sio_packet_t p;
    if (ep->binary || sio_parse(ep->data, ep->len, &p) < 0) return true;   /* malformed: dropped */
    if (rate == RATE_REFUSE) {
        char *nsp = nsp_str(&p);
        send_ack(s, nsp, p.ack_id, refusal("rate_limited", "over limits.messages_per_second"));
        free(nsp);
    } else if (p.type == SIO_CONNECT) {
        on_connect(s, &p);
    } else if (p.type == SIO_EVENT) {
        on_event(s, &p);
    } else if (p.type == SIO_DISCONNECT) {
        int idx = nsp_index(c->worker->cfg, p.nsp, p.nsp_len);
        if (idx >= 0) s->namespaces &= ~(1u << idx);
    } else if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) {
        char *nsp = nsp_str(&p);
        send_ack(s, nsp, p.ack_id, refusal("bad_request", "binary packets are not supported"));
        free(nsp);
    }
    sio_packet_clear(&p);
    return c->state == CONN_OPEN;
}

/* ---- delivery of published events ---- */

/* An event for one namespace of the session. The main namespace shares one frame
 * per event; another namespace gets its own copy, prefixed with its name. */
static frame_t *frame_for_nsp(session_t *s, event_t *ev, bool raw, int idx)
{
    const config_t *cfg = s->sub->worker->cfg;
    bool rec = cfg->socketio.recovery;
    if (idx == 0)
        return frame_ref(event_frame(ev, rec ? (raw ? EVENT_FMT_SOCKETIO_REC_RAW : EVENT_FMT_SOCKETIO_REC)
                                             : (raw ? EVENT_FMT_SOCKETIO_RAW : EVENT_FMT_SOCKETIO)));
    char offset[24];
    int on = snprintf(offset, sizeof offset, "\"%llu\"", (unsigned long long)ev->seq);
    const char *args[2] = {ev->data, offset};
    size_t lens[2] = {ev->data_len, (size_t)on};
    buf_t b = {0};
    frame_t *f = NULL;
    if (sio_encode_event(&b, cfg->socketio.namespaces[idx - 1], ev->name, ev->name_len, args, lens, rec ? 2 : 1) == 0)
        f = raw ? frame_from(b.data, b.len) : frame_ws(WS_OP_TEXT, b.data, b.len);
    buf_free(&b);
    return f;
}

/* Rooms are shared by every namespace: an event reaches each namespace the
 * session is connected to. */
static bool deliver(conn_t *c, event_t *ev, bool raw)
{
    session_t *s = session_of(c);
    if (!s || !s->namespaces) return false;   /* not connected to a namespace yet */
    bool any = false;
    for (int idx = 0; idx < 32; idx++) {
        if (!(s->namespaces & (1u << idx))) continue;
        frame_t *f = frame_for_nsp(s, ev, raw, idx);
        if (!f || conn_send(c, f, true) < 0) break;
        any = true;
    }
    return any;
}

static bool ws_on_event(conn_t *c, event_t *ev) { return deliver(c, ev, false); }
static bool poll_on_event(conn_t *c, event_t *ev) { return deliver(c, ev, true); }

/* ---- the WebSocket transport ---- */

static frame_t *heartbeat(conn_t *c, uint64_t *interval, uint64_t *timeout)
{
    const config_t *cfg = c->worker->cfg;
    *interval = cfg->socketio.ping_interval_ms;
    *timeout = cfg->socketio.ping_timeout_ms;
    return frame_ws(WS_OP_TEXT, "2", 1);
}

static void ws_on_open(conn_t *c, const http_request_t *req)
{
    char sid[64];
    long n = http_query_param(req->query, "sid", 0, sid, sizeof sid);
    if (n >= 0) {   /* an upgrade probe of a polling session (found by socketio_route) */
        c->proto_data = NULL;
        return;
    }
    c->format = EVENT_FMT_SOCKETIO;
    session_t *s = session_new(c, req);
    if (!s) {
        ws_transport_close(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    const config_t *cfg = c->worker->cfg;
    buf_t b = {0};
    if (eio_encode_open(&b, s->sid, false, cfg->socketio.ping_interval_ms, cfg->socketio.ping_timeout_ms,
                        cfg->limits.max_message_bytes) == 0)
        send_buf(s, &b);
    else
        buf_free(&b);
}

/* The probe WebSocket of a polling session: 2probe -> 3probe, then 5 completes. */
static void probe_text(conn_t *c, char *data, size_t len);

static void ws_on_text(conn_t *c, char *data, size_t len)
{
    session_t *s = session_of(c);
    if (!s) {
        ws_transport_close(c, WS_CLOSE_POLICY, "no session");
        return;
    }
    if (s->sub != c) {
        probe_text(c, data, len);
        return;
    }
    eio_packet_t ep;
    if (eio_parse(data, len, &ep) < 0) return;
    on_packet(s, &ep);
}

static void ws_on_binary(conn_t *c, uint8_t *data, size_t len)
{
    (void)c, (void)data, (void)len;   /* attachments of refused binary packets: dropped */
}

/* The server closes the WebSocket (heartbeat timeout, shutdown, disconnect): the
 * rooms are saved before the transport leaves them. */
static void ws_on_closing(conn_t *c)
{
    session_t *s = session_of(c);
    if (s && s->sub == c) save_for_recovery(s);
}

static void ws_on_close(conn_t *c)
{
    session_t *s = session_of(c);
    if (!s) return;
    c->proto_data = NULL;
    if (s->probe == c) {
        s->probe = NULL;   /* a failed upgrade: polling goes on */
        s->probed = false;
        return;
    }
    if (s->sub == c) session_end(s);
}

/* The upgrade: the session's subscriptions, identity and queued packets move to
 * the WebSocket; the virtual connection and its pending poll end. */
static void complete_upgrade(session_t *s, conn_t *ws)
{
    conn_t *v = s->sub;
    hub_move(ws->worker->hub, v, ws);
    ws->user = v->user;
    v->user = NULL;
    ws->auth = v->auth;
    v->auth = NULL;
    ws->rate = v->rate;
    conn_become_client(ws, PROTO_SOCKETIO);
    memcpy(ws->conn_id, v->conn_id, sizeof ws->conn_id);
    ws->format = EVENT_FMT_SOCKETIO;
    /* packets queued for the next poll are re-framed for the WebSocket, in order */
    for (uint32_t i = 0; i < v->out.count; i++) {
        out_item_t *it = &v->out.items[(v->out.head + i) % v->out.cap];
        frame_t *f = frame_ws(WS_OP_TEXT, it->frame->data + it->offset, it->frame->len - it->offset);
        if (f) conn_send(ws, f, it->is_event);
    }
    s->probe = NULL;
    s->sub = ws;
    ws->proto_data = s;
    v->proto_data = NULL;
    if (s->poll) answer_poll(s, "6", 1);   /* the waiting GET ends with a noop */
    conn_close(v);
}

static void probe_text(conn_t *c, char *data, size_t len)
{
    session_t *s = session_of(c);
    if (len == 6 && memcmp(data, "2probe", 6) == 0) {
        ws_transport_send_text(c, "3probe", 6);
        s->probed = true;
        /* the client pauses polling now: end the pending GET so it can */
        if (s->poll) answer_poll(s, "6", 1);
    } else if (len == 1 && data[0] == '5') {
        complete_upgrade(s, c);
    }
}

/* ---- the polling transport ---- */

static void poll_on_timer(conn_t *c)
{
    session_t *s = session_of(c);
    const config_t *cfg = c->worker->cfg;
    if (c->ping_sent_ms) {
        if (c->last_recv_ms < c->ping_sent_ms) {   /* no pong in time: the client is gone */
            conn_close(c);
            return;
        }
        c->ping_sent_ms = 0;
        uint64_t interval = cfg->socketio.ping_interval_ms, timeout = cfg->socketio.ping_timeout_ms;
        conn_set_timeout(c, interval > timeout ? interval - timeout : 1);
        return;
    }
    send_packet(s, "2", 1);
    c->ping_sent_ms = loop_now_ms(c->worker->loop);
    conn_set_timeout(c, cfg->socketio.ping_timeout_ms);
}

/* Queued packets go out with the waiting GET, joined by the record separator. */
static void poll_on_flush(conn_t *c)
{
    session_t *s = session_of(c);
    if (!s || !s->poll || c->out.count == 0) return;
    buf_t b = {0};
    int rc = 0;
    for (uint32_t i = 0; i < c->out.count; i++) {
        out_item_t *it = &c->out.items[(c->out.head + i) % c->out.cap];
        if (i) rc |= buf_append(&b, "\x1e", 1);
        rc |= buf_append(&b, it->frame->data + it->offset, it->frame->len - it->offset);
    }
    if (rc == 0) {
        answer_poll(s, b.data, b.len);
        conn_output_written(c);
    }
    buf_free(&b);
}

static void poll_on_close(conn_t *c)
{
    session_t *s = session_of(c);
    if (!s) return;
    c->proto_data = NULL;
    session_end(s);
}

/* ---- routing ---- */

bool socketio_path(const config_t *cfg, const char *path)
{
    if (!cfg->socketio.enabled) return false;
    const char *base = cfg->socketio.path;
    size_t n = strlen(base);
    if (n && base[n - 1] == '/') n--;   /* "/socket.io/" also matches "/socket.io" */
    return strncmp(path, base, n) == 0 && (path[n] == '\0' || (path[n] == '/' && path[n + 1] == '\0'));
}

/* Engine.IO's own error bodies: {"code":N,"message":"..."} with 400. */
static void eio_error(conn_t *c, int code, const char *message)
{
    char body[160];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, message);
    http_respond(c, 400, "application/json", body, (size_t)n, NULL);
}

static void cors_headers(const conn_t *c, const http_request_t *req, char *out, size_t size)
{
    const char *origin = http_request_header(req, "Origin");
    if (origin)
        snprintf(out, size, "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
                 origin);
    else
        out[0] = '\0';
    (void)c;
}

static void handshake_polling(conn_t *c, const http_request_t *req)
{
    if (!server_admit(c, req)) return;
    conn_t *v = conn_create_virtual(c->worker);
    session_t *s = v ? session_new(v, req) : NULL;
    if (!s) {
        if (v) conn_close(v);
        http_respond_error(c, 503, "unavailable", "out of memory");
        return;
    }
    const config_t *cfg = c->worker->cfg;
    v->handler = &polling_handler;
    v->format = EVENT_FMT_SOCKETIO_RAW;
    v->last_recv_ms = loop_now_ms(c->worker->loop);
    conn_become_client(v, PROTO_SOCKETIO);
    conn_set_timeout(v, cfg->socketio.ping_interval_ms);
    buf_t b = {0};
    char cors[512];
    cors_headers(c, req, cors, sizeof cors);
    if (eio_encode_open(&b, s->sid, true, cfg->socketio.ping_interval_ms, cfg->socketio.ping_timeout_ms,
                        cfg->limits.max_body_bytes) == 0)
        http_respond(c, 200, "text/plain; charset=UTF-8", b.data, b.len, cors);
    else
        http_respond_error(c, 503, "unavailable", "out of memory");
    buf_free(&b);
}

typedef struct post_ctx {
    session_t *s;
} post_ctx_t;

static int post_packet(void *arg, const eio_packet_t *p)
{
    post_ctx_t *x = arg;
    return on_packet(x->s, p) ? 0 : 1;
}

static void polling_request(conn_t *c, const http_request_t *req, session_t *s)
{
    char cors[512];
    cors_headers(c, req, cors, sizeof cors);
    if (!s->sub->is_virtual) {   /* upgraded already: polling is over */
        eio_error(c, 3, "Bad request");
        return;
    }
    if (strcmp(req->method, "POST") == 0) {
        post_ctx_t x = {s};
        int rc = eio_parse_payload(req->body ? req->body : "", req->body_len, SIO_MAX_PACKETS_PER_POST, post_packet, &x);
        if (rc < 0) eio_error(c, 3, "Bad request");
        else http_respond(c, 200, "text/html", "ok", 2, cors);
        return;
    }
    if (s->probe && s->probed) {   /* upgrading: the client's last GET ends with a noop */
        http_respond(c, 200, "text/plain; charset=UTF-8", "6", 1, cors);
        return;
    }
    if (s->poll) {   /* two GETs at once: Engine.IO closes the session */
        eio_error(c, 3, "Bad request");
        conn_close(s->sub);
        return;
    }
    s->poll = c;
    conn_hold(c);
    s->poll_slot = http_conn_defer(c);   /* NULL (out of memory): answered straight */
    if (s->sub->out.count > 0) poll_on_flush(s->sub);
}

void socketio_route(conn_t *c, http_request_t *req)
{
    server_t *srv = c->worker->server;
    if (strcmp(req->method, "OPTIONS") == 0) {   /* CORS preflight of a polling POST */
        char cors[768];
        cors_headers(c, req, cors, sizeof cors - 128);
        strcat(cors, "Access-Control-Allow-Methods: GET, POST\r\nAccess-Control-Allow-Headers: content-type\r\n");
        http_respond(c, 204, NULL, NULL, 0, cors);
        return;
    }
    char eio[8], transport[16], sid[64];
    if (http_query_param(req->query, "EIO", 0, eio, sizeof eio) != 1 || eio[0] != '4') {
        eio_error(c, 5, "Unsupported protocol version");
        return;
    }
    long tl = http_query_param(req->query, "transport", 0, transport, sizeof transport);
    bool websocket = tl > 0 && strcmp(transport, "websocket") == 0;
    if (!websocket && !(tl > 0 && strcmp(transport, "polling") == 0)) {
        eio_error(c, 0, "Transport unknown");
        return;
    }
    long sl = http_query_param(req->query, "sid", 0, sid, sizeof sid);
    if (sl < 0) {
        if (websocket) {
            if (server_websocket_ok(c, req)) ws_transport_upgrade(c, req, &sio_ws_app, PROTO_SOCKETIO);
        } else if (strcmp(req->method, "GET") != 0) {
            eio_error(c, 1, "Session ID unknown");
        } else {
            handshake_polling(c, req);
        }
        return;
    }
    void *found;
    int owner = registry_owner(srv->sio, sid, (size_t)sl, &found);
    if (owner < 0) {
        eio_error(c, 1, "Session ID unknown");
        return;
    }
    if ((unsigned)owner != c->worker->index) {   /* the session lives elsewhere: go there */
        worker_migrate(c->worker, c, &srv->workers[owner]);
        return;
    }
    session_t *s = found;   /* ours: only this thread frees it */
    if (!websocket) {
        polling_request(c, req, s);
        return;
    }
    if (!s->sub->is_virtual || s->probe) {
        eio_error(c, 3, "Bad request");
        return;
    }
    if (!server_websocket_ok(c, req)) return;
    ws_transport_upgrade(c, req, &sio_ws_app, PROTO_SOCKETIO);
    if (c->state != CONN_OPEN) return;
    conn_forget_client(c);   /* the session counts once: it is the polling one until the upgrade */
    s->probe = c;
    c->proto_data = s;
}
