/*
 * json.c -- the ingest hot path over raw JSON bytes: one-pass validation with
 * field extraction (shoal_parse). Canonical values and their hash live in
 * canon.c, CRC32C in crc.c, record framing in framing.c.
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
 *
 * Why this file is long: it is one hot loop and what it inlines. The
 * string and number scanners are always-inline parts of parse_core, which is
 * specialised once per SIMD mode (portable, SSE2, AVX2), and the escape,
 * UTF-8 and trie steps it calls are static beside it; in other files they
 * would be calls the compiler cannot inline, per value. What other files
 * share (escape decoding, the exponent) is declared in internal.h.
 */
#include "shoal.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define NO_NODE UINT32_MAX

/* ---- character classes -------------------------------------------------- */

/* Bytes that end a run of plain string text: '"', '\\', controls, non-ASCII. */
static const uint8_t k_str_stop[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 1};

/* Hex digit value + 1; 0 for a byte that is not a hex digit. */
static const uint8_t k_hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16};


/* ---- runtime dispatch ----------------------------------------------------- */

/* Written once by the load-time constructor, read-only afterwards. */
int shoal_simd_mode = SHOAL_MODE_PORTABLE;

__attribute__((constructor)) static void json_init(void)
{
#if SHOAL_X86
    __builtin_cpu_init();
    if (!shoal_portable_requested())
        shoal_simd_mode = __builtin_cpu_supports("avx2") ? SHOAL_MODE_AVX2 : SHOAL_MODE_SSE2;
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
        if (mode != SHOAL_MODE_PORTABLE) {
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
                if (mode == SHOAL_MODE_AVX2 && ++clean == 2 && end - p >= 64)
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

/* ---- numbers -------------------------------------------------------------- */

/* 2^1024 - 2^970, the halfway point between DBL_MAX and 2^1024: the least
 * decimal value that rounds to infinity (ties go to even, and DBL_MAX's
 * mantissa is odd). As a digit string, value = 0.DIGITS x 10^309. */
static const char k_dbl_limit[] =
    "1797693134862315807937289714053034150799341327100378269361737789"
    "8044496829276475094664901797758720709633028641669288791094655554"
    "7851940402630657488671505820681908902000708383676273854845817711"
    "5317644757302700698555713669596228429148198608349364752927190741"
    "68444365510704342711559699508093042880177904174497792";

/* Exponents are accumulated only up to this bound: anything beyond it is far
 * outside double range either way, and the arithmetic below cannot overflow.
 * (canon.c bounds the same parser at 10^15: canonical bytes are stored and
 * hashed, and spell exponents exactly up to there.) */
#define EXP_CLAMP 1000000000LL

/* Whether the number with integer digits ip[0, nint), fraction digits
 * fp[0, nfrac) (fp NULL if none) and exponent ex rounds to infinity. */
static int number_overflows(const uint8_t *ip, size_t nint, const uint8_t *fp, size_t nfrac,
                            int64_t ex)
{
    const uint8_t *first, *last = fp ? fp + nfrac : ip + nint;
    int64_t mag; /* value = 0.d1d2... x 10^mag, d1 the first nonzero digit */
    if (ip[0] != '0') {
        first = ip;
        mag = (int64_t)nint + ex;
    } else {
        size_t k = 0;
        while (k < nfrac && fp[k] == '0')
            k++;
        if (k == nfrac)
            return 0; /* zero */
        first = fp + k;
        mag = ex - (int64_t)k;
    }
    if (mag <= 308)
        return 0;
    if (mag >= 310)
        return 1;
    for (size_t i = 0; i < sizeof k_dbl_limit - 1; i++, first++) {
        if (first < last && *first == '.')
            first++;
        if (first >= last)
            return 0; /* our remaining digits are 0; the limit's last one is not */
        if (*first != (uint8_t)k_dbl_limit[i])
            return *first > (uint8_t)k_dbl_limit[i];
    }
    return 1; /* equal to the limit on all its digits, so >= the limit */
}

/* p at '-' or a digit: returns the byte after the number, or NULL with *e set. */
static ALWAYS_INLINE const uint8_t *scan_number(const uint8_t *p, const uint8_t *end, parse_error *e)
{
    const uint8_t *start = p;
    if (*p == '-' && ++p == end)
        goto bad;
    const uint8_t *ip = p;
    if (*p == '0') {
        p++;
    } else if (IS_DIGIT(*p)) {
        p++;
        while (p < end && IS_DIGIT(*p))
            p++;
    } else {
        goto bad;
    }
    size_t nint = (size_t)(p - ip);
    const uint8_t *fp = NULL;
    size_t nfrac = 0;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && IS_DIGIT(*p))
            p++;
        nfrac = (size_t)(p - fp);
        if (!nfrac)
            goto bad;
    }
    int64_t ex = 0;
    if (p < end && (*p | 0x20) == 'e' && !shoal_scan_exponent(&p, end, EXP_CLAMP, &ex))
        goto bad;
    /* Quick bound: the value is below 10^(nint + ex) (10^ex for 0.xxx). */
    if ((ip[0] == '0' ? 0 : (int64_t)nint) + ex > 308 && number_overflows(ip, nint, fp, nfrac, ex)) {
        e->code = SHOAL_E_NUMBER;
        e->at = start;
        return NULL;
    }
    return p;
bad:
    e->code = SHOAL_E_SYNTAX;
    e->at = p;
    return NULL;
}

