/* Unit tests for src/config.c and src/cli/cli_config.c: defaults, every kind of
 * problem with its JSON path, layering, syntax errors, and the check command. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cli/cli_config.h"
#include "core/err.h"

#define FIXTURE_DIR "tests/unit/fixtures/config/"

typedef struct fx {
    config_t c;
    config_problems_t p;
    char tmp[8][64]; /* files to unlink in teardown */
    size_t ntmp;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f || config_defaults(&f->c) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    for (size_t i = 0; i < f->ntmp; i++) unlink(f->tmp[i]);
    config_free(&f->c);
    config_problems_free(&f->p);
    free(f);
    return 0;
}

static void dump(const config_problems_t *p)
{
    for (size_t i = 0; i < p->count; i++) fprintf(stderr, "  problem %s: %s\n", p->items[i].path, p->items[i].message);
}

static const char *find(const config_problems_t *p, const char *path)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i].path, path) == 0) return p->items[i].message;
    return NULL;
}

#define assert_problem(p, path)                                       \
    do {                                                              \
        if (!find((p), (path))) {                                     \
            fprintf(stderr, "expected a problem at %s, got:\n", path); \
            dump(p);                                                  \
            fail();                                                   \
        }                                                             \
    } while (0)

#define assert_no_problems(p, n)     \
    do {                             \
        if ((n) != 0) dump(p);       \
        assert_int_equal((n), 0);    \
    } while (0)

/* Applies a JSON text; problems accumulate in f->p. Returns the number found. */
static size_t apply(fx_t *f, const char *text)
{
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root) fprintf(stderr, "bad test JSON: %s at line %d: %s\n", err.text, err.line, text);
    assert_non_null(root);
    size_t n = config_apply_json(&f->c, root, &f->p);
    json_decref(root);
    return n;
}

static const char *tmp_file(fx_t *f, const char *content)
{
    assert_true(f->ntmp < 8);
    char *path = f->tmp[f->ntmp];
    strcpy(path, "/tmp/herald-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    f->ntmp++;
    return path;
}

/* ------------------------------------------------------------------ defaults */

static void test_config_defaults_match_spec(void **state)
{
    const config_t *c = &((fx_t *)*state)->c;
    assert_string_equal(c->listen, "0.0.0.0:8080");
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 8080);
    assert_string_equal(c->data_dir, "./herald-data");
    assert_string_equal(c->node_id, "auto");
    assert_int_equal(c->workers, 0);
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->allowed_origin_count, 0);
    assert_int_equal(c->api_key_count, 0);
    assert_int_equal(c->trusted_proxy_count, 0);
    assert_null(c->auth.jwt_secret);
    assert_null(c->auth.jwt_public_key_file);
    assert_int_equal(c->auth.jwt_algorithm_count, 1);
    assert_string_equal(c->auth.jwt_algorithms[0], "HS256");
    assert_null(c->auth.jwt_issuer);
    assert_null(c->auth.jwt_audience);
    assert_int_equal(c->auth.jwt_leeway_s, 5);
    assert_true(c->auth.anonymous);
    assert_int_equal(c->route_count, 0);
    assert_true(c->socketio.enabled);
    assert_string_equal(c->socketio.path, "/socket.io/");
    assert_int_equal(c->socketio.namespace_count, 0);
    assert_int_equal(c->socketio.ping_interval_ms, 25000);
    assert_int_equal(c->socketio.ping_timeout_ms, 20000);
    assert_null(c->socketio.connected_event);
    assert_true(json_is_object(c->socketio.join_events) && json_object_size(c->socketio.join_events) == 0);
    assert_true(json_is_object(c->socketio.leave_events) && json_object_size(c->socketio.leave_events) == 0);
    assert_int_equal(c->heartbeat.interval_s, 30);
    assert_int_equal(c->heartbeat.timeout_s, 10);
    assert_int_equal(c->history.size, 100);
    assert_int_equal(c->history.ttl_s, 300);
    assert_true(c->history.durable);
    assert_int_equal(c->history.idempotency_ttl_s, 300);
    assert_int_equal(c->limits.max_connections, 100000);
    assert_int_equal(c->limits.max_channels_per_connection, 100);
    assert_int_equal(c->limits.max_message_bytes, 65536);
    assert_int_equal(c->limits.max_body_bytes, 1048576);
    assert_int_equal(c->limits.messages_per_second, 50);
    assert_int_equal(c->limits.connections_per_ip_per_second, 0);
    assert_int_equal(c->limits.send_queue_bytes, 1048576);
    assert_null(c->tls.cert_file);
    assert_null(c->tls.key_file);
    assert_int_equal(c->shutdown_timeout_s, 10);
    assert_null(c->redis.url);
    assert_string_equal(c->redis.prefix, "herald");
    assert_true(json_is_array(c->sources) && json_array_size(c->sources) == 0);
}

static void test_config_defaults_channel_rules_and_auto_join(void **state)
{
    const config_t *c = &((fx_t *)*state)->c;
    assert_int_equal(c->auto_join_count, 1);
    assert_string_equal(c->auto_join[0], "user:{sub}");
    assert_int_equal(c->channel_rule_count, 3);
    assert_string_equal(c->channels[0].pattern, "user:{sub}");
    assert_int_equal(c->channels[0].subscribe, POLICY_OWNER);
    assert_int_equal(c->channels[0].publish, POLICY_DENY);
    assert_string_equal(c->channels[1].pattern, "user:*");
    assert_int_equal(c->channels[1].subscribe, POLICY_DENY);
    assert_int_equal(c->channels[1].publish, POLICY_DENY);
    assert_string_equal(c->channels[2].pattern, "*");
    assert_int_equal(c->channels[2].subscribe, POLICY_ANY);
    assert_int_equal(c->channels[2].publish, POLICY_DENY);
    /* SPEC's {100, 300} for "*", carried as the inherited top-level history */
    assert_int_equal(c->channels[2].history_size, 100);
    assert_int_equal(c->channels[2].history_ttl_s, 300);
}

static void test_config_defaults_pass_validation(void **state)
{
    fx_t *f = *state;
    size_t n = config_validate(&f->c, &f->p);
    assert_no_problems(&f->p, n);
}

/* ------------------------------------------------------------------ a full file */

