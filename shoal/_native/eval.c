/* eval.c -- PSF program evaluation: a postfix interpreter over shoal_val.
 *
 * Semantics are JMESPath 1.1.0's (jmespath/visitor.py) over JSON values, with
 * JSON equality instead of Python's:
 *   - truthy: null/missing, false, "", [] and {} are false; every number is true.
 *   - == / !=: same JSON type and same value. Strings compare by unescaped
 *     UTF-8, numbers by exact decimal (shoal_canon), so "\u0050ush" == "Push"
 *     and 1 == 1.0, while true != 1 (jmespath special-cases bool vs 0/1 the same
 *     way). Missing equals null.
 *   - < <= > >=: two numbers (exact decimal order) or two strings (UTF-8 byte
 *     order == code point order, as Python compares str); anything else is null.
 *     Python raises TypeError on number-vs-string; shoal's dialect (see
 *     shoal/psf/expr.py) yields null there too.
 *   - && / ||: pop r, l; push the operand value, like jmespath.
 * Numbers order by exact decimal rather than as doubles so that ordering agrees
 * with == and with Python's exact int comparisons (ids above 2^53 are common).
 *
 * Invariants the compiler (shoal/psf/native.py) keeps: programs are well formed
 * postfix with depth <= SHOAL_MAX_STACK, and every comparison has a literal on
 * at least one side, so two arrays or objects are never compared. Violations
 * return SHOAL_E_ARG rather than crash.
 *
 * Thread safety: pure functions of their arguments; any number of threads may
 * evaluate one set at once.
 */
#include <stdlib.h>
#include <string.h>

#include "shoal.h"

/* Canonical values up to this size are built on the stack; larger ones (long
 * escaped strings, very long numbers) take one malloc per comparison. */
#define LOCAL_CANON_BYTES 256
/* Upper bound on canonical growth over the JSON text: "n" "-" "e" and an
 * exponent that may exceed the digits written. */
#define CANON_SLACK_BYTES 32
/* An escape is at most 6 bytes of text ("\u00e9" -> 2 bytes, "\u0041" -> 1). */
#define MAX_ESCAPE_RATIO 6

/* Bytes of a string's or number's canonical form without its type tag. */
typedef struct {
    const char *p;
    size_t n;
    char *heap; /* owned allocation to free, or NULL */
} canon_view;

static inline uint8_t norm_type(uint8_t t) { return t == SHOAL_T_MISSING ? SHOAL_T_NULL : t; }

static inline int truthy(const shoal_val *v)
{
    switch (v->type) {
    case SHOAL_T_MISSING:
    case SHOAL_T_NULL:
    case SHOAL_T_FALSE:
        return 0;
    case SHOAL_T_STRING:
    case SHOAL_T_ARRAY:
    case SHOAL_T_OBJECT:
        return !(v->flags & SHOAL_VF_EMPTY);
    default:
        return 1;
    }
}

static inline void set_bool(shoal_val *v, int b)
{
    v->type = b ? SHOAL_T_TRUE : SHOAL_T_FALSE;
    v->flags = 0;
    v->origin = SHOAL_ORIGIN_NONE;
    v->reserved = 0;
    v->start = 0;
    v->len = 0;
}

static inline void set_null(shoal_val *v)
{
    v->type = SHOAL_T_NULL;
    v->flags = 0;
    v->origin = SHOAL_ORIGIN_NONE;
    v->reserved = 0;
    v->start = 0;
    v->len = 0;
}

/* Fill *out with v's canonical bytes minus the tag. v is a string or number
 * from a record or the literal pool. buf/cap is the caller's local buffer. */
