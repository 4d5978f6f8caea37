#include "ws/ws_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "ws/ws_codec.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_MESSAGE (16u << 20)
#define HEAD_MAX 8192          /* a 101 response is a few hundred bytes */
#define READ_CHUNK 16384

/* ---- time ---- */

static int64_t now_ms(void)
{
    return (int64_t)time_mono_ms();
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left before deadline (-1: none); 0 once it has passed. */
static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* ---- byte stream ---- */

static bool stopped(const ws_stream_t *s)
{
    return s->stop && *s->stop;
}

/* Waits for events on the socket until deadline. 0 when ready, HERALD_EAGAIN on
 * timeout, HERALD_ESTOP when the stop flag is set (checked before each poll and
 * after each EINTR), HERALD_EIO. */
static int wait_fd(ws_stream_t *s, short events, int64_t deadline)
{
    for (;;) {
        if (stopped(s))
            return HERALD_ESTOP;
        struct pollfd p = { .fd = s->fd, .events = events };
        int n = poll(&p, 1, remaining_ms(deadline));
        if (n > 0)
            return 0;
        if (n == 0)
            return HERALD_EAGAIN;
        if (errno != EINTR)
            return HERALD_EIO;
    }
}

static int connect_one(ws_stream_t *s, const struct addrinfo *ai, int64_t deadline)
{
    s->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s->fd < 0)
        return -errno;
    int rc = connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
    if (rc == EINPROGRESS) {
        int w = wait_fd(s, POLLOUT, deadline);
        socklen_t len = sizeof(rc);
        if (w == HERALD_EAGAIN)
            rc = ETIMEDOUT;
        else if (w < 0)
            rc = w == HERALD_ESTOP ? EINTR : EIO;
        else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &rc, &len) < 0)
            rc = errno;
    }
    if (rc != 0) {
        close(s->fd);
        s->fd = -1;
        return -rc;
    }
    /* frames are written whole; Nagle would only delay small messages */
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

int ws_stream_open(ws_stream_t *s, const url_t *url, int timeout_ms,
                   const volatile sig_atomic_t *stop, char *err, size_t err_size)
{
    *s = (ws_stream_t){ .fd = -1, .timeout_ms = timeout_ms, .stop = stop };
    if (url->tls) {
        snprintf(err, err_size, "TLS (https://, wss://) not supported yet: use http:// or ws://");
        return HERALD_EINVAL;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)url->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(url->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_size, "cannot resolve %s: %s", url->host, gai_strerror(gai));
        return HERALD_EUNAVAIL;
    }
    /* one deadline for all addresses: a host with a dead IPv6 address still
     * answers within the timeout the user asked for */
    int64_t deadline = deadline_after(timeout_ms);
    int rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && rc != 0 && rc != -EINTR; ai = ai->ai_next)
        rc = connect_one(s, ai, deadline);
    freeaddrinfo(res);
    if (rc == -EINTR && stopped(s))
        return HERALD_ESTOP;
    if (rc != 0) {
        snprintf(err, err_size, "cannot connect to %s port %u: %s", url->host,
                 (unsigned)url->port, strerror(-rc));
        return HERALD_EUNAVAIL;
    }
    return 0;
}

int ws_stream_write(ws_stream_t *s, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(s, POLLOUT, deadline_after(s->timeout_ms));
            if (rc < 0)
                return rc;
            continue;
        }
        return n < 0 && (errno == EPIPE || errno == ECONNRESET) ? HERALD_ECLOSED : HERALD_EIO;
    }
    return 0;
}

