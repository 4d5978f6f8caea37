#include "config.h"
#include "chain/abi.h"
#include "cluster/redis_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"

#define PATH_LEN sizeof(((config_problem_t *)0)->path)
#define WHY_LEN 200
#define CHANNEL_MAX 255

/* ------------------------------------------------------------------ problems */

/* Counts problems apart from storing them: a message lost to a failed allocation
 * must never make a broken config look valid. */
typedef struct ctx {
    config_problems_t *out;
    size_t n;
} ctx_t;

static void sanitize(char *s)
{
    /* one problem, one line: a key or value with a newline must not split it */
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

__attribute__((format(printf, 3, 4)))
static void problem(ctx_t *x, const char *path, const char *fmt, ...)
{
    x->n++;
    if (!x->out) return;
    config_problems_t *p = x->out;
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        config_problem_t *items = realloc(p->items, cap * sizeof *items);
        if (!items) return;
        p->items = items;
        p->cap = cap;
    }
    config_problem_t *it = &p->items[p->count++];
    snprintf(it->path, sizeof it->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof it->message, fmt, ap);
    va_end(ap);
    sanitize(it->path);
    sanitize(it->message);
}

void config_problems_free(config_problems_t *p)
{
    if (!p) return;
    free(p->items);
    p->items = NULL;
    p->count = p->cap = 0;
}

static bool is_ident_key(const char *k)
{
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_')) return false;
    for (k++; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_'))
            return false;
    return true;
}

/* Writes a path; one too long for a problem ends in "..." rather than misleading. */
__attribute__((format(printf, 2, 3)))
static void path_fmt(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(out, PATH_LEN, fmt, ap);
    va_end(ap);
    if (r >= (int)PATH_LEN) memcpy(out + PATH_LEN - 4, "...", 4);
}

/* $.a.b for plain keys, $.a["odd key"] for the rest, as JSONPath writes them. */
static void path_key(char *out, const char *base, const char *key)
{
    if (is_ident_key(key)) path_fmt(out, "%s.%s", base, key);
    else path_fmt(out, "%s[\"%s\"]", base, key);
}

static void path_index(char *out, const char *base, size_t i)
{
    path_fmt(out, "%s[%zu]", base, i);
}

/* ------------------------------------------------------------------ memory */

static void strv_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int strv_from(const char *const *src, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0) return 0;
    char **v = calloc(n, sizeof *v);
    if (!v) return HERALD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = strdup(src[i]))) {
            strv_free(v, i);
            return HERALD_ENOMEM;
        }
    }
    *out = v;
    return 0;
}

static bool set_str(ctx_t *x, const char *path, char **field, const char *s)
{
    char *d = NULL;
    if (s && !(d = strdup(s))) {
        problem(x, path, "out of memory");
        return false;
    }
    free(*field);
    *field = d;
    return true;
}

static void rules_free(channel_rule_t *r, size_t n)
{
    if (!r) return;
    for (size_t i = 0; i < n; i++) free(r[i].pattern);
    free(r);
}

static void routes_free(route_t *r, size_t n)
{
    if (!r) return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].path);
        strv_free(r[i].channels, r[i].channel_count);
    }
    free(r);
}

/* ------------------------------------------------------------------ syntax checks */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_alpha(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
static bool is_hex(char ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }
static bool is_name_char(char ch) { return is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '-'; }

static bool has_space_or_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f) return true;
    return false;
}

/* Decimal port 1-65535 over exactly len characters. */
static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535) return false;
    *out = (uint16_t)v;
    return true;
}

static bool is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

/* RFC 1123 host name over len characters; dotted digits must be a real IPv4. */
static bool is_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253) return false;
    bool numeric = true;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        if (!(is_alpha(ch) || is_digit(ch) || ch == '-')) return false;
        if (label == 0 && ch == '-') return false;
        if (++label > 63) return false;
        if (!is_digit(ch)) numeric = false;
    }
    if (label == 0 || s[len - 1] == '-') return false;
    if (numeric) {
        char buf[64];
        if (len >= sizeof buf) return false;
        memcpy(buf, s, len);
        buf[len] = '\0';
        return is_ipv4(buf);
    }
    return true;
}

int config_parse_listen(const char *s, char **host_out, uint16_t *port_out)
{
    if (!s || !host_out || !port_out) return HERALD_EINVAL;
    const char *host, *port;
    size_t host_len;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') return HERALD_EINVAL;
        host = s + 1;
        host_len = (size_t)(end - host);
        port = end + 2;
        char buf[INET6_ADDRSTRLEN + 1];
        if (host_len == 0 || host_len >= sizeof buf) return HERALD_EINVAL;
        memcpy(buf, host, host_len);
        buf[host_len] = '\0';
        if (!is_ipv6(buf)) return HERALD_EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) return HERALD_EINVAL;
        host = s;
        host_len = (size_t)(colon - s);
        port = colon + 1;
        /* an IPv6 address needs brackets, or its last group would read as the port */
        if (memchr(host, ':', host_len)) return HERALD_EINVAL;
        if (!is_hostname(host, host_len)) return HERALD_EINVAL;
    }
    uint16_t p;
    if (!parse_port(port, strlen(port), &p)) return HERALD_EINVAL;
    char *h = strndup(host, host_len);
    if (!h) return HERALD_ENOMEM;
    *host_out = h;
    *port_out = p;
    return 0;
}

/* "*" or scheme://host[:port], exactly what a browser sends as Origin. */
static bool check_origin(const char *s, char *why, size_t wl)
{
    if (strcmp(s, "*") == 0) return true;
    const char *sep = strstr(s, "://");
    bool ok = sep && sep > s && is_alpha(s[0]);
    for (const char *p = s; ok && p < sep; p++)
        ok = is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.';
    if (ok) {
        const char *host = sep + 3, *end = host + strlen(host), *port = NULL;
        if (*host == '[') {
            const char *rb = strchr(host, ']');
            char buf[INET6_ADDRSTRLEN + 1];
            size_t hl = rb ? (size_t)(rb - host - 1) : 0;
            ok = rb && hl > 0 && hl < sizeof buf;
            if (ok) {
                memcpy(buf, host + 1, hl);
                buf[hl] = '\0';
                ok = is_ipv6(buf) && (rb[1] == '\0' || rb[1] == ':');
                if (rb[1] == ':') port = rb + 2;
            }
        } else {
            const char *colon = strchr(host, ':');
            size_t hl = colon ? (size_t)(colon - host) : (size_t)(end - host);
            ok = is_hostname(host, hl);
            if (colon) port = colon + 1;
        }
        uint16_t p;
        if (ok && port) ok = parse_port(port, strlen(port), &p);
    }
    if (!ok) snprintf(why, wl, "\"%.60s\" is not \"*\" or scheme://host[:port]", s);
    return ok;
}

/* An IPv4 or IPv6 address, optionally /prefix. */
static bool check_cidr(const char *s, char *why, size_t wl)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    bool ok = len > 0 && len < sizeof buf;
    if (ok) {
        memcpy(buf, s, len + 1);
        char *slash = strchr(buf, '/');
        unsigned bits = 0, max;
        if (slash) *slash = '\0';
        if (is_ipv4(buf)) max = 32;
        else if (is_ipv6(buf)) max = 128;
        else max = 0;
        ok = max > 0;
        if (ok && slash) {
            const char *d = slash + 1;
            ok = *d && strlen(d) <= 3;
            for (; ok && *d; d++) {
                ok = is_digit(*d);
                bits = bits * 10 + (unsigned)(*d - '0');
            }
            ok = ok && bits <= max;
        }
    }
    if (!ok) snprintf(why, wl, "\"%.60s\" is not an IPv4 or IPv6 address or CIDR", s);
    return ok;
}

/* The same parser the Redis engine uses, so `config check` refuses what serve would. */
static bool check_redis_url(const char *s, char *why, size_t wl)
{
    redis_url_t u;
    if (has_space_or_ctl(s) || redis_url_parse(s, &u, why, wl) < 0) {
        if (has_space_or_ctl(s)) snprintf(why, wl, "must not contain spaces or control characters");
        return false;
    }
    redis_url_free(&u);
    return true;
}

