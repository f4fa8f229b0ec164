/*
 * log.c -- the per-record work of the hybrid log: append (ingest), chain
 * walks, record reads, scans and recovery replay.
 *
 * Record layout (shoal.h): header | key pointers | values area | payload,
 * each part padded to 8 bytes. Key pointers of one (psf, value) are linked
 * newest-to-oldest through prev_psf; the index holds each chain's head.
 *
 * Concurrency: one writer calls shoal_ingest/shoal_replay (Python's writer
 * lock); any thread may walk, read and scan at the same time. The writer
 * completes a record's bytes, then publishes tail_address (release), then
 * points index entries at its key pointers (release). Readers reach records
 * only through the index or below a tail they loaded, so they never see a
 * half-written record. In-memory reads are validated seqlock-style against
 * frame_page and fall back to the segment file when the frame was recycled.
 */
#define _GNU_SOURCE
#include "shoal.h"
#include "internal.h"
#include "record.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* ---- reading log bytes ---------------------------------------------------- */

#define BLOCK_BYTES 65536
#define SMALL_BLOCK_BYTES 4096

/* Per-call cache of one block read from a segment file: chain walks move
 * backwards through nearby records, so most disk reads hit the same block.
 * A miss reads a 4 KiB block, or a 64 KiB one when it lands just below the
 * previous block (a dense chain): sparse chains (point queries) do not pay
 * for 64 KiB per hop, dense ones make few calls. */
typedef struct {
    uint64_t lo; /* log address of buf[0]; 0 = empty */
    uint32_t len;
    uint64_t map_prev;          /* the last address read through a map; 0: none */
    uint64_t hint_lo, hint_hi;  /* the log range last advised MADV_WILLNEED */
    char buf[BLOCK_BYTES];
} block_cache;

static block_cache *block_cache_of(block_cache **bcp) {
    if (!*bcp) {
        block_cache *bc = malloc(sizeof *bc);
        if (!bc) return NULL;
        bc->lo = 0;
        bc->map_prev = bc->hint_lo = bc->hint_hi = 0;
        *bcp = bc;
    }
    return *bcp;
}

static int pread_full(int fd, char *dst, size_t n, uint64_t off) {
    while (n) {
        ssize_t r = pread(fd, dst, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return SHOAL_E_IO;
        }
        if (r == 0) return SHOAL_E_CORRUPT; /* short file: no record here */
        dst += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return SHOAL_OK;
}

/* The segment file holding addr and addr's offset in it; -1 if there is none. */
static int segment_of(shoal_log *log, uint64_t addr, uint64_t *offset) {
    uint64_t page = addr >> log->page_bits;
    uint64_t seg = page >> log->segment_page_bits;
    if (seg >= log->n_segment_slots) return -1;
    *offset = ((page & ((1ULL << log->segment_page_bits) - 1)) << log->page_bits)
              | (addr & ((1ULL << log->page_bits) - 1));
    return LOAD(&log->segment_fds[seg]);
}

static int disk_read(shoal_log *log, uint64_t addr, char *dst, size_t n) {
    uint64_t off;
    int fd = segment_of(log, addr, &off);
    if (fd < 0) return SHOAL_E_CORRUPT;
    return pread_full(fd, dst, n, off);
}

/* ---- mapped segments ------------------------------------------------------ */

/* Segment files are mapped read-only, and the part of each whose pages are
 * written is published (segment_map_bytes), so a read below head is a copy
 * from the page cache, not a pread each.
 * A fault in a map (the file was truncated under us, or the device failed)
 * raises SIGBUS: the handler jumps back to the copy that faulted, which
 * reports SHOAL_E_IO as a failed pread would. A SIGBUS outside such a copy
 * goes to the handler that was there before. */
static __thread sigjmp_buf *tl_map_guard;
static struct sigaction g_prev_sigbus;
static pthread_once_t g_sigbus_once = PTHREAD_ONCE_INIT;
static int g_sigbus_ready;

static void on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    sigjmp_buf *guard = tl_map_guard;
    /* Inside a map copy, whoever sent it: a handler installed after ours
     * (Python's faulthandler) may have met the fault first and raised the
     * signal again after restoring ours. */
    if (guard) {
        tl_map_guard = NULL;
        /* The jump leaves the handler (or a chain of them) without restoring
         * the signal mask (sigsetjmp(env, 0): no syscall per copy), and a
         * handler installed without SA_NODEFER left SIGBUS blocked. */
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        siglongjmp(*guard, 1);
    }
    /* Not ours: restore the previous handler. A fault repeats on return and
     * meets it; a signal sent by kill is raised again. */
    sigaction(SIGBUS, &g_prev_sigbus, NULL);
    if (!si || si->si_code <= 0) raise(sig);
}

static void install_sigbus(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER; /* NODEFER: not blocked after the jump */
    sigemptyset(&sa.sa_mask);
    g_sigbus_ready = sigaction(SIGBUS, &sa, &g_prev_sigbus) == 0;
}

/* Copy n bytes out of a map: SHOAL_OK, or SHOAL_E_IO if its pages fault. */
static int map_copy(char *dst, const char *src, size_t n) {
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) return SHOAL_E_IO;
    tl_map_guard = &env;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(dst, src, n);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    tl_map_guard = NULL;
    return SHOAL_OK;
}

/* Log bytes [addr, addr + n) in a published map, or NULL. */
static const char *map_view(shoal_log *log, uint64_t addr, size_t n) {
    if (!log->segment_maps) return NULL;
    uint64_t page = addr >> log->page_bits;
    uint64_t seg = page >> log->segment_page_bits;
    if (seg >= log->n_segment_slots) return NULL;
    const char *m = LOAD(&log->segment_maps[seg]);
    if (!m) return NULL;
    uint64_t off = ((page & ((1ULL << log->segment_page_bits) - 1)) << log->page_bits)
                   | (addr & ((1ULL << log->page_bits) - 1));
    if (off + n > LOAD(&log->segment_map_bytes[seg])) return NULL;
    return m + off;
}

/* Maps fault one page at a time (MADV_RANDOM), which suits hops across the
 * log. When a dense walk (moves between 4 KiB pages of at most DENSE_GAP)
 * meets a page that was not in memory (the copy took SLOW_TICKS or more: a
 * read from the device), it asks the kernel to read ahead HINT_BYTES in its
 * direction, so a cold dense answer is read in large requests, not a page
 * per fault. Warm walks never ask (a hint costs microseconds even then). */
