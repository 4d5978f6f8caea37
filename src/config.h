/* config: herald's settings, from built-in defaults < JSON file < HERALD_* environment
 * < command-line flags (SPEC section 5), and their validation.
 *
 * Owns: config_t and everything it points to (freed by config_free). After
 * config_load returns, the config is read-only and shared by every thread as a
 * `const config_t *`. Does not open sockets, nor files other than the config file and
 * (config_validate, only to check they are readable) the files it names. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <jansson.h>

/* Channel policy for subscribe/publish (SPEC 5, 9.6). */
typedef enum policy {
    POLICY_DENY = 0,       /* "deny" or "none" */
    POLICY_ANY,
    POLICY_AUTHENTICATED,
    POLICY_OWNER,
    POLICY_CLAIM,
    POLICY_ACCESS_TOKEN,
} policy_t;

typedef struct channel_rule {
    char *pattern;             /* e.g. "user:{sub}", "market:*", "*" */
    policy_t subscribe;        /* absent: deny */
    policy_t publish;          /* absent: deny */
    bool has_history;          /* the rule sets its own history */
    uint32_t history_size;
    uint32_t history_ttl_s;
} channel_rule_t;

typedef enum route_auth { ROUTE_AUTH_ACCESS_TOKEN, ROUTE_AUTH_JWT, ROUTE_AUTH_NONE } route_auth_t;
typedef enum route_format { ROUTE_FORMAT_ENVELOPE, ROUTE_FORMAT_DATA } route_format_t;

typedef struct route {
    char *path;                /* "/ws/overlay/{creatorId}" */
    char **channels;           /* templates: "creator:{creatorId}" */
    size_t channel_count;
    route_auth_t auth;
    route_format_t format;
} route_t;

typedef struct config {
    /* listener */
    char *listen;              /* "0.0.0.0:8080" */
    char *listen_host;         /* parsed from listen */
    uint16_t listen_port;
    char *data_dir;            /* "./herald-data" */
    char *node_id;             /* "auto" */
    unsigned workers;          /* 0: one per core ("workers" key, --workers, HERALD_WORKERS) */
    char *log_level;           /* "debug" | "info" | "warn" | "error" */

    char **allowed_origins; size_t allowed_origin_count;
    char **api_keys; size_t api_key_count;
    char **trusted_proxies; size_t trusted_proxy_count;

    struct {
        char *jwt_secret;
        char *jwt_public_key_file;
        char **jwt_algorithms; size_t jwt_algorithm_count;   /* default ["HS256"] */
        char *jwt_issuer;
        char *jwt_audience;
        uint32_t jwt_leeway_s;                               /* 5 */
        bool anonymous;                                      /* true */
    } auth;

    char **auto_join; size_t auto_join_count;     /* default ["user:{sub}"] */
    channel_rule_t *channels; size_t channel_rule_count;   /* defaults of SPEC 5 */
    route_t *routes; size_t route_count;

    struct {
        bool enabled;                      /* true */
        char *path;                        /* "/socket.io/" */
        char **namespaces; size_t namespace_count;
        uint32_t ping_interval_ms;         /* 25000 */
        uint32_t ping_timeout_ms;          /* 20000 */
        char *connected_event;             /* NULL */
        bool recovery;                     /* false: connection state recovery (pid and offsets) */
        json_t *join_events;               /* object event -> template; owned reference */
        json_t *leave_events;
    } socketio;

    struct { uint32_t interval_s, timeout_s; } heartbeat;          /* 30, 10 */
    struct { uint32_t size, ttl_s; bool durable; uint32_t idempotency_ttl_s; bool fsync; } history; /* 100, 300, true, 300, false */
    struct {
        uint32_t max_connections;              /* 100000 */
        uint32_t max_channels_per_connection;  /* 100 */
        uint32_t max_message_bytes;            /* 65536 */
        uint64_t max_body_bytes;               /* 1048576 */
        uint32_t messages_per_second;          /* 50 */
        uint32_t connections_per_ip_per_second;/* 0 = off */
        uint64_t send_queue_bytes;             /* 1048576 */
    } limits;
    struct { char *cert_file, *key_file; } tls;
    uint32_t shutdown_timeout_s;               /* 10 */
    struct { char *url, *prefix; } redis;      /* NULL, "herald" */
    json_t *sources;                           /* the "sources" array as given; owned reference */
} config_t;

/* One problem found while loading or checking: a JSON path such as
 * "$.limits.max_connections" or "$.channels[2].subscribe", and what is wrong. */
typedef struct config_problem {
    char path[256];
    char message[256];
} config_problem_t;

typedef struct config_problems {
    config_problem_t *items;
    size_t count, cap;
} config_problems_t;

void config_problems_free(config_problems_t *p);

/* Fills c with the built-in defaults (SPEC section 5). Returns 0 or HERALD_ENOMEM. */
int config_defaults(config_t *c);

/* Applies a parsed JSON document over c. Every problem (unknown key, wrong type,
 * value out of range, bad pattern, bad listen address ...) is appended to problems
 * with its JSON path; valid keys are still applied. Returns the number of problems. */
size_t config_apply_json(config_t *c, json_t *root, config_problems_t *problems);

/* Reads FILE and applies it (a syntax error is reported as a problem at "$" with
 * line and column). Returns the number of problems. */
size_t config_apply_file(config_t *c, const char *path, config_problems_t *problems);

/* Applies HERALD_* variables from envp (NULL-terminated "NAME=value" strings):
 * HERALD_LISTEN, HERALD_DATA_DIR, HERALD_API_KEY (one key, or several comma-separated),
 * HERALD_JWT_SECRET, HERALD_REDIS_URL, HERALD_LOG_LEVEL, HERALD_WORKERS,
 * HERALD_NODE_ID, HERALD_ALLOWED_ORIGINS (comma-separated). Problems are reported with
 * the variable name as path ("env:HERALD_WORKERS"). */
size_t config_apply_env(config_t *c, char **envp, config_problems_t *problems);

/* Applies one setting given as text, the way HERALD_* variables and command-line
 * flags give them. key is one of: "listen", "data_dir", "node_id", "api_key" (one
 * key or several comma-separated; replaces api_keys), "allowed_origins"
 * (comma-separated), "jwt_secret", "redis_url", "log_level", "workers". Problems are
 * reported at path (e.g. "--listen" or "env:HERALD_LISTEN"). Returns the number of
 * problems. */
size_t config_apply_option(config_t *c, const char *key, const char *value, const char *path,
                           config_problems_t *problems);

/* config_defaults, then FILE (when not NULL), then the environment: every layer
 * below command-line flags. The caller applies its flags with config_apply_option
 * and then calls config_validate. On allocation failure c is zeroed and a problem
 * at "$" says so. Returns the number of problems. */
size_t config_load(config_t *c, const char *file, char **envp, config_problems_t *problems);

/* Whole-config checks that need every layer applied (e.g. tls needs both files, a
 * public key file must exist). Returns the number of problems added. */
size_t config_validate(const config_t *c, config_problems_t *problems);

void config_free(config_t *c);

/* A channel pattern as rules and access-token scopes write them (SPEC 9.6);
 * otherwise false with the reason in why. */
bool config_pattern_valid(const char *pattern, char *why, size_t why_size);

/* Parses "host:port" ("[::1]:8080" for IPv6). Returns 0 or HERALD_EINVAL. host_out
 * receives a new string. */
int config_parse_listen(const char *s, char **host_out, uint16_t *port_out);

#endif