static bool check_log_level(const char *s, char *why, size_t wl)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
        if (strcmp(s, levels[i]) == 0) return true;
    snprintf(why, wl, "\"%.40s\" is not one of debug, info, warn, error", s);
    return false;
}

/* The node id goes into epochs, logs and Redis keys: keep it to a safe alphabet. */
static bool check_node_id(const char *s, char *why, size_t wl)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 64;
    for (const char *p = s; ok && *p; p++) ok = is_name_char(*p) || *p == '.';
    if (!ok) snprintf(why, wl, "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    return ok;
}

static bool check_nonempty(const char *s, char *why, size_t wl)
{
    if (*s) return true;
    snprintf(why, wl, "must not be empty");
    return false;
}

static bool check_api_key(const char *s, char *why, size_t wl)
{
    if (!check_nonempty(s, why, wl)) return false;
    if (!has_space_or_ctl(s)) return true;
    snprintf(why, wl, "must not contain spaces or control characters");
    return false;
}

static bool check_prefix(const char *s, char *why, size_t wl)
{
    return check_api_key(s, why, wl);
}

static bool check_jwt_alg(const char *s, char *why, size_t wl)
{
    static const char *const algs[] = {"HS256", "HS384", "HS512", "RS256", "ES256"};
    for (size_t i = 0; i < sizeof algs / sizeof *algs; i++)
        if (strcmp(s, algs[i]) == 0) return true;
    snprintf(why, wl, "\"%.40s\" is not one of HS256, HS384, HS512, RS256, ES256", s);
    return false;
}

static bool check_namespace(const char *s, char *why, size_t wl)
{
    if (s[0] == '/' && s[1] && !has_space_or_ctl(s)) return true;
    snprintf(why, wl, "a namespace starts with '/' and has a name (\"/\" is always there)");
    return false;
}

/* Which {name}s a template may use. */
typedef struct names {
    const char *const *list; /* allowed names */
    size_t n;
    bool any;                /* any well-formed name */
    bool digits;             /* {0}, {1}, ...: Socket.IO event arguments */
    const char *what;        /* completes "{x} is ..." when a name is refused */
} names_t;

static bool name_allowed(const names_t *nm, const char *name, size_t len)
{
    if (nm->any) return true;
    if (nm->digits) {
        size_t i = 0;
        while (i < len && is_digit(name[i])) i++;
        if (i == len) return true;
    }
    for (size_t i = 0; i < nm->n; i++)
        if (strlen(nm->list[i]) == len && memcmp(nm->list[i], name, len) == 0) return true;
    return false;
}

/* A channel pattern or template: `{name}` of [A-Za-z0-9_-], balanced braces, `*`
 * only as the last character and only where star is true (SPEC 9.6). In a pattern
 * (star true) a segment between ':' holds at most one placeholder besides {sub}:
 * two in one segment would make matching backtrack over every split of it. */
static bool check_template(const char *s, bool star, const names_t *nm, char *why, size_t wl)
{
    int in_segment = 0;
    if (!*s) {
        snprintf(why, wl, "must not be empty");
        return false;
    }
    if (strlen(s) > CHANNEL_MAX || has_space_or_ctl(s)) {
        snprintf(why, wl, "a channel is at most %d bytes without spaces or control characters", CHANNEL_MAX);
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (*p == ':') in_segment = 0;
        if (*p == '*') {
            if (!star) {
                snprintf(why, wl, "'*' is not allowed here");
                return false;
            }
            if (p[1]) {
                snprintf(why, wl, "'*' is allowed only at the end");
                return false;
            }
            continue;
        }
        if (*p == '}') {
            snprintf(why, wl, "unbalanced '}'");
            return false;
        }
        if (*p != '{') continue;
        const char *name = p + 1;
        size_t len = 0;
        while (name[len] && name[len] != '}' && name[len] != '{') len++;
        if (name[len] != '}') {
            snprintf(why, wl, "unbalanced '{'");
            return false;
        }
        for (size_t i = 0; i < len; i++) {
            if (!is_name_char(name[i])) {
                snprintf(why, wl, "{%.*s}: a name is made of A-Z a-z 0-9 _ -", (int)(len > 40 ? 40 : len), name);
                return false;
            }
        }
        if (len == 0) {
            snprintf(why, wl, "empty {}");
            return false;
        }
        if (!name_allowed(nm, name, len)) {
            snprintf(why, wl, "{%.*s} %s", (int)(len > 40 ? 40 : len), name, nm->what);
            return false;
        }
        if (star && !(len == 3 && memcmp(name, "sub", 3) == 0) && ++in_segment > 1) {
            snprintf(why, wl, "at most one {name} between two ':' in a pattern");
            return false;
        }
        p = name + len;
    }
    return true;
}

static const char *const sub_name[] = {"sub"};
static const names_t sub_names = {sub_name, 1, false, false, "is not allowed: only {sub} is known here"};

/* SPEC 9.6: in a rule's pattern `{sub}` is the token's sub and any other `{name}`
 * matches one segment (no ':'), so every well-formed name is accepted there. */
static const names_t rule_names = {NULL, 0, true, false, ""};

bool config_pattern_valid(const char *pattern, char *why, size_t why_size)
{
    return check_template(pattern, true, &rule_names, why, why_size);
}

static bool check_auto_join(const char *s, char *why, size_t wl)
{
    return check_template(s, false, &sub_names, why, wl);
}

static bool check_sio_template(const char *s, char *why, size_t wl)
{
    static const names_t nm = {sub_name, 1, false, true, "is not allowed: use {0}, {1}, ... (event arguments) or {sub}"};
    return check_template(s, false, &nm, why, wl);
}

/* herald's own paths, which a webhook or the Socket.IO path must not shadow. */
static const char *reserved_path(const char *p, bool for_socketio)
{
    static const char *const own[] = {"/ws", "/api", "/socket.io", "/events", "/health",
                                      "/stats", "/metrics", "/broadcast"};
    if (strcmp(p, "/") == 0) return "/";
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        if (for_socketio && strcmp(own[i], "/socket.io") == 0) continue;
        size_t n = strlen(own[i]);
        if (strncmp(p, own[i], n) == 0 && (p[n] == '\0' || p[n] == '/')) return own[i];
    }
    return NULL;
}

static bool check_http_path(const char *s, char *why, size_t wl)
{
    if (s[0] != '/' || has_space_or_ctl(s) || strpbrk(s, "?#")) {
        snprintf(why, wl, "must start with '/' and have no spaces, '?' or '#'");
        return false;
    }
    return true;
}

static bool check_sio_path(const char *s, char *why, size_t wl)
{
    if (!check_http_path(s, why, wl)) return false;
    const char *r = reserved_path(s, true);
    if (!r) return true;
    snprintf(why, wl, "clashes with herald's own path %s", r);
    return false;
}

