#include "ws/ws_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
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

static int tcp_connect(ws_stream_t *s, const url_t *url, int64_t deadline, char *err, size_t err_size)
{
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

/* ---- TLS ---- */

/* OpenSSL writes to the socket with write(2), which raises SIGPIPE once the peer
 * has gone. `herald serve` ignores SIGPIPE; the client commands and the tests do
 * not, and a library should not change a process-wide disposition. So SIGPIPE is
 * blocked around each OpenSSL call and one that the call raised is taken before
 * it is unblocked: four cheap system calls per call, paid by clients only. */
typedef struct nopipe {
    sigset_t old;
    bool was_pending;
} nopipe_t;

static void nopipe_begin(nopipe_t *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
}

static void nopipe_end(nopipe_t *g)
{
    int saved = errno;   /* SSL_get_error reads errno for SSL_ERROR_SYSCALL */
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

enum tls_op { TLS_CONNECT, TLS_READ, TLS_WRITE, TLS_SHUTDOWN };

/* One OpenSSL call with SIGPIPE held off. Returns SSL_ERROR_NONE (with *n bytes
 * for a read or write) or SSL_get_error's code, errno as the call left it. The
 * thread's error queue is cleared first, as SSL_get_error requires. */
static int tls_call(SSL *ssl, enum tls_op op, void *buf, size_t len, size_t *n)
{
    nopipe_t g;
    nopipe_begin(&g);
    ERR_clear_error();
    errno = 0;
    int ret;
    switch (op) {
    case TLS_CONNECT: ret = SSL_connect(ssl); break;
    case TLS_READ: ret = SSL_read_ex(ssl, buf, len, n); break;
    case TLS_WRITE: ret = SSL_write_ex(ssl, buf, len, n); break;
    default: ret = SSL_shutdown(ssl) >= 0; break;   /* 0: ours sent, the peer's not awaited */
    }
    int e = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, ret);
    nopipe_end(&g);
    return e;
}

/* After SSL_ERROR_SSL or SSL_ERROR_SYSCALL OpenSSL forbids SSL_shutdown: a quiet
 * shutdown makes the later one in ws_stream_close a no-op. */
static void tls_broken(ws_stream_t *s)
{
    SSL_set_quiet_shutdown(s->ssl, 1);
}

static bool is_ip_literal(const url_t *url)
{
    unsigned char addr[16];
    return url->ipv6 || inet_pton(AF_INET, url->host, addr) == 1;
}

/* A client context for one connection. Loading the system store parses Debian's
 * bundle (about 25 ms): paid once per connect by a command or a reconnecting
 * source, where a shared context would be a global or another object to pass.
 * Verification is always on; ca_file replaces the system store rather than adding
 * to it, so a private endpoint trusts its own CA only. */
static SSL_CTX *tls_client_ctx(const char *ca_file, char *err, size_t err_size)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, err_size, "cannot create a TLS context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* partial writes: ws_stream_write advances through the buffer itself */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    bool ok;
    if (ca_file) {
        FILE *f = fopen(ca_file, "r");   /* for a clear reason; OpenSSL's is vaguer */
        if (!f) {
            snprintf(err, err_size, "cannot read CA file %s: %s", ca_file, strerror(errno));
            SSL_CTX_free(ctx);
            return NULL;
        }
        fclose(f);
        ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL) == 1;
        if (!ok)
            snprintf(err, err_size, "CA file %s holds no usable PEM certificate", ca_file);
    } else {
        ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
        if (!ok)
            snprintf(err, err_size, "cannot load the system's trusted certificates");
    }
    if (ok && SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {   /* 0 is success */
        snprintf(err, err_size, "cannot set ALPN");
        ok = false;
    }
    ERR_clear_error();
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The one-line reason of a failed handshake, and its code. */
static int handshake_error(ws_stream_t *s, const url_t *url, int e, char *err, size_t err_size)
{
    long verify = SSL_get_verify_result(s->ssl);
    unsigned long code = ERR_peek_last_error();
    int reason = ERR_GET_REASON(code);
    int rc = HERALD_EPROTO;
    tls_broken(s);
    if (verify != X509_V_OK) {
        snprintf(err, err_size, "TLS to %s port %u: certificate verify failed: %s", url->host,
                 (unsigned)url->port, X509_verify_cert_error_string(verify));
        rc = HERALD_EUNAUTH;
    } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ||
               (e == SSL_ERROR_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        bool sys = e == SSL_ERROR_SYSCALL && errno != 0;
        snprintf(err, err_size, "TLS handshake with %s port %u failed: %s", url->host,
                 (unsigned)url->port, sys ? strerror(errno) : "the server closed the connection");
        rc = HERALD_EUNAVAIL;
    } else {
        const char *why = code ? ERR_reason_error_string(code) : NULL;
        snprintf(err, err_size, "TLS handshake with %s port %u failed: %s%s", url->host,
                 (unsigned)url->port, why ? why : "protocol error",
                 reason == SSL_R_WRONG_VERSION_NUMBER ? " (is it a TLS port?)" : "");
    }
    ERR_clear_error();
    return rc;
}

static int tls_handshake(ws_stream_t *s, const url_t *url, int64_t deadline, char *err, size_t err_size)
{
    for (;;) {
        int e = tls_call(s->ssl, TLS_CONNECT, NULL, 0, NULL);
        if (e == SSL_ERROR_NONE)
            return 0;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return handshake_error(s, url, e, err, err_size);
        int w = wait_fd(s, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w == HERALD_EAGAIN) {
            snprintf(err, err_size, "TLS handshake with %s port %u failed: timed out", url->host,
                     (unsigned)url->port);
            return HERALD_EUNAVAIL;
        }
        if (w < 0) {
            if (w == HERALD_EIO)
                snprintf(err, err_size, "TLS handshake: poll: %s", strerror(errno));
            return w;
        }
    }
}

static int tls_open(ws_stream_t *s, const url_t *url, const char *ca_file, int64_t deadline,
                    char *err, size_t err_size)
{
    SSL_CTX *ctx = tls_client_ctx(ca_file, err, err_size);
    if (!ctx)
        return HERALD_EINVAL;
    s->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);   /* the SSL holds its own reference */
    if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
        snprintf(err, err_size, "cannot create a TLS connection");
        ERR_clear_error();
        return HERALD_ENOMEM;
    }
    /* the name to check: an IP literal against the certificate's IP addresses (and
     * no SNI, which RFC 6066 reserves for host names), a name against its DNS names */
    bool ok;
    if (is_ip_literal(url)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), url->host) == 1;
    } else {
        SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(s->ssl, url->host) == 1 && SSL_set_tlsext_host_name(s->ssl, url->host) == 1;
    }
    if (!ok) {
        snprintf(err, err_size, "cannot use %s as a TLS server name", url->host);
        ERR_clear_error();
        return HERALD_EINVAL;
    }
    return tls_handshake(s, url, deadline, err, err_size);
}

