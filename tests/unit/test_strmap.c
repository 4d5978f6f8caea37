/* strmap: insert, get, remove, growth, iteration, bucket collisions. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "core/strmap.h"

/* A value that embeds its node and key, the way the hub and sequencer use it. */
typedef struct item {
    strmap_node_t node;
    int value;
    unsigned seen;
    char key[32];
} item_t;

static void item_init(item_t *it, const char *key, size_t len, int value)
{
    memset(it, 0, sizeof *it);
    assert_true(len < sizeof it->key);
    memcpy(it->key, key, len);
    it->node.key = it->key;
    it->node.key_len = len;
    it->value = value;
}

static item_t *get(const strmap_t *m, const char *key, size_t len)
{
    return (item_t *)strmap_get(m, key, len);
}

static void test_strmap_empty_map_get_and_iterate_find_nothing(void **state)
{
    (void)state;
    strmap_t m = {0};
    assert_null(strmap_get(&m, "a", 1));
    assert_null(strmap_get(&m, "", 0));
    size_t b = 12345;
    assert_null(strmap_first(&m, &b));
    strmap_deinit(&m);
    strmap_deinit(&m);   /* twice is harmless */
    assert_int_equal(m.count, 0);
}

static void test_strmap_insert_get_remove_one(void **state)
{
    (void)state;
    strmap_t m = {0};
    item_t a;
    item_init(&a, "jobs", 4, 7);
    assert_int_equal(strmap_insert(&m, &a.node), 0);
    assert_int_equal(m.count, 1);
    assert_ptr_equal(get(&m, "jobs", 4), &a);
    assert_int_equal(a.node.hash, strmap_hash("jobs", 4));
    assert_null(get(&m, "job", 3));
    assert_null(get(&m, "jobs!", 5));
    assert_null(get(&m, "JOBS", 4));
    strmap_remove(&m, &a.node);
    assert_int_equal(m.count, 0);
    assert_null(get(&m, "jobs", 4));
    /* removing twice changes nothing */
    strmap_remove(&m, &a.node);
    assert_int_equal(m.count, 0);
    /* and the node can go back in */
    assert_int_equal(strmap_insert(&m, &a.node), 0);
    assert_ptr_equal(get(&m, "jobs", 4), &a);
    strmap_deinit(&m);
}

static void test_strmap_key_length_matters_with_embedded_nul(void **state)
{
    (void)state;
    strmap_t m = {0};
    item_t a, b, e;
    item_init(&a, "ab", 2, 1);
    item_init(&b, "ab\0", 3, 2);
    item_init(&e, "", 0, 3);
    assert_int_equal(strmap_insert(&m, &a.node), 0);
    assert_int_equal(strmap_insert(&m, &b.node), 0);
    assert_int_equal(strmap_insert(&m, &e.node), 0);
    assert_ptr_equal(get(&m, "ab", 2), &a);
    assert_ptr_equal(get(&m, "ab\0", 3), &b);
    assert_ptr_equal(get(&m, "", 0), &e);
    assert_null(get(&m, "a", 1));
    strmap_deinit(&m);
}

/* FNV-1a 64 reference values: a different hash would still work, but these pin
 * that the function is the documented one and is stable.
 * The FNV-1a 64-bit offset basis is 14695981039346656037 (0xcbf29ce484222325):
 * the hash of the empty string. */
static void test_strmap_hash_is_fnv1a_64(void **state)
{
    (void)state;
    assert_true(strmap_hash("", 0) == 0xcbf29ce484222325ull);
    assert_true(strmap_hash("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(strmap_hash("foobar", 6) == 0x85944171f73967e8ull);
}

static bool is_pow2(size_t n) { return n && (n & (n - 1)) == 0; }

/* 10,000 entries: every one still found after many doublings, load <= 1. */
static void test_strmap_growth_to_10000_keeps_every_entry(void **state)
{
    (void)state;
    enum { N = 10000 };
    item_t *items = calloc(N, sizeof *items);
    assert_non_null(items);
    strmap_t m = {0};
    size_t last_buckets = 0;
    unsigned growths = 0;
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "chan:%d", i);
        item_init(&items[i], k, (size_t)n, i);
        assert_int_equal(strmap_insert(&m, &items[i].node), 0);
        assert_int_equal(m.count, (size_t)i + 1);
        assert_true(is_pow2(m.bucket_count));
        assert_true(m.count <= m.bucket_count);
        if (m.bucket_count != last_buckets) {
            growths++;
            last_buckets = m.bucket_count;
        }
    }
    assert_true(growths >= 10);   /* 16 -> 16384 */
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "chan:%d", i);
        item_t *it = get(&m, k, (size_t)n);
        assert_non_null(it);
        assert_int_equal(it->value, i);
    }
    assert_null(get(&m, "chan:10000", 10));
    /* remove the even ones; the odd ones remain */
    for (int i = 0; i < N; i += 2) strmap_remove(&m, &items[i].node);
    assert_int_equal(m.count, N / 2);
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "chan:%d", i);
        if (i % 2) assert_ptr_equal(get(&m, k, (size_t)n), &items[i]);
        else assert_null(get(&m, k, (size_t)n));
    }
    strmap_deinit(&m);
    free(items);
}

