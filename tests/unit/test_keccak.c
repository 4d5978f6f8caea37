/* keccak: known answers at and around the 136-byte rate, the difference from
 * SHA3-256, split-independence of the padding, and a guard page behind the input.
 *
 * Where the expected values come from: "", "abc" and the ERC-20 Transfer topic are
 * the values Ethereum tooling prints everywhere. The multi-block ones (135, 136, 137,
 * 200 and 272 bytes, 0..255) were computed offline with @noble/hashes 1.8.0
 * (keccak_256), an implementation independent of this one; 200 bytes of 0xa3 is the
 * 1600-bit message of the NIST/Keccak example set, whose Keccak-256 digest
 * 3a57666b...ce607d4a is also the value published with many other implementations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "chain/keccak.h"

static void hex32(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check(const void *data, size_t len, const char *want)
{
    uint8_t d[32];
    char got[65];
    keccak256(data, len, d);
    hex32(d, got);
    assert_string_equal(got, want);
}

static void check_fill(uint8_t byte, size_t len, const char *want)
{
    uint8_t buf[512];
    assert_true(len <= sizeof buf);
    memset(buf, byte, len);
    check(buf, len, want);
}

static void test_keccak_empty(void **state)
{
    (void)state;
    check("", 0, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    check(NULL, 0, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
}

static void test_keccak_abc(void **state)
{
    (void)state;
    check("abc", 3, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

static void test_keccak_transfer_topic(void **state)
{
    (void)state;
    const char *sig = "Transfer(address,address,uint256)";
    check(sig, strlen(sig), "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
}

/* 135 bytes: the pad's 0x01 and 0x80 share the block's last byte (0x81) */
static void test_keccak_rate_minus_one_pad_in_one_byte(void **state)
{
    (void)state;
    check_fill('a', 135, "34367dc248bbd832f4e3e69dfaac2f92638bd0bbd18f2912ba4ef454919cf446");
}

/* exactly one rate block: the padding needs a block of its own */
static void test_keccak_exactly_136_bytes(void **state)
{
    (void)state;
    check_fill('a', 136, "a6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e");
}

static void test_keccak_137_bytes(void **state)
{
    (void)state;
    check_fill('a', 137, "d869f639c7046b4929fc92a4d988a8b22c55fbadb802c0c66ebcd484f1915f39");
}

static void test_keccak_200_bytes_a3(void **state)
{
    (void)state;
    check_fill(0xa3, 200, "3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a");
}

static void test_keccak_two_full_blocks(void **state)
{
    (void)state;
    check_fill('a', 272, "cf7fcd4f705ee749930d19ca84561a9bf62516bd90a471545fa2f49fdc7e63c8");
}

static void test_keccak_all_byte_values(void **state)
{
    (void)state;
    uint8_t b[256];
    for (int i = 0; i < 256; i++) b[i] = (uint8_t)i;
    check(b, sizeof b, "dc924469b334aed2a19fac7252e9961aea41f8d91996366029dbe0884229bf36");
}

/* Keccak-256 is not SHA3-256: same permutation, other padding. OpenSSL's SHA3-256
 * of "" is a7ffc6f8..., ours must differ, and both must be stable. */
static void test_keccak_is_not_sha3(void **state)
{
    (void)state;
    uint8_t sha3[32], kec[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest("", 0, sha3, &n, EVP_sha3_256(), NULL), 1);
    assert_int_equal(n, 32);
    char got[65];
    hex32(sha3, got);
    assert_string_equal(got, "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a");
    keccak256("", 0, kec);
    assert_memory_not_equal(sha3, kec, 32);
}

/* The input ends on a guard page: a read past len faults. Every length across
 * three rate blocks, each hashed from the page's end. */
static void test_keccak_guard_page_every_length(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    uint8_t prev[32] = {0}, d[32];
    for (size_t len = 0; len <= 3 * 136 + 1; len++) {
        uint8_t *p = map + page - len;
        memset(p, 'a', len);
        keccak256(p, len, d);
        assert_memory_not_equal(d, prev, 32);
        memcpy(prev, d, 32);
        if (len == 136) {
            char got[65];
            hex32(d, got);
            assert_string_equal(got, "a6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e");
        }
    }
    munmap(map, (size_t)page * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keccak_empty),
        cmocka_unit_test(test_keccak_abc),
        cmocka_unit_test(test_keccak_transfer_topic),
        cmocka_unit_test(test_keccak_rate_minus_one_pad_in_one_byte),
        cmocka_unit_test(test_keccak_exactly_136_bytes),
        cmocka_unit_test(test_keccak_137_bytes),
        cmocka_unit_test(test_keccak_200_bytes_a3),
        cmocka_unit_test(test_keccak_two_full_blocks),
        cmocka_unit_test(test_keccak_all_byte_values),
        cmocka_unit_test(test_keccak_is_not_sha3),
        cmocka_unit_test(test_keccak_guard_page_every_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
