/* sse: Server-Sent Events at /events?channel=a&channel=b (SPEC 2, 9.12).
 *
 * A GET that subscribes to the listed channels under the same policies as every
 * other protocol, then streams each event as
 *     id: a=41&b=7          every subscribed channel's position, names percent-encoded
 *     event: <event name>
 *     data: <the native envelope>
 * so a browser's EventSource reconnects with Last-Event-ID and herald recovers every
 * channel from where it was. The first `id:` of a stream gives each channel's
 * position as of connecting; comments (": keep-alive") every 15 s keep proxies
 * from closing an idle stream.
 *
 * The event/data part is one frame shared by every SSE receiver; the id line is
 * per connection (it names that connection's channels), a small frame per event.
 * Owns nothing beyond the connection's session fields. Loop thread. */
#ifndef HERALD_SSE_H
#define HERALD_SSE_H

#include "core/conn.h"
#include "http/http_request.h"

#define SSE_KEEPALIVE_MS 15000

/* Answers GET /events: refuses (4xx JSON) or starts the stream. */
void sse_start(conn_t *c, const http_request_t *req);

/* Parses a position ("a=41&b%3Ax=7") and returns the offset given for channel, or
 * false when it names none. */
bool sse_position_lookup(const char *position, const char *channel, size_t len, uint64_t *offset);

#endif