static void test_config_full_file_applies_every_key(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;
    size_t n = config_apply_file(c, FIXTURE_DIR "full.json", &f->p);
    assert_no_problems(&f->p, n);
    n = config_validate(c, &f->p);
    assert_no_problems(&f->p, n);

    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 9090);
    assert_string_equal(c->data_dir, "/var/lib/herald");
    assert_string_equal(c->node_id, "node-a");
    assert_int_equal(c->workers, 4);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(c->allowed_origin_count, 3);
    assert_string_equal(c->allowed_origins[2], "http://[::1]:8080");
    assert_int_equal(c->api_key_count, 2);
    assert_string_equal(c->api_keys[1], "k-two");
    assert_int_equal(c->trusted_proxy_count, 4);
    assert_string_equal(c->auth.jwt_secret, "s3cret-s3cret-s3cret-s3cret-s3cret");
    assert_int_equal(c->auth.jwt_algorithm_count, 2);
    assert_string_equal(c->auth.jwt_algorithms[1], "HS512");
    assert_string_equal(c->auth.jwt_issuer, "https://auth.example.com");
    assert_string_equal(c->auth.jwt_audience, "herald");
    assert_int_equal(c->auth.jwt_leeway_s, 30);
    assert_false(c->auth.anonymous);
    assert_int_equal(c->auto_join_count, 2);
    assert_string_equal(c->auto_join[1], "notices");

    assert_int_equal(c->channel_rule_count, 6);
    assert_int_equal(c->channels[0].publish, POLICY_OWNER);
    assert_int_equal(c->channels[2].subscribe, POLICY_AUTHENTICATED);
    assert_int_equal(c->channels[3].subscribe, POLICY_CLAIM);
    assert_int_equal(c->channels[4].subscribe, POLICY_ACCESS_TOKEN);
    assert_int_equal(c->channels[4].publish, POLICY_DENY);
    assert_true(c->channels[5].has_history);
    assert_int_equal(c->channels[5].history_size, 50);
    assert_int_equal(c->channels[5].history_ttl_s, 60);

    assert_int_equal(c->route_count, 2);
    assert_string_equal(c->routes[0].path, "/ws/overlay/{creatorId}");
    assert_int_equal(c->routes[0].channel_count, 1);
    assert_string_equal(c->routes[0].channels[0], "creator:{creatorId}");
    assert_int_equal(c->routes[0].auth, ROUTE_AUTH_ACCESS_TOKEN);
    assert_int_equal(c->routes[0].format, ROUTE_FORMAT_DATA);
    assert_int_equal(c->routes[1].auth, ROUTE_AUTH_NONE);
    assert_int_equal(c->routes[1].format, ROUTE_FORMAT_ENVELOPE);
    assert_int_equal(c->routes[1].channel_count, 2);

    assert_string_equal(c->socketio.path, "/sio/");
    assert_int_equal(c->socketio.namespace_count, 2);
    assert_string_equal(c->socketio.namespaces[1], "/chat");
    assert_int_equal(c->socketio.ping_interval_ms, 10000);
    assert_int_equal(c->socketio.ping_timeout_ms, 5000);
    assert_string_equal(c->socketio.connected_event, "connected");
    assert_string_equal(json_string_value(json_object_get(c->socketio.join_events, "join-user-room")), "user:{0}");
    assert_string_equal(json_string_value(json_object_get(c->socketio.leave_events, "leave-stream-room")), "stream:{0}");

    assert_int_equal(c->heartbeat.interval_s, 15);
    assert_int_equal(c->heartbeat.timeout_s, 5);
    assert_int_equal(c->history.size, 200);
    assert_int_equal(c->history.ttl_s, 600);
    assert_false(c->history.durable);
    assert_int_equal(c->history.idempotency_ttl_s, 120);
    assert_int_equal(c->limits.max_connections, 5000);
    assert_int_equal(c->limits.max_channels_per_connection, 20);
    assert_int_equal(c->limits.max_message_bytes, 4096);
    assert_int_equal(c->limits.max_body_bytes, 2097152);
    assert_int_equal(c->limits.messages_per_second, 10);
    assert_int_equal(c->limits.connections_per_ip_per_second, 5);
    assert_int_equal(c->limits.send_queue_bytes, 65536);
    assert_int_equal(c->shutdown_timeout_s, 3);
    assert_string_equal(c->redis.url, "redis://127.0.0.1:6379/0");
    assert_string_equal(c->redis.prefix, "hx");
    assert_int_equal(json_array_size(c->sources), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c->sources, 1), "path")), "/hooks/chainhook");
}

static void test_config_rule_history_fields_inherit_top_level(void **state)
{
    fx_t *f = *state;
    size_t n = config_apply_file(&f->c, FIXTURE_DIR "full.json", &f->p);
    assert_no_problems(&f->p, n);
    /* "chat:{room}:*" sets size only; its ttl is the top-level 600 although
     * "history" comes after "channels" in the file */
    assert_true(f->c.channels[2].has_history);
    assert_int_equal(f->c.channels[2].history_size, 1000);
    assert_int_equal(f->c.channels[2].history_ttl_s, 600);
    assert_false(f->c.channels[3].has_history);
    assert_int_equal(f->c.channels[3].history_size, 200);
}

static void test_config_top_history_reaches_default_rules(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"history\":{\"size\":7,\"ttl_s\":9}}");
    assert_no_problems(&f->p, n);
    assert_false(f->c.channels[2].has_history);
    assert_int_equal(f->c.channels[2].history_size, 7);
    assert_int_equal(f->c.channels[2].history_ttl_s, 9);
}

static void test_config_empty_object_changes_nothing(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{}");
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.listen_port, 8080);
    assert_int_equal(f->c.channel_rule_count, 3);
}

static void test_config_object_keys_merge_arrays_replace(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"limits\":{\"max_connections\":7},\"auto_join\":[]}");
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.limits.max_connections, 7);
    assert_int_equal(f->c.limits.max_channels_per_connection, 100);
    assert_int_equal(f->c.auto_join_count, 0);
    assert_null(f->c.auto_join);
}

/* ------------------------------------------------------------------ problems */

static void test_config_unknown_keys_at_every_level(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"listn\":\"x\",\"limits\":{\"max_conn\":1},\"auth\":{\"jwt\":{\"secrt\":\"s\"}},"
                        "\"channels\":[{\"pattern\":\"*\",\"subscribe\":\"any\",\"histroy\":{}}],"
                        "\"routes\":[{\"path\":\"/ws/a\",\"channels\":[\"a\"],\"fmt\":\"data\"}]}");
    assert_int_equal(n, 5);
    assert_problem(&f->p, "$.listn");
    assert_string_equal(find(&f->p, "$.listn"), "unknown key");
    assert_problem(&f->p, "$.limits.max_conn");
    assert_problem(&f->p, "$.auth.jwt.secrt");
    assert_problem(&f->p, "$.channels[0].histroy");
    assert_problem(&f->p, "$.routes[0].fmt");
}

static void test_config_wrong_type_keeps_value_applies_siblings(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"limits\":{\"max_connections\":\"many\",\"messages_per_second\":7},"
                        "\"history\":{\"durable\":1},\"listen\":8080,\"api_keys\":\"k\"}");
    assert_int_equal(n, 4);
    assert_string_equal(find(&f->p, "$.limits.max_connections"), "must be an integer");
    assert_string_equal(find(&f->p, "$.history.durable"), "must be true or false");
    assert_string_equal(find(&f->p, "$.listen"), "must be a string");
    assert_problem(&f->p, "$.api_keys");
    assert_int_equal(f->c.limits.max_connections, 100000);
    assert_int_equal(f->c.limits.messages_per_second, 7);
    assert_true(f->c.history.durable);
}

