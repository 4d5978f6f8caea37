/* herald token create|list|revoke: access tokens in the data dir's store, usable
 * while a server runs on the same data dir (SPEC 6, 9.5). */
#include "cli/cli_token.h"
#include "auth/tokens.h"
#include "config.h"
#include "core/util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static void usage(void)
{
    fprintf(stderr, "usage: herald token create --channel C [--channel C2 ...] [--label L] [--data-dir D | --config F]\n"
                    "       herald token list [--data-dir D | --config F]\n"
                    "       herald token revoke ID [--data-dir D | --config F]\n");
}

/* The data dir: --data-dir, else the config (file, then HERALD_DATA_DIR), else the default. */
static char *data_dir_for(const char *flag_dir, const char *config_file)
{
    if (flag_dir) return strdup(flag_dir);
    config_t cfg;
    config_problems_t p = {0};
    char *dir = NULL;
    if (config_load(&cfg, config_file, environ, &p) == 0) dir = strdup(cfg.data_dir);
    else
        for (size_t i = 0; i < p.count; i++) fprintf(stderr, "%s: %s\n", p.items[i].path, p.items[i].message);
    config_problems_free(&p);
    config_free(&cfg);
    return dir;
}

static void print_info(void *arg, const token_info_t *t)
{
    (void)arg;
    json_t *ch = json_array();
    for (size_t i = 0; i < t->channel_count; i++) json_array_append_new(ch, json_string(t->channels[i]));
    char ts[ISO_TIME_LEN];
    time_iso8601((uint64_t)t->created_at_ms, ts);
    json_t *o = json_pack("{sssoss}", "id", t->id, "channels", ch, "created_at", ts);
    json_object_set_new(o, "label", t->label ? json_string(t->label) : json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

int cli_token(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *sub = argv[1];
    static const struct option opts[] = {{"channel", required_argument, 0, 'c'}, {"label", required_argument, 0, 'l'},
                                         {"data-dir", required_argument, 0, 'd'}, {"config", required_argument, 0, 'f'},
                                         {0, 0, 0, 0}};
    char **channels = calloc((size_t)argc, sizeof *channels);
    size_t n = 0;
    const char *label = NULL, *dir_flag = NULL, *config_file = NULL;
    optind = 2;
    opterr = 0;
    int o, rc = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'c') channels[n++] = optarg;
        else if (o == 'l') label = optarg;
        else if (o == 'd') dir_flag = optarg;
        else if (o == 'f') config_file = optarg;
        else {
            fprintf(stderr, "herald token: unknown or incomplete option %s\n", argv[optind - 1]);
            free(channels);
            return 2;
        }
    }
    bool create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0, revoke = strcmp(sub, "revoke") == 0;
    if ((!create && !list && !revoke) || (create && n == 0) || (revoke && optind + 1 != argc) ||
        (!revoke && optind != argc) || (!create && (n || label))) {
        usage();
        free(channels);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        char why[160];
        if (!config_pattern_valid(channels[i], why, sizeof why)) {
            fprintf(stderr, "--channel %s: %s\n", channels[i], why);
            free(channels);
            return 2;
        }
    }
    char *dir = data_dir_for(dir_flag, config_file);
    tokens_t *t = dir ? tokens_open(dir) : NULL;
    if (!t) {
        free(dir);
        free(channels);
        return 1;
    }
    if (create) {
        token_info_t info;
        rc = tokens_create(t, channels, n, label, &info);
        if (rc == 0) {
            puts(info.secret);   /* the only time it is shown */
            token_info_free(&info);
        }
    } else if (list) {
        rc = tokens_list(t, print_info, NULL);
    } else {
        char id[TOKEN_ID_LEN + 1];
        rc = tokens_revoke(t, argv[optind], id);
        if (rc == 0) printf("revoked %s\n", id);
        else fprintf(stderr, "herald token revoke: no live token %s\n", argv[optind]);
    }
    tokens_close(t);
    free(dir);
    free(channels);
    return rc == 0 ? 0 : 1;
}
