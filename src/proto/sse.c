#include "proto/sse.h"
#include "auth/authn.h"
#include "auth/policy.h"
#include "core/err.h"
#include "core/util.h"
#include "http/http_response.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "metrics.h"
#include "server.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_data(conn_t *c, uint8_t *data, size_t len);
static void on_timer(conn_t *c);
static bool on_event(conn_t *c, event_t *ev);

static const conn_handler_t sse_handler = {
    .name = "sse", .on_data = on_data, .on_eof = conn_close, .on_timer = on_timer, .on_event = on_event,
};

/* ---- positions ---- */

static int append_name(buf_t *b, const char *name, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_reserve(b, len * 3);
    if (rc) return rc;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                     ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == ':';
        if (plain) {
            b->data[b->len++] = (char)ch;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = hex[ch >> 4];
            b->data[b->len++] = hex[ch & 15];
        }
    }
    b->data[b->len] = '\0';
    return 0;
}

/* "id: a=41&b=7\n": each subscription's floor is the last offset it was given, or,
 * while recovery replays older events, positions[k] for the k-th subscription. */
static frame_t *id_frame(const conn_t *c, const uint64_t *positions, bool alone)
{
    buf_t b = {0};
    int rc = buf_append_str(&b, "id: ");
    size_t k = 0;
    for (const sub_t *s = c->subs; s; s = s->conn_next, k++) {
        uint64_t off = positions ? positions[k] : s->after_offset;
        if (k) rc |= buf_append_str(&b, "&");
        rc |= append_name(&b, hub_channel_name(s), hub_channel_name_len(s));
        rc |= buf_printf(&b, "=%llu", (unsigned long long)off);
    }
    /* alone: a block of its own (a blank line ends it), which EventSource records
     * as its last event id without dispatching anything */
    rc |= buf_append_str(&b, alone ? "\n\n" : "\n");
    frame_t *f = rc ? NULL : frame_from(b.data, b.len);
    buf_free(&b);
    return f;
}

