/*
 * framing.c -- find record boundaries in input chunks: NDJSON lines and the
 * elements of a top-level array. Structure only; shoal_parse validates.
 */
#include "shoal.h"
#include "internal.h"

#include <string.h>

/* Bytes the array framer must look at outside strings. */
static const uint8_t k_frame_stop[256] = {
    ['"'] = 1, ['['] = 1, [']'] = 1, ['{'] = 1, ['}'] = 1, [','] = 1};

/* ---- framing: NDJSON -------------------------------------------------------- */

int shoal_ndjson_next(const uint8_t *s, size_t len, int final, size_t *pos, uint64_t *line,
                      shoal_span *out)
{
    size_t p = *pos;
    uint64_t ln = *line;
    while (p < len) {
        const uint8_t *nl = memchr(s + p, '\n', len - p);
        size_t eol;
        if (nl)
            eol = (size_t)(nl - s);
        else if (final)
            eol = len;
        else
            break; /* partial last line: wait for its '\n' */
        size_t a = p, b = eol;
        while (a < b && k_ws[s[a]])
            a++;
        while (b > a && k_ws[s[b - 1]])
            b--;
        p = nl ? eol + 1 : len;
        if (a < b) {
            out->start = a;
            out->len = b - a;
            out->line = ln;
            out->status = SHOAL_OK;
            out->reserved = 0;
            *pos = p;
            *line = ln + 1;
            return 1;
        }
        ln++;
    }
    *pos = p;
    *line = ln;
    return 0;
}

/* Resuming: the caller keeps buf[*consumed, len) and prepends it to the next
 * chunk, and the next call's first_line is first_line plus the number of '\n'
 * in buf[0, *consumed). *consumed always lies right after a '\n', at 0, or at
 * len, so that count is the line number of the next unconsumed byte. */
int shoal_frame_ndjson(const char *buf, size_t len, int final, uint64_t first_line,
                       shoal_span *out, size_t cap, size_t *n_out, size_t *consumed)
{
    if (!n_out || !consumed || (!buf && len) || (!out && cap))
        return SHOAL_E_ARG;
    const uint8_t *s = (const uint8_t *)buf;
    size_t pos = 0, n = 0;
    uint64_t line = first_line;
    int rc = SHOAL_OK;
    for (;;) {
        size_t before = pos;
        shoal_span sp;
        if (!shoal_ndjson_next(s, len, final, &pos, &line, &sp))
            break;
        if (n == cap) {
            /* leave the line to the next call, but not the blank lines before
             * it: back from its text to the '\n' that starts it */
            pos = (size_t)sp.start;
            while (pos > before && s[pos - 1] != '\n')
                pos--;
            line = sp.line;
            rc = SHOAL_OUT_FULL;
            break;
        }
        out[n++] = sp;
    }
    *n_out = n;
    *consumed = pos;
    return rc;
}

/* ---- framing: top-level array ------------------------------------------------ */

/* p just after an opening quote: the closing quote, or end. Escapes skip
 * the next byte; nothing else is checked (shoal_parse does that). */
static const uint8_t *skip_string_struct(const uint8_t *p, const uint8_t *end)
{
    for (;;) {
#if SHOAL_X86
        if (shoal_simd_mode != SHOAL_MODE_PORTABLE) {
            const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
            while (end - p >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)p);
                unsigned m = (unsigned)_mm_movemask_epi8(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
                if (m) {
                    p += __builtin_ctz(m);
                    break;
                }
                p += 16;
            }
        }
#endif
        while (p < end && *p != '"' && *p != '\\')
            p++;
        if (p >= end || *p == '"')
            return p;
        p += 2; /* backslash and the escaped byte */
        if (p >= end)
            return end;
    }
}

/* Scans one element from `p` (just after '[' or ','): returns the top-level
 * ',' or ']' that ends it, or end when the element is incomplete. */
