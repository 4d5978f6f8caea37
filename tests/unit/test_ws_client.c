/* ws_client against a scripted server thread on 127.0.0.1. The server side is
 * written by hand here (its own frame reader, its own unmasking) so that what the
 * client puts on the wire is checked independently of the client's codec. The
 * server thread only records; every assertion runs on the test thread. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "http/url.h"
#include "ws/ws_client.h"
#include "ws/ws_codec.h"

#define IO_TIMEOUT_MS 5000
#define MAX_FRAMES 8

typedef struct frame {
    uint8_t opcode;
    bool fin, masked;
    uint8_t mask[4];
    uint8_t wire[256];      /* payload as sent (masked) */
    uint8_t payload[256];   /* unmasked here */
    size_t len;
} frame_t;

typedef struct server server_t;
typedef void (*script_fn)(server_t *s, int fd);

struct server {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    script_fn script;
    const char *response;           /* NULL: a valid 101 */
    bool wrong_accept;
    const uint8_t *extra;           /* bytes sent in the same write as the 101 */
    size_t extra_len;
    char request[4096];             /* the upgrade request as received */
    frame_t frames[MAX_FRAMES];     /* frames read from the client */
    int frame_count;
    bool saw_eof;
};

/* ---- server side, by hand ---- */

static bool read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
            return false;
        ssize_t n = read(fd, p, len);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* A frame from the server: unmasked unless mask is given; payload < 126 bytes. */
static size_t encode_frame(uint8_t *out, uint8_t opcode, bool fin, const char *payload, const uint8_t *mask)
{
    size_t len = strlen(payload), n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    out[n++] = (uint8_t)((mask ? 0x80 : 0) | len);
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        out[n + i] = (uint8_t)payload[i] ^ (mask ? mask[i % 4] : 0);
    return n + len;
}

static void send_frame(int fd, uint8_t opcode, bool fin, const char *payload)
{
    uint8_t buf[256];
    write_all(fd, buf, encode_frame(buf, opcode, fin, payload, NULL));
}

/* Reads one client frame into the log. False at EOF, timeout or a frame too large
 * for this test. */
static bool read_frame(server_t *s, int fd)
{
    uint8_t h[2];
    if (s->frame_count == MAX_FRAMES || !read_full(fd, h, 2))
        return false;
    frame_t *f = &s->frames[s->frame_count];
    f->fin = h[0] & 0x80;
    f->opcode = h[0] & 0x0f;
    f->masked = h[1] & 0x80;
    f->len = h[1] & 0x7f;
    if (f->len > 125)
        return false;
    if (f->masked && !read_full(fd, f->mask, 4))
        return false;
    if (!read_full(fd, f->wire, f->len))
        return false;
    for (size_t i = 0; i < f->len; i++)
        f->payload[i] = f->wire[i] ^ (f->masked ? f->mask[i % 4] : 0);
    s->frame_count++;
    return true;
}

/* Records frames until the client's close, which is echoed (the server then ends
 * the TCP connection first, as RFC 6455 7.1.1 asks). */
static void script_echo_close(server_t *s, int fd)
{
    while (read_frame(s, fd)) {
        frame_t *f = &s->frames[s->frame_count - 1];
        if (f->opcode == WS_OP_CLOSE) {
            uint8_t out[140];
            size_t n = 0;
            out[n++] = 0x88;
            out[n++] = (uint8_t)f->len;
            memcpy(out + n, f->payload, f->len);
            write_all(fd, out, n + f->len);
            return;
        }
    }
    s->saw_eof = true;
}