static void test_config_negative_zero_and_fraction_numbers(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"heartbeat\":{\"interval_s\":-1,\"timeout_s\":1.5},"
                        "\"limits\":{\"max_channels_per_connection\":0,\"max_message_bytes\":0,"
                        "\"connections_per_ip_per_second\":0,\"send_queue_bytes\":-5},"
                        "\"history\":{\"size\":-3},\"workers\":-1,\"shutdown_timeout_s\":0}");
    assert_int_equal(n, 7);
    assert_string_equal(find(&f->p, "$.heartbeat.interval_s"), "must be at least 1");
    assert_string_equal(find(&f->p, "$.heartbeat.timeout_s"), "must be an integer");
    assert_string_equal(find(&f->p, "$.limits.max_channels_per_connection"), "must be at least 1");
    assert_problem(&f->p, "$.limits.max_message_bytes");
    assert_problem(&f->p, "$.limits.send_queue_bytes");
    assert_string_equal(find(&f->p, "$.history.size"), "must not be negative");
    assert_string_equal(find(&f->p, "$.workers"), "must not be negative");
    assert_null(find(&f->p, "$.limits.connections_per_ip_per_second"));
    assert_int_equal(f->c.shutdown_timeout_s, 0);
}

static void test_config_zero_history_size_means_no_history(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"history\":{\"size\":0},\"limits\":{\"connections_per_ip_per_second\":3}}");
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.history.size, 0);
    assert_int_equal(f->c.limits.connections_per_ip_per_second, 3);
}

static void test_config_numbers_over_their_maximum(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"limits\":{\"max_connections\":4294967296},\"workers\":1025,"
                        "\"socketio\":{\"ping_interval_ms\":0}}");
    assert_int_equal(n, 3);
    assert_string_equal(find(&f->p, "$.limits.max_connections"), "must be at most 4294967295");
    assert_string_equal(find(&f->p, "$.workers"), "must be at most 1024");
    assert_problem(&f->p, "$.socketio.ping_interval_ms");
}

static void test_config_listen_parse_forms(void **state)
{
    (void)state;
    char *host = NULL;
    uint16_t port = 0;
    assert_int_equal(config_parse_listen("[::1]:8080", &host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    free(host);
    assert_int_equal(config_parse_listen("localhost:65535", &host, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 65535);
    free(host);
    assert_int_equal(config_parse_listen("0.0.0.0:1", &host, &port), 0);
    free(host);
    const char *bad[] = {"0.0.0.0:0", "0.0.0.0:65536", "::1:8080", ":8080", "0.0.0.0", "0.0.0.0:",
                         "999.1.1.1:80", "[::1]8080", "[zz]:80", "host name:80", "0.0.0.0:80x", "-a:80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        host = NULL;
        if (config_parse_listen(bad[i], &host, &port) != HERALD_EINVAL) fail_msg("accepted %s", bad[i]);
        assert_null(host);
    }
}

static void test_config_listen_bad_port_keeps_previous(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"listen\":\"0.0.0.0:70000\"}");
    assert_int_equal(n, 1);
    assert_problem(&f->p, "$.listen");
    assert_string_equal(f->c.listen, "0.0.0.0:8080");
    assert_int_equal(f->c.listen_port, 8080);
}

static void test_config_policy_unknown_names_rule_index(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"a\",\"subscribe\":\"any\"},{\"pattern\":\"b\",\"publish\":\"deny\"},"
                        "{\"pattern\":\"c\",\"subscribe\":\"everyone\"},{\"pattern\":\"d\",\"subscribe\":3}]}");
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.channels[2].subscribe");
    assert_problem(&f->p, "$.channels[3].subscribe");
    /* a rule list with a problem is not applied at all */
    assert_int_equal(f->c.channel_rule_count, 3);
    assert_string_equal(f->c.channels[0].pattern, "user:{sub}");
}

/* Two placeholders in one segment would let one subscribe backtrack over every
 * split of the name; one per segment (besides {sub}) keeps matching cheap. */
static void test_config_pattern_two_placeholders_in_one_segment_refused(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"m:{a}:{b}\",\"subscribe\":\"any\"},"
                        "{\"pattern\":\"u:{sub}-{id}\",\"subscribe\":\"any\"},"
                        "{\"pattern\":\"x:{a}{b}\",\"subscribe\":\"any\"},"
                        "{\"pattern\":\"y:{a}-{b}:z\",\"subscribe\":\"any\"}]}");
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.channels[2].pattern");
    assert_problem(&f->p, "$.channels[3].pattern");
}

static void test_config_every_policy_name_parses(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"a:{sub}\",\"subscribe\":\"owner\",\"publish\":\"owner\"},"
                        "{\"pattern\":\"b\",\"subscribe\":\"authenticated\",\"publish\":\"claim\"},"
                        "{\"pattern\":\"c\",\"subscribe\":\"access_token\",\"publish\":\"any\"},"
                        "{\"pattern\":\"d\",\"subscribe\":\"none\",\"publish\":\"deny\"},{\"pattern\":\"e\"}]}");
    assert_no_problems(&f->p, n);
    const channel_rule_t *r = f->c.channels;
    assert_int_equal(f->c.channel_rule_count, 5);
    assert_int_equal(r[0].subscribe, POLICY_OWNER);
    assert_int_equal(r[1].subscribe, POLICY_AUTHENTICATED);
    assert_int_equal(r[1].publish, POLICY_CLAIM);
    assert_int_equal(r[2].subscribe, POLICY_ACCESS_TOKEN);
    assert_int_equal(r[2].publish, POLICY_ANY);
    assert_int_equal(r[3].subscribe, POLICY_DENY);
    assert_int_equal(r[3].publish, POLICY_DENY);
    /* neither key: deny both (SPEC 9.6, 9.14) */
    assert_int_equal(r[4].subscribe, POLICY_DENY);
    assert_int_equal(r[4].publish, POLICY_DENY);
}

static void test_config_pattern_syntax_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"a*:b\"},{\"pattern\":\"a:{sub\"},{\"pattern\":\"a:{i.d}\"},"
                        "{\"pattern\":\"a}\"},{\"pattern\":\"a:{}\"},{\"pattern\":\"\"},{\"pattern\":\"a b\"},"
                        "{\"subscribe\":\"any\"},{\"pattern\":\"ok:{sub}:*\"},{\"pattern\":\"room:{id}:{sub}\"}]}");
    assert_int_equal(n, 8);
    assert_string_equal(find(&f->p, "$.channels[0].pattern"), "'*' is allowed only at the end");
    assert_string_equal(find(&f->p, "$.channels[1].pattern"), "unbalanced '{'");
    assert_string_equal(find(&f->p, "$.channels[2].pattern"), "{i.d}: a name is made of A-Z a-z 0-9 _ -");
    assert_string_equal(find(&f->p, "$.channels[3].pattern"), "unbalanced '}'");
    assert_string_equal(find(&f->p, "$.channels[4].pattern"), "empty {}");
    assert_problem(&f->p, "$.channels[5].pattern");
    assert_problem(&f->p, "$.channels[6].pattern");
    assert_string_equal(find(&f->p, "$.channels[7].pattern"), "is required");
}

