/* socketio: Socket.IO v4 compatibility (Engine.IO v4 + Socket.IO v5) at
 * socketio.path, so frontends written against a Node Socket.IO server connect to
 * herald unchanged (SPEC 4, 9.11).
 *
 * An Engine.IO session is a subscriber connection: over WebSocket it is that
 * connection; over HTTP long-polling it is a virtual connection (no socket) whose
 * queued packets go out with the next GET. Sessions belong to the worker that
 * created them: a polling request or the WebSocket upgrade that arrives on another
 * worker's connection moves that connection there (worker_migrate), so a session
 * is only ever touched by one thread. The upgrade (2probe / 3probe / 5) hands the
 * session's subscriptions and queued packets to the WebSocket.
 *
 * Socket.IO on top: namespaces ("/" and socketio.namespaces; rooms are channels,
 * shared by all), CONNECT with auth.token (or ?token=) checked like /ws
 * (CONNECT_ERROR "Authentication failed"), the built-in events subscribe /
 * unsubscribe / getRooms / ping with acks, the configured join and leave events,
 * connected_event. Published events arrive as 42["<event>",<data>], one shared
 * frame for every session on the main namespace.
 *
 * Owns: sessions and the sid registry (server-wide, behind a mutex, mapping a sid
 * to its worker). Loop thread of the session's worker, except the registry. */
#ifndef HERALD_SOCKETIO_H
#define HERALD_SOCKETIO_H

#include <stdbool.h>

#include "config.h"
#include "core/conn.h"
#include "http/http_request.h"

struct server;
typedef struct sio_registry sio_registry_t;

sio_registry_t *sio_registry_create(void);
void sio_registry_destroy(sio_registry_t *r);

/* True when the request's path is under socketio.path (and Socket.IO is enabled). */
bool socketio_path(const config_t *cfg, const char *path);

/* Answers (or takes over, or moves) a request under socketio.path. */
void socketio_route(conn_t *c, http_request_t *req);

#endif