#define DENSE_GAP (16 * 1024)
#define HINT_BYTES (256 * 1024)

#if SHOAL_X86
#define SLOW_TICKS 40000 /* TSC ticks: 10-20 us at 2-4 GHz */
static inline uint64_t ticks(void) { return __rdtsc(); }
#else
#include <time.h>
#define SLOW_TICKS 15000 /* ns */
static inline uint64_t ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

/* Whether a map read at a moves the walk to another 4 KiB page (else it is
 * the same record, or its neighbour): only such reads are timed for map_hint. */
static inline int page_move(block_cache **bcp, uint64_t a) {
    return bcp && (!*bcp || (a >> 12) != ((*bcp)->map_prev >> 12));
}

/* After a map read at a (a page_move) that took `took` ticks. */
static void map_hint(shoal_log *log, uint64_t a, uint64_t took, block_cache **bcp) {
    block_cache *bc = block_cache_of(bcp);
    if (!bc) return;
    uint64_t prev = bc->map_prev;
    bc->map_prev = a;
    if (took < SLOW_TICKS || !prev || (a < prev ? prev - a : a - prev) > DENSE_GAP) return;
    if (a >= bc->hint_lo && a < bc->hint_hi) return;
    uint64_t seg_bytes = 1ULL << (log->page_bits + log->segment_page_bits);
    uint64_t seg = a / seg_bytes, seg_lo = seg * seg_bytes;
    if (seg >= log->n_segment_slots) return;
    char *m = LOAD(&log->segment_maps[seg]);
    if (!m) return;
    uint64_t valid = LOAD(&log->segment_map_bytes[seg]);
    uint64_t lo, hi;
    if (a < prev) { /* newest first: downwards */
        hi = a + 4096;
        lo = hi - seg_lo > HINT_BYTES ? hi - HINT_BYTES : seg_lo;
    } else {
        lo = a;
        hi = a + HINT_BYTES;
    }
    lo &= ~(uint64_t)4095;
    hi = (hi + 4095) & ~(uint64_t)4095;
    if (hi > seg_lo + valid) hi = seg_lo + valid;
    if (hi <= lo) return;
    madvise(m + (lo - seg_lo), (size_t)(hi - lo), MADV_WILLNEED);
    bc->hint_lo = lo;
    bc->hint_hi = hi;
}

int shoal_segment_map(shoal_log *log, uint32_t seg, int fd, uint64_t map_len, uint64_t valid) {
    if (!log->segment_maps || seg >= log->n_segment_slots || !map_len || valid > map_len
        || sizeof(void *) < 8 || LOAD(&log->segment_maps[seg]))
        return SHOAL_E_ARG;
    pthread_once(&g_sigbus_once, install_sigbus);
    if (!g_sigbus_ready) return SHOAL_E_IO;
    void *m = mmap(NULL, (size_t)map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return SHOAL_E_IO;
    /* A fault reads the page it needs, not the device's read-ahead window
     * around it (8 MiB on some virtual disks): chain walks hop. */
    madvise(m, (size_t)map_len, MADV_RANDOM);
    STORE(&log->segment_map_bytes[seg], valid);
    STORE(&log->segment_maps[seg], (char *)m);
    return SHOAL_OK;
}

void shoal_segment_extend(shoal_log *log, uint32_t seg, uint64_t valid) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return;
    if (valid > LOAD(&log->segment_map_bytes[seg])) STORE(&log->segment_map_bytes[seg], valid);
}

void *shoal_segment_unpublish(shoal_log *log, uint32_t seg) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return NULL;
    return __atomic_exchange_n(&log->segment_maps[seg], NULL, __ATOMIC_ACQ_REL);
}

void shoal_segment_unmap(void *map, uint64_t bytes) {
    if (map) munmap(map, (size_t)bytes);
}

void shoal_segment_map_dontneed(shoal_log *log, uint32_t seg) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return;
    char *m = LOAD(&log->segment_maps[seg]);
    uint64_t valid = LOAD(&log->segment_map_bytes[seg]);
    if (m && valid) madvise(m, (size_t)valid, MADV_DONTNEED);
}

/* Copy log bytes [addr, addr + n) (within one page) into dst: from its
 * frame, a segment map, or the file. *bcp is the caller's per-call state
 * (the pread block cache and map_hint's walk), allocated on first need
 * (NULL bcp: none). */
static int read_bytes(shoal_log *log, uint64_t addr, char *dst, size_t n, block_cache **bcp) {
    uint64_t page = addr >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    int64_t p1 = LOAD(&log->frame_page[f]);
    if (p1 == (int64_t)page) {
        memcpy(dst, log->frames[f] + (addr & ((1ULL << log->page_bits) - 1)), n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) == p1) return SHOAL_OK;
    }
    const char *view = map_view(log, addr, n);
    if (view) {
        if (!page_move(bcp, addr)) return map_copy(dst, view, n);
        uint64_t t0 = ticks();
        int rc = map_copy(dst, view, n);
        map_hint(log, addr, ticks() - t0, bcp);
        return rc;
    }
    if (bcp && n <= BLOCK_BYTES) {
        block_cache *bc = block_cache_of(bcp);
        if (!bc) return SHOAL_E_NOMEM;
        if (!(bc->lo && addr >= bc->lo && addr + n <= bc->lo + bc->len)) {
            uint64_t page_size = 1ULL << log->page_bits;
            uint64_t block = (bc->lo && addr < bc->lo && bc->lo - addr <= BLOCK_BYTES) ? BLOCK_BYTES
                                                                                     : SMALL_BLOCK_BYTES;
            if (n > block) block = BLOCK_BYTES;
            uint64_t lo = addr & ~(block - 1);
            uint64_t page_lo = addr & ~(page_size - 1);
            if (lo < page_lo) lo = page_lo;
            uint64_t hi = lo + block;
            if (hi > page_lo + page_size) hi = page_lo + page_size;
            if (addr + n > hi) return disk_read(log, addr, dst, n);
            /* The block may run past the end of the segment file (last page
             * partially flushed): read what is there. */
            uint64_t want = hi - lo, off;
            int fd = segment_of(log, lo, &off);
            if (fd < 0) return SHOAL_E_CORRUPT;
            uint64_t got = 0;
            while (got < want) {
                ssize_t r = pread(fd, bc->buf + got, want - got, (off_t)(off + got));
                if (r < 0) {
                    if (errno == EINTR) continue;
                    bc->lo = 0;
                    return SHOAL_E_IO;
                }
                if (r == 0) break;
                got += (uint64_t)r;
            }
            bc->lo = lo;
            bc->len = (uint32_t)got;
            if (addr + n > lo + got) { bc->lo = 0; return SHOAL_E_CORRUPT; }
        }
        memcpy(dst, bc->buf + (addr - bc->lo), n);
        return SHOAL_OK;
    }
    return disk_read(log, addr, dst, n);
}

