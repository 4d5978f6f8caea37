/* route: configured WebSocket paths such as /ws/overlay/{creatorId} (SPEC 5, 6,
 * 9.9). A `{param}` matches one non-empty path segment (percent-decoded); the
 * route's channel templates are filled from the parameters and joined on connect.
 *
 * Authentication is the route's: `access_token` (the token's scopes must cover
 * every channel), `jwt` (the channel rules decide, for the token's user), or
 * `none` (the channel rules decide, for an anonymous user). With `format: data`
 * the connection receives each event's data alone, nothing else: no `connected`,
 * no replies, client messages ignored, errors are close codes (4001). With
 * `format: envelope` it speaks the native protocol with the channels joined.
 * Loop thread. */
#ifndef HERALD_ROUTE_H
#define HERALD_ROUTE_H

#include "config.h"
#include "proto/ws_transport.h"

#define ROUTE_MAX_PARAMS 8

typedef struct route_params {
    size_t count;
    char name[ROUTE_MAX_PARAMS][64];
    char value[ROUTE_MAX_PARAMS][256];
} route_params_t;

/* The first configured route matching path, with its parameters, or NULL. */
const route_t *route_match(const config_t *cfg, const char *path, route_params_t *params);

extern const ws_app_t route_data_app;
extern const ws_app_t route_envelope_app;

#endif