static void test_config_owner_needs_sub_in_pattern(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"user:*\",\"subscribe\":\"owner\"}]}");
    assert_int_equal(n, 1);
    assert_string_equal(find(&f->p, "$.channels[0].subscribe"), "owner needs {sub} in the pattern");
}

static void test_config_duplicate_pattern_never_matches(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"a:*\"},{\"pattern\":\"a:*\",\"subscribe\":\"any\"}]}");
    assert_int_equal(n, 1);
    assert_problem(&f->p, "$.channels[1].pattern");
}

static void test_config_rule_history_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"channels\":[{\"pattern\":\"*\",\"history\":{\"size\":-1,\"ttl_s\":0,\"x\":1}},"
                        "{\"pattern\":\"b\",\"history\":5}]}");
    assert_int_equal(n, 4);
    assert_problem(&f->p, "$.channels[0].history.size");
    assert_problem(&f->p, "$.channels[0].history.ttl_s");
    assert_problem(&f->p, "$.channels[0].history.x");
    assert_problem(&f->p, "$.channels[1].history");
}

static void test_config_auto_join_only_sub(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"auto_join\":[\"user:{sub}\",\"team:{team}\",\"all:*\"]}");
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.auto_join[1]");
    assert_problem(&f->p, "$.auto_join[2]");
    assert_int_equal(f->c.auto_join_count, 1);
}

static void test_config_route_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"routes\":["
                        "{\"path\":\"/socket/x\",\"channels\":[\"a\"]},"
                        "{\"path\":\"/ws/o/{creatorId}\",\"channels\":[\"creator:{user}\"],\"auth\":\"jwtt\",\"format\":\"flat\"},"
                        "{\"path\":\"/ws/a{b}\",\"channels\":[\"a\"]},"
                        "{\"path\":\"/ws/o/{other}\",\"channels\":[\"x:{other}\"]},"
                        "{\"path\":\"/ws/\",\"channels\":[]},"
                        "{\"path\":\"/ws/q/{id}/{id}\"}]}");
    assert_problem(&f->p, "$.routes[0].path");
    assert_string_equal(find(&f->p, "$.routes[1].channels[0]"), "{user} is not a parameter of the route path");
    assert_problem(&f->p, "$.routes[1].auth");
    assert_problem(&f->p, "$.routes[1].format");
    assert_problem(&f->p, "$.routes[2].path");
    assert_string_equal(find(&f->p, "$.routes[3].path"), "same path as $.routes[1]");
    assert_problem(&f->p, "$.routes[4].path");
    assert_problem(&f->p, "$.routes[4].channels");
    assert_problem(&f->p, "$.routes[5].path");
    assert_problem(&f->p, "$.routes[5].channels");
    assert_int_equal(n, 10);
    assert_int_equal(f->c.route_count, 0);
}

static void test_config_route_defaults_jwt_envelope(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"routes\":[{\"path\":\"/ws/feed\",\"channels\":[\"jobs\"]}]}");
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.route_count, 1);
    assert_int_equal(f->c.routes[0].auth, ROUTE_AUTH_JWT);
    assert_int_equal(f->c.routes[0].format, ROUTE_FORMAT_ENVELOPE);
}

static void test_config_allowed_origins_shapes(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"allowed_origins\":[\"*\",\"https://a.example\",\"example.com\",\"https://a.com/\","
                        "\"https://a.com:99999\",\"ftp//x\",\"http://a.com:8080\",\"https://\"]}");
    assert_int_equal(n, 5);
    assert_problem(&f->p, "$.allowed_origins[2]");
    assert_problem(&f->p, "$.allowed_origins[3]");
    assert_problem(&f->p, "$.allowed_origins[4]");
    assert_problem(&f->p, "$.allowed_origins[5]");
    assert_problem(&f->p, "$.allowed_origins[7]");
    assert_int_equal(f->c.allowed_origin_count, 0);
}

static void test_config_trusted_proxies_cidrs(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"trusted_proxies\":[\"10.0.0.0/8\",\"10.0.0.0/33\",\"300.1.1.1\",\"::1/129\",\"fe80::/10\","
                        "\"127.0.0.1/\",\"proxy.local\",\"::ffff:1.2.3.4\",\"1.2.3.4/0\"]}");
    assert_int_equal(n, 5);
    assert_problem(&f->p, "$.trusted_proxies[1]");
    assert_problem(&f->p, "$.trusted_proxies[2]");
    assert_problem(&f->p, "$.trusted_proxies[3]");
    assert_problem(&f->p, "$.trusted_proxies[5]");
    assert_problem(&f->p, "$.trusted_proxies[6]");
}

static void test_config_redis_url_scheme(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"redis\":{\"url\":\"http://127.0.0.1:6379\"}}");
    assert_int_equal(n, 1);
    assert_string_equal(find(&f->p, "$.redis.url"), "must start with redis://");
    n = apply(f, "{\"redis\":{\"url\":\"redis://\"}}");
    assert_int_equal(n, 1);
    assert_null(f->c.redis.url);
    /* TLS: Debian 12's hiredis 0.14 has none, so a rediss:// URL is refused up front */
    n = apply(f, "{\"redis\":{\"url\":\"rediss://user:pw@cache:6380\"}}");
    assert_int_equal(n, 1);
    assert_string_equal(f->p.items[f->p.count - 1].path, "$.redis.url");
    assert_non_null(strstr(f->p.items[f->p.count - 1].message, "TLS"));
    n = apply(f, "{\"redis\":{\"url\":\"redis://user:pw@cache:6380\",\"prefix\":\"p\"}}");
    assert_int_equal(n, 0);
    assert_string_equal(f->c.redis.url, "redis://user:pw@cache:6380");
    n = apply(f, "{\"redis\":{\"url\":null,\"prefix\":\"\"}}");
    assert_int_equal(n, 1);
    assert_null(f->c.redis.url);
    assert_problem(&f->p, "$.redis.prefix");
}

