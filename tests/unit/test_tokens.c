/* tokens: the access token store, and what the cluster uses to share it between
 * nodes (tokens_fingerprint, tokens_export, tokens_import): a token made in one
 * store and imported into another works there with its scope and label; a
 * revocation travels, a revival never does; clashing and malformed rows are
 * refused; the fingerprint moves on every change and only then; an export since
 * a time gives the tokens created or revoked since.
 *
 * Each test has two stores in their own mkdtemp directories, removed afterwards. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/tokens.h"
#include "core/err.h"
#include "core/util.h"

typedef struct pair {
    char dir_a[64], dir_b[64];
    tokens_t *a, *b;
} pair_t;

static void rm_dir(const char *dir)
{
    const char *files[] = {"herald.db", "herald.db-wal", "herald.db-shm"};
    char p[128];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int setup(void **state)
{
    pair_t *p = calloc(1, sizeof *p);
    snprintf(p->dir_a, sizeof p->dir_a, "/tmp/herald-tokens-XXXXXX");
    snprintf(p->dir_b, sizeof p->dir_b, "/tmp/herald-tokens-XXXXXX");
    if (!mkdtemp(p->dir_a) || !mkdtemp(p->dir_b)) return -1;
    p->a = tokens_open(p->dir_a);
    p->b = tokens_open(p->dir_b);
    *state = p;
    return p->a && p->b ? 0 : -1;
}

static int teardown(void **state)
{
    pair_t *p = *state;
    tokens_close(p->a);
    tokens_close(p->b);
    rm_dir(p->dir_a);
    rm_dir(p->dir_b);
    free(p);
    return 0;
}

static void count_revoked(void *arg, const char *id)
{
    assert_int_equal(strlen(id), TOKEN_ID_LEN);
    (*(int *)arg)++;
}

/* Every row of from imported into to; returns how many changed it. */
static int copy_all(tokens_t *from, tokens_t *to, int *revoked)
{
    json_t *rows = tokens_export(from, 0);
    assert_non_null(rows);
    int n = 0;
    size_t bad = 99;
    int changed = tokens_import(to, rows, count_revoked, &n, &bad);
    assert_true(changed >= 0);
    assert_int_equal(bad, 0);
    if (revoked) *revoked = n;
    json_decref(rows);
    return changed;
}

/* One row: how many changed (0 or 1), or HERALD_EINVAL when it was malformed. */
static int import_one(tokens_t *t, json_t *row, int *revoked)
{
    json_t *rows = json_array();
    json_array_append(rows, row);
    int n = 0;
    size_t bad = 0;
    int rc = tokens_import(t, rows, count_revoked, &n, &bad);
    json_decref(rows);
    if (revoked) *revoked = n;
    assert_true(rc >= 0);
    return bad ? HERALD_EINVAL : rc;
}

static void create(tokens_t *t, const char *channel, const char *label, token_info_t *out)
{
    char *channels[] = {(char *)channel, "overlay:extra"};
    assert_int_equal(tokens_create(t, channels, 2, label, out), 0);
}

static void test_token_made_in_one_store_works_in_the_other(void **state)
{
    pair_t *p = *state;
    token_info_t made, found;
    create(p->a, "creator:abc", "obs", &made);
    assert_int_equal(tokens_lookup(p->b, made.secret, strlen(made.secret), &found), HERALD_ENOTFOUND);

    json_t *rows = tokens_export(p->a, 0);
    assert_int_equal(json_array_size(rows), 1);
    json_t *row = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(row, "id")), made.id);
    assert_int_equal(strlen(json_string_value(json_object_get(row, "hash"))), 64);
    char *text = json_dumps(rows, JSON_COMPACT);
    assert_null(strstr(text, made.secret + 4));   /* the secret never leaves the store */
    free(text);
    assert_true(json_is_null(json_object_get(row, "revoked_at")));
    json_decref(rows);

    assert_int_equal(copy_all(p->a, p->b, NULL), 1);
    assert_int_equal(tokens_lookup(p->b, made.secret, strlen(made.secret), &found), 0);
    assert_string_equal(found.id, made.id);
    assert_string_equal(found.label, "obs");
    assert_int_equal(found.channel_count, 2);
    assert_string_equal(found.channels[0], "creator:abc");
    assert_string_equal(found.channels[1], "overlay:extra");
    assert_int_equal(found.created_at_ms, made.created_at_ms);
    token_info_free(&found);

    /* a second import changes nothing; nor does importing b's rows back into a */
    assert_int_equal(copy_all(p->a, p->b, NULL), 0);
    assert_int_equal(copy_all(p->b, p->a, NULL), 0);
    token_info_free(&made);
}

