/* tls: TLS for the listener (tls.cert_file + tls.key_file: https and wss on the
 * same port), with OpenSSL.
 *
 * One SSL_CTX per server (TLS 1.2 minimum, the certificate chain and key loaded
 * at start). Each accepted connection gets an SSL in server mode over its socket;
 * conn.c reads through tls_read and writes through tls_write, which coalesce
 * queued frames into records (TLS cannot writev) and keep OpenSSL's retry rule (a
 * write that would block is retried with the same bytes). Idle connections release
 * OpenSSL's buffers (SSL_MODE_RELEASE_BUFFERS).
 *
 * Owns: the SSL_CTX; a connection owns its SSL. Thread-safe: the context is
 * read-only after creation; an SSL is used by its connection's worker only. */
#ifndef HERALD_TLS_H
#define HERALD_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_ctx_st tls_ctx_t;   /* SSL_CTX */
typedef struct ssl_st tls_t;           /* SSL */

/* NULL with a message in err when the files cannot be used. */
tls_ctx_t *tls_ctx_create(const char *cert_file, const char *key_file, char *err, size_t err_size);
void tls_ctx_destroy(tls_ctx_t *ctx);

tls_t *tls_new(tls_ctx_t *ctx, int fd);
void tls_free(tls_t *t);   /* sends close_notify when it can, then frees */

/* Like read(2): > 0 bytes, 0 at the peer's close, -1 with errno EAGAIN (wait for
 * input), or -1 with another errno (failed). The handshake happens inside. */
ssize_t tls_read(tls_t *t, void *buf, size_t len);
/* Bytes already decrypted and waiting (read them before sleeping on epoll). */
int tls_pending(tls_t *t);
/* Like write(2) for one buffer: > 0 bytes written, or -1 with errno EAGAIN (retry
 * with the same first bytes) or another errno. */
ssize_t tls_write(tls_t *t, const void *buf, size_t len);

#endif
