/* herald: the command line. Dispatches to serve, publish, tail, token, config
 * check and version (SPEC section 7). */
#include "cli/cli_client.h"
#include "cli/cli_config.h"
#include "cli/cli_token.h"
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
            "        [--redis URL] [--node-id ID] [--log-level L] [--workers N]\n"
            "  publish [--url U] [--api-key K] CHANNEL EVENT [DATA|-]\n"
            "  tail [--url ws(s)://…/ws] [--token T] [--since N] CHANNEL...\n"
            "  token create --channel C [--channel C2] [--label L] [--data-dir D | --config F]\n"
            "  token list [--data-dir D | --config F]\n"
            "  token revoke ID [--data-dir D | --config F]\n"
            "  config check [--json] [--env] FILE\n"
            "  version\n");
}

static void print_problems(const config_problems_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        fprintf(stderr, "%s: %s\n", p->items[i].path, p->items[i].message);
}

/* Flags are the last layer: defaults < file < environment < flags. Each flag goes
 * through the same setter as its environment variable, so problems read alike. */
static int load_serve_config(config_t *cfg, int argc, char **argv, config_problems_t *pr)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},     {"listen", required_argument, 0, 'l'},
        {"data-dir", required_argument, 0, 'd'},   {"api-key", required_argument, 0, 'k'},
        {"jwt-secret", required_argument, 0, 'j'}, {"redis", required_argument, 0, 'r'},
        {"log-level", required_argument, 0, 'v'},  {"workers", required_argument, 0, 'w'},
        {"node-id", required_argument, 0, 'n'},    {0, 0, 0, 0}};
    /* first pass: only --config, so the file is applied before the other flags */
    const char *file = NULL;
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'c') file = optarg;
        else if (o == '?') {
            fprintf(stderr, "herald serve: unknown or incomplete option %s\n", argv[optind - 1]);
            return HERALD_EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald serve: unexpected argument %s\n", argv[optind]);
        return HERALD_EINVAL;
    }
    if (config_load(cfg, file, environ, pr) > 0) return HERALD_EINVAL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *key = NULL, *flag = NULL;
        switch (o) {
        case 'l': key = "listen"; flag = "--listen"; break;
        case 'd': key = "data_dir"; flag = "--data-dir"; break;
        case 'k': key = "api_key"; flag = "--api-key"; break;
        case 'j': key = "jwt_secret"; flag = "--jwt-secret"; break;
        case 'r': key = "redis_url"; flag = "--redis"; break;
        case 'v': key = "log_level"; flag = "--log-level"; break;
        case 'w': key = "workers"; flag = "--workers"; break;
        case 'n': key = "node_id"; flag = "--node-id"; break;
        default: continue;
        }
        config_apply_option(cfg, key, optarg, flag, pr);
    }
    config_validate(cfg, pr);
    return pr->count ? HERALD_EINVAL : 0;
}

static int cmd_serve(int argc, char **argv)
{
    config_t cfg = {0};
    config_problems_t problems = {0};
    int rc = load_serve_config(&cfg, argc, argv, &problems);
    if (rc) {
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
    if (strcmp(cmd, "token") == 0) return cli_token(argc - 1, argv + 1);
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