static int view_of(const shoal_psfset *set, const char *rec, const shoal_val *v,
                   char *buf, size_t cap, canon_view *out)
{
    out->heap = NULL;
    if (v->origin == SHOAL_ORIGIN_LIT) {
        if (v->len < 1)
            return SHOAL_E_ARG;
        out->p = set->lit_pool + v->start + 1;
        out->n = v->len - 1;
        return SHOAL_OK;
    }
    if (v->origin != SHOAL_ORIGIN_RECORD)
        return SHOAL_E_ARG;
    if (v->type == SHOAL_T_STRING && !(v->flags & SHOAL_VF_ESCAPED)) {
        if (v->len < 2)
            return SHOAL_E_ARG;
        out->p = rec + v->start + 1;
        out->n = v->len - 2;
        return SHOAL_OK;
    }
    size_t need = (size_t)v->len + CANON_SLACK_BYTES;
    char *dst = buf;
    if (need > cap) {
        dst = malloc(need);
        if (!dst)
            return SHOAL_E_NOMEM;
        out->heap = dst;
    }
    int64_t r = shoal_canon(rec + v->start, v->len, v->type, dst, need);
    if (r < 1) {
        free(out->heap);
        out->heap = NULL;
        return r < 0 ? (int)r : SHOAL_E_ARG;
    }
    out->p = dst + 1;
    out->n = (size_t)r - 1;
    return SHOAL_OK;
}

/* Length of the string's content if it is known without unescaping. */
static inline int known_len(const shoal_val *v, size_t *n)
{
    if (v->origin == SHOAL_ORIGIN_LIT) {
        *n = v->len - 1;
        return 1;
    }
    if (!(v->flags & SHOAL_VF_ESCAPED)) {
        *n = v->len - 2;
        return 1;
    }
    return 0;
}

/* An escaped record string of raw text length `len` unescapes to between
 * (len - 2) / 6 and len - 2 bytes: cheap rejection before unescaping. */
static inline int may_unescape_to(const shoal_val *escaped, size_t n)
{
    size_t raw = escaped->len - 2;
    return n <= raw && n * MAX_ESCAPE_RATIO >= raw;
}

/* Decimal in canonical form (tag stripped): "0", or ["-"] digits "e" exponent
 * with no leading or trailing zeros in digits. */
typedef struct {
    int sign;        /* -1, 0, 1 */
    const char *d;
    size_t nd;
    int64_t exp;
} decimal;

#define EXP_CLAMP 1000000000000LL

static void decimal_parse(const char *p, size_t n, decimal *x)
{
    x->d = p;
    x->nd = 0;
    x->exp = 0;
    if (n == 0 || (n == 1 && p[0] == '0')) {
        x->sign = 0;
        return;
    }
    x->sign = 1;
    if (p[0] == '-') {
        x->sign = -1;
        p++;
        n--;
    }
    size_t i = 0;
    while (i < n && p[i] != 'e')
        i++;
    x->d = p;
    x->nd = i;
    if (i < n) {
        i++;
        int neg = 0;
        if (i < n && (p[i] == '-' || p[i] == '+'))
            neg = p[i++] == '-';
        int64_t e = 0;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            if (e < EXP_CLAMP)
                e = e * 10 + (p[i] - '0');
        x->exp = neg ? -e : e;
    }
}

static int decimal_cmp(const decimal *a, const decimal *b)
{
    if (a->sign != b->sign)
        return a->sign < b->sign ? -1 : 1;
    if (a->sign == 0)
        return 0;
    /* value = 0.d1d2... * 10^(nd + exp): compare that magnitude first, then
     * digits; with no trailing zeros, a digit string that is a prefix of the
     * other is the smaller one. */
    int64_t ma = (int64_t)a->nd + a->exp, mb = (int64_t)b->nd + b->exp;
    int c;
    if (ma != mb) {
        c = ma < mb ? -1 : 1;
    } else {
        size_t k = a->nd < b->nd ? a->nd : b->nd;
        c = memcmp(a->d, b->d, k);
        if (c == 0)
            c = (a->nd > b->nd) - (a->nd < b->nd);
        else
            c = c < 0 ? -1 : 1;
    }
    return a->sign > 0 ? c : -c;
}

static inline int bytes_cmp(const canon_view *a, const canon_view *b)
{
    size_t k = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, k);
    if (c)
        return c < 0 ? -1 : 1;
    return (a->n > b->n) - (a->n < b->n);
}

/* *eq = (l == r) with JSON semantics. */
/* Canonical views of both operands (buffers of LOCAL_CANON_BYTES each);
 * on success the caller frees lv->heap and rv->heap. */
static int views_of(const shoal_psfset *set, const char *rec, const shoal_val *l, const shoal_val *r,
                    char *lbuf, char *rbuf, canon_view *lv, canon_view *rv)
{
    int rc = view_of(set, rec, l, lbuf, LOCAL_CANON_BYTES, lv);
    if (rc)
        return rc;
    rc = view_of(set, rec, r, rbuf, LOCAL_CANON_BYTES, rv);
    if (rc)
        free(lv->heap);
    return rc;
}

