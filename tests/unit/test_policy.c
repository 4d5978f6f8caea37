/* policy: channel-name validation, pattern matching, the default rules of SPEC
 * section 5, claim and access-token policies, template expansion. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth/policy.h"
#include "config.h"
#include "core/err.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- channel_name_valid ---- */

static void test_name_valid_typical_names(void **state)
{
    (void)state;
    assert_true(channel_name_valid(S("jobs")));
    assert_true(channel_name_valid(S("user:0xabc")));
    assert_true(channel_name_valid(S("stream:123")));
    assert_true(channel_name_valid(S("a")));
    assert_true(channel_name_valid(S("a$")));             /* '$' only refused first */
    assert_true(channel_name_valid(S("caf\xc3\xa9")));    /* 2-byte UTF-8 */
    assert_true(channel_name_valid(S("\xe6\x97\xa5:\xf0\x9f\x98\x80")));   /* 3- and 4-byte */
}

static void test_name_valid_empty_refused(void **state)
{
    (void)state;
    assert_false(channel_name_valid("", 0));
    assert_false(channel_name_valid("x", 0));   /* length rules, not the NUL */
}

static void test_name_valid_255_bytes_ok_256_refused(void **state)
{
    (void)state;
    char n[256];
    memset(n, 'a', sizeof n);
    assert_true(channel_name_valid(n, 255));
    assert_false(channel_name_valid(n, 256));
    /* a multi-byte character that ends exactly at byte 255 */
    memcpy(n + 253, "\xc3\xa9", 2);
    assert_true(channel_name_valid(n, 255));
    /* and one split by the 255 boundary is not valid UTF-8 */
    memset(n, 'a', sizeof n);
    memcpy(n + 254, "\xc3\xa9", 2);
    assert_false(channel_name_valid(n, 255));
}

static void test_name_valid_dollar_prefix_refused(void **state)
{
    (void)state;
    assert_false(channel_name_valid(S("$all")));
    assert_false(channel_name_valid(S("$")));
    assert_false(channel_name_valid(S("$x:y")));
}

static void test_name_valid_space_and_ascii_controls_refused(void **state)
{
    (void)state;
    assert_false(channel_name_valid(S("a b")));
    assert_false(channel_name_valid(S(" a")));
    assert_false(channel_name_valid(S("a ")));
    assert_false(channel_name_valid(S("a\tb")));
    assert_false(channel_name_valid(S("a\nb")));
    assert_false(channel_name_valid(S("a\rb")));
    assert_false(channel_name_valid(S("a\x01")));
    assert_false(channel_name_valid(S("a\x1f")));
    assert_false(channel_name_valid(S("a\x7f")));
    assert_false(channel_name_valid(S("a\0b")));   /* an embedded NUL counted in len */
}

/* SPEC 9.14 says "without control characters": U+0080..U+009F are control
 * characters too (Unicode Cc, e.g. U+0085 NEL, U+009B CSI, which terminals
 * interpret), encoded C2 80..C2 9F. */
static void test_name_valid_c1_controls_refused(void **state)
{
    (void)state;
    assert_false(channel_name_valid(S("a\xc2\x85" "b")));   /* U+0085 NEL */
    assert_false(channel_name_valid(S("a\xc2\x9b" "b")));   /* U+009B CSI */
    assert_false(channel_name_valid(S("a\xc2\x80")));       /* U+0080 */
    assert_true(channel_name_valid(S("a\xc2\xa9")));        /* U+00A9 is no control */
}

static void test_name_valid_invalid_utf8_refused(void **state)
{
    (void)state;
    assert_false(channel_name_valid(S("a\xff")));
    assert_false(channel_name_valid(S("a\xc3")));              /* truncated */
    assert_false(channel_name_valid(S("\xc0\xaf")));           /* overlong '/' */
    assert_false(channel_name_valid(S("\xed\xa0\x80")));       /* surrogate U+D800 */
    assert_false(channel_name_valid(S("\xf4\x90\x80\x80")));   /* above U+10FFFF */
    assert_false(channel_name_valid(S("\x80")));               /* lone continuation */
}

/* ---- policy_pattern_match ---- */

#define MATCH(pat, sub, name) policy_pattern_match(pat, sub, name, strlen(name))

