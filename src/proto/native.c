#include "proto/native.h"
#include "api/pubwait.h"
#include "auth/authn.h"
#include "auth/policy.h"
#include "core/err.h"
#include "core/util.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/sequencer.h"
#include "server.h"
#include "worker.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const control_names[] = {"connected", "subscribed", "unsubscribed", "published",
                                            "history", "pong", "error"};

bool native_is_control_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof control_names / sizeof *control_names; i++)
        if (strlen(control_names[i]) == len && memcmp(control_names[i], name, len) == 0) return true;
    return false;
}

static principal_t principal_of(const conn_t *c) { return authn_principal(c); }

/* Sends a JSON object (reference taken) as one text message. */
static void send_json(conn_t *c, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!s) {
        conn_close(c);
        return;
    }
    ws_transport_send_text(c, s, strlen(s));
    free(s);
}

static json_t *reply(const char *type, json_t *id, json_t *data)
{
    json_t *m = json_object();
    json_object_set_new(m, "type", json_string(type));
    if (id) json_object_set(m, "id", id);
    if (data) json_object_set_new(m, "data", data);
    return m;
}

static void send_error(conn_t *c, json_t *id, const char *code, const char *message, const char *channel)
{
    json_t *d = json_pack("{ssss}", "code", code, "message", message);
    if (channel) json_object_set_new(d, "channel", json_string(channel));
    send_json(c, reply("error", id, d));
}

static json_t *timestamp_now(void)
{
    char ts[ISO_TIME_LEN];
    time_iso8601(time_wall_ms(), ts);
    return json_string(ts);
}

/* ---- connect ---- */

static const char *lookup_sub(void *ctx, const char *key, size_t len)
{
    const conn_t *c = ctx;
    return len == 3 && memcmp(key, "sub", 3) == 0 ? c->user : NULL;
}

static void on_open(conn_t *c, const struct http_request *req)
{
    /* browsers cannot read an HTTP 401: the upgrade completes, then error + 4001 */
    const char *reason = NULL;
    if (authn_any(c, req, &reason) < 0) {
        send_error(c, NULL, "unauthorized", reason, NULL);
        ws_transport_close(c, WS_CLOSE_UNAUTHORIZED, "unauthorized");
        return;
    }
    native_send_connected(c, native_auto_join(c));
}

json_t *native_auto_join(conn_t *c)
{
    const config_t *cfg = c->worker->cfg;
    principal_t p = principal_of(c);
    json_t *joined = json_array();
    for (size_t i = 0; i < cfg->auto_join_count; i++) {
        char *ch = policy_expand_template(cfg->auto_join[i], lookup_sub, c);
        if (!ch) continue;   /* the template needs a {sub} this connection lacks */
        size_t len = strlen(ch);
        seq_snapshot_t snap;
        if (channel_name_valid(ch, len) && c->sub_count < cfg->limits.max_channels_per_connection &&
            policy_check(cfg, &p, POLICY_SUBSCRIBE, ch, len) == VERDICT_ALLOW &&
            hub_subscribe(c->worker->hub, c, ch, len, NULL, &snap) == 0)
            json_array_append_new(joined, json_string(ch));
        free(ch);
    }
    return joined;
}

void native_send_connected(conn_t *c, json_t *joined)
{
    char id[37];
    conn_id_str(c, id);
    json_t *d = json_object();
    json_object_set_new(d, "connection_id", json_string(id));
    json_object_set_new(d, "user", c->user ? json_string(c->user) : json_null());
    json_object_set_new(d, "channels", joined);
    json_object_set_new(d, "epoch", json_string(sequencer_epoch(c->worker->server->seq)));
    json_t *m = reply("connected", NULL, d);
    json_object_set_new(m, "timestamp", timestamp_now());
    send_json(c, m);
}

/* ---- subscribe / unsubscribe ---- */

/* Collects the channel list of a subscribe/unsubscribe ("channels": [...] or
 * "channel": "..."). Returns a new array of strings, or NULL after replying with
 * the error. */
