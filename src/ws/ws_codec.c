#include "ws/ws_codec.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "core/err.h"
#include "ws/utf8.h"

/* ---- frame layer ---- */

int ws_frame_header_parse(const uint8_t *buf, size_t len, ws_frame_header_t *out)
{
    if (len < 2)
        return HERALD_NEED_MORE;
    uint8_t b0 = buf[0], b1 = buf[1];
    uint8_t len7 = b1 & 0x7F;
    size_t hl = 2;
    if (len7 == 126)
        hl += 2;
    else if (len7 == 127)
        hl += 8;
    bool masked = (b1 & 0x80) != 0;
    if (masked)
        hl += 4;
    /* Refuse a 64-bit length with the top bit set as soon as its first byte is
     * here: no point waiting for the other seven. */
    if (len7 == 127 && len >= 3 && (buf[2] & 0x80))
        return HERALD_EPROTO;
    if (len < hl)
        return HERALD_NEED_MORE;

    uint64_t plen = len7;
    const uint8_t *p = buf + 2;
    if (len7 == 126) {
        plen = (uint64_t)p[0] << 8 | p[1];
        p += 2;
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | p[i];
        p += 8;
    }
    out->fin = (b0 & 0x80) != 0;
    out->rsv = (b0 >> 4) & 0x7;
    out->opcode = b0 & 0x0F;
    out->masked = masked;
    if (masked)
        memcpy(out->mask, p, 4);
    else
        memset(out->mask, 0, 4);
    out->payload_len = plen;
    out->header_len = hl;
    return (int)hl;
}

size_t ws_frame_header_encode(uint8_t *out, uint8_t opcode, bool fin, uint64_t payload_len,
                              const uint8_t *mask)
{
    size_t n = 0;
    uint8_t mbit = mask ? 0x80 : 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (payload_len <= 125) {
        out[n++] = (uint8_t)(mbit | payload_len);
    } else if (payload_len <= 0xFFFF) {
        out[n++] = mbit | 126;
        out[n++] = (uint8_t)(payload_len >> 8);
        out[n++] = (uint8_t)payload_len;
    } else {
        out[n++] = mbit | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (uint8_t)(payload_len >> shift);
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* The mask rotated to `offset`, repeated over 8 bytes: then XOR a word at a
     * time. memcpy loads and stores are alignment-safe and compile to plain moves;
     * building the word from bytes keeps it independent of byte order. */
    uint8_t rot[8];
    for (int i = 0; i < 8; i++)
        rot[i] = mask[(offset + (uint64_t)i) & 3];
    uint64_t m64;
    memcpy(&m64, rot, 8);
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= m64;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= rot[i & 7];
}

size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (!reason)
        return 2;
    size_t n = strlen(reason);
    if (n > 123) {
        n = 123;
        /* Cut at a character boundary, so a truncated reason stays valid UTF-8
         * (the peer would otherwise fail the close with 1007). */
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(out + 2, reason, n);
    return 2 + n;
}

bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- message layer ----
 *
 * r->buf holds, in order: the payload of the fragmented message received so far
 * (msg_len bytes), then the incomplete frame at the end of the last feed
 * (partial_len bytes: its header as received, then its payload prefix, already
 * unmasked and, for text, already validated). A frame's header is re-parsed from
 * the buffer on the next feed rather than kept in the reader, which keeps
 * ws_reader_t small; 14 bytes of parsing per feed is nothing next to a read(). */

static size_t msg_len(const ws_reader_t *r)
{
    return r->buf_len - r->partial_len;
}

static void buf_release(ws_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->buf_len = r->buf_cap = r->partial_len = 0;
}

/* An idle reader owns no heap memory: drop the buffer the moment it is empty. */
static void buf_trim(ws_reader_t *r)
{
    if (r->buf_len == 0)
        buf_release(r);
}

static int fail(ws_reader_t *r, int close_code, int err)
{
    buf_release(r);
    r->in_message = false;
    r->close_code = close_code;
    return err;
}

static int err_of_close_code(int code)
{
    switch (code) {
    case WS_CLOSE_BAD_DATA: return HERALD_EUTF8;
    case WS_CLOSE_TOO_BIG: return HERALD_ETOOBIG;
    case WS_CLOSE_INTERNAL: return HERALD_ENOMEM;
    default: return HERALD_EPROTO;
    }
}

/* Room for `extra` more bytes. Grows by doubling, so memory stays within twice
 * what the peer actually sent: a frame that announces 60 KB and sends one byte
 * costs 256 bytes, not 60 KB. `final` (the buffer's size once the current frame is
 * complete, when known) caps the growth so the last step does not overshoot. */
static int buf_reserve(ws_reader_t *r, size_t extra, uint64_t final)
{
    if (extra > SIZE_MAX - r->buf_len)
        return fail(r, WS_CLOSE_INTERNAL, HERALD_ENOMEM);
    size_t need = r->buf_len + extra;
    if (need <= r->buf_cap)
        return 0;
    size_t cap = r->buf_cap ? r->buf_cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    if (final >= need && final < cap)
        cap = (size_t)final;
    uint8_t *nb = realloc(r->buf, cap);
    if (!nb)
        return fail(r, WS_CLOSE_INTERNAL, HERALD_ENOMEM);
    r->buf = nb;
    r->buf_cap = cap;
    return 0;
}

static int buf_append(ws_reader_t *r, const uint8_t *p, size_t n, uint64_t final)
{
    if (n == 0)
        return 0;
    int rc = buf_reserve(r, n, final);
    if (rc)
        return rc;
    memcpy(r->buf + r->buf_len, p, n);
    r->buf_len += n;
    return 0;
}

/* The buffer size once a frame starting at buf_len is complete, saturated. */
static uint64_t frame_final(const ws_reader_t *r, const ws_frame_header_t *h, bool with_header)
{
    uint64_t base = (uint64_t)r->buf_len + (with_header ? h->header_len : 0);
    return h->payload_len > UINT64_MAX - base ? UINT64_MAX : base + h->payload_len;
}

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

static bool is_text(const ws_reader_t *r, const ws_frame_header_t *h)
{
    return !is_control(h->opcode) && r->message_opcode == WS_OP_TEXT;
}

/* Every rule that the header alone decides, checked once per frame as soon as
 * its header is complete (before any payload is buffered). */
static int frame_begin(ws_reader_t *r, const ws_frame_header_t *h)
{
    if (h->rsv)
        return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);   /* no extension negotiated */
    if (h->masked != r->expect_masked)
        return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
    switch (h->opcode) {
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!h->fin || h->payload_len > 125)
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        return 0;
    case WS_OP_CONT:
        if (!r->in_message)
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        break;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (r->in_message)
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        r->message_opcode = h->opcode;
        r->utf8_state = UTF8_ACCEPT;
        break;
    default:
        return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
    }
    /* Data frame: the message so far (0 for a first frame) plus this payload.
     * msg_len <= max holds, so the subtraction cannot wrap. */
    if (r->max_message_bytes) {
        uint64_t so_far = r->in_message ? msg_len(r) : 0;
        if (h->payload_len > r->max_message_bytes - so_far)
            return fail(r, WS_CLOSE_TOO_BIG, HERALD_ETOOBIG);
    }
    return 0;
}

