/*
 * crc.c -- CRC32C (Castagnoli): the per-record checksum. SSE4.2 crc32 in
 * three interleaved lanes where the CPU has it, slicing-by-8 tables
 * otherwise (and under SHOAL_NATIVE_PORTABLE=1).
 */
#include "shoal.h"
#include "internal.h"

#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reflected */

/* Written once by the load-time constructor, read-only afterwards. */
static int g_crc_hw __attribute__((unused)) = 0;
static uint32_t g_crc_table[8][256];
/* g_crc_shift[k][j][b]: the CRC register (b << 8j) advanced over (k + 1) *
 * CRC_LANE zero bytes. CRC is linear, so a register value is advanced over
 * zeros by XORing four lookups: that is how three lanes computed in parallel
 * are joined back into one CRC. */
#define CRC_LANE 256
static uint32_t g_crc_shift[2][4][256];
static void crc_shift_init(void);

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
    crc_shift_init();
#if SHOAL_X86
    __builtin_cpu_init();
    g_crc_hw = !shoal_portable_requested() && __builtin_cpu_supports("sse4.2");
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

static void crc_shift_init(void)
{
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++)
            for (uint32_t b = 0; b < 256; b++) {
                uint32_t c = b << (8 * j);
                for (int z = 0; z < (k + 1) * CRC_LANE; z++)
                    c = g_crc_table[0][c & 0xff] ^ (c >> 8);
                g_crc_shift[k][j][b] = c;
            }
}

static inline uint32_t crc_shift(int k, uint32_t c)
{
    return g_crc_shift[k][0][c & 0xff] ^ g_crc_shift[k][1][(c >> 8) & 0xff] ^
           g_crc_shift[k][2][(c >> 16) & 0xff] ^ g_crc_shift[k][3][c >> 24];
}

#if SHOAL_X86 && defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    /* crc32 has a 3-cycle latency and 1-cycle throughput: run three
     * independent lanes and join them (see g_crc_shift). */
    for (; n >= 3 * CRC_LANE; p += 3 * CRC_LANE, n -= 3 * CRC_LANE) {
        uint64_t a = c64, b = 0, d = 0;
        for (size_t i = 0; i < CRC_LANE; i += 8) {
            a = _mm_crc32_u64(a, load64le(p + i));
            b = _mm_crc32_u64(b, load64le(p + CRC_LANE + i));
            d = _mm_crc32_u64(d, load64le(p + 2 * CRC_LANE + i));
        }
        c64 = crc_shift(1, (uint32_t)a) ^ crc_shift(0, (uint32_t)b) ^ (uint32_t)d;
    }
    for (; n >= 32; p += 32, n -= 32) {
        c64 = _mm_crc32_u64(c64, load64le(p));
        c64 = _mm_crc32_u64(c64, load64le(p + 8));
        c64 = _mm_crc32_u64(c64, load64le(p + 16));
        c64 = _mm_crc32_u64(c64, load64le(p + 24));
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
