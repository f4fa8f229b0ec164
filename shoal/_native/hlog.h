/*
 * hlog.h -- how the per-operation files reach the hybrid log's bytes: the
 * per-call block cache, reads of bytes and whole records (read.c), copies
 * out of segment maps under the SIGBUS guard (segmap.c), and chain walks
 * (chain.c). Not part of the Python ABI (shoal.h).
 *
 * The files, one per operation (as FASTER's C# store splits InternalRead,
 * InternalUpsert, ...):
 *   ingest.c  append records at the tail and link them into their chains
 *   read.c    bytes and verified records at addresses (shoal_read)
 *   chain.c   chain walks (shoal_walk), counts in windows and keyed liveness
 *   walk_all.c a whole chain walked in lanes, on one or more threads
 *   fetch.c   a chain walk that reads as it goes (shoal_fetch, _start)
 *   scan.c    records in a buffer of log bytes (shoal_scan, shoal_replay)
 *   segmap.c  segment files mapped read-only, and the SIGBUS guard
 *   gate.c    the reader gate
 *   breaks.c  counting line breaks in read output
 *
 * Concurrency: one writer calls shoal_ingest/shoal_replay (Python's writer
 * lock); any thread may walk, read and scan at the same time. The writer
 * completes a record's bytes, then publishes tail_address (release), then
 * points index entries at its key pointers (release). Readers reach records
 * only through the index or below a tail they loaded, so they never see a
 * half-written record. In-memory reads are validated seqlock-style against
 * frame_page and fall back to the segment file when the frame was recycled.
 *
 * What is called per record or per chain hop lives here as static inline,
 * or is a hidden function (SHOAL_INTERNAL): a direct call, as a static
 * function in one file was.
 */
#ifndef SHOAL_HLOG_H
#define SHOAL_HLOG_H
#include "shoal.h"
#include "internal.h"
#include "record.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* ---- where a log address lives ---------------------------------------------- */

/* The segment holding addr (maybe past n_segment_slots: the caller checks),
 * and addr's offset in that segment's file. */
static inline uint64_t shoal_segment_at(const shoal_log *log, uint64_t addr, uint64_t *offset) {
    uint64_t page = addr >> log->page_bits;
    *offset = ((page & ((1ULL << log->segment_page_bits) - 1)) << log->page_bits)
              | (addr & ((1ULL << log->page_bits) - 1));
    return page >> log->segment_page_bits;
}

/* ---- the per-call block cache ------------------------------------------------- */

#define SHOAL_BLOCK_BYTES 65536

/* Per-call cache of one block read from a segment file: chain walks move
 * backwards through nearby records, so most disk reads hit the same block.
 * It also remembers the walk through segment maps (shoal_map_hint). Owned
 * by one call on one thread; allocated on first need, freed by the call. */
typedef struct {
    uint64_t lo; /* log address of buf[0]; 0 = empty */
    uint32_t len;
    uint64_t map_prev;          /* the last address read through a map; 0: none */
    uint64_t hint_lo, hint_hi;  /* the log range last advised MADV_WILLNEED */
    uint64_t cold_prev;         /* the last cold frame read from its file (log address + 1); 0: none */
    int32_t cold_hint_fd;       /* the cold file and its byte range last advised POSIX_FADV_WILLNEED */
    uint64_t cold_hint_lo, cold_hint_hi;
    char buf[SHOAL_BLOCK_BYTES];
} shoal_block_cache;

static inline shoal_block_cache *shoal_block_cache_of(shoal_block_cache **bcp) {
    if (!*bcp) {
        shoal_block_cache *bc = malloc(sizeof *bc);
        if (!bc) return NULL;
        bc->lo = 0;
        bc->map_prev = bc->hint_lo = bc->hint_hi = 0;
        bc->cold_prev = bc->cold_hint_lo = bc->cold_hint_hi = 0;
        bc->cold_hint_fd = -1;
        *bcp = bc;
    }
    return *bcp;
}

/* ---- segment maps (segmap.c) ---------------------------------------------------- */

/* The cold view of the segment holding addr (store/cold.py), or NULL. Its
 * first raw_bytes (load it with acquire) are in frames; the raw file's pages
 * there are, or will be, a hole. */
static inline const shoal_cold *shoal_cold_at(shoal_log *log, uint64_t addr) {
    if (!log->cold) return NULL;
    uint64_t off;
    uint64_t seg = shoal_segment_at(log, addr, &off);
    if (seg >= log->n_segment_slots) return NULL;
    return LOAD(&log->cold[seg]);
}

/* Log bytes [addr, addr + n) in a published map, or NULL (also where the
 * segment's pages are cold: the map holds a hole there). */
static inline const char *shoal_map_view(shoal_log *log, uint64_t addr, size_t n) {
    if (!log->segment_maps) return NULL;
    const shoal_cold *cold = shoal_cold_at(log, addr);
    if (cold && addr - cold->address < LOAD(&cold->raw_bytes)) return NULL;
    uint64_t off;
    uint64_t seg = shoal_segment_at(log, addr, &off);
    if (seg >= log->n_segment_slots) return NULL;
    const char *m = LOAD(&log->segment_maps[seg]);
    if (!m) return NULL;
    if (off + n > LOAD(&log->segment_map_bytes[seg])) return NULL;
    return m + off;
}

/* The thread's guard around a read from a segment map: segmap.c's SIGBUS
 * handler jumps to it when a map's page faults. A reader does
 *     sigjmp_buf env;
 *     if (sigsetjmp(env, 0)) return SHOAL_E_IO;
 *     shoal_map_guard_enter(&env); ...reads from the map...; shoal_map_guard_leave();
 * and must not return between enter and leave. */
