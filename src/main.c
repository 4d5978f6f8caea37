/* herald: the command line. Dispatches to serve, publish, tail, token, config
 * check and version (SPEC section 7). */
#include "cli/cli_client.h"
#include "cli/cli_config.h"
#include "config.h"
#include "core/err.h"
#include "log.h"
#include "server.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald <command> [options]\n"
            "  serve [--config F] [--listen H:P] [--data-dir D] [--api-key K] [--jwt-secret S]\n"
            "        [--redis URL] [--log-level L] [--workers N]\n"
            "  publish [--url U] [--api-key K] CHANNEL EVENT [DATA|-]\n"
            "  tail [--url ws://…/ws] [--token T] [--since N] CHANNEL...\n"
            "  config check FILE\n"
            "  version\n");
}

static void print_problems(const config_problems_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        fprintf(stderr, "%s: %s\n", p->items[i].path, p->items[i].message);
}

static int set_str(char **slot, const char *v)
{
    char *s = strdup(v);
    if (!s) return HERALD_ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

/* Flags are the last layer: defaults < file < environment < flags. */
static int apply_flags(config_t *cfg, int argc, char **argv, const char **config_file, config_problems_t *pr)
{
    enum { O_CONFIG = 1, O_LISTEN, O_DATA_DIR, O_API_KEY, O_JWT_SECRET, O_REDIS, O_LOG_LEVEL, O_WORKERS };
    static const struct option opts[] = {
        {"config", required_argument, 0, O_CONFIG},       {"listen", required_argument, 0, O_LISTEN},
        {"data-dir", required_argument, 0, O_DATA_DIR},   {"api-key", required_argument, 0, O_API_KEY},
        {"jwt-secret", required_argument, 0, O_JWT_SECRET}, {"redis", required_argument, 0, O_REDIS},
        {"log-level", required_argument, 0, O_LOG_LEVEL}, {"workers", required_argument, 0, O_WORKERS},
        {0, 0, 0, 0}};
    /* First pass: only --config, so the file can be applied before the other flags. */
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == O_CONFIG) *config_file = optarg;
        else if (o == '?') {
            fprintf(stderr, "herald serve: unknown or incomplete option %s\n", argv[optind - 1]);
            return HERALD_EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald serve: unexpected argument %s\n", argv[optind]);
        return HERALD_EINVAL;
    }
    if (*config_file && config_apply_file(cfg, *config_file, pr) > 0) return HERALD_EINVAL;
    if (config_apply_env(cfg, environ, pr) > 0) return HERALD_EINVAL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case O_LISTEN:
            rc = set_str(&cfg->listen, optarg);
            if (!rc) {
                free(cfg->listen_host);
                cfg->listen_host = NULL;
                rc = config_parse_listen(optarg, &cfg->listen_host, &cfg->listen_port);
                if (rc) fprintf(stderr, "--listen: expected HOST:PORT, got %s\n", optarg);
            }
            break;
        case O_DATA_DIR: rc = set_str(&cfg->data_dir, optarg); break;
        case O_API_KEY: {
            char **k = realloc(cfg->api_keys, (cfg->api_key_count + 1) * sizeof *k);
            if (!k) return HERALD_ENOMEM;
            cfg->api_keys = k;
            k[cfg->api_key_count] = strdup(optarg);
            if (!k[cfg->api_key_count]) return HERALD_ENOMEM;
            cfg->api_key_count++;
            break;
        }
        case O_JWT_SECRET: rc = set_str(&cfg->auth.jwt_secret, optarg); break;
        case O_REDIS: rc = set_str(&cfg->redis.url, optarg); break;
        case O_LOG_LEVEL:
            if (log_parse_level(optarg) < 0) {
                fprintf(stderr, "--log-level: one of debug, info, warn, error\n");
                rc = HERALD_EINVAL;
            } else {
                rc = set_str(&cfg->log_level, optarg);
            }
            break;
        case O_WORKERS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > 1024) {
                fprintf(stderr, "--workers: a number from 0 (one per core) to 1024\n");
                rc = HERALD_EINVAL;
            } else {
                cfg->workers = (unsigned)n;
            }
            break;
        }
        default: break;
        }
        if (rc) return rc;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    config_t cfg;
    config_problems_t problems = {0};
    const char *config_file = NULL;
    if (config_defaults(&cfg) < 0) return 1;
    int rc = apply_flags(&cfg, argc, argv, &config_file, &problems);
    if (rc == 0) config_validate(&cfg, &problems);
    if (rc || problems.count) {
        print_problems(&problems);
        config_problems_free(&problems);
        config_free(&cfg);
        return 1;
    }
    config_problems_free(&problems);
    log_set_level(cfg.log_level ? cfg.log_level : "info");

    /* Signals are taken synchronously by this thread alone (sigwait), so workers
     * never run handlers; writes to a closed socket return EPIPE instead of killing. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    server_t server;
    rc = server_start(&server, &cfg);
    if (rc < 0) {
        server_stop(&server);
        config_free(&cfg);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_msg(LOG_INFO, "shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    server_stop(&server);
    log_msg(LOG_INFO, "stopped", NULL);
    config_free(&cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "publish") == 0) return cli_publish(argc - 1, argv + 1);
    if (strcmp(cmd, "tail") == 0) return cli_tail(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0 && argc >= 3 && strcmp(argv[2], "check") == 0)
        return cli_config_check(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("herald %s\n", HERALD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "herald: unknown command %s\n", cmd);
    usage(stderr);
    return 2;
}