static int values_equal(const shoal_psfset *set, const char *rec, const shoal_val *l,
                        const shoal_val *r, int *eq)
{
    uint8_t lt = norm_type(l->type), rt = norm_type(r->type);
    if (lt != rt) {
        *eq = 0;
        return SHOAL_OK;
    }
    switch (lt) {
    case SHOAL_T_NULL:
    case SHOAL_T_TRUE:
    case SHOAL_T_FALSE:
        *eq = 1;
        return SHOAL_OK;
    case SHOAL_T_STRING: {
        size_t ln, rn;
        int lk = known_len(l, &ln), rk = known_len(r, &rn);
        if (lk && rk) {
            /* Fast path: both contents are raw bytes. */
            const char *lp = l->origin == SHOAL_ORIGIN_LIT ? set->lit_pool + l->start + 1
                                                           : rec + l->start + 1;
            const char *rp = r->origin == SHOAL_ORIGIN_LIT ? set->lit_pool + r->start + 1
                                                           : rec + r->start + 1;
            *eq = ln == rn && memcmp(lp, rp, ln) == 0;
            return SHOAL_OK;
        }
        if ((lk && !may_unescape_to(r, ln)) || (rk && !may_unescape_to(l, rn))) {
            *eq = 0;
            return SHOAL_OK;
        }
        break;
    }
    case SHOAL_T_NUMBER:
        break;
    default:
        /* Two arrays or objects: the compiler never emits this (a comparison
         * always has a scalar literal on one side). */
        return SHOAL_E_ARG;
    }
    char lbuf[LOCAL_CANON_BYTES], rbuf[LOCAL_CANON_BYTES];
    canon_view lv, rv;
    int rc = views_of(set, rec, l, r, lbuf, rbuf, &lv, &rv);
    if (rc)
        return rc;
    *eq = lv.n == rv.n && memcmp(lv.p, rv.p, lv.n) == 0;
    free(lv.heap);
    free(rv.heap);
    return SHOAL_OK;
}

/* *cmp = sign of (l - r) if l and r are both numbers or both strings;
 * *comparable = 0 otherwise. */
static int values_order(const shoal_psfset *set, const char *rec, const shoal_val *l,
                        const shoal_val *r, int *comparable, int *cmp)
{
    if (l->type != r->type || (l->type != SHOAL_T_NUMBER && l->type != SHOAL_T_STRING)) {
        *comparable = 0;
        return SHOAL_OK;
    }
    *comparable = 1;
    char lbuf[LOCAL_CANON_BYTES], rbuf[LOCAL_CANON_BYTES];
    canon_view lv, rv;
    int rc = views_of(set, rec, l, r, lbuf, rbuf, &lv, &rv);
    if (rc)
        return rc;
    if (l->type == SHOAL_T_STRING) {
        *cmp = bytes_cmp(&lv, &rv);
    } else {
        decimal a, b;
        decimal_parse(lv.p, lv.n, &a);
        decimal_parse(rv.p, rv.n, &b);
        *cmp = decimal_cmp(&a, &b);
    }
    free(lv.heap);
    free(rv.heap);
    return SHOAL_OK;
}

