/*
 * index.c -- the hash index: one table for every PSF's chains (FASTER-style).
 *
 * A table is a power-of-two array of cache-line buckets, each holding 7
 * entries and the id of an overflow bucket. An entry packs a key pointer's
 * log address (bits 0..47) with a tag (bits 48..63 of the value hash). Next to
 * each bucket a side line keeps bits 16..47 of the hash for each entry, so an
 * entry identifies its chain by 48 hash bits and the bucket index is taken
 * from those same bits (hash >> 16, masked). That makes growth exact without
 * reading the log: doubling the table moves each entry to bucket
 * (side & new_mask), and chains never mix values that differ in those 48 bits.
 * Values that collide in all 48 bits share a chain; walks compare psf_id and
 * value bytes, so a shared chain costs time, never correctness.
 *
 * Concurrency: one writer (ingest, replay, growth, dump) and any number of
 * readers (lookup). Entries and overflow links are published with release
 * stores after the side bits and the key pointer they name are written;
 * readers load them with acquire. Growth builds a new table, swaps the table
 * pointer and frees the old one once its reader count drops to zero.
 */
#include "shoal.h"
#include "internal.h"
#include "record.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define ENTRIES 7
#define OV_CHUNK_BITS 10
#define OV_CHUNK (1u << OV_CHUNK_BITS)
#define OV_MAX_CHUNKS (1u << 16)
#define DUMP_MAGIC 0x58494853u /* "SHIX" */

typedef struct {
    uint64_t entry[ENTRIES];
    uint64_t overflow; /* 1-based id in the overflow pool, 0 = none */
} __attribute__((aligned(64))) bucket_t;

typedef struct {
    uint32_t hi[ENTRIES]; /* hash bits 16..47 of entry[i] */
    uint32_t pad;
} side_t;

typedef struct table {
    uint32_t bucket_bits;
    uint64_t mask;
    bucket_t *buckets;
    side_t *sides;
    bucket_t **ov_buckets; /* OV_MAX_CHUNKS chunk pointers */
    side_t **ov_sides;
    uint64_t ov_used;      /* overflow buckets handed out */
    uint64_t entries;
    int readers;           /* atomic */
} table_t;

struct shoal_index {
    table_t *table; /* atomic */
};

static inline uint16_t tag_of(uint64_t h) { return (uint16_t)(h >> SHOAL_ADDRESS_BITS); }
static inline uint32_t hi_of(uint64_t h) { return (uint32_t)(h >> 16); }

/* An entry: the tag above a log address (the layout of a key pointer's
 * prev_psf, with the tag where the psf_id is). rebuild_hash takes the tag
 * back as the hash's top 16 bits. */
_Static_assert(SHOAL_ADDRESS_BITS == 48, "an entry's tag is the hash's bits 48..63");
static inline uint64_t entry_of(uint16_t tag, uint64_t address) {
    return ((uint64_t)tag << SHOAL_ADDRESS_BITS) | address;
}
static inline uint16_t entry_tag(uint64_t e) { return (uint16_t)(e >> SHOAL_ADDRESS_BITS); }
static inline uint64_t entry_address(uint64_t e) { return e & SHOAL_ADDR_MASK; }

static table_t *table_new(uint32_t bits) {
    if (bits < 1 || bits > 32) return NULL;
    table_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bucket_bits = bits;
    t->mask = (1ULL << bits) - 1;
    size_t n = (size_t)1 << bits;
    t->buckets = aligned_alloc(64, n * sizeof(bucket_t));
    t->sides = calloc(n, sizeof(side_t));
    t->ov_buckets = calloc(OV_MAX_CHUNKS, sizeof(bucket_t *));
    t->ov_sides = calloc(OV_MAX_CHUNKS, sizeof(side_t *));
    if (!t->buckets || !t->sides || !t->ov_buckets || !t->ov_sides) {
        free(t->buckets); free(t->sides); free(t->ov_buckets); free(t->ov_sides); free(t);
        return NULL;
    }
    memset(t->buckets, 0, n * sizeof(bucket_t));
    return t;
}