/* ---- byte stream API ---- */

int ws_stream_open_ca(ws_stream_t *s, const url_t *url, int timeout_ms,
                      const volatile sig_atomic_t *stop, const char *ca_file,
                      char *err, size_t err_size)
{
    *s = (ws_stream_t){ .fd = -1, .timeout_ms = timeout_ms, .stop = stop };
    /* one deadline for connect and handshake: the caller asked for a connection
     * within timeout_ms, not for each step */
    int64_t deadline = deadline_after(timeout_ms);
    int rc = tcp_connect(s, url, deadline, err, err_size);
    if (rc == 0 && url->tls)
        rc = tls_open(s, url, ca_file, deadline, err, err_size);
    if (rc < 0)
        ws_stream_close(s);
    return rc;
}

int ws_stream_open(ws_stream_t *s, const url_t *url, int timeout_ms,
                   const volatile sig_atomic_t *stop, char *err, size_t err_size)
{
    return ws_stream_open_ca(s, url, timeout_ms, stop, NULL, err, err_size);
}

/* A failed TLS read or write as a herald code. */
static int tls_io_error(ws_stream_t *s, int e)
{
    int reason = ERR_GET_REASON(ERR_peek_last_error());
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return HERALD_ECLOSED;   /* close_notify: a shutdown now answers it */
    tls_broken(s);
    if (e == SSL_ERROR_SYSCALL)
        return errno == 0 || errno == EPIPE || errno == ECONNRESET ? HERALD_ECLOSED : HERALD_EIO;
    return e == SSL_ERROR_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ? HERALD_ECLOSED : HERALD_EIO;
}

static int tls_write(ws_stream_t *s, const char *p, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        int e = tls_call(s->ssl, TLS_WRITE, (void *)p, len, &n);
        if (e == SSL_ERROR_NONE) {
            p += n;
            len -= n;
            continue;
        }
        /* a retry must pass the same bytes: p and len are unchanged here */
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return tls_io_error(s, e);
        int rc = wait_fd(s, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_after(s->timeout_ms));
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ws_stream_write(ws_stream_t *s, const void *buf, size_t len)
{
    if (s->ssl)
        return tls_write(s, buf, len);
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

/* SSL_read is tried before every poll, so bytes OpenSSL already holds (the rest
 * of a record larger than buf) never wait for the socket to become readable. */
static long tls_read(ws_stream_t *s, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        size_t n = 0;
        int e = tls_call(s->ssl, TLS_READ, buf, len, &n);
        if (e == SSL_ERROR_NONE)
            return (long)n;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return tls_io_error(s, e);
        int rc = wait_fd(s, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
}

long ws_stream_read(ws_stream_t *s, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = deadline_after(timeout_ms);
    if (len > INT32_MAX)
        len = INT32_MAX;   /* the count must fit the return value on any long */
    if (s->ssl)
        return tls_read(s, buf, len, deadline);
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

bool ws_stream_pending(const ws_stream_t *s)
{
    return s->ssl && (SSL_pending(s->ssl) > 0 || SSL_has_pending(s->ssl));
}

void ws_stream_close(ws_stream_t *s)
{
    if (s->ssl) {
        /* close_notify, best effort: on a non-blocking socket it never waits, and
         * the server's own close_notify is not awaited (RFC 8446 6.1 allows it) */
        if (SSL_is_init_finished(s->ssl))
            tls_call(s->ssl, TLS_SHUTDOWN, NULL, 0, NULL);
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
    }
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
    int rc = ws_stream_open_ca(&c->stream, url, timeout, opt->stop, opt->ca_file, err, err_size);
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
