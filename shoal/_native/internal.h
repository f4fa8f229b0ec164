/* internal.h -- functions shared between shoal's C files that are not part of
 * the Python ABI (shoal.h). The hybrid log's own (reads, maps, chains) are in
 * hlog.h; the record layout is record.h's. */
#ifndef SHOAL_INTERNAL_H
#define SHOAL_INTERNAL_H
#include "shoal.h"

/* Every function and variable shared between the C files but not in shoal.h
 * is hidden: not exported from the library, and called directly rather than
 * through the PLT (what a static function in the same file would cost). */
#define SHOAL_INTERNAL __attribute__((visibility("hidden")))

/* Chain head for `hash`, for the single writer only: it owns the table
 * pointer, so it skips the reader registration shoal_index_lookup does. */
SHOAL_INTERNAL uint64_t shoal_index_lookup_writer(shoal_index *index, uint64_t hash);
/* Ask for the bucket (and its side) a writer's lookup of hash reads first. */
SHOAL_INTERNAL void shoal_index_prefetch(shoal_index *index, uint64_t hash);

/* A time of at least this magnitude is in milliseconds, else in seconds
 * (bucket.c; engine/retention.py's _MS_THRESHOLD says the same). */
#define SHOAL_MS_THRESHOLD 1e11

/* Writer: start loading the slot where (hash)'s entry is looked up first,
 * so the ingest's tally add, a record's steps later, finds it in cache. */
SHOAL_INTERNAL void shoal_tally_prefetch(shoal_tally *t, uint64_t hash);

/* Ingest looks a value's tally entry up while it prepares (any thread, no
 * lock) and adds to it at commit (writer) without a second probe when the
 * table has not changed since (tally.c). */
SHOAL_INTERNAL const void *shoal_tally_table(shoal_tally *t);
SHOAL_INTERNAL void *shoal_tally_hint(const void *table, uint32_t psf_id, uint64_t hash, const char *canon,
                                      uint32_t len);
SHOAL_INTERNAL int shoal_tally_add_hinted(shoal_tally *t, const void *table, void *hint, uint32_t psf_id,
                                          uint64_t hash, const char *canon, uint32_t len, uint64_t address);

/* Any thread: whether the tally holds (psf_id, canon), and then its samples
 * (*n_samples of them, rising in address; see SHOAL_TALLY_SAMPLE_EVERY). */
SHOAL_INTERNAL int shoal_tally_find(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                                    const shoal_tally_sample **samples, uint32_t *n_samples);

/* The first of n samples whose key pointer lies at or above addr (n: none). */
static inline uint32_t shoal_sample_at_or_above(const shoal_tally_sample *s, uint32_t n, uint64_t addr) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (s[m].kp < addr) lo = m + 1;
        else hi = m;
    }
    return lo;
}

/* The next non-blank NDJSON line of s[*pos, len), its surrounding whitespace
 * trimmed: fills *out (line number *line) and returns 1, advancing *pos past
 * its '\n' and *line past the lines it passed. Returns 0 at the end of s, or
 * (unless final) at a last line that has no '\n' yet: *pos then rests at that
 * line's start, after any blank lines, and *line is that line's number. */
SHOAL_INTERNAL int shoal_ndjson_next(const uint8_t *s, size_t len, int final, size_t *pos,
                                     uint64_t *line, shoal_span *out);

/* ---- shared by the JSON files (json.c, canon.c, crc.c, framing.c) ---- */
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#define SHOAL_X86 1
#include <immintrin.h>
#else
#define SHOAL_X86 0
#endif

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)
#define ALWAYS_INLINE inline __attribute__((always_inline))

static const uint8_t k_ws[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

static ALWAYS_INLINE uint64_t load64le(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* SHOAL_NATIVE_PORTABLE=1 when the library loads forces the portable code
 * paths (no SIMD, table CRC) so tests can cover them. */
static inline int shoal_portable_requested(void)
{
    const char *env = getenv("SHOAL_NATIVE_PORTABLE");
    return env && env[0] && strcmp(env, "0") != 0;
}

enum { SHOAL_MODE_PORTABLE = 0, SHOAL_MODE_SSE2 = 1, SHOAL_MODE_AVX2 = 2 };
/* Which SIMD the CPU allows; set once by json.c's load-time constructor. */
extern int shoal_simd_mode SHOAL_INTERNAL;

/* Decodes the escape at *pp (a backslash) into UTF-8 in out; returns the
 * byte count and advances *pp, or -1 for an invalid escape. */
SHOAL_INTERNAL int shoal_decode_escape(const uint8_t **pp, const uint8_t *end, uint8_t out[4]);

/* The exponent of a JSON number, for the validator (json.c) and the
 * canonical form (canon.c) alike: *pp at the 'e' or 'E'. Grammar:
 * [eE] [+-]? digit+. Digits are accumulated only while the magnitude is below
 * `clamp` (so it ends below 10 * clamp + 10): past that the value is far
 * outside any range either caller distinguishes, and int64 arithmetic on it
 * cannot overflow. Returns 1 with *ex set and *pp after the last digit, or 0
 * (no digit) with *pp where a digit was expected. Inline: json.c's number
 * scanner is on the parse's hot path. */
static ALWAYS_INLINE int shoal_scan_exponent(const uint8_t **pp, const uint8_t *end, int64_t clamp, int64_t *ex)
{
    const uint8_t *p = *pp;
    int neg = 0;
    int64_t v = 0;
    if (++p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p == end || !IS_DIGIT(*p)) {
        *pp = p;
        return 0;
    }
    do {
        if (v < clamp)
            v = v * 10 + (*p - '0');
        p++;
    } while (p < end && IS_DIGIT(*p));
    *ex = neg ? -v : v;
    *pp = p;
    return 1;
}

#endif
