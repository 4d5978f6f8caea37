#include "proto/ws_transport.h"
#include "core/err.h"
#include "core/util.h"
#include "http/http_request.h"
#include "http/http_response.h"
#include "hub/hub.h"
#include "server.h"
#include "worker.h"

#include <stdio.h>
#include <string.h>

static void on_data(conn_t *c, uint8_t *data, size_t len);
static void on_eof(conn_t *c);
static void on_timer(conn_t *c);
static void on_close(conn_t *c);

static bool on_event(conn_t *c, struct event *ev) { return c->ws_app->on_event(c, ev); }

const conn_handler_t ws_transport_handler = {
    .name = "websocket", .on_data = on_data, .on_eof = on_eof, .on_timer = on_timer, .on_close = on_close,
};
const conn_handler_t ws_transport_handler_events = {
    .name = "websocket", .on_data = on_data, .on_eof = on_eof, .on_timer = on_timer, .on_close = on_close,
    .on_event = on_event,
};

static void arm_heartbeat(conn_t *c, uint64_t ms)
{
    conn_set_timeout(c, ms ? ms : 1);
}

/* The heartbeat's frame (a new reference) and periods: the application's, or
 * WebSocket pings per the heartbeat settings. */
static frame_t *heartbeat_of(conn_t *c, uint64_t *interval, uint64_t *timeout)
{
    if (c->ws_app && c->ws_app->heartbeat) return c->ws_app->heartbeat(c, interval, timeout);
    const config_t *cfg = c->worker->cfg;
    *interval = (uint64_t)cfg->heartbeat.interval_s * 1000;
    *timeout = (uint64_t)cfg->heartbeat.timeout_s * 1000;
    return frame_ref(c->worker->ping_frame);
}

void ws_transport_upgrade(conn_t *c, const http_request_t *req, const ws_app_t *app, int proto)
{
    const config_t *cfg = c->worker->cfg;
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    char accept[29];
    ws_accept_key(key, strlen(key), accept);
    char resp[160];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (conn_send_bytes(c, resp, (size_t)n) < 0) return;

    c->handler = app->on_event ? &ws_transport_handler_events : &ws_transport_handler;
    c->ws_app = app;
    c->websocket = true;
    c->http_close = false;
    conn_become_client(c, proto);
    ws_reader_init(&c->ws, true, cfg->limits.max_message_bytes);
    c->last_recv_ms = loop_now_ms(c->worker->loop);
    c->ping_sent_ms = 0;
    uint64_t interval, timeout;
    frame_unref(heartbeat_of(c, &interval, &timeout));
    arm_heartbeat(c, interval);
    if (app->on_open) app->on_open(c, req);
}

int ws_transport_send_text(conn_t *c, const char *text, size_t len)
{
    if (c->ws_close_sent) return HERALD_ECLOSED;
    frame_t *f = frame_ws(WS_OP_TEXT, text, len);
    if (!f) {
        conn_close(c);
        return HERALD_ENOMEM;
    }
    return conn_send(c, f, false);
}

void ws_transport_close(conn_t *c, uint16_t code, const char *reason)
{
    if (c->state != CONN_OPEN) return;
    if (!c->websocket) {
        conn_close(c);
        return;
    }
    if (c->ws_close_sent) return;
    c->ws_close_sent = true;
    c->close_code = code;
    /* nothing follows a close frame (RFC 6455 5.5.1): out of every channel now, so
     * a revoked or disconnected client stops receiving (and counting) at once */
    if (c->ws_app && c->ws_app->on_closing) c->ws_app->on_closing(c);
    hub_unsubscribe_all(c->worker->hub, c);
    c->in_all = false;
    frame_t *f = frame_ws_close(code, reason);
    if (!f || conn_send(c, f, false) < 0) {
        conn_close(c);
        return;
    }
    if (c->ws_close_received) conn_close_after_flush(c);
    else conn_set_timeout(c, WS_CLOSE_WAIT_MS);   /* then give up waiting for the peer */
}

/* A protocol violation: send the close code and drop the connection once it is
 * written, without waiting for the peer (RFC 6455 7.1.7, "fail the connection"). */
static void fail(conn_t *c, uint16_t code, const char *reason)
{
    ws_transport_close(c, code, reason);
    if (c->state == CONN_OPEN) conn_close_after_flush(c);
}

static int on_message(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    conn_t *c = ctx;
    if (c->ws_close_sent) return 0;   /* closing: data is ignored (RFC 6455 5.5.1) */
    if (opcode == WS_OP_TEXT) {
        c->ws_app->on_text(c, (char *)data, len);
    } else if (c->ws_app->on_binary) {
        c->ws_app->on_binary(c, data, len);
    } else {
        fail(c, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
    }
    return c->state == CONN_OPEN ? 0 : 1;
}

static int on_control(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    conn_t *c = ctx;
    if (opcode == WS_OP_PING) {
        if (!c->ws_close_sent) {
            frame_t *f = frame_ws(WS_OP_PONG, data, len);
            if (!f || conn_send(c, f, false) < 0) return 1;
        }
    } else if (opcode == WS_OP_CLOSE) {
        c->ws_close_received = true;
        if (c->ws_close_sent) {
            conn_close_after_flush(c);   /* our close was answered: done */
        } else {
            /* echo the peer's code (1000 when it sent none), then close */
            uint16_t code = len >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : WS_CLOSE_NORMAL;
            ws_transport_close(c, code, "");
        }
        return 1;
    }
    /* PONG: its arrival already counted as activity */
    return c->state == CONN_OPEN ? 0 : 1;
}

static const ws_reader_callbacks_t reader_cb = {.on_message = on_message, .on_control = on_control};

static const char *reason_for(int err)
{
    switch (err) {
    case HERALD_EUTF8: return "invalid UTF-8";
    case HERALD_ETOOBIG: return "message too big";
    case HERALD_ENOMEM: return "out of memory";
    default: return "protocol error";
    }
}

static void on_data(conn_t *c, uint8_t *data, size_t len)
{
    c->last_recv_ms = loop_now_ms(c->worker->loop);
    if (c->ws_close_received) return;
    int rc = ws_reader_feed(&c->ws, data, len, &reader_cb, c);
    if (rc < 0 && rc != HERALD_ESTOP && c->state == CONN_OPEN) {
        uint16_t code = c->ws.close_code ? (uint16_t)c->ws.close_code : WS_CLOSE_PROTOCOL;
        fail(c, code, reason_for(rc));
    }
}

static void on_eof(conn_t *c) { conn_close(c); }

static void on_timer(conn_t *c)
{
    uint64_t now = loop_now_ms(c->worker->loop);
    if (c->ws_close_sent) {   /* the peer never answered our close */
        conn_close(c);
        return;
    }
    uint64_t interval, timeout;
    frame_t *ping = heartbeat_of(c, &interval, &timeout);
    if (!ping) {
        conn_close(c);
        return;
    }
    if (c->ping_sent_ms) {
        frame_unref(ping);
        if (c->last_recv_ms < c->ping_sent_ms) {
            fail(c, WS_CLOSE_HEARTBEAT, "heartbeat timeout");
            return;
        }
        c->ping_sent_ms = 0;
        arm_heartbeat(c, interval > timeout ? interval - timeout : 0);
        return;
    }
    if (conn_send(c, ping, false) < 0) return;
    c->ping_sent_ms = now;
    arm_heartbeat(c, timeout);
}

static void on_close(conn_t *c)
{
    if (c->ws_app && c->ws_app->on_close) c->ws_app->on_close(c);
}