static bool handshake(server_t *s, int fd)
{
    size_t got = 0;
    while (!strstr(s->request, "\r\n\r\n")) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (got + 1 >= sizeof(s->request) || poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
            return false;
        ssize_t n = read(fd, s->request + got, sizeof(s->request) - 1 - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
        s->request[got] = '\0';
    }
    if (s->response) {
        write_all(fd, s->response, strlen(s->response));
        return false;
    }
    char key[64] = "", accept[29], resp[512];
    const char *k = strstr(s->request, "Sec-WebSocket-Key: ");
    if (k)
        sscanf(k + 19, "%63[^\r]", key);
    ws_accept_key(key, strlen(key), accept);
    if (s->wrong_accept)
        accept[0] = accept[0] == 'A' ? 'B' : 'A';
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    uint8_t out[1024];
    memcpy(out, resp, (size_t)n);
    if (s->extra_len)
        memcpy(out + n, s->extra, s->extra_len);
    write_all(fd, out, (size_t)n + s->extra_len);
    return true;
}

static void *server_main(void *arg)
{
    server_t *s = arg;
    struct pollfd pfd = { .fd = s->listen_fd, .events = POLLIN };
    if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
        return NULL;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (handshake(s, fd) && s->script)
        s->script(s, fd);
    close(fd);
    return NULL;
}

static void server_start(server_t *s, script_fn script)
{
    memset(s, 0, sizeof(*s));
    s->script = script;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->listen_fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->listen_fd, 4), 0);
    assert_int_equal(getsockname(s->listen_fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
}

static void server_run(server_t *s)
{
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_join(server_t *s)
{
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* ---- client side ---- */

static url_t server_url(const server_t *s, const char *path)
{
    char text[128];
    url_t u;
    snprintf(text, sizeof(text), "ws://127.0.0.1:%u%s", (unsigned)s->port, path);
    assert_int_equal(url_parse(text, &u), 0);
    return u;
}

static ws_client_t *connect_ok(server_t *s)
{
    url_t u = server_url(s, "/ws");
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS };
    ws_client_t *c = NULL;
    char err[256] = "";
    int rc = ws_client_connect(&u, &opt, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("connect: %d %s", rc, err);
    return c;
}

static void expect_text(ws_client_t *c, const char *want)
{
    ws_client_msg_t m;
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), 0);
    assert_int_equal(m.opcode, WS_OP_TEXT);
    assert_int_equal(m.len, strlen(want));
    assert_string_equal(m.data, want);
}

static void assert_close_frame(const frame_t *f, uint16_t code)
{
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_true(f->masked);
    assert_true(f->len >= 2);
    assert_int_equal(f->payload[0] << 8 | f->payload[1], code);
}

/* ---- tests ---- */

static void test_ws_client_handshake_request_has_key_version_bearer_and_query(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    url_t u = server_url(&s, "/ws");
    assert_int_equal(url_query_append(&u, "token", "t 1"), 0);
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS, .bearer = "k3y" };
    ws_client_t *c = NULL;
    char err[256] = "", host[64], key[64] = "";
    assert_int_equal(ws_client_connect(&u, &opt, &c, err, sizeof(err)), 0);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);

    assert_non_null(strstr(s.request, "GET /ws?token=t%201 HTTP/1.1\r\n"));
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", (unsigned)s.port);
    assert_non_null(strstr(s.request, host));
    assert_non_null(strstr(s.request, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(s.request, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(s.request, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(s.request, "\r\nAuthorization: Bearer k3y\r\n"));
    const char *k = strstr(s.request, "Sec-WebSocket-Key: ");
    assert_non_null(k);
    sscanf(k + 19, "%63[^\r]", key);
    assert_true(ws_key_valid(key, strlen(key)));
}

static void test_ws_client_handshake_key_differs_per_connection(void **state)
{
    (void)state;
    char keys[2][64];
    for (int i = 0; i < 2; i++) {
        server_t s;
        server_start(&s, script_echo_close);
        server_run(&s);
        ws_client_t *c = connect_ok(&s);
        ws_client_close(c, WS_CLOSE_NORMAL);
        ws_client_destroy(c);
        server_join(&s);
        const char *k = strstr(s.request, "Sec-WebSocket-Key: ");
        assert_non_null(k);
        sscanf(k + 19, "%63[^\r]", keys[i]);
    }
    assert_string_not_equal(keys[0], keys[1]);
}

static void test_ws_client_text_frames_masked_with_fresh_mask_each(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    assert_int_equal(ws_client_send_text(c, "hello", 5), 0);
    assert_int_equal(ws_client_send_text(c, "hello", 5), 0);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);

    assert_int_equal(s.frame_count, 3);
    for (int i = 0; i < 2; i++) {
        const frame_t *f = &s.frames[i];
        assert_int_equal(f->opcode, WS_OP_TEXT);
        assert_true(f->fin);
        assert_true(f->masked);
        assert_int_equal(f->len, 5);
        assert_memory_equal(f->payload, "hello", 5);
    }
    /* equal masks (or an all-zero one) would be a 1 in 2^32 accident, not a fluke */
    assert_memory_not_equal(s.frames[0].mask, s.frames[1].mask, 4);
    assert_memory_not_equal(s.frames[0].wire, s.frames[1].wire, 5);
    assert_close_frame(&s.frames[2], WS_CLOSE_NORMAL);
}

static void script_ping_then_text(server_t *s, int fd)
{
    send_frame(fd, WS_OP_PING, true, "abc");
    send_frame(fd, WS_OP_TEXT, true, "after");
    script_echo_close(s, fd);
}

static void test_ws_client_ping_answered_with_masked_pong_same_payload(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_ping_then_text);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    expect_text(c, "after");
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);

    assert_int_equal(s.frame_count, 2);
    assert_int_equal(s.frames[0].opcode, WS_OP_PONG);
    assert_true(s.frames[0].masked);
    assert_int_equal(s.frames[0].len, 3);
    assert_memory_equal(s.frames[0].payload, "abc", 3);
    assert_close_frame(&s.frames[1], WS_CLOSE_NORMAL);
}

