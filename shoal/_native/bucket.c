/*
 * bucket.c -- bucketed PSFs: the value a program indexes, transformed.
 *
 *   SHOAL_XF_BUCKET  a number x is indexed as the bucket floor(x / width)
 *   SHOAL_XF_TIME    a time is indexed as floor(seconds / width): a number
 *                    of epoch seconds, or of milliseconds when its magnitude
 *                    is at least SHOAL_MS_THRESHOLD, or an ISO-8601 string
 *                    (shoal_time_seconds)
 *
 * A range [lo, hi) of values is then the chains of a run of buckets: the
 * buckets wholly inside it answer without reading a record, the (at most two)
 * at its ends are read and their records' values compared exactly.
 *
 * Must stay true:
 *   - Ingest, scans and Python (which calls shoal_time_seconds and computes
 *     floor(x / width) in the same IEEE doubles) agree on every value's
 *     bucket: a record is a candidate of exactly the buckets its value
 *     falls in.
 *   - A value that is not a number (a time: not a number or a parseable
 *     string) has no bucket: it is not indexed, as a null is not. A number
 *     whose bucket number is 2^53 or more in magnitude (or infinite) goes to
 *     the edge bucket +-(2^53 - 1), so a range over it still finds it: an
 *     edge bucket is never taken as wholly inside a range (its records are
 *     compared).
 */
#include "shoal.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- ISO-8601 ---------------------------------------------------------------- */

static int digits(const char *s, size_t n, int *out) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : n[m - 1];
}

int shoal_time_seconds(const char *s, size_t len, double *out) {
    int y, mo, d, h = 0, mi = 0, sec = 0;
    double frac = 0;
    while (len && (s[len - 1] == ' ')) len--;
    while (len && s[0] == ' ') { s++; len--; }
    if (len < 10 || s[4] != '-' || s[7] != '-') return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d)) return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return 0;
    size_t i = 10;
    int offset = 0; /* seconds east of UTC */
    if (i < len) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return 0;
        i++;
        if (len - i < 5 || s[i + 2] != ':' || !digits(s + i, 2, &h) || !digits(s + i + 3, 2, &mi)) return 0;
        i += 5;
        if (i < len && s[i] == ':') {
            if (len - i < 3 || !digits(s + i + 1, 2, &sec)) return 0;
            i += 3;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                size_t j = ++i;
                double scale = 0.1;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                    frac += (s[i] - '0') * scale;
                    scale /= 10;
                    i++;
                }
                if (i == j) return 0;
            }
        }
        if (h > 23 || mi > 59 || sec > 59) return 0;
        if (i < len) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
                size_t rest = len - i - 1;
                const char *z = s + i + 1;
                if (rest == 2 && digits(z, 2, &oh)) {
                } else if (rest == 4 && digits(z, 2, &oh) && digits(z + 2, 2, &om)) {
                } else if (rest == 5 && z[2] == ':' && digits(z, 2, &oh) && digits(z + 3, 2, &om)) {
                } else {
                    return 0;
                }
                if (oh > 23 || om > 59) return 0;
                offset = sign * (oh * 3600 + om * 60);
                i = len;
            } else {
                return 0;
            }
        }
    }
    if (i != len) return 0;
    int64_t days = days_from_civil(y, mo, d);
    *out = (double)(days * 86400 + h * 3600 + mi * 60 + sec - offset) + frac;
    return 1;
}

/* ---- the transform ------------------------------------------------------------- */

/* The number a transform reads from v: 1 and *x, or 0 when v has none. */
static int value_number(const shoal_psfset *set, uint32_t transform, const char *rec, const shoal_val *v,
                        double *x) {
    const char *text;
    uint32_t len;
    if (v->origin == SHOAL_ORIGIN_RECORD && rec) {
        text = rec + v->start;
        len = v->len;
    } else {
        return 0; /* a literal or a computed value: not a record's own */
    }
    if (v->type == SHOAL_T_NUMBER) {
        char buf[64];
        if (len >= sizeof buf) return 0; /* beyond any double's useful digits: not bucketed */
        memcpy(buf, text, len);
        buf[len] = 0;
        double n = strtod(buf, NULL);
        if (!isfinite(n)) return 0;
        if (transform == SHOAL_XF_TIME && fabs(n) >= SHOAL_MS_THRESHOLD) n /= 1000.0;
        *x = n;
        return 1;
    }
    if (transform == SHOAL_XF_TIME && v->type == SHOAL_T_STRING && !(v->flags & SHOAL_VF_ESCAPED) && len >= 2)
        return shoal_time_seconds(text + 1, len - 2, x);
    return 0;
}

int shoal_bucket_of(double x, double width, int64_t *k) {
    double b = floor(x / width);
    if (b != b) return 0; /* NaN: no bucket */
    const double edge = 9007199254740991.0; /* 2^53 - 1 */
    *k = b > edge ? (int64_t)edge : b < -edge ? -(int64_t)edge : (int64_t)b;
    return 1;
}

int shoal_prog_bucket(const shoal_psfset *set, uint32_t prog, const char *rec, const shoal_val *v, int64_t *k) {
    const shoal_prog *p = &set->progs[prog];
    double x;
    return p->transform != SHOAL_XF_NONE && value_number(set, p->transform, rec, v, &x)
           && shoal_bucket_of(x, p->bucket, k);
}

int64_t shoal_prog_canon(const shoal_psfset *set, uint32_t prog, const char *rec, const shoal_val *v, char *dst,
                         size_t cap) {
    const shoal_prog *p = &set->progs[prog];
    if (p->transform == SHOAL_XF_NONE) return shoal_val_canon(set, rec, v, dst, cap);
    int64_t k;
    if (!shoal_prog_bucket(set, prog, rec, v, &k)) return 0;
    char text[24];
    int n = 0;
    uint64_t u = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
    char rev[24];
    do { rev[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    int t = 0;
    if (k < 0) text[t++] = '-';
    while (n) text[t++] = rev[--n];
    return shoal_canon(text, (size_t)t, SHOAL_T_NUMBER, dst, cap);
}

/* ---- values of stored records ------------------------------------------------ */

int shoal_prog_numbers(const shoal_psfset *set, uint32_t prog, const char *buf, const uint64_t *offsets,
                       const uint32_t *lengths, uint32_t n, shoal_slot *slots, double *out, uint8_t *ok) {
    const shoal_prog *p = &set->progs[prog];
    for (uint32_t i = 0; i < n; i++) {
        const char *text = buf + offsets[i];
        size_t err_off = 0;
        ok[i] = 0;
        if (shoal_parse(text, lengths[i], &set->trie, slots, &err_off) != SHOAL_OK) continue;
        shoal_val v;
        int rc = shoal_eval(set, prog, text, slots, &v);
        if (rc != SHOAL_OK) return rc;
        ok[i] = (uint8_t)value_number(set, p->transform, text, &v, &out[i]);
    }
    return SHOAL_OK;
}