static void table_free(table_t *t) {
    if (!t) return;
    for (uint32_t c = 0; c < OV_MAX_CHUNKS && t->ov_buckets[c]; c++) {
        free(t->ov_buckets[c]);
        free(t->ov_sides[c]);
    }
    free(t->ov_buckets); free(t->ov_sides); free(t->buckets); free(t->sides); free(t);
}

static inline bucket_t *ov_bucket(table_t *t, uint64_t id, side_t **side) {
    uint64_t i = id - 1;
    *side = &t->ov_sides[i >> OV_CHUNK_BITS][i & (OV_CHUNK - 1)];
    return &t->ov_buckets[i >> OV_CHUNK_BITS][i & (OV_CHUNK - 1)];
}

/* Writer only. Returns a fresh zeroed overflow bucket's id, 0 on failure. */
static uint64_t ov_alloc(table_t *t) {
    uint64_t i = t->ov_used;
    uint64_t c = i >> OV_CHUNK_BITS;
    if (c >= OV_MAX_CHUNKS) return 0;
    if (!t->ov_buckets[c]) {
        bucket_t *b = aligned_alloc(64, OV_CHUNK * sizeof(bucket_t));
        side_t *s = calloc(OV_CHUNK, sizeof(side_t));
        if (!b || !s) { free(b); free(s); return 0; }
        memset(b, 0, OV_CHUNK * sizeof(bucket_t));
        t->ov_sides[c] = s;
        t->ov_buckets[c] = b;
    }
    t->ov_used++;
    return i + 1;
}

/* Writer only: set the chain head for `hash` to `address`; *prev gets the old head (0 if new). */
static int table_upsert(table_t *t, uint64_t hash, uint64_t address, uint64_t *prev) {
    uint16_t tag = tag_of(hash);
    uint32_t hi = hi_of(hash);
    bucket_t *b = &t->buckets[hi & t->mask];
    side_t *s = &t->sides[hi & t->mask];
    uint64_t *free_slot = NULL;
    uint32_t *free_side = NULL;
    for (;;) {
        for (int i = 0; i < ENTRIES; i++) {
            uint64_t e = b->entry[i];
            if (e == 0) {
                if (!free_slot) { free_slot = &b->entry[i]; free_side = &s->hi[i]; }
            } else if (entry_tag(e) == tag && s->hi[i] == hi) {
                if (prev) *prev = entry_address(e);
                __atomic_store_n(&b->entry[i], entry_of(tag, address), __ATOMIC_RELEASE);
                return SHOAL_OK;
            }
        }
        if (!b->overflow) break;
        b = ov_bucket(t, b->overflow, &s);
    }
    if (prev) *prev = 0;
    if (!free_slot) {
        uint64_t id = ov_alloc(t);
        if (!id) return SHOAL_E_NOMEM;
        side_t *ns;
        bucket_t *nb = ov_bucket(t, id, &ns);
        free_slot = &nb->entry[0];
        free_side = &ns->hi[0];
        ns->hi[0] = hi;
        nb->entry[0] = entry_of(tag, address);
        __atomic_store_n(&b->overflow, id, __ATOMIC_RELEASE);
        t->entries++;
        return SHOAL_OK;
    }
    *free_side = hi;
    __atomic_store_n(free_slot, entry_of(tag, address), __ATOMIC_RELEASE);
    t->entries++;
    return SHOAL_OK;
}

static uint64_t table_lookup(table_t *t, uint64_t hash) {
    uint16_t tag = tag_of(hash);
    uint32_t hi = hi_of(hash);
    bucket_t *b = &t->buckets[hi & t->mask];
    side_t *s = &t->sides[hi & t->mask];
    for (;;) {
        for (int i = 0; i < ENTRIES; i++) {
            uint64_t e = __atomic_load_n(&b->entry[i], __ATOMIC_ACQUIRE);
            if (e && entry_tag(e) == tag && s->hi[i] == hi) return entry_address(e);
        }
        uint64_t ov = __atomic_load_n(&b->overflow, __ATOMIC_ACQUIRE);
        if (!ov) return 0;
        b = ov_bucket(t, ov, &s);
    }
}

