/* ws_client against a scripted server thread on 127.0.0.1. The server side is
 * written by hand here (its own frame reader, its own unmasking) so that what the
 * client puts on the wire is checked independently of the client's codec. The
 * server thread only records; every assertion runs on the test thread.
 *
 * The same scripts run over TLS: the group setup makes a CA, certificates signed
 * by it (for 127.0.0.1 and localhost, for another name, expired) with OpenSSL's
 * API, and writes the CA to a temporary PEM file for the client's ca_file. The
 * server thread blocks SIGPIPE; the test thread does not, so a client write to a
 * closed TLS connection that raised it would kill the test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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

/* The server's end of one connection: a socket, and an SSL over it for TLS. */
typedef struct peer {
    int fd;
    SSL *ssl;
} peer_t;

typedef struct server server_t;
typedef void (*script_fn)(server_t *s, peer_t *p);

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
    bool raw;                       /* no WebSocket handshake: the script runs at once */
    SSL_CTX *tls;                   /* NULL: plain TCP */
    bool tls_accepted;              /* the TLS handshake completed */
    char sni[256];                  /* the server name the client sent, "" when none */
    uint8_t alpn[64];               /* the ALPN list the client offered (wire format) */
    size_t alpn_len;
    bool saw_close_notify;          /* set by scripts that read to the end */
    uint8_t got[64];                /* bytes a raw script read from the client */
    size_t got_len;
};

/* ---- server side, by hand ---- */

/* One read of what is there, waiting up to IO_TIMEOUT_MS: > 0 bytes, 0 at the end
 * (for TLS, close_notify or not), -1 on timeout or error. Bytes OpenSSL already
 * holds are read without a poll. */
