/* url: parsing of the absolute URLs the herald client commands take
 * (http://, https://, ws://, wss://) into scheme, host, port and request target,
 * and the small builders a client needs (Host header, an extra query parameter).
 *
 * Owns: nothing beyond the caller's url_t (fixed-size, no heap). Does no I/O and
 * no name resolution. Pure functions; any thread. */
#ifndef HERALD_URL_H
#define HERALD_URL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define URL_MAX_HOST 256      /* a DNS name is at most 253 bytes */
#define URL_MAX_TARGET 4096   /* path and query */

typedef enum url_scheme { URL_HTTP, URL_HTTPS, URL_WS, URL_WSS } url_scheme_t;

typedef struct url {
    url_scheme_t scheme;
    bool tls;                     /* https or wss */
    bool ipv6;                    /* host was written in brackets */
    char host[URL_MAX_HOST];      /* without brackets, NUL-terminated */
    uint16_t port;                /* explicit, or 80 / 443 by scheme */
    bool explicit_port;
    char target[URL_MAX_TARGET];  /* path and query, always starting with '/'; no fragment */
} url_t;

/* Parses an absolute URL: scheme (case-insensitive) "://" host [":" port] [path]
 * ["?" query] ["#" fragment]. The host may be an IPv6 literal in brackets. The
 * fragment is dropped; an empty path becomes "/". Userinfo ("user@"), spaces,
 * control characters, an empty host, a port outside 1..65535 and parts over the
 * buffer sizes are refused. Returns 0 or HERALD_EINVAL / HERALD_ETOOBIG. */
int url_parse(const char *s, url_t *out);

/* Writes the Host header value: host (bracketed when IPv6), plus ":port" when the
 * port is not the scheme's default. Returns its length, or HERALD_ETOOBIG. */
int url_host_header(const url_t *u, char *out, size_t out_size);

/* Appends key=value to the target's query, percent-encoding both (RFC 3986
 * unreserved characters are kept). Returns 0 or HERALD_ETOOBIG (target unchanged). */
int url_query_append(url_t *u, const char *key, const char *value);

/* Joins a path to the target's path, dropping the target's query: "/" + "api/x"
 * and "/base/" + "/api/x" both give ".../api/x" with one slash between. Returns 0
 * or HERALD_ETOOBIG (target unchanged). */
int url_path_join(url_t *u, const char *path);

#endif
