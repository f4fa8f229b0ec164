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
#include "tally.h"

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

SHOAL_INTERNAL int shoal_tally_add_sample(shoal_tally *t, entry_t *e, uint64_t kp_addr) {
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

SHOAL_INTERNAL entry_t *shoal_tally_probe(table_t *tb, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len) {
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

/* Any thread (ingest's prepare): the current table, and the entry of
 * (psf_id, canon) in one, or NULL. Old tables are kept until the tally is
 * freed, so the pointer stays readable; shoal_tally_add_hinted uses it
 * only while its table is still the current one (a rebuild copies the
 * entries into the next). */
SHOAL_INTERNAL const void *shoal_tally_table(shoal_tally *t) { return ACQ(&t->table); }

SHOAL_INTERNAL void *shoal_tally_hint(const void *table, uint32_t psf_id, uint64_t hash, const char *canon,
                                      uint32_t len) {
    return shoal_tally_probe((table_t *)table, psf_id, hash, canon, len);
}

static int tally_add(shoal_tally *t, entry_t *e, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                     uint64_t address, int64_t delta);

int shoal_tally_add(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                    uint64_t address, int64_t delta) {
    if (psf_id >= N_PSFS) return SHOAL_OK;
    return tally_add(t, shoal_tally_probe(t->table, psf_id, hash, canon, len), psf_id, hash, canon, len, address,
                     delta);
}

/* Writer: shoal_tally_add(..., 1) with the entry shoal_tally_hint found in
 * `table` (NULL: none then): no probe when the table is still current and
 * the entry still the value's (not counted down to nothing since). */
SHOAL_INTERNAL int shoal_tally_add_hinted(shoal_tally *t, const void *table, void *hint, uint32_t psf_id,
                                          uint64_t hash, const char *canon, uint32_t len, uint64_t address) {
    if (psf_id >= N_PSFS) return SHOAL_OK;
    entry_t *e = hint;
    if (!e || table != t->table || RLX(&e->psf_id) != psf_id)
        e = shoal_tally_probe(t->table, psf_id, hash, canon, len);
    return tally_add(t, e, psf_id, hash, canon, len, address, 1);
}

/* The add, e being (psf_id, canon)'s entry in the current table or NULL. */
static int tally_add(shoal_tally *t, entry_t *e, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                     uint64_t address, int64_t delta) {
    shoal_tally_psf *ps = &t->psfs[psf_id];
    if (!ps->used || address < ps->since) return SHOAL_OK; /* not tallied, or an earlier owner's */
    table_t *tb = t->table;
    if (e) {
        if (delta > 0) {
            uint64_t before = e->ordinal;
            SET_RLX(&e->ordinal, before + (uint64_t)delta);
            if (t->sampling && before / SHOAL_TALLY_SAMPLE_EVERY != e->ordinal / SHOAL_TALLY_SAMPLE_EVERY) {
                int rc = shoal_tally_add_sample(t, e, address);
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
    entry_t *e = shoal_tally_probe(ACQ(&t->table), psf_id, hash, canon, len);
    *count = e ? RLX(&e->count) : 0;
    return e != NULL;
}

SHOAL_INTERNAL void shoal_tally_prefetch(shoal_tally *t, uint64_t hash) {
    table_t *tb = t->table;
    __builtin_prefetch(&tb->e[slot_hash(hash) & tb->mask]);
}

SHOAL_INTERNAL int shoal_tally_find(shoal_tally *t, uint32_t psf_id, uint64_t hash, const char *canon, uint32_t len,
                     const shoal_tally_sample **samples, uint32_t *n_samples) {
    entry_t *e = shoal_tally_probe(ACQ(&t->table), psf_id, hash, canon, len);
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
    entry_t *e = shoal_tally_probe(ACQ(&t->table), psf_id, shoal_hash(psf_id, canon, len), canon, len);
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