/* ---- unescaping ------------------------------------------------------------ */

static ALWAYS_INLINE int put_utf8(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* *pp at a backslash: writes the escape's UTF-8 bytes to out, advances *pp,
 * returns the byte count, or -1 for a malformed escape or lone surrogate. */
int shoal_decode_escape(const uint8_t **pp, const uint8_t *end, uint8_t out[4])
{
    const uint8_t *p = *pp;
    if (end - p < 2)
        return -1;
    uint8_t c;
    switch (p[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': {
        if (end - p < 6)
            return -1;
        int u = hex4(p + 2);
        if (u < 0)
            return -1;
        uint32_t cp = (uint32_t)u;
        p += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return -1;
        }
        *pp = p;
        return put_utf8(cp, out);
    }
    default:
        return -1;
    }
    out[0] = c;
    *pp = p + 2;
    return 1;
}

/* Whether the string text k[0, klen) (between the quotes, with escapes)
 * unescapes to exactly key[0, keylen). Streams: no buffer, any length. */
static int key_eq_escaped(const uint8_t *k, size_t klen, const uint8_t *key, size_t keylen)
{
    const uint8_t *p = k, *end = k + klen;
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            if (o == keylen || key[o] != *p)
                return 0;
            o++;
            p++;
            continue;
        }
        uint8_t u[4];
        int n = shoal_decode_escape(&p, end, u);
        if (n < 0 || keylen - o < (size_t)n || memcmp(key + o, u, (size_t)n) != 0)
            return 0;
        o += (size_t)n;
    }
    return o == keylen;
}

/* ---- trie --------------------------------------------------------------- */

/* Entering a node (again, for a duplicate key) forgets what its subtree found. */
static ALWAYS_INLINE uint32_t enter_node(const shoal_trie *t, shoal_slot *slots, uint32_t child)
{
    const shoal_trie_node *n = &t->nodes[child];
    if (n->slot_hi > n->slot_lo)
        memset(slots + n->slot_lo, 0, (n->slot_hi - n->slot_lo) * sizeof *slots);
    return child;
}

/* Child of `node` along object key k[0, klen) (raw text between the quotes). */
static uint32_t find_key(const shoal_trie *t, shoal_slot *slots, uint32_t node,
                         const uint8_t *k, size_t klen, int escaped)
{
    const shoal_trie_node *n = &t->nodes[node];
    const shoal_trie_edge *e = t->edges + n->first_edge, *ee = e + n->n_edges;
    const uint8_t *keys = (const uint8_t *)t->keys;
    if (!escaped) {
        for (; e < ee; e++)
            if (e->key_len == klen &&
                (klen == 0 || (keys[e->key_off] == k[0] && memcmp(keys + e->key_off, k, klen) == 0)))
                return enter_node(t, slots, e->child);
    } else {
        /* unescaped text is never longer than its escaped form */
        for (; e < ee; e++)
            if (e->key_len != SHOAL_EDGE_INDEX && e->key_len <= klen &&
                key_eq_escaped(k, klen, keys + e->key_off, e->key_len))
                return enter_node(t, slots, e->child);
    }
    return NO_NODE;
}

/* Child of `node` for array element number i. */
static uint32_t find_index(const shoal_trie *t, shoal_slot *slots, uint32_t node, uint32_t i)
{
    const shoal_trie_node *n = &t->nodes[node];
    const shoal_trie_edge *e = t->edges + n->first_edge, *ee = e + n->n_edges;
    for (; e < ee; e++)
        if (e->key_len == SHOAL_EDGE_INDEX && e->key_off == i)
            return enter_node(t, slots, e->child);
    return NO_NODE;
}