static ssize_t peer_read(peer_t *p, void *buf, size_t len)
{
    if (!p->ssl || SSL_pending(p->ssl) == 0) {
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
        if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
            return -1;
    }
    if (!p->ssl)
        return read(p->fd, buf, len);
    int n = SSL_read(p->ssl, buf, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(p->ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL ? 0 : -1;
}

static bool read_full(peer_t *p, void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len > 0) {
        ssize_t n = peer_read(p, b, len);
        if (n <= 0)
            return false;
        b += n;
        len -= (size_t)n;
    }
    return true;
}

static void write_all(peer_t *p, const void *buf, size_t len)
{
    if (p->ssl) {   /* one record for up to 16 KiB: what the client must take apart */
        if (len && SSL_write(p->ssl, buf, (int)len) <= 0)
            ERR_clear_error();
        return;
    }
    const uint8_t *b = buf;
    while (len > 0) {
        ssize_t n = send(p->fd, b, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        b += n;
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

static void send_frame(peer_t *p, uint8_t opcode, bool fin, const char *payload)
{
    uint8_t buf[256];
    write_all(p, buf, encode_frame(buf, opcode, fin, payload, NULL));
}

/* Reads one client frame into the log. False at EOF, timeout or a frame too large
 * for this test. */
static bool read_frame(server_t *s, peer_t *p)
{
    uint8_t h[2];
    if (s->frame_count == MAX_FRAMES || !read_full(p, h, 2))
        return false;
    frame_t *f = &s->frames[s->frame_count];
    f->fin = h[0] & 0x80;
    f->opcode = h[0] & 0x0f;
    f->masked = h[1] & 0x80;
    f->len = h[1] & 0x7f;
    if (f->len > 125)
        return false;
    if (f->masked && !read_full(p, f->mask, 4))
        return false;
    if (!read_full(p, f->wire, f->len))
        return false;
    for (size_t i = 0; i < f->len; i++)
        f->payload[i] = f->wire[i] ^ (f->masked ? f->mask[i % 4] : 0);
    s->frame_count++;
    return true;
}

/* Records frames until the client's close, which is echoed (the server then ends
 * the TCP connection first, as RFC 6455 7.1.1 asks). */
static void script_echo_close(server_t *s, peer_t *p)
{
    while (read_frame(s, p)) {
        frame_t *f = &s->frames[s->frame_count - 1];
        if (f->opcode == WS_OP_CLOSE) {
            uint8_t out[140];
            size_t n = 0;
            out[n++] = 0x88;
            out[n++] = (uint8_t)f->len;
            memcpy(out + n, f->payload, f->len);
            write_all(p, out, n + f->len);
            return;
        }
    }
    s->saw_eof = true;
}

static bool handshake(server_t *s, peer_t *p)
{
    size_t got = 0;
    while (!strstr(s->request, "\r\n\r\n")) {
        if (got + 1 >= sizeof(s->request))
            return false;
        ssize_t n = peer_read(p, s->request + got, sizeof(s->request) - 1 - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
        s->request[got] = '\0';
    }
    if (s->response) {
        write_all(p, s->response, strlen(s->response));
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
    write_all(p, out, (size_t)n + s->extra_len);
    return true;
}

/* Records what the client offered: the server name and the ALPN list; selects
 * http/1.1 when offered, as a web server would. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    server_t *s = arg;
    s->alpn_len = inlen < sizeof(s->alpn) ? inlen : sizeof(s->alpn);
    memcpy(s->alpn, in, s->alpn_len);
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* TLS server side of an accepted socket (blocking, with socket timeouts so that
 * no OpenSSL call waits forever). False when the client gave up the handshake. */
static bool tls_accept(server_t *s, peer_t *p)
{
    struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    p->ssl = SSL_new(s->tls);
    if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1 || SSL_accept(p->ssl) != 1) {
        ERR_clear_error();
        return false;
    }
    const char *name = SSL_get_servername(p->ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(s->sni, sizeof(s->sni), "%s", name ? name : "");
    s->tls_accepted = true;
    return true;
}

static void *server_main(void *arg)
{
    server_t *s = arg;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);   /* this thread's writes may hit a gone client */
    struct pollfd pfd = { .fd = s->listen_fd, .events = POLLIN };
    if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0)
        return NULL;
    peer_t p = { .fd = accept(s->listen_fd, NULL, NULL) };
    if (p.fd < 0)
        return NULL;
    if ((!s->tls || tls_accept(s, &p)) && (s->raw || handshake(s, &p)) && s->script)
        s->script(s, &p);
    if (p.ssl) {
        if (s->tls_accepted)
            SSL_shutdown(p.ssl);
        SSL_free(p.ssl);
        ERR_clear_error();
    }
    close(p.fd);
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
    SSL_CTX_free(s->tls);
    s->tls = NULL;
}

/* ---- TLS: certificates made once for the group, and a TLS server ---- */

typedef struct pki {
    char dir[64];
    char ca_file[128];          /* the CA certificate, PEM */
    char empty_file[128];       /* a file without any certificate */
    EVP_PKEY *ca_key, *key;     /* key: every server certificate's */
    X509 *ca;
    X509 *good;                 /* IP:127.0.0.1, DNS:localhost */
    X509 *wrong_host;           /* DNS:wrong.example only */
    X509 *expired;              /* the good names, expired an hour ago */
} pki_t;

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    bool ok = ext && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key valid from now + from_s to now + to_s: a self-signed CA
 * when san is NULL, else a server certificate with those names signed by ca. */
static X509 *make_cert(EVP_PKEY *key, long serial, const char *cn, const char *san, X509 *ca,
                       EVP_PKEY *ca_key, long from_s, long to_s)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    X509_NAME *name = X509_get_subject_name(c);
    bool ok = X509_set_version(c, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(c), serial) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(c), from_s) && X509_gmtime_adj(X509_getm_notAfter(c), to_s) &&
              X509_set_pubkey(c, key) == 1 &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1;
    if (ok && !san) {
        ok = X509_set_issuer_name(c, name) == 1 && add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(c, c, NID_subject_key_identifier, "hash") && X509_sign(c, key, EVP_sha256()) > 0;
    } else if (ok) {
        ok = X509_set_issuer_name(c, X509_get_subject_name(ca)) == 1 &&
             add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(c, ca, NID_ext_key_usage, "serverAuth") && add_ext(c, ca, NID_subject_alt_name, san) &&
             X509_sign(c, ca_key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static bool write_pem(const char *path, X509 *cert)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok = !cert || PEM_write_X509(f, cert) == 1;
    return fclose(f) == 0 && ok;
}

static int pki_teardown(void **state)
{
    pki_t *k = *state;
    if (!k)
        return 0;
    unlink(k->ca_file);
    unlink(k->empty_file);
    rmdir(k->dir);
    X509_free(k->ca);
    X509_free(k->good);
    X509_free(k->wrong_host);
    X509_free(k->expired);
    EVP_PKEY_free(k->ca_key);
    EVP_PKEY_free(k->key);
    free(k);
    return 0;
}

/* P-256 keys: generated in milliseconds, where RSA would take a while under ASan. */
static int pki_setup(void **state)
{
    pki_t *k = calloc(1, sizeof(*k));
    if (!k)
        return -1;
    *state = k;
    snprintf(k->dir, sizeof(k->dir), "/tmp/herald-test-tls-XXXXXX");
    if (!mkdtemp(k->dir))
        return -1;
    snprintf(k->ca_file, sizeof(k->ca_file), "%s/ca.pem", k->dir);
    snprintf(k->empty_file, sizeof(k->empty_file), "%s/empty.pem", k->dir);
    k->ca_key = EVP_EC_gen("P-256");
    k->key = EVP_EC_gen("P-256");
    if (!k->ca_key || !k->key)
        return -1;
    const char *names = "IP:127.0.0.1,DNS:localhost";
    k->ca = make_cert(k->ca_key, 1, "herald test CA", NULL, NULL, NULL, -60, 86400);
    k->good = k->ca ? make_cert(k->key, 2, "localhost", names, k->ca, k->ca_key, -60, 86400) : NULL;
    k->wrong_host = k->ca ? make_cert(k->key, 3, "wrong.example", "DNS:wrong.example", k->ca, k->ca_key, -60, 86400)
                          : NULL;
    k->expired = k->ca ? make_cert(k->key, 4, "localhost", names, k->ca, k->ca_key, -7200, -3600) : NULL;
    if (!k->good || !k->wrong_host || !k->expired)
        return -1;
    return write_pem(k->ca_file, k->ca) && write_pem(k->empty_file, NULL) ? 0 : -1;
}

static void server_start_tls(server_t *s, script_fn script, X509 *cert, EVP_PKEY *key)
{
    server_start(s, script);
    s->tls = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->tls);
    assert_int_equal(SSL_CTX_use_certificate(s->tls, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->tls, key), 1);
    SSL_CTX_set_alpn_select_cb(s->tls, alpn_select, s);
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

static void script_ping_then_text(server_t *s, peer_t *p)
{
    send_frame(p, WS_OP_PING, true, "abc");
    send_frame(p, WS_OP_TEXT, true, "after");
    script_echo_close(s, p);
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

static void script_fragmented(server_t *s, peer_t *p)
{
    send_frame(p, WS_OP_TEXT, false, "hel");
    usleep(20000);   /* let the client read the first fragment on its own */
    send_frame(p, WS_OP_PING, true, "p");
    send_frame(p, WS_OP_CONT, false, "l");
    send_frame(p, WS_OP_CONT, true, "o w\xc3\xa9");
    send_frame(p, WS_OP_TEXT, true, "next");
    script_echo_close(s, p);
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

static void script_binary_then_text(server_t *s, peer_t *p)
{
    send_frame(p, WS_OP_BINARY, true, "bin");
    send_frame(p, WS_OP_TEXT, true, "text");
    script_echo_close(s, p);
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

static void script_server_close(server_t *s, peer_t *p)
{
    uint8_t buf[64];
    const char payload[] = "\x0f\xa1" "bad token";   /* 4001 */
    buf[0] = 0x88;
    buf[1] = sizeof(payload) - 1;
    memcpy(buf + 2, payload, sizeof(payload) - 1);
    write_all(p, buf, 2 + sizeof(payload) - 1);
    read_frame(s, p);
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

static void script_drop(server_t *s, peer_t *p)
{
    (void)s;
    (void)p;   /* server_main closes the socket: no close frame */
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

static void script_masked_from_server(server_t *s, peer_t *p)
{
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    uint8_t buf[64];
    /* wait for the client's "go": sent at once, the frame could share the 101's
     * segment and fail the connect instead of the recv under test */
    if (!read_frame(s, p))
        return;
    write_all(p, buf, encode_frame(buf, WS_OP_TEXT, true, "hi", mask));
    read_frame(s, p);
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

/* ---- TLS ---- */

static url_t url_for(const server_t *s, const char *scheme, const char *host, const char *path)
{
    char text[128];
    url_t u;
    snprintf(text, sizeof(text), "%s://%s:%u%s", scheme, host, (unsigned)s->port, path);
    assert_int_equal(url_parse(text, &u), 0);
    return u;
}

static int connect_wss(server_t *s, const char *host, const char *ca_file, ws_client_t **c,
                       char *err, size_t err_size)
{
    url_t u = url_for(s, "wss", host, "/ws");
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS, .ca_file = ca_file };
    return ws_client_connect(&u, &opt, c, err, err_size);
}

static long elapsed_ms(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static void test_ws_client_wss_ca_file_sni_alpn_and_masked_frames(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start_tls(&s, script_echo_close, k->good, k->key);
    server_run(&s);
    ws_client_t *c = NULL;
    char err[256] = "", host[64];
    int rc = connect_wss(&s, "localhost", k->ca_file, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("connect: %d %s", rc, err);
    assert_int_equal(ws_client_send_text(c, "over tls", 8), 0);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);

    assert_true(s.tls_accepted);
    assert_string_equal(s.sni, "localhost");
    assert_int_equal(s.alpn_len, 9);
    assert_memory_equal(s.alpn, "\x08http/1.1", 9);
    snprintf(host, sizeof(host), "\r\nHost: localhost:%u\r\n", (unsigned)s.port);
    assert_non_null(strstr(s.request, host));
    assert_int_equal(s.frame_count, 2);
    assert_int_equal(s.frames[0].opcode, WS_OP_TEXT);
    assert_true(s.frames[0].masked);
    assert_memory_equal(s.frames[0].payload, "over tls", 8);
    assert_close_frame(&s.frames[1], WS_CLOSE_NORMAL);
}

static void test_ws_client_wss_ip_literal_matches_ip_san_and_sends_no_sni(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start_tls(&s, script_echo_close, k->good, k->key);
    server_run(&s);
    ws_client_t *c = NULL;
    char err[256] = "";
    int rc = connect_wss(&s, "127.0.0.1", k->ca_file, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("connect: %d %s", rc, err);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
    assert_true(s.tls_accepted);
    assert_string_equal(s.sni, "");   /* RFC 6066 3: no IP literals in SNI */
}

/* The 101 and two messages in one TLS record, then a ping and a text: the client
 * must take several messages out of one record. */
static void test_ws_client_wss_messages_in_101_record_and_ping(void **state)
{
    pki_t *k = *state;
    server_t s;
    uint8_t extra[64];
    server_start_tls(&s, script_ping_then_text, k->good, k->key);
    s.extra_len = encode_frame(extra, WS_OP_TEXT, true, "first", NULL);
    s.extra_len += encode_frame(extra + s.extra_len, WS_OP_TEXT, true, "second", NULL);
    s.extra = extra;
    server_run(&s);
    ws_client_t *c = NULL;
    char err[256] = "";
    int rc = connect_wss(&s, "127.0.0.1", k->ca_file, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("connect: %d %s", rc, err);
    expect_text(c, "first");
    expect_text(c, "second");
    expect_text(c, "after");
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
    assert_int_equal(s.frame_count, 2);
    assert_int_equal(s.frames[0].opcode, WS_OP_PONG);
    assert_memory_equal(s.frames[0].payload, "abc", 3);
}

static void test_ws_client_wss_server_close_notify_then_eof_is_eclosed(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start_tls(&s, script_drop, k->good, k->key);
    server_run(&s);
    ws_client_t *c = NULL;
    char err[256] = "";
    int rc = connect_wss(&s, "127.0.0.1", k->ca_file, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("connect: %d %s", rc, err);
    ws_client_msg_t m;
    assert_int_equal(ws_client_recv(c, IO_TIMEOUT_MS, &m), HERALD_ECLOSED);
    ws_client_destroy(c);
    server_join(&s);
}

/* Connects to a TLS server that presents cert and expects the connection to fail
 * verification with why in the one-line reason. */
static void expect_verify_failure(X509 *cert, EVP_PKEY *key, const char *host, const char *ca_file,
                                  const char *why)
{
    server_t s;
    server_start_tls(&s, script_echo_close, cert, key);
    server_run(&s);
    ws_client_t *c = (ws_client_t *)&s;   /* must be reset to NULL */
    char err[256] = "";
    int rc = connect_wss(&s, host, ca_file, &c, err, sizeof(err));
    server_join(&s);
    assert_null(c);
    if (rc != HERALD_EUNAUTH || !strstr(err, "certificate verify failed: ") || !strstr(err, why))
        fail_msg("want EUNAUTH with '%s', got %d '%s'", why, rc, err);
    assert_false(s.tls_accepted);
    assert_null(strchr(err, '\n'));
}

static void test_ws_client_wss_without_ca_file_uses_system_store_and_refuses(void **state)
{
    pki_t *k = *state;
    expect_verify_failure(k->good, k->key, "127.0.0.1", NULL, "local issuer");
}

static void test_ws_client_wss_certificate_for_other_host_refused(void **state)
{
    pki_t *k = *state;
    expect_verify_failure(k->wrong_host, k->key, "localhost", k->ca_file, "hostname mismatch");
    expect_verify_failure(k->wrong_host, k->key, "127.0.0.1", k->ca_file, "IP address mismatch");
}

static void test_ws_client_wss_expired_certificate_refused(void **state)
{
    pki_t *k = *state;
    expect_verify_failure(k->expired, k->key, "localhost", k->ca_file, "expired");
}

/* Reads the client's 5 bytes, sends 10000 bytes in one record, then reads until
 * the client's close_notify. */
static void script_raw_big_record(server_t *s, peer_t *p)
{
    uint8_t big[10000];
    if (!read_full(p, s->got, 5))
        return;
    s->got_len = 5;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i % 251);
    write_all(p, big, sizeof(big));
    uint8_t b;
    int n = SSL_read(p->ssl, &b, 1);
    s->saw_close_notify = n <= 0 && SSL_get_error(p->ssl, n) == SSL_ERROR_ZERO_RETURN;
    ERR_clear_error();
}

static void test_ws_stream_tls_pending_bytes_read_without_poll_and_close_notify(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start_tls(&s, script_raw_big_record, k->good, k->key);
    s.raw = true;
    server_run(&s);
    url_t u = url_for(&s, "https", "127.0.0.1", "/");
    ws_stream_t st;
    char err[256] = "";
    int rc = ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, NULL, k->ca_file, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %d %s", rc, err);
    assert_non_null(st.ssl);
    assert_int_equal(ws_stream_write(&st, "hello", 5), 0);
    uint8_t buf[100];
    long n = ws_stream_read(&st, buf, sizeof(buf), IO_TIMEOUT_MS);
    assert_int_equal(n, 100);
    /* the rest of the record is inside OpenSSL, not in the socket: a poll would
     * see nothing, a read with no time to wait must still return it */
    assert_true(ws_stream_pending(&st));
    size_t total = (size_t)n;
    for (int i = 0; i < 200 && total < 10000; i++) {
        n = ws_stream_read(&st, buf, sizeof(buf), 0);
        assert_true(n > 0);
        for (long j = 0; j < n; j++)
            assert_int_equal(buf[j], (total + (size_t)j) % 251);
        total += (size_t)n;
    }
    assert_int_equal(total, 10000);
    assert_false(ws_stream_pending(&st));
    assert_int_equal(ws_stream_read(&st, buf, sizeof(buf), 0), HERALD_EAGAIN);
    ws_stream_close(&st);
    ws_stream_close(&st);   /* idempotent */
    server_join(&s);
    assert_int_equal(s.got_len, 5);
    assert_memory_equal(s.got, "hello", 5);
    assert_true(s.saw_close_notify);
}

/* Reads the client's 5 bytes and ends the connection. */
static void script_raw_read_then_close(server_t *s, peer_t *p)
{
    if (read_full(p, s->got, 5))
        s->got_len = 5;
}

static void test_ws_stream_tls_write_to_closed_peer_is_eclosed_not_sigpipe(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start_tls(&s, script_raw_read_then_close, k->good, k->key);
    s.raw = true;
    server_run(&s);
    url_t u = url_for(&s, "wss", "127.0.0.1", "/");
    ws_stream_t st;
    char err[256] = "";
    int rc = ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, NULL, k->ca_file, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %d %s", rc, err);
    assert_int_equal(ws_stream_write(&st, "hello", 5), 0);
    server_join(&s);   /* the server has closed its socket */
    static const char chunk[1024];
    /* the first writes may still be accepted by the kernel; then the peer's reset
     * turns the next into EPIPE, which without SIGPIPE held off would end the test */
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = ws_stream_write(&st, chunk, sizeof(chunk));
        if (rc == 0)
            usleep(10000);
    }
    assert_int_equal(rc, HERALD_ECLOSED);
    ws_stream_close(&st);
}

/* A plain server: reads the ClientHello and answers like an HTTP server would. */
static void script_http_400(server_t *s, peer_t *p)
{
    (void)s;
    uint8_t b[2048];
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (peer_read(p, b, sizeof(b)) > 0)
        write_all(p, resp, sizeof(resp) - 1);
}

static void test_ws_stream_tls_to_plain_http_server_is_eproto(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_http_400);
    s.raw = true;
    server_run(&s);
    url_t u = url_for(&s, "wss", "127.0.0.1", "/ws");
    ws_stream_t st;
    char err[256] = "";
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, NULL, NULL, err, sizeof(err));
    long ms = elapsed_ms(&t0);
    server_join(&s);
    if (rc != HERALD_EPROTO || !strstr(err, "TLS handshake") || !strstr(err, "wrong version number"))
        fail_msg("want EPROTO, wrong version number; got %d '%s'", rc, err);
    assert_true(ms < 2000);
    assert_int_equal(st.fd, -1);
    assert_null(st.ssl);
}

/* A plain server that reads and never answers. */
static void script_silent(server_t *s, peer_t *p)
{
    (void)s;
    uint8_t b[2048];
    while (peer_read(p, b, sizeof(b)) > 0) {
    }
}

static void test_ws_stream_tls_handshake_timeout_is_eunavail(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_silent);
    s.raw = true;
    server_run(&s);
    url_t u = url_for(&s, "wss", "127.0.0.1", "/ws");
    ws_stream_t st;
    char err[256] = "";
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = ws_stream_open_ca(&st, &u, 300, NULL, NULL, err, sizeof(err));
    long ms = elapsed_ms(&t0);
    server_join(&s);
    if (rc != HERALD_EUNAVAIL || !strstr(err, "timed out"))
        fail_msg("want EUNAVAIL, timed out; got %d '%s'", rc, err);
    assert_in_range(ms, 250, 3000);
}

static void on_usr1(int sig)
{
    (void)sig;
}

typedef struct kicker {
    pthread_t target;
    volatile sig_atomic_t *stop;
} kicker_t;

/* Sets the stop flag and interrupts the test thread's poll, as a SIGINT does to
 * herald tail. */
static void *kick_after_150ms(void *arg)
{
    kicker_t *k = arg;
    usleep(150000);
    *k->stop = 1;
    pthread_kill(k->target, SIGUSR1);
    return NULL;
}

static void test_ws_stream_tls_stop_flag_ends_handshake_wait(void **state)
{
    (void)state;
    struct sigaction sa = { .sa_handler = on_usr1 }, old;
    sigemptyset(&sa.sa_mask);   /* no SA_RESTART: the signal must cut the poll short */
    sigaction(SIGUSR1, &sa, &old);
    server_t s;
    server_start(&s, script_silent);
    s.raw = true;
    server_run(&s);
    volatile sig_atomic_t stop = 0;
    kicker_t kick = { .target = pthread_self(), .stop = &stop };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, kick_after_150ms, &kick), 0);
    url_t u = url_for(&s, "wss", "127.0.0.1", "/ws");
    ws_stream_t st;
    char err[256] = "";
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, &stop, NULL, err, sizeof(err));
    long ms = elapsed_ms(&t0);
    pthread_join(th, NULL);
    server_join(&s);
    sigaction(SIGUSR1, &old, NULL);
    assert_int_equal(rc, HERALD_ESTOP);
    assert_true(ms < 2000);
}

static void test_ws_stream_ca_file_missing_or_empty_is_einval(void **state)
{
    pki_t *k = *state;
    server_t s;
    server_start(&s, NULL);   /* never accepted: the kernel completes the TCP handshake */
    url_t u = url_for(&s, "wss", "127.0.0.1", "/ws");
    ws_stream_t st;
    char err[256] = "";
    assert_int_equal(ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, NULL, "/nonexistent/ca.pem", err, sizeof(err)),
                     HERALD_EINVAL);
    assert_non_null(strstr(err, "cannot read CA file /nonexistent/ca.pem"));
    assert_int_equal(ws_stream_open_ca(&st, &u, IO_TIMEOUT_MS, NULL, k->empty_file, err, sizeof(err)),
                     HERALD_EINVAL);
    assert_non_null(strstr(err, "no usable PEM certificate"));
    close(s.listen_fd);
}

static void test_ws_client_ca_file_ignored_for_plain_ws(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, script_echo_close);
    server_run(&s);
    url_t u = server_url(&s, "/ws");
    ws_client_options_t opt = { .timeout_ms = IO_TIMEOUT_MS, .ca_file = "/nonexistent/ca.pem" };
    ws_client_t *c = NULL;
    char err[256] = "";
    assert_int_equal(ws_client_connect(&u, &opt, &c, err, sizeof(err)), 0);
    assert_int_equal(ws_client_close(c, WS_CLOSE_NORMAL), 0);
    ws_client_destroy(c);
    server_join(&s);
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
        cmocka_unit_test(test_ws_client_connection_refused_is_eunavail),
        cmocka_unit_test(test_ws_client_wss_ca_file_sni_alpn_and_masked_frames),
        cmocka_unit_test(test_ws_client_wss_ip_literal_matches_ip_san_and_sends_no_sni),
        cmocka_unit_test(test_ws_client_wss_messages_in_101_record_and_ping),
        cmocka_unit_test(test_ws_client_wss_server_close_notify_then_eof_is_eclosed),
        cmocka_unit_test(test_ws_client_wss_without_ca_file_uses_system_store_and_refuses),
        cmocka_unit_test(test_ws_client_wss_certificate_for_other_host_refused),
        cmocka_unit_test(test_ws_client_wss_expired_certificate_refused),
        cmocka_unit_test(test_ws_stream_tls_pending_bytes_read_without_poll_and_close_notify),
        cmocka_unit_test(test_ws_stream_tls_write_to_closed_peer_is_eclosed_not_sigpipe),
        cmocka_unit_test(test_ws_stream_tls_to_plain_http_server_is_eproto),
        cmocka_unit_test(test_ws_stream_tls_handshake_timeout_is_eunavail),
        cmocka_unit_test(test_ws_stream_tls_stop_flag_ends_handshake_wait),
        cmocka_unit_test(test_ws_stream_ca_file_missing_or_empty_is_einval),
        cmocka_unit_test(test_ws_client_ca_file_ignored_for_plain_ws),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
