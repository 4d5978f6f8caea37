/* libFuzzer target for sio_codec: the input is a polling body. Each Engine.IO
 * packet is checked against the input bounds; each text message is parsed as a
 * Socket.IO packet, its invariants checked, and events, acks and disconnects are
 * re-encoded and parsed again, which must give the same packet back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "proto/sio_codec.h"
#include "ws/utf8.h"

#define MAX_PACKETS 32

struct fuzz_ctx {
    const char *in;
    size_t in_len;
};

static void check(int cond)
{
    if (!cond)
        abort();
}

static bool inside(const struct fuzz_ctx *c, const char *p, size_t n)
{
    return p >= c->in && p <= c->in + c->in_len && n <= (size_t)(c->in + c->in_len - p);
}

/* Encodes 42["name",args...] from a parsed event payload. */
static int encode_event(buf_t *b, const char *nsp, const json_t *data)
{
    size_t n = json_array_size(data);
    const json_t *name = json_array_get(data, 0);
    char **args = calloc(n, sizeof *args);
    check(args != NULL);
    for (size_t i = 1; i < n; i++) {
        args[i - 1] = json_dumps(json_array_get(data, i), JSON_COMPACT | JSON_ENCODE_ANY);
        check(args[i - 1] != NULL);
    }
    int rc = sio_encode_event(b, nsp, json_string_value(name), json_string_length(name),
                              (const char *const *)args, NULL, n - 1);
    for (size_t i = 0; i + 1 < n; i++)
        free(args[i]);
    free(args);
    return rc;
}

/* Encodes 43<id>[arg] when the ack carries at most one argument; 1 when it can't. */
static int encode_ack(buf_t *b, const char *nsp, int64_t id, const json_t *data)
{
    size_t n = json_array_size(data);
    if (n > 1)
        return 1;
    char *arg = n ? json_dumps(json_array_get(data, 0), JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    check(n == 0 || arg != NULL);
    int rc = sio_encode_ack(b, nsp, id, arg, arg ? strlen(arg) : 0);
    free(arg);
    return rc;
}

static void reparse(const sio_packet_t *p, char *nsp)
{
    buf_t b = {0};
    int type = p->type;
    int rc;
    if (type == SIO_EVENT || type == SIO_BINARY_EVENT) {
        rc = encode_event(&b, nsp, p->data);
        type = SIO_EVENT;
    } else if (type == SIO_ACK || type == SIO_BINARY_ACK) {
        rc = encode_ack(&b, nsp, p->ack_id, p->data);
        type = SIO_ACK;
    } else if (type == SIO_DISCONNECT) {
        rc = sio_encode_disconnect(&b, nsp);
    } else {
        rc = 1;
    }
    check(rc == 0 || rc == 1);
    if (rc == 0) {
        eio_packet_t e;
        check(eio_parse(b.data, b.len, &e) == 0);
        check(e.type == EIO_MESSAGE && !e.binary);
        /* An exact-size copy so an over-read of the re-encoded packet is caught too. */
        char *copy = malloc(e.len ? e.len : 1);
        check(copy != NULL);
        memcpy(copy, e.data, e.len);
        sio_packet_t q;
        check(sio_parse(copy, e.len, &q) == 0);
        check(q.type == type);
        check(q.nsp_len == p->nsp_len && memcmp(q.nsp, p->nsp, q.nsp_len) == 0);
        check(q.attachments == 0);
        check(q.ack_id == (type == SIO_ACK ? p->ack_id : SIO_NO_ACK));
        check((q.data == NULL) == (p->data == NULL));
        check(q.data == NULL || json_equal(q.data, p->data));
        sio_packet_clear(&q);
        free(copy);
    }
    buf_free(&b);
}

static void check_sio(const struct fuzz_ctx *c, const char *text, size_t len)
{
    sio_packet_t p;
    int rc = sio_parse(text, len, &p);
    if (rc != 0) {
        check(rc == HERALD_EINVAL);
        check(p.data == NULL && p.ack_id == SIO_NO_ACK);
        return;
    }
    check(p.type >= SIO_CONNECT && p.type <= SIO_BINARY_ACK);
    check(p.nsp_len >= 1 && p.nsp[0] == '/');
    check(inside(c, p.nsp, p.nsp_len) || (p.nsp_len == 1 && p.nsp[0] == '/'));
    check(memchr(p.nsp, ',', p.nsp_len) == NULL);
    check(utf8_valid((const uint8_t *)p.nsp, p.nsp_len));
    check(p.ack_id == SIO_NO_ACK || (p.ack_id >= 0 && p.ack_id <= SIO_MAX_ACK_ID));
    bool binary = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
    check(binary ? p.attachments >= 1 && p.attachments <= SIO_MAX_ATTACHMENTS : p.attachments == 0);
    if (p.type == SIO_ACK || p.type == SIO_BINARY_ACK)
        check(p.ack_id != SIO_NO_ACK && json_is_array(p.data));
    if (p.type == SIO_EVENT || p.type == SIO_BINARY_EVENT)
        check(json_is_string(json_array_get(p.data, 0)));
    if (p.type == SIO_DISCONNECT)
        check(p.data == NULL);

    char *nsp = strndup(p.nsp, p.nsp_len);
    check(nsp != NULL);
    reparse(&p, nsp);
    free(nsp);
    sio_packet_clear(&p);
}

static int on_packet(void *arg, const eio_packet_t *e)
{
    struct fuzz_ctx *c = arg;
    check(e->type >= EIO_OPEN && e->type <= EIO_NOOP);
    check(inside(c, e->data, e->len));
    check(memchr(e->data, 0x1e, e->len) == NULL);
    if (e->binary) {
        check(e->type == EIO_MESSAGE && e->len % 4 == 0);
        return 0;
    }
    if (e->type == EIO_MESSAGE)
        check_sio(c, e->data, e->len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_ctx c = {(const char *)data, size};
    int rc = eio_parse_payload(c.in, size, MAX_PACKETS, on_packet, &c);
    check(rc == 0 || rc == HERALD_EINVAL || rc == HERALD_ETOOBIG);
    /* The whole input as one WebSocket text frame. */
    eio_packet_t e;
    if (eio_parse(c.in, size, &e) == 0 && !e.binary && e.type == EIO_MESSAGE) {
        check(inside(&c, e.data, e.len));
        check_sio(&c, e.data, e.len);
    }
    return 0;
}
