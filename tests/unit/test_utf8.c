/* utf8: known good and bad sequences (Autobahn 6.x style), fail-fast at the first
 * bad byte, incremental feeding at every split, the 8-byte ASCII fast path at every
 * alignment, a differential check against a plain decoder, and a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "ws/utf8.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Plain decoder following RFC 3629 literally, as the reference. */
static bool ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void test_utf8_valid_known_sequences(void **state)
{
    (void)state;
    assert_true(utf8_valid(S("")));
    assert_true(utf8_valid(S("hello, world")));
    assert_true(utf8_valid(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")));   /* κόσμε */
    assert_true(utf8_valid(S("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!")));
    assert_true(utf8_valid(S("\x00")));                  /* U+0000 */
    assert_true(utf8_valid(S("\x7f")));                  /* U+007F */
    assert_true(utf8_valid(S("\xc2\x80")));              /* U+0080, first 2-byte */
    assert_true(utf8_valid(S("\xdf\xbf")));              /* U+07FF */
    assert_true(utf8_valid(S("\xe0\xa0\x80")));          /* U+0800, first 3-byte */
    assert_true(utf8_valid(S("\xed\x9f\xbf")));          /* U+D7FF, before surrogates */
    assert_true(utf8_valid(S("\xee\x80\x80")));          /* U+E000, after surrogates */
    assert_true(utf8_valid(S("\xef\xbf\xbf")));          /* U+FFFF */
    assert_true(utf8_valid(S("\xef\xbf\xbe")));          /* U+FFFE: a noncharacter, still valid */
    assert_true(utf8_valid(S("\xf0\x90\x80\x80")));      /* U+10000, first 4-byte */
    assert_true(utf8_valid(S("\xf0\x9f\x98\x80")));      /* U+1F600 */
    assert_true(utf8_valid(S("\xf4\x8f\xbf\xbf")));      /* U+10FFFF, the last */
}

static void test_utf8_overlongs_rejected(void **state)
{
    (void)state;
    assert_false(utf8_valid(S("\xc0\x80")));             /* U+0000 in 2 bytes */
    assert_false(utf8_valid(S("\xc0\xaf")));             /* '/' in 2 bytes */
    assert_false(utf8_valid(S("\xc1\xbf")));             /* U+007F in 2 bytes */
    assert_false(utf8_valid(S("\xe0\x80\x80")));
    assert_false(utf8_valid(S("\xe0\x80\xaf")));
    assert_false(utf8_valid(S("\xe0\x9f\xbf")));         /* U+07FF in 3 bytes */
    assert_false(utf8_valid(S("\xf0\x80\x80\x80")));
    assert_false(utf8_valid(S("\xf0\x80\x80\xaf")));
    assert_false(utf8_valid(S("\xf0\x8f\xbf\xbf")));     /* U+FFFF in 4 bytes */
    assert_false(utf8_valid(S("\xf8\x88\x80\x80\x80"))); /* 5-byte forms */
    assert_false(utf8_valid(S("\xfc\x84\x80\x80\x80\x80")));
}

static void test_utf8_surrogates_rejected(void **state)
{
    (void)state;
    assert_false(utf8_valid(S("\xed\xa0\x80")));         /* U+D800 */
    assert_false(utf8_valid(S("\xed\xad\xbf")));         /* U+DB7F */
    assert_false(utf8_valid(S("\xed\xb0\x80")));         /* U+DC00 */
    assert_false(utf8_valid(S("\xed\xbf\xbf")));         /* U+DFFF */
    assert_false(utf8_valid(S("\xed\xa0\x80\xed\xb0\x80")));   /* a CESU-8 pair */
}

static void test_utf8_above_10ffff_rejected(void **state)
{
    (void)state;
    assert_false(utf8_valid(S("\xf4\x90\x80\x80")));     /* U+110000 */
    assert_false(utf8_valid(S("\xf5\x80\x80\x80")));
    assert_false(utf8_valid(S("\xf7\xbf\xbf\xbf")));
    assert_false(utf8_valid(S("\xfe")));
    assert_false(utf8_valid(S("\xff")));
}

static void test_utf8_stray_continuation_rejected(void **state)
{
    (void)state;
    assert_false(utf8_valid(S("\x80")));
    assert_false(utf8_valid(S("\xbf")));
    assert_false(utf8_valid(S("a\x80z")));
    assert_false(utf8_valid(S("\xc2\x80\x80")));         /* one continuation too many */
    assert_false(utf8_valid(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited")));
}

static void test_utf8_truncated_is_pending_not_rejected(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; } cut[] = {
        {"\xc2", 1}, {"\xe0\xa0", 2}, {"\xe1", 1}, {"\xf0\x90\x80", 3}, {"\xf4\x8f", 2},
        {"ok\xf0", 3},
    };
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        uint32_t st = utf8_feed(UTF8_ACCEPT, (const uint8_t *)cut[i].s, cut[i].n);
        assert_int_not_equal(st, UTF8_ACCEPT);
        assert_int_not_equal(st, UTF8_REJECT);
        assert_false(utf8_valid((const uint8_t *)cut[i].s, cut[i].n));
    }
    /* A truncated sequence followed by ASCII is invalid. */
    assert_false(utf8_valid(S("\xe0\xa0" "a")));
    assert_false(utf8_valid(S("\xf0\x90\x80" "a")));
}

/* Fail fast: the state is REJECT right after the byte that makes the text
 * impossible, without waiting for the rest of the character. */
static void test_utf8_rejects_at_first_bad_byte(void **state)
{
    (void)state;
    static const char *bad2[] = {"\xe0\x80", "\xe0\x9f", "\xed\xa0", "\xed\xbf", "\xf0\x80",
                                 "\xf0\x8f", "\xf4\x90", "\xf4\xbf", "\xc2\x41", "\xe1\xc0"};
    for (size_t i = 0; i < sizeof(bad2) / sizeof(bad2[0]); i++) {
        uint32_t st = utf8_feed(UTF8_ACCEPT, (const uint8_t *)bad2[i], 1);
        assert_int_not_equal(st, UTF8_REJECT);
        assert_int_equal(utf8_feed(st, (const uint8_t *)bad2[i] + 1, 1), UTF8_REJECT);
    }
    static const uint8_t bad1[] = {0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xf8, 0xfe, 0xff};
    for (size_t i = 0; i < sizeof(bad1); i++)
        assert_int_equal(utf8_feed(UTF8_ACCEPT, &bad1[i], 1), UTF8_REJECT);
}

static void test_utf8_reject_is_sticky(void **state)
{
    (void)state;
    uint32_t st = utf8_feed(UTF8_ACCEPT, S("\xff"));
    assert_int_equal(st, UTF8_REJECT);
    assert_int_equal(utf8_feed(st, S("plain ascii, long enough for the fast path")), UTF8_REJECT);
    assert_int_equal(utf8_feed(st, S("")), UTF8_REJECT);
    assert_int_equal(utf8_feed(12345, S("a")), UTF8_REJECT);   /* unknown state */
}

/* Every split point of a valid multi-byte text ends in ACCEPT and is never REJECT
 * on the way. */
static void test_utf8_incremental_every_split(void **state)
{
    (void)state;
    static const uint8_t txt[] = "a\xc2\xb5\xe0\xa0\x80\xf0\x9f\x98\x80z\xf4\x8f\xbf\xbf"
                                 "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    size_t n = sizeof(txt) - 1;
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            uint32_t st = utf8_feed(UTF8_ACCEPT, txt, a);
            assert_int_not_equal(st, UTF8_REJECT);
            st = utf8_feed(st, txt + a, b - a);
            assert_int_not_equal(st, UTF8_REJECT);
            st = utf8_feed(st, txt + b, n - b);
            assert_int_equal(st, UTF8_ACCEPT);
        }
    }
    /* Byte by byte. */
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
        st = utf8_feed(st, txt + i, 1);
    assert_int_equal(st, UTF8_ACCEPT);
}

