/* sio_codec: the Engine.IO v4 and Socket.IO v5 wire formats, without I/O.
 *
 * Engine.IO packets are one type digit and a payload: 0 open, 1 close, 2 ping,
 * 3 pong, 4 message, 5 upgrade, 6 noop ("4hello", "2probe"). Over HTTP
 * long-polling several packets travel in one body separated by the record
 * separator 0x1e; a binary packet there is "b" + base64. Over WebSocket each
 * frame is one packet.
 *
 * Socket.IO packets ride inside Engine.IO message packets:
 *   <type>[<attachments>-][/<namespace>,][<ack id>][<JSON payload>]
 * types 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT,
 * 6 BINARY_ACK. e.g. `2["subscribe","jobs"]`, `0/admin,{"token":"x"}`,
 * `212["subscribe",{"room":"market","id":"m1"}]`, `312[{"success":true}]`.
 *
 * Pure functions over borrowed buffers; results point into the input (no copies)
 * except the JSON payload, which is parsed with jansson. Any thread. */
#ifndef HERALD_SIO_CODEC_H
#define HERALD_SIO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core/util.h"

enum eio_type { EIO_OPEN = 0, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP };

typedef struct eio_packet {
    int type;                 /* enum eio_type */
    bool binary;              /* a "b"-prefixed base64 packet (polling) or a binary frame */
    const char *data;         /* payload after the type digit (not decoded for binary) */
    size_t len;
} eio_packet_t;

/* Parses one Engine.IO packet from text (a WebSocket text frame, or one record of a
 * polling body). Returns 0 or HERALD_EINVAL (empty, unknown type, "b" followed by
 * anything but padded standard base64). */
int eio_parse(const char *text, size_t len, eio_packet_t *out);

/* Calls fn for each packet of a polling body (records split at 0x1e), in order.
 * Returns 0, the first non-zero value fn returned, or HERALD_EINVAL for a
 * malformed record (fn has been called for the records before it); an empty
 * record (empty body, two separators in a row, a trailing separator) is malformed.
 * At most max_packets records: HERALD_ETOOBIG beyond, before fn is called. */
int eio_parse_payload(const char *body, size_t len, size_t max_packets,
                      int (*fn)(void *arg, const eio_packet_t *p), void *arg);

enum sio_type {
    SIO_CONNECT = 0, SIO_DISCONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR, SIO_BINARY_EVENT, SIO_BINARY_ACK
};

#define SIO_NO_ACK (-1)
#define SIO_MAX_ACK_ID ((int64_t)1 << 53)   /* a JavaScript client's counter stays exact to here */
#define SIO_MAX_ATTACHMENTS 10              /* the reference decoder's default limit */

typedef struct sio_packet {
    int type;                 /* enum sio_type */
    const char *nsp;          /* namespace, "/" when absent; points into the input or a static "/" */
    size_t nsp_len;
    long attachments;         /* binary packets only, else 0 */
    int64_t ack_id;           /* SIO_NO_ACK when absent; 0 .. 2^53 */
    json_t *data;             /* parsed payload (new reference) or NULL when absent */
} sio_packet_t;

/* Parses one Socket.IO packet (the payload of an Engine.IO message). Returns 0,
 * or HERALD_EINVAL for anything malformed: unknown type, bad namespace (must start
 * with '/'; printable ASCII without space, '"', '[', ']', '{', '}', '\\', or UTF-8;
 * ends at ',' or at the end of the packet), non-digit ack id or one over 2^53
 * (more than 16 digits), an ack id on CONNECT, DISCONNECT or CONNECT_ERROR, an
 * ACK without an id, payload not valid JSON (it must start with '[' or '{', no
 * leading whitespace; duplicate keys and \u0000 refused),
 * payload of the wrong shape for the type (EVENT: a non-empty array whose first
 * element is a string and not a reserved event name; ACK: an array; CONNECT: an
 * object or absent; CONNECT_ERROR: object; DISCONNECT: absent). Binary types are
 * parsed (attachments count, 1..SIO_MAX_ATTACHMENTS, then '-') but their
 * placeholders are left as they are. On error *out holds no reference. Caller
 * frees with sio_packet_clear. */
int sio_parse(const char *text, size_t len, sio_packet_t *out);
void sio_packet_clear(sio_packet_t *p);

/* The event names socket.io clients refuse in an EVENT packet ("connect",
 * "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"). */
bool sio_event_name_reserved(const char *name, size_t len);

/* Encoders append to b and return 0, HERALD_ENOMEM, or HERALD_EINVAL for an
 * argument no client could read back (a namespace sio_parse would refuse, a NULL
 * sid or message, strings that are not UTF-8, a reserved event name, an empty
 * event argument, an ack id outside 0..2^53); on failure b is left as it was.
 * The "4" of the Engine.IO message is included (what goes on the wire inside a
 * WebSocket frame or a polling record). nsp may be NULL, "" or "/" for the main
 * namespace; other namespaces are written raw followed by ','. Strings are
 * JSON-escaped. */
int sio_encode_connect(buf_t *b, const char *nsp, const char *sid, const char *pid);          /* 40{"sid":..,"pid":..} */
int sio_encode_connect_error(buf_t *b, const char *nsp, const char *message);                 /* 44{"message":..} */
int sio_encode_disconnect(buf_t *b, const char *nsp);                                         /* 41 */
/* 42["event",<args...>] ; args_json is the raw JSON text of each argument (not
 * validated); args_len may be NULL for NUL-terminated arguments. */
int sio_encode_event(buf_t *b, const char *nsp, const char *event, size_t event_len, const char *const *args_json,
                     const size_t *args_len, size_t nargs);
/* 43<id>[<args_json>] with one argument given as raw JSON text; arg_json NULL or
 * arg_len 0 sends no argument (43<id>[]). */
int sio_encode_ack(buf_t *b, const char *nsp, int64_t id, const char *arg_json, size_t arg_len);

/* Engine.IO open packet: 0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}
 * (no "4": it is not a message). 0, HERALD_ENOMEM, or HERALD_EINVAL for a NULL sid. */
int eio_encode_open(buf_t *b, const char *sid, bool offer_websocket, uint32_t ping_interval_ms,
                    uint32_t ping_timeout_ms, uint64_t max_payload);

#endif