static json_t *channel_list(conn_t *c, json_t *msg, json_t *id)
{
    json_t *one = json_object_get(msg, "channel");
    json_t *many = json_object_get(msg, "channels");
    json_t *list;
    if (json_is_string(one) && !many) {
        list = json_pack("[O]", one);
    } else if (json_is_array(many) && json_array_size(many) > 0 && !one) {
        list = json_incref(many);
    } else {
        send_error(c, id, "bad_request", "give \"channels\" (a non-empty array) or \"channel\" (a string)", NULL);
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v)) {
            send_error(c, id, "bad_request", "channel names are strings", NULL);
            json_decref(list);
            return NULL;
        }
        const char *name = json_string_value(v);
        size_t len = json_string_length(v);
        if (!channel_name_valid(name, len)) {
            send_error(c, id, "bad_request",
                       name[0] == '$' ? "reserved channel: clients cannot use $ channels"
                                      : "invalid channel name (1-255 bytes, no spaces or control characters)",
                       name);
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* The recovery position a client asked for: {"jobs":41} with an optional top-level
 * epoch, or {"jobs":{"offset":41,"epoch":"..."}}. */
static bool since_for(json_t *since, json_t *top_epoch, const char *ch, uint64_t *offset, const char **epoch)
{
    json_t *v = json_object_get(since, ch);
    if (!v) return false;
    *epoch = json_string_value(top_epoch);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *offset = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_object(v)) {
        json_t *o = json_object_get(v, "offset");
        if (!json_is_integer(o) || json_integer_value(o) < 0) return false;
        *offset = (uint64_t)json_integer_value(o);
        if (json_is_string(json_object_get(v, "epoch"))) *epoch = json_string_value(json_object_get(v, "epoch"));
        return true;
    }
    return false;
}

static void handle_subscribe(conn_t *c, json_t *msg, json_t *id)
{
    const config_t *cfg = c->worker->cfg;
    hub_t *hub = c->worker->hub;
    json_t *list = channel_list(c, msg, id);
    if (!list) return;
    json_t *since = json_object_get(msg, "since");
    if (since && !json_is_object(since)) {
        send_error(c, id, "bad_request", "\"since\" is an object of channel offsets", NULL);
        json_decref(list);
        return;
    }
    /* All or nothing: check the limit and every policy before joining any. */
    size_t i, fresh = 0;
    json_t *v;
    principal_t p = principal_of(c);
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        size_t len = json_string_length(v);
        bool repeated = false;   /* a name given twice is one channel */
        for (size_t k = 0; k < i && !repeated; k++)
            repeated = json_equal(json_array_get(list, k), v);
        if (!repeated && !hub_is_subscribed(hub, c, name, len)) fresh++;
        policy_verdict_t verdict = policy_check(cfg, &p, POLICY_SUBSCRIBE, name, len);
        if (verdict != VERDICT_ALLOW) {
            send_error(c, id, verdict == VERDICT_UNAUTHORIZED ? "unauthorized" : "forbidden",
                       verdict == VERDICT_UNAUTHORIZED ? "this channel needs an authenticated connection"
                                                       : "not allowed to subscribe to this channel",
                       name);
            json_decref(list);
            return;
        }
    }
    if (c->sub_count + fresh > cfg->limits.max_channels_per_connection) {
        send_error(c, id, "too_many_channels", "over limits.max_channels_per_connection", NULL);
        json_decref(list);
        return;
    }
    const char *epoch = sequencer_epoch(c->worker->server->seq);
    json_t *names = json_array(), *offsets = json_object(), *epochs = json_object(), *recovered = NULL;
    seq_snapshot_t *snaps = calloc(json_array_size(list), sizeof *snaps);
    if (!snaps) {
        send_error(c, id, "unavailable", "out of memory", NULL);
        json_decref(names), json_decref(offsets), json_decref(epochs), json_decref(list);
        return;
    }
    bool *joined = calloc(json_array_size(list), sizeof *joined);
    json_array_foreach(list, i, v) {
        const char *name = json_string_value(v);
        size_t len = json_string_length(v);
        seq_since_t want = {0};
        bool asked = since && since_for(since, json_object_get(msg, "epoch"), name, &want.offset, &want.epoch);
        int rc = joined ? hub_subscribe(hub, c, name, len, asked ? &want : NULL, &snaps[i]) : HERALD_ENOMEM;
        if (rc < 0 && rc != HERALD_EEXIST) {
            /* all or nothing: leave what this request joined; the error is the one reply */
            send_error(c, id, "unavailable", rc == HERALD_EUNAVAIL ? "redis is unavailable" : "out of memory", name);
            for (size_t k = 0; k < i; k++) {
                if (joined[k])
                    hub_unsubscribe(hub, c, json_string_value(json_array_get(list, k)),
                                    json_string_length(json_array_get(list, k)));
                seq_snapshot_release(&snaps[k]);
            }
            free(joined), free(snaps);
            json_decref(names), json_decref(offsets), json_decref(epochs), json_decref(recovered), json_decref(list);
            return;
        }
        joined[i] = rc == 0;
        json_array_append(names, v);
        json_object_set_new(offsets, name, json_integer((json_int_t)snaps[i].latest));
        json_object_set_new(epochs, name, json_string(epoch));
        if (asked && rc == 0) {
            if (!recovered) recovered = json_object();
            json_object_set_new(recovered, name, json_boolean(snaps[i].recovered));
        }
    }
    json_t *d = json_pack("{so so so}", "channels", names, "offsets", offsets, "epochs", epochs);
    if (recovered) json_object_set_new(d, "recovered", recovered);
    send_json(c, reply("subscribed", id, d));
    /* then what each channel missed, in order; fan-out resumes above snap.latest */
    for (size_t k = 0; k < json_array_size(list); k++) {
        for (size_t e = 0; e < snaps[k].event_count && c->state == CONN_OPEN; e++) {
            frame_t *f = event_frame(snaps[k].events[e], (event_format_t)c->format);
            if (f) conn_send(c, frame_ref(f), true);
        }
        seq_snapshot_release(&snaps[k]);
    }
    free(snaps);
    free(joined);
    json_decref(list);
}

