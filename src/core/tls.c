#include "core/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

tls_ctx_t *tls_ctx_create(const char *cert_file, const char *key_file, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, err_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, err_size, "cannot load tls.cert_file %s", cert_file);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, err_size, "cannot load tls.key_file %s", key_file);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, err_size, "tls.key_file does not match tls.cert_file");
    } else {
        ERR_clear_error();
        return ctx;
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_ctx_destroy(tls_ctx_t *ctx) { SSL_CTX_free(ctx); }

tls_t *tls_new(tls_ctx_t *ctx, int fd)
{
    SSL *s = SSL_new(ctx);
    if (!s) return NULL;
    if (SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

void tls_free(tls_t *t)
{
    if (!t) return;
    if (SSL_is_init_finished(t)) SSL_shutdown(t);   /* close_notify, best effort, never waits */
    SSL_free(t);
    ERR_clear_error();
}

/* Maps an OpenSSL result to the read(2)/write(2) convention. */
static ssize_t result(tls_t *t, int n)
{
    if (n > 0) return n;
    int e = SSL_get_error(t, n);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) errno = ECONNRESET;
        return -1;
    default:
        errno = EPROTO;   /* a handshake or record the peer got wrong */
        return -1;
    }
}

ssize_t tls_read(tls_t *t, void *buf, size_t len)
{
    errno = 0;
    return result(t, SSL_read(t, buf, len > INT32_MAX ? INT32_MAX : (int)len));
}

int tls_pending(tls_t *t) { return SSL_pending(t); }

ssize_t tls_write(tls_t *t, const void *buf, size_t len)
{
    errno = 0;
    return result(t, SSL_write(t, buf, len > INT32_MAX ? INT32_MAX : (int)len));
}