/* Payload bytes [offset, offset+n) of the frame have arrived at p: unmask them in
 * place and, for text, carry the UTF-8 state on, failing at the first bad byte. */
static int frame_payload(ws_reader_t *r, const ws_frame_header_t *h, uint64_t offset,
                         uint8_t *p, size_t n)
{
    if (h->masked)
        ws_mask_apply(p, n, h->mask, offset);
    if (is_text(r, h)) {
        r->utf8_state = utf8_feed(r->utf8_state, p, n);
        if (r->utf8_state == UTF8_REJECT)
            return fail(r, WS_CLOSE_BAD_DATA, HERALD_EUTF8);
    }
    return 0;
}

/* The end of a text message must also be the end of a character. */
static int message_end_check(ws_reader_t *r)
{
    if (r->message_opcode == WS_OP_TEXT && r->utf8_state != UTF8_ACCEPT)
        return fail(r, WS_CLOSE_BAD_DATA, HERALD_EUTF8);
    return 0;
}

static int control_deliver(ws_reader_t *r, uint8_t opcode, uint8_t *p, size_t n,
                           const ws_reader_callbacks_t *cb, void *ctx)
{
    if (opcode == WS_OP_CLOSE && n > 0) {
        if (n == 1)
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        uint16_t code = (uint16_t)(p[0] << 8 | p[1]);
        if (!ws_close_code_valid(code))
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        if (!utf8_valid(p + 2, n - 2))
            return fail(r, WS_CLOSE_BAD_DATA, HERALD_EUTF8);
    }
    if (cb->on_control && cb->on_control(ctx, opcode, p, n))
        return HERALD_ESTOP;   /* r is not touched again: the handler may have freed it */
    return 0;
}

/* Delivers the reassembled message in r->buf. The reader gives up the buffer
 * before the callback, so it is consistent (idle, no heap) whatever the callback
 * does, and the buffer is freed here whatever it returns. */