static void test_pattern_literal_is_exact(void **state)
{
    (void)state;
    assert_true(MATCH("jobs", NULL, "jobs"));
    assert_false(MATCH("jobs", NULL, "job"));
    assert_false(MATCH("jobs", NULL, "jobs2"));
    assert_false(MATCH("jobs", NULL, "Jobs"));
    assert_false(MATCH("jobs", NULL, ""));
    /* an embedded NUL inside len is part of the name */
    assert_false(policy_pattern_match("jobs", NULL, "jobs\0x", 6));
}

static void test_pattern_trailing_star_matches_rest_including_nothing(void **state)
{
    (void)state;
    assert_true(MATCH("user:*", NULL, "user:"));
    assert_true(MATCH("user:*", NULL, "user:bob"));
    assert_true(MATCH("user:*", NULL, "user:a:b:c"));
    assert_false(MATCH("user:*", NULL, "user"));
    assert_false(MATCH("user:*", NULL, "users:x"));
    assert_true(MATCH("*", NULL, "anything:at:all"));
    assert_true(MATCH("*", NULL, ""));
}

static void test_pattern_star_not_at_end_is_literal(void **state)
{
    (void)state;
    assert_true(MATCH("a*b", NULL, "a*b"));
    assert_false(MATCH("a*b", NULL, "axb"));
    assert_false(MATCH("a*b", NULL, "ab"));
    assert_false(MATCH("a*b", NULL, "a*bc"));
    /* "a**": the first star literal, the last one the wildcard */
    assert_true(MATCH("a**", NULL, "a*"));
    assert_true(MATCH("a**", NULL, "a*xyz"));
    assert_false(MATCH("a**", NULL, "ab"));
}

static void test_pattern_name_placeholder_one_or_more_non_colon(void **state)
{
    (void)state;
    assert_true(MATCH("market:{id}", NULL, "market:m1"));
    assert_true(MATCH("market:{id}", NULL, "market:x"));
    assert_false(MATCH("market:{id}", NULL, "market:"));
    assert_false(MATCH("market:{id}", NULL, "market:a:b"));
    assert_false(MATCH("market:{id}", NULL, "market"));
    assert_true(MATCH("a:{x}:b", NULL, "a:123:b"));
    assert_false(MATCH("a:{x}:b", NULL, "a::b"));
    assert_true(MATCH("{ns}:*", NULL, "ns:"));
    assert_true(MATCH("{ns}:*", NULL, "ns:a:b"));
    assert_false(MATCH("{ns}:*", NULL, ":x"));
    assert_false(MATCH("{ns}:*", NULL, "nocolon"));
    /* backtracking: the placeholder must leave the literal suffix for the rest */
    assert_true(MATCH("p{x}-end", NULL, "pa-b-end"));
    assert_false(MATCH("p{x}-end", NULL, "pa-b-en"));
}

static void test_pattern_sub_replaced_literally_may_contain_colon(void **state)
{
    (void)state;
    assert_true(MATCH("user:{sub}", "alice", "user:alice"));
    assert_false(MATCH("user:{sub}", "alice", "user:alicex"));
    assert_false(MATCH("user:{sub}", "alice", "user:alic"));
    assert_false(MATCH("user:{sub}", "alice", "user:bob"));
    /* a sub with ':' is matched as it is, not as a segment */
    assert_true(MATCH("user:{sub}", "did:key:z6", "user:did:key:z6"));
    assert_false(MATCH("user:{sub}", "did:key:z6", "user:did:key"));
    /* characters that mean something in patterns are plain in a sub */
    assert_true(MATCH("user:{sub}", "a*", "user:a*"));
    assert_false(MATCH("user:{sub}", "a*", "user:abc"));
    assert_true(MATCH("user:{sub}", "{x}", "user:{x}"));
    assert_false(MATCH("user:{sub}", "{x}", "user:y"));
    /* followed by more pattern */
    assert_true(MATCH("user:{sub}:*", "alice", "user:alice:inbox"));
    assert_true(MATCH("user:{sub}:*", "alice", "user:alice:"));
    assert_false(MATCH("user:{sub}:*", "alice", "user:alice"));
}