static bool policy_parse(const char *s, policy_t *out)
{
    static const struct { const char *name; policy_t p; } map[] = {
        {"any", POLICY_ANY}, {"authenticated", POLICY_AUTHENTICATED}, {"owner", POLICY_OWNER},
        {"claim", POLICY_CLAIM}, {"access_token", POLICY_ACCESS_TOKEN},
        {"none", POLICY_DENY}, {"deny", POLICY_DENY},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (strcmp(s, map[i].name) == 0) {
            *out = map[i].p;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ typed readers */

static bool want_int(ctx_t *x, const char *path, json_t *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!json_is_integer(v)) {
        problem(x, path, "must be an integer");
        return false;
    }
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < lo) {
        if (lo == 0) problem(x, path, "must not be negative");
        else problem(x, path, "must be at least %" PRIu64, lo);
        return false;
    }
    if ((uint64_t)i > hi) {
        problem(x, path, "must be at most %" PRIu64, hi);
        return false;
    }
    *out = (uint64_t)i;
    return true;
}

/* A string, or null when nullable (then *out is NULL). Empty strings are refused:
 * a key that means "unset" is written null. */
static bool want_str(ctx_t *x, const char *path, json_t *v, bool nullable, const char **out)
{
    *out = NULL;
    if (nullable && json_is_null(v)) return true;
    if (!json_is_string(v)) {
        problem(x, path, nullable ? "must be a string or null" : "must be a string");
        return false;
    }
    if (json_string_length(v) != strlen(json_string_value(v))) {
        problem(x, path, "must not contain NUL characters");
        return false;
    }
    *out = json_string_value(v);
    if (!**out) {
        problem(x, path, nullable ? "must not be empty (write null to unset it)" : "must not be empty");
        return false;
    }
    return true;
}

static bool want_bool(ctx_t *x, const char *path, json_t *v, bool *out)
{
    if (!json_is_boolean(v)) {
        problem(x, path, "must be true or false");
        return false;
    }
    *out = json_is_true(v);
    return true;
}

typedef bool (*str_check_fn)(const char *s, char *why, size_t wl);

/* An array of strings that each pass check. Replaces *arr only when every entry is
 * good: half a list of origins or API keys would be a surprise, not a config. */
static bool apply_strv(ctx_t *x, const char *path, json_t *v, str_check_fn check, bool unique,
                       char ***arr, size_t *count)
{
    if (!json_is_array(v)) {
        problem(x, path, "must be an array of strings");
        return false;
    }
    size_t n = json_array_size(v), bad = 0;
    const char **tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp) {
        problem(x, path, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN], why[WHY_LEN];
        path_index(p, path, i);
        if (!want_str(x, p, json_array_get(v, i), false, &tmp[i])) {
            bad++;
            continue;
        }
        if (check && !check(tmp[i], why, sizeof why)) {
            problem(x, p, "%s", why);
            bad++;
            continue;
        }
        for (size_t j = 0; unique && j < i; j++) {
            if (tmp[j] && strcmp(tmp[j], tmp[i]) == 0) {
                problem(x, p, "repeats \"%.60s\"", tmp[i]);
                bad++;
                break;
            }
        }
    }
    char **nv = NULL;
    if (!bad && strv_from(tmp, n, &nv) != 0) {
        problem(x, path, "out of memory");
        bad++;
    }
    free(tmp);
    if (bad) return false;
    strv_free(*arr, *count);
    *arr = nv;
    *count = n;
    return true;
}

/* ------------------------------------------------------------------ field tables */

typedef enum fkind { F_U32, F_U64, F_BOOL, F_STR, F_STR_NULL } fkind_t;

/* A scalar key of an object: where it lives in config_t and what it accepts. */
typedef struct field {
    const char *key;
    fkind_t kind;
    size_t off;
    uint64_t lo, hi;
    str_check_fn check;
} field_t;

#define FU32(k, m, lo, hi) { k, F_U32, offsetof(config_t, m), lo, hi, NULL }
#define FU64(k, m, lo, hi) { k, F_U64, offsetof(config_t, m), lo, hi, NULL }
#define FBOOL(k, m) { k, F_BOOL, offsetof(config_t, m), 0, 0, NULL }
#define FSTR(k, m, chk) { k, F_STR, offsetof(config_t, m), 0, 0, chk }
#define FSTRN(k, m, chk) { k, F_STR_NULL, offsetof(config_t, m), 0, 0, chk }
#define NFIELDS(t) (sizeof t / sizeof *t)

static void apply_field(ctx_t *x, config_t *c, const field_t *f, json_t *v, const char *path)
{
    char *base = (char *)c + f->off;
    uint64_t u;
    bool b;
    const char *s;
    char why[WHY_LEN];
    switch (f->kind) {
    case F_U32:
        if (want_int(x, path, v, f->lo, f->hi, &u)) *(uint32_t *)(void *)base = (uint32_t)u;
        break;
    case F_U64:
        if (want_int(x, path, v, f->lo, f->hi, &u)) *(uint64_t *)(void *)base = u;
        break;
    case F_BOOL:
        if (want_bool(x, path, v, &b)) *(bool *)(void *)base = b;
        break;
    case F_STR:
    case F_STR_NULL:
        if (!want_str(x, path, v, f->kind == F_STR_NULL, &s)) break;
        if (s && f->check && !f->check(s, why, sizeof why)) {
            problem(x, path, "%s", why);
            break;
        }
        set_str(x, path, (char **)(void *)base, s);
        break;
    }
}

/* Handles a key the field table does not list; false: the key is unknown. */
typedef bool (*custom_fn)(ctx_t *x, config_t *c, const char *key, json_t *v, const char *path);

static void apply_object(ctx_t *x, config_t *c, json_t *obj, const char *path,
                         const field_t *fields, size_t nf, custom_fn custom)
{
    if (!json_is_object(obj)) {
        problem(x, path, "must be an object");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        char p[PATH_LEN];
        path_key(p, path, key);
        const field_t *f = NULL;
        for (size_t i = 0; i < nf && !f; i++)
            if (strcmp(fields[i].key, key) == 0) f = &fields[i];
        if (f) apply_field(x, c, f, v, p);
        else if (!custom || !custom(x, c, key, v, p)) problem(x, p, "unknown key");
    }
}

static const field_t top_fields[] = {
    FSTR("data_dir", data_dir, check_nonempty),
    FSTR("node_id", node_id, check_node_id),
    FU32("workers", workers, 0, 1024),
    FSTR("log_level", log_level, check_log_level),
    FU32("shutdown_timeout_s", shutdown_timeout_s, 0, 3600),
};

static const field_t heartbeat_fields[] = {
    FU32("interval_s", heartbeat.interval_s, 1, 86400),
    FU32("timeout_s", heartbeat.timeout_s, 1, 86400),
};

#define HISTORY_SIZE_MAX 10000000u

static const field_t history_fields[] = {
    FU32("size", history.size, 0, HISTORY_SIZE_MAX),
    FU32("ttl_s", history.ttl_s, 1, UINT32_MAX),
    FBOOL("durable", history.durable),
    FBOOL("fsync", history.fsync),
    FU32("idempotency_ttl_s", history.idempotency_ttl_s, 1, UINT32_MAX),
};

static const field_t limits_fields[] = {
    FU32("max_connections", limits.max_connections, 1, UINT32_MAX),
    FU32("max_channels_per_connection", limits.max_channels_per_connection, 1, UINT32_MAX),
    FU32("max_message_bytes", limits.max_message_bytes, 1, 1u << 30),
    FU64("max_body_bytes", limits.max_body_bytes, 1, 1ull << 32),
    FU32("messages_per_second", limits.messages_per_second, 1, UINT32_MAX),
    FU32("connections_per_ip_per_second", limits.connections_per_ip_per_second, 0, UINT32_MAX),
    FU64("send_queue_bytes", limits.send_queue_bytes, 1, 1ull << 40),
};

static const field_t tls_fields[] = {
    FSTRN("cert_file", tls.cert_file, NULL),
    FSTRN("key_file", tls.key_file, NULL),
};

static const field_t redis_fields[] = {
    FSTRN("url", redis.url, check_redis_url),
    FSTR("prefix", redis.prefix, check_prefix),
};

static const field_t jwt_fields[] = {
    FSTRN("secret", auth.jwt_secret, NULL),
    FSTRN("public_key_file", auth.jwt_public_key_file, NULL),
    FSTRN("issuer", auth.jwt_issuer, NULL),
    FSTRN("audience", auth.jwt_audience, NULL),
    FU32("leeway_s", auth.jwt_leeway_s, 0, 3600),
};

static const field_t auth_fields[] = {
    FBOOL("anonymous", auth.anonymous),
};

static const field_t socketio_fields[] = {
    FBOOL("enabled", socketio.enabled),
    FSTR("path", socketio.path, check_sio_path),
    FU32("ping_interval_ms", socketio.ping_interval_ms, 1, 86400000),
    FU32("ping_timeout_ms", socketio.ping_timeout_ms, 1, 86400000),
    FSTRN("connected_event", socketio.connected_event, NULL),
    FBOOL("recovery", socketio.recovery),
};

/* ------------------------------------------------------------------ auth, socketio */

static bool jwt_custom(ctx_t *x, config_t *c, const char *key, json_t *v, const char *path)
{
    if (strcmp(key, "algorithms") != 0) return false;
    if (json_is_array(v) && json_array_size(v) == 0) {
        problem(x, path, "must list at least one algorithm");
        return true;
    }
    apply_strv(x, path, v, check_jwt_alg, true, &c->auth.jwt_algorithms, &c->auth.jwt_algorithm_count);
    return true;
}

