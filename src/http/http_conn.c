#include "http/http_conn.h"
#include "core/err.h"
#include "http/http_request.h"
#include "http/http_response.h"
#include "server.h"
#include "worker.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void on_data(conn_t *c, uint8_t *data, size_t len);
static void on_eof(conn_t *c);
static void on_timer(conn_t *c);
static void on_close(conn_t *c);
static void on_adopted(conn_t *c);
static bool handle_request(conn_t *c, uint8_t **data, size_t *len);
static bool hold_rest(conn_t *c, uint8_t *data, size_t len);

const conn_handler_t http_conn_handler = {
    .name = "http", .on_data = on_data, .on_eof = on_eof, .on_timer = on_timer, .on_close = on_close,
    .on_adopted = on_adopted,
};

void http_conn_start(conn_t *c)
{
    c->handler = &http_conn_handler;
    conn_set_timeout(c, HTTP_REQUEST_TIMEOUT_MS);
}

/* curl and others wait for "100 Continue" before sending a body they announced
 * with Expect: answer once the head is in and the size was found acceptable. */
static void maybe_continue(conn_t *c)
{
    if (!c->req->head_complete || c->http_continued) return;
    const char *expect = http_request_header(c->req, "Expect");
    if (!expect || strcasecmp(expect, "100-continue") != 0) return;
    static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->http_continued = true;
    conn_send_bytes(c, resp, sizeof resp - 1);
}

static void drop_request(conn_t *c)
{
    c->http_continued = false;
    if (!c->req) return;
    http_request_deinit(c->req);
    free(c->req);
    c->req = NULL;
}

static const char *error_code_for(int status)
{
    switch (status) {
    case 413: return "too_large";
    case 414: return "too_large";
    case 431: return "too_large";
    default: return "bad_request";
    }
}

static void on_data(conn_t *c, uint8_t *data, size_t len)
{
    const config_t *cfg = c->worker->cfg;
    while (len > 0 && c->state == CONN_OPEN && c->handler == &http_conn_handler) {
        if (!c->req) {
            c->req = malloc(sizeof *c->req);
            if (!c->req) {
                conn_close(c);
                return;
            }
            http_request_init(c->req, cfg->limits.max_body_bytes);
            conn_set_timeout(c, HTTP_REQUEST_TIMEOUT_MS);
        }
        long n = http_request_feed(c->req, (const char *)data, len);
        if (n < 0) {
            int status = c->req->error_status ? c->req->error_status : 400;
            http_set_close(c);
            http_respond_error(c, status, error_code_for(status),
                               status == 413   ? "request body over limits.max_body_bytes"
                               : status == 400 ? "malformed HTTP request"
                                               : "request head too large");
            drop_request(c);
            if (c->slots) hold_rest(c, NULL, 0);   /* closed once the answers ahead are out */
            else conn_close_after_flush(c);
            return;
        }
        data += n;
        len -= (size_t)n;
        if (!c->req->complete) {
            if (n == 0) {   /* no progress and no error: never spin */
                conn_close(c);
                return;
            }
            maybe_continue(c);
            continue;
        }
        atomic_fetch_add_explicit(&c->worker->server->metrics.http_requests, 1, memory_order_relaxed);
        if (!c->req->keep_alive) http_set_close(c);
        if (!handle_request(c, &data, &len)) return;
    }
}

/* With answers pending, a request may be read and routed behind them (its answer
 * waits its turn) only when it is answered with one HTTP response: not one that
 * switches protocol, streams, or may move the connection to another worker. */
static bool may_follow_pending(const conn_t *c, const http_request_t *req)
{
    /* publishes only: a read after them (history, stats) must see their effect,
     * and upgrades, streams and sessions on other workers cannot wait in line */
    (void)c;
    return strcmp(req->method, "POST") == 0 && !req->upgrade &&
           (strcmp(req->path, "/api/publish") == 0 || strcmp(req->path, "/api/broadcast") == 0 ||
            strcmp(req->path, "/broadcast") == 0);
}

/* Keeps the bytes after the current request and stops reading. */
static bool hold_rest(conn_t *c, uint8_t *data, size_t len)
{
    if (len > 0) {
        c->stash = malloc(len);
        if (!c->stash) {
            conn_close(c);
            return false;
        }
        memcpy(c->stash, data, len);
        c->stash_len = len;
    }
    conn_pause_reading(c, true);
    return false;
}

/* Routes the complete request in c->req, then decides what happens to the bytes
 * that followed it. Returns true when the next request may be read at once. */
