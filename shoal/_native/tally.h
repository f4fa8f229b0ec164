/*
 * tally.h -- the value tally's table, shared by its files (not the ABI):
 *   tally.c       the table: add, get, reset, samples, merge
 *   tally_list.c  a PSF's values, largest count first (also as JSON)
 *   tally_page.c  tallying the key pointers of log pages (windows, deltas)
 *   tally_dump.c  checkpoints: dump and load
 * The rules the table keeps are tally.c's.
 */
#ifndef SHOAL_TALLY_H
#define SHOAL_TALLY_H
#include "shoal.h"
#include "internal.h"

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

/* The entry of (psf_id, canon) in tb, or NULL: any thread. */
SHOAL_INTERNAL entry_t *shoal_tally_probe(table_t *tb, uint32_t psf_id, uint64_t hash, const char *canon,
                                          uint32_t len);
/* Writer: note that e's record at kp_addr is its ordinal-th. */
SHOAL_INTERNAL int shoal_tally_add_sample(shoal_tally *t, entry_t *e, uint64_t kp_addr);

#endif