static void test_config_jwt_algorithm_names(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[\"HS256\",\"none\",\"RS512\",\"HS256\"],\"leeway_s\":-1}}}");
    assert_int_equal(n, 4);
    assert_problem(&f->p, "$.auth.jwt.algorithms[1]");
    assert_problem(&f->p, "$.auth.jwt.algorithms[2]");
    assert_problem(&f->p, "$.auth.jwt.algorithms[3]");
    assert_problem(&f->p, "$.auth.jwt.leeway_s");
    config_problems_free(&f->p);
    n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[]},\"anonymous\":\"no\"}}");
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.auth.jwt.algorithms");
    assert_problem(&f->p, "$.auth.anonymous");
    n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[\"ES256\",\"HS384\",\"RS256\"],\"issuer\":null}}}");
    assert_int_equal(n, 0);
    assert_int_equal(f->c.auth.jwt_algorithm_count, 3);
}

static void test_config_socketio_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"socketio\":{\"path\":\"/api/sio\",\"namespaces\":[\"chat\",\"/\"],"
                        "\"join_events\":{\"subscribe\":\"x\",\"join-x\":\"room:{name}\",\"ok\":\"r:{0}:{sub}\"},"
                        "\"leave_events\":[],\"connected_event\":\"\",\"enabled\":\"yes\"}}");
    assert_string_equal(find(&f->p, "$.socketio.path"), "clashes with herald's own path /api");
    assert_problem(&f->p, "$.socketio.namespaces[0]");
    assert_problem(&f->p, "$.socketio.namespaces[1]");
    assert_problem(&f->p, "$.socketio.join_events.subscribe");
    assert_problem(&f->p, "$.socketio.join_events[\"join-x\"]");
    assert_problem(&f->p, "$.socketio.leave_events");
    assert_problem(&f->p, "$.socketio.connected_event");
    assert_problem(&f->p, "$.socketio.enabled");
    assert_int_equal(n, 8);
    assert_int_equal(json_object_size(f->c.socketio.join_events), 0);
}

/* ------------------------------------------------------------------ sources */

static void test_config_sources_evm_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"sources\":[{\"type\":\"evm\",\"name\":\"tips\",\"url\":\"http://127.0.0.1:8545\","
                        "\"address\":\"0x1234\",\"start_block\":\"soon\",\"confirmations\":-1,\"backfill_max_range\":0,"
                        "\"removed_event\":\"{name}:removed\",\"events\":["
                        "{\"signature\":\"TipSent(address, uint256)\",\"channel\":\"c\"},"
                        "{\"signature\":\"Tip(address indexed creator, uint256 amount)\",\"channel\":\"creator:{nobody}\","
                        "\"event\":\"{amount}_{x}\"},"
                        "{\"signature\":\"Tip(address creator)\"}]},"
                        "{\"type\":\"solana\",\"name\":\"sol\"}]}");
    assert_string_equal(find(&f->p, "$.sources[0].url"), "must be a ws:// or wss:// URL with a host");
    assert_string_equal(find(&f->p, "$.sources[0].address"), "must be 0x and 40 hex digits");
    assert_problem(&f->p, "$.sources[0].start_block");
    assert_problem(&f->p, "$.sources[0].confirmations");
    assert_problem(&f->p, "$.sources[0].backfill_max_range");
    assert_problem(&f->p, "$.sources[0].removed_event");
    assert_problem(&f->p, "$.sources[0].events[0].signature");
    assert_string_equal(find(&f->p, "$.sources[0].events[1].channel"),
                        "{nobody} is not a parameter of the event signature");
    assert_problem(&f->p, "$.sources[0].events[1].event");
    assert_string_equal(find(&f->p, "$.sources[0].events[2].channel"), "is required");
    assert_string_equal(find(&f->p, "$.sources[1].type"), "\"solana\" is not evm or chainhook");
    assert_int_equal(n, 11);
    assert_int_equal(json_array_size(f->c.sources), 0);
}

static void test_config_event_signature_syntax(void **state)
{
    fx_t *f = *state;
    static const char *good[] = {
        "Transfer(address indexed from, address indexed to, uint256 value)",
        "Ping()",
        "  Spaced ( uint8 a ,int256 b , bytes32 c , bytes d , bool e , string f , address[] g , uint[3][] h ) ",
    };
    static const char *bad[] = {
        "Transfer(address, address)", "Transfer address", "T(uint7 x)", "T(uint256 x", "T(bytes33 x)",
        "T(address indexed a, address indexed b, address indexed c, address indexed d)", "(uint256 x)",
        "T(uint256 x, uint256 x)", "T(uint256 x) extra", "T(uint256 indexed)", "T(tuple x)", "T(uint256[0] x)",
    };
    char text[512];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(text, sizeof text, "{\"sources\":[{\"type\":\"evm\",\"name\":\"s\",\"url\":\"wss://rpc.example\","
                 "\"address\":\"0x%040d\",\"events\":[{\"signature\":\"%s\",\"channel\":\"c\"}]}]}", 0, good[i]);
        if (apply(f, text) != 0) {
            dump(&f->p);
            fail_msg("refused %s", good[i]);
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        config_problems_free(&f->p);
        snprintf(text, sizeof text, "{\"sources\":[{\"type\":\"evm\",\"name\":\"s\",\"url\":\"wss://rpc.example\","
                 "\"address\":\"0x%040d\",\"events\":[{\"signature\":\"%s\",\"channel\":\"c\"}]}]}", 0, bad[i]);
        if (apply(f, text) != 1 || !find(&f->p, "$.sources[0].events[0].signature")) {
            dump(&f->p);
            fail_msg("accepted %s", bad[i]);
        }
    }
}

static void test_config_sources_chainhook_problems(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"sources\":["
                        "{\"type\":\"chainhook\",\"name\":\"a\",\"path\":\"/api/hook\",\"prints\":[{\"channel\":\"x\"}]},"
                        "{\"type\":\"chainhook\",\"name\":\"b\",\"path\":\"hooks\",\"prints\":[]},"
                        "{\"type\":\"chainhook\",\"name\":\"c\",\"path\":\"/ws\"},"
                        "{\"type\":\"chainhook\",\"name\":\"d\",\"path\":\"/hook\",\"prints\":[{\"contract\":\"nodot\",\"channel\":\"s:{x\"}]},"
                        "{\"type\":\"chainhook\",\"name\":\"e\",\"path\":\"/hook\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]},"
                        "{\"type\":\"chainhook\",\"name\":\"f\",\"path\":\"/health\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]},"
                        "{\"type\":\"chainhook\",\"name\":\"g\",\"path\":\"/\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]}"
                        "]}");
    assert_string_equal(find(&f->p, "$.sources[0].path"), "clashes with herald's own path /api");
    assert_string_equal(find(&f->p, "$.sources[0].prints[0].contract"), "is required");
    assert_problem(&f->p, "$.sources[1].path");
    assert_problem(&f->p, "$.sources[1].prints");
    assert_problem(&f->p, "$.sources[2].path");
    assert_problem(&f->p, "$.sources[2].prints");
    assert_problem(&f->p, "$.sources[3].prints[0].contract");
    assert_problem(&f->p, "$.sources[3].prints[0].channel");
    assert_string_equal(find(&f->p, "$.sources[4].path"), "same path as $.sources[3]");
    assert_problem(&f->p, "$.sources[5].path");
    assert_problem(&f->p, "$.sources[6].path");
    assert_int_equal(n, 11);
}