/* ---- ingest --------------------------------------------------------------- */

#define MAX_PLAN 4096

int shoal_ingest(shoal_ingest_job *job, const shoal_psfset *set, shoal_log *log, shoal_index *index) {
    const uint64_t page_size = 1ULL << log->page_bits;
    const uint64_t page_mask = page_size - 1;
    shoal_kp_plan *plan = malloc(sizeof(shoal_kp_plan) * MAX_PLAN);
    if (!plan) return SHOAL_E_NOMEM;
    int rc = SHOAL_OK;

    size_t frame_pos = (size_t)job->frame_pos;
    for (uint32_t i = job->next_span;; i++) {
        if (i >= job->n_spans) {
            if (!job->frame || job->n_spans >= job->span_cap || frame_pos >= job->frame_stop ||
                !shoal_ndjson_next((const uint8_t *)job->buf, (size_t)job->frame_len, (int)job->frame_final,
                                   &frame_pos, &job->frame_line, &job->spans[job->n_spans]))
                break;
            job->n_spans++;
        }
        const shoal_span *sp = &job->spans[i];
        shoal_rec_result *res = &job->results[i];
        uint32_t first_extra = job->next_extra;
        uint32_t extra_end = first_extra;
        while (extra_end < job->n_extras && job->extras[extra_end].rec == i) extra_end++;
        res->address = 0;
        res->err_off = 0;
        res->status = SHOAL_OK;
        job->text_bytes += sp->len;

        if (sp->status != SHOAL_OK) { res->status = sp->status; goto reject; }
        if (sp->len > job->max_record_bytes || sp->len >= page_size) {
            res->status = SHOAL_E_TOO_LARGE;
            goto reject;
        }
        const char *text = job->buf + sp->start;
        uint32_t text_len = (uint32_t)sp->len;
        size_t err_off = 0;
        int prc = shoal_parse(text, text_len, &set->trie, job->slots, &err_off);
        if (prc != SHOAL_OK) {
            res->status = prc;
            res->err_off = (uint32_t)err_off;
            goto reject;
        }

        /* Evaluate programs; canonical bytes of every value go to scratch. */
        uint32_t n_kps = 0;
        uint64_t scratch_used = 0, values_bytes = 0;
        for (uint32_t p = 0; p < (job->tombstones ? 0 : set->n_progs); p++) {
            shoal_val v;
            int erc = shoal_eval(set, p, text, job->slots, &v);
            if (erc != SHOAL_OK) { rc = erc; goto out; }
            if (p == 0 && set->key_required && !(v.type == SHOAL_T_STRING || v.type == SHOAL_T_NUMBER)) {
                res->status = SHOAL_E_NO_KEY;
                goto reject;
            }
            if (!(v.type == SHOAL_T_STRING || v.type == SHOAL_T_NUMBER || v.type == SHOAL_T_TRUE))
                continue;
            if (n_kps >= MAX_PLAN) { res->status = SHOAL_E_TOO_MANY_KPS; goto reject; }
            int64_t cl = shoal_val_canon(set, text, &v, job->scratch + scratch_used,
                                         job->scratch_bytes - scratch_used);
            if (cl == SHOAL_E_SPACE) { res->status = SHOAL_E_TOO_LARGE; goto reject; }
            if (cl < 0) { rc = (int)cl; goto out; }
            if (cl == 0) continue;
            shoal_kp_plan *k = &plan[n_kps++];
            k->psf_id = set->progs[p].psf_id;
            k->hash = shoal_hash(k->psf_id, job->scratch + scratch_used, (size_t)cl);
            if (v.origin == SHOAL_ORIGIN_RECORD && v.type == SHOAL_T_STRING && !(v.flags & SHOAL_VF_ESCAPED)) {
                k->kind = SHOAL_KP_SPAN;
                k->off = v.start + 1;
                k->len = v.len - 2;
            } else {
                k->kind = SHOAL_KP_CANON;
                k->off = (uint32_t)scratch_used; /* the encoder copies it to the values area */
                k->len = (uint32_t)cl;
                values_bytes += (uint64_t)cl;
            }
            scratch_used += (uint64_t)cl;
        }
        for (uint32_t e = first_extra; e < extra_end; e++) {
            const shoal_extra *x = &job->extras[e];
            if (n_kps >= MAX_PLAN) { res->status = SHOAL_E_TOO_MANY_KPS; goto reject; }
            if (scratch_used + x->len > job->scratch_bytes) { res->status = SHOAL_E_TOO_LARGE; goto reject; }
            memcpy(job->scratch + scratch_used, job->extra_pool + x->off, x->len);
            shoal_kp_plan *k = &plan[n_kps++];
            k->psf_id = x->psf_id;
            k->hash = shoal_hash(x->psf_id, job->scratch + scratch_used, x->len);
            k->kind = SHOAL_KP_CANON;
            k->off = (uint32_t)scratch_used;
            k->len = x->len;
            values_bytes += x->len;
            scratch_used += x->len;
        }

        uint64_t size = shoal_record_bytes(n_kps, values_bytes, text_len);
        if (size > page_size || size > 0xFFFFFFFFull || values_bytes > 0xFFFFFFFFull) {
            res->status = SHOAL_E_TOO_LARGE;
            goto reject;
        }
        if (job->dry_run) {
            job->next_extra = extra_end;
            continue;
        }

        uint64_t tail = LOAD(&log->tail_address);
        uint64_t page = tail >> log->page_bits;
        char *frame = log->frames[page % log->n_frames];
        /* Turn the page when the record does not fit, or when the last record
         * ended exactly at the page end (the next page is not installed). */
        if ((tail & page_mask) + size > page_size || !frame
            || LOAD(&log->frame_page[page % log->n_frames]) != (int64_t)page) {
            job->next_span = i;
            job->next_extra = first_extra;
            job->text_bytes -= sp->len; /* counted again when the record is retried */
            rc = SHOAL_NEED_PAGE;
            goto out;
        }
        char *rec = frame + (tail & page_mask);

        /* Each key pointer links to its chain's current head. */
        for (uint32_t k = 0; k < n_kps; k++) plan[k].prev = shoal_index_lookup_writer(index, plan[k].hash);
        shoal_record_encode(rec, shoal_record_tag(log->tag_key, tail), job->tombstones ? SHOAL_RF_TOMBSTONE : 0,
                            plan, n_kps, job->scratch, values_bytes, text, text_len);

        STORE(&log->tail_address, tail + size);
        for (uint32_t k = 0; k < n_kps; k++) {
            uint64_t kp_addr = tail + shoal_kp_offset(k);
            int urc = shoal_index_upsert(index, plan[k].hash, kp_addr, NULL);
            if (urc != SHOAL_OK) { rc = urc; job->next_span = i + 1; job->next_extra = extra_end; goto out; }
        }
        res->address = tail;
        if (!job->first_address) job->first_address = tail;
        job->last_address = tail;
        job->appended++;
        log->records_appended++;
        job->bytes_appended += size;
        job->next_extra = extra_end;
        continue;
    reject:
        job->rejected++;
        job->rejects[job->n_rejects++] = i;
        job->next_extra = extra_end;
    }
    job->next_span = job->n_spans;
out:
    job->frame_pos = frame_pos;
    free(plan);
    return rc;
}

