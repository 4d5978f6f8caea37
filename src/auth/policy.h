/* policy: may this principal subscribe to / publish on this channel?
 *
 * Rules come from the config's `channels` list; the first rule whose pattern
 * matches the channel decides (SPEC 5, 9.6). In a pattern, `{sub}` is replaced by
 * the principal's user before matching (a rule with `{sub}` cannot match an
 * anonymous principal), `{name}` matches one or more characters other than `:`,
 * and a final `*` matches the rest of the name, possibly nothing. A channel no rule
 * matches is denied. The same function serves every protocol.
 *
 * Also: channel-name validation, and template expansion for auto_join and routes.
 * Pure functions over borrowed data; any thread. */
#ifndef HERALD_POLICY_H
#define HERALD_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Who is asking. Filled by authentication (JWT, access tokens). */
typedef struct principal {
    const char *user;                 /* JWT sub, or NULL when anonymous */
    const char *const *claim_channels;/* the JWT `channels` claim, or NULL */
    size_t claim_channel_count;
    const char *const *token_scopes;  /* an access token's channel patterns, or NULL */
    size_t token_scope_count;
} principal_t;

typedef enum policy_action { POLICY_SUBSCRIBE, POLICY_PUBLISH } policy_action_t;

typedef enum policy_verdict {
    VERDICT_ALLOW = 0,
    VERDICT_FORBIDDEN,       /* denied by rule */
    VERDICT_UNAUTHORIZED,    /* the rule needs an identity the principal lacks */
} policy_verdict_t;

/* A client-usable channel name: 1-255 bytes of valid UTF-8 without control
 * characters or spaces, not starting with '$'. */
bool channel_name_valid(const char *name, size_t len);

/* Matches name against pattern; `sub` replaces {sub} (NULL: a pattern with {sub}
 * does not match). */
bool policy_pattern_match(const char *pattern, const char *sub, const char *name, size_t len);

/* The first rule matching the channel, or NULL. */
const channel_rule_t *policy_find_rule(const config_t *cfg, const principal_t *p, const char *name,
                                       size_t len);

/* The first rule matching the channel for some user ({sub} matching any one
 * segment): the rule whose settings (history) describe the channel itself. */
const channel_rule_t *policy_find_rule_any_user(const config_t *cfg, const char *name, size_t len);

policy_verdict_t policy_check(const config_t *cfg, const principal_t *p, policy_action_t action,
                              const char *name, size_t len);

/* Expands `{key}` placeholders in tmpl using lookup(ctx, key, key_len) (which
 * returns the value or NULL). Returns the new string, or NULL when a placeholder
 * has no value or memory runs out. */
char *policy_expand_template(const char *tmpl, const char *(*lookup)(void *ctx, const char *key, size_t key_len),
                             void *ctx);

#endif
