/*
 * canon.c -- canonical bytes of scalar JSON values and their hash: what PSF
 * values are indexed, compared and hashed by (format in shoal.h).
 */
#include "shoal.h"
#include "internal.h"

#include <string.h>

/* ---- canonical values ------------------------------------------------------ */

/* Canonical exponents are clamped here: such values overflow or underflow any
 * double by far, and the int64 arithmetic stays safe for texts up to 2^62. */
#define CANON_EXP_CLAMP 1000000000000000LL

static int64_t canon_string(const uint8_t *t, size_t len, uint8_t *dst, size_t cap)
{
    if (len < 2 || t[0] != '"' || t[len - 1] != '"')
        return SHOAL_E_ARG;
    const uint8_t *p = t + 1, *end = t + len - 1;
    if (cap < 1)
        return SHOAL_E_SPACE;
    size_t o = 0;
    dst[o++] = 's';
    while (p < end) {
        const uint8_t *b = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((b ? b : end) - p);
        if (cap - o < run)
            return SHOAL_E_SPACE;
        memcpy(dst + o, p, run);
        o += run;
        p += run;
        if (!b)
            break;
        uint8_t u[4];
        int n = shoal_decode_escape(&p, end, u);
        if (n < 0)
            return SHOAL_E_ARG;
        if (cap - o < (size_t)n)
            return SHOAL_E_SPACE;
        memcpy(dst + o, u, (size_t)n);
        o += (size_t)n;
    }
    return (int64_t)o;
}

static int64_t canon_number(const uint8_t *t, size_t len, uint8_t *dst, size_t cap)
{
    const uint8_t *p = t, *end = t + len;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const uint8_t *ip = p;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && IS_DIGIT(*p)) {
        while (p < end && IS_DIGIT(*p))
            p++;
    } else {
        return SHOAL_E_ARG;
    }
    const uint8_t *ie = p, *fp = p, *fe = p;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && IS_DIGIT(*p))
            p++;
        fe = p;
        if (fe == fp)
            return SHOAL_E_ARG;
    }
    int64_t ex = 0;
    if (p < end && (*p | 0x20) == 'e' && !shoal_scan_exponent(&p, end, CANON_EXP_CLAMP, &ex))
        return SHOAL_E_ARG;
    if (p != end)
        return SHOAL_E_ARG;

    /* Significant digits run from the first to the last nonzero digit of the
     * int part followed by the fraction; the '.' may sit between them. */
    const uint8_t *first = NULL, *last = NULL;
    for (const uint8_t *q = ip; q < ie && !first; q++)
        if (*q != '0')
            first = q;
    for (const uint8_t *q = fp; q < fe && !first; q++)
        if (*q != '0')
            first = q;
    if (!first) {
        if (cap < 2)
            return SHOAL_E_SPACE;
        dst[0] = 'n';
        dst[1] = '0';
        return 2;
    }
    int64_t e10; /* power of ten of the last significant digit */
    for (const uint8_t *q = fe; q > fp && !last; q--)
        if (q[-1] != '0')
            last = q - 1;
    if (last) {
        e10 = ex - (int64_t)(last - fp + 1);
    } else {
        for (const uint8_t *q = ie; q > ip && !last; q--)
            if (q[-1] != '0')
                last = q - 1;
        e10 = ex + (int64_t)(ie - 1 - last);
    }
    if (e10 > CANON_EXP_CLAMP)
        e10 = CANON_EXP_CLAMP;
    if (e10 < -CANON_EXP_CLAMP)
        e10 = -CANON_EXP_CLAMP;

    char ebuf[24];
    int elen = 0;
    uint64_t mag = e10 < 0 ? (uint64_t)(-e10) : (uint64_t)e10;
    do {
        ebuf[elen++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (e10 < 0)
        ebuf[elen++] = '-';

    size_t ndigits = (size_t)(last - first + 1) - (first < ie && last >= fp && fp != ie ? 1 : 0);
    size_t need = 1 + (size_t)neg + ndigits + 1 + (size_t)elen;
    if (cap < need)
        return SHOAL_E_SPACE;
    size_t o = 0;
    dst[o++] = 'n';
    if (neg)
        dst[o++] = '-';
    for (const uint8_t *q = first; q <= last; q++)
        if (*q != '.')
            dst[o++] = *q;
    dst[o++] = 'e';
    while (elen)
        dst[o++] = (uint8_t)ebuf[--elen];
    return (int64_t)o;
}

int64_t shoal_canon(const char *text, size_t len, uint8_t type, char *dst, size_t cap)
{
    uint8_t c;
    if ((!text && len) || (!dst && cap))
        return SHOAL_E_ARG;
    switch (type) {
    case SHOAL_T_STRING:
        return canon_string((const uint8_t *)text, len, (uint8_t *)dst, cap);
    case SHOAL_T_NUMBER:
        return canon_number((const uint8_t *)text, len, (uint8_t *)dst, cap);
    case SHOAL_T_TRUE: c = 't'; break;
    case SHOAL_T_FALSE: c = 'f'; break;
    case SHOAL_T_NULL: c = 'z'; break;
    default:
        return SHOAL_E_ARG; /* MISSING, arrays and objects have no canonical bytes */
    }
    if (cap < 1)
        return SHOAL_E_SPACE;
    dst[0] = (char)c;
    return 1;
}

/* ---- hash ------------------------------------------------------------------- */

/* Multiply-xorshift over 8-byte little-endian words, seeded with a bijective
 * mix of (psf_id, len) and finished with a full-avalanche mix, so every output
 * bit depends on every input bit (the index takes bucket and tag from bits
 * 16..63). Constants: odd, "nothing up my sleeve" fractional parts of sqrt(3),
 * sqrt(5) and sqrt(7). The result is stored in logs and index dumps: it must
 * never change. */
#define HASH_M1 0xBB67AE8584CAA73Bull
#define HASH_M2 0x3C6EF372FE94F82Bull
#define HASH_M3 0xA54FF53A5F1D36F1ull

static ALWAYS_INLINE uint64_t hash_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= HASH_M2;
    h ^= h >> 29;
    h *= HASH_M3;
    h ^= h >> 32;
    return h;
}

uint64_t shoal_hash(uint32_t psf_id, const char *canon, size_t len)
{
    const uint8_t *p = (const uint8_t *)canon;
    uint64_t h = hash_mix((((uint64_t)psf_id << 32) | (uint32_t)len) ^ ((uint64_t)len >> 32) ^ HASH_M1);
    for (; len >= 8; p += 8, len -= 8) {
        h = (h ^ load64le(p)) * HASH_M1;
        h ^= h >> 29;
    }
    if (len) {
        /* the tail's bytes, zero-padded to a word: one load from the end of a
         * value of 8 bytes or more, bytes one at a time below that */
        uint64_t w = 0;
        if (p > (const uint8_t *)canon) {
            w = load64le(p + len - 8) >> (8 * (8 - len));
        } else {
            for (size_t i = 0; i < len; i++)
                w |= (uint64_t)p[i] << (8 * i);
        }
        h = (h ^ w) * HASH_M1;
        h ^= h >> 29;
    }
    return hash_mix(h);
}
