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
#define DUMP_VERSION 1u

typedef struct {
    uint64_t hash;      /* 0: an empty slot (a hash of 0 is stored as 1) */
    int64_t count;
    const char *bytes;  /* in the arena: never moved or freed before the tally */
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
    return t;
}

void shoal_tally_free(shoal_tally *t) {
    if (!t) return;
    for (table_t *tb = t->table, *next; tb; tb = next) {
        next = tb->older;
        free(tb->e);
        free(tb);
    }
    for (chunk_t *c = t->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(t->psfs);
    free(t);
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
                rc = shoal_tally_add(t, id, hash, canon, cl, a, 1);
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
 * (u32 psf_id, u32 len, i64 count, len bytes). Little-endian, as the host. */
uint64_t shoal_tally_dump_bytes(shoal_tally *t) {
    uint64_t n = 12;
    for (uint32_t i = 0; i < N_PSFS; i++) n += t->psfs[i].used ? 20 : 0;
    n += 8;
    table_t *tb = t->table;
    for (uint64_t i = 0; i <= tb->mask; i++)
        if (tb->e[i].hash && tb->e[i].psf_id != DEAD_PSF) n += 16 + tb->e[i].len;
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
        memcpy(p, e->bytes, e->len);
        p += e->len;
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
        uint32_t id, vlen;
        int64_t count;
        GET(id, 4);
        GET(vlen, 4);
        GET(count, 8);
        if ((uint64_t)(end - p) < vlen || id >= N_PSFS || !t->psfs[id].used || count <= 0) goto bad;
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
        int rc = shoal_tally_add(t, id, hash, p, vlen, ps->since, count);
        t->max_values = mv;
        t->max_value_bytes = mb;
        ps->overflow = overflow || ps->values > mv;
        if (rc != SHOAL_OK) { *err = rc; shoal_tally_free(t); return NULL; }
        p += vlen;
    }
    if (p != end) goto bad;
#undef GET
    *err = SHOAL_OK;
    return t;
bad:
    shoal_tally_free(t);
    return NULL;
}
