/*
 * json.c -- the ingest hot path over raw JSON bytes: one-pass validation with
 * field extraction (shoal_parse), canonical scalar values and their hash,
 * CRC32C, and record framing for NDJSON and for a top-level array.
 *
 * Acceptance policy: shoal_parse accepts exactly what orjson.loads accepts,
 * because every stored record must load later. That settles JSONTestSuite's
 * implementation-defined cases: integers of any size are accepted (orjson
 * makes them floats); a number whose decimal value rounds to +-infinity as a
 * double is rejected (SHOAL_E_NUMBER), underflow to 0 is accepted; invalid
 * UTF-8 (overlongs, UTF-8-encoded surrogates, > U+10FFFF, truncated), lone or
 * reversed surrogate escapes, a BOM and UTF-16 input are rejected; nesting up
 * to SHOAL_MAX_DEPTH containers is accepted.
 *
 * SIMD: every x86-64 CPU has SSE2, so string scanning uses it inline; runs of
 * plain text longer than 32 bytes continue with AVX2 where the CPU has it, and
 * CRC32C uses the SSE4.2 instruction. Other CPUs use word-at-a-time and
 * table-driven code with the same results. SHOAL_NATIVE_PORTABLE=1 in the
 * environment when the library loads forces that portable code on x86 too,
 * so tests can cover it.
 */
#include "shoal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#define SHOAL_X86 1
#include <immintrin.h>
#else
#define SHOAL_X86 0
#endif

#define NO_NODE UINT32_MAX
#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- character classes -------------------------------------------------- */

static const uint8_t k_ws[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

/* Bytes that end a run of plain string text: '"', '\\', controls, non-ASCII. */
static const uint8_t k_str_stop[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 1};

/* Hex digit value + 1; 0 for a byte that is not a hex digit. */
static const uint8_t k_hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16};

/* Bytes the array framer must look at outside strings. */
static const uint8_t k_frame_stop[256] = {
    ['"'] = 1, ['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1, [','] = 1};

static ALWAYS_INLINE uint64_t load64le(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* ---- runtime dispatch ----------------------------------------------------- */

enum { MODE_PORTABLE = 0, MODE_SSE2 = 1, MODE_AVX2 = 2 };

/* Written once by the load-time constructor, read-only afterwards. */
static int g_mode = MODE_PORTABLE;
static int g_crc_hw = 0;
static uint32_t g_crc_table[8][256];

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reflected */

__attribute__((constructor)) static void json_init(void)
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

    const char *env = getenv("SHOAL_NATIVE_PORTABLE");
    int portable = env && env[0] && strcmp(env, "0") != 0;
#if SHOAL_X86
    __builtin_cpu_init();
    if (!portable) {
        g_mode = __builtin_cpu_supports("avx2") ? MODE_AVX2 : MODE_SSE2;
        g_crc_hw = __builtin_cpu_supports("sse4.2");
    }
#else
    (void)portable;
#endif
}

/* ---- string scanning ------------------------------------------------------ */

typedef struct {
    int code;
    const uint8_t *at;
} parse_error;

#if SHOAL_X86
/* Skips plain string text 32 bytes at a time; stops at the first byte that
 * needs a look (see k_str_stop) or when fewer than 32 bytes remain. Called
 * only after 32 plain bytes, so the call cost is spread over long strings. */
__attribute__((target("avx2"), noinline)) static const uint8_t *
skip_plain_avx2(const uint8_t *p, const uint8_t *end)
{
    const __m256i quote = _mm256_set1_epi8('"');
    const __m256i bslash = _mm256_set1_epi8('\\');
    const __m256i space = _mm256_set1_epi8(' ');
    while (end - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        /* signed v < ' ' holds for controls and for every byte >= 0x80 */
        __m256i hit = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, bslash)),
            _mm256_cmpgt_epi8(space, v));
        unsigned m = (unsigned)_mm256_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz(m);
        p += 32;
    }
    return p;
}
#endif

static ALWAYS_INLINE int hex4(const uint8_t *p)
{
    unsigned a = k_hex1[p[0]], b = k_hex1[p[1]], c = k_hex1[p[2]], d = k_hex1[p[3]];
    if (!a || !b || !c || !d)
        return -1;
    return (int)(((a - 1) << 12) | ((b - 1) << 8) | ((c - 1) << 4) | (d - 1));
}