static int message_deliver(ws_reader_t *r, uint8_t *m, size_t n, uint8_t *data,
                           const ws_reader_callbacks_t *cb, void *ctx)
{
    uint8_t empty[1];
    uint8_t opcode = r->message_opcode;
    r->buf = NULL;
    r->buf_len = r->buf_cap = r->partial_len = 0;
    r->in_message = false;
    int stop = cb->on_message ? cb->on_message(ctx, opcode, data ? data : empty, n) : 0;
    free(m);
    return stop ? HERALD_ESTOP : 0;
}

/* A whole frame whose payload p[0..n) lies in the caller's buffer (unmasked). */
static int frame_end_direct(ws_reader_t *r, const ws_frame_header_t *h, uint8_t *p, size_t n,
                            const ws_reader_callbacks_t *cb, void *ctx)
{
    if (is_control(h->opcode))
        return control_deliver(r, h->opcode, p, n, cb, ctx);
    if (h->fin && h->opcode != WS_OP_CONT) {
        /* The common case: a whole message inside one read, handed over in place. */
        int rc = message_end_check(r);
        if (rc)
            return rc;
        if (cb->on_message && cb->on_message(ctx, h->opcode, p, n))
            return HERALD_ESTOP;
        return 0;
    }
    int rc = buf_append(r, p, n, h->fin ? (uint64_t)r->buf_len + n : 0);
    if (rc)
        return rc;
    r->in_message = true;
    if (!h->fin)
        return 0;
    rc = message_end_check(r);
    if (rc)
        return rc;
    return message_deliver(r, r->buf, r->buf_len, r->buf, cb, ctx);
}

/* The incomplete frame at the end of r->buf has just become complete. */
static int frame_end_buffered(ws_reader_t *r, const ws_frame_header_t *h,
                              const ws_reader_callbacks_t *cb, void *ctx)
{
    size_t start = msg_len(r);
    uint8_t *p = r->buf + start + h->header_len;
    size_t n = (size_t)h->payload_len;   /* it is in memory, so it fits */
    if (is_control(h->opcode)) {
        /* A copy of at most 125 bytes lets the buffer go back to holding just the
         * message in progress (or nothing) before the callback runs. */
        uint8_t ctl[125];
        memcpy(ctl, p, n);
        r->buf_len = start;
        r->partial_len = 0;
        buf_trim(r);
        return control_deliver(r, h->opcode, ctl, n, cb, ctx);
    }
    int rc;
    if (h->fin && h->opcode != WS_OP_CONT) {
        rc = message_end_check(r);
        if (rc)
            return rc;
        return message_deliver(r, r->buf, n, n ? p : NULL, cb, ctx);
    }
    /* A fragment: move its payload over its header, next to the message so far. */
    memmove(r->buf + start, p, n);
    r->buf_len = start + n;
    r->partial_len = 0;
    r->in_message = true;
    if (!h->fin) {
        buf_trim(r);
        return 0;
    }
    rc = message_end_check(r);
    if (rc)
        return rc;
    return message_deliver(r, r->buf, r->buf_len, r->buf, cb, ctx);
}

/* A frame whose header h (hdr[0..header_len)) is complete and whose payload starts
 * at data[*pos]. Handles it in place if all of it is there, else keeps header and
 * payload prefix in r->buf. */
static int frame_start(ws_reader_t *r, const ws_frame_header_t *h, const uint8_t *hdr,
                       uint8_t *data, size_t len, size_t *pos,
                       const ws_reader_callbacks_t *cb, void *ctx)
{
    int rc = frame_begin(r, h);
    if (rc)
        return rc;
    size_t avail = len - *pos;
    uint8_t *p = data + *pos;
    if (h->payload_len <= avail) {
        size_t n = (size_t)h->payload_len;
        rc = frame_payload(r, h, 0, p, n);
        if (rc)
            return rc;
        *pos += n;
        rc = frame_end_direct(r, h, p, n, cb, ctx);
        if (rc == 0)
            buf_trim(r);
        return rc;
    }
    rc = frame_payload(r, h, 0, p, avail);
    if (rc)
        return rc;
    uint64_t final = frame_final(r, h, true);
    rc = buf_reserve(r, h->header_len + avail, final);
    if (rc)
        return rc;
    memcpy(r->buf + r->buf_len, hdr, h->header_len);
    memcpy(r->buf + r->buf_len + h->header_len, p, avail);
    r->buf_len += h->header_len + avail;
    r->partial_len = h->header_len + avail;
    *pos = len;
    return 0;
}

/* Feed bytes to the incomplete frame kept from the previous feed. On return 0,
 * either data[0..*pos) completed it and was handled, or all of data was kept. */