/* Bit (len % 32) set for every key edge of `node`: most keys of a tracked
 * object are then dismissed by their length without a lookup. */
static uint32_t key_len_mask(const shoal_trie *t, uint32_t node)
{
    const shoal_trie_node *n = &t->nodes[node];
    const shoal_trie_edge *e = t->edges + n->first_edge, *ee = e + n->n_edges;
    uint32_t mask = 0;
    for (; e < ee; e++)
        if (e->key_len != SHOAL_EDGE_INDEX)
            mask |= 1u << (e->key_len & 31);
    return mask;
}

/* ---- parser --------------------------------------------------------------- */

/* One open container. The explicit stack bounds native stack use at
 * SHOAL_MAX_DEPTH * 16 bytes, whatever the input's nesting. */
typedef struct {
    uint32_t node;   /* trie node of the container, NO_NODE if untracked */
    uint32_t start;  /* offset of its '[' or '{' */
    uint32_t index;  /* arrays: number of the current element; objects: key_len_mask() */
    uint32_t is_obj;
} parse_frame;

/* The common case, a byte above ' ', costs no table load. */
#define SKIP_WS()                                      \
    do {                                               \
        if (p < end && *p <= ' ')                      \
            while (p < end && k_ws[*p])                \
                p++;                                   \
    } while (0)

/* Whether a node has children worth looking up: untracked subtrees cost one
 * predictable branch per value. */
#define HAS_EDGES(node) ((node) != NO_NODE && nodes[(node)].n_edges != 0)

static ALWAYS_INLINE int parse_core(const uint8_t *s, size_t len, const shoal_trie *trie,
                                    shoal_slot *slots, size_t *err_off, const int mode)
{
    const uint8_t *p = s, *end = s + len, *vstart;
    const shoal_trie_node *nodes = NULL;
    parse_frame stack[SHOAL_MAX_DEPTH];
    parse_frame *f;
    uint32_t depth = 0, cur = NO_NODE;
    uint8_t vtype, vflags;
    parse_error e;

    if (trie) {
        if (trie->n_slots)
            memset(slots, 0, trie->n_slots * sizeof *slots); /* SHOAL_T_MISSING */
        if (trie->n_nodes) {
            nodes = trie->nodes;
            cur = 0;
        }
    }
    SKIP_WS();
    if (p == end) {
        e.code = SHOAL_E_EMPTY;
        e.at = p;
        goto fail;
    }

value:
    if (p == end)
        goto eof;
    vstart = p;
    switch (*p) {
    case ' ': case '\t': case '\n': case '\r':
        p++;
        SKIP_WS();
        goto value;
    case '"':
        vflags = 0;
        p = scan_string(p + 1, end, &vflags, &e, mode);
        if (!p)
            goto fail;
        p++;
        if (p - vstart == 2)
            vflags |= SHOAL_VF_EMPTY;
        vtype = SHOAL_T_STRING;
        break;
    case '{':
    case '[':
        if (depth == SHOAL_MAX_DEPTH) {
            e.code = SHOAL_E_DEPTH;
            e.at = p;
            goto fail;
        }
        f = &stack[depth++];
        f->node = cur;
        f->start = (uint32_t)(p - s);
        f->is_obj = *p == '{';
        f->index = f->is_obj && HAS_EDGES(cur) ? key_len_mask(trie, cur) : 0;
        p++;
        SKIP_WS();
        if (p < end && *p == (f->is_obj ? '}' : ']')) {
            p++;
            depth--;
            vtype = f->is_obj ? SHOAL_T_OBJECT : SHOAL_T_ARRAY;
            vflags = SHOAL_VF_EMPTY;
            break;
        }
        if (f->is_obj)
            goto key;
        cur = HAS_EDGES(cur) ? find_index(trie, slots, cur, 0) : NO_NODE;
        goto value;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            goto unexpected;
        p += 4;
        vtype = SHOAL_T_TRUE;
        vflags = 0;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            goto unexpected;
        p += 5;
        vtype = SHOAL_T_FALSE;
        vflags = 0;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0)
            goto unexpected;
        p += 4;
        vtype = SHOAL_T_NULL;
        vflags = 0;
        break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        p = scan_number(p, end, &e);
        if (!p)
            goto fail;
        vtype = SHOAL_T_NUMBER;
        vflags = 0;
        break;
    default:
        goto unexpected;
    }