static void test_pattern_sub_absent_or_empty_never_matches(void **state)
{
    (void)state;
    assert_false(MATCH("user:{sub}", NULL, "user:"));
    assert_false(MATCH("user:{sub}", NULL, "user:{sub}"));
    assert_false(MATCH("user:{sub}", NULL, "user:alice"));
    assert_false(MATCH("user:{sub}", "", "user:"));
}

static void test_pattern_unclosed_brace_matches_nothing(void **state)
{
    (void)state;
    assert_false(MATCH("user:{sub", "alice", "user:alice"));
    assert_false(MATCH("user:{sub", "alice", "user:{sub"));
}

/* ---- policy_check with the defaults of SPEC 5 ---- */

static int setup_defaults(void **state)
{
    config_t *c = calloc(1, sizeof *c);
    if (!c || config_defaults(c) != 0) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown_defaults(void **state)
{
    config_t *c = *state;
    config_free(c);
    free(c);
    return 0;
}

#define CHECK(cfg, p, act, name) policy_check(cfg, p, act, name, strlen(name))

static void test_defaults_have_three_spec_rules(void **state)
{
    const config_t *c = *state;
    assert_int_equal(c->channel_rule_count, 3);
    assert_string_equal(c->channels[0].pattern, "user:{sub}");
    assert_string_equal(c->channels[1].pattern, "user:*");
    assert_string_equal(c->channels[2].pattern, "*");
}

static void test_defaults_anonymous_on_user_channel_not_allowed(void **state)
{
    const config_t *c = *state;
    principal_t anon = {0};
    policy_verdict_t v = CHECK(c, &anon, POLICY_SUBSCRIBE, "user:alice");
    assert_true(v == VERDICT_FORBIDDEN || v == VERDICT_UNAUTHORIZED);
    v = CHECK(c, NULL, POLICY_SUBSCRIBE, "user:alice");
    assert_true(v == VERDICT_FORBIDDEN || v == VERDICT_UNAUTHORIZED);
    /* {sub} cannot match an anonymous principal, so user:* decides */
    assert_ptr_equal(policy_find_rule(c, &anon, S("user:alice")), &c->channels[1]);
}

static void test_defaults_owner_allowed_on_own_user_channel(void **state)
{
    const config_t *c = *state;
    principal_t alice = {.user = "alice"};
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "user:alice"), VERDICT_ALLOW);
    assert_ptr_equal(policy_find_rule(c, &alice, S("user:alice")), &c->channels[0]);
}

static void test_defaults_other_users_channel_forbidden_by_user_star_deny(void **state)
{
    const config_t *c = *state;
    principal_t alice = {.user = "alice"};
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "user:bob"), VERDICT_FORBIDDEN);
    assert_ptr_equal(policy_find_rule(c, &alice, S("user:bob")), &c->channels[1]);
    /* prefixes and extensions of the own name are someone else's */
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "user:alic"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "user:alicebob"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "user:alice:x"), VERDICT_FORBIDDEN);
}

static void test_defaults_sub_with_colon_owns_its_channel(void **state)
{
    const config_t *c = *state;
    principal_t p = {.user = "did:pkh:0xabc"};
    assert_int_equal(CHECK(c, &p, POLICY_SUBSCRIBE, "user:did:pkh:0xabc"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, &p, POLICY_SUBSCRIBE, "user:did:pkh"), VERDICT_FORBIDDEN);
}