static int partial_continue(ws_reader_t *r, uint8_t *data, size_t len, size_t *pos,
                            const ws_reader_callbacks_t *cb, void *ctx)
{
    size_t start = msg_len(r);
    size_t plen = r->partial_len;
    ws_frame_header_t h;
    int rc = ws_frame_header_parse(r->buf + start, plen, &h);
    if (rc > 0) {
        /* Header already checked when it completed; only payload is missing. */
        uint64_t have = plen - h.header_len;
        uint64_t need = h.payload_len - have;
        size_t take = need < len ? (size_t)need : len;
        rc = frame_payload(r, &h, have, data, take);
        if (rc)
            return rc;
        rc = buf_append(r, data, take, frame_final(r, &h, false) - have);
        if (rc)
            return rc;
        r->partial_len += take;
        *pos = take;
        if (take < need)
            return 0;
        return frame_end_buffered(r, &h, cb, ctx);
    }
    if (rc != HERALD_NEED_MORE)
        return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);

    /* The header itself was cut: complete it in a stack copy, so a frame whose
     * payload is all in `data` is still handled without copying the payload. */
    uint8_t tmp[WS_MAX_HEADER_LEN];
    size_t k = WS_MAX_HEADER_LEN - plen < len ? WS_MAX_HEADER_LEN - plen : len;
    memcpy(tmp, r->buf + start, plen);
    memcpy(tmp + plen, data, k);
    rc = ws_frame_header_parse(tmp, plen + k, &h);
    if (rc == HERALD_NEED_MORE) {
        rc = buf_append(r, data, len, 0);
        if (rc)
            return rc;
        r->partial_len += len;
        *pos = len;
        return 0;
    }
    if (rc < 0)
        return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
    r->buf_len = start;
    r->partial_len = 0;
    buf_trim(r);
    *pos = h.header_len - plen;
    return frame_start(r, &h, tmp, data, len, pos, cb, ctx);
}

void ws_reader_init(ws_reader_t *r, bool expect_masked, uint64_t max_message_bytes)
{
    memset(r, 0, sizeof(*r));
    r->expect_masked = expect_masked;
    r->max_message_bytes = max_message_bytes;
}

void ws_reader_deinit(ws_reader_t *r)
{
    buf_release(r);
    r->in_message = false;
    r->message_opcode = 0;
    r->utf8_state = UTF8_ACCEPT;
}

int ws_reader_feed(ws_reader_t *r, uint8_t *data, size_t len,
                   const ws_reader_callbacks_t *cb, void *ctx)
{
    if (r->close_code)
        return err_of_close_code(r->close_code);   /* the connection is already failed */
    if (len == 0)
        return 0;
    size_t pos = 0;
    int rc;
    if (r->partial_len) {
        rc = partial_continue(r, data, len, &pos, cb, ctx);
        if (rc)
            return rc;
    }
    while (pos < len) {
        ws_frame_header_t h;
        rc = ws_frame_header_parse(data + pos, len - pos, &h);
        if (rc == HERALD_NEED_MORE) {
            size_t n = len - pos;
            rc = buf_append(r, data + pos, n, 0);
            if (rc)
                return rc;
            r->partial_len = n;
            return 0;
        }
        if (rc < 0)
            return fail(r, WS_CLOSE_PROTOCOL, HERALD_EPROTO);
        const uint8_t *hdr = data + pos;
        pos += h.header_len;
        rc = frame_start(r, &h, hdr, data, len, &pos, cb, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- handshake helpers ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void ws_accept_key(const char *key, size_t key_len, char out[29])
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char small[128];
    const size_t glen = sizeof(WS_GUID) - 1;
    if (key_len <= sizeof(small) - glen) {
        /* Real keys are 24 characters: one stack buffer, one-shot SHA-1. */
        memcpy(small, key, key_len);
        memcpy(small + key_len, WS_GUID, glen);
        SHA1((const unsigned char *)small, key_len + glen, digest);
    } else {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || !EVP_DigestInit_ex(md, EVP_sha1(), NULL) ||
            !EVP_DigestUpdate(md, key, key_len) || !EVP_DigestUpdate(md, WS_GUID, glen) ||
            !EVP_DigestFinal_ex(md, digest, NULL)) {
            EVP_MD_CTX_free(md);
            out[0] = '\0';
            return;
        }
        EVP_MD_CTX_free(md);
    }
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);   /* 28 chars + NUL */
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool ws_key_valid(const char *key, size_t key_len)
{
    /* 16 bytes are 22 base64 characters and "==". The 4 unused bits of the 22nd
     * character are not checked: common decoders ignore them too. */
    if (!key || key_len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key[i]))
            return false;
    return true;
}