static void handle_unsubscribe(conn_t *c, json_t *msg, json_t *id)
{
    json_t *list = channel_list(c, msg, id);
    if (!list) return;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        hub_unsubscribe(c->worker->hub, c, json_string_value(v), json_string_length(v));
    send_json(c, reply("unsubscribed", id, json_pack("{sO}", "channels", list)));
    json_decref(list);
}

/* ---- publish / history / ping ---- */

/* The `published` reply, once the event is acknowledged (after its commit with the
 * durable store; other messages of the connection are handled meanwhile). */
static void finish_publish(pubwait_t *pw)
{
    conn_t *c = pw->conn;
    json_t *ctx = pw->ctx;
    json_t *id = json_object_get(ctx, "id");
    const char *channel = json_string_value(json_object_get(ctx, "channel"));
    if (c->state == CONN_OPEN && !c->ws_close_sent) {
        if (pw->status < 0)
            send_error(c, id, "unavailable", err_str(pw->status), channel);
        else
            send_json(c, reply("published", id,
                               json_pack("{sssIss}", "channel", channel, "offset", (json_int_t)pw->results[0].offset,
                                         "id", pw->results[0].id)));
    }
    json_decref(ctx);
    pubwait_free(pw);
}

static void handle_publish(conn_t *c, json_t *msg, json_t *id)
{
    const config_t *cfg = c->worker->cfg;
    json_t *ch = json_object_get(msg, "channel"), *ev = json_object_get(msg, "event");
    if (!json_is_string(ch) || !json_is_string(ev) || json_string_length(ev) == 0 ||
        json_string_length(ev) > 255) {
        send_error(c, id, "bad_request", "publish needs \"channel\" and \"event\" strings", NULL);
        return;
    }
    const char *name = json_string_value(ch);
    size_t len = json_string_length(ch);
    if (!channel_name_valid(name, len)) {
        send_error(c, id, "bad_request", "invalid channel name", name);
        return;
    }
    if (native_is_control_name(json_string_value(ev), json_string_length(ev))) {
        send_error(c, id, "bad_request", "event names may not be control message types", name);
        return;
    }
    principal_t p = principal_of(c);
    policy_verdict_t verdict = policy_check(cfg, &p, POLICY_PUBLISH, name, len);
    if (verdict != VERDICT_ALLOW) {
        send_error(c, id, verdict == VERDICT_UNAUTHORIZED ? "unauthorized" : "forbidden",
                   "not allowed to publish on this channel", name);
        return;
    }
    json_t *data = json_object_get(msg, "data");
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *ctx = json_pack("{ss}", "channel", name);
    if (ctx && id) json_object_set(ctx, "id", id);   /* absent stays absent; null is echoed */
    pubwait_t *pw = text && ctx ? pubwait_create(c, 1, false, finish_publish, ctx) : NULL;
    if (!pw) {
        send_error(c, id, "unavailable", "out of memory", name);
        json_decref(ctx);
    } else {
        pubwait_publish(pw, 0, name, len, json_string_value(ev), json_string_length(ev), text, strlen(text), NULL, 0);
        pubwait_start(pw);
    }
    free(text);
}