/* Calls fn for every (hi, entry) in t; writer only. */
typedef int (*entry_fn)(void *ctx, uint32_t hi, uint64_t entry);
static int table_each(table_t *t, entry_fn fn, void *ctx) {
    uint64_t n = t->mask + 1;
    for (uint64_t i = 0; i < n; i++) {
        bucket_t *b = &t->buckets[i];
        side_t *s = &t->sides[i];
        for (;;) {
            for (int j = 0; j < ENTRIES; j++)
                if (b->entry[j]) {
                    int rc = fn(ctx, s->hi[j], b->entry[j]);
                    if (rc) return rc;
                }
            if (!b->overflow) break;
            b = ov_bucket(t, b->overflow, &s);
        }
    }
    return 0;
}

static uint64_t rebuild_hash(uint32_t hi, uint64_t entry) {
    return (entry & ~SHOAL_ADDR_MASK) | ((uint64_t)hi << 16);
}

static int reinsert(void *ctx, uint32_t hi, uint64_t entry) {
    return table_upsert((table_t *)ctx, rebuild_hash(hi, entry), entry_address(entry), NULL);
}

shoal_index *shoal_index_new(uint32_t bucket_bits) {
    shoal_index *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    ix->table = table_new(bucket_bits);
    if (!ix->table) { free(ix); return NULL; }
    return ix;
}

void shoal_index_free(shoal_index *ix) {
    if (!ix) return;
    table_free(ix->table);
    free(ix);
}

static table_t *reader_enter(shoal_index *ix) {
    for (;;) {
        table_t *t = __atomic_load_n(&ix->table, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&t->readers, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&ix->table, __ATOMIC_SEQ_CST) == t) return t;
        __atomic_fetch_sub(&t->readers, 1, __ATOMIC_SEQ_CST);
    }
}

static void reader_exit(table_t *t) { __atomic_fetch_sub(&t->readers, 1, __ATOMIC_SEQ_CST); }

int shoal_index_grow(shoal_index *ix) {
    table_t *old = ix->table;
    if (old->bucket_bits >= 32) return SHOAL_E_NOMEM;
    table_t *t = table_new(old->bucket_bits + 1);
    if (!t) return SHOAL_E_NOMEM;
    if (table_each(old, reinsert, t)) { table_free(t); return SHOAL_E_NOMEM; }
    __atomic_store_n(&ix->table, t, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&old->readers, __ATOMIC_SEQ_CST)) sched_yield();
    table_free(old);
    return SHOAL_OK;
}

uint64_t shoal_index_count_below(shoal_index *ix, uint64_t below) {
    table_t *t = reader_enter(ix);
    uint64_t n = 0, buckets = t->mask + 1;
    for (uint64_t i = 0; i < buckets; i++) {
        bucket_t *b = &t->buckets[i];
        side_t *s = &t->sides[i];
        for (;;) {
            for (int j = 0; j < ENTRIES; j++) {
                uint64_t e = __atomic_load_n(&b->entry[j], __ATOMIC_ACQUIRE);
                if (e && entry_address(e) < below) n++;
            }
            uint64_t ov = __atomic_load_n(&b->overflow, __ATOMIC_ACQUIRE);
            if (!ov) break;
            b = ov_bucket(t, ov, &s);
        }
    }
    reader_exit(t);
    return n;
}

typedef struct { table_t *t; uint64_t below; } prune_ctx;

static int reinsert_live(void *ctx, uint32_t hi, uint64_t entry) {
    prune_ctx *p = ctx;
    if (entry_address(entry) < p->below) return 0;
    return table_upsert(p->t, rebuild_hash(hi, entry), entry_address(entry), NULL);
}

int shoal_index_prune(shoal_index *ix, uint64_t below, uint32_t bucket_bits) {
    table_t *old = ix->table;
    table_t *t = table_new(bucket_bits);
    if (!t) return bucket_bits < 1 || bucket_bits > 32 ? SHOAL_E_ARG : SHOAL_E_NOMEM;
    prune_ctx p = {t, below};
    if (table_each(old, reinsert_live, &p)) { table_free(t); return SHOAL_E_NOMEM; }
    __atomic_store_n(&ix->table, t, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&old->readers, __ATOMIC_SEQ_CST)) sched_yield();
    table_free(old);
    return SHOAL_OK;
}

uint64_t shoal_index_lookup(shoal_index *ix, uint64_t hash) {
    table_t *t = reader_enter(ix);
    uint64_t a = table_lookup(t, hash);
    reader_exit(t);
    return a;
}