/* ---- chain walks ------------------------------------------------------------ */

static int value_equals(shoal_log *log, uint64_t rec_addr, const shoal_key_pointer *kp,
                        const char *canon, uint32_t canon_len, block_cache **bc) {
    const char *want = canon;
    uint32_t want_len = canon_len;
    if (kp->value_kind == SHOAL_KP_SPAN) {
        if (canon_len == 0 || canon[0] != 's') return 0;
        want++;
        want_len--;
    }
    if (kp->value_len != want_len) return 0;
    char buf[512];
    uint64_t a = rec_addr + kp->value_off;
    uint32_t done = 0;
    while (done < want_len) {
        uint32_t n = want_len - done < sizeof buf ? want_len - done : (uint32_t)sizeof buf;
        int rc = read_bytes(log, a + done, buf, n, bc);
        if (rc != SHOAL_OK) return rc;
        if (memcmp(buf, want + done, n) != 0) return 0;
        done += n;
    }
    return 1;
}

/* A chain being walked newest to oldest: the (psf_id, canon, hash) it
 * follows, the record range [lo, hi) it emits, and where it stops (begin). */
typedef struct {
    uint32_t psf_id;
    uint64_t hash;
    const char *canon;
    uint32_t canon_len;
    uint64_t lo, hi, begin;
} chain;

/* From the key pointer at *kp_addr on, find the next record of chain c.
 * Returns 1 with *rec_addr set, *kp_addr at its key pointer and *prev at the
 * one after it; 0 when the chain ends (it runs out, or drops below begin or
 * lo); or an error, *kp_addr at the key pointer that failed. Key pointers of
 * other (psf, value) pairs sharing the index entry are skipped. */
static int chain_next(shoal_log *log, const chain *c, uint64_t *kp_addr, uint64_t *rec_addr, uint64_t *prev,
                      block_cache **bc) {
    uint64_t a = *kp_addr;
    while (a && a >= c->begin) {
        shoal_key_pointer kp;
        *kp_addr = a;
        int r = read_bytes(log, a, (char *)&kp, sizeof kp, bc);
        if (r != SHOAL_OK) return r;
        uint64_t rec = shoal_kp_record(a, &kp);
        uint64_t next = shoal_kp_prev(kp.prev_psf);
        if (rec < c->lo) return 0;
        if (next >= a) return SHOAL_E_CORRUPT; /* chains only point backwards */
        if (shoal_kp_psf(kp.prev_psf) == c->psf_id && kp.hash32 == (uint32_t)c->hash && rec < c->hi) {
            int eq = value_equals(log, rec, &kp, c->canon, c->canon_len, bc);
            if (eq < 0) return eq;
            if (eq) {
                *rec_addr = rec;
                *prev = next;
                return 1;
            }
        }
        a = next;
    }
    return 0;
}

int shoal_walk(shoal_walk_job *job, shoal_log *log, shoal_index *index) {
    job->n_out = 0;
    job->err = SHOAL_OK;
    if (job->done) return SHOAL_OK;
    chain c = {job->psf_id, job->hash, job->canon, job->canon_len, job->lo, job->hi,
               LOAD(&log->begin_address)};
    uint64_t kp_addr = job->next_kp ? job->next_kp : shoal_index_lookup(index, job->hash);
    block_cache *bc = NULL;
    int rc = SHOAL_OK;
    uint64_t rec_addr, prev;
    int r;
    while ((r = chain_next(log, &c, &kp_addr, &rec_addr, &prev, &bc)) == 1) {
        job->out[job->n_out++] = rec_addr;
        kp_addr = prev;
        if (job->n_out == job->cap && prev) {
            job->next_kp = prev;
            free(bc);
            return SHOAL_OUT_FULL;
        }
    }
    if (r < 0) { job->err = r; job->err_address = kp_addr; rc = r; }
    job->done = 1;
    job->next_kp = 0;
    free(bc);
    return rc;
}

/* ---- keyed stores: liveness ----------------------------------------------- */

/* The newest record on the key chain of (canon, hash), or 0 if none in [begin, tail). */
static int newest_version(shoal_log *log, shoal_index *index, const char *canon, uint32_t canon_len,
                          uint64_t hash, uint64_t begin, uint64_t *out, block_cache **bc) {
    chain c = {SHOAL_KEY_PSF_ID, hash, canon, canon_len, 0, UINT64_MAX, begin};
    uint64_t kp_addr = shoal_index_lookup(index, hash), prev;
    *out = 0;
    int r = chain_next(log, &c, &kp_addr, out, &prev, bc);
    return r < 0 ? r : SHOAL_OK;
}

