/*
 * breaks.c -- shoal_count_line_breaks: how many '\n' and '\r' bytes a read's
 * output holds, which tells whether payloads joined by '\n' are NDJSON.
 *
 * Not done during reads: checking each payload as it is copied waits on its
 * cold source lines and cost 3x a separate pass, and most callers (Python
 * iteration) never ask. Must stay true: the SIMD paths count exactly what
 * the portable loop counts (tests force the portable path with
 * SHOAL_NATIVE_PORTABLE=1).
 */
#include "shoal.h"
#include "internal.h"

/* The portable loop takes 16 bytes a step with GCC vector extensions (SSE2
 * on x86-64, NEON on arm64); AVX2 takes 32. Lanes count down from 0 (-1
 * per match) and are summed before they can wrap. */
typedef signed char v16s8 __attribute__((vector_size(16)));

static uint64_t count_breaks_tail(const char *p, uint64_t n) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += p[i] == '\n' || p[i] == '\r';
    return total;
}

static uint64_t count_breaks_v16(const char *p, uint64_t n) {
    const v16s8 nl = {10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10};
    const v16s8 cr = {13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13};
    uint64_t total = 0, i = 0;
    while (i + 16 <= n) {
        v16s8 acc = {0};
        for (int k = 0; k < 127 && i + 16 <= n; k++, i += 16) {
            v16s8 x;
            memcpy(&x, p + i, 16);
            acc += (x == nl) | (x == cr);  /* -1 where true */
        }
        signed char lanes[16];
        memcpy(lanes, &acc, 16);
        for (int k = 0; k < 16; k++) total += (uint64_t)(-lanes[k]);
    }
    return total + count_breaks_tail(p + i, n - i);
}

#if SHOAL_X86
__attribute__((target("avx2"))) static uint64_t count_breaks_avx2(const char *p, uint64_t n) {
    const __m256i nl = _mm256_set1_epi8('\n'), cr = _mm256_set1_epi8('\r');
    const __m256i zero = _mm256_setzero_si256();
    __m256i sums = zero; /* 4 x 64-bit partial totals */
    uint64_t i = 0;
    while (i + 32 <= n) {
        __m256i acc = zero;
        for (int k = 0; k < 255 && i + 32 <= n; k++, i += 32) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
            acc = _mm256_sub_epi8(acc, _mm256_or_si256(_mm256_cmpeq_epi8(x, nl), _mm256_cmpeq_epi8(x, cr)));
        }
        sums = _mm256_add_epi64(sums, _mm256_sad_epu8(acc, zero)); /* acc lanes: 0..255 matches */
    }
    uint64_t s[4];
    _mm256_storeu_si256((__m256i *)s, sums);
    return s[0] + s[1] + s[2] + s[3] + count_breaks_tail(p + i, n - i);
}
#endif

uint64_t shoal_count_line_breaks(const char *p, uint64_t n) {
#if SHOAL_X86
    if (shoal_simd_mode == SHOAL_MODE_AVX2) return count_breaks_avx2(p, n);
#endif
    return count_breaks_v16(p, n);
}