static bool handle_request(conn_t *c, uint8_t **data, size_t *len)
{
    if (c->slots && !may_follow_pending(c, c->req)) {   /* it waits until the answers ahead are out */
        c->http_waiting = true;
        return hold_rest(c, *data, *len);
    }
    server_route(c, c->req);
    if (c->state == CONN_CLOSED) return false;
    /* moving to the worker that owns its session: the request goes along */
    if (c->migrate_to) return hold_rest(c, *data, *len);
    drop_request(c);
    if (c->handler != &http_conn_handler) {
        /* upgraded: whatever followed the request belongs to the new protocol */
        if (*len > 0 && c->state == CONN_OPEN) c->handler->on_data(c, *data, *len);
        return false;
    }
    if (c->http_close) {   /* the last request: close once every answer is out */
        if (!c->slots) conn_close_after_flush(c);
        else hold_rest(c, NULL, 0);
        return false;
    }
    if (c->slot_count >= HTTP_MAX_PENDING) return hold_rest(c, *data, *len);   /* enough in flight */
    conn_set_timeout(c, HTTP_IDLE_TIMEOUT_MS);
    return true;
}

/* Goes on with a held request and held bytes (after a move between workers, or
 * once the answers ahead of them are out). */
static void continue_held(conn_t *c)
{
    conn_pause_reading(c, false);
    conn_set_timeout(c, HTTP_REQUEST_TIMEOUT_MS);
    c->http_waiting = false;
    uint8_t *stash = c->stash;
    size_t len = c->stash_len;
    c->stash = NULL;
    c->stash_len = 0;
    uint8_t *data = stash;
    /* handle_request copies what it does not consume, so the stash is ours to free */
    if (c->req && c->req->complete) {
        if (handle_request(c, &data, &len) && len > 0) on_data(c, data, len);
    } else if (len > 0) {
        on_data(c, data, len);
    }
    free(stash);
}

static void on_adopted(conn_t *c) { continue_held(c); }

http_slot_t *http_conn_defer(conn_t *c)
{
    http_slot_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (c->slots_tail) c->slots_tail->next = s;
    else c->slots = s;
    c->slots_tail = s;
    c->slot_count++;
    return s;
}

void http_conn_answering(conn_t *c, http_slot_t *slot) { c->http_capture = slot; }

/* Answers go out in request order: every finished answer at the front leaves. */
static void flush_ready(conn_t *c)
{
    while (c->slots && c->slots->done) {
        http_slot_t *s = c->slots;
        c->slots = s->next;
        if (!c->slots) c->slots_tail = NULL;
        c->slot_count--;
        if (s->response && c->state != CONN_CLOSED) conn_send(c, s->response, false);
        else frame_unref(s->response);
        free(s);
    }
    if (c->state != CONN_OPEN || c->migrate_to) return;
    if (c->http_close) {
        if (!c->slots) conn_close_after_flush(c);
        return;
    }
    if (!c->read_paused) return;
    /* held: a request that may not follow pending answers waits for none left;
     * a full pipeline for room again */
    if (c->http_waiting ? !c->slots : c->slot_count < HTTP_MAX_PENDING) continue_held(c);
}

void http_conn_answered(conn_t *c, http_slot_t *slot)
{
    c->http_capture = NULL;
    slot->done = true;
    flush_ready(c);
}

void http_conn_send_response(conn_t *c, frame_t *f)
{
    if (c->http_capture) {
        frame_unref(c->http_capture->response);
        c->http_capture->response = f;
        return;
    }
    if (c->slots) {   /* answers ahead are still pending: this one waits behind them */
        http_slot_t *s = http_conn_defer(c);
        if (!s) {
            frame_unref(f);
            conn_close(c);
            return;
        }
        s->response = f;
        s->done = true;
        return;
    }
    conn_send(c, f, false);
}

static void on_eof(conn_t *c)
{
    /* A client that half-closes after its last request still gets its responses. */
    if (c->slots) http_set_close(c);
    else if (c->out.count > 0 || c->dirty) conn_close_after_flush(c);
    else conn_close(c);
}

static void on_timer(conn_t *c)
{
    if (c->req && !c->req->complete && c->req->head_bytes > 0) {
        http_set_close(c);
        http_respond_error(c, 408, "timeout", "request not completed in time");
        conn_close_after_flush(c);
        return;
    }
    conn_close(c);
}

/* Pending answers stay: their handlers hold the connection and answer into them;
 * flush_ready drops answers to a closed connection, conn_free what is left. */
static void on_close(conn_t *c) { drop_request(c); }
