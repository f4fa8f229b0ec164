/*
 * tally.c -- the value tally: for each PSF, its distinct values (canonical
 * bytes, not hashes) and how many records of the log carry each. It answers
 * a whole-log count in O(1) and a PSF's top values without reading the log.
 *
 * A table of entries (psf_id, value bytes, count) under open addressing,
 * probed by the value's index hash shoal_hash(psf_id, canon). Entries are
 * compared by psf_id and bytes: two values whose hashes collide are two
 * entries, so a count is exact where the index's chains are shared.
 *
 * Must stay true:
 *   - A PSF is tallied only once reset (shoal_tally_reset, at registration);
 *     from then on the tally holds, for every value, the number of its key
 *     pointers at record addresses >= since that lie in [begin, tail): the
 *     ingest adds each record's, replay adds what recovery re-links, and a
 *     compaction subtracts the pages it drops (shoal_tally_page into a delta,
 *     shoal_tally_merge with sign -1) when begin moves past them.
 *   - A PSF takes new values until it first overflows (max_values values,
 *     or a value longer than max_value_bytes); from then on it only counts
 *     the values it holds. A value added later could have older records that
 *     were never counted, so overflow is sticky until the next reset: a
 *     value the tally holds is counted exactly, one it lacks is not known.
 *   - One writer (the store's writer lock: ingest, replay, reset, merge) and
 *     any number of readers (get, list) that take no lock. An entry's fields
 *     are written before its hash is published (release), and readers load
 *     the hash with acquire; counts are single atomic words. Growth builds a
 *     new table and publishes it; the old one is kept until the tally is
 *     freed (a reader may still probe it), so memory is at most twice the
 *     largest table.
 */
#include "shoal.h"
#include "internal.h"
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define SET_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#define DEAD_PSF 0xFFFFFFFFu  /* an entry of a reset PSF, or one counted down to 0: a probe goes past it */
#define N_PSFS 65536u
#define ARENA_CHUNK (1u << 16)
#define DUMP_MAGIC 0x594C4154u /* "TALY" */
#define DUMP_VERSION 2u

typedef struct {
    uint64_t hash;      /* 0: an empty slot (a hash of 0 is stored as 1) */
    int64_t count;      /* records in [begin, tail) */
    uint64_t ordinal;   /* records ever counted (never lowered): what samples number */
    const char *bytes;  /* in the arena: never moved or freed before the tally */
    shoal_tally_sample *samples; /* atomic; replaced arrays are kept until the tally is freed */
    uint32_t n_samples; /* atomic: published after the sample is written */
    uint32_t cap_samples;
    uint32_t len;
    uint32_t psf_id;
} entry_t;

typedef struct table {
    uint64_t mask;
    entry_t *e;
    struct table *older;
} table_t;

typedef struct chunk {
    struct chunk *next;
    uint32_t used, cap;
    char data[];
} chunk_t;

struct shoal_tally {
    table_t *table;           /* atomic */
    int sampling;             /* take samples (the store's tally; not a delta or a window's) */
    void **retired;           /* sample arrays replaced by larger ones (readers may hold them) */
    uint64_t n_retired, cap_retired;
    uint64_t used;            /* slots taken, dead ones included (writer) */
    uint64_t live;
    shoal_tally_psf *psfs;    /* N_PSFS states, indexed by psf_id */
    chunk_t *chunks;
    uint32_t max_values;
    uint32_t max_value_bytes;
};

static inline uint64_t slot_hash(uint64_t h) { return h ? h : 1; }

static table_t *table_new(uint64_t slots) {
    table_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->e = calloc(slots, sizeof(entry_t));
    if (!t->e) { free(t); return NULL; }
    t->mask = slots - 1;
    return t;
}

shoal_tally *shoal_tally_new(uint32_t max_values, uint32_t max_value_bytes) {
    shoal_tally *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->psfs = calloc(N_PSFS, sizeof(shoal_tally_psf));
    t->table = table_new(64);
    if (!t->psfs || !t->table) { free(t->psfs); free(t->table); free(t); return NULL; }
    t->max_values = max_values;
    t->max_value_bytes = max_value_bytes;
    t->sampling = 1;
    return t;
}

void shoal_tally_set_sampling(shoal_tally *t, int on) { t->sampling = on; }

