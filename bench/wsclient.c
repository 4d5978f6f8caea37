#include "wsclient.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

int wsc_handshake_request(char *out, size_t cap, const char *host, int port, const char *path)
{
    /* A fixed key is enough: the server's accept value is not checked, because a
     * wrong one would only mean a broken server and the benchmark would see that
     * as failed subscriptions anyway. */
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     path, host, port);
    if (n < 0 || (size_t)n >= cap)
        return HERALD_ETOOBIG;
    return n;
}

int wsc_handshake_parse(const uint8_t *buf, size_t len, int *status)
{
    *status = 0;
    /* "HTTP/1.1 101 ..." : the code sits at bytes 9..11. */
    if (len >= 12) {
        if (memcmp(buf, "HTTP/1.", 7) != 0)
            return HERALD_EPROTO;
        int code = 0;
        for (size_t i = 9; i < 12; i++) {
            if (buf[i] < '0' || buf[i] > '9')
                return HERALD_EPROTO;
            code = code * 10 + (buf[i] - '0');
        }
        *status = code;
    }
    const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return HERALD_NEED_MORE;
    if (*status != 101)
        return HERALD_EPROTO;
    return (int)(end - buf) + 4;
}

int wsc_frame_parse(const uint8_t *buf, size_t len, wsc_frame_t *out)
{
    if (len < 2)
        return HERALD_NEED_MORE;
    if (buf[0] & 0x70)
        return HERALD_EPROTO;   /* no extension was negotiated */
    out->fin = (buf[0] & 0x80) != 0;
    out->opcode = buf[0] & 0x0F;
    out->masked = (buf[1] & 0x80) != 0;
    uint64_t plen = buf[1] & 0x7F;
    size_t pos = 2;
    if (plen == 126) {
        if (len < 4)
            return HERALD_NEED_MORE;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        pos = 4;
    } else if (plen == 127) {
        if (len < 10)
            return HERALD_NEED_MORE;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | buf[2 + i];
        if (plen >> 63)
            return HERALD_EPROTO;
        pos = 10;
    }
    if (out->masked) {
        if (len < pos + 4)
            return HERALD_NEED_MORE;
        memcpy(out->mask, buf + pos, 4);
        pos += 4;
    }
    out->payload_len = plen;
    out->header_len = pos;
    return (int)pos;
}

size_t wsc_frame_encode(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                        const uint8_t mask[4])
{
    size_t pos = 0;
    out[pos++] = (uint8_t)(0x80 | (opcode & 0x0F));
    if (len < 126) {
        out[pos++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[pos++] = 0x80 | 126;
        out[pos++] = (uint8_t)(len >> 8);
        out[pos++] = (uint8_t)len;
    } else {
        out[pos++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[pos++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + pos, mask, 4);
    pos += 4;
    if (len)
        memcpy(out + pos, payload, len);
    wsc_unmask(out + pos, len, mask, 0);
    return pos + len;
}

void wsc_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(offset + i) & 3];
}