int shoal_eval(const shoal_psfset *set, uint32_t prog, const char *rec,
               const shoal_slot *slots, shoal_val *out)
{
    if (!set || !out || prog >= set->n_progs)
        return SHOAL_E_ARG;
    const shoal_prog *pg = &set->progs[prog];
    const shoal_insn *ip = set->insns + pg->first_insn;
    const shoal_insn *end = ip + pg->n_insns;
    shoal_val st[SHOAL_MAX_STACK];
    int sp = 0; /* st[0, sp) is the stack */
    int rc;

    for (; ip < end; ip++) {
        switch (ip->op) {
        case SHOAL_OP_SLOT: {
            if (sp >= SHOAL_MAX_STACK || !slots || ip->arg >= set->trie.n_slots)
                return SHOAL_E_ARG;
            const shoal_slot *s = &slots[ip->arg];
            shoal_val *v = &st[sp++];
            v->type = s->type;
            v->flags = s->flags;
            v->origin = SHOAL_ORIGIN_RECORD;
            v->reserved = 0;
            v->start = s->start;
            v->len = s->len;
            break;
        }
        case SHOAL_OP_LIT: {
            if (sp >= SHOAL_MAX_STACK || !set->lits)
                return SHOAL_E_ARG;
            const shoal_lit *lit = &set->lits[ip->arg];
            shoal_val *v = &st[sp++];
            v->type = (uint8_t)lit->type;
            v->flags = (lit->type == SHOAL_T_STRING && lit->canon_len == 1) ? SHOAL_VF_EMPTY : 0;
            v->origin = SHOAL_ORIGIN_LIT;
            v->reserved = 0;
            v->start = lit->canon_off;
            v->len = lit->canon_len;
            if ((lit->type == SHOAL_T_STRING || lit->type == SHOAL_T_NUMBER) && lit->canon_len < 1)
                return SHOAL_E_ARG;
            break;
        }
        case SHOAL_OP_EQ:
        case SHOAL_OP_NE: {
            if (sp < 2)
                return SHOAL_E_ARG;
            int eq;
            rc = values_equal(set, rec, &st[sp - 2], &st[sp - 1], &eq);
            if (rc)
                return rc;
            sp--;
            set_bool(&st[sp - 1], ip->op == SHOAL_OP_EQ ? eq : !eq);
            break;
        }
        case SHOAL_OP_LT:
        case SHOAL_OP_LE:
        case SHOAL_OP_GT:
        case SHOAL_OP_GE: {
            if (sp < 2)
                return SHOAL_E_ARG;
            int comparable, c = 0;
            rc = values_order(set, rec, &st[sp - 2], &st[sp - 1], &comparable, &c);
            if (rc)
                return rc;
            sp--;
            if (!comparable) {
                set_null(&st[sp - 1]);
                break;
            }
            int b = ip->op == SHOAL_OP_LT ? c < 0
                  : ip->op == SHOAL_OP_LE ? c <= 0
                  : ip->op == SHOAL_OP_GT ? c > 0
                                          : c >= 0;
            set_bool(&st[sp - 1], b);
            break;
        }
        case SHOAL_OP_NOT:
            if (sp < 1)
                return SHOAL_E_ARG;
            set_bool(&st[sp - 1], !truthy(&st[sp - 1]));
            break;
        case SHOAL_OP_AND:
            if (sp < 2)
                return SHOAL_E_ARG;
            sp--;
            if (truthy(&st[sp - 1]))
                st[sp - 1] = st[sp];
            break;
        case SHOAL_OP_OR:
            if (sp < 2)
                return SHOAL_E_ARG;
            sp--;
            if (!truthy(&st[sp - 1]))
                st[sp - 1] = st[sp];
            break;
        default:
            return SHOAL_E_ARG;
        }
    }
    if (sp != 1)
        return SHOAL_E_ARG;
    *out = st[0];
    return SHOAL_OK;
}

int64_t shoal_val_canon(const shoal_psfset *set, const char *rec, const shoal_val *v,
                        char *dst, size_t cap)
{
    if (!v || (!dst && cap))
        return SHOAL_E_ARG;
    switch (v->type) {
    case SHOAL_T_TRUE:
        if (cap < 1)
            return SHOAL_E_SPACE;
        dst[0] = 't';
        return 1;
    case SHOAL_T_STRING:
    case SHOAL_T_NUMBER:
        break;
    default:
        return 0;
    }
    if (v->origin == SHOAL_ORIGIN_LIT) {
        if (!set)
            return SHOAL_E_ARG;
        if (cap < v->len)
            return SHOAL_E_SPACE;
        memcpy(dst, set->lit_pool + v->start, v->len);
        return v->len;
    }
    if (v->origin != SHOAL_ORIGIN_RECORD || !rec)
        return SHOAL_E_ARG;
    if (v->type == SHOAL_T_STRING && !(v->flags & SHOAL_VF_ESCAPED)) {
        if (v->len < 2)
            return SHOAL_E_ARG;
        size_t n = (size_t)v->len - 1;
        if (cap < n)
            return SHOAL_E_SPACE;
        dst[0] = 's';
        memcpy(dst + 1, rec + v->start + 1, n - 1);
        return (int64_t)n;
    }
    return shoal_canon(rec + v->start, v->len, v->type, dst, cap);
}