void shoal_tally_free(shoal_tally *t) {
    if (!t) return;
    for (chunk_t *c = t->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    /* sample arrays: the live ones are in the newest table, the replaced ones retired */
    table_t *tb = t->table;
    for (uint64_t i = 0; tb && i <= tb->mask; i++) free(tb->e[i].samples);
    for (uint64_t i = 0; i < t->n_retired; i++) free(t->retired[i]);
    free(t->retired);
    for (table_t *next; tb; tb = next) {
        next = tb->older;
        free(tb->e);
        free(tb);
    }
    free(t->psfs);
    free(t);
}

/* Writer: note that e's record at kp_addr is its ordinal-th. */
static int add_sample(shoal_tally *t, entry_t *e, uint64_t kp_addr) {
    if (e->n_samples == e->cap_samples) {
        uint32_t cap = e->cap_samples ? e->cap_samples * 2 : 4;
        shoal_tally_sample *n = malloc(cap * sizeof *n);
        if (!n) return SHOAL_E_NOMEM;
        if (e->n_samples) memcpy(n, e->samples, e->n_samples * sizeof *n);
        if (e->samples) {
            if (t->n_retired == t->cap_retired) {
                uint64_t rc = t->cap_retired ? t->cap_retired * 2 : 16;
                void **r = realloc(t->retired, rc * sizeof *r);
                if (!r) { free(n); return SHOAL_E_NOMEM; }
                t->retired = r;
                t->cap_retired = rc;
            }
            t->retired[t->n_retired++] = e->samples;
        }
        e->cap_samples = cap;
        REL(&e->samples, n);
    }
    e->samples[e->n_samples].kp = kp_addr;
    e->samples[e->n_samples].ordinal = e->ordinal;
    REL(&e->n_samples, e->n_samples + 1);
    return SHOAL_OK;
}

static const char *arena_copy(shoal_tally *t, const char *bytes, uint32_t len) {
    chunk_t *c = t->chunks;
    if (!c || c->cap - c->used < len) {
        uint32_t cap = len > ARENA_CHUNK ? len : ARENA_CHUNK;
        chunk_t *n = malloc(sizeof *n + cap);
        if (!n) return NULL;
        n->next = c;
        n->used = 0;
        n->cap = cap;
        t->chunks = c = n;
    }
    char *dst = c->data + c->used;
    if (len) memcpy(dst, bytes, len);
    c->used += len;
    return dst;
}

static entry_t *probe(table_t *tb, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len) {
    uint64_t h = slot_hash(hash);
    for (uint64_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
        entry_t *e = &tb->e[i];
        uint64_t eh = ACQ(&e->hash);
        if (!eh) return NULL;
        if (eh == h && RLX(&e->psf_id) == psf_id && e->len == len && memcmp(e->bytes, canon, len) == 0)
            return e;
    }
}

/* Writer: a table of 2^k slots holding the live entries at most a quarter
 * full, published in place of the current one. */
static int rebuild(shoal_tally *t) {
    table_t *old = t->table;
    uint64_t slots = 64;
    while (slots < t->live * 4) slots <<= 1;
    table_t *tb = table_new(slots);
    if (!tb) return SHOAL_E_NOMEM;
    for (uint64_t i = 0; i <= old->mask; i++) {
        entry_t *e = &old->e[i];
        if (!e->hash || e->psf_id == DEAD_PSF) continue;
        uint64_t j = e->hash & tb->mask;
        while (tb->e[j].hash) j = (j + 1) & tb->mask;
        tb->e[j] = *e;
    }
    tb->older = old;
    t->used = t->live;
    REL(&t->table, tb);
    return SHOAL_OK;
}

int shoal_tally_add(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                    uint64_t address, int64_t delta) {
    if (psf_id >= N_PSFS) return SHOAL_OK;
    shoal_tally_psf *ps = &t->psfs[psf_id];
    if (!ps->used || address < ps->since) return SHOAL_OK; /* not tallied, or an earlier owner's */
    table_t *tb = t->table;
    entry_t *e = probe(tb, psf_id, hash, canon, len);
    if (e) {
        if (delta > 0) {
            uint64_t before = e->ordinal;
            SET_RLX(&e->ordinal, before + (uint64_t)delta);
            if (t->sampling && before / SHOAL_TALLY_SAMPLE_EVERY != e->ordinal / SHOAL_TALLY_SAMPLE_EVERY) {
                int rc = add_sample(t, e, address);
                if (rc != SHOAL_OK) return rc;
            }
        }
        int64_t c = e->count + delta;
        if (c <= 0) { /* counted down to nothing: its slot is free for reuse after a rebuild */
            SET_RLX(&e->psf_id, DEAD_PSF);
            SET_RLX(&e->count, 0);
            t->live--;
            ps->values--;
        } else {
            SET_RLX(&e->count, c);
        }
        return SHOAL_OK;
    }
    if (delta <= 0) return SHOAL_OK;
    if (ps->overflow) return SHOAL_OK;
    if (ps->values >= t->max_values || len > t->max_value_bytes) {
        ps->overflow = 1;
        return SHOAL_OK;
    }
    if ((t->used + 1) * 2 > tb->mask + 1) {
        int rc = rebuild(t);
        if (rc != SHOAL_OK) return rc;
        tb = t->table;
    }
    const char *bytes = arena_copy(t, canon, len);
    if (!bytes) return SHOAL_E_NOMEM;
    uint64_t h = slot_hash(hash);
    uint64_t i = h & tb->mask;
    while (tb->e[i].hash) i = (i + 1) & tb->mask;
    entry_t *n = &tb->e[i];
    n->count = delta;
    n->ordinal = (uint64_t)delta;
    n->samples = NULL;
    n->n_samples = n->cap_samples = 0;
    n->bytes = bytes;
    n->len = len;
    n->psf_id = psf_id;
    REL(&n->hash, h);
    t->used++;
    t->live++;
    ps->values++;
    return SHOAL_OK;
}

int shoal_tally_get(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                    int64_t *count) {
    entry_t *e = probe(ACQ(&t->table), psf_id, hash, canon, len);
    *count = e ? RLX(&e->count) : 0;
    return e != NULL;
}

SHOAL_INTERNAL int shoal_tally_find(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                     const shoal_tally_sample **samples, uint32_t *n_samples) {
    entry_t *e = probe(ACQ(&t->table), psf_id, hash, canon, len);
    if (!e || RLX(&e->psf_id) != psf_id) return 0;
    *n_samples = ACQ(&e->n_samples);
    *samples = ACQ(&e->samples);
    return 1;
}

int shoal_tally_count(shoal_tally *t, uint32_t psf_id, const char *canon, uint32_t len, uint64_t since_at_most,
                      int64_t *count) {
    *count = 0;
    if (psf_id >= N_PSFS) return 0;
    shoal_tally_psf *ps = &t->psfs[psf_id];
    if (!RLX(&ps->used) || RLX(&ps->since) > since_at_most) return 0;
    entry_t *e = probe(ACQ(&t->table), psf_id, shoal_hash(psf_id, canon, len), canon, len);
    if (e && RLX(&e->psf_id) == psf_id) {
        *count = RLX(&e->count);
        return 1;
    }
    return !RLX(&ps->overflow); /* a complete tally without the value: no record has it */
}

void shoal_tally_state(shoal_tally *t, uint32_t psf_id, shoal_tally_psf *out) {
    if (psf_id >= N_PSFS) { memset(out, 0, sizeof *out); return; }
    shoal_tally_psf *ps = &t->psfs[psf_id];
    out->since = RLX(&ps->since);
    out->values = RLX(&ps->values);
    out->overflow = RLX(&ps->overflow);
    out->used = RLX(&ps->used);
}

int shoal_tally_reset(shoal_tally *t, uint32_t psf_id, uint64_t since, int tallied) {
    if (psf_id >= N_PSFS) return SHOAL_E_ARG;
    table_t *tb = t->table;
    shoal_tally_psf *ps = &t->psfs[psf_id];
    for (uint64_t i = 0; ps->values && i <= tb->mask; i++) {
        entry_t *e = &tb->e[i];
        if (e->hash && e->psf_id == psf_id) {
            SET_RLX(&e->psf_id, DEAD_PSF);
            t->live--;
            ps->values--;
        }
    }
    SET_RLX(&ps->values, 0);
    SET_RLX(&ps->overflow, 0);
    SET_RLX(&ps->since, since);
    SET_RLX(&ps->used, tallied ? 1 : 0);
    if (t->used > 64 && t->live * 4 < t->used) return rebuild(t);
    return SHOAL_OK;
}

/* ---- reading a PSF's values ------------------------------------------------------ */

static int by_count_desc(const void *a, const void *b) {
    const entry_t *x = *(const entry_t *const *)a, *y = *(const entry_t *const *)b;
    int64_t cx = RLX(&x->count), cy = RLX(&y->count);
    if (cx != cy) return cx > cy ? -1 : 1;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int64_t shoal_tally_list(shoal_tally *t, uint32_t psf_id, uint64_t limit, char *dst, uint64_t cap,
                         uint64_t *need) {
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
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) bytes += 12 + pick[i]->len;
    *need = bytes;
    if (bytes > cap) { free(pick); return SHOAL_E_SPACE; }
    /* Each item: int64 count, uint32 length, the value's canonical bytes. */
    char *p = dst;
    for (uint64_t i = 0; i < n; i++) {
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
        long exp = strtol(e + 1, NULL, 10);
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

int64_t shoal_tally_list_json(shoal_tally *t, uint32_t psf_id, uint64_t limit, uint64_t since_at_most, char *dst,
                              uint64_t cap, uint64_t *need) {
    if (psf_id >= N_PSFS) return -1;
    shoal_tally_psf *ps = &t->psfs[psf_id];
    if (!RLX(&ps->used) || RLX(&ps->since) > since_at_most || RLX(&ps->overflow)) return -1;
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
    uint64_t bound = 2;
    for (uint64_t i = 0; i < n; i++) bound += json_bytes(pick[i]->len) + 26;
    *need = bound;
    if (bound > cap) { free(pick); return SHOAL_E_SPACE; }
    /* [[value, count], ...] */
    char *p = dst;
    *p++ = '[';
    for (uint64_t i = 0; i < n; i++) {
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

void shoal_tally_get_stats(shoal_tally *t, shoal_tally_stats *out) {
    table_t *tb = ACQ(&t->table);
    uint64_t arena = 0;
    for (chunk_t *c = t->chunks; c; c = c->next) arena += sizeof *c + c->cap;
    out->values = RLX(&t->live);
    out->bytes = (tb->mask + 1) * sizeof(entry_t) + arena + N_PSFS * sizeof(shoal_tally_psf);
}

/* ---- deltas ------------------------------------------------------------------- */

int shoal_tally_merge(shoal_tally *dst, shoal_tally *src, int sign) {
    table_t *tb = src->table;
    for (uint64_t i = 0; i <= tb->mask; i++) {
        entry_t *e = &tb->e[i];
        if (!e->hash || e->psf_id == DEAD_PSF || e->count <= 0) continue;
        /* The delta's since is the one its pages were read against: a PSF
         * reset since then (a new owner of the id) has a later since, and
         * shoal_tally_add leaves it alone. */
        uint64_t at = src->psfs[e->psf_id].since;
        int rc = shoal_tally_add(dst, e->psf_id, e->hash, e->bytes, e->len, at, sign * e->count);
        if (rc != SHOAL_OK) return rc;
    }
    return SHOAL_OK;
}

int shoal_tally_page(const char *buf, uint64_t base, uint64_t len, uint64_t *pos, uint64_t lo, uint64_t hi,
                     uint32_t psf_id, shoal_tally *t, shoal_tally *only) {
    uint64_t end = base + len;
    char small[256];
    char *canon = small;
    uint64_t canon_cap = sizeof small;
    int rc = SHOAL_OK;
    while (*pos + SHOAL_HEADER_BYTES <= end) {
        uint64_t a = *pos;
        const char *rec = buf + (a - base);
        const shoal_record_header *h = (const shoal_record_header *)rec;
        if (h->size == 0 && h->magic == 0) { rc = SHOAL_END; break; }
        if (h->magic != SHOAL_RECORD_MAGIC || !shoal_header_size_ok(h) || a + h->size > end) {
            rc = SHOAL_E_CORRUPT;
            break;
        }
        if (a >= hi) { rc = SHOAL_END; break; }
        if (a >= lo && !(h->flags & SHOAL_RF_TOMBSTONE)) {
            for (uint32_t k = 0; k < h->n_kps; k++) {
                const shoal_key_pointer *kp = (const shoal_key_pointer *)(rec + shoal_kp_offset(k));
                uint32_t id = shoal_kp_psf(kp->prev_psf);
                if (id == SHOAL_KEY_PSF_ID || (psf_id != SHOAL_TALLY_ALL && id != psf_id)) continue;
                if (kp->value_off + (uint64_t)kp->value_len > h->size) { rc = SHOAL_E_CORRUPT; goto out; }
                if ((uint64_t)kp->value_len + 1 > canon_cap) {
                    char *n = malloc(((uint64_t)kp->value_len + 1) * 2);
                    if (!n) { rc = SHOAL_E_NOMEM; goto out; }
                    if (canon != small) free(canon);
                    canon = n;
                    canon_cap = ((uint64_t)kp->value_len + 1) * 2;
                }
                uint32_t cl = 0;
                if (kp->value_kind == SHOAL_KP_SPAN) canon[cl++] = 's';
                memcpy(canon + cl, rec + kp->value_off, kp->value_len);
                cl += kp->value_len;
                uint64_t hash = shoal_hash(id, canon, cl);
                if (only) {
                    shoal_tally_psf *ps = &only->psfs[id];
                    int64_t c;
                    if (!ps->used || a < ps->since || !shoal_tally_get(only, id, hash, canon, cl, &c)) continue;
                }
                if (!t->psfs[id].used) { /* a delta or a window tallies what it meets */
                    t->psfs[id].used = 1;
                    t->psfs[id].since = only ? only->psfs[id].since : 0;
                }
                rc = shoal_tally_add(t, id, hash, canon, cl, a + shoal_kp_offset(k), 1);
                if (rc != SHOAL_OK) goto out;
            }
        }
        *pos = a + h->size;
    }
out:
    if (canon != small) free(canon);
    return rc;
}

/* ---- persistence ----------------------------------------------------------------- */

/* Layout: u32 magic, u32 version, u32 n_psfs, then per tallied PSF (u32 id,
 * u32 values, u64 since, u32 overflow), then u64 n entries and per entry
 * (u32 psf_id, u32 len, i64 count, u64 ordinal, u32 n_samples, len bytes,
 * n_samples x (u64 kp, u64 ordinal)). Little-endian, as the host. */
uint64_t shoal_tally_dump_bytes(shoal_tally *t) {
    uint64_t n = 12;
    for (uint32_t i = 0; i < N_PSFS; i++) n += t->psfs[i].used ? 20 : 0;
    n += 8;
    table_t *tb = t->table;
    for (uint64_t i = 0; i <= tb->mask; i++)
        if (tb->e[i].hash && tb->e[i].psf_id != DEAD_PSF)
            n += 28 + tb->e[i].len + (uint64_t)tb->e[i].n_samples * sizeof(shoal_tally_sample);
    return n;
}

int shoal_tally_dump(shoal_tally *t, char *dst, uint64_t cap) {
    if (cap < shoal_tally_dump_bytes(t)) return SHOAL_E_SPACE;
    char *p = dst;
#define PUT(v, w) do { __typeof__(v) _v = (v); memcpy(p, &_v, (w)); p += (w); } while (0)
    uint32_t n_psfs = 0;
    for (uint32_t i = 0; i < N_PSFS; i++) n_psfs += t->psfs[i].used;
    PUT((uint32_t)DUMP_MAGIC, 4);
    PUT((uint32_t)DUMP_VERSION, 4);
    PUT(n_psfs, 4);
    for (uint32_t i = 0; i < N_PSFS; i++) {
        if (!t->psfs[i].used) continue;
        PUT(i, 4);
        PUT(t->psfs[i].values, 4);
        PUT(t->psfs[i].since, 8);
        PUT((uint32_t)t->psfs[i].overflow, 4);
    }
    PUT(t->live, 8);
    table_t *tb = t->table;
    for (uint64_t i = 0; i <= tb->mask; i++) {
        entry_t *e = &tb->e[i];
        if (!e->hash || e->psf_id == DEAD_PSF) continue;
        PUT(e->psf_id, 4);
        PUT(e->len, 4);
        PUT(e->count, 8);
        PUT(e->ordinal, 8);
        PUT(e->n_samples, 4);
        memcpy(p, e->bytes, e->len);
        p += e->len;
        for (uint32_t k = 0; k < e->n_samples; k++) {
            PUT(e->samples[k].kp, 8);
            PUT(e->samples[k].ordinal, 8);
        }
    }
#undef PUT
    return SHOAL_OK;
}

shoal_tally *shoal_tally_load(const char *src, uint64_t len, uint32_t max_values, uint32_t max_value_bytes,
                              int *err) {
    const char *p = src, *end = src + len;
    *err = SHOAL_E_CORRUPT;
#define GET(var, w) do { if ((uint64_t)(end - p) < (w)) goto bad; memcpy(&(var), p, (w)); p += (w); } while (0)
    uint32_t magic = 0, version = 0, n_psfs = 0;
    uint64_t n = 0;
    shoal_tally *t = shoal_tally_new(max_values, max_value_bytes);
    if (!t) { *err = SHOAL_E_NOMEM; return NULL; }
    GET(magic, 4);
    GET(version, 4);
    if (magic != DUMP_MAGIC || version != DUMP_VERSION) goto bad;
    GET(n_psfs, 4);
    for (uint32_t i = 0; i < n_psfs; i++) {
        uint32_t id, values, overflow;
        uint64_t since;
        GET(id, 4);
        GET(values, 4);
        GET(since, 8);
        GET(overflow, 4);
        if (id >= N_PSFS || id == SHOAL_KEY_PSF_ID || t->psfs[id].used) goto bad;
        t->psfs[id].used = 1;
        t->psfs[id].since = since;
        t->psfs[id].overflow = overflow ? 1 : 0;
        (void)values; /* counted again as the entries load */
    }
    GET(n, 8);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id, vlen, n_samples;
        int64_t count;
        uint64_t ordinal;
        GET(id, 4);
        GET(vlen, 4);
        GET(count, 8);
        GET(ordinal, 8);
        GET(n_samples, 4);
        if ((uint64_t)(end - p) < vlen || id >= N_PSFS || !t->psfs[id].used || count <= 0
            || ordinal < (uint64_t)count)
            goto bad;
        shoal_tally_psf *ps = &t->psfs[id];
        uint64_t hash = shoal_hash(id, p, vlen);
        int64_t have;
        if (shoal_tally_get(t, id, hash, p, vlen, &have)) goto bad; /* a value twice */
        /* Loaded values are admitted past the bounds of this open (they may
         * have been lowered): the counts stay exact, the PSF just takes no
         * new values. */
        uint8_t overflow = ps->overflow;
        uint32_t mv = t->max_values, mb = t->max_value_bytes;
        ps->overflow = 0;
        t->max_values = UINT32_MAX;
        t->max_value_bytes = UINT32_MAX;
        t->sampling = 0;
        int rc = shoal_tally_add(t, id, hash, p, vlen, ps->since, count);
        t->sampling = 1;
        t->max_values = mv;
        t->max_value_bytes = mb;
        ps->overflow = overflow || ps->values > mv;
        if (rc != SHOAL_OK) { *err = rc; shoal_tally_free(t); return NULL; }
        entry_t *e = probe(t->table, id, hash, p, vlen);
        p += vlen;
        if (!e) goto bad;
        e->ordinal = ordinal;
        if ((uint64_t)(end - p) / sizeof(shoal_tally_sample) < n_samples) goto bad;
        for (uint32_t k = 0; k < n_samples; k++) {
            shoal_tally_sample smp;
            GET(smp.kp, 8);
            GET(smp.ordinal, 8);
            /* samples rise in address and ordinal, and none passes the entry's */
            if (smp.ordinal > ordinal || (e->n_samples && (smp.kp <= e->samples[e->n_samples - 1].kp ||
                                                           smp.ordinal <= e->samples[e->n_samples - 1].ordinal)))
                goto bad;
            uint64_t keep = e->ordinal;
            e->ordinal = smp.ordinal;
            rc = add_sample(t, e, smp.kp);
            e->ordinal = keep;
            if (rc != SHOAL_OK) { *err = rc; shoal_tally_free(t); return NULL; }
        }
    }
    if (p != end) goto bad;
#undef GET
    *err = SHOAL_OK;
    return t;
bad:
    shoal_tally_free(t);
    return NULL;
}
