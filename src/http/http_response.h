/* http_response: builds HTTP/1.1 responses as single frames and queues them.
 *
 * Every JSON error has the shape {"error":"<code>","message":"..."} (SPEC 2).
 * Responses carry Content-Length; `Connection: close` when the connection will
 * close after it. Owns nothing; the loop thread of the connection. */
#ifndef HERALD_HTTP_RESPONSE_H
#define HERALD_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "core/conn.h"

const char *http_status_text(int status);

/* Queues a response. extra_headers: zero or more complete "Name: value\r\n" lines, or NULL. */
void http_respond(conn_t *c, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers);

/* Takes the reference to body. */
void http_respond_json(conn_t *c, int status, json_t *body);
void http_respond_json_text(conn_t *c, int status, const char *json, size_t len);
void http_respond_error(conn_t *c, int status, const char *code, const char *message);
void http_respond_error_with(conn_t *c, int status, const char *code, const char *message, const char *extra_headers);

/* The connection will be closed once this response is written. */
void http_set_close(conn_t *c);

#endif
