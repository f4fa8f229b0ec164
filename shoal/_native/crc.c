/*
 * crc.c -- CRC32C (Castagnoli): the per-record checksum. Where the CPU has
 * SSE4.2 and PCLMULQDQ: the crc32 instruction in three interleaved lanes cut
 * to the buffer's length, joined by carry-less multiplies. Slicing-by-8
 * tables otherwise (and under SHOAL_NATIVE_PORTABLE=1).
 */
#include "shoal.h"
#include "internal.h"

#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reflected */

/* Written once by the load-time constructor, read-only afterwards. */
static uint32_t g_crc_table[8][256];
#if SHOAL_X86 && defined(__x86_64__)
static int g_crc_hw = 0;
static void crc_k_init(void);
#endif

__attribute__((constructor)) static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        g_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_crc_table[t][i] = (g_crc_table[t - 1][i] >> 8) ^ g_crc_table[0][g_crc_table[t - 1][i] & 0xff];
#if SHOAL_X86 && defined(__x86_64__)
    __builtin_cpu_init();
    crc_k_init();
    g_crc_hw = !shoal_portable_requested() && __builtin_cpu_supports("sse4.2") &&
               __builtin_cpu_supports("pclmul");
#endif
}

/* ---- CRC32C --------------------------------------------------------------- */

static uint32_t crc32c_table(uint32_t c, const uint8_t *p, size_t n)
{
    for (; n && ((uintptr_t)p & 7); n--)
        c = g_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    for (; n >= 8; p += 8, n -= 8) { /* slicing by 8 */
        uint64_t w = load64le(p) ^ c;
        c = g_crc_table[7][w & 0xff] ^ g_crc_table[6][(w >> 8) & 0xff] ^
            g_crc_table[5][(w >> 16) & 0xff] ^ g_crc_table[4][(w >> 24) & 0xff] ^
            g_crc_table[3][(w >> 32) & 0xff] ^ g_crc_table[2][(w >> 40) & 0xff] ^
            g_crc_table[1][(w >> 48) & 0xff] ^ g_crc_table[0][w >> 56];
    }
    for (; n; n--)
        c = g_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if SHOAL_X86 && defined(__x86_64__)
/* g_crc_k[j] = x^(64j - 33) mod P, reflected. For a register value a, the
 * carry-less product a * g_crc_k[j] fed to crc32 as 64 data bits gives
 * a * x^(64j) mod P: a advanced over 8j zero bytes. That joins lanes of any
 * length with two multiplies. */
#define CRC_MAX_J 512 /* lanes of up to 4 KiB */
static uint64_t g_crc_k[2 * CRC_MAX_J + 1];

static void crc_k_init(void)
{
    uint32_t v = 0x80000000u; /* x^0 */
    for (int i = 0; i < 31; i++) /* x^31 */
        v = (v & 1) ? (v >> 1) ^ CRC32C_POLY : v >> 1;
    for (int j = 1; j <= 2 * CRC_MAX_J; j++) {
        /* x^(64j - 33): 33 steps to the first, then 64 each */
        for (int i = 0; i < (j == 1 ? 0 : 64); i++)
            v = (v & 1) ? (v >> 1) ^ CRC32C_POLY : v >> 1;
        g_crc_k[j] = v;
    }
}

__attribute__((target("sse4.2,pclmul"))) static inline uint64_t crc_advance2(uint64_t a, uint64_t ka,
                                                                               uint64_t b, uint64_t kb)
{
    __m128i pa = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)a), _mm_cvtsi64_si128((long long)ka), 0);
    __m128i pb = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)b), _mm_cvtsi64_si128((long long)kb), 0);
    return _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(_mm_xor_si128(pa, pb)));
}

__attribute__((target("sse4.2,pclmul"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    /* crc32 has a 3-cycle latency and 1-cycle throughput: cut what is left
     * into three equal lanes of 8j bytes, run them side by side and join
     * them (see g_crc_k). A 1 KB record is one pass. */
    while (n >= 96) {
        size_t j = n / 24;
        if (j > CRC_MAX_J)
            j = CRC_MAX_J;
        const size_t lane = 8 * j;
        uint64_t a = c64, b = 0, d = 0;
        for (size_t i = 0; i < lane; i += 8) {
            a = _mm_crc32_u64(a, load64le(p + i));
            b = _mm_crc32_u64(b, load64le(p + lane + i));
            d = _mm_crc32_u64(d, load64le(p + 2 * lane + i));
        }
        c64 = crc_advance2(a, g_crc_k[2 * j], b, g_crc_k[j]) ^ d;
        p += 3 * lane;
        n -= 3 * lane;
    }
    for (; n >= 8; p += 8, n -= 8)
        c64 = _mm_crc32_u64(c64, load64le(p));
    c = (uint32_t)c64;
    for (; n; n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}

#define HAVE_CRC32C_HW 1
#endif

/* A record's CRC runs over its head (header, key pointers, values) and then
 * its text; the head is known only under the writer lock (its chain links),
 * the text long before. So the text's share is computed first, outside the
 * lock, from a zero register over its whole 8-byte words after the first
 * len % 8 bytes (shoal_crc32c_part), and joined to the head's CRC later with
 * one multiply (shoal_crc32c_join): CRC is linear, and g_crc_k advances a
 * register over 8j zero bytes. Only with the hardware CRC and texts of at
 * most 8 KiB (g_crc_k's reach); otherwise part returns 0 and the join is
 * not used. */
int shoal_crc32c_part(const char *text, size_t len, uint32_t *part)
{
#ifdef HAVE_CRC32C_HW
    size_t words = len / 8;
    if (g_crc_hw && words <= 2 * CRC_MAX_J) {
        *part = words ? crc32c_hw(0, (const uint8_t *)text + (len & 7), 8 * words) : 0;
        return 1;
    }
#endif
    (void)text, (void)len, (void)part;
    return 0;
}

#ifdef HAVE_CRC32C_HW
__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_join_hw(uint32_t crc, const uint8_t *text, size_t len,
                                                                     uint32_t part)
{
    uint32_t reg = ~crc;
    size_t head = len & 7, words = len / 8;
    for (size_t i = 0; i < head; i++)
        reg = _mm_crc32_u8(reg, text[i]);
    if (words) {
        __m128i p = _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)reg), _mm_cvtsi64_si128((long long)g_crc_k[words]), 0);
        reg = (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(p)) ^ part;
    }
    return ~reg;
}
#endif

uint32_t shoal_crc32c_join(uint32_t crc, const char *text, size_t len, uint32_t part)
{
#ifdef HAVE_CRC32C_HW
    return crc_join_hw(crc, (const uint8_t *)text, len, part);
#else
    (void)part;
    return shoal_crc32c(crc, text, len);
#endif
}

uint32_t shoal_crc32c(uint32_t crc, const char *buf, size_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    if (!p)
        return crc;
#ifdef HAVE_CRC32C_HW
    if (g_crc_hw)
        return ~crc32c_hw(~crc, p, len);
#endif
    return ~crc32c_table(~crc, p, len);
}