static bool auth_custom(ctx_t *x, config_t *c, const char *key, json_t *v, const char *path)
{
    if (strcmp(key, "jwt") != 0) return false;
    apply_object(x, c, v, path, jwt_fields, NFIELDS(jwt_fields), jwt_custom);
    return true;
}

/* Socket.IO reserves these names, and herald's built-in events are always on. */
static bool sio_event_reserved(const char *name)
{
    static const char *const taken[] = {"subscribe", "unsubscribe", "getRooms", "ping", "connect",
                                        "connect_error", "disconnect", "disconnecting",
                                        "newListener", "removeListener"};
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++)
        if (strcmp(name, taken[i]) == 0) return true;
    return false;
}

static void apply_sio_events(ctx_t *x, json_t *v, const char *path, json_t **field)
{
    if (!json_is_object(v)) {
        problem(x, path, "must be an object of event name to channel template");
        return;
    }
    size_t before = x->n;
    const char *key;
    json_t *t;
    json_object_foreach(v, key, t) {
        char p[PATH_LEN], why[WHY_LEN];
        const char *s;
        path_key(p, path, key);
        if (!*key) problem(x, p, "an event name must not be empty");
        else if (sio_event_reserved(key)) problem(x, p, "\"%.40s\" is a built-in or reserved event", key);
        if (want_str(x, p, t, false, &s) && !check_sio_template(s, why, sizeof why)) problem(x, p, "%s", why);
    }
    if (x->n != before) return;
    json_t *copy = json_deep_copy(v);
    if (!copy) {
        problem(x, path, "out of memory");
        return;
    }
    json_decref(*field);
    *field = copy;
}

static bool sio_custom(ctx_t *x, config_t *c, const char *key, json_t *v, const char *path)
{
    if (strcmp(key, "namespaces") == 0)
        apply_strv(x, path, v, check_namespace, true, &c->socketio.namespaces, &c->socketio.namespace_count);
    else if (strcmp(key, "join_events") == 0)
        apply_sio_events(x, v, path, &c->socketio.join_events);
    else if (strcmp(key, "leave_events") == 0)
        apply_sio_events(x, v, path, &c->socketio.leave_events);
    else
        return false;
    return true;
}

/* ------------------------------------------------------------------ channels */

static bool pattern_has_sub(const char *s)
{
    return strstr(s, "{sub}") != NULL;
}

static void parse_rule_policy(ctx_t *x, json_t *v, const char *path, const char *pattern, policy_t *out)
{
    const char *s;
    if (!want_str(x, path, v, false, &s)) return;
    if (!policy_parse(s, out)) {
        problem(x, path, "\"%.40s\" is not a policy (any, authenticated, owner, claim, access_token, none, deny)", s);
        return;
    }
    if (*out == POLICY_OWNER && pattern && !pattern_has_sub(pattern))
        problem(x, path, "owner needs {sub} in the pattern");
}

static void parse_rule_history(ctx_t *x, json_t *v, const char *path, channel_rule_t *r)
{
    if (!json_is_object(v)) {
        problem(x, path, "must be an object");
        return;
    }
    const char *key;
    json_t *f;
    json_object_foreach(v, key, f) {
        char p[PATH_LEN];
        uint64_t u;
        path_key(p, path, key);
        if (strcmp(key, "size") == 0) {
            if (want_int(x, p, f, 0, HISTORY_SIZE_MAX, &u)) r->history_size = (uint32_t)u;
        } else if (strcmp(key, "ttl_s") == 0) {
            if (want_int(x, p, f, 1, UINT32_MAX, &u)) r->history_ttl_s = (uint32_t)u;
        } else {
            problem(x, p, "unknown key");
        }
    }
    r->has_history = true;
}

/* One rule of "channels". A rule's history fields it leaves out are the top-level
 * history's (applied before the rules for that reason). */
static void parse_rule(ctx_t *x, const config_t *c, json_t *o, const char *path, channel_rule_t *r)
{
    char p[PATH_LEN], why[WHY_LEN];
    r->subscribe = r->publish = POLICY_DENY;
    r->history_size = c->history.size;
    r->history_ttl_s = c->history.ttl_s;
    if (!json_is_object(o)) {
        problem(x, path, "must be an object");
        return;
    }
    const char *pattern = NULL;
    json_t *pv = json_object_get(o, "pattern");
    path_key(p, path, "pattern");
    if (!pv) problem(x, p, "is required");
    else if (want_str(x, p, pv, false, &pattern) && !check_template(pattern, true, &rule_names, why, sizeof why)) {
        problem(x, p, "%s", why);
        pattern = NULL;
    }
    if (pattern && !(r->pattern = strdup(pattern))) problem(x, p, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        path_key(p, path, key);
        if (strcmp(key, "pattern") == 0) continue;
        if (strcmp(key, "subscribe") == 0) parse_rule_policy(x, v, p, pattern, &r->subscribe);
        else if (strcmp(key, "publish") == 0) parse_rule_policy(x, v, p, pattern, &r->publish);
        else if (strcmp(key, "history") == 0) parse_rule_history(x, v, p, r);
        else problem(x, p, "unknown key");
    }
}

static void apply_channels(ctx_t *x, config_t *c, json_t *v, const char *path)
{
    if (!json_is_array(v)) {
        problem(x, path, "must be an array of rules");
        return;
    }
    size_t n = json_array_size(v), before = x->n;
    channel_rule_t *rules = calloc(n ? n : 1, sizeof *rules);
    if (!rules) {
        problem(x, path, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN];
        path_index(p, path, i);
        parse_rule(x, c, json_array_get(v, i), p, &rules[i]);
        for (size_t j = 0; rules[i].pattern && j < i; j++) {
            if (rules[j].pattern && strcmp(rules[i].pattern, rules[j].pattern) == 0) {
                char pp[PATH_LEN];
                path_key(pp, p, "pattern");
                problem(x, pp, "same pattern as $.channels[%zu]: this rule never matches", j);
                break;
            }
        }
    }
    /* a rule list is all-or-nothing: dropping one rule would change who may read what */
    if (x->n != before) {
        rules_free(rules, n);
        return;
    }
    rules_free(c->channels, c->channel_rule_count);
    c->channels = n ? rules : NULL;
    c->channel_rule_count = n;
    if (!n) free(rules);
}

/* ------------------------------------------------------------------ routes */

#define ROUTE_MAX_PARAMS 16

typedef struct route_params {
    char names[ROUTE_MAX_PARAMS][64];
    const char *list[ROUTE_MAX_PARAMS];
    size_t n;
} route_params_t;

/* "/ws/a/{x}/b": literal segments and whole-segment {params}, each name once. */
static bool parse_route_path(const char *s, route_params_t *rp, char *why, size_t wl)
{
    rp->n = 0;
    if (strncmp(s, "/ws/", 4) != 0 || !s[4]) {
        snprintf(why, wl, "must start with \"/ws/\" and name more than that");
        return false;
    }
    if (has_space_or_ctl(s) || strpbrk(s, "?#*")) {
        snprintf(why, wl, "must not contain spaces, '?', '#' or '*'");
        return false;
    }
    for (const char *seg = s + 4; seg;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0) {
            snprintf(why, wl, "has an empty segment");
            return false;
        }
        const char *ob = memchr(seg, '{', len), *cb = memchr(seg, '}', len);
        if (ob || cb) {
            if (seg[0] != '{' || seg[len - 1] != '}' || len < 3 || memchr(seg + 1, '{', len - 2) ||
                memchr(seg + 1, '}', len - 2)) {
                snprintf(why, wl, "a {param} must be a whole segment with balanced braces");
                return false;
            }
            size_t nl = len - 2;
            for (size_t i = 0; i < nl; i++) {
                if (!is_name_char(seg[1 + i]) || nl >= sizeof rp->names[0]) {
                    snprintf(why, wl, "a parameter name is 1-63 characters of A-Z a-z 0-9 _ -");
                    return false;
                }
            }
            for (size_t i = 0; i < rp->n; i++) {
                if (strlen(rp->names[i]) == nl && memcmp(rp->names[i], seg + 1, nl) == 0) {
                    snprintf(why, wl, "repeats {%.*s}", (int)nl, seg + 1);
                    return false;
                }
            }
            if (rp->n == ROUTE_MAX_PARAMS) {
                snprintf(why, wl, "has more than %d parameters", ROUTE_MAX_PARAMS);
                return false;
            }
            memcpy(rp->names[rp->n], seg + 1, nl);
            rp->names[rp->n][nl] = '\0';
            rp->list[rp->n] = rp->names[rp->n];
            rp->n++;
        }
        seg = end ? end + 1 : NULL;
    }
    return true;
}

