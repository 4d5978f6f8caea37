/* sio_codec: Engine.IO v4 and Socket.IO v5 wire formats. See sio_codec.h.
 *
 * The parser is stricter than the reference JavaScript decoder wherever that
 * decoder accepts something no real client sends and that would only make the
 * server's view ambiguous: ack ids that lose precision, namespaces that swallow a
 * JSON payload because the comma is missing, whitespace read as an ack id of 0,
 * ack ids on packet types that carry none. Everything a socket.io-client or
 * python-socketio client emits is accepted. */
#include "proto/sio_codec.h"

#include <inttypes.h>
#include <string.h>

#include "core/err.h"
#include "ws/utf8.h"

#define RS 0x1e   /* record separator between packets of a polling body */

/* The events the reference decoders refuse in an EVENT packet: sending one to a
 * client makes its decoder throw and drop the connection. */
static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

bool sio_event_name_reserved(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof reserved_events / sizeof *reserved_events; i++) {
        size_t n = strlen(reserved_events[i]);
        if (n == len && memcmp(name, reserved_events[i], n) == 0) return true;
    }
    return false;
}

/* ---- Engine.IO ---- */

static bool is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Standard padded base64, as every client produces it (Buffer.toString("base64"),
 * FileReader data URLs). Node's decoder would skip junk silently; a record with
 * junk is more likely a framing bug than data, so it is refused. */
static bool b64_valid(const char *s, size_t n)
{
    if (n % 4 != 0) return false;
    size_t pad = 0;
    if (n >= 1 && s[n - 1] == '=') pad++;
    if (n >= 2 && s[n - 2] == '=') pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!is_b64((unsigned char)s[i])) return false;
    return true;
}

int eio_parse(const char *text, size_t len, eio_packet_t *out)
{
    if (text == NULL || len == 0) return HERALD_EINVAL;
    if (text[0] == 'b') {
        if (!b64_valid(text + 1, len - 1)) return HERALD_EINVAL;
        *out = (eio_packet_t){.type = EIO_MESSAGE, .binary = true, .data = text + 1, .len = len - 1};
        return 0;
    }
    if (text[0] < '0' || text[0] > '0' + EIO_NOOP) return HERALD_EINVAL;
    *out = (eio_packet_t){.type = text[0] - '0', .binary = false, .data = text + 1, .len = len - 1};
    return 0;
}

int eio_parse_payload(const char *body, size_t len, size_t max_packets,
                      int (*fn)(void *arg, const eio_packet_t *p), void *arg)
{
    if ((body == NULL && len > 0) || fn == NULL) return HERALD_EINVAL;
    /* Counted first so an oversized body is refused before anything is delivered. */
    size_t records = 1;
    for (const char *s = body, *end = body + len; s < end; s++) {
        s = memchr(s, RS, (size_t)(end - s));
        if (s == NULL) break;
        records++;
    }
    if (records > max_packets) return HERALD_ETOOBIG;

    size_t pos = 0;
    for (size_t r = 0; r < records; r++) {
        const char *sep = len > pos ? memchr(body + pos, RS, len - pos) : NULL;
        size_t n = sep ? (size_t)(sep - (body + pos)) : len - pos;
        eio_packet_t p;
        /* An empty record (two separators in a row, a trailing separator, an
         * empty body) is a parse error for the reference server too. */
        if (eio_parse(body ? body + pos : NULL, n, &p) < 0) return HERALD_EINVAL;
        int rc = fn(arg, &p);
        if (rc != 0) return rc;
        pos += n + 1;
    }
    return 0;
}

int eio_encode_open(buf_t *b, const char *sid, bool offer_websocket, uint32_t ping_interval_ms,
                    uint32_t ping_timeout_ms, uint64_t max_payload)
{
    if (sid == NULL) return HERALD_EINVAL;
    size_t mark = b->len;
    int rc = buf_append_str(b, "0{\"sid\":");
    if (rc == 0) rc = buf_append_json_str(b, sid, strlen(sid));
    if (rc == 0)
        rc = buf_printf(b, ",\"upgrades\":[%s],\"pingInterval\":%" PRIu32 ",\"pingTimeout\":%" PRIu32
                           ",\"maxPayload\":%" PRIu64 "}",
                        offer_websocket ? "\"websocket\"" : "", ping_interval_ms, ping_timeout_ms, max_payload);
    if (rc < 0 && b->data) b->data[b->len = mark] = '\0';
    return rc;
}

/* ---- Socket.IO parsing ---- */

/* Namespace bytes: printable ASCII without the JSON structure characters, or
 * non-ASCII (checked as UTF-8 by the caller). The reference decoder takes anything
 * up to the next ',' or the end; refusing '{' '[' '"' makes a forgotten comma
 * ("0/admin{...}") an error instead of a namespace named after the payload. */