static void test_revocation_travels_and_is_never_undone(void **state)
{
    pair_t *p = *state;
    token_info_t made, found;
    create(p->a, "creator:abc", NULL, &made);
    assert_int_equal(copy_all(p->a, p->b, NULL), 1);

    char id[TOKEN_ID_LEN + 1];
    assert_int_equal(tokens_revoke(p->a, made.id, id), 0);
    int revoked = 0;
    assert_int_equal(copy_all(p->a, p->b, &revoked), 1);
    assert_int_equal(revoked, 1);
    assert_int_equal(tokens_lookup(p->b, made.secret, strlen(made.secret), &found), HERALD_ENOTFOUND);

    /* b's revocation is stamped with b's clock, so its workers see it */
    json_t *rows = tokens_export(p->b, 0);
    assert_true(json_is_integer(json_object_get(json_array_get(rows, 0), "revoked_at")));
    json_decref(rows);

    /* a store still holding it live does not revive it elsewhere */
    token_info_t other;
    create(p->b, "creator:def", NULL, &other);
    rows = tokens_export(p->b, 0);
    json_t *row;
    size_t i;
    json_array_foreach(rows, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "id")), made.id) == 0)
            json_object_set_new(row, "revoked_at", json_null());   /* as a lagging node would send it */
        assert_true(import_one(p->a, row, NULL) >= 0);
    }
    json_decref(rows);
    assert_int_equal(tokens_lookup(p->a, made.secret, strlen(made.secret), &found), HERALD_ENOTFOUND);
    assert_int_equal(tokens_lookup(p->a, other.secret, strlen(other.secret), &found), 0);
    token_info_free(&found);
    token_info_free(&made);
    token_info_free(&other);
}

static void test_clashing_and_malformed_rows_are_refused(void **state)
{
    pair_t *p = *state;
    token_info_t in_a, in_b, found;
    create(p->a, "creator:abc", NULL, &in_a);
    create(p->b, "creator:xyz", NULL, &in_b);

    /* b's row under a's id: same id, another hash -> ignored, a's token intact */
    json_t *rows = tokens_export(p->b, 0);
    json_t *row = json_array_get(rows, 0);
    json_object_set_new(row, "id", json_string(in_a.id));
    assert_int_equal(import_one(p->a, row, NULL), 0);
    assert_int_equal(tokens_lookup(p->a, in_b.secret, strlen(in_b.secret), &found), HERALD_ENOTFOUND);
    /* ... and revoked under that id: a's own token stays live */
    json_object_set_new(row, "revoked_at", json_integer(1));
    int revoked = 0;
    assert_int_equal(import_one(p->a, row, &revoked), 0);
    assert_int_equal(revoked, 0);
    assert_int_equal(tokens_lookup(p->a, in_a.secret, strlen(in_a.secret), &found), 0);
    token_info_free(&found);
    json_decref(rows);

    const char *bad[] = {
        "{}",
        "{\"id\":\"0123456\",\"hash\":\"%s\",\"channels\":[\"c\"],\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"0123456G\",\"hash\":\"%s\",\"channels\":[\"c\"],\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%.63s\",\"channels\":[\"c\"],\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%s\",\"channels\":[],\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%s\",\"channels\":[1],\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%s\",\"channels\":\"c\",\"label\":null,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%s\",\"channels\":[\"c\"],\"label\":5,\"created_at\":1,\"revoked_at\":null}",
        "{\"id\":\"01234567\",\"hash\":\"%s\",\"channels\":[\"c\"],\"label\":null,\"created_at\":\"1\",\"revoked_at\":null}",
    };
    const char *hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char text[512];
        snprintf(text, sizeof text, bad[k], hash);
        json_t *j = json_loads(text, 0, NULL);
        assert_non_null(j);
        if (import_one(p->a, j, NULL) != HERALD_EINVAL) fail_msg("accepted %s", text);
        json_decref(j);
    }
    /* the uppercase hex of a hash is not the store's format either */
    char text[512];
    snprintf(text, sizeof text,
             "{\"id\":\"01234567\",\"hash\":\"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\","
             "\"channels\":[\"c\"],\"label\":null,\"created_at\":1,\"revoked_at\":null}");
    json_t *j = json_loads(text, 0, NULL);
    assert_int_equal(import_one(p->a, j, NULL), HERALD_EINVAL);
    json_decref(j);
    rows = tokens_export(p->a, 0);
    assert_int_equal(json_array_size(rows), 1);   /* only a's own token */
    json_decref(rows);
    /* in a batch, a malformed row is counted and the good ones still go in */
    rows = tokens_export(p->b, 0);
    json_array_insert_new(rows, 0, json_string("not a row"));
    size_t skipped = 0;
    assert_int_equal(tokens_import(p->a, rows, NULL, NULL, &skipped), 1);
    assert_int_equal(skipped, 1);
    json_decref(rows);
    token_info_free(&in_a);
    token_info_free(&in_b);
}

