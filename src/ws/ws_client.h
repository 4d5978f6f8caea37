/* ws_client: a blocking WebSocket client connection (RFC 6455, client side), for
 * `herald tail` and tests. Every wait is a poll() with a timeout.
 *
 * Two layers:
 *  - ws_stream_t: the byte stream under a client connection: a TCP socket with
 *    deadlines on connect, read and write, and for https:// and wss:// a TLS
 *    client (OpenSSL, an SSL * beside the fd): TLS 1.2 or newer, SNI, ALPN
 *    http/1.1, the certificate verified against the system trust store (or a CA
 *    file given by the caller) and checked against the URL's host. There is no
 *    way to turn verification off. `herald publish` uses it for its HTTP request.
 *  - ws_client_t: the HTTP upgrade (random key, Sec-WebSocket-Accept checked), then
 *    text messages in, masked frames out, pings answered, the close handshake.
 *
 * Owns: its socket, its SSL, its ws_reader_t and the messages it has read but not
 * yet returned. Does not own: the url and options (copied or borrowed only during
 * the call). Not thread-safe: one thread uses a connection at a time; different
 * connections may be used on different threads. SIGPIPE is held off around each
 * OpenSSL call, so a peer that went away gives an error, not a signal. */
#ifndef HERALD_WS_CLIENT_H
#define HERALD_WS_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/url.h"

/* ---- byte stream ---- */

struct ssl_st;

typedef struct ws_stream {
    int fd;
    int timeout_ms;                      /* each read/write waits at most this long */
    const volatile sig_atomic_t *stop;   /* set by a signal handler: waits give up (may be NULL) */
    struct ssl_st *ssl;                  /* https/wss: the TLS connection over fd; NULL: plain */
} ws_stream_t;

/* Resolves url's host, connects to the first address that answers and, for
 * https:// and wss://, completes the TLS handshake, all within timeout_ms. The
 * server's certificate is verified against the system trust store (OpenSSL's
 * default paths: Debian's ca-certificates; SSL_CERT_FILE / SSL_CERT_DIR override
 * them), or, when ca_file is set, against the PEM certificates in that file
 * instead; its name must match url's host (a DNS name, or an IP address for an IP
 * literal, which is then not sent as SNI). ca_file is ignored for plain URLs.
 * Returns 0, or a negative code with a one-line reason in err:
 *   HERALD_EUNAVAIL  resolution failed, refused, timed out, or the connection was
 *                    dropped during the TLS handshake (worth retrying)
 *   HERALD_EUNAUTH   "certificate verify failed: <reason>": untrusted, expired, or
 *                    issued for another name (not worth retrying as is)
 *   HERALD_EPROTO    "TLS handshake ... failed: <reason>": the server does not speak
 *                    TLS, or no protocol version or cipher in common
 *   HERALD_EINVAL    ca_file cannot be read or holds no certificate
 *   HERALD_ESTOP     *stop was set
 * On failure nothing is left open; ws_stream_close is allowed anyway. */
int ws_stream_open_ca(ws_stream_t *s, const url_t *url, int timeout_ms,
                      const volatile sig_atomic_t *stop, const char *ca_file,
                      char *err, size_t err_size);
/* ws_stream_open_ca with the system trust store (ca_file NULL). */
int ws_stream_open(ws_stream_t *s, const url_t *url, int timeout_ms,
                   const volatile sig_atomic_t *stop, char *err, size_t err_size);
/* Writes all of buf. 0, HERALD_EAGAIN (timed out), HERALD_ECLOSED, HERALD_EIO, HERALD_ESTOP. */
int ws_stream_write(ws_stream_t *s, const void *buf, size_t len);
/* Reads what is available, waiting up to timeout_ms (-1: no limit, though *stop
 * still ends the wait). Bytes already decrypted inside OpenSSL are returned at
 * once, without a poll. Returns the byte count (> 0), HERALD_ECLOSED at end of
 * stream (a TLS peer's close_notify, or its TCP close without one, as servers
 * behind load balancers often do), HERALD_EAGAIN when the wait ended with nothing,
 * HERALD_EIO (including a TLS record that fails to decrypt), HERALD_ESTOP. */
long ws_stream_read(ws_stream_t *s, void *buf, size_t len, int timeout_ms);
/* True when a read would return bytes without waiting (TLS data buffered inside
 * OpenSSL): a caller that polls s->fd itself must check this first. */
bool ws_stream_pending(const ws_stream_t *s);
/* Sends TLS close_notify (best effort, never waits), then closes the socket.
 * Idempotent. */
void ws_stream_close(ws_stream_t *s);

/* ---- WebSocket connection ---- */

typedef struct ws_client ws_client_t;

typedef struct ws_client_options {
    int timeout_ms;                      /* connect, handshake, each write; 0: 10 s */
    const char *bearer;                  /* sent as "Authorization: Bearer ..." when set */
    uint64_t max_message_bytes;          /* 0: 16 MiB */
    const volatile sig_atomic_t *stop;   /* see ws_stream_t; may be NULL */
    const char *ca_file;                 /* wss: PEM CAs trusted instead of the system store;
                                          * NULL: the system store (see ws_stream_open_ca) */
} ws_client_options_t;

typedef struct ws_client_msg {
    uint8_t opcode;          /* WS_OP_TEXT, or WS_OP_CLOSE when the server closed */
    const char *data;        /* TEXT: the message, NUL-terminated; CLOSE: the reason */
    size_t len;
    uint16_t close_code;     /* CLOSE: the server's code, 1005 when it gave none */
} ws_client_msg_t;

/* Connects and upgrades. On success *out is a new connection (free it with
 * ws_client_destroy). On failure returns a negative code (see ws_stream_open;
 * HERALD_EPROTO also for a response that is not a valid upgrade, HERALD_EUNAUTH
 * also for a 401/403) with a one-line reason in err. Borrows url and opt. */
int ws_client_connect(const url_t *url, const ws_client_options_t *opt, ws_client_t **out,
                      char *err, size_t err_size);

/* Sends one text message as a single masked frame (fresh random mask).
 * 0 or a negative code (HERALD_ECLOSED once a close was sent or received). */
int ws_client_send_text(ws_client_t *c, const char *data, size_t len);

/* Waits up to timeout_ms (-1: forever, still woken by *stop) for the next text
 * message or the server's close, answering pings meanwhile; binary messages are
 * skipped (herald's protocols are text). Returns 0 with *msg filled (its data valid
 * until the next call on c), HERALD_EAGAIN when the time ran out, HERALD_ESTOP when
 * *stop was set, or a negative error after which the connection is dead: HERALD_ECLOSED
 * (closed without a close frame, or recv after CLOSE was returned), HERALD_EPROTO /
 * HERALD_EUTF8 / HERALD_ETOOBIG (the server broke the protocol; a close with the
 * matching code has been sent), HERALD_EIO. */
int ws_client_recv(ws_client_t *c, int timeout_ms, ws_client_msg_t *msg);

/* Close handshake: sends a close frame with code (unless one was already sent) and
 * waits up to the connection's timeout for the server's close, dropping messages
 * still in flight. Returns 0 when the server answered, else a negative code. */
int ws_client_close(ws_client_t *c, uint16_t code);

/* Closes the socket and frees everything. NULL is allowed. */
void ws_client_destroy(ws_client_t *c);

#endif