int shoal_live(shoal_live_job *job, shoal_log *log, shoal_index *index) {
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    block_cache *bc = NULL;
    char *canon = NULL;
    uint32_t canon_cap = 0;
    int rc = SHOAL_OK;
    job->err = SHOAL_OK;
    for (uint32_t i = 0; i < job->n; i++) {
        uint64_t a = job->addrs[i];
        job->live[i] = 0;
        if (!shoal_record_address_ok(a, begin, tail, log->page_bits)) continue;
        shoal_record_header h;
        shoal_key_pointer kp;
        int r = read_bytes(log, a, (char *)&h, sizeof h, &bc);
        if (r == SHOAL_OK && (!shoal_header_ok(&h, a, log->page_bits, tail) || h.n_kps == 0)) continue;
        if (r == SHOAL_OK) r = read_bytes(log, a + shoal_kp_offset(0), (char *)&kp, sizeof kp, &bc);
        if (r == SHOAL_E_IO) { rc = r; job->err = r; job->err_address = a; break; }
        if (r != SHOAL_OK || (h.flags & SHOAL_RF_TOMBSTONE)) continue;
        if (shoal_kp_psf(kp.prev_psf) != SHOAL_KEY_PSF_ID
            || kp.value_off + (uint64_t)kp.value_len > h.size) continue;
        uint32_t need = kp.value_len + 1;
        if (need > canon_cap) {
            char *n = realloc(canon, need);
            if (!n) { rc = SHOAL_E_NOMEM; job->err = rc; break; }
            canon = n;
            canon_cap = need;
        }
        uint32_t cl = 0;
        if (kp.value_kind == SHOAL_KP_SPAN) canon[cl++] = 's';
        r = read_bytes(log, a + kp.value_off, canon + cl, kp.value_len, &bc);
        if (r == SHOAL_E_IO) { rc = r; job->err = r; job->err_address = a; break; }
        if (r != SHOAL_OK) continue;
        cl += kp.value_len;
        uint64_t hash = shoal_hash(SHOAL_KEY_PSF_ID, canon, cl);
        if ((uint32_t)hash != kp.hash32) continue;
        uint64_t newest = 0;
        r = newest_version(log, index, canon, cl, hash, begin, &newest, &bc);
        if (r == SHOAL_E_IO) { rc = r; job->err = r; job->err_address = a; break; }
        job->live[i] = (r == SHOAL_OK && newest == a);
    }
    free(canon);
    free(bc);
    return rc;
}

/* ---- record reads ---------------------------------------------------------- */

/* Copy the verified record at `a` (or only its payload) to dst, which has
 * `room` bytes; *len gets the byte count. In memory, the header is checked
 * on the frame and the bytes copied once, then the frame is re-checked
 * (seqlock); otherwise the record is read from its segment file and its
 * checksum verified. Returns
 * SHOAL_OK, SHOAL_E_CORRUPT (no valid record there), SHOAL_E_IO, or
 * SHOAL_E_SPACE (needs *len bytes of room). */
/* read_one from a segment map, under one fault guard: the checksum is taken
 * on the map and only what the caller keeps is copied. -1: the record is not
 * (wholly) in a published map; read it some other way. */
static int read_one_mapped(shoal_log *log, uint64_t a, uint64_t tail, char *dst, uint64_t room, int payload_only,
                           uint32_t *len, block_cache **bc) {
    const char *rec = map_view(log, a, SHOAL_HEADER_BYTES);
    if (!rec) return -1;
    int timed = page_move(bc, a);
    uint64_t t0 = timed ? ticks() : 0;
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) return SHOAL_E_IO;
    tl_map_guard = &env;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int rc;
    shoal_record_header h;
    memcpy(&h, rec, sizeof h);
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) {
        rc = SHOAL_E_CORRUPT;
    } else if (!map_view(log, a, h.size)) {
        rc = -1;
    } else {
        uint64_t start = payload_only ? shoal_payload_offset(&h) : 0;
        uint32_t n = payload_only ? h.payload_bytes : h.size;
        if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) n = 0;
        if (n > room) {
            *len = n;
            rc = SHOAL_E_SPACE;
        } else if (shoal_crc32c(0, rec + 4, shoal_payload_end(&h) - 4) != h.crc) {
            rc = SHOAL_E_CORRUPT;
        } else if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) {
            *len = 0;
            rc = SHOAL_TOMBSTONE;
        } else {
            memcpy(dst, rec + start, n);
            *len = n;
            rc = SHOAL_OK;
        }
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    tl_map_guard = NULL;
    if (timed) map_hint(log, a, ticks() - t0, bc);
    return rc;
}

static int read_one(shoal_log *log, uint64_t a, uint64_t tail, char *dst, uint64_t room, int payload_only,
                    uint32_t *len, block_cache **bc) {
    uint64_t page_mask = (1ULL << log->page_bits) - 1;
    uint64_t page = a >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    shoal_record_header h;
    int64_t p1 = LOAD(&log->frame_page[f]);
    if (p1 == (int64_t)page) {
        const char *rec = log->frames[f] + (a & page_mask);
        memcpy(&h, rec, sizeof h);
        /* No checksum here: a frame holds records this process wrote, or
         * the tail page's prefix that replay verified when the store opened. */
        int ok = shoal_header_ok(&h, a, log->page_bits, tail);
        int tomb = ok && payload_only && (h.flags & SHOAL_RF_TOMBSTONE);
        uint64_t start = payload_only ? shoal_payload_offset(&h) : 0;
        uint32_t n = ok && !tomb ? (payload_only ? h.payload_bytes : h.size) : 0;
        if (ok && n <= room) memcpy(dst, rec + start, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) == p1) {
            if (!ok) return SHOAL_E_CORRUPT;
            if (tomb) { *len = 0; return SHOAL_TOMBSTONE; }
            *len = n;
            return n <= room ? SHOAL_OK : SHOAL_E_SPACE;
        }
        /* the frame was recycled under us: the page is on disk now */
    }
    int r = read_one_mapped(log, a, tail, dst, room, payload_only, len, bc);
    if (r != -1) return r;
    r = read_bytes(log, a, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : SHOAL_E_CORRUPT;
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) return SHOAL_E_CORRUPT;
    if (h.size > room) { *len = h.size; return SHOAL_E_SPACE; } /* whole record needed to verify */
    r = read_bytes(log, a, dst, h.size, h.size <= BLOCK_BYTES ? bc : NULL);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : SHOAL_E_CORRUPT;
    if (memcmp(dst, &h, sizeof h) != 0 || !shoal_record_crc_ok(dst)) return SHOAL_E_CORRUPT;
    if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) { *len = 0; return SHOAL_TOMBSTONE; }
    if (payload_only) {
        memmove(dst, dst + shoal_payload_offset(&h), h.payload_bytes);
        *len = h.payload_bytes;
    } else {
        *len = h.size;
    }
    return SHOAL_OK;
}