static void test_config_sources_duplicate_names(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"sources\":["
                        "{\"type\":\"chainhook\",\"name\":\"x\",\"path\":\"/h1\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]},"
                        "{\"type\":\"chainhook\",\"name\":\"x\",\"path\":\"/h2\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]},"
                        "{\"type\":\"chainhook\",\"path\":\"/h3\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}],\"extra\":1},"
                        "[], {\"name\":\"y\"}]}");
    assert_string_equal(find(&f->p, "$.sources[1].name"), "same name as $.sources[0]");
    assert_string_equal(find(&f->p, "$.sources[2].name"), "is required");
    assert_string_equal(find(&f->p, "$.sources[2].extra"), "unknown key");
    assert_string_equal(find(&f->p, "$.sources[3]"), "must be an object");
    assert_string_equal(find(&f->p, "$.sources[4].type"), "is required");
    assert_int_equal(n, 5);
}

/* ------------------------------------------------------------------ files */

static void test_config_syntax_error_reports_line_and_column(void **state)
{
    fx_t *f = *state;
    const char *path = tmp_file(f, "{\n  \"listen\": \"127.0.0.1:1\",\n  oops\n}\n");
    size_t n = config_apply_file(&f->c, path, &f->p);
    assert_int_equal(n, 1);
    const char *msg = find(&f->p, "$");
    assert_non_null(msg);
    assert_non_null(strstr(msg, "line 3, column "));
    assert_non_null(strstr(msg, "'oops'"));
    /* nothing of a broken file is applied */
    assert_int_equal(f->c.listen_port, 8080);
}

static void test_config_duplicate_key_is_a_problem(void **state)
{
    fx_t *f = *state;
    const char *path = tmp_file(f, "{\"listen\":\"127.0.0.1:1\",\"listen\":\"127.0.0.1:2\"}");
    size_t n = config_apply_file(&f->c, path, &f->p);
    assert_int_equal(n, 1);
    assert_non_null(strstr(find(&f->p, "$"), "duplicate"));
}

static void test_config_missing_file_reported_at_root(void **state)
{
    fx_t *f = *state;
    size_t n = config_apply_file(&f->c, "/nonexistent/herald.json", &f->p);
    assert_int_equal(n, 1);
    assert_non_null(strstr(find(&f->p, "$"), "/nonexistent/herald.json"));
}

static void test_config_root_must_be_object(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "[1,2]");
    assert_int_equal(n, 1);
    assert_problem(&f->p, "$");
}

/* ------------------------------------------------------------------ environment and layers */

static void test_config_env_overrides_file(void **state)
{
    fx_t *f = *state;
    size_t n = config_apply_file(&f->c, FIXTURE_DIR "full.json", &f->p);
    assert_no_problems(&f->p, n);
    char *env[] = {"PATH=/usr/bin", "HERALD_LISTEN=[::1]:7000", "HERALD_DATA_DIR=/data", "HERALD_JWT_SECRET=envsecret",
                   "HERALD_REDIS_URL=redis://10.0.0.1:6379", "HERALD_LOG_LEVEL=warn", "HERALD_WORKERS=8",
                   "HERALD_NODE_ID=n2", "HERALD_ALLOWED_ORIGINS=https://x.example, http://y.example:81", NULL};
    n = config_apply_env(&f->c, env, &f->p);
    assert_no_problems(&f->p, n);
    assert_string_equal(f->c.listen, "[::1]:7000");
    assert_string_equal(f->c.listen_host, "::1");
    assert_int_equal(f->c.listen_port, 7000);
    assert_string_equal(f->c.data_dir, "/data");
    assert_string_equal(f->c.auth.jwt_secret, "envsecret");
    assert_string_equal(f->c.redis.url, "redis://10.0.0.1:6379");
    assert_string_equal(f->c.log_level, "warn");
    assert_int_equal(f->c.workers, 8);
    assert_string_equal(f->c.node_id, "n2");
    assert_int_equal(f->c.allowed_origin_count, 2);
    assert_string_equal(f->c.allowed_origins[1], "http://y.example:81");
    /* what the environment does not name keeps the file's value */
    assert_int_equal(f->c.api_key_count, 2);
    assert_string_equal(f->c.redis.prefix, "hx");
}

static void test_config_env_api_key_commas(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"api_keys\":[\"file-key\"]}");
    assert_no_problems(&f->p, n);
    char *env[] = {"HERALD_API_KEY= a1 ,b2,,c3 ", NULL};
    n = config_apply_env(&f->c, env, &f->p);
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.api_key_count, 3);
    assert_string_equal(f->c.api_keys[0], "a1");
    assert_string_equal(f->c.api_keys[1], "b2");
    assert_string_equal(f->c.api_keys[2], "c3");
    char *one[] = {"HERALD_API_KEY=single", NULL};
    n = config_apply_env(&f->c, one, &f->p);
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.api_key_count, 1);
    assert_string_equal(f->c.api_keys[0], "single");
}

static void test_config_env_bad_values_named_by_variable(void **state)
{
    fx_t *f = *state;
    char *env[] = {"HERALD_WORKERS=-1", "HERALD_LISTEN=nope", "HERALD_REDIS_URL=http://x",
                   "HERALD_ALLOWED_ORIGINS=https://a.com,bad", "HERALD_LOG_LEVEL=loud", "HERALD_API_KEY=,,",
                   "HERALD_NODE_ID=a b", NULL};
    size_t n = config_apply_env(&f->c, env, &f->p);
    assert_int_equal(n, 7);
    assert_problem(&f->p, "env:HERALD_WORKERS");
    assert_problem(&f->p, "env:HERALD_LISTEN");
    assert_problem(&f->p, "env:HERALD_REDIS_URL");
    assert_string_equal(find(&f->p, "env:HERALD_ALLOWED_ORIGINS"), "entry 2: \"bad\" is not \"*\" or scheme://host[:port]");
    assert_problem(&f->p, "env:HERALD_LOG_LEVEL");
    assert_problem(&f->p, "env:HERALD_API_KEY");
    assert_problem(&f->p, "env:HERALD_NODE_ID");
    assert_int_equal(f->c.workers, 0);
    assert_int_equal(f->c.listen_port, 8080);
    assert_int_equal(f->c.allowed_origin_count, 0);
}

static void test_config_env_ignores_unrelated_and_empty(void **state)
{
    fx_t *f = *state;
    char *env[] = {"HERALD_BIN=/usr/bin/herald", "HERALD_LISTEN=", "HERALD_LISTENER=1.2.3.4:5", "HERALD", "HOME=/root",
                   "HERALD_WORKERS", NULL};
    size_t n = config_apply_env(&f->c, env, &f->p);
    assert_no_problems(&f->p, n);
    assert_string_equal(f->c.listen, "0.0.0.0:8080");
    assert_int_equal(config_apply_env(&f->c, NULL, &f->p), 0);
}