static void script_fragmented(server_t *s, int fd)
{
    send_frame(fd, WS_OP_TEXT, false, "hel");
    usleep(20000);   /* let the client read the first fragment on its own */
    send_frame(fd, WS_OP_PING, true, "p");
    send_frame(fd, WS_OP_CONT, false, "l");
    send_frame(fd, WS_OP_CONT, true, "o w\xc3\xa9");
    send_frame(fd, WS_OP_TEXT, true, "next");
    script_echo_close(s, fd);
}

static void test_ws_client_fragmented_text_with_interleaved_ping(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_fragmented);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    expect_text(c, "hello w\xc3\xa9");
    expect_text(c, "next");
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
    assert_int_equal(s.frame_count, 2);
    assert_int_equal(s.frames[0].opcode, WS_OP_PONG);
    assert_memory_equal(s.frames[0].payload, "p", 1);
}

static void script_binary_then_text(server_t *s, int fd)
{
    send_frame(fd, WS_OP_BINARY, true, "bin");
    send_frame(fd, WS_OP_TEXT, true, "text");
    script_echo_close(s, fd);
}

static void test_ws_client_binary_message_skipped(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_binary_then_text);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    expect_text(c, "text");
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
}

static void test_ws_client_message_in_same_segment_as_101(void **state)
{
    (void)state;
    server_t s;
    uint8_t extra[64];
    server_start(&s, script_echo_close);
    s.extra_len = encode_frame(extra, WS_OP_TEXT, true, "{\"type\":\"connected\"}", NULL);
    s.extra_len += encode_frame(extra + s.extra_len, WS_OP_TEXT, true, "second", NULL);
    s.extra = extra;
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    expect_text(c, "{\"type\":\"connected\"}");
    expect_text(c, "second");
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
}

static void test_ws_client_close_sends_code_and_waits_for_echo(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    assert_int_equal(ws_client_close(c, WS_CLOSE_GOING_AWAY), 0);
    /* nothing may be sent after a close */
    assert_int_equal(ws_client_send_text(c, "x", 1), HERALD_ECLOSED);
    ws_client_destroy(c);
    server_join(&s);
    assert_int_equal(s.frame_count, 1);
    assert_close_frame(&s.frames[0], WS_CLOSE_GOING_AWAY);
    assert_int_equal(s.frames[0].len, 2);
}

static void script_server_close(server_t *s, int fd)
{
    uint8_t buf[64];
    const char payload[] = "\x0f\xa1" "bad token";   /* 4001 */
    buf[0] = 0x88;
    buf[1] = sizeof(payload) - 1;
    memcpy(buf + 2, payload, sizeof(payload) - 1);
    write_all(fd, buf, 2 + sizeof(payload) - 1);
    read_frame(s, fd);
}

static void test_ws_client_server_close_returns_code_reason_and_echoes(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_server_close);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    ws_client_msg_t m;
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), 0);
    assert_int_equal(m.opcode, WS_OP_CLOSE);
    assert_int_equal(m.close_code, 4001);
    assert_string_equal(m.data, "bad token");
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), HERALD_ECLOSED);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);   /* already closed: no second frame */
    ws_client_destroy(c);
    server_join(&s);
    assert_int_equal(s.frame_count, 1);
    assert_close_frame(&s.frames[0], 4001);
}

static void script_drop(server_t *s, int fd)
{
    (void)s;
    (void)fd;   /* server_main closes the socket: no close frame */
}

static void test_ws_client_tcp_drop_without_close_is_eclosed(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_drop);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    ws_client_msg_t m;
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), HERALD_ECLOSED);
    assert_int_equal(ws_client_send_text(c, "x", 1), HERALD_ECLOSED);
    ws_client_destroy(c);
    server_join(&s);
}

static void script_masked_from_server(server_t *s, int fd)
{
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    uint8_t buf[64];
    /* wait for the client's "go": sent at once, the frame could share the 101's
     * segment and fail the connect instead of the recv under test */
    if (!read_frame(s, fd))
        return;
    write_all(fd, buf, encode_frame(buf, WS_OP_TEXT, true, "hi", mask));
    read_frame(s, fd);
}

static void test_ws_client_masked_server_frame_is_protocol_error_1002(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_masked_from_server);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    ws_client_msg_t m;
    assert_int_equal(ws_client_send_text(c, "go", 2), 0);
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), HERALD_EPROTO);
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), HERALD_EPROTO);   /* sticky */
    ws_client_destroy(c);
    server_join(&s);
    assert_int_equal(s.frame_count, 2);
    assert_close_frame(&s.frames[1], WS_CLOSE_PROTOCOL);
}

