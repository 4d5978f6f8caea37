#include "http/url.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

static const struct { const char *name; url_scheme_t scheme; bool tls; uint16_t port; } schemes[] = {
    { "http", URL_HTTP, false, 80 },
    { "https", URL_HTTPS, true, 443 },
    { "ws", URL_WS, false, 80 },
    { "wss", URL_WSS, true, 443 },
};

static uint16_t default_port(const url_t *u)
{
    return u->tls ? 443 : 80;
}

static int parse_scheme(const char *s, size_t len, url_t *out)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i].name) == len && strncasecmp(s, schemes[i].name, len) == 0) {
            out->scheme = schemes[i].scheme;
            out->tls = schemes[i].tls;
            out->port = schemes[i].port;
            return 0;
        }
    }
    return HERALD_EINVAL;
}

/* An IPv6 literal is checked only for its alphabet: the resolver judges the rest.
 * Zone ids ("%25eth0") are not accepted; a client of herald has no use for them. */
static bool ipv6_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
            return false;
    return len > 0;
}

static int parse_port(const char *s, size_t len, url_t *out)
{
    if (len == 0)           /* "host:" — RFC 3986 3.2.3: same as no port */
        return 0;
    if (len > 5)
        return HERALD_EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return HERALD_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return HERALD_EINVAL;
    out->port = (uint16_t)v;
    out->explicit_port = true;
    return 0;
}

static int parse_authority(const char *s, size_t len, url_t *out)
{
    const char *host = s, *port = NULL;
    size_t host_len;
    if (memchr(s, '@', len))
        return HERALD_EINVAL;   /* credentials in URLs end up in logs; use the flags */
    if (len > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (!end)
            return HERALD_EINVAL;
        host = s + 1;
        host_len = (size_t)(end - host);
        if (!ipv6_chars_ok(host, host_len))
            return HERALD_EINVAL;
        const char *after = end + 1;
        if (after < s + len) {
            if (*after != ':')
                return HERALD_EINVAL;
            port = after + 1;
        }
        out->ipv6 = true;
    } else {
        const char *colon = memchr(s, ':', len);
        host_len = colon ? (size_t)(colon - s) : len;
        if (colon)
            port = colon + 1;
        if (memchr(host, '[', host_len) || memchr(host, ']', host_len))
            return HERALD_EINVAL;
    }
    if (host_len == 0)
        return HERALD_EINVAL;
    if (host_len >= sizeof(out->host))
        return HERALD_ETOOBIG;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    return port ? parse_port(port, (size_t)(s + len - port), out) : 0;
}

int url_parse(const char *s, url_t *out)
{
    memset(out, 0, sizeof(*out));
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return HERALD_EINVAL;
    const char *sep = strstr(s, "://");
    if (!sep || parse_scheme(s, (size_t)(sep - s), out) < 0)
        return HERALD_EINVAL;
    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?#");
    int rc = parse_authority(auth, auth_len, out);
    if (rc < 0)
        return rc;
    const char *rest = auth + auth_len;
    size_t rest_len = strcspn(rest, "#");
    bool need_slash = rest_len == 0 || rest[0] != '/';
    if (rest_len + need_slash >= sizeof(out->target))
        return HERALD_ETOOBIG;
    size_t n = 0;
    if (need_slash)
        out->target[n++] = '/';
    memcpy(out->target + n, rest, rest_len);
    out->target[n + rest_len] = '\0';
    return 0;
}

int url_host_header(const url_t *u, char *out, size_t out_size)
{
    const char *open = u->ipv6 ? "[" : "", *close = u->ipv6 ? "]" : "";
    int n;
    if (u->port != default_port(u))
        n = snprintf(out, out_size, "%s%s%s:%u", open, u->host, close, (unsigned)u->port);
    else
        n = snprintf(out, out_size, "%s%s%s", open, u->host, close);
    return n < 0 || (size_t)n >= out_size ? HERALD_ETOOBIG : n;
}

/* Percent-encodes src after out[*n], keeping RFC 3986 unreserved characters.
 * Returns false when it does not fit (with room for the NUL). */
static bool encode_into(char *out, size_t size, size_t *n, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (*n + need >= size)
            return false;
        if (plain) {
            out[(*n)++] = (char)*p;
        } else {
            out[(*n)++] = '%';
            out[(*n)++] = hex[*p >> 4];
            out[(*n)++] = hex[*p & 15];
        }
    }
    return true;
}

int url_query_append(url_t *u, const char *key, const char *value)
{
    char buf[URL_MAX_TARGET];
    size_t n = strlen(u->target);
    memcpy(buf, u->target, n);
    const char *q = strchr(u->target, '?');
    /* "?" alone or a trailing "&" already separate; otherwise add the separator */
    if (!q) {
        buf[n++] = '?';
    } else if (q[1] != '\0' && u->target[n - 1] != '&') {
        if (n + 1 >= sizeof(buf))
            return HERALD_ETOOBIG;
        buf[n++] = '&';
    }
    if (!encode_into(buf, sizeof(buf), &n, key) || n + 1 >= sizeof(buf))
        return HERALD_ETOOBIG;
    buf[n++] = '=';
    if (!encode_into(buf, sizeof(buf), &n, value))
        return HERALD_ETOOBIG;
    buf[n] = '\0';
    memcpy(u->target, buf, n + 1);
    return 0;
}

int url_path_join(url_t *u, const char *path)
{
    size_t base = strcspn(u->target, "?");
    while (base > 0 && u->target[base - 1] == '/')
        base--;
    while (*path == '/')
        path++;
    size_t plen = strlen(path);
    if (base + 1 + plen >= sizeof(u->target))
        return HERALD_ETOOBIG;
    u->target[base] = '/';
    memcpy(u->target + base + 1, path, plen + 1);
    return 0;
}