static void test_config_option_path_names_the_flag(void **state)
{
    fx_t *f = *state;
    assert_int_equal(config_apply_option(&f->c, "listen", "127.0.0.1:99999", "--listen", &f->p), 1);
    assert_problem(&f->p, "--listen");
    assert_int_equal(config_apply_option(&f->c, "colour", "x", "--colour", &f->p), 1);
    assert_string_equal(find(&f->p, "--colour"), "unknown option");
    assert_int_equal(config_apply_option(&f->c, "listen", "127.0.0.1:9", "--listen", &f->p), 0);
    assert_int_equal(f->c.listen_port, 9);
    assert_int_equal(config_apply_option(&f->c, "workers", "12", "--workers", &f->p), 0);
    assert_int_equal(f->c.workers, 12);
    assert_int_equal(config_apply_option(&f->c, "workers", "12x", "--workers", &f->p), 1);
    assert_int_equal(config_apply_option(&f->c, "workers", "99999999999999999999999", "--workers", &f->p), 1);
    assert_int_equal(f->c.workers, 12);
}

static void test_config_load_layers_defaults_file_env(void **state)
{
    fx_t *f = *state;
    config_free(&f->c);
    char *env[] = {"HERALD_LISTEN=127.0.0.1:7001", NULL};
    size_t n = config_load(&f->c, FIXTURE_DIR "full.json", env, &f->p);
    assert_no_problems(&f->p, n);
    assert_int_equal(f->c.listen_port, 7001);          /* env over file */
    assert_string_equal(f->c.node_id, "node-a");        /* file over defaults */
    assert_string_equal(f->c.redis.prefix, "hx");
    config_free(&f->c);
    n = config_load(&f->c, NULL, NULL, &f->p);
    assert_int_equal(n, 0);
    assert_int_equal(f->c.listen_port, 8080);           /* defaults alone */
}

/* ------------------------------------------------------------------ whole-config checks */

static void test_config_validate_tls_needs_both_readable_files(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"tls\":{\"cert_file\":\"/nonexistent/cert.pem\"}}");
    assert_no_problems(&f->p, n);
    n = config_validate(&f->c, &f->p);
    assert_int_equal(n, 2);
    assert_string_equal(find(&f->p, "$.tls.key_file"), "tls needs both cert_file and key_file");
    assert_problem(&f->p, "$.tls.cert_file");

    config_problems_free(&f->p);
    const char *cert = tmp_file(f, "cert"), *key = tmp_file(f, "key");
    char text[256];
    snprintf(text, sizeof text, "{\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}}", cert, key);
    n = apply(f, text);
    n += config_validate(&f->c, &f->p);
    assert_no_problems(&f->p, n);

    n = apply(f, "{\"tls\":{\"key_file\":\"/tmp\"}}");
    n += config_validate(&f->c, &f->p);
    assert_int_equal(n, 1);
    assert_problem(&f->p, "$.tls.key_file");
}

static void test_config_validate_jwt_keys(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[\"RS256\"]}}}");
    n += config_validate(&f->c, &f->p);
    assert_int_equal(n, 1);
    assert_string_equal(find(&f->p, "$.auth.jwt.public_key_file"), "RS256 and ES256 need a public_key_file");

    config_problems_free(&f->p);
    const char *pem = tmp_file(f, "-----BEGIN PUBLIC KEY-----\n");
    char text[256];
    snprintf(text, sizeof text, "{\"auth\":{\"jwt\":{\"public_key_file\":\"%s\"},\"anonymous\":false}}", pem);
    n = apply(f, text) + config_validate(&f->c, &f->p);
    assert_no_problems(&f->p, n);

    n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[\"HS512\"],\"public_key_file\":null}}}");
    n += config_validate(&f->c, &f->p);
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.auth.jwt.secret");
    assert_problem(&f->p, "$.auth.anonymous");

    config_problems_free(&f->p);
    n = apply(f, "{\"auth\":{\"jwt\":{\"algorithms\":[\"ES256\"],\"secret\":\"s\",\"public_key_file\":\"/nonexistent.pem\"}}}");
    n += config_validate(&f->c, &f->p);
    assert_int_equal(n, 2);
    assert_problem(&f->p, "$.auth.jwt.algorithms");
    assert_problem(&f->p, "$.auth.jwt.public_key_file");
}

static void test_config_validate_hook_path_vs_socketio_path(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"socketio\":{\"path\":\"/hooks/\"},\"sources\":[{\"type\":\"chainhook\",\"name\":\"s\","
                        "\"path\":\"/hooks/chainhook\",\"prints\":[{\"contract\":\"SP1.c\",\"channel\":\"s\"}]}]}");
    assert_no_problems(&f->p, n);
    n = config_validate(&f->c, &f->p);
    assert_int_equal(n, 1);
    assert_problem(&f->p, "$.sources[0].path");
    n = apply(f, "{\"socketio\":{\"enabled\":false}}");
    n += config_validate(&f->c, &f->p);
    assert_int_equal(n, 0); /* a disabled Socket.IO path shadows nothing */
}

/* ------------------------------------------------------------------ memory and text */

static void test_config_free_after_replacing_everything_twice(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 2; i++) {
        size_t n = config_apply_file(&f->c, FIXTURE_DIR "full.json", &f->p);
        assert_no_problems(&f->p, n);
    }
    char *env[] = {"HERALD_API_KEY=a,b", "HERALD_ALLOWED_ORIGINS=*", "HERALD_LISTEN=1.2.3.4:5", NULL};
    assert_int_equal(config_apply_env(&f->c, env, &f->p), 0);
    config_free(&f->c);
    config_free(&f->c); /* zeroed: harmless */
    assert_null(f->c.listen);
    assert_null(f->c.sources);
    assert_int_equal(config_defaults(&f->c), 0); /* teardown frees it again */
}

static void test_config_problem_text_stays_on_one_line(void **state)
{
    fx_t *f = *state;
    size_t n = apply(f, "{\"bad\\nkey\":1,\"log_level\":\"x\\ny\"}");
    assert_int_equal(n, 2);
    for (size_t i = 0; i < f->p.count; i++) {
        assert_null(strchr(f->p.items[i].path, '\n'));
        assert_null(strchr(f->p.items[i].message, '\n'));
    }
    assert_problem(&f->p, "$[\"bad?key\"]");
}

static void test_config_overlong_path_is_cut_with_ellipsis(void **state)
{
    fx_t *f = *state;
    char key[400], text[512];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(text, sizeof text, "{\"limits\":{\"%s\":1}}", key);
    assert_int_equal(apply(f, text), 1);
    const char *p = f->p.items[0].path;
    assert_int_equal(strlen(p), 255);
    assert_string_equal(p + 252, "...");
    assert_memory_equal(p, "$.limits.kkk", 12);
}