/* p at a backslash inside a string: returns the byte after the escape. */
static const uint8_t *scan_escape(const uint8_t *p, const uint8_t *end, parse_error *e)
{
    if (end - p < 2)
        goto truncated;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default:
        e->code = SHOAL_E_SYNTAX;
        e->at = p + 1;
        return NULL;
    }
    if (end - p < 6)
        goto truncated;
    int u = hex4(p + 2);
    if (u < 0) {
        e->code = SHOAL_E_SYNTAX;
        e->at = p + 2;
        return NULL;
    }
    if (u < 0xD800 || u > 0xDFFF)
        return p + 6;
    if (u <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
        int lo = hex4(p + 8);
        if (lo >= 0xDC00 && lo <= 0xDFFF)
            return p + 12;
    }
    e->code = SHOAL_E_UTF8; /* lone, reversed or unpaired surrogate */
    e->at = p;
    return NULL;
truncated:
    e->code = SHOAL_E_SYNTAX;
    e->at = end;
    return NULL;
}

/* p at a byte >= 0x80: validates UTF-8 sequences (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) up to the next ASCII byte. */
static const uint8_t *scan_utf8(const uint8_t *p, const uint8_t *end, parse_error *e)
{
    do {
        uint8_t c = p[0], lo, hi;
        size_t avail = (size_t)(end - p);
        if (c < 0xC2) {
            goto bad; /* continuation byte, or overlong C0/C1 lead */
        } else if (c < 0xE0) {
            if (avail < 2 || (p[1] & 0xC0) != 0x80)
                goto bad;
            p += 2;
        } else if (c < 0xF0) {
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
            if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
                goto bad;
            p += 3;
        } else if (c < 0xF5) {
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
            if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
                (p[3] & 0xC0) != 0x80)
                goto bad;
            p += 4;
        } else {
            goto bad;
        }
    } while (p < end && *p >= 0x80);
    return p;
bad:
    e->code = SHOAL_E_UTF8;
    e->at = p;
    return NULL;
}

/* p just after an opening quote: returns the closing quote, or NULL with *e
 * set. Sets SHOAL_VF_ESCAPED in *flags when the text has a backslash. */
static ALWAYS_INLINE const uint8_t *
scan_string(const uint8_t *p, const uint8_t *end, uint8_t *flags, parse_error *e, const int mode)
{
    for (;;) {
#if SHOAL_X86
        if (mode != MODE_PORTABLE) {
            const __m128i quote = _mm_set1_epi8('"');
            const __m128i bslash = _mm_set1_epi8('\\');
            const __m128i space = _mm_set1_epi8(' ');
            int clean = 0;
            while (end - p >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)p);
                __m128i hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                    _mm_cmplt_epi8(v, space)); /* signed: controls and bytes >= 0x80 */
                unsigned m = (unsigned)_mm_movemask_epi8(hit);
                if (m) {
                    p += __builtin_ctz(m);
                    goto stop;
                }
                p += 16;
                if (mode == MODE_AVX2 && ++clean == 2 && end - p >= 64)
                    p = skip_plain_avx2(p, end);
            }
        } else
#endif
        {
            /* Word at a time: the lowest flagged byte of each test is exact. */
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            while (end - p >= 8) {
                uint64_t w = load64le(p);
                uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
                uint64_t t = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w;
                t &= highs;
                if (t) {
                    p += __builtin_ctzll(t) >> 3;
                    goto stop;
                }
                p += 8;
            }
        }
        while (p < end && !k_str_stop[*p])
            p++;
        if (p == end) {
            e->code = SHOAL_E_SYNTAX;
            e->at = end;
            return NULL;
        }
    stop:
        if (*p == '"')
            return p;
        if (*p == '\\') {
            *flags |= SHOAL_VF_ESCAPED;
            p = scan_escape(p, end, e);
        } else if (*p < 0x20) {
            e->code = SHOAL_E_CONTROL;
            e->at = p;
            return NULL;
        } else {
            p = scan_utf8(p, end, e);
        }
        if (!p)
            return NULL;
    }
}