long ws_stream_read(ws_stream_t *s, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        ssize_t n = recv(s->fd, buf, len, 0);
        if (n > 0)
            return (long)n;
        if (n == 0)
            return HERALD_ECLOSED;
        if (errno == ECONNRESET)
            return HERALD_ECLOSED;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return HERALD_EIO;
        int rc = wait_fd(s, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

void ws_stream_close(ws_stream_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* ---- connection ---- */

/* A message read from the socket and not yet returned by ws_client_recv. */
typedef struct pending {
    struct pending *next;
    uint8_t opcode;
    uint16_t close_code;
    size_t len;
    char data[];
} pending_t;

struct ws_client {
    ws_stream_t stream;
    ws_reader_t reader;
    pending_t *head, *tail;     /* FIFO: one socket read may carry several messages */
    pending_t *returned;        /* the message ws_client_recv handed out last */
    bool close_sent, close_received;
    int error;                  /* sticky: once set, the connection is dead */
    uint8_t rbuf[READ_CHUNK];
};

static int push_pending(ws_client_t *c, uint8_t opcode, uint16_t code, const uint8_t *data, size_t len)
{
    pending_t *p = malloc(sizeof(*p) + len + 1);
    if (!p)
        return HERALD_ENOMEM;
    *p = (pending_t){ .opcode = opcode, .close_code = code, .len = len };
    if (len)
        memcpy(p->data, data, len);
    p->data[len] = '\0';
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    return 0;
}

static void drop_pending(ws_client_t *c)
{
    while (c->head) {
        pending_t *next = c->head->next;
        free(c->head);
        c->head = next;
    }
    c->tail = NULL;
}

/* One masked frame, written whole. A fresh unpredictable mask per frame (RFC 6455
 * 5.3); one getrandom call each is cheap at the rate a command-line client sends. */
static int send_frame(ws_client_t *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t mask[4];
    rand_secure(mask, sizeof(mask));
    uint8_t *frame = malloc(WS_MAX_HEADER_LEN + len);
    if (!frame)
        return HERALD_ENOMEM;
    size_t hlen = ws_frame_header_encode(frame, opcode, true, len, mask);
    if (len)
        memcpy(frame + hlen, payload, len);
    ws_mask_apply(frame + hlen, len, mask, 0);
    int rc = ws_stream_write(&c->stream, frame, hlen + len);
    free(frame);
    return rc;
}

static int send_close(ws_client_t *c, uint16_t code)
{
    uint8_t payload[125];
    /* 1005 means "no code": it is never sent, the close frame is then empty */
    size_t len = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, "");
    c->close_sent = true;
    return send_frame(c, WS_OP_CLOSE, payload, len);
}

static int on_message(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    ws_client_t *c = ctx;
    if (opcode != WS_OP_TEXT || c->close_received)
        return 0;
    c->error = push_pending(c, WS_OP_TEXT, 0, data, len);
    return c->error;
}

static int on_control(void *ctx, uint8_t opcode, uint8_t *data, size_t len)
{
    ws_client_t *c = ctx;
    if (opcode == WS_OP_PING && !c->close_sent) {
        int rc = send_frame(c, WS_OP_PONG, data, len);
        if (rc < 0)
            c->error = rc;
        return rc;
    }
    if (opcode != WS_OP_CLOSE)
        return 0;
    uint16_t code = len >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : WS_CLOSE_NO_STATUS;
    size_t reason = len >= 2 ? 2 : len;
    c->close_received = true;
    int rc = push_pending(c, WS_OP_CLOSE, code, data + reason, len - reason);
    if (rc == 0 && !c->close_sent)
        send_close(c, code);   /* echo (RFC 6455 5.5.1); the server closes TCP next */
    if (rc < 0)
        c->error = rc;
    return 1;   /* nothing after a close frame counts */
}

static const ws_reader_callbacks_t reader_callbacks = { on_message, on_control };

/* Feeds bytes to the reader. On a protocol error the close the reader asks for is
 * sent and the error stays with the connection. */
static int feed(ws_client_t *c, uint8_t *data, size_t len)
{
    int rc = ws_reader_feed(&c->reader, data, len, &reader_callbacks, c);
    if (rc == HERALD_ESTOP)
        return c->error;
    if (rc < 0) {
        if (!c->close_sent)
            send_close(c, (uint16_t)c->reader.close_code);
        c->error = rc;
    }
    return rc;
}

/* ---- handshake ---- */

static void base64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Finds a header in a response head (NUL-terminated, lines ending in CRLF) and
 * copies its trimmed value. False when absent or too long. */
static bool head_header(const char *head, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol || eol == line)
            return false;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *end = eol;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if ((size_t)(end - v) >= out_size)
                return false;
            memcpy(out, v, (size_t)(end - v));
            out[end - v] = '\0';
            return true;
        }
    }
    return false;
}