extern __thread sigjmp_buf *shoal_map_guard SHOAL_INTERNAL;

static inline void shoal_map_guard_enter(sigjmp_buf *env) {
    shoal_map_guard = env;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static inline void shoal_map_guard_leave(void) {
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    shoal_map_guard = NULL;
}

/* Copy n bytes out of a map: SHOAL_OK, or SHOAL_E_IO if its pages fault. */
SHOAL_INTERNAL int shoal_map_copy(char *dst, const char *src, size_t n);

/* A clock for telling a map read that met the device from one that did not:
 * a read that took SHOAL_SLOW_TICKS or more went to the device. */
#if SHOAL_X86
#define SHOAL_SLOW_TICKS 40000 /* TSC ticks: 10-20 us at 2-4 GHz */
static inline uint64_t shoal_ticks(void) { return __rdtsc(); }
#else
#include <time.h>
#define SHOAL_SLOW_TICKS 15000 /* ns */
static inline uint64_t shoal_ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

/* Whether a map read at a moves the walk to another 4 KiB page (else it is
 * the same record, or its neighbour): only such reads are timed for
 * shoal_map_hint. */
static inline int shoal_page_move(shoal_block_cache **bcp, uint64_t a) {
    return bcp && (!*bcp || (a >> 12) != ((*bcp)->map_prev >> 12));
}

/* After a map read at a (a page move) that took `took` ticks: ask the
 * kernel to read ahead when a dense walk meets the device. */
SHOAL_INTERNAL void shoal_map_hint(shoal_log *log, uint64_t a, uint64_t took, shoal_block_cache **bcp);

/* ---- reads (read.c) ----------------------------------------------------------------- */

/* Copy log bytes [addr, addr + n) (within one page) into dst: from its
 * frame, a segment map, or the file. *bcp is the caller's per-call state
 * (NULL bcp: none). SHOAL_OK, SHOAL_E_IO, or SHOAL_E_CORRUPT (nothing there). */
SHOAL_INTERNAL int shoal_read_bytes(shoal_log *log, uint64_t addr, char *dst, size_t n, shoal_block_cache **bcp);

/* Copy the verified record at `a` (or only its payload) to dst, which has
 * `room` bytes; *len gets the byte count. SHOAL_OK, SHOAL_TOMBSTONE
 * (payload_only: a tombstone, nothing copied), SHOAL_E_CORRUPT (no valid
 * record there), SHOAL_E_IO, or SHOAL_E_SPACE (needs *len bytes of room). */
SHOAL_INTERNAL int shoal_read_record(shoal_log *log, uint64_t a, uint64_t tail, char *dst, uint64_t room,
                                     int payload_only, uint32_t *len, shoal_block_cache **bcp);

/* Room for one payload in out when a separator byte follows each. */
static inline uint64_t shoal_room_for(uint64_t cap, uint64_t used, int sep) {
    uint64_t left = cap - used;
    return sep ? (left ? left - 1 : 0) : left;
}

/* Close a payload of n bytes just copied to out[*used..]: the separator
 * after it. */
static inline void shoal_end_payload(char *out, uint64_t *used, uint32_t n, int sep) {
    *used += n;
    if (sep) out[(*used)++] = (char)sep;
}

/* Start loading the in-memory bytes at and after address a (the next record
 * to read, or the next key pointer of a chain: its header, values and
 * payload start), so that miss overlaps the copy of the current record. */
#define SHOAL_PREFETCH_LINES 4 /* 16 and 32 measured no better */
static inline void shoal_prefetch_near(const shoal_log *log, uint64_t a) {
    if (!a) return;
    uint64_t page = a >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) != (int64_t)page) return;
    uint64_t off = a & ((1ULL << log->page_bits) - 1);
    const char *p = log->frames[f] + off;
    for (int k = 0; k < SHOAL_PREFETCH_LINES; k++) __builtin_prefetch(p + 64 * k);
}

/* ---- chains (chain.c) --------------------------------------------------------------- */

/* A chain being walked newest to oldest: the (psf_id, canon, hash) it
 * follows, the record range [lo, hi) it emits, and where it stops (begin). */
typedef struct {
    uint32_t psf_id;
    uint64_t hash;
    const char *canon;
    uint32_t canon_len;
    uint64_t lo, hi, begin;
} shoal_chain;

/* Whether key pointer kp of the record at rec_addr holds canon: 1, 0, or an
 * error from reading the value. */
SHOAL_INTERNAL int shoal_value_equals(shoal_log *log, uint64_t rec_addr, const shoal_key_pointer *kp,
                                      const char *canon, uint32_t canon_len, shoal_block_cache **bc);

/* From the key pointer at *kp_addr on, find the next record of chain c.
 * Returns 1 with *rec_addr set, *kp_addr at its key pointer and *prev at the
 * one after it; 0 when the chain ends (it runs out, or drops below begin or
 * lo); or an error, *kp_addr at the key pointer that failed. Key pointers of
 * other (psf, value) pairs sharing the index entry are skipped. */
SHOAL_INTERNAL int shoal_chain_next(shoal_log *log, const shoal_chain *c, uint64_t *kp_addr, uint64_t *rec_addr,
                                    uint64_t *prev, shoal_block_cache **bc);

/* Whether the record at rec has, for each of the n conditions, a key pointer
 * of its PSF holding its value: 1 or 0, or an error (SHOAL_E_CORRUPT when
 * its header is not a valid record's below tail, SHOAL_E_IO). */
SHOAL_INTERNAL int shoal_has_all(shoal_log *log, uint64_t rec, uint64_t tail, const shoal_cond *conds, uint32_t n,
                                 shoal_block_cache **bc);

#endif