static void test_strmap_iteration_visits_every_node_exactly_once(void **state)
{
    (void)state;
    enum { N = 5000 };
    item_t *items = calloc(N, sizeof *items);
    assert_non_null(items);
    strmap_t m = {0};
    for (int i = 0; i < N; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "k%d", i * 7919);
        item_init(&items[i], k, (size_t)n, i);
        assert_int_equal(strmap_insert(&m, &items[i].node), 0);
    }
    size_t b, visits = 0;
    for (strmap_node_t *it = strmap_first(&m, &b); it; it = strmap_next(&m, it, &b)) {
        ((item_t *)it)->seen++;
        visits++;
        assert_true(visits <= N);
    }
    assert_int_equal(visits, N);
    for (int i = 0; i < N; i++) assert_int_equal(items[i].seen, 1);
    strmap_deinit(&m);
    free(items);
}

/* The pattern of hub_destroy/sequencer_destroy: fetch next, then free current. */
static void test_strmap_iteration_survives_freeing_current_node(void **state)
{
    (void)state;
    enum { N = 300 };
    strmap_t m = {0};
    for (int i = 0; i < N; i++) {
        item_t *it = malloc(sizeof *it);
        assert_non_null(it);
        char k[32];
        int n = snprintf(k, sizeof k, "x:%d", i);
        item_init(it, k, (size_t)n, i);
        assert_int_equal(strmap_insert(&m, &it->node), 0);
    }
    size_t b, freed = 0;
    strmap_node_t *n = strmap_first(&m, &b);
    while (n) {
        strmap_node_t *next = strmap_next(&m, n, &b);
        free(n);
        freed++;
        n = next;
    }
    assert_int_equal(freed, N);
    strmap_deinit(&m);
}

/* Keys whose hashes share the low 16 bits share a bucket for every table size up
 * to 65,536: a long chain, whose middle, head and tail are removed. */
static void test_strmap_bucket_collisions_chain_insert_remove(void **state)
{
    (void)state;
    enum { K = 8 };
    item_t items[K];
    int found = 0;
    uint64_t low = 0;
    for (int i = 0; found < K && i < 50000000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "c%d", i);
        uint64_t h = strmap_hash(k, (size_t)n);
        if (found == 0) low = h & 0xffff;
        if ((h & 0xffff) != low) continue;
        item_init(&items[found++], k, (size_t)n, i);
    }
    assert_int_equal(found, K);

    strmap_t m = {0};
    for (int i = 0; i < K; i++) assert_int_equal(strmap_insert(&m, &items[i].node), 0);
    /* all in one chain */
    size_t bucket = low & (m.bucket_count - 1);
    size_t chain = 0;
    for (strmap_node_t *n = m.buckets[bucket]; n; n = n->next) chain++;
    assert_int_equal(chain, K);
    for (int i = 0; i < K; i++) assert_ptr_equal(get(&m, items[i].key, items[i].node.key_len), &items[i]);

    /* remove the middle, the first inserted (chain tail) and last inserted (chain head) */
    strmap_remove(&m, &items[K / 2].node);
    strmap_remove(&m, &items[0].node);
    strmap_remove(&m, &items[K - 1].node);
    assert_int_equal(m.count, K - 3);
    for (int i = 0; i < K; i++) {
        item_t *want = (i == K / 2 || i == 0 || i == K - 1) ? NULL : &items[i];
        assert_ptr_equal(get(&m, items[i].key, items[i].node.key_len), want);
    }
    size_t b, visits = 0;
    for (strmap_node_t *it = strmap_first(&m, &b); it; it = strmap_next(&m, it, &b)) visits++;
    assert_int_equal(visits, K - 3);
    strmap_deinit(&m);
}

/* A chain that spans a growth: colliding keys must be redistributed, not lost. */
static void test_strmap_growth_rehashes_colliding_chain(void **state)
{
    (void)state;
    enum { N = 64 };
    item_t items[N];
    /* keys with equal low 4 bits: one bucket at 16 slots, split by later growth */
    int found = 0;
    for (int i = 0; found < N && i < 1000000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "g%d", i);
        if ((strmap_hash(k, (size_t)n) & 0xf) != 3) continue;
        item_init(&items[found++], k, (size_t)n, i);
    }
    assert_int_equal(found, N);
    strmap_t m = {0};
    for (int i = 0; i < N; i++) assert_int_equal(strmap_insert(&m, &items[i].node), 0);
    assert_true(m.bucket_count >= N);
    for (int i = 0; i < N; i++) assert_ptr_equal(get(&m, items[i].key, items[i].node.key_len), &items[i]);
    strmap_deinit(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strmap_empty_map_get_and_iterate_find_nothing),
        cmocka_unit_test(test_strmap_insert_get_remove_one),
        cmocka_unit_test(test_strmap_key_length_matters_with_embedded_nul),
        cmocka_unit_test(test_strmap_hash_is_fnv1a_64),
        cmocka_unit_test(test_strmap_growth_to_10000_keeps_every_entry),
        cmocka_unit_test(test_strmap_iteration_visits_every_node_exactly_once),
        cmocka_unit_test(test_strmap_iteration_survives_freeing_current_node),
        cmocka_unit_test(test_strmap_bucket_collisions_chain_insert_remove),
        cmocka_unit_test(test_strmap_growth_rehashes_colliding_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