static void handle_history(conn_t *c, json_t *msg, json_t *id)
{
    json_t *ch = json_object_get(msg, "channel");
    json_t *since = json_object_get(msg, "since"), *limit = json_object_get(msg, "limit");
    if (!json_is_string(ch) || !channel_name_valid(json_string_value(ch), json_string_length(ch)) ||
        (since && (!json_is_integer(since) || json_integer_value(since) < 0)) ||
        (limit && (!json_is_integer(limit) || json_integer_value(limit) < 0))) {
        send_error(c, id, "bad_request", "history needs a valid \"channel\"; since and limit are non-negative integers", NULL);
        return;
    }
    principal_t p = principal_of(c);
    const char *name = json_string_value(ch);
    size_t len = json_string_length(ch);
    policy_verdict_t verdict = policy_check(c->worker->cfg, &p, POLICY_SUBSCRIBE, name, len);
    if (verdict != VERDICT_ALLOW) {
        send_error(c, id, verdict == VERDICT_UNAUTHORIZED ? "unauthorized" : "forbidden",
                   "not allowed to read this channel", name);
        return;
    }
    size_t lim = limit ? (size_t)json_integer_value(limit) : HISTORY_DEFAULT_LIMIT;
    if (lim > HISTORY_MAX_LIMIT) lim = HISTORY_MAX_LIMIT;
    server_t *s = c->worker->server;
    seq_snapshot_t snap;
    int hrc = sequencer_history(s->seq, name, len, since != NULL, since ? (uint64_t)json_integer_value(since) : 0,
                                lim, &snap);
    if (hrc < 0) {
        send_error(c, id, "unavailable", hrc == HERALD_EUNAVAIL ? "redis is unavailable" : "out of memory", name);
        return;
    }
    /* Built as text: the stored envelopes are spliced in as they are, not re-parsed. */
    buf_t b = {0};
    int rc = buf_append_str(&b, "{\"type\":\"history\"");
    if (id) {
        char *idtext = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
        rc |= buf_printf(&b, ",\"id\":%s", idtext ? idtext : "null");
        free(idtext);
    }
    rc |= buf_append_str(&b, ",\"data\":{\"channel\":");
    rc |= buf_append_json_str(&b, name, len);
    rc |= buf_append_str(&b, ",\"events\":");
    rc |= event_append_envelopes(&b, snap.events, snap.event_count);
    rc |= buf_printf(&b, ",\"offset\":%llu,\"epoch\":\"%s\"}}", (unsigned long long)snap.latest,
                     sequencer_epoch(s->seq));
    seq_snapshot_release(&snap);
    if (rc) send_error(c, id, "unavailable", "out of memory", name);
    else ws_transport_send_text(c, b.data, b.len);
    buf_free(&b);
}

void native_on_text(conn_t *c, char *data, size_t len)
{
    ratelimit_verdict_t rate = ratelimit_take(&c->rate, c->worker->cfg->limits.messages_per_second,
                                              loop_now_ms(c->worker->loop));
    if (rate == RATE_CLOSE) {
        ws_transport_close(c, WS_CLOSE_POLICY, "message rate over limits.messages_per_second");
        return;
    }
    if (rate == RATE_REFUSE) {
        send_error(c, NULL, "rate_limited", "over limits.messages_per_second", NULL);
        return;
    }
    json_error_t err;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(msg)) {
        send_error(c, NULL, "bad_request", msg ? "a message is a JSON object" : "invalid JSON", NULL);
        json_decref(msg);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type) send_error(c, id, "bad_request", "missing \"type\"", NULL);
    else if (strcmp(type, "subscribe") == 0) handle_subscribe(c, msg, id);
    else if (strcmp(type, "unsubscribe") == 0) handle_unsubscribe(c, msg, id);
    else if (strcmp(type, "ping") == 0) {
        json_t *m = reply("pong", id, NULL);
        json_object_set_new(m, "timestamp", timestamp_now());
        send_json(c, m);
    } else if (strcmp(type, "publish") == 0) handle_publish(c, msg, id);
    else if (strcmp(type, "history") == 0) handle_history(c, msg, id);
    else send_error(c, id, "bad_request", "unknown message type", NULL);
    json_decref(msg);
}

const ws_app_t native_app = {.name = "native", .on_open = on_open, .on_text = native_on_text};
