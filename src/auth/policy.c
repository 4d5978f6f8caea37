#include "auth/policy.h"
#include "core/util.h"
#include "ws/utf8.h"

#include <stdlib.h>
#include <string.h>

bool channel_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > 255 || name[0] == '$') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f) return false;
        /* C1 controls U+0080..U+009F are encoded C2 80..C2 9F */
        if (c == 0xc2 && i + 1 < len && (unsigned char)name[i + 1] <= 0x9f) return false;
    }
    return utf8_valid((const uint8_t *)name, len);
}

/* Recursive matcher over the pattern. `{x}` backtracks only within its segment
 * (it cannot span ':'), and config allows one such placeholder per segment, so a
 * match costs at most O(name length squared) for names of at most 255 bytes. */
/* Passed as `sub` to let {sub} match any one segment, like {name}. */
static const char any_sub[] = "";

static bool match_at(const char *p, const char *sub, const char *n, const char *end)
{
    while (*p) {
        if (*p == '*' && p[1] == '\0') return true;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) return false;
            if ((size_t)(close - p) == 4 && memcmp(p, "{sub}", 5) == 0 && sub != any_sub) {
                if (!sub) return false;
                size_t sl = strlen(sub);
                if ((size_t)(end - n) < sl || sl == 0 || memcmp(n, sub, sl) != 0) return false;
                n += sl;
                p = close + 1;
                continue;
            }
            /* {name}: one or more characters other than ':' */
            const char *q = n;
            while (q < end && *q != ':') q++;
            if (q == n) return false;
            for (const char *stop = q; stop > n; stop--)
                if (match_at(close + 1, sub, stop, end)) return true;
            return false;
        }
        if (n >= end || *n != *p) return false;
        n++;
        p++;
    }
    return n == end;
}

bool policy_pattern_match(const char *pattern, const char *sub, const char *name, size_t len)
{
    return match_at(pattern, sub, name, name + len);
}

const channel_rule_t *policy_find_rule(const config_t *cfg, const principal_t *p, const char *name,
                                       size_t len)
{
    const char *sub = p ? p->user : NULL;
    for (size_t i = 0; i < cfg->channel_rule_count; i++)
        if (policy_pattern_match(cfg->channels[i].pattern, sub, name, len)) return &cfg->channels[i];
    return NULL;
}

static bool listed(const char *const *list, size_t n, const char *sub, const char *name, size_t len)
{
    for (size_t i = 0; list && i < n; i++)
        if (policy_pattern_match(list[i], sub, name, len)) return true;
    return false;
}

const channel_rule_t *policy_find_rule_any_user(const config_t *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->channel_rule_count; i++)
        if (match_at(cfg->channels[i].pattern, any_sub, name, name + len)) return &cfg->channels[i];
    return NULL;
}

policy_verdict_t policy_check(const config_t *cfg, const principal_t *p, policy_action_t action,
                              const char *name, size_t len)
{
    const channel_rule_t *r = policy_find_rule(cfg, p, name, len);
    if (!r) return VERDICT_FORBIDDEN;
    policy_t pol = action == POLICY_SUBSCRIBE ? r->subscribe : r->publish;
    const char *user = p ? p->user : NULL;
    switch (pol) {
    case POLICY_ANY:
        return VERDICT_ALLOW;
    case POLICY_AUTHENTICATED:
    case POLICY_OWNER:   /* the {sub} in the matched pattern already equalled the user */
        return user ? VERDICT_ALLOW : VERDICT_UNAUTHORIZED;
    case POLICY_CLAIM:
        if (!user) return VERDICT_UNAUTHORIZED;
        return listed(p->claim_channels, p->claim_channel_count, user, name, len) ? VERDICT_ALLOW
                                                                                  : VERDICT_FORBIDDEN;
    case POLICY_ACCESS_TOKEN:
        if (!p || !p->token_scopes) return VERDICT_UNAUTHORIZED;
        return listed(p->token_scopes, p->token_scope_count, user, name, len) ? VERDICT_ALLOW
                                                                              : VERDICT_FORBIDDEN;
    case POLICY_DENY:
    default:
        return VERDICT_FORBIDDEN;
    }
}

char *policy_expand_template(const char *tmpl, const char *(*lookup)(void *ctx, const char *key, size_t key_len),
                             void *ctx)
{
    buf_t b = {0};
    for (const char *p = tmpl; *p;) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) {   /* malformed: refuse rather than cut the template short */
                buf_free(&b);
                return NULL;
            }
            const char *v = lookup(ctx, p + 1, (size_t)(close - p - 1));
            if (!v || buf_append_str(&b, v) < 0) {
                buf_free(&b);
                return NULL;
            }
            p = close + 1;
        } else {
            const char *next = strchr(p, '{');
            size_t n = next ? (size_t)(next - p) : strlen(p);
            if (buf_append(&b, p, n) < 0) {
                buf_free(&b);
                return NULL;
            }
            p += n;
        }
    }
    if (!b.data) return strdup("");
    return b.data;
}