/* Two routes with the same shape ("/ws/a/{x}" and "/ws/a/{y}") would be ambiguous. */
static bool route_paths_same(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a == '{' && *b == '{') {
            a = strchr(a, '}');
            b = strchr(b, '}');
            if (!a || !b) return false;
        } else if (*a != *b) {
            return false;
        }
        a++;
        b++;
    }
    return *a == *b;
}

static void parse_route_enum(ctx_t *x, json_t *v, const char *path, route_t *r, bool is_auth)
{
    const char *s;
    if (!want_str(x, path, v, false, &s)) return;
    if (is_auth) {
        if (strcmp(s, "access_token") == 0) r->auth = ROUTE_AUTH_ACCESS_TOKEN;
        else if (strcmp(s, "jwt") == 0) r->auth = ROUTE_AUTH_JWT;
        else if (strcmp(s, "none") == 0) r->auth = ROUTE_AUTH_NONE;
        else problem(x, path, "\"%.40s\" is not access_token, jwt or none", s);
    } else {
        if (strcmp(s, "envelope") == 0) r->format = ROUTE_FORMAT_ENVELOPE;
        else if (strcmp(s, "data") == 0) r->format = ROUTE_FORMAT_DATA;
        else problem(x, path, "\"%.40s\" is not envelope or data", s);
    }
}

static void parse_route_channels(ctx_t *x, json_t *v, const char *path, const route_params_t *rp,
                                 bool path_ok, route_t *r)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        problem(x, path, "must be a non-empty array of channel templates");
        return;
    }
    names_t nm = {rp->list, rp->n, false, false, "is not a parameter of the route path"};
    size_t n = json_array_size(v), before = x->n;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN], why[WHY_LEN];
        const char *s;
        path_index(p, path, i);
        /* with a broken path its parameters are unknown: judge the templates alone */
        names_t any = {NULL, 0, true, false, ""};
        if (want_str(x, p, json_array_get(v, i), false, &s) &&
            !check_template(s, false, path_ok ? &nm : &any, why, sizeof why))
            problem(x, p, "%s", why);
    }
    if (x->n != before) return;
    r->channels = calloc(n, sizeof *r->channels);
    for (size_t i = 0; r->channels && i < n; i++) {
        if (!(r->channels[i] = strdup(json_string_value(json_array_get(v, i))))) break;
        r->channel_count = i + 1;
    }
    if (r->channel_count != n) problem(x, path, "out of memory");
}

/* Unset auth is jwt: the route then behaves as /ws does, with fixed channels. */
static void parse_route(ctx_t *x, json_t *o, const char *path, route_t *r)
{
    char p[PATH_LEN], why[WHY_LEN];
    route_params_t rp = {.n = 0};
    r->auth = ROUTE_AUTH_JWT;
    r->format = ROUTE_FORMAT_ENVELOPE;
    if (!json_is_object(o)) {
        problem(x, path, "must be an object");
        return;
    }
    const char *s = NULL;
    bool path_ok = false;
    json_t *pv = json_object_get(o, "path");
    path_key(p, path, "path");
    if (!pv) problem(x, p, "is required");
    else if (want_str(x, p, pv, false, &s) && !(path_ok = parse_route_path(s, &rp, why, sizeof why)))
        problem(x, p, "%s", why);
    if (path_ok && !(r->path = strdup(s))) problem(x, p, "out of memory");
    path_key(p, path, "channels");
    if (!json_object_get(o, "channels")) problem(x, p, "is required");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        path_key(p, path, key);
        if (strcmp(key, "path") == 0) continue;
        if (strcmp(key, "channels") == 0) parse_route_channels(x, v, p, &rp, path_ok, r);
        else if (strcmp(key, "auth") == 0) parse_route_enum(x, v, p, r, true);
        else if (strcmp(key, "format") == 0) parse_route_enum(x, v, p, r, false);
        else problem(x, p, "unknown key");
    }
}

static void apply_routes(ctx_t *x, config_t *c, json_t *v, const char *path)
{
    if (!json_is_array(v)) {
        problem(x, path, "must be an array of routes");
        return;
    }
    size_t n = json_array_size(v), before = x->n;
    route_t *routes = calloc(n ? n : 1, sizeof *routes);
    if (!routes) {
        problem(x, path, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN];
        path_index(p, path, i);
        parse_route(x, json_array_get(v, i), p, &routes[i]);
        for (size_t j = 0; routes[i].path && j < i; j++) {
            if (routes[j].path && route_paths_same(routes[i].path, routes[j].path)) {
                char pp[PATH_LEN];
                path_key(pp, p, "path");
                problem(x, pp, "same path as $.routes[%zu]", j);
                break;
            }
        }
    }
    if (x->n != before) {
        routes_free(routes, n);
        return;
    }
    routes_free(c->routes, c->route_count);
    c->routes = n ? routes : NULL;
    c->route_count = n;
    if (!n) free(routes);
}

/* ------------------------------------------------------------------ sources */

static bool check_source_name(const char *s, char *why, size_t wl)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 64;
    for (const char *p = s; ok && *p; p++) ok = is_name_char(*p) || *p == '.';
    if (!ok) snprintf(why, wl, "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    return ok;
}

static bool check_ws_url(const char *s, char *why, size_t wl)
{
    const char *rest = NULL;
    if (strncmp(s, "ws://", 5) == 0) rest = s + 5;
    else if (strncmp(s, "wss://", 6) == 0) rest = s + 6;
    if (rest && *rest && *rest != '/' && *rest != ':' && !has_space_or_ctl(rest)) return true;
    snprintf(why, wl, "must be a ws:// or wss:// URL with a host");
    return false;
}

static bool check_evm_address(const char *s, char *why, size_t wl)
{
    bool ok = strlen(s) == 42 && s[0] == '0' && s[1] == 'x';
    for (size_t i = 2; ok && i < 42; i++) ok = is_hex(s[i]);
    if (!ok) snprintf(why, wl, "must be 0x and 40 hex digits");
    return ok;
}

/* SP...ABC.contract-name: a Stacks principal, a dot, a contract name. */
static bool check_contract(const char *s, char *why, size_t wl)
{
    const char *dot = strchr(s, '.');
    bool ok = dot && dot > s + 1 && s[0] == 'S' && !strchr(dot + 1, '.') && is_alpha(dot[1]);
    for (const char *p = s; ok && p < dot; p++) ok = is_digit(*p) || (*p >= 'A' && *p <= 'Z');
    for (const char *p = dot ? dot + 1 : s; ok && *p; p++)
        ok = is_name_char(*p) || *p == '!' || *p == '?';
    if (!ok) snprintf(why, wl, "must be a contract identifier: PRINCIPAL.contract-name");
    return ok;
}

static const char *const event_name[] = {"event"};
static const names_t removed_names = {event_name, 1, false, false, "is not allowed: only {event} is known here"};

/* Reads a required or optional string key of a source object and checks it. */
static const char *src_str(ctx_t *x, json_t *o, const char *path, const char *key, bool required, str_check_fn check)
{
    char p[PATH_LEN], why[WHY_LEN];
    const char *s;
    json_t *v = json_object_get(o, key);
    path_key(p, path, key);
    if (!v) {
        if (required) problem(x, p, "is required");
        return NULL;
    }
    if (!want_str(x, p, v, false, &s)) return NULL;
    if (check && !check(s, why, sizeof why)) {
        problem(x, p, "%s", why);
        return NULL;
    }
    return s;
}

static void src_template(ctx_t *x, json_t *o, const char *path, const char *key, bool required, const names_t *nm)
{
    char p[PATH_LEN], why[WHY_LEN];
    const char *s = src_str(x, o, path, key, required, NULL);
    path_key(p, path, key);
    if (s && !check_template(s, false, nm, why, sizeof why)) problem(x, p, "%s", why);
}