/* True when a comma-separated header value lists token (case-insensitively). */
static bool has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t trimmed = n;
        while (trimmed > 0 && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p += n;
    }
    return false;
}

static int send_upgrade(ws_client_t *c, const url_t *url, const char *bearer, const char *key,
                        char *err, size_t err_size)
{
    char host[URL_MAX_HOST + 16];
    if (url_host_header(url, host, sizeof(host)) < 0)
        return HERALD_EINVAL;
    if (bearer && strpbrk(bearer, "\r\n")) {
        snprintf(err, err_size, "the token contains a line break");
        return HERALD_EINVAL;
    }
    char *req = NULL;
    int n = asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: herald\r\n"
                     "%s%s%s\r\n",
                     url->target, host, key, bearer ? "Authorization: Bearer " : "",
                     bearer ? bearer : "", bearer ? "\r\n" : "");
    if (n < 0)
        return HERALD_ENOMEM;
    int rc = ws_stream_write(&c->stream, req, (size_t)n);
    free(req);
    if (rc < 0)
        snprintf(err, err_size, "sending the upgrade request: %s", err_str(rc));
    return rc;
}

/* Reads the response head into buf (NUL-terminated after the bytes read). Returns
 * the head length including its blank line, or a negative code. */
static long read_head(ws_client_t *c, char *buf, size_t cap, size_t *got, char *err, size_t err_size)
{
    int64_t deadline = deadline_after(c->stream.timeout_ms);
    *got = 0;
    for (;;) {
        char *end = memmem(buf, *got, "\r\n\r\n", 4);
        if (end)
            return end + 4 - buf;
        if (*got == cap - 1) {
            snprintf(err, err_size, "the upgrade response head is over %d bytes", HEAD_MAX);
            return HERALD_EPROTO;
        }
        long n = ws_stream_read(&c->stream, buf + *got, cap - 1 - *got, remaining_ms(deadline));
        if (n < 0) {
            snprintf(err, err_size, "reading the upgrade response: %s",
                     n == HERALD_EAGAIN ? "timed out" : err_str((int)n));
            return n == HERALD_EAGAIN ? HERALD_EUNAVAIL : n;
        }
        *got += (size_t)n;
        buf[*got] = '\0';
    }
}

static int check_response(const char *head, const char *key, char *err, size_t err_size)
{
    int status = 0;
    if (sscanf(head, "HTTP/1.%*1[01] %3d", &status) != 1) {
        snprintf(err, err_size, "not an HTTP response");
        return HERALD_EPROTO;
    }
    if (status != 101) {
        int line = (int)strcspn(head, "\r\n");
        snprintf(err, err_size, "server refused the upgrade: %.*s", line > 200 ? 200 : line, head);
        return status == 401 || status == 403 ? HERALD_EUNAUTH : HERALD_EPROTO;
    }
    char value[256], expect[29];
    if (!head_header(head, "Upgrade", value, sizeof(value)) || !has_token(value, "websocket") ||
        !head_header(head, "Connection", value, sizeof(value)) || !has_token(value, "upgrade")) {
        snprintf(err, err_size, "101 response without Upgrade: websocket and Connection: Upgrade");
        return HERALD_EPROTO;
    }
    ws_accept_key(key, strlen(key), expect);
    if (!head_header(head, "Sec-WebSocket-Accept", value, sizeof(value)) || strcmp(value, expect) != 0) {
        snprintf(err, err_size, "wrong or missing Sec-WebSocket-Accept");
        return HERALD_EPROTO;
    }
    return 0;
}