/* The 8-byte ASCII skip must not step over a bad byte wherever it sits, at any
 * alignment of the input. */
static void test_utf8_ascii_fast_path_every_position(void **state)
{
    (void)state;
    uint8_t buf[80];
    for (size_t align = 0; align < 8; align++) {
        for (size_t len = 0; len <= 64; len++) {
            memset(buf, 'x', sizeof(buf));
            assert_true(utf8_valid(buf + align, len));
            for (size_t bad = 0; bad < len; bad++) {
                memset(buf, 'x', sizeof(buf));
                buf[align + bad] = 0xff;
                assert_false(utf8_valid(buf + align, len));
                buf[align + bad] = 0x80;
                assert_false(utf8_valid(buf + align, len));
            }
            if (len >= 2) {
                /* A valid 2-byte char at the end of the run. */
                memset(buf, 'x', sizeof(buf));
                buf[align + len - 2] = 0xc3;
                buf[align + len - 1] = 0xa9;
                assert_true(utf8_valid(buf + align, len));
                /* ...cut: pending, not valid. */
                assert_false(utf8_valid(buf + align, len - 1));
            }
        }
    }
}

/* Every 1- and 2-byte input, and every 3-byte input starting with a non-ASCII
 * byte, agree with the reference decoder. */
static void test_utf8_exhaustive_short_inputs_match_reference(void **state)
{
    (void)state;
    uint8_t b[3];
    for (int i = 0; i < 256; i++) {
        b[0] = (uint8_t)i;
        assert_int_equal(utf8_valid(b, 1), ref_valid(b, 1));
        for (int j = 0; j < 256; j++) {
            b[1] = (uint8_t)j;
            assert_int_equal(utf8_valid(b, 2), ref_valid(b, 2));
        }
    }
    for (int i = 0x80; i < 256; i++) {
        b[0] = (uint8_t)i;
        for (int j = 0; j < 256; j++) {
            b[1] = (uint8_t)j;
            for (int k = 0; k < 256; k++) {
                b[2] = (uint8_t)k;
                if (utf8_valid(b, 3) != ref_valid(b, 3))
                    fail_msg("mismatch on %02x %02x %02x", i, j, k);
            }
        }
    }
}

