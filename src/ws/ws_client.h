/* ws_client: a blocking WebSocket client connection (RFC 6455, client side), for
 * `herald tail` and tests. Every wait is a poll() with a timeout.
 *
 * Two layers:
 *  - ws_stream_t: the byte stream under a client connection: a TCP socket with
 *    deadlines on connect, read and write. TLS will slot in here (an SSL * beside the
 *    fd, used by ws_stream_read/ws_stream_write); until then https:// and wss:// are
 *    refused with "TLS not supported yet". `herald publish` uses it for its plain
 *    HTTP request.
 *  - ws_client_t: the HTTP upgrade (random key, Sec-WebSocket-Accept checked), then
 *    text messages in, masked frames out, pings answered, the close handshake.
 *
 * Owns: its socket, its ws_reader_t and the messages it has read but not yet
 * returned. Does not own: the url and options (copied or borrowed only during the
 * call). Not thread-safe: one thread uses a connection at a time. */
#ifndef HERALD_WS_CLIENT_H
#define HERALD_WS_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "http/url.h"

/* ---- byte stream ---- */

typedef struct ws_stream {
    int fd;
    int timeout_ms;                      /* each read/write waits at most this long */
    const volatile sig_atomic_t *stop;   /* set by a signal handler: waits give up (may be NULL) */
} ws_stream_t;

/* Resolves url's host, connects to the first address that answers within
 * timeout_ms and returns 0, or a negative code with a one-line reason in err:
 * HERALD_EUNAVAIL (resolution failed, refused, timed out), HERALD_EINVAL (TLS
 * scheme, not supported yet), HERALD_ESTOP (*stop was set). */
int ws_stream_open(ws_stream_t *s, const url_t *url, int timeout_ms,
                   const volatile sig_atomic_t *stop, char *err, size_t err_size);
/* Writes all of buf. 0, HERALD_EAGAIN (timed out), HERALD_ECLOSED, HERALD_EIO, HERALD_ESTOP. */
int ws_stream_write(ws_stream_t *s, const void *buf, size_t len);
/* Reads what is available, waiting up to timeout_ms (-1: no limit, though *stop
 * still ends the wait). Returns the byte count (> 0), HERALD_ECLOSED at end of
 * stream, HERALD_EAGAIN when the wait ended with nothing, HERALD_EIO, HERALD_ESTOP. */
long ws_stream_read(ws_stream_t *s, void *buf, size_t len, int timeout_ms);
void ws_stream_close(ws_stream_t *s);

/* ---- WebSocket connection ---- */

typedef struct ws_client ws_client_t;

typedef struct ws_client_options {
    int timeout_ms;                      /* connect, handshake, each write; 0: 10 s */
    const char *bearer;                  /* sent as "Authorization: Bearer ..." when set */
    uint64_t max_message_bytes;          /* 0: 16 MiB */
    const volatile sig_atomic_t *stop;   /* see ws_stream_t; may be NULL */
} ws_client_options_t;

typedef struct ws_client_msg {
    uint8_t opcode;          /* WS_OP_TEXT, or WS_OP_CLOSE when the server closed */
    const char *data;        /* TEXT: the message, NUL-terminated; CLOSE: the reason */
    size_t len;
    uint16_t close_code;     /* CLOSE: the server's code, 1005 when it gave none */
} ws_client_msg_t;

/* Connects and upgrades. On success *out is a new connection (free it with
 * ws_client_destroy). On failure returns a negative code (see ws_stream_open;
 * HERALD_EPROTO for a response that is not a valid upgrade, HERALD_EUNAUTH for
 * a 401/403) with a one-line reason in err. Borrows url and opt. */
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