static int handshake(ws_client_t *c, const url_t *url, const char *bearer, char *err, size_t err_size)
{
    uint8_t nonce[16];
    char key[25], head[HEAD_MAX];
    rand_secure(nonce, sizeof(nonce));
    base64_encode(nonce, sizeof(nonce), key);
    int rc = send_upgrade(c, url, bearer, key, err, err_size);
    if (rc < 0)
        return rc;
    size_t got;
    long head_len = read_head(c, head, sizeof(head), &got, err, err_size);
    if (head_len < 0)
        return (int)head_len;
    char saved = head[head_len];
    head[head_len] = '\0';
    rc = check_response(head, key, err, err_size);
    head[head_len] = saved;
    if (rc < 0)
        return rc;
    /* the server may send its first message in the same segment as the 101 */
    if ((size_t)head_len < got && feed(c, (uint8_t *)head + head_len, got - (size_t)head_len) < 0) {
        snprintf(err, err_size, "bad first frame from the server: %s", err_str(c->error));
        return HERALD_EPROTO;
    }
    return 0;
}

int ws_client_connect(const url_t *url, const ws_client_options_t *opt, ws_client_t **out,
                      char *err, size_t err_size)
{
    *out = NULL;
    ws_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return HERALD_ENOMEM;
    }
    int timeout = opt->timeout_ms > 0 ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    ws_reader_init(&c->reader, false, opt->max_message_bytes ? opt->max_message_bytes : DEFAULT_MAX_MESSAGE);
    int rc = ws_stream_open(&c->stream, url, timeout, opt->stop, err, err_size);
    if (rc == 0)
        rc = handshake(c, url, opt->bearer, err, err_size);
    if (rc < 0) {
        ws_client_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

int ws_client_send_text(ws_client_t *c, const char *data, size_t len)
{
    if (c->error)
        return c->error;
    if (c->close_sent || c->close_received)
        return HERALD_ECLOSED;
    int rc = send_frame(c, WS_OP_TEXT, data, len);
    if (rc < 0 && rc != HERALD_ESTOP)
        c->error = rc;
    return rc;
}

int ws_client_recv(ws_client_t *c, int timeout_ms, ws_client_msg_t *msg)
{
    free(c->returned);
    c->returned = NULL;
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        pending_t *p = c->head;
        if (p) {
            c->head = p->next;
            if (!c->head)
                c->tail = NULL;
            c->returned = p;
            *msg = (ws_client_msg_t){ .opcode = p->opcode, .data = p->data, .len = p->len,
                                      .close_code = p->close_code };
            return 0;
        }
        if (c->error)
            return c->error;
        if (c->close_received)
            return HERALD_ECLOSED;
        long n = ws_stream_read(&c->stream, c->rbuf, sizeof(c->rbuf), remaining_ms(deadline));
        if (n == HERALD_EAGAIN || n == HERALD_ESTOP)
            return (int)n;
        if (n < 0) {
            c->error = n == HERALD_ECLOSED ? HERALD_ECLOSED : HERALD_EIO;
            continue;
        }
        feed(c, c->rbuf, (size_t)n);
    }
}

int ws_client_close(ws_client_t *c, uint16_t code)
{
    /* a close asked for by a signal must still finish: ignore the stop flag now */
    c->stream.stop = NULL;
    if (!c->close_sent && !c->error) {
        int rc = send_close(c, code);
        if (rc < 0)
            c->error = rc;
    }
    int64_t deadline = deadline_after(c->stream.timeout_ms);
    while (!c->close_received && !c->error) {
        drop_pending(c);   /* messages still in flight are not wanted any more */
        long n = ws_stream_read(&c->stream, c->rbuf, sizeof(c->rbuf), remaining_ms(deadline));
        if (n < 0)
            return (int)n;
        feed(c, c->rbuf, (size_t)n);
    }
    return c->close_received ? 0 : c->error;
}

void ws_client_destroy(ws_client_t *c)
{
    if (!c)
        return;
    ws_stream_close(&c->stream);
    ws_reader_deinit(&c->reader);
    drop_pending(c);
    free(c->returned);
    free(c);
}