static bool keys_known(ctx_t *x, json_t *o, const char *path, const char *const *keys, size_t n)
{
    const char *key;
    json_t *v;
    bool ok = true;
    json_object_foreach(o, key, v) {
        size_t i = 0;
        while (i < n && strcmp(keys[i], key) != 0) i++;
        if (i == n) {
            char p[PATH_LEN];
            path_key(p, path, key);
            problem(x, p, "unknown key");
            ok = false;
        }
    }
    return ok;
}

/* Validates an array under key whose every element is an object checked by each_fn. */
static void src_array(ctx_t *x, json_t *o, const char *path, const char *key,
                      void (*each_fn)(ctx_t *, json_t *, const char *))
{
    char p[PATH_LEN];
    json_t *a = json_object_get(o, key);
    path_key(p, path, key);
    if (!a) {
        problem(x, p, "is required");
        return;
    }
    if (!json_is_array(a) || json_array_size(a) == 0) {
        problem(x, p, "must be a non-empty array of objects");
        return;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        char pi[PATH_LEN];
        path_index(pi, p, i);
        json_t *e = json_array_get(a, i);
        if (!json_is_object(e)) problem(x, pi, "must be an object");
        else each_fn(x, e, pi);
    }
}

static void evm_event(ctx_t *x, json_t *e, const char *path)
{
    static const char *const keys[] = {"signature", "channel", "event"};
    char p[PATH_LEN], why[WHY_LEN];
    abi_event_t sig;
    const char *list[ABI_MAX_PARAMS];
    keys_known(x, e, path, keys, NFIELDS(keys));
    const char *s = src_str(x, e, path, "signature", true, NULL);
    /* the parser the evm source decodes with, so a signature that passes here is
     * one the source can subscribe to */
    bool sig_ok = false;
    path_key(p, path, "signature");
    if (s && !(sig_ok = abi_event_parse(s, &sig, why, sizeof why) == 0)) problem(x, p, "%s", why);
    for (size_t i = 0; sig_ok && i < sig.count; i++) list[i] = sig.params[i].name;
    names_t nm = {list, sig_ok ? sig.count : 0, !sig_ok, false, "is not a parameter of the event signature"};
    src_template(x, e, path, "channel", true, &nm);
    src_template(x, e, path, "event", false, &nm);
    if (sig_ok) abi_event_free(&sig);
}

static void check_evm(ctx_t *x, json_t *o, const char *path)
{
    static const char *const keys[] = {"type", "name", "url", "address", "start_block", "confirmations",
                                       "backfill_max_range", "removed_event", "events"};
    char p[PATH_LEN];
    uint64_t u;
    keys_known(x, o, path, keys, NFIELDS(keys));
    src_str(x, o, path, "url", true, check_ws_url);
    src_str(x, o, path, "address", true, check_evm_address);
    json_t *v = json_object_get(o, "start_block");
    path_key(p, path, "start_block");
    if (v && json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "latest") != 0 && strcmp(s, "earliest") != 0)
            problem(x, p, "must be \"latest\", \"earliest\" or a block number");
    } else if (v && !json_is_integer(v)) {
        problem(x, p, "must be \"latest\", \"earliest\" or a block number");
    } else if (v) {
        want_int(x, p, v, 0, INT64_MAX, &u);
    }
    if ((v = json_object_get(o, "confirmations"))) {
        path_key(p, path, "confirmations");
        want_int(x, p, v, 0, 10000, &u);
    }
    if ((v = json_object_get(o, "backfill_max_range"))) {
        path_key(p, path, "backfill_max_range");
        want_int(x, p, v, 1, 1000000, &u);
    }
    src_template(x, o, path, "removed_event", false, &removed_names);
    src_array(x, o, path, "events", evm_event);
}

static void chainhook_print(ctx_t *x, json_t *e, const char *path)
{
    static const char *const keys[] = {"contract", "channel", "event"};
    /* the names are fields of the printed Clarity value, unknown until it arrives */
    static const names_t any = {NULL, 0, true, false, ""};
    keys_known(x, e, path, keys, NFIELDS(keys));
    src_str(x, e, path, "contract", true, check_contract);
    src_template(x, e, path, "channel", true, &any);
    src_template(x, e, path, "event", false, &any);
}

static bool check_hook_path(const char *s, char *why, size_t wl)
{
    if (!check_http_path(s, why, wl)) return false;
    const char *r = reserved_path(s, false);
    if (!r) return true;
    snprintf(why, wl, "clashes with herald's own path %s", r);
    return false;
}

static const char *check_chainhook(ctx_t *x, json_t *o, const char *path)
{
    static const char *const keys[] = {"type", "name", "path", "authorization", "removed_event", "prints"};
    keys_known(x, o, path, keys, NFIELDS(keys));
    const char *hook = src_str(x, o, path, "path", true, check_hook_path);
    src_str(x, o, path, "authorization", false, NULL);
    src_template(x, o, path, "removed_event", false, &removed_names);
    src_array(x, o, path, "prints", chainhook_print);
    return hook;
}

/* Checks one source; returns its name and (chainhook) path, borrowed from o. */
static void check_source(ctx_t *x, json_t *o, const char *path, const char **name, const char **hook)
{
    *name = *hook = NULL;
    if (!json_is_object(o)) {
        problem(x, path, "must be an object");
        return;
    }
    *name = src_str(x, o, path, "name", true, check_source_name);
    const char *type = src_str(x, o, path, "type", true, NULL);
    if (!type) return;
    if (strcmp(type, "evm") == 0) {
        check_evm(x, o, path);
    } else if (strcmp(type, "chainhook") == 0) {
        *hook = check_chainhook(x, o, path);
    } else {
        char p[PATH_LEN];
        path_key(p, path, "type");
        problem(x, p, "\"%.40s\" is not evm or chainhook", type);
    }
}

static void apply_sources(ctx_t *x, config_t *c, json_t *v, const char *path)
{
    if (!json_is_array(v)) {
        problem(x, path, "must be an array of sources");
        return;
    }
    size_t n = json_array_size(v), before = x->n;
    const char **names = calloc(n ? n : 1, sizeof *names), **hooks = calloc(n ? n : 1, sizeof *hooks);
    if (!names || !hooks) {
        problem(x, path, "out of memory");
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN], pk[PATH_LEN];
        path_index(p, path, i);
        check_source(x, json_array_get(v, i), p, &names[i], &hooks[i]);
        for (size_t j = 0; j < i; j++) {
            if (names[i] && names[j] && strcmp(names[i], names[j]) == 0) {
                path_key(pk, p, "name");
                problem(x, pk, "same name as $.sources[%zu]", j);
            }
            if (hooks[i] && hooks[j] && strcmp(hooks[i], hooks[j]) == 0) {
                path_key(pk, p, "path");
                problem(x, pk, "same path as $.sources[%zu]", j);
            }
        }
    }
    free(names);
    free(hooks);
    if (x->n != before) return;
    json_t *copy = json_deep_copy(v);
    if (!copy) {
        problem(x, path, "out of memory");
        return;
    }
    json_decref(c->sources);
    c->sources = copy;
}

/* ------------------------------------------------------------------ top level */

static void apply_listen(ctx_t *x, config_t *c, const char *s, const char *path)
{
    char *host = NULL;
    uint16_t port = 0;
    int rc = config_parse_listen(s, &host, &port);
    if (rc == HERALD_ENOMEM) {
        problem(x, path, "out of memory");
        return;
    }
    if (rc != 0) {
        problem(x, path, "\"%.60s\" is not host:port (IPv4, [IPv6] or a host name; port 1-65535)", s);
        return;
    }
    if (!set_str(x, path, &c->listen, s)) {
        free(host);
        return;
    }
    free(c->listen_host);
    c->listen_host = host;
    c->listen_port = port;
}

