/*
 * tally_list.c -- a PSF's values from the tally, largest count first (ties
 * in the order of their canonical bytes): as (count, length, bytes) items,
 * or as the JSON text [[value, count], ...] group_count answers with.
 * Readers only (tally.c says what they may rely on).
 */
#include "tally.h"

#include <stdio.h>

static int by_count_desc(const void *a, const void *b) {
    const entry_t *x = *(const entry_t *const *)a, *y = *(const entry_t *const *)b;
    int64_t cx = RLX(&x->count), cy = RLX(&y->count);
    if (cx != cy) return cx > cy ? -1 : 1;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* psf_id's entries, largest count first, at most limit (0: all): *out (to
 * free) and how many, or SHOAL_E_NOMEM. */
static int64_t pick_sorted(shoal_tally *t, uint32_t psf_id, uint64_t limit, entry_t ***out) {
    table_t *tb = ACQ(&t->table);
    uint64_t n = 0, room = 64;
    entry_t **pick = malloc(room * sizeof *pick);
    if (!pick) return SHOAL_E_NOMEM;
    for (uint64_t i = 0; i <= tb->mask; i++) {
        entry_t *e = &tb->e[i];
        if (!ACQ(&e->hash) || RLX(&e->psf_id) != psf_id || RLX(&e->count) <= 0) continue;
        if (n == room) {
            entry_t **m = realloc(pick, room * 2 * sizeof *pick);
            if (!m) { free(pick); return SHOAL_E_NOMEM; }
            pick = m;
            room *= 2;
        }
        pick[n++] = e;
    }
    qsort(pick, n, sizeof *pick, by_count_desc);
    if (limit && n > limit) n = limit;
    *out = pick;
    return (int64_t)n;
}

int64_t shoal_tally_list(shoal_tally *t, uint32_t psf_id, uint64_t limit, char *dst, uint64_t cap,
                         uint64_t *need) {
    entry_t **pick;
    int64_t n = pick_sorted(t, psf_id, limit, &pick);
    if (n < 0) return n;
    uint64_t bytes = 0;
    for (int64_t i = 0; i < n; i++) bytes += 12 + pick[i]->len;
    *need = bytes;
    if (bytes > cap) { free(pick); return SHOAL_E_SPACE; }
    /* Each item: int64 count, uint32 length, the value's canonical bytes. */
    char *p = dst;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = RLX(&pick[i]->count);
        memcpy(p, &c, 8);
        memcpy(p + 8, &pick[i]->len, 4);
        memcpy(p + 12, pick[i]->bytes, pick[i]->len);
        p += 12 + pick[i]->len;
    }
    free(pick);
    return (int64_t)n;
}

/* Canonical bytes as JSON text at p (room checked by the caller: at most
 * json_bytes(len)): strings escaped, numbers as integers when their
 * exponent is >= 0 and they have at most 300 digits (as psf/values.py's
 * decode gives them), else in exponent form; t as true. */
static uint64_t json_bytes(uint32_t len) { return (uint64_t)len * 6 + 310; }

static char *put_json(char *p, const char *c, uint32_t len) {
    static const char hex[] = "0123456789abcdef";
    if (len && c[0] == 's') {
        *p++ = '"';
        for (uint32_t i = 1; i < len; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (ch == '"' || ch == '\\') { *p++ = '\\'; *p++ = (char)ch; }
            else if (ch < 0x20) { memcpy(p, "\\u00", 4); p[4] = hex[ch >> 4]; p[5] = hex[ch & 15]; p += 6; }
            else *p++ = (char)ch;
        }
        *p++ = '"';
    } else if (len && c[0] == 'n') {
        const char *e = memchr(c, 'e', len);
        if (!e) { memcpy(p, c + 1, len - 1); return p + len - 1; } /* "n0" */
        /* The exponent ends where the value does: the bytes are not
         * NUL-terminated (strtol would read on into the arena). */
        long exp = 0;
        int neg = 0;
        const char *q = e + 1, *end = c + len;
        if (q < end && *q == '-') { neg = 1; q++; }
        for (; q < end && *q >= '0' && *q <= '9' && exp < 100000; q++) exp = exp * 10 + (*q - '0');
        if (neg) exp = -exp;
        uint32_t digits = (uint32_t)(e - c - 1);
        if (exp >= 0 && digits + exp <= 300) {
            memcpy(p, c + 1, digits);
            p += digits;
            memset(p, '0', (size_t)exp);
            p += exp;
        } else {
            memcpy(p, c + 1, len - 1);
            p += len - 1;
        }
    } else {
        memcpy(p, "true", 4);
        p += 4;
    }
    return p;
}

/* Whether canonical bytes are an integer of more than 18 digits: as JSON
 * text orjson reads one as a float, so such a list is left to Python. */
static int big_integer(const char *c, uint32_t len) {
    if (!len || c[0] != 'n') return 0;
    const char *e = memchr(c, 'e', len);
    if (!e || e + 1 >= c + len || e[1] == '-') return 0;
    long exp = 0;
    for (const char *q = e + 1; q < c + len && exp < 100000; q++) exp = exp * 10 + (*q - '0');
    long digits = (long)(e - c - 1) - (c[1] == '-');
    return digits + exp > 18;
}

int64_t shoal_tally_list_json(shoal_tally *t, uint32_t psf_id, uint64_t limit, uint64_t since_at_most, char *dst,
                              uint64_t cap, uint64_t *need) {
    if (psf_id >= N_PSFS) return -1;
    shoal_tally_psf *ps = &t->psfs[psf_id];
    if (!RLX(&ps->used) || RLX(&ps->since) > since_at_most || RLX(&ps->overflow)) return -1;
    entry_t **pick;
    int64_t n = pick_sorted(t, psf_id, limit, &pick);
    if (n < 0) return n;
    for (int64_t i = 0; i < n; i++) {
        if (big_integer(pick[i]->bytes, pick[i]->len)) { /* JSON readers take it for a float */
            free(pick);
            return -1;
        }
    }
    uint64_t bound = 2;
    for (int64_t i = 0; i < n; i++) bound += json_bytes(pick[i]->len) + 26;
    *need = bound;
    if (bound > cap) { free(pick); return SHOAL_E_SPACE; }
    /* [[value, count], ...] */
    char *p = dst;
    *p++ = '[';
    for (int64_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        *p++ = '[';
        p = put_json(p, pick[i]->bytes, pick[i]->len);
        p += sprintf(p, ",%lld]", (long long)RLX(&pick[i]->count));
    }
    *p++ = ']';
    free(pick);
    *need = (uint64_t)(p - dst);
    return (int64_t)n;
}
