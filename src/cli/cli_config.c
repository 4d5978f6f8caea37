#include "cli/cli_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "auth/jwt.h"
#include "config.h"
#include "core/tls.h"

extern char **environ;

static int usage(void)
{
    fprintf(stderr, "usage: herald config check [--json] [--env] FILE\n");
    return 2;
}

static int print_json(const config_problems_t *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < p->count; i++) {
        json_t *o = json_pack("{s:s, s:s}", "path", p->items[i].path, "message", p->items[i].message);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    char *s = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
    json_decref(arr);
    if (!s) {
        fprintf(stderr, "herald: out of memory\n");
        return -1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static size_t add_problem(config_problems_t *p, const char *path, const char *message)
{
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        config_problem_t *items = realloc(p->items, cap * sizeof *items);
        if (!items) return 1;
        p->items = items;
        p->cap = cap;
    }
    snprintf(p->items[p->count].path, sizeof p->items[0].path, "%s", path);
    snprintf(p->items[p->count].message, sizeof p->items[0].message, "%s", message);
    p->count++;
    return 1;
}

/* What only loading them tells: an RSA key under 2048 bits, a curve other than
 * P-256, a certificate that does not match its key. `serve` would refuse them. */
static size_t check_keys(const config_t *c, config_problems_t *p)
{
    size_t n = 0;
    char err[256];
    if (c->auth.jwt_secret || c->auth.jwt_public_key_file) {
        jwt_verifier_t *v = jwt_verifier_create(c, err, sizeof err);
        if (v) jwt_verifier_destroy(v);
        else n += add_problem(p, "$.auth.jwt", err);
    }
    if (c->tls.cert_file && c->tls.key_file) {
        tls_ctx_t *t = tls_ctx_create(c->tls.cert_file, c->tls.key_file, err, sizeof err);
        if (t) tls_ctx_destroy(t);
        else n += add_problem(p, "$.tls", err);
    }
    return n;
}

int cli_config_check(int argc, char **argv)
{
    const char *file = NULL;
    bool as_json = false, with_env = false;
    if (argc < 1 || strcmp(argv[0], "check") != 0) return usage();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) as_json = true;
        else if (strcmp(argv[i], "--env") == 0) with_env = true;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return usage();
        else if (argv[i][0] == '-' && argv[i][1]) return usage();
        else if (file) return usage();
        else file = argv[i];
    }
    if (!file) return usage();

    config_t c;
    config_problems_t problems = {0};
    size_t n = config_load(&c, file, with_env ? environ : NULL, &problems);
    /* a file that could not be read or parsed leaves only the defaults to check */
    bool unread = false;
    for (size_t i = 0; i < problems.count; i++) unread |= strcmp(problems.items[i].path, "$") == 0;
    if (!unread) n += config_validate(&c, &problems);
    if (!unread && n == 0) n += check_keys(&c, &problems);

    int rc = n ? 1 : 0;
    if (as_json) {
        if (print_json(&problems) != 0) rc = 1;
    } else {
        for (size_t i = 0; i < problems.count; i++)
            fprintf(stderr, "%s: %s\n", problems.items[i].path, problems.items[i].message);
        /* a problem counted but not stored (no memory for its message) still fails */
        if (n > problems.count) fprintf(stderr, "$: %zu more problems (out of memory)\n", n - problems.count);
        if (!n) printf("ok: %s\n", file);
    }
    fflush(stdout);
    config_problems_free(&problems);
    config_free(&c);
    return rc;
}