static const uint8_t *scan_element(const uint8_t *p, const uint8_t *end)
{
    uint64_t depth = 0;
    for (; p < end; p++) {
        if (!k_frame_stop[*p])
            continue;
        switch (*p) {
        case '"':
            p = skip_string_struct(p + 1, end);
            if (p == end)
                return end;
            break;
        case '[': case '{':
            depth++;
            break;
        case ']':
            if (depth == 0)
                return p;
            depth--;
            break;
        case '}':
            if (depth) /* a stray '}' stays in the element for shoal_parse to reject */
                depth--;
            break;
        case ',':
            if (depth == 0)
                return p;
            break;
        }
    }
    return end;
}

static void put_span(shoal_span *sp, size_t start, size_t len, uint64_t line, int32_t status)
{
    sp->start = start;
    sp->len = len;
    sp->line = line;
    sp->status = status;
    sp->reserved = 0;
}

/* Phases follow shoal_array_state. An element is emitted together with the
 * ',' or ']' that ends it, so this framer never rests in phase 2 and resumes
 * from phase 1 by re-scanning an incomplete element from its start. In phase
 * 1, elements == 0 means "just after '['" (']' closes an empty array);
 * otherwise a ',' came last and an empty element is an error span. */
int shoal_frame_array(shoal_array_state *st, const char *buf, size_t len, int final,
                      shoal_span *out, size_t cap, size_t *n_out, size_t *consumed,
                      size_t *err_off)
{
    size_t scratch;
    if (!err_off)
        err_off = &scratch;
    *err_off = 0;
    if (!st || !n_out || !consumed || (!buf && len) || (!out && cap))
        return SHOAL_E_ARG;
    const uint8_t *s = (const uint8_t *)buf, *end = s + len, *p = s;
    size_t n = 0;
    int rc = SHOAL_OK;
    if (st->line == 0)
        st->line = 1;

    for (;;) {
        if (st->phase == 0) {
            while (p < end && k_ws[*p])
                p++;
            if (p == end) {
                if (final) {
                    *err_off = len;
                    goto failed;
                }
                break;
            }
            if (*p != '[') {
                *err_off = (size_t)(p - s);
                goto failed;
            }
            p++;
            st->phase = 1;
        } else if (st->phase == 1) {
            const uint8_t *d = scan_element(p, end), *a = p, *b = d;
            while (a < b && k_ws[*a])
                a++;
            while (b > a && k_ws[b[-1]])
                b--;
            if (d == end) {
                if (!final)
                    break;
                if (a < b) { /* the unterminated array's last element */
                    if (n == cap) {
                        rc = SHOAL_OUT_FULL;
                        break;
                    }
                    put_span(&out[n++], (size_t)(a - s), (size_t)(b - a), ++st->elements,
                             SHOAL_E_FRAMING);
                }
                p = end;
                *err_off = len;
                goto failed;
            }
            if (a == b && *d == ']' && st->elements == 0) {
                p = d + 1; /* [] */
                st->phase = 3;
                continue;
            }
            if (n == cap) {
                rc = SHOAL_OUT_FULL;
                break;
            }
            if (a == b)
                put_span(&out[n++], (size_t)(d - s), 0, ++st->elements, SHOAL_E_SYNTAX);
            else
                put_span(&out[n++], (size_t)(a - s), (size_t)(b - a), ++st->elements, SHOAL_OK);
            p = d + 1;
            if (*d == ']')
                st->phase = 3;
        } else if (st->phase == 3) {
            while (p < end && k_ws[*p])
                p++;
            if (p < end) {
                *err_off = (size_t)(p - s);
                goto failed;
            }
            break;
        } else {
            p = end;
            goto failed;
        }
    }
    goto out;
failed:
    st->phase = 4;
    rc = SHOAL_E_FRAMING;
    p = end;
out:
    for (const uint8_t *q = s; (q = memchr(q, '\n', (size_t)(p - q))) != NULL; q++)
        st->line++;
    *n_out = n;
    *consumed = (size_t)(p - s);
    return rc;
}