static bool nsp_byte_ok(unsigned char c)
{
    if (c >= 0x80) return true;
    if (c <= 0x20 || c == 0x7f) return false;
    return !strchr("\",[]{}\\", c);
}

static bool nsp_valid(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/') return false;
    for (size_t i = 1; i < n; i++)
        if (!nsp_byte_ok((unsigned char)s[i])) return false;
    return utf8_valid((const uint8_t *)s, n);
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads the decimal at text[*i..) (at least one digit known present), at most
 * max_digits digits, into *v. Returns false when there are more digits. */
static bool read_uint(const char *text, size_t len, size_t *i, int max_digits, uint64_t *v)
{
    uint64_t x = 0;
    int d = 0;
    while (*i < len && is_digit(text[*i])) {
        if (++d > max_digits) return false;
        x = x * 10 + (uint64_t)(text[*i] - '0');
        (*i)++;
    }
    *v = x;
    return true;
}

static bool shape_ok(int type, const json_t *data)
{
    switch (type) {
    case SIO_CONNECT:
        return data == NULL || json_is_object(data);
    case SIO_DISCONNECT:
        return data == NULL;
    case SIO_CONNECT_ERROR:
        return json_is_object(data);
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        const json_t *name = json_array_get(data, 0);   /* NULL for a non-array or [] */
        return json_is_string(name) && !sio_event_name_reserved(json_string_value(name), json_string_length(name));
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return json_is_array(data);
    }
    return false;
}

static bool carries_ack(int type)
{
    return type == SIO_EVENT || type == SIO_ACK || type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
}

static int parse_header(const char *text, size_t len, sio_packet_t *out, size_t *at)
{
    size_t i = 1;
    if (out->type == SIO_BINARY_EVENT || out->type == SIO_BINARY_ACK) {
        uint64_t n;
        if (i >= len || !is_digit(text[i]) || !read_uint(text, len, &i, 3, &n)) return HERALD_EINVAL;
        if (n < 1 || n > SIO_MAX_ATTACHMENTS || i >= len || text[i] != '-') return HERALD_EINVAL;
        out->attachments = (long)n;
        i++;
    }
    if (i < len && text[i] == '/') {
        const char *comma = memchr(text + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - text) : len;
        if (!nsp_valid(text + i, end - i)) return HERALD_EINVAL;
        out->nsp = text + i;
        out->nsp_len = end - i;
        i = comma ? end + 1 : end;
    }
    if (i < len && is_digit(text[i])) {
        uint64_t id;
        /* 2^53 has 16 digits; more cannot be a JavaScript client's counter. */
        if (!carries_ack(out->type) || !read_uint(text, len, &i, 16, &id) || id > SIO_MAX_ACK_ID)
            return HERALD_EINVAL;
        out->ack_id = (int64_t)id;
    }
    /* An ACK answers an id; without one there is nothing to answer. */
    if ((out->type == SIO_ACK || out->type == SIO_BINARY_ACK) && out->ack_id == SIO_NO_ACK)
        return HERALD_EINVAL;
    *at = i;
    return 0;
}

int sio_parse(const char *text, size_t len, sio_packet_t *out)
{
    *out = (sio_packet_t){.type = -1, .nsp = "/", .nsp_len = 1, .attachments = 0, .ack_id = SIO_NO_ACK,
                          .data = NULL};
    if (text == NULL || len == 0 || text[0] < '0' || text[0] > '0' + SIO_BINARY_ACK) return HERALD_EINVAL;
    out->type = text[0] - '0';
    size_t i;
    int rc = parse_header(text, len, out, &i);
    if (rc == 0 && i < len) {
        /* Top level must be an array or an object, jansson's default; duplicate
         * keys are refused so no two readers can see different values. Leading
         * whitespace is refused too: the reference decoder would take a space
         * there for an ack id of 0. */
        if (text[i] != '[' && text[i] != '{') rc = HERALD_EINVAL;
    }
    if (rc == 0 && i < len) {
        out->data = json_loadb(text + i, len - i, JSON_REJECT_DUPLICATES, NULL);
        if (out->data == NULL) rc = HERALD_EINVAL;
    }
    if (rc == 0 && !shape_ok(out->type, out->data)) rc = HERALD_EINVAL;
    if (rc < 0) {
        /* Nothing half-parsed escapes: the caller may clear it or not. */
        sio_packet_clear(out);
        *out = (sio_packet_t){.type = -1, .nsp = "/", .nsp_len = 1, .ack_id = SIO_NO_ACK};
    }
    return rc;
}

void sio_packet_clear(sio_packet_t *p)
{
    json_decref(p->data);
    p->data = NULL;
}

/* ---- Socket.IO encoding ---- */

static bool main_nsp(const char *nsp) { return nsp == NULL || nsp[0] == '\0' || strcmp(nsp, "/") == 0; }

/* "4" (Engine.IO message), the Socket.IO type, and "<nsp>," outside the main
 * namespace; the reference encoder writes the namespace raw, so it must be one a
 * parser reads back the same (no ',', starts with '/'). */
static int put_head(buf_t *b, char type, const char *nsp)
{
    char head[2] = {'4', type};
    if (main_nsp(nsp)) return buf_append(b, head, 2);
    size_t n = strlen(nsp);
    if (!nsp_valid(nsp, n)) return HERALD_EINVAL;
    if (buf_reserve(b, n + 3) < 0) return HERALD_ENOMEM;
    buf_append(b, head, 2);
    buf_append(b, nsp, n);
    return buf_append(b, ",", 1);
}

/* A JSON string from text that must be UTF-8: anything else would reach the
 * client as U+FFFD, or break a stricter client's parser. */
static int put_str(buf_t *b, const char *s, size_t n)
{
    if (n == 0) return buf_append(b, "\"\"", 2);
    if (s == NULL || !utf8_valid((const uint8_t *)s, n)) return HERALD_EINVAL;
    return buf_append_json_str(b, s, n);
}

/* Undoes a partial append so a failed encode leaves b as it was. */
static int finish(buf_t *b, size_t mark, int rc)
{
    if (rc < 0 && b->data) b->data[b->len = mark] = '\0';
    return rc;
}

int sio_encode_connect(buf_t *b, const char *nsp, const char *sid, const char *pid)
{
    size_t mark = b->len;
    if (sid == NULL) return HERALD_EINVAL;
    int rc = put_head(b, '0', nsp);
    if (rc == 0) rc = buf_append_str(b, "{\"sid\":");
    if (rc == 0) rc = put_str(b, sid, strlen(sid));
    if (rc == 0 && pid) {
        rc = buf_append_str(b, ",\"pid\":");
        if (rc == 0) rc = put_str(b, pid, strlen(pid));
    }
    if (rc == 0) rc = buf_append(b, "}", 1);
    return finish(b, mark, rc);
}

int sio_encode_connect_error(buf_t *b, const char *nsp, const char *message)
{
    size_t mark = b->len;
    if (message == NULL) return HERALD_EINVAL;
    int rc = put_head(b, '4', nsp);
    if (rc == 0) rc = buf_append_str(b, "{\"message\":");
    if (rc == 0) rc = put_str(b, message, strlen(message));
    if (rc == 0) rc = buf_append(b, "}", 1);
    return finish(b, mark, rc);
}

int sio_encode_disconnect(buf_t *b, const char *nsp)
{
    return finish(b, b->len, put_head(b, '1', nsp));
}

int sio_encode_event(buf_t *b, const char *nsp, const char *event, size_t event_len, const char *const *args_json,
                     const size_t *args_len, size_t nargs)
{
    size_t mark = b->len;
    if ((event == NULL && event_len > 0) || sio_event_name_reserved(event ? event : "", event_len))
        return HERALD_EINVAL;
    if (nargs > 0 && args_json == NULL) return HERALD_EINVAL;
    int rc = put_head(b, '2', nsp);
    if (rc == 0) rc = buf_append(b, "[", 1);
    if (rc == 0) rc = put_str(b, event, event_len);
    for (size_t i = 0; rc == 0 && i < nargs; i++) {
        const char *a = args_json[i];
        size_t n = a == NULL ? 0 : args_len ? args_len[i] : strlen(a);
        /* Raw JSON is trusted (herald produced it), but an empty one would leave
         * a hole like ["ev",] that no client parses. */
        if (n == 0) {
            rc = HERALD_EINVAL;
            break;
        }
        if ((rc = buf_reserve(b, n + 1)) < 0) break;
        buf_append(b, ",", 1);
        rc = buf_append(b, a, n);
    }
    if (rc == 0) rc = buf_append(b, "]", 1);
    return finish(b, mark, rc);
}

int sio_encode_ack(buf_t *b, const char *nsp, int64_t id, const char *arg_json, size_t arg_len)
{
    size_t mark = b->len;
    if (id < 0 || id > SIO_MAX_ACK_ID) return HERALD_EINVAL;
    if (arg_json == NULL) arg_len = 0;
    int rc = put_head(b, '3', nsp);
    if (rc == 0) rc = buf_printf(b, "%" PRId64 "[", id);
    if (rc == 0 && arg_len) rc = buf_append(b, arg_json, arg_len);
    if (rc == 0) rc = buf_append(b, "]", 1);
    return finish(b, mark, rc);
}