/* Room for one payload in out when a separator byte follows each. */
static inline uint64_t room_for(uint64_t cap, uint64_t used, int sep) {
    uint64_t left = cap - used;
    return sep ? (left ? left - 1 : 0) : left;
}

/* How many bytes of p[0..n) are '\n' or '\r'. Not done during reads:
 * checking each payload as it is copied waits on its cold source lines and
 * cost 3x a separate pass, and most callers (Python iteration) never ask.
 * The portable loop takes 16 bytes a step with GCC vector extensions (SSE2
 * on x86-64, NEON on arm64); AVX2 takes 32. Lanes count down from 0 (-1
 * per match) and are summed before they can wrap. */
typedef signed char v16s8 __attribute__((vector_size(16)));

static uint64_t count_breaks_tail(const char *p, uint64_t n) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += p[i] == '\n' || p[i] == '\r';
    return total;
}

static uint64_t count_breaks_v16(const char *p, uint64_t n) {
    const v16s8 nl = {10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10};
    const v16s8 cr = {13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13};
    uint64_t total = 0, i = 0;
    while (i + 16 <= n) {
        v16s8 acc = {0};
        for (int k = 0; k < 127 && i + 16 <= n; k++, i += 16) {
            v16s8 x;
            memcpy(&x, p + i, 16);
            acc += (x == nl) | (x == cr);  /* -1 where true */
        }
        signed char lanes[16];
        memcpy(lanes, &acc, 16);
        for (int k = 0; k < 16; k++) total += (uint64_t)(-lanes[k]);
    }
    return total + count_breaks_tail(p + i, n - i);
}

#if SHOAL_X86
__attribute__((target("avx2"))) static uint64_t count_breaks_avx2(const char *p, uint64_t n) {
    const __m256i nl = _mm256_set1_epi8('\n'), cr = _mm256_set1_epi8('\r');
    const __m256i zero = _mm256_setzero_si256();
    __m256i sums = zero; /* 4 x 64-bit partial totals */
    uint64_t i = 0;
    while (i + 32 <= n) {
        __m256i acc = zero;
        for (int k = 0; k < 255 && i + 32 <= n; k++, i += 32) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
            acc = _mm256_sub_epi8(acc, _mm256_or_si256(_mm256_cmpeq_epi8(x, nl), _mm256_cmpeq_epi8(x, cr)));
        }
        sums = _mm256_add_epi64(sums, _mm256_sad_epu8(acc, zero)); /* acc lanes: 0..255 matches */
    }
    uint64_t s[4];
    _mm256_storeu_si256((__m256i *)s, sums);
    return s[0] + s[1] + s[2] + s[3] + count_breaks_tail(p + i, n - i);
}
#endif

uint64_t shoal_count_line_breaks(const char *p, uint64_t n) {
#if SHOAL_X86
    if (shoal_simd_mode == SHOAL_MODE_AVX2) return count_breaks_avx2(p, n);
#endif
    return count_breaks_v16(p, n);
}

/* Close a payload of n bytes just copied to out[*used..]: the separator
 * after it. */
static inline void end_payload(char *out, uint64_t *used, uint32_t n, int sep) {
    *used += n;
    if (sep) out[(*used)++] = (char)sep;
}

/* Start loading the in-memory bytes at and after address a (the next record
 * to read, or the next key pointer of a chain: its header, values and
 * payload start), so that miss overlaps the copy of the current record. */
#define PREFETCH_LINES 4 /* 16 and 32 measured no better */
static inline void prefetch_near(const shoal_log *log, uint64_t a) {
    if (!a) return;
    uint64_t page = a >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) != (int64_t)page) return;
    uint64_t off = a & ((1ULL << log->page_bits) - 1);
    const char *p = log->frames[f] + off;
    for (int k = 0; k < PREFETCH_LINES; k++) __builtin_prefetch(p + 64 * k);
}

/* Whether a record starts at a (8-aligned, in [begin, tail)): 1, 0, or
 * SHOAL_E_IO. A header carrying a's tag was written at a by the writer (a
 * copy of a record elsewhere carries another address's tag, bytes a client
 * chose cannot carry a valid one). Any other header is checked the slow way:
 * records lie back to back from their page's start (the log's first address
 * in page 0) to a zero header, so a is a record start exactly when hopping
 * headers from there lands on it. Bytes that only look like a header are
 * never hopped to: one forged in a record's values area, or an old record
 * past a page's end where a recycled frame left it (pages written before
 * page ends were cleared hold those on disk too). */
static int record_starts_at(shoal_log *log, uint64_t a, uint64_t tail, block_cache **bc) {
    shoal_record_header h;
    int r = read_bytes(log, a, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : 0;
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) return 0;
    if (h.aux == shoal_record_tag(log->tag_key, a)) return 1;
    uint64_t pos = a & ~((1ULL << log->page_bits) - 1);
    if (pos < SHOAL_FIRST_ADDRESS) pos = SHOAL_FIRST_ADDRESS;
    while (pos < a) {
        r = read_bytes(log, pos, (char *)&h, sizeof h, bc);
        if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : 0;
        if (!shoal_header_ok(&h, pos, log->page_bits, tail)) return 0;
        pos += h.size;
    }
    return pos == a;
}