static void test_fingerprint_moves_on_every_change_only(void **state)
{
    pair_t *p = *state;
    int64_t f0 = tokens_fingerprint(p->a);
    assert_true(f0 >= 0);
    assert_int_equal(tokens_fingerprint(p->a), f0);
    token_info_t one, two;
    create(p->a, "creator:abc", NULL, &one);
    int64_t f1 = tokens_fingerprint(p->a);
    assert_true(f1 != f0);
    assert_int_equal(tokens_fingerprint(p->a), f1);
    create(p->b, "creator:def", NULL, &two);
    assert_int_equal(copy_all(p->b, p->a, NULL), 1);   /* an import is a change too */
    int64_t f2 = tokens_fingerprint(p->a);
    assert_true(f2 != f1);
    char id[TOKEN_ID_LEN + 1];
    assert_int_equal(tokens_revoke(p->a, one.id, id), 0);
    int64_t f3 = tokens_fingerprint(p->a);
    assert_true(f3 != f2);
    assert_int_equal(copy_all(p->b, p->a, NULL), 0);
    assert_int_equal(tokens_fingerprint(p->a), f3);
    token_info_free(&one);
    token_info_free(&two);
}

static void test_export_since_gives_what_was_created_or_revoked_since(void **state)
{
    pair_t *p = *state;
    token_info_t old_one, new_one;
    create(p->a, "creator:old", NULL, &old_one);
    int64_t cut = old_one.created_at_ms + 1;
    while ((int64_t)time_wall_ms() <= cut) usleep(1000);   /* the next token is made after the cut */
    create(p->a, "creator:new", NULL, &new_one);
    json_t *rows = tokens_export(p->a, cut);
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "id")), new_one.id);
    json_decref(rows);
    rows = tokens_export(p->a, (int64_t)time_wall_ms() + 60000);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    /* a revocation is a change: the old token comes back in a later export */
    int64_t before = (int64_t)time_wall_ms();
    char id[TOKEN_ID_LEN + 1];
    assert_int_equal(tokens_revoke(p->a, old_one.id, id), 0);
    rows = tokens_export(p->a, before);
    bool found = false;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        if (strcmp(json_string_value(json_object_get(row, "id")), old_one.id) == 0) {
            found = true;
            assert_true(json_is_integer(json_object_get(row, "revoked_at")));
        }
    }
    assert_true(found);
    json_decref(rows);
    rows = tokens_export(p->a, 0);
    assert_int_equal(json_array_size(rows), 2);
    json_decref(rows);
    token_info_free(&old_one);
    token_info_free(&new_one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_made_in_one_store_works_in_the_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation_travels_and_is_never_undone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clashing_and_malformed_rows_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint_moves_on_every_change_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_since_gives_what_was_created_or_revoked_since, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
