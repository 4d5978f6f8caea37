/* native: herald's own JSON protocol on /ws (SPEC section 3).
 *
 * Client messages (subscribe, unsubscribe, ping, publish, history) are parsed with
 * jansson and answered with control messages; events arrive as the shared native
 * frames the hub queues. Every subscribe and publish goes through the channel
 * policy (auth/policy), the same one every protocol uses.
 *
 * Owns nothing beyond the connection's session fields. Loop thread of the
 * connection. */
#ifndef HERALD_NATIVE_H
#define HERALD_NATIVE_H

#include <jansson.h>

#include "proto/ws_transport.h"

extern const ws_app_t native_app;

#define HISTORY_DEFAULT_LIMIT 100
#define HISTORY_MAX_LIMIT 1000

/* Joins the auto_join channels that resolve for c and that the rules allow.
 * Returns a new array of the joined names. */
json_t *native_auto_join(conn_t *c);

/* Sends `connected` listing the joined channels (reference taken). */
void native_send_connected(conn_t *c, json_t *joined);

/* One client message of the native protocol. */
void native_on_text(conn_t *c, char *data, size_t len);

/* True for the names of control messages, which events may not use (SPEC 9.1). */
bool native_is_control_name(const char *name, size_t len);

#endif