static bool top_custom(ctx_t *x, config_t *c, const char *key, json_t *v, const char *path)
{
    const char *s;
    if (strcmp(key, "listen") == 0) {
        if (want_str(x, path, v, false, &s)) apply_listen(x, c, s, path);
    } else if (strcmp(key, "allowed_origins") == 0) {
        apply_strv(x, path, v, check_origin, false, &c->allowed_origins, &c->allowed_origin_count);
    } else if (strcmp(key, "api_keys") == 0) {
        apply_strv(x, path, v, check_api_key, false, &c->api_keys, &c->api_key_count);
    } else if (strcmp(key, "trusted_proxies") == 0) {
        apply_strv(x, path, v, check_cidr, false, &c->trusted_proxies, &c->trusted_proxy_count);
    } else if (strcmp(key, "auto_join") == 0) {
        apply_strv(x, path, v, check_auto_join, true, &c->auto_join, &c->auto_join_count);
    } else if (strcmp(key, "auth") == 0) {
        apply_object(x, c, v, path, auth_fields, NFIELDS(auth_fields), auth_custom);
    } else if (strcmp(key, "channels") == 0) {
        apply_channels(x, c, v, path);
    } else if (strcmp(key, "routes") == 0) {
        apply_routes(x, c, v, path);
    } else if (strcmp(key, "socketio") == 0) {
        apply_object(x, c, v, path, socketio_fields, NFIELDS(socketio_fields), sio_custom);
    } else if (strcmp(key, "heartbeat") == 0) {
        apply_object(x, c, v, path, heartbeat_fields, NFIELDS(heartbeat_fields), NULL);
    } else if (strcmp(key, "history") == 0) {
        /* applied first, before the rules that inherit from it */
    } else if (strcmp(key, "limits") == 0) {
        apply_object(x, c, v, path, limits_fields, NFIELDS(limits_fields), NULL);
    } else if (strcmp(key, "tls") == 0) {
        apply_object(x, c, v, path, tls_fields, NFIELDS(tls_fields), NULL);
    } else if (strcmp(key, "redis") == 0) {
        apply_object(x, c, v, path, redis_fields, NFIELDS(redis_fields), NULL);
    } else if (strcmp(key, "sources") == 0) {
        apply_sources(x, c, v, path);
    } else {
        return false;
    }
    return true;
}

size_t config_apply_json(config_t *c, json_t *root, config_problems_t *problems)
{
    ctx_t x = {problems, 0};
    if (!json_is_object(root)) {
        problem(&x, "$", "the configuration must be a JSON object");
        return x.n;
    }
    json_t *h = json_object_get(root, "history");
    if (h) apply_object(&x, c, h, "$.history", history_fields, NFIELDS(history_fields), NULL);
    apply_object(&x, c, root, "$", top_fields, NFIELDS(top_fields), top_custom);
    /* rules without their own history carry the top-level values, so a reader of
     * one rule needs nothing else */
    for (size_t i = 0; i < c->channel_rule_count; i++) {
        if (c->channels[i].has_history) continue;
        c->channels[i].history_size = c->history.size;
        c->channels[i].history_ttl_s = c->history.ttl_s;
    }
    return x.n;
}

size_t config_apply_file(config_t *c, const char *path, config_problems_t *problems)
{
    ctx_t x = {problems, 0};
    FILE *f = fopen(path, "r");
    if (!f) {
        problem(&x, "$", "cannot open %s: %s", path, strerror(errno));
        return x.n;
    }
    json_error_t err;
    /* duplicate keys are refused: with two "listen" keys one would silently lose */
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root) {
        problem(&x, "$", "line %d, column %d: %s", err.line, err.column, err.text);
        return x.n;
    }
    x.n += config_apply_json(c, root, problems);
    json_decref(root);
    return x.n;
}

/* ------------------------------------------------------------------ options and environment */

/* Splits "a, b,,c" into trimmed non-empty parts. */
static int split_csv(const char *s, char ***out, size_t *count)
{
    size_t cap = 1, n = 0;
    for (const char *p = s; *p; p++) cap += *p == ',';
    char **v = calloc(cap, sizeof *v);
    if (!v) return HERALD_ENOMEM;
    for (const char *p = s; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (b > a && !(v[n++] = strndup(a, (size_t)(b - a)))) {
            strv_free(v, n);
            return HERALD_ENOMEM;
        }
        p = *end ? end + 1 : end;
    }
    *out = v;
    *count = n;
    return 0;
}

static void option_list(ctx_t *x, const char *value, const char *path, str_check_fn check,
                        char ***arr, size_t *count)
{
    char **v = NULL, why[WHY_LEN];
    size_t n = 0, before = x->n;
    if (split_csv(value, &v, &n) != 0) {
        problem(x, path, "out of memory");
        return;
    }
    if (n == 0) problem(x, path, "names no value");
    for (size_t i = 0; i < n; i++)
        if (!check(v[i], why, sizeof why)) problem(x, path, "entry %zu: %s", i + 1, why);
    if (x->n != before) {
        strv_free(v, n);
        return;
    }
    strv_free(*arr, *count);
    *arr = v;
    *count = n;
}

static void option_str(ctx_t *x, const char *value, const char *path, str_check_fn check, char **field)
{
    char why[WHY_LEN];
    if (check && !check(value, why, sizeof why)) problem(x, path, "%s", why);
    else set_str(x, path, field, value);
}

size_t config_apply_option(config_t *c, const char *key, const char *value, const char *path,
                           config_problems_t *problems)
{
    ctx_t x = {problems, 0};
    if (strcmp(key, "listen") == 0) {
        apply_listen(&x, c, value, path);
    } else if (strcmp(key, "data_dir") == 0) {
        option_str(&x, value, path, check_nonempty, &c->data_dir);
    } else if (strcmp(key, "node_id") == 0) {
        option_str(&x, value, path, check_node_id, &c->node_id);
    } else if (strcmp(key, "api_key") == 0) {
        option_list(&x, value, path, check_api_key, &c->api_keys, &c->api_key_count);
    } else if (strcmp(key, "allowed_origins") == 0) {
        option_list(&x, value, path, check_origin, &c->allowed_origins, &c->allowed_origin_count);
    } else if (strcmp(key, "jwt_secret") == 0) {
        option_str(&x, value, path, check_nonempty, &c->auth.jwt_secret);
    } else if (strcmp(key, "redis_url") == 0) {
        option_str(&x, value, path, check_redis_url, &c->redis.url);
    } else if (strcmp(key, "log_level") == 0) {
        option_str(&x, value, path, check_log_level, &c->log_level);
    } else if (strcmp(key, "workers") == 0) {
        char *end = (char *)value;
        errno = 0;
        unsigned long long w = is_digit(value[0]) ? strtoull(value, &end, 10) : 0;
        if (!is_digit(value[0]) || *end || errno || w > 1024)
            problem(&x, path, "\"%.40s\" is not a number of workers from 0 to 1024", value);
        else
            c->workers = (unsigned)w;
    } else {
        problem(&x, path, "unknown option");
    }
    return x.n;
}

size_t config_apply_env(config_t *c, char **envp, config_problems_t *problems)
{
    static const struct { const char *var, *key; } map[] = {
        {"HERALD_LISTEN", "listen"},       {"HERALD_DATA_DIR", "data_dir"},
        {"HERALD_API_KEY", "api_key"},     {"HERALD_JWT_SECRET", "jwt_secret"},
        {"HERALD_REDIS_URL", "redis_url"}, {"HERALD_LOG_LEVEL", "log_level"},
        {"HERALD_WORKERS", "workers"},     {"HERALD_NODE_ID", "node_id"},
        {"HERALD_ALLOWED_ORIGINS", "allowed_origins"},
    };
    size_t n = 0;
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || strncmp(*e, "HERALD_", 7) != 0) continue;
        /* other HERALD_* variables belong to tools around herald, not to it */
        for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
            size_t len = strlen(map[i].var);
            if ((size_t)(eq - *e) != len || strncmp(*e, map[i].var, len) != 0) continue;
            /* VAR= (empty) counts as unset, as container env files write it */
            if (eq[1]) {
                char path[PATH_LEN];
                path_fmt(path, "env:%s", map[i].var);
                n += config_apply_option(c, map[i].key, eq + 1, path, problems);
            }
            break;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ whole-config checks */