/* 4-byte leads F0..F7 with every second and fourth byte, and random mixed text. */
static void test_utf8_four_byte_and_random_match_reference(void **state)
{
    (void)state;
    uint8_t b[4];
    static const uint8_t third[] = {0x41, 0x80, 0x8f, 0x90, 0xbf, 0xc0};
    for (int i = 0xf0; i <= 0xf7; i++) {
        b[0] = (uint8_t)i;
        for (int j = 0; j < 256; j++) {
            b[1] = (uint8_t)j;
            for (size_t t = 0; t < sizeof(third); t++) {
                b[2] = third[t];
                for (int k = 0; k < 256; k++) {
                    b[3] = (uint8_t)k;
                    if (utf8_valid(b, 4) != ref_valid(b, 4))
                        fail_msg("mismatch on %02x %02x %02x %02x", i, j, third[t], k);
                }
            }
        }
    }
    /* Random strings biased towards plausible UTF-8, checked whole and split. */
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    static const uint8_t pick[] = {'a', ' ', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc2,
                                   0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xc0};
    uint8_t s[24];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = rng_next(&seed) % sizeof(s);
        for (size_t i = 0; i < n; i++)
            s[i] = pick[rng_next(&seed) % sizeof(pick)];
        bool want = ref_valid(s, n);
        assert_int_equal(utf8_valid(s, n), want);
        size_t cut = n ? rng_next(&seed) % (n + 1) : 0;
        uint32_t st = utf8_feed(utf8_feed(UTF8_ACCEPT, s, cut), s + cut, n - cut);
        assert_int_equal(st == UTF8_ACCEPT, want);
    }
}

/* Input flush against a PROT_NONE page: any read past the end faults. */
static void test_utf8_guard_page_no_overread(void **state)
{
    (void)state;
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
    uint8_t *end = map + pg;
    static const uint8_t tails[][4] = {{'a'}, {0xc3}, {0xe2, 0x82}, {0xf0, 0x9f, 0x98}};
    for (size_t len = 0; len <= 40; len++) {
        memset(end - len, 'q', len);
        assert_true(utf8_valid(end - len, len));
        for (size_t t = 0; t < 4; t++) {
            size_t tl = t + 1 < len ? t + 1 : len;
            memcpy(end - tl, tails[t], tl);
            (void)utf8_feed(UTF8_ACCEPT, end - len, len);
        }
    }
    munmap(map, (size_t)pg * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_known_sequences),
        cmocka_unit_test(test_utf8_overlongs_rejected),
        cmocka_unit_test(test_utf8_surrogates_rejected),
        cmocka_unit_test(test_utf8_above_10ffff_rejected),
        cmocka_unit_test(test_utf8_stray_continuation_rejected),
        cmocka_unit_test(test_utf8_truncated_is_pending_not_rejected),
        cmocka_unit_test(test_utf8_rejects_at_first_bad_byte),
        cmocka_unit_test(test_utf8_reject_is_sticky),
        cmocka_unit_test(test_utf8_incremental_every_split),
        cmocka_unit_test(test_utf8_ascii_fast_path_every_position),
        cmocka_unit_test(test_utf8_exhaustive_short_inputs_match_reference),
        cmocka_unit_test(test_utf8_four_byte_and_random_match_reference),
        cmocka_unit_test(test_utf8_guard_page_no_overread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