static void test_defaults_jobs_subscribe_any_publish_none(void **state)
{
    const config_t *c = *state;
    principal_t anon = {0}, alice = {.user = "alice"};
    assert_int_equal(CHECK(c, &anon, POLICY_SUBSCRIBE, "jobs"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, &alice, POLICY_SUBSCRIBE, "jobs"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, NULL, POLICY_SUBSCRIBE, "market:m1"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, &anon, POLICY_PUBLISH, "jobs"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(c, &alice, POLICY_PUBLISH, "jobs"), VERDICT_FORBIDDEN);
}

static void test_defaults_owner_cannot_publish_on_own_channel(void **state)
{
    const config_t *c = *state;
    principal_t alice = {.user = "alice"};
    /* the rule has no publish: none */
    assert_int_equal(CHECK(c, &alice, POLICY_PUBLISH, "user:alice"), VERDICT_FORBIDDEN);
}

static void test_defaults_names_near_user_namespace_fall_to_star(void **state)
{
    const config_t *c = *state;
    principal_t anon = {0};
    assert_int_equal(CHECK(c, &anon, POLICY_SUBSCRIBE, "user"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, &anon, POLICY_SUBSCRIBE, "users:bob"), VERDICT_ALLOW);
    assert_int_equal(CHECK(c, &anon, POLICY_SUBSCRIBE, "user:"), VERDICT_FORBIDDEN);
}

/* The rule that describes a channel whoever subscribes ({sub} as any one segment):
 * where its history settings come from. */
static void test_find_rule_any_user_sub_matches_one_segment(void **state)
{
    const config_t *c = *state;
    assert_ptr_equal(policy_find_rule_any_user(c, S("user:bob")), &c->channels[0]);
    assert_ptr_equal(policy_find_rule_any_user(c, S("user:")), &c->channels[1]);
    assert_ptr_equal(policy_find_rule_any_user(c, S("user:a:b")), &c->channels[1]);
    assert_ptr_equal(policy_find_rule_any_user(c, S("jobs")), &c->channels[2]);
    /* braces in a name are plain characters */
    assert_ptr_equal(policy_find_rule_any_user(c, S("user:{sub}")), &c->channels[0]);
}

/* ---- custom rules: claim, access_token, authenticated, unmatched ---- */

static channel_rule_t custom_rules[] = {
    {.pattern = (char *)"private:*", .subscribe = POLICY_CLAIM, .publish = POLICY_CLAIM},
    {.pattern = (char *)"creator:{id}", .subscribe = POLICY_ACCESS_TOKEN, .publish = POLICY_DENY},
    {.pattern = (char *)"members:*", .subscribe = POLICY_AUTHENTICATED, .publish = POLICY_AUTHENTICATED},
    {.pattern = (char *)"chat:{room}", .subscribe = POLICY_ANY, .publish = POLICY_ANY},
};

static config_t custom_config(void)
{
    config_t c;
    memset(&c, 0, sizeof c);
    c.channels = custom_rules;
    c.channel_rule_count = sizeof custom_rules / sizeof *custom_rules;
    return c;
}

static void test_custom_no_rule_matches_forbidden(void **state)
{
    (void)state;
    config_t c = custom_config();
    principal_t alice = {.user = "alice"};
    assert_null(policy_find_rule(&c, &alice, S("jobs")));
    assert_int_equal(CHECK(&c, &alice, POLICY_SUBSCRIBE, "jobs"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(&c, NULL, POLICY_PUBLISH, "jobs"), VERDICT_FORBIDDEN);
    /* chat:{room} needs a room: "chat:" is unmatched, not "any" */
    assert_int_equal(CHECK(&c, &alice, POLICY_SUBSCRIBE, "chat:"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(&c, &alice, POLICY_SUBSCRIBE, "chat:1"), VERDICT_ALLOW);
    /* no rules at all: everything forbidden */
    config_t empty;
    memset(&empty, 0, sizeof empty);
    assert_int_equal(CHECK(&empty, &alice, POLICY_SUBSCRIBE, "chat:1"), VERDICT_FORBIDDEN);
}

static void test_custom_claim_lists_channel(void **state)
{
    (void)state;
    config_t c = custom_config();
    const char *const claims[] = {"private:a", "private:b"};
    principal_t p = {.user = "alice", .claim_channels = claims, .claim_channel_count = 2};
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:a"), VERDICT_ALLOW);
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:b"), VERDICT_ALLOW);
    assert_int_equal(CHECK(&c, &p, POLICY_PUBLISH, "private:b"), VERDICT_ALLOW);
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:c"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:ab"), VERDICT_FORBIDDEN);
    /* the count bounds the list */
    p.claim_channel_count = 1;
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:b"), VERDICT_FORBIDDEN);
}

static void test_custom_claim_without_claim_list_forbidden(void **state)
{
    (void)state;
    config_t c = custom_config();
    principal_t p = {.user = "alice"};
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:a"), VERDICT_FORBIDDEN);
}

static void test_custom_claim_needs_identity(void **state)
{
    (void)state;
    config_t c = custom_config();
    const char *const claims[] = {"private:a"};
    /* claims without a user cannot come from a valid JWT: no identity, unauthorized */
    principal_t p = {.claim_channels = claims, .claim_channel_count = 1};
    assert_int_equal(CHECK(&c, &p, POLICY_SUBSCRIBE, "private:a"), VERDICT_UNAUTHORIZED);
    assert_int_equal(CHECK(&c, NULL, POLICY_SUBSCRIBE, "private:a"), VERDICT_UNAUTHORIZED);
}

static void test_custom_access_token_scopes(void **state)
{
    (void)state;
    config_t c = custom_config();
    const char *const scopes[] = {"creator:abc", "creator:x*"};
    principal_t tok = {.token_scopes = scopes, .token_scope_count = 2};
    assert_int_equal(CHECK(&c, &tok, POLICY_SUBSCRIBE, "creator:abc"), VERDICT_ALLOW);
    assert_int_equal(CHECK(&c, &tok, POLICY_SUBSCRIBE, "creator:xyz"), VERDICT_ALLOW);   /* scope pattern */
    assert_int_equal(CHECK(&c, &tok, POLICY_SUBSCRIBE, "creator:abd"), VERDICT_FORBIDDEN);
    assert_int_equal(CHECK(&c, &tok, POLICY_SUBSCRIBE, "creator:ab"), VERDICT_FORBIDDEN);
    /* a token does not open publishing where the rule says none */
    assert_int_equal(CHECK(&c, &tok, POLICY_PUBLISH, "creator:abc"), VERDICT_FORBIDDEN);
}

static void test_custom_access_token_missing_is_unauthorized(void **state)
{
    (void)state;
    config_t c = custom_config();
    principal_t jwt_user = {.user = "abc"};
    assert_int_equal(CHECK(&c, &jwt_user, POLICY_SUBSCRIBE, "creator:abc"), VERDICT_UNAUTHORIZED);
    assert_int_equal(CHECK(&c, NULL, POLICY_SUBSCRIBE, "creator:abc"), VERDICT_UNAUTHORIZED);
    const char *const none[] = {"other:1"};
    principal_t tok = {.token_scopes = none, .token_scope_count = 0};
    assert_int_equal(CHECK(&c, &tok, POLICY_SUBSCRIBE, "creator:abc"), VERDICT_FORBIDDEN);
}

static void test_custom_authenticated_needs_user(void **state)
{
    (void)state;
    config_t c = custom_config();
    principal_t anon = {0}, alice = {.user = "alice"};
    assert_int_equal(CHECK(&c, &anon, POLICY_SUBSCRIBE, "members:1"), VERDICT_UNAUTHORIZED);
    assert_int_equal(CHECK(&c, &alice, POLICY_SUBSCRIBE, "members:1"), VERDICT_ALLOW);
    assert_int_equal(CHECK(&c, &alice, POLICY_PUBLISH, "members:1"), VERDICT_ALLOW);
}

static void test_custom_first_matching_rule_wins(void **state)
{
    (void)state;
    channel_rule_t rules[] = {
        {.pattern = (char *)"a:*", .subscribe = POLICY_DENY},
        {.pattern = (char *)"a:b", .subscribe = POLICY_ANY},
    };
    config_t c;
    memset(&c, 0, sizeof c);
    c.channels = rules;
    c.channel_rule_count = 2;
    assert_int_equal(CHECK(&c, NULL, POLICY_SUBSCRIBE, "a:b"), VERDICT_FORBIDDEN);
    rules[0].pattern = (char *)"a:c";
    assert_int_equal(CHECK(&c, NULL, POLICY_SUBSCRIBE, "a:b"), VERDICT_ALLOW);
}

/* ---- policy_expand_template ---- */

typedef struct kv { const char *k, *v; } kv_t;

static const char *lookup(void *ctx, const char *key, size_t key_len)
{
    for (const kv_t *p = ctx; p->k; p++)
        if (strlen(p->k) == key_len && memcmp(p->k, key, key_len) == 0) return p->v;
    return NULL;
}

static void assert_expand(const char *tmpl, const char *want)
{
    static const kv_t vars[] = {{"sub", "alice"}, {"creatorId", "c:1"}, {"0", "m1"},
                                {"empty", ""}, {"brace", "{sub}"}, {NULL, NULL}};
    char *got = policy_expand_template(tmpl, lookup, (void *)vars);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_expand_placeholders_replaced(void **state)
{
    (void)state;
    assert_expand("user:{sub}", "user:alice");
    assert_expand("creator:{creatorId}", "creator:c:1");
    assert_expand("{sub}-{0}", "alice-m1");
    assert_expand("{sub}{sub}", "alicealice");
    assert_expand("x{empty}y", "xy");
}

static void test_expand_no_placeholder_is_a_copy(void **state)
{
    (void)state;
    assert_expand("marketplace", "marketplace");
    assert_expand("", "");
}

static void test_expand_unknown_placeholder_gives_null(void **state)
{
    (void)state;
    assert_expand("user:{nobody}", NULL);
    assert_expand("{sub}:{nobody}", NULL);
}

static void test_expand_value_is_not_expanded_again(void **state)
{
    (void)state;
    assert_expand("x:{brace}", "x:{sub}");
}

/* An unclosed '{' must not silently drop the rest of the template: "user:{sub"
 * expanding to "user:" would be a different, real channel. It fails (NULL). */
static void test_expand_unclosed_brace_not_truncated(void **state)
{
    (void)state;
    static const kv_t vars[] = {{"sub", "alice"}, {NULL, NULL}};
    char *got = policy_expand_template("user:{sub", lookup, (void *)vars);
    char copy[32] = "";
    if (got) {
        strncpy(copy, got, sizeof copy - 1);
        free(got);
        assert_string_equal(copy, "user:{sub");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid_typical_names),
        cmocka_unit_test(test_name_valid_empty_refused),
        cmocka_unit_test(test_name_valid_255_bytes_ok_256_refused),
        cmocka_unit_test(test_name_valid_dollar_prefix_refused),
        cmocka_unit_test(test_name_valid_space_and_ascii_controls_refused),
        cmocka_unit_test(test_name_valid_c1_controls_refused),
        cmocka_unit_test(test_name_valid_invalid_utf8_refused),
        cmocka_unit_test(test_pattern_literal_is_exact),
        cmocka_unit_test(test_pattern_trailing_star_matches_rest_including_nothing),
        cmocka_unit_test(test_pattern_star_not_at_end_is_literal),
        cmocka_unit_test(test_pattern_name_placeholder_one_or_more_non_colon),
        cmocka_unit_test(test_pattern_sub_replaced_literally_may_contain_colon),
        cmocka_unit_test(test_pattern_sub_absent_or_empty_never_matches),
        cmocka_unit_test(test_pattern_unclosed_brace_matches_nothing),
        cmocka_unit_test_setup_teardown(test_defaults_have_three_spec_rules, setup_defaults, teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_anonymous_on_user_channel_not_allowed, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_owner_allowed_on_own_user_channel, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_other_users_channel_forbidden_by_user_star_deny,
                                        setup_defaults, teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_sub_with_colon_owns_its_channel, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_jobs_subscribe_any_publish_none, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_owner_cannot_publish_on_own_channel, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_defaults_names_near_user_namespace_fall_to_star, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test_setup_teardown(test_find_rule_any_user_sub_matches_one_segment, setup_defaults,
                                        teardown_defaults),
        cmocka_unit_test(test_custom_no_rule_matches_forbidden),
        cmocka_unit_test(test_custom_claim_lists_channel),
        cmocka_unit_test(test_custom_claim_without_claim_list_forbidden),
        cmocka_unit_test(test_custom_claim_needs_identity),
        cmocka_unit_test(test_custom_access_token_scopes),
        cmocka_unit_test(test_custom_access_token_missing_is_unauthorized),
        cmocka_unit_test(test_custom_authenticated_needs_user),
        cmocka_unit_test(test_custom_first_matching_rule_wins),
        cmocka_unit_test(test_expand_placeholders_replaced),
        cmocka_unit_test(test_expand_no_placeholder_is_a_copy),
        cmocka_unit_test(test_expand_unknown_placeholder_gives_null),
        cmocka_unit_test(test_expand_value_is_not_expanded_again),
        cmocka_unit_test(test_expand_unclosed_brace_not_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