uint64_t shoal_index_lookup_writer(shoal_index *ix, uint64_t hash) {
    return table_lookup(ix->table, hash);
}

void shoal_index_prefetch(shoal_index *ix, uint64_t hash) {
    table_t *t = ix->table;
    uint32_t hi = hi_of(hash);
    __builtin_prefetch(&t->buckets[hi & t->mask]);
    __builtin_prefetch(&t->sides[hi & t->mask]);
}

int shoal_index_upsert(shoal_index *ix, uint64_t hash, uint64_t kp_address, uint64_t *prev) {
    if (kp_address == 0 || kp_address > SHOAL_ADDR_MASK) return SHOAL_E_ARG;
    return table_upsert(ix->table, hash, kp_address, prev);
}

void shoal_index_get_stats(shoal_index *ix, shoal_index_stats *out) {
    table_t *t = reader_enter(ix);
    out->buckets = t->mask + 1;
    out->overflow_buckets = t->ov_used;
    out->entries = t->entries;
    uint64_t chunks = (t->ov_used + OV_CHUNK - 1) >> OV_CHUNK_BITS;
    out->bytes = (t->mask + 1) * (sizeof(bucket_t) + sizeof(side_t))
                 + chunks * OV_CHUNK * (sizeof(bucket_t) + sizeof(side_t))
                 + 2 * OV_MAX_CHUNKS * sizeof(void *);
    reader_exit(t);
}

/* Dump format (little-endian): u32 magic, u32 bucket_bits, u64 n_entries,
 * then n_entries x (u32 hi, u64 entry) packed 12 bytes each. Layout-free, so
 * a dump loads into any table geometry. */
#define DUMP_HEADER 16
#define DUMP_ITEM 12

uint64_t shoal_index_dump_bytes(shoal_index *ix) {
    return DUMP_HEADER + ix->table->entries * DUMP_ITEM;
}

typedef struct { char *p; char *end; } dump_ctx;

static int dump_one(void *c, uint32_t hi, uint64_t entry) {
    dump_ctx *d = c;
    if (d->end - d->p < DUMP_ITEM) return 1;
    memcpy(d->p, &hi, 4);
    memcpy(d->p + 4, &entry, 8);
    d->p += DUMP_ITEM;
    return 0;
}

int shoal_index_dump(shoal_index *ix, char *dst, uint64_t cap) {
    table_t *t = ix->table;
    if (cap < shoal_index_dump_bytes(ix)) return SHOAL_E_SPACE;
    uint32_t magic = DUMP_MAGIC, bits = t->bucket_bits;
    memcpy(dst, &magic, 4);
    memcpy(dst + 4, &bits, 4);
    memcpy(dst + 8, &t->entries, 8);
    dump_ctx d = {dst + DUMP_HEADER, dst + cap};
    return table_each(t, dump_one, &d) ? SHOAL_E_SPACE : SHOAL_OK;
}

shoal_index *shoal_index_load(const char *src, uint64_t len, int *err) {
    uint32_t magic, bits;
    uint64_t n;
    *err = SHOAL_E_CORRUPT;
    if (len < DUMP_HEADER) return NULL;
    memcpy(&magic, src, 4);
    memcpy(&bits, src + 4, 4);
    memcpy(&n, src + 8, 8);
    if (magic != DUMP_MAGIC || bits < 1 || bits > 32 || n > (len - DUMP_HEADER) / DUMP_ITEM
        || DUMP_HEADER + n * DUMP_ITEM != len)
        return NULL;
    shoal_index *ix = shoal_index_new(bits);
    if (!ix) { *err = SHOAL_E_NOMEM; return NULL; }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t hi;
        uint64_t e;
        memcpy(&hi, src + DUMP_HEADER + i * DUMP_ITEM, 4);
        memcpy(&e, src + DUMP_HEADER + i * DUMP_ITEM + 4, 8);
        if (entry_address(e) == 0 || table_upsert(ix->table, rebuild_hash(hi, e), entry_address(e), NULL)) {
            shoal_index_free(ix);
            return NULL;
        }
    }
    *err = SHOAL_OK;
    return ix;
}