static void test_ws_client_recv_timeout_returns_eagain(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    ws_client_t *c = connect_ok(&s);
    struct timespec a, b;
    ws_client_msg_t m;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(ws_client_recv(c, 100, &m), HERALD_EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    assert_in_range(ms, 90, 2000);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
}

static void test_ws_client_stop_flag_ends_wait(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    volatile sig_atomic_t stop = 0;
    url_t u = server_url(&s, "/ws");
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS, .stop = &stop };
    ws_client_t *c = NULL;
    char err[256];
    assert_int_equal(ws_client_connect(&u, &opt, &c, err, sizeof(err)), 0);
    stop = 1;
    ws_client_msg_t m;
    assert_int_equal(ws_client_recv(c, -1, &m), HERALD_ESTOP);
    /* the close handshake still completes after the stop request */
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
    assert_close_frame(&s.frames[0], WS_CLOSE_NORMAL);
}

static int connect_expect_fail(server_t *s, char *err, size_t err_size)
{
    server_run(s);
    url_t u = server_url(s, "/ws");
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS };
    ws_client_t *c = (ws_client_t *)&opt;   /* must be reset to NULL */
    int rc = ws_client_connect(&u, &opt, &c, err, err_size);
    assert_null(c);
    server_join(s);
    return rc;
}

static void test_ws_client_bad_accept_refused(void **state)
{
    (void)state;
    server_t s;
    char err[256] = "";
    server_start(&s, script_echo_close);
    s.wrong_accept = true;
    assert_int_equal(connect_expect_fail(&s, err, sizeof(err)), HERALD_EPROTO);
    assert_non_null(strstr(err, "Sec-WebSocket-Accept"));
}

static void test_ws_client_401_before_upgrade_is_eunauth(void **state)
{
    (void)state;
    server_t s;
    char err[256] = "";
    server_start(&s, NULL);
    s.response = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(connect_expect_fail(&s, err, sizeof(err)), HERALD_EUNAUTH);
    assert_non_null(strstr(err, "401"));
}

static void test_ws_client_101_without_upgrade_header_refused(void **state)
{
    (void)state;
    server_t s;
    char err[256] = "";
    server_start(&s, NULL);
    s.response = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
    assert_int_equal(connect_expect_fail(&s, err, sizeof(err)), HERALD_EPROTO);
}

static void test_ws_client_wss_refused_tls_not_supported(void **state)
{
    (void)state;
    url_t u;
    assert_int_equal(url_parse("wss://127.0.0.1:1/ws", &u), 0);
    ws_client_options_t opt = { .timeout_ms = 100 };
    ws_client_t *c;
    char err[256] = "";
    assert_int_equal(ws_client_connect(&u, &opt, &c, err, sizeof(err)), HERALD_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err, "TLS"));
}

static void test_ws_client_connection_refused_is_eunavail(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, NULL);
    close(s.listen_fd);   /* the port is now (almost certainly) closed */
    url_t u = server_url(&s, "/ws");
    ws_client_options_t opt = { .timeout_ms = 1000 };
    ws_client_t *c;
    char err[256] = "";
    assert_int_equal(ws_client_connect(&u, &opt, &c, err, sizeof(err)), HERALD_EUNAVAIL);
    assert_non_null(strstr(err, "cannot connect"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_client_handshake_request_has_key_version_bearer_and_query),
        cmocka_unit_test(test_ws_client_handshake_key_differs_per_connection),
        cmocka_unit_test(test_ws_client_text_frames_masked_with_fresh_mask_each),
        cmocka_unit_test(test_ws_client_ping_answered_with_masked_pong_same_payload),
        cmocka_unit_test(test_ws_client_fragmented_text_with_interleaved_ping),
        cmocka_unit_test(test_ws_client_binary_message_skipped),
        cmocka_unit_test(test_ws_client_message_in_same_segment_as_101),
        cmocka_unit_test(test_ws_client_close_sends_code_and_waits_for_echo),
        cmocka_unit_test(test_ws_client_server_close_returns_code_reason_and_echoes),
        cmocka_unit_test(test_ws_client_tcp_drop_without_close_is_eclosed),
        cmocka_unit_test(test_ws_client_masked_server_frame_is_protocol_error_1002),
        cmocka_unit_test(test_ws_client_recv_timeout_returns_eagain),
        cmocka_unit_test(test_ws_client_stop_flag_ends_wait),
        cmocka_unit_test(test_ws_client_bad_accept_refused),
        cmocka_unit_test(test_ws_client_401_before_upgrade_is_eunauth),
        cmocka_unit_test(test_ws_client_101_without_upgrade_header_refused),
        cmocka_unit_test(test_ws_client_wss_refused_tls_not_supported),
        cmocka_unit_test(test_ws_client_connection_refused_is_eunavail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