/* ------------------------------------------------------------------ herald config check */

typedef struct run {
    int rc;
    char out[8192], err[8192];
} run_t;

static void slurp(FILE *fp, char *buf, size_t cap)
{
    rewind(fp);
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

static void run_check(run_t *r, int argc, char **argv)
{
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    assert_non_null(fo);
    assert_non_null(fe);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    r->rc = cli_config_check(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    slurp(fo, r->out, sizeof r->out);
    slurp(fe, r->err, sizeof r->err);
}

static void test_cli_config_check_ok_prints_ok(void **state)
{
    (void)state;
    run_t r;
    char *argv[] = {"check", FIXTURE_DIR "full.json", NULL};
    run_check(&r, 2, argv);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "ok: " FIXTURE_DIR "full.json\n");
    assert_string_equal(r.err, "");
}

static void test_cli_config_check_problems_one_per_line(void **state)
{
    fx_t *f = *state;
    const char *path = tmp_file(f, "{\"limits\":{\"max_connections\":0},\"channels\":[{\"pattern\":\"a\"},"
                                   "{\"pattern\":\"b\"},{\"pattern\":\"c\",\"subscribe\":\"all\"}],"
                                   "\"tls\":{\"cert_file\":\"/nonexistent\"}}");
    run_t r;
    char *argv[] = {"check", (char *)path, NULL};
    run_check(&r, 2, argv);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "$.limits.max_connections: must be at least 1\n"));
    assert_non_null(strstr(r.err, "$.channels[2].subscribe: \"all\" is not a policy"));
    assert_non_null(strstr(r.err, "$.tls.key_file: tls needs both cert_file and key_file\n"));
    size_t lines = 0;
    for (const char *p = r.err; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 4);
}

static void test_cli_config_check_syntax_error_only(void **state)
{
    fx_t *f = *state;
    const char *path = tmp_file(f, "{\"listen\": }");
    run_t r;
    char *argv[] = {"check", (char *)path, NULL};
    run_check(&r, 2, argv);
    assert_int_equal(r.rc, 1);
    assert_memory_equal(r.err, "$: line 1, column ", 18);
    assert_non_null(strchr(r.err, '\n'));
    assert_string_equal(strchr(r.err, '\n'), "\n");
}

static void test_cli_config_check_json_output(void **state)
{
    fx_t *f = *state;
    const char *path = tmp_file(f, "{\"workers\":-2}");
    run_t r;
    char *argv[] = {"check", "--json", (char *)path, NULL};
    run_check(&r, 3, argv);
    assert_int_equal(r.rc, 1);
    json_error_t err;
    json_t *arr = json_loads(r.out, 0, &err);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "path")), "$.workers");
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "message")), "must not be negative");
    json_decref(arr);

    char *ok[] = {"check", "--json", FIXTURE_DIR "full.json", NULL};
    run_check(&r, 3, ok);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "[]\n");
}

static void test_cli_config_check_usage_errors(void **state)
{
    (void)state;
    run_t r;
    char *none[] = {"check", NULL};
    run_check(&r, 1, none);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "usage: herald config check"));
    char *two[] = {"check", "a.json", "b.json", NULL};
    run_check(&r, 3, two);
    assert_int_equal(r.rc, 2);
    char *flag[] = {"check", "--verbose", "a.json", NULL};
    run_check(&r, 3, flag);
    assert_int_equal(r.rc, 2);
    char *verb[] = {"lint", "a.json", NULL};
    run_check(&r, 2, verb);
    assert_int_equal(r.rc, 2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* Fixture paths are relative to the repository root, where `make` runs tests; from
 * elsewhere, find the root from the binary's place (build/test/unit/). */
static void chdir_to_repo_root(void)
{
    if (access(FIXTURE_DIR "full.json", R_OK) == 0) return;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    strcpy(slash, "/../../..");
    if (chdir(exe) != 0) fprintf(stderr, "cannot find %s\n", FIXTURE_DIR);
}

int main(void)
{
    chdir_to_repo_root();
    const struct CMUnitTest tests[] = {
        T(test_config_defaults_match_spec),
        T(test_config_defaults_channel_rules_and_auto_join),
        T(test_config_defaults_pass_validation),
        T(test_config_full_file_applies_every_key),
        T(test_config_rule_history_fields_inherit_top_level),
        T(test_config_top_history_reaches_default_rules),
        T(test_config_empty_object_changes_nothing),
        T(test_config_object_keys_merge_arrays_replace),
        T(test_config_unknown_keys_at_every_level),
        T(test_config_wrong_type_keeps_value_applies_siblings),
        T(test_config_negative_zero_and_fraction_numbers),
        T(test_config_zero_history_size_means_no_history),
        T(test_config_numbers_over_their_maximum),
        T(test_config_listen_parse_forms),
        T(test_config_listen_bad_port_keeps_previous),
        T(test_config_policy_unknown_names_rule_index),
        T(test_config_pattern_two_placeholders_in_one_segment_refused),
        T(test_config_every_policy_name_parses),
        T(test_config_pattern_syntax_problems),
        T(test_config_owner_needs_sub_in_pattern),
        T(test_config_duplicate_pattern_never_matches),
        T(test_config_rule_history_problems),
        T(test_config_auto_join_only_sub),
        T(test_config_route_problems),
        T(test_config_route_defaults_jwt_envelope),
        T(test_config_allowed_origins_shapes),
        T(test_config_trusted_proxies_cidrs),
        T(test_config_redis_url_scheme),
        T(test_config_jwt_algorithm_names),
        T(test_config_socketio_problems),
        T(test_config_sources_evm_problems),
        T(test_config_event_signature_syntax),
        T(test_config_sources_chainhook_problems),
        T(test_config_sources_duplicate_names),
        T(test_config_syntax_error_reports_line_and_column),
        T(test_config_duplicate_key_is_a_problem),
        T(test_config_missing_file_reported_at_root),
        T(test_config_root_must_be_object),
        T(test_config_env_overrides_file),
        T(test_config_env_api_key_commas),
        T(test_config_env_bad_values_named_by_variable),
        T(test_config_env_ignores_unrelated_and_empty),
        T(test_config_option_path_names_the_flag),
        T(test_config_load_layers_defaults_file_env),
        T(test_config_validate_tls_needs_both_readable_files),
        T(test_config_validate_jwt_keys),
        T(test_config_validate_hook_path_vs_socketio_path),
        T(test_config_free_after_replacing_everything_twice),
        T(test_config_problem_text_stays_on_one_line),
        T(test_config_overlong_path_is_cut_with_ellipsis),
        T(test_cli_config_check_ok_prints_ok),
        T(test_cli_config_check_problems_one_per_line),
        T(test_cli_config_check_syntax_error_only),
        T(test_cli_config_check_json_output),
        T(test_cli_config_check_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