static void check_readable(ctx_t *x, const char *path, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        problem(x, path, "cannot read %.120s: %s", file, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        problem(x, path, "%.120s is not a regular file", file);
    fclose(f);
}

static bool alg_listed(const config_t *c, const char *prefix)
{
    for (size_t i = 0; i < c->auth.jwt_algorithm_count; i++)
        if (strncmp(c->auth.jwt_algorithms[i], prefix, strlen(prefix)) == 0) return true;
    return false;
}

/* The default ["HS256"] with no secret is the anonymous-only setup, not a mistake;
 * any other list naming an HS algorithm was asked for and needs its secret. */
static void validate_jwt(ctx_t *x, const config_t *c)
{
    bool hs = alg_listed(c, "HS"), pk = alg_listed(c, "RS") || alg_listed(c, "ES");
    bool default_algs = c->auth.jwt_algorithm_count == 1 && strcmp(c->auth.jwt_algorithms[0], "HS256") == 0;
    if (pk && !c->auth.jwt_public_key_file)
        problem(x, "$.auth.jwt.public_key_file", "RS256 and ES256 need a public_key_file");
    if (c->auth.jwt_public_key_file) {
        if (!pk) problem(x, "$.auth.jwt.algorithms", "a public_key_file is set but no RS256 or ES256 is listed");
        check_readable(x, "$.auth.jwt.public_key_file", c->auth.jwt_public_key_file);
    }
    if (hs && !default_algs && !c->auth.jwt_secret)
        problem(x, "$.auth.jwt.secret", "HS256, HS384 and HS512 need a secret");
    if (c->auth.jwt_secret && !hs)
        problem(x, "$.auth.jwt.algorithms", "a secret is set but no HS256, HS384 or HS512 is listed");
    if (!c->auth.anonymous && !c->auth.jwt_secret && !c->auth.jwt_public_key_file)
        problem(x, "$.auth.anonymous", "false needs a way to verify tokens: auth.jwt.secret or public_key_file");
}

static void validate_hooks(ctx_t *x, const config_t *c)
{
    if (!c->socketio.enabled || !c->socketio.path || !json_is_array(c->sources)) return;
    const char *sio = c->socketio.path;
    size_t sl = strlen(sio);
    while (sl > 1 && sio[sl - 1] == '/') sl--;
    for (size_t i = 0; i < json_array_size(c->sources); i++) {
        const char *hook = json_string_value(json_object_get(json_array_get(c->sources, i), "path"));
        if (!hook || strncmp(hook, sio, sl) != 0 || (hook[sl] != '\0' && hook[sl] != '/')) continue;
        char p[PATH_LEN];
        path_fmt(p, "$.sources[%zu].path", i);
        problem(x, p, "clashes with socketio.path %.100s", sio);
    }
}

size_t config_validate(const config_t *c, config_problems_t *problems)
{
    ctx_t x = {problems, 0};
    if (!!c->tls.cert_file != !!c->tls.key_file)
        problem(&x, c->tls.cert_file ? "$.tls.key_file" : "$.tls.cert_file",
                "tls needs both cert_file and key_file");
    if (c->tls.cert_file) check_readable(&x, "$.tls.cert_file", c->tls.cert_file);
    if (c->tls.key_file) check_readable(&x, "$.tls.key_file", c->tls.key_file);
    validate_jwt(&x, c);
    validate_hooks(&x, c);
    return x.n;
}

/* ------------------------------------------------------------------ defaults, load, free */

/* SPEC 5's rules. The "*" rule's history there ({100, 300}) equals the top-level
 * history, so it is left to inherit it: otherwise a file changing only "history"
 * would change no channel at all. */
static int default_rules(config_t *c)
{
    static const struct { const char *pattern; policy_t subscribe; } spec[] = {
        {"user:{sub}", POLICY_OWNER},
        {"user:*", POLICY_DENY},
        {"*", POLICY_ANY},
    };
    size_t n = sizeof spec / sizeof *spec;
    c->channels = calloc(n, sizeof *c->channels);
    if (!c->channels) return HERALD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        channel_rule_t *r = &c->channels[i];
        r->subscribe = spec[i].subscribe;
        r->publish = POLICY_DENY;
        r->has_history = false;
        r->history_size = c->history.size;
        r->history_ttl_s = c->history.ttl_s;
        if (!(r->pattern = strdup(spec[i].pattern))) {
            c->channel_rule_count = i;
            return HERALD_ENOMEM;
        }
    }
    c->channel_rule_count = n;
    return 0;
}

static int default_strings(config_t *c)
{
    static const char *const hs256[] = {"HS256"}, *const user_sub[] = {"user:{sub}"};
    if (!(c->listen = strdup("0.0.0.0:8080")) || !(c->listen_host = strdup("0.0.0.0")) ||
        !(c->data_dir = strdup("./herald-data")) || !(c->node_id = strdup("auto")) ||
        !(c->log_level = strdup("info")) || !(c->socketio.path = strdup("/socket.io/")) ||
        !(c->redis.prefix = strdup("herald")))
        return HERALD_ENOMEM;
    if (strv_from(hs256, 1, &c->auth.jwt_algorithms) != 0) return HERALD_ENOMEM;
    c->auth.jwt_algorithm_count = 1;
    if (strv_from(user_sub, 1, &c->auto_join) != 0) return HERALD_ENOMEM;
    c->auto_join_count = 1;
    if (!(c->socketio.join_events = json_object()) || !(c->socketio.leave_events = json_object()) ||
        !(c->sources = json_array()))
        return HERALD_ENOMEM;
    return 0;
}

int config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    c->listen_port = 8080;
    c->workers = 0;
    c->auth.jwt_leeway_s = 5;
    c->auth.anonymous = true;
    c->socketio.enabled = true;
    c->socketio.ping_interval_ms = 25000;
    c->socketio.ping_timeout_ms = 20000;
    c->heartbeat.interval_s = 30;
    c->heartbeat.timeout_s = 10;
    c->history.size = 100;
    c->history.ttl_s = 300;
    c->history.durable = true;
    c->history.idempotency_ttl_s = 300;
    c->limits.max_connections = 100000;
    c->limits.max_channels_per_connection = 100;
    c->limits.max_message_bytes = 65536;
    c->limits.max_body_bytes = 1048576;
    c->limits.messages_per_second = 50;
    c->limits.connections_per_ip_per_second = 0;
    c->limits.send_queue_bytes = 1048576;
    c->shutdown_timeout_s = 10;
    if (default_strings(c) != 0 || default_rules(c) != 0) {
        config_free(c);
        return HERALD_ENOMEM;
    }
    return 0;
}

size_t config_load(config_t *c, const char *file, char **envp, config_problems_t *problems)
{
    ctx_t x = {problems, 0};
    if (config_defaults(c) != 0) {
        memset(c, 0, sizeof *c);
        problem(&x, "$", "out of memory");
        return x.n;
    }
    if (file) x.n += config_apply_file(c, file, problems);
    x.n += config_apply_env(c, envp, problems);
    return x.n;
}

void config_free(config_t *c)
{
    if (!c) return;
    free(c->listen);
    free(c->listen_host);
    free(c->data_dir);
    free(c->node_id);
    free(c->log_level);
    strv_free(c->allowed_origins, c->allowed_origin_count);
    strv_free(c->api_keys, c->api_key_count);
    strv_free(c->trusted_proxies, c->trusted_proxy_count);
    free(c->auth.jwt_secret);
    free(c->auth.jwt_public_key_file);
    strv_free(c->auth.jwt_algorithms, c->auth.jwt_algorithm_count);
    free(c->auth.jwt_issuer);
    free(c->auth.jwt_audience);
    strv_free(c->auto_join, c->auto_join_count);
    rules_free(c->channels, c->channel_rule_count);
    routes_free(c->routes, c->route_count);
    free(c->socketio.path);
    strv_free(c->socketio.namespaces, c->socketio.namespace_count);
    free(c->socketio.connected_event);
    json_decref(c->socketio.join_events);
    json_decref(c->socketio.leave_events);
    free(c->tls.cert_file);
    free(c->tls.key_file);
    free(c->redis.url);
    free(c->redis.prefix);
    json_decref(c->sources);
    /* zeroed, a second config_free is harmless */
    memset(c, 0, sizeof *c);
}
