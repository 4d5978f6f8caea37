#include "ws/utf8.h"

#include <string.h>

/* A byte-class state machine: each byte maps to one of 12 classes, and the state
 * (0..8) says what the current character still needs. Classes keep the transition
 * table at 9 x 12 bytes instead of 9 x 256, and the restricted second-byte ranges
 * (E0, ED, F0, F4) are their own states, which is what rules out overlongs,
 * surrogates and code points above U+10FFFF without decoding anything. */

enum {
    C_ASCII,   /* 00..7F */
    C_CONT_LO, /* 80..8F */
    C_CONT_MI, /* 90..9F */
    C_CONT_HI, /* A0..BF */
    C_BAD,     /* C0, C1 (always overlong), F5..FF (above U+10FFFF) */
    C_LEAD2,   /* C2..DF */
    C_E0,      /* E0: second byte A0..BF, else overlong */
    C_LEAD3,   /* E1..EC, EE, EF */
    C_ED,      /* ED: second byte 80..9F, else a surrogate */
    C_F0,      /* F0: second byte 90..BF, else overlong */
    C_LEAD4,   /* F1..F3 */
    C_F4,      /* F4: second byte 80..8F, else above U+10FFFF */
    C_COUNT
};

enum {
    S_ACCEPT = UTF8_ACCEPT,
    S_REJECT = UTF8_REJECT,
    S_NEED1,   /* one continuation byte left */
    S_NEED2,
    S_NEED3,
    S_E0,      /* after E0 */
    S_ED,      /* after ED */
    S_F0,      /* after F0 */
    S_F4,      /* after F4 */
    S_COUNT
};

static const uint8_t byte_class[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00..0F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10..1F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20..2F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 30..3F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 40..4F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 50..5F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 60..6F */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 70..7F */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  /* 80..8F */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 90..9F */
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* A0..AF */
     3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* B0..BF */
     4,  4,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* C0..CF */
     5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* D0..DF */
     6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  7,  /* E0..EF */
     9, 10, 10, 10, 11,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* F0..FF */
};

#define R S_REJECT
static const uint8_t transition[S_COUNT][C_COUNT] = {
    /*            ASCII     80-8F    90-9F    A0-BF    bad LEAD2    E0    LEAD3  ED    F0    LEAD4    F4 */
    [S_ACCEPT] = {S_ACCEPT, R,       R,       R,       R,  S_NEED1, S_E0, S_NEED2, S_ED, S_F0, S_NEED3, S_F4},
    [S_REJECT] = {R,        R,       R,       R,       R,  R,       R,    R,       R,    R,    R,       R},
    [S_NEED1]  = {R,        S_ACCEPT, S_ACCEPT, S_ACCEPT, R, R,     R,    R,       R,    R,    R,       R},
    [S_NEED2]  = {R,        S_NEED1, S_NEED1, S_NEED1, R,  R,       R,    R,       R,    R,    R,       R},
    [S_NEED3]  = {R,        S_NEED2, S_NEED2, S_NEED2, R,  R,       R,    R,       R,    R,    R,       R},
    [S_E0]     = {R,        R,       R,       S_NEED1, R,  R,       R,    R,       R,    R,    R,       R},
    [S_ED]     = {R,        S_NEED1, S_NEED1, R,       R,  R,       R,    R,       R,    R,    R,       R},
    [S_F0]     = {R,        R,       S_NEED2, S_NEED2, R,  R,       R,    R,       R,    R,    R,       R},
    [S_F4]     = {R,        S_NEED2, R,       R,       R,  R,       R,    R,       R,    R,    R,       R},
};
#undef R

#define HIGH_BITS 0x8080808080808080ull

uint32_t utf8_feed(uint32_t state, const uint8_t *s, size_t n)
{
    if (state >= S_COUNT)
        return UTF8_REJECT;   /* not a state this module produced */
    size_t i = 0;
    while (i < n) {
        if (state == S_ACCEPT) {
            /* Messages are mostly ASCII JSON: skip 8 bytes per step while no byte
             * has its high bit set; memcpy keeps the load alignment-safe. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & HIGH_BITS)
                    break;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                i++;
            if (i == n)
                break;
        }
        state = transition[state][byte_class[s[i]]];
        if (state == S_REJECT)
            return UTF8_REJECT;   /* fail at the first bad byte */
        i++;
    }
    return state;
}

bool utf8_valid(const uint8_t *s, size_t n)
{
    return utf8_feed(UTF8_ACCEPT, s, n) == UTF8_ACCEPT;
}