int shoal_read(shoal_read_job *job, shoal_log *log) {
    int sep = job->payload_only ? (int)(job->sep & 0xff) : 0;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    block_cache *bc = NULL;
    int rc = SHOAL_OK;
    for (; job->n_done < job->n; job->n_done++) {
        uint32_t i = job->n_done;
        uint64_t a = job->addrs[i];
        job->offsets[i] = job->used;
        job->lengths[i] = 0;
        job->status[i] = SHOAL_E_CORRUPT;
        if (!shoal_record_address_ok(a, begin, tail, log->page_bits)) continue;
        if (job->verify_start) {
            int s = record_starts_at(log, a, tail, &bc);
            if (s != 1) {
                if (s < 0) job->status[i] = s;
                continue;
            }
        }
        if (i + 1 < job->n) prefetch_near(log, job->addrs[i + 1]);
        uint32_t len = 0;
        int r = read_one(log, a, tail, job->out + job->used, room_for(job->cap, job->used, sep), job->payload_only != 0,
                         &len, &bc);
        if (r == SHOAL_E_SPACE) {
            rc = job->used == 0 ? SHOAL_E_SPACE : SHOAL_OUT_FULL;
            break;
        }
        job->status[i] = r;
        if (r == SHOAL_OK) {
            job->lengths[i] = len;
            end_payload(job->out, &job->used, len, sep);
        }
    }
    free(bc);
    return rc;
}

/* ---- fused walk and read ------------------------------------------------------- */

/* Whether the record at rec has, for each condition, a key pointer of its
 * PSF with its value: 1 or 0, or an error. */
static int has_all(shoal_log *log, uint64_t rec, uint64_t tail, const shoal_cond *conds, uint32_t n,
                   block_cache **bc) {
    shoal_record_header h;
    int r = read_bytes(log, rec, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r;
    if (!shoal_header_ok(&h, rec, log->page_bits, tail)) return SHOAL_E_CORRUPT;
    shoal_key_pointer kps[16];
    for (uint32_t c = 0; c < n; c++) {
        int found = 0;
        for (uint32_t k0 = 0; k0 < h.n_kps && !found; k0 += 16) {
            uint32_t m = h.n_kps - k0 < 16 ? h.n_kps - k0 : 16;
            uint64_t at = rec + shoal_kp_offset(k0);
            r = read_bytes(log, at, (char *)kps, m * SHOAL_KP_BYTES, bc);
            if (r != SHOAL_OK) return r;
            for (uint32_t k = 0; k < m; k++) {
                if (shoal_kp_psf(kps[k].prev_psf) != conds[c].psf_id || kps[k].hash32 != (uint32_t)conds[c].hash)
                    continue;
                int eq = value_equals(log, rec, &kps[k], conds[c].canon, conds[c].canon_len, bc);
                if (eq < 0) return eq;
                if (eq) { found = 1; break; }
            }
        }
        if (!found) return 0;
    }
    return 1;
}

static int fetch_records(shoal_fetch_job *job, shoal_log *log, shoal_index *index, int sep) {
    job->n_out = 0;
    job->used = 0;
    job->err = SHOAL_OK;
    if (job->done) return SHOAL_OK;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    chain c = {job->psf_id, job->hash, job->canon, job->canon_len, job->lo, job->hi, begin};
    uint64_t kp_addr = job->next_kp ? job->next_kp : shoal_index_lookup(index, job->hash);
    block_cache *bc = NULL;
    int rc = SHOAL_OK;
    uint64_t rec_addr, prev;
    int r;
    while ((r = chain_next(log, &c, &kp_addr, &rec_addr, &prev, &bc)) == 1) {
        if (shoal_record_address_ok(rec_addr, begin, tail, log->page_bits)) {
            if (job->n_out == job->max_records) { job->next_kp = kp_addr; free(bc); return SHOAL_OUT_FULL; }
            if (job->n_also) {
                int m = has_all(log, rec_addr, tail, job->also, job->n_also, &bc);
                if (m == SHOAL_E_IO) { job->err = m; job->err_address = rec_addr; rc = m; r = 0; break; }
                if (m != 1) { kp_addr = prev; continue; } /* no match, or damaged: skipped as read_one would */
            }
            prefetch_near(log, prev);
            uint32_t len = 0;
            int rr = read_one(log, rec_addr, tail, job->out + job->used, room_for(job->cap, job->used, sep), 1, &len, &bc);
            if (rr == SHOAL_E_SPACE) {
                job->next_kp = kp_addr; /* resume at the record that did not fit */
                free(bc);
                if (job->n_out) return SHOAL_OUT_FULL;
                job->need = (uint64_t)len + (sep != 0);
                return SHOAL_E_SPACE;
            }
            if (rr == SHOAL_E_IO) { job->err = rr; job->err_address = rec_addr; rc = rr; r = 0; break; }
            if (rr == SHOAL_OK) {
                job->addrs[job->n_out] = rec_addr;
                job->offsets[job->n_out] = job->used;
                job->lengths[job->n_out] = len;
                job->n_out++;
                end_payload(job->out, &job->used, len, sep);
            }
        }
        kp_addr = prev;
    }
    if (r < 0) { job->err = r; job->err_address = kp_addr; rc = r; }
    job->done = 1;
    job->next_kp = 0;
    free(bc);
    return rc;
}

int shoal_fetch(shoal_fetch_job *job, shoal_log *log, shoal_index *index) {
    return fetch_records(job, log, index, (int)(job->sep & 0xff));
}

/* ---- the reader gate ------------------------------------------------------------ */

#define GATE_INSIDE ((1ULL << SHOAL_GATE_INSIDE_BITS) - 1)

int shoal_gate_enter(shoal_gate *g) {
    __atomic_add_fetch(&g->state, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g->closed, __ATOMIC_SEQ_CST)) {
        shoal_gate_exit(g);
        return SHOAL_E_CLOSED;
    }
    return SHOAL_OK;
}

