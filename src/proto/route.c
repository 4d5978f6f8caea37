#include "proto/route.h"
#include "auth/authn.h"
#include "auth/policy.h"
#include "core/err.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "proto/native.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>

/* Matches one route path pattern segment by segment. */
static bool match_path(const char *pattern, const char *path, route_params_t *params)
{
    params->count = 0;
    const char *p = pattern, *s = path;
    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *end = strchr(s, '/');
            if (!close) return false;
            if (!end) end = s + strlen(s);
            size_t nlen = (size_t)(close - p - 1), vlen = (size_t)(end - s);
            if (vlen == 0 || params->count == ROUTE_MAX_PARAMS || nlen >= sizeof params->name[0]) return false;
            long dl = http_percent_decode(s, vlen, params->value[params->count], sizeof params->value[0]);
            if (dl <= 0 || (size_t)dl >= sizeof params->value[0]) return false;
            memcpy(params->name[params->count], p + 1, nlen);
            params->name[params->count][nlen] = '\0';
            params->count++;
            p = close + 1;
            s = end;
            continue;
        }
        if (*p != *s) return false;
        p++, s++;
    }
    return *s == '\0';
}

const route_t *route_match(const config_t *cfg, const char *path, route_params_t *params)
{
    for (size_t i = 0; i < cfg->route_count; i++)
        if (match_path(cfg->routes[i].path, path, params)) return &cfg->routes[i];
    return NULL;
}

typedef struct lookup_ctx {
    const route_params_t *params;
    const conn_t *conn;
} lookup_ctx_t;

static const char *lookup(void *arg, const char *key, size_t len)
{
    lookup_ctx_t *l = arg;
    for (size_t i = 0; i < l->params->count; i++)
        if (strlen(l->params->name[i]) == len && memcmp(l->params->name[i], key, len) == 0)
            return l->params->value[i];
    if (len == 3 && memcmp(key, "sub", 3) == 0) return l->conn->user;
    return NULL;
}

static bool scoped(const conn_t *c, const char *ch, size_t len)
{
    principal_t p = authn_principal(c);
    for (size_t i = 0; i < p.token_scope_count; i++)
        if (policy_pattern_match(p.token_scopes[i], c->user, ch, len)) return true;
    return false;
}

/* Refusal on a route: data routes speak in close codes only. */
static void refuse(conn_t *c, const char *reason)
{
    if (c->ws_app == &route_envelope_app) {
        char *msg = NULL;
        json_t *m = json_pack("{ss s{ssss}}", "type", "error", "data", "code", "unauthorized", "message", reason);
        if (m) msg = json_dumps(m, JSON_COMPACT);
        if (msg) ws_transport_send_text(c, msg, strlen(msg));
        free(msg);
        json_decref(m);
    }
    ws_transport_close(c, WS_CLOSE_UNAUTHORIZED, "unauthorized");
}

static void on_open(conn_t *c, const struct http_request *req)
{
    const config_t *cfg = c->worker->cfg;
    route_params_t params;
    const route_t *r = route_match(cfg, req->path, &params);
    if (!r) {   /* matched by the router a moment ago: cannot happen */
        ws_transport_close(c, WS_CLOSE_INTERNAL, "no route");
        return;
    }
    const char *reason = NULL;
    int rc = r->auth == ROUTE_AUTH_ACCESS_TOKEN ? authn_access_token(c, req, &reason)
             : r->auth == ROUTE_AUTH_JWT        ? authn_jwt(c, req, &reason)
                                                : 0;
    if (rc < 0) {
        refuse(c, reason);
        return;
    }
    c->format = r->format == ROUTE_FORMAT_DATA ? EVENT_FMT_DATA : EVENT_FMT_NATIVE;
    lookup_ctx_t l = {&params, c};
    json_t *joined = json_array();
    principal_t p = authn_principal(c);
    for (size_t i = 0; i < r->channel_count && c->state == CONN_OPEN; i++) {
        char *ch = policy_expand_template(r->channels[i], lookup, &l);
        size_t len = ch ? strlen(ch) : 0;
        const char *why = NULL;
        if (!ch || !channel_name_valid(ch, len)) why = "the route gives no valid channel";
        else if (r->auth == ROUTE_AUTH_ACCESS_TOKEN && !scoped(c, ch, len)) why = "the token is not scoped to this channel";
        else if (r->auth != ROUTE_AUTH_ACCESS_TOKEN &&
                 policy_check(cfg, &p, POLICY_SUBSCRIBE, ch, len) != VERDICT_ALLOW)
            why = "not allowed to subscribe to this channel";
        seq_snapshot_t snap;
        int sub_rc = why ? 0 : hub_subscribe(c->worker->hub, c, ch, len, NULL, &snap);
        if (sub_rc < 0) why = sub_rc == HERALD_EUNAVAIL ? "redis is unavailable" : "out of memory";
        if (why) {
            free(ch);
            json_decref(joined);
            refuse(c, why);
            return;
        }
        json_array_append_new(joined, json_string(ch));
        free(ch);
    }
    if (c->ws_app == &route_envelope_app) native_send_connected(c, joined);
    else json_decref(joined);
}

static void ignore_text(conn_t *c, char *data, size_t len) { (void)c, (void)data, (void)len; }

const ws_app_t route_data_app = {.name = "route", .on_open = on_open, .on_text = ignore_text};
const ws_app_t route_envelope_app = {.name = "route", .on_open = on_open, .on_text = native_on_text};