bool sse_position_lookup(const char *position, const char *channel, size_t len, uint64_t *offset)
{
    const char *p = position;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        const char *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq) {
            char name[768];
            long n = http_percent_decode(p, (size_t)(eq - p), name, sizeof name);
            if (n >= 0 && (size_t)n == len && (size_t)n < sizeof name && memcmp(name, channel, len) == 0) {
                char digits[24];
                size_t dl = (size_t)(end - eq - 1);
                if (dl == 0 || dl >= sizeof digits) return false;
                memcpy(digits, eq + 1, dl);
                digits[dl] = '\0';
                char *stop;
                unsigned long long v = strtoull(digits, &stop, 10);
                if (*stop || digits[0] == '-') return false;
                *offset = v;
                return true;
            }
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

/* ---- delivery ---- */

static bool send_event(conn_t *c, event_t *ev, frame_t *id)
{
    frame_t *body = event_frame(ev, EVENT_FMT_SSE);
    if (!body) {
        frame_unref(id);
        return false;
    }
    if (id && conn_send(c, id, false) < 0) return false;
    return conn_send(c, frame_ref(body), true) == 0;
}

static bool on_event(conn_t *c, event_t *ev)
{
    /* $all is not one of the stream's channels: its events carry no position */
    bool all = ev->channel_len == 4 && memcmp(ev->channel, "$all", 4) == 0;
    frame_t *id = all ? NULL : id_frame(c, NULL, false);
    if (!all && !id) return false;
    return send_event(c, ev, id);
}

/* ---- the stream ---- */

static void on_data(conn_t *c, uint8_t *data, size_t len)
{
    (void)c, (void)data, (void)len;   /* nothing is expected from the client: ignored */
}

static void on_timer(conn_t *c)
{
    static const char keepalive[] = ": keep-alive\n\n";
    conn_send_bytes(c, keepalive, sizeof keepalive - 1);
    conn_set_timeout(c, SSE_KEEPALIVE_MS);
}

/* The channels of ?channel=a&channel=b, validated; NULL after answering 400. */
static char **requested_channels(conn_t *c, const http_request_t *req, size_t *count)
{
    const config_t *cfg = c->worker->cfg;
    size_t max = cfg->limits.max_channels_per_connection, n = 0;
    char **list = calloc(max + 1, sizeof *list);
    if (!list) {
        http_respond_error(c, 503, "unavailable", "out of memory");
        return NULL;
    }
    char name[512];
    long len;
    for (size_t i = 0; (len = http_query_param(req->query, "channel", i, name, sizeof name)) >= 0; i++) {
        const char *why = NULL;
        if (n == max) why = "too_many_channels";
        else if ((size_t)len >= sizeof name || !channel_name_valid(name, (size_t)len)) why = "bad_request";
        if (why) {
            http_respond_error(c, 400, why,
                               n == max ? "over limits.max_channels_per_connection"
                                        : "invalid channel name (1-255 bytes, no spaces or control characters, not $)");
            for (size_t k = 0; k < n; k++) free(list[k]);
            free(list);
            return NULL;
        }
        bool dup = false;
        for (size_t k = 0; k < n; k++) dup |= strcmp(list[k], name) == 0;
        if (!dup && !(list[n++] = strdup(name))) {
            http_respond_error(c, 503, "unavailable", "out of memory");
            for (size_t k = 0; k + 1 < n; k++) free(list[k]);
            free(list);
            return NULL;
        }
    }
    if (n == 0) {
        http_respond_error(c, 400, "bad_request", "name at least one ?channel=");
        free(list);
        return NULL;
    }
    *count = n;
    return list;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
}

static bool policies_allow(conn_t *c, char **list, size_t n)
{
    principal_t p = authn_principal(c);
    for (size_t i = 0; i < n; i++) {
        policy_verdict_t v = policy_check(c->worker->cfg, &p, POLICY_SUBSCRIBE, list[i], strlen(list[i]));
        if (v != VERDICT_ALLOW) {
            char msg[300];
            snprintf(msg, sizeof msg, "not allowed to subscribe to %s", list[i]);
            http_respond_error(c, v == VERDICT_UNAUTHORIZED ? 401 : 403,
                               v == VERDICT_UNAUTHORIZED ? "unauthorized" : "forbidden", msg);
            return false;
        }
    }
    return true;
}

static void send_headers(conn_t *c, const http_request_t *req)
{
    buf_t b = {0};
    int rc = buf_append_str(&b, "HTTP/1.1 200 OK\r\nServer: herald\r\nContent-Type: text/event-stream\r\n"
                                "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    const char *origin = http_request_header(req, "Origin");
    if (origin) rc |= buf_printf(&b, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    rc |= buf_append_str(&b, "\r\n");
    if (rc) conn_close(c);
    else conn_send_bytes(c, b.data, b.len);
    buf_free(&b);
}

void sse_start(conn_t *c, const http_request_t *req)
{
    if (strcmp(req->method, "GET") != 0) {
        http_respond_error_with(c, 405, "method_not_allowed", "use GET", "Allow: GET\r\n");
        return;
    }
    const char *reason = NULL;
    if (authn_any(c, req, &reason) < 0) {
        http_respond_error(c, 401, "unauthorized", reason);
        return;
    }
    size_t n = 0;
    char **list = requested_channels(c, req, &n);
    if (!list) return;
    /* server_admit checks the origin (browsers send one with EventSource) */
    if (!policies_allow(c, list, n) || !server_admit(c, req)) {
        free_list(list, n);
        return;
    }
    const char *last_id = http_request_header(req, "Last-Event-ID");
    send_headers(c, req);
    if (c->state != CONN_OPEN) {
        free_list(list, n);
        return;
    }
    c->handler = &sse_handler;
    c->format = EVENT_FMT_SSE;
    c->http_close = true;
    conn_become_client(c, PROTO_SSE);

    seq_snapshot_t *snaps = calloc(n, sizeof *snaps);
    uint64_t *from = calloc(n, sizeof *from);   /* each channel's position before recovery */
    if (!snaps || !from) {
        free(snaps), free(from), free_list(list, n);
        conn_close(c);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        seq_since_t since = {0};
        bool asked = last_id && sse_position_lookup(last_id, list[i], strlen(list[i]), &since.offset);
        if (hub_subscribe(c->worker->hub, c, list[i], strlen(list[i]), asked ? &since : NULL, &snaps[i]) < 0) {
            free(snaps), free(from), free_list(list, n);
            conn_close(c);
            return;
        }
        from[i] = snaps[i].recovered ? since.offset : snaps[i].latest;
    }
    /* subs is newest first: positions[k] follows that order */
    uint64_t *positions = calloc(n, sizeof *positions);
    frame_t *first = NULL;
    if (positions) {
        for (size_t k = 0; k < n; k++) positions[k] = from[n - 1 - k];
        first = id_frame(c, positions, true);   /* where the stream starts */
    }
    if (first) {
        conn_send(c, first, false);
        for (size_t i = 0; i < n && c->state == CONN_OPEN; i++) {
            size_t k = n - 1 - i;
            for (size_t e = 0; e < snaps[i].event_count && c->state == CONN_OPEN; e++) {
                positions[k] = snaps[i].events[e]->offset;
                frame_t *id = id_frame(c, positions, false);
                if (!id || !send_event(c, snaps[i].events[e], id)) break;
            }
        }
    }
    for (size_t i = 0; i < n; i++) seq_snapshot_release(&snaps[i]);
    free(positions), free(snaps), free(from), free_list(list, n);
    if (!first) conn_close(c);
    if (c->state == CONN_OPEN) conn_set_timeout(c, SSE_KEEPALIVE_MS);
}