void shoal_gate_exit(shoal_gate *g) {
    /* one step: the last reader out also counts the quiescence */
    uint64_t old = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST), next;
    do {
        next = old - 1;
        if (!(next & GATE_INSIDE)) next += 1ULL << SHOAL_GATE_INSIDE_BITS;
    } while (!__atomic_compare_exchange_n(&g->state, &old, next, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

int64_t shoal_gate_inside(shoal_gate *g) {
    return (int64_t)(__atomic_load_n(&g->state, __ATOMIC_SEQ_CST) & GATE_INSIDE);
}

uint64_t shoal_gate_mark(shoal_gate *g) {
    uint64_t st = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST);
    uint64_t q = st >> SHOAL_GATE_INSIDE_BITS;
    /* nobody inside: idle at once (a token below q); else at the next quiescence */
    return (st & GATE_INSIDE) ? q : q - 1;
}

int shoal_gate_idle_since(shoal_gate *g, uint64_t token) {
    uint64_t st = __atomic_load_n(&g->state, __ATOMIC_SEQ_CST);
    return (int64_t)((st >> SHOAL_GATE_INSIDE_BITS) - token) > 0 || !(st & GATE_INSIDE);
}

int shoal_fetch_start(shoal_fetch_job *job, shoal_log *log, shoal_index *index, const char *canon,
                      uint32_t canon_len, uint32_t psf_id, uint64_t lo, uint64_t hi, uint32_t max_records,
                      uint32_t sep, shoal_gate *gate) {
    job->next_kp = 0;
    job->lo = lo;
    job->hi = hi;
    job->hash = shoal_hash(psf_id, canon, canon_len);
    job->canon = canon;
    job->canon_len = canon_len;
    job->psf_id = psf_id;
    job->max_records = max_records;
    job->done = 0;
    job->sep = sep;
    if (gate && shoal_gate_enter(gate) != SHOAL_OK) return SHOAL_E_CLOSED;
    int rc = shoal_fetch(job, log, index);
    if (gate) shoal_gate_exit(gate);
    return rc;
}

/* ---- scans -------------------------------------------------------------------- */

int shoal_scan(shoal_scan_job *job, const shoal_psfset *set) {
    job->n_out = 0;
    job->err = SHOAL_OK;
    uint64_t end = job->base + job->len;
    while (job->pos + SHOAL_HEADER_BYTES <= end) {
        uint64_t a = job->pos;
        const char *rec = job->buf + (a - job->base);
        const shoal_record_header *h = (const shoal_record_header *)rec;
        if (h->size == 0 && h->magic == 0) return SHOAL_END;
        /* The buffer holds a page or its prefix, so the page offset of a is a - base
         * when base is page aligned; callers pass page-aligned buffers. */
        /* Full header check: the buffer may be a frame recycled under this
         * reader (the caller then discards the result), so never trust sizes. */
        if (h->magic != SHOAL_RECORD_MAGIC || !shoal_header_size_ok(h) || a + h->size > end) {
            job->err = SHOAL_E_CORRUPT;
            job->err_address = a;
            return SHOAL_E_CORRUPT;
        }
        if (a >= job->hi) return SHOAL_END;
        if (a >= job->lo && !(h->flags & SHOAL_RF_TOMBSTONE)) {
            int match = 0;
            if (job->mode == SHOAL_SCAN_ALL) {
                match = 1;
            } else {
                const char *payload = rec + shoal_payload_offset(h);
                size_t err_off;
                int prc = shoal_parse(payload, h->payload_bytes, &set->trie, job->slots, &err_off);
                if (prc != SHOAL_OK) {
                    job->err = SHOAL_E_CORRUPT;
                    job->err_address = a;
                    return SHOAL_E_CORRUPT;
                }
                shoal_val v;
                int erc = shoal_eval(set, job->prog, payload, job->slots, &v);
                if (erc != SHOAL_OK) return erc;
                if (job->mode == SHOAL_SCAN_TRUTHY) {
                    switch (v.type) {
                    case SHOAL_T_MISSING: case SHOAL_T_NULL: case SHOAL_T_FALSE: match = 0; break;
                    case SHOAL_T_STRING: case SHOAL_T_ARRAY: case SHOAL_T_OBJECT:
                        match = !(v.flags & SHOAL_VF_EMPTY); break;
                    default: match = 1;
                    }
                } else {
                    int64_t cl = shoal_val_canon(set, payload, &v, job->scratch, job->scratch_bytes);
                    if (cl < 0) return (int)cl;
                    match = cl > 0 && (uint64_t)cl == job->canon_len
                            && memcmp(job->scratch, job->canon, (size_t)cl) == 0;
                }
            }
            if (match) {
                if (job->n_out == job->cap) return SHOAL_OUT_FULL;
                job->out[job->n_out++] = a;
            }
        }
        job->pos = a + h->size;
    }
    return SHOAL_OK;
}

/* ---- recovery replay ----------------------------------------------------------- */

int shoal_replay(const char *buf, uint64_t base, uint64_t len, uint64_t *pos, uint32_t page_bits,
                 shoal_index *index, uint64_t *records) {
    uint64_t end = base + len;
    char *canon = NULL;
    size_t canon_cap = 0;
    int rc = SHOAL_OK;
    while (*pos + SHOAL_HEADER_BYTES <= end) {
        uint64_t a = *pos;
        const char *rec = buf + (a - base);
        const shoal_record_header *h = (const shoal_record_header *)rec;
        static const char zero[SHOAL_HEADER_BYTES];
        if (memcmp(rec, zero, SHOAL_HEADER_BYTES) == 0) { rc = SHOAL_END; break; }
        if (!shoal_header_ok(h, a, page_bits, end) || !shoal_record_crc_ok(rec)) {
            rc = SHOAL_E_CORRUPT;
            break;
        }
        for (uint32_t k = 0; k < h->n_kps; k++) {
            const shoal_key_pointer *kp = (const shoal_key_pointer *)(rec + shoal_kp_offset(k));
            if (kp->value_off + (uint64_t)kp->value_len > h->size) { rc = SHOAL_E_CORRUPT; goto out; }
            size_t need = (size_t)kp->value_len + 1;
            if (need > canon_cap) {
                char *n = realloc(canon, need * 2);
                if (!n) { rc = SHOAL_E_NOMEM; goto out; }
                canon = n;
                canon_cap = need * 2;
            }
            size_t cl = 0;
            if (kp->value_kind == SHOAL_KP_SPAN) canon[cl++] = 's';
            memcpy(canon + cl, rec + kp->value_off, kp->value_len);
            cl += kp->value_len;
            uint32_t psf_id = shoal_kp_psf(kp->prev_psf);
            uint64_t hash = shoal_hash(psf_id, canon, cl);
            if ((uint32_t)hash != kp->hash32) { rc = SHOAL_E_CORRUPT; goto out; }
            if (!index) continue; /* verify only */
            int urc = shoal_index_upsert(index, hash, a + shoal_kp_offset(k), NULL);
            if (urc != SHOAL_OK) { rc = urc; goto out; }
        }
        (*records)++;
        *pos = a + h->size;
    }
out:
    free(canon);
    return rc;
}
