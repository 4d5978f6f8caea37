/* http_request: incremental parsing of one HTTP/1.1 request at a time, on top of
 * Node's http_parser (Debian libhttp-parser-dev), with herald's limits.
 *
 * The caller feeds bytes as they arrive; the request collects its method, target,
 * headers and body (Content-Length or chunked, decoded) into buffers it owns, and
 * stops at the end of the message so pipelined requests are handled one at a time.
 * An Upgrade request (WebSocket) stops after its headers.
 *
 * Owns: the request's header arena and body buffer, freed by http_request_reset /
 * http_request_deinit, so a keep-alive connection between requests holds no heap
 * memory. Does no I/O. One request object per connection; any thread. */
#ifndef HERALD_HTTP_REQUEST_H
#define HERALD_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <http_parser.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD_BYTES 16384   /* request line + all headers */
#define HTTP_MAX_TARGET_BYTES 8192  /* the request target (path and query) */
#define HTTP_MAX_CHUNK_LINE_BYTES 4096 /* one chunk-size line with its extensions */

typedef struct http_header {
    const char *name;   /* NUL-terminated, as received (compare case-insensitively) */
    const char *value;  /* NUL-terminated, leading and trailing blanks removed */
    size_t value_len;
} http_header_t;

typedef struct http_request {
    http_parser parser;
    size_t max_body_bytes;

    /* results, valid once head_complete (before that the strings are "" and
       header_count counts headers still being collected) */
    const char *method;       /* "GET", "POST", ... (static string) */
    const char *target;       /* raw request target, NUL-terminated */
    const char *path;         /* target up to '?', percent-decoding NOT applied, NUL-terminated */
    const char *query;        /* after '?', or "" */
    http_header_t headers[HTTP_MAX_HEADERS];
    size_t header_count;
    char *body;               /* decoded body, NUL-terminated (NULL if none) */
    size_t body_len;
    bool keep_alive;          /* http_should_keep_alive() of the finished request */
    bool upgrade;             /* an Upgrade request: the rest of the stream is another protocol
                                 (http_parser also sets it for CONNECT) */
    bool head_complete;       /* method..headers are valid; the body may still be arriving
                                 (lets a server answer Expect: 100-continue or refuse early) */
    bool complete;            /* the whole request (or, for an upgrade, its head) is in */
    int http_major, http_minor;

    /* internals */
    char *arena;              /* target and header strings */
    size_t arena_len, arena_cap;
    size_t body_cap;
    size_t head_bytes;        /* request line + headers (+ trailers), against HTTP_MAX_HEAD_BYTES */
    size_t chunk_line_bytes;  /* the current chunk-size line, extensions included */
    char tail[2];             /* the last two bytes consumed, for CRLF checks */
    int last_cb;              /* which kind of callback ran last, to join split fragments */
    int error_status;         /* HTTP status to answer on error: 400, 413, 414, 431
                                 (503 when memory ran out) */
    /* offsets into arena while collecting (pointers are fixed up when the head is done) */
    size_t target_off, target_len;
    size_t name_off[HTTP_MAX_HEADERS], value_off[HTTP_MAX_HEADERS];
} http_request_t;

void http_request_init(http_request_t *r, size_t max_body_bytes);
/* Frees buffers and readies the object for the next request on the connection. */
void http_request_reset(http_request_t *r);
void http_request_deinit(http_request_t *r);

/* Feeds data[0..len). Returns the number of bytes consumed (<= len). When
 * r->complete becomes true, parsing stops right after the request (or after the head
 * of an upgrade request): the unconsumed bytes belong to the next pipelined request
 * (feed them after http_request_reset) or to the upgraded protocol.
 * Returns a negative HERALD_E* code on error, with r->error_status set to the status
 * to answer (400 malformed, 413 body over max_body_bytes, 414 target too long,
 * 431 headers too large or too many; 503 out of memory); the connection must then be
 * closed. Feeding after completion (without a reset) consumes nothing and returns 0;
 * feeding after an error returns the same error. */
long http_request_feed(http_request_t *r, const char *data, size_t len);

/* First header with this name (case-insensitive), or NULL. */
const char *http_request_header(const http_request_t *r, const char *name);

/* True when a comma-separated header (Connection, Upgrade) lists token, case-insensitively. */
bool http_header_has_token(const char *value, const char *token);

/* Query parameters: finds the n-th (from 0) value of key in a query string and
 * percent-decodes it (and '+' as space) into out (NUL-terminated, truncated to
 * out_size - 1). Returns the decoded length, or -1 when absent.
 * The length is the full decoded length, as snprintf: a result >= out_size means out
 * was truncated. Keys are decoded before comparing; an invalid escape (or %00) is kept
 * as it is, as browsers do, so out never holds a NUL before its end. */
long http_query_param(const char *query, const char *key, size_t n, char *out, size_t out_size);

/* Percent-decodes src[0..len) into out; returns length or -1 on a bad escape.
 * '+' stays '+'. %00 counts as a bad escape (herald's strings are C strings). The
 * length and truncation follow http_query_param. */
long http_percent_decode(const char *src, size_t len, char *out, size_t out_size);

#endif