value_done:
    if (cur != NO_NODE && nodes[cur].slot >= 0) {
        shoal_slot *sl = &slots[nodes[cur].slot];
        sl->start = (uint32_t)(vstart - s);
        sl->len = (uint32_t)(p - vstart);
        sl->type = vtype;
        sl->flags = vflags;
        sl->reserved = 0;
    }
    if (depth == 0)
        goto done;
after_value:
    if (p == end)
        goto eof;
    f = &stack[depth - 1];
    if (*p == ',') {
        p++;
        if (f->is_obj)
            goto key;
        f->index++;
        cur = HAS_EDGES(f->node) ? find_index(trie, slots, f->node, f->index) : NO_NODE;
        goto value;
    }
    if (*p != (f->is_obj ? '}' : ']')) {
        if (!k_ws[*p])
            goto unexpected;
        p++;
        SKIP_WS();
        goto after_value;
    }
    p++;
    depth--;
    cur = f->node;
    vstart = s + f->start;
    vtype = f->is_obj ? SHOAL_T_OBJECT : SHOAL_T_ARRAY;
    vflags = 0;
    goto value_done;

key:
    if (p == end)
        goto eof;
    if (*p != '"') {
        if (!k_ws[*p])
            goto unexpected;
        p++;
        SKIP_WS();
        goto key;
    }
    {
        const uint8_t *k = p + 1;
        uint8_t kflags = 0;
        p = scan_string(k, end, &kflags, &e, mode);
        if (!p)
            goto fail;
        const uint8_t *kend = p++;
        if (p < end && *p == ':') {
            p++;
        } else {
            SKIP_WS();
            if (p == end)
                goto eof;
            if (*p != ':')
                goto unexpected;
            p++;
        }
        f = &stack[depth - 1];
        size_t klen = (size_t)(kend - k);
        /* an escaped key's length says nothing about its unescaped length */
        if ((f->index >> (klen & 31)) & 1 || (kflags && HAS_EDGES(f->node)))
            cur = find_key(trie, slots, f->node, k, klen, kflags);
        else
            cur = NO_NODE;
    }
    goto value;

done:
    SKIP_WS();
    if (p != end) {
        e.code = SHOAL_E_TRAILING;
        e.at = p;
        goto fail;
    }
    return SHOAL_OK;
eof:
    e.code = SHOAL_E_SYNTAX;
    e.at = end;
    goto fail;
unexpected:
    e.code = SHOAL_E_SYNTAX;
    e.at = p;
fail:
    *err_off = (size_t)(e.at - s);
    return e.code;
}

static int parse_portable(const uint8_t *s, size_t len, const shoal_trie *trie,
                          shoal_slot *slots, size_t *err_off)
{
    return parse_core(s, len, trie, slots, err_off, SHOAL_MODE_PORTABLE);
}

#if SHOAL_X86
static int parse_sse2(const uint8_t *s, size_t len, const shoal_trie *trie, shoal_slot *slots,
                      size_t *err_off)
{
    return parse_core(s, len, trie, slots, err_off, SHOAL_MODE_SSE2);
}

static int parse_avx2(const uint8_t *s, size_t len, const shoal_trie *trie, shoal_slot *slots,
                      size_t *err_off)
{
    return parse_core(s, len, trie, slots, err_off, SHOAL_MODE_AVX2);
}
#endif

int shoal_parse(const char *buf, size_t len, const shoal_trie *trie, shoal_slot *slots,
                size_t *err_off)
{
    size_t scratch;
    if (!err_off)
        err_off = &scratch;
    *err_off = 0;
    if ((!buf && len) || (trie && trie->n_slots && !slots) || (trie && trie->n_nodes && !trie->nodes))
        return SHOAL_E_ARG;
    if (len > UINT32_MAX)
        return SHOAL_E_TOO_LARGE;
    const uint8_t *s = (const uint8_t *)buf;
#if SHOAL_X86
    if (shoal_simd_mode == SHOAL_MODE_AVX2)
        return parse_avx2(s, len, trie, slots, err_off);
    if (shoal_simd_mode == SHOAL_MODE_SSE2)
        return parse_sse2(s, len, trie, slots, err_off);
#endif
    return parse_portable(s, len, trie, slots, err_off);
}
