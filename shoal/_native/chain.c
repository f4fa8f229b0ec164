/*
 * chain.c -- chain walks: the key pointers of one (psf_id, value) linked
 * newest to oldest through prev_psf, their head in the index (shoal_walk,
 * optionally keeping only records that also hold other (psf, value) pairs:
 * shoal_has_all, which the fused fetch shares);
 * and keyed liveness, a walk of each record's key chain (shoal_live).
 *
 * Must stay true:
 *   - Chains only point backwards (prev < the key pointer's own address); a
 *     link that does not is corruption, so a walk always ends.
 *   - A walk stops below begin_address (loaded once per call: the log there
 *     may be gone) and at lo; it emits records below hi only.
 *   - Several (psf, value) pairs may share an index entry (a 48-bit hash
 *     collision): a key pointer counts only when its psf_id, hash32 and
 *     value bytes all match.
 */
#include "hlog.h"

#include <pthread.h>
#include <unistd.h>

/* ---- chain walks ------------------------------------------------------------ */

int shoal_value_equals(shoal_log *log, uint64_t rec_addr, const shoal_key_pointer *kp,
                       const char *canon, uint32_t canon_len, shoal_block_cache **bc) {
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
        int rc = shoal_read_bytes(log, a + done, buf, n, bc);
        if (rc != SHOAL_OK) return rc;
        if (memcmp(buf, want + done, n) != 0) return 0;
        done += n;
    }
    return 1;
}

int shoal_chain_next(shoal_log *log, const shoal_chain *c, uint64_t *kp_addr, uint64_t *rec_addr, uint64_t *prev,
                     shoal_block_cache **bc) {
    uint64_t a = *kp_addr;
    while (a && a >= c->begin) {
        shoal_key_pointer kp;
        *kp_addr = a;
        int r = shoal_read_bytes(log, a, (char *)&kp, sizeof kp, bc);
        if (r != SHOAL_OK) return r;
        uint64_t rec = shoal_kp_record(a, &kp);
        uint64_t next = shoal_kp_prev(kp.prev_psf);
        if (rec < c->lo) return 0;
        if (next >= a) return SHOAL_E_CORRUPT; /* chains only point backwards */
        /* The walk is a chase of dependent loads: start the next key
         * pointer's miss now, so it overlaps comparing this one's value. */
        if (next >= c->begin) shoal_prefetch_near(log, next);
        if (shoal_kp_psf(kp.prev_psf) == c->psf_id && kp.hash32 == (uint32_t)c->hash && rec < c->hi) {
            int eq = shoal_value_equals(log, rec, &kp, c->canon, c->canon_len, bc);
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

int shoal_has_all(shoal_log *log, uint64_t rec, uint64_t tail, const shoal_cond *conds, uint32_t n,
                  shoal_block_cache **bc) {
    shoal_record_header h;
    int r = shoal_read_bytes(log, rec, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r;
    if (!shoal_header_ok(&h, rec, log->page_bits, tail)) return SHOAL_E_CORRUPT;
    shoal_key_pointer kps[16];
    for (uint32_t c = 0; c < n; c++) {
        int found = 0;
        for (uint32_t k0 = 0; k0 < h.n_kps && !found; k0 += 16) {
            uint32_t m = h.n_kps - k0 < 16 ? h.n_kps - k0 : 16;
            uint64_t at = rec + shoal_kp_offset(k0);
            r = shoal_read_bytes(log, at, (char *)kps, m * SHOAL_KP_BYTES, bc);
            if (r != SHOAL_OK) return r;
            for (uint32_t k = 0; k < m; k++) {
                if (shoal_kp_psf(kps[k].prev_psf) != conds[c].psf_id || kps[k].hash32 != (uint32_t)conds[c].hash)
                    continue;
                int eq = shoal_value_equals(log, rec, &kps[k], conds[c].canon, conds[c].canon_len, bc);
                if (eq < 0) return eq;
                if (eq) { found = 1; break; }
            }
        }
        if (!found) return 0;
    }
    return 1;
}

int shoal_walk(shoal_walk_job *job, shoal_log *log, shoal_index *index) {
    job->n_out = 0;
    job->err = SHOAL_OK;
    if (job->done) return SHOAL_OK;
    shoal_chain c = {job->psf_id, job->hash, job->canon, job->canon_len, job->lo, job->hi,
                     LOAD(&log->begin_address)};
    uint64_t kp_addr = job->next_kp ? job->next_kp : shoal_index_lookup(index, job->hash);
    uint64_t tail = LOAD(&log->tail_address);
    shoal_block_cache *bc = NULL;
    int rc = SHOAL_OK;
    uint64_t rec_addr, prev;
    int r;
    while ((r = shoal_chain_next(log, &c, &kp_addr, &rec_addr, &prev, &bc)) == 1) {
        if (job->n_also) { /* a conjunction driven by this chain: only records with every other pair */
            if (!shoal_record_address_ok(rec_addr, c.begin, tail, log->page_bits)) { kp_addr = prev; continue; }
            int m = shoal_has_all(log, rec_addr, tail, job->also, job->n_also, &bc);
            if (m == SHOAL_E_IO) { r = m; break; }
            if (m != 1) { kp_addr = prev; continue; } /* no match, or damaged: skipped, as a read skips it */
        }
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

/* A record is live when the walk of its own key's chain (its key pointer 0:
 * a keyed store's program 0 is its key) meets it first. */

/* The newest record on the key chain of (canon, hash), or 0 if none in [begin, tail). */
static int newest_version(shoal_log *log, shoal_index *index, const char *canon, uint32_t canon_len,
                          uint64_t hash, uint64_t begin, uint64_t *out, shoal_block_cache **bc) {
    shoal_chain c = {SHOAL_KEY_PSF_ID, hash, canon, canon_len, 0, UINT64_MAX, begin};
    uint64_t kp_addr = shoal_index_lookup(index, hash), prev;
    *out = 0;
    int r = shoal_chain_next(log, &c, &kp_addr, out, &prev, bc);
    return r < 0 ? r : SHOAL_OK;
}

int shoal_live(shoal_live_job *job, shoal_log *log, shoal_index *index) {
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    shoal_block_cache *bc = NULL;
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
        int r = shoal_read_bytes(log, a, (char *)&h, sizeof h, &bc);
        if (r == SHOAL_OK && (!shoal_header_ok(&h, a, log->page_bits, tail) || h.n_kps == 0)) continue;
        if (r == SHOAL_OK) r = shoal_read_bytes(log, a + shoal_kp_offset(0), (char *)&kp, sizeof kp, &bc);
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
        r = shoal_read_bytes(log, a + kp.value_off, canon + cl, kp.value_len, &bc);
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

/* ---- counts ----------------------------------------------------------------- */

/* The first sample whose key pointer lies at or above addr (n: none). */
static uint32_t sample_at_or_above(const shoal_tally_sample *s, uint32_t n, uint64_t addr) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (s[m].kp < addr) lo = m + 1;
        else hi = m;
    }
    return lo;
}

/* Records of chain c from the key pointer at kp_addr down (to c->lo), counted
 * while their key pointer lies above `stop` (0: to the end). */
static int count_down(shoal_log *log, const shoal_chain *c, uint64_t kp_addr, uint64_t stop, uint64_t *count,
                      uint64_t *visited, uint64_t *err_address, shoal_block_cache **bc) {
    uint64_t rec, prev;
    int r;
    while (kp_addr && (r = shoal_chain_next(log, c, &kp_addr, &rec, &prev, bc)) == 1) {
        (*visited)++;
        if (kp_addr <= stop) return SHOAL_OK;
        (*count)++;
        kp_addr = prev;
    }
    if (kp_addr && r < 0) {
        *err_address = kp_addr;
        return r;
    }
    return SHOAL_OK;
}

/* Count = c1 + (s_a.ordinal - s_b.ordinal) + c2, where s_b is the oldest
 * sample whose record lies in the window and s_a the newest: c1 walks from
 * above hi down to s_a (not counted), c2 from s_b (counted) down to lo. Each
 * walk passes fewer than SHOAL_TALLY_SAMPLE_EVERY records of the value (more
 * would hold a sample), records ingested meanwhile aside. Without samples in
 * the window it is one walk from above hi down to lo. */
int shoal_count_window(shoal_count_job *job, shoal_log *log, shoal_index *index, shoal_tally *tally) {
    job->count = job->walked = 0;
    job->err = SHOAL_OK;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t lo = job->lo > begin ? job->lo : begin, hi = job->hi;
    if (lo >= hi) return SHOAL_OK;
    shoal_chain c = {job->psf_id, job->hash, job->canon, job->canon_len, lo, hi, begin};
    const shoal_tally_sample *smp = NULL;
    uint32_t ns = 0;
    if (tally && !shoal_tally_find(tally, job->psf_id, job->hash, job->canon, job->canon_len, &smp, &ns)) ns = 0;
    shoal_block_cache *bc = NULL;
    int rc = SHOAL_OK;
    uint32_t above = sample_at_or_above(smp, ns, hi); /* the walk down to hi starts here */
    uint64_t start = above < ns ? smp[above].kp : shoal_index_lookup(index, job->hash);
    uint32_t b = sample_at_or_above(smp, ns, lo);
    if (b < above) { /* the oldest sample at or above lo: its record may start below lo */
        shoal_key_pointer kp;
        rc = shoal_read_bytes(log, smp[b].kp, (char *)&kp, sizeof kp, &bc);
        if (rc != SHOAL_OK) { job->err_address = smp[b].kp; goto out; }
        if (shoal_kp_record(smp[b].kp, &kp) < lo) b++;
    }
    if (b < above) {
        uint32_t a = above - 1; /* the newest sample below hi (its record is too) */
        uint64_t c1 = 0, c2 = 0;
        rc = count_down(log, &c, start, smp[a].kp, &c1, &job->walked, &job->err_address, &bc);
        if (rc == SHOAL_OK)
            rc = count_down(log, &c, smp[b].kp, 0, &c2, &job->walked, &job->err_address, &bc);
        job->count = c1 + (smp[a].ordinal - smp[b].ordinal) + c2;
    } else {
        rc = count_down(log, &c, start, 0, &job->count, &job->walked, &job->err_address, &bc);
    }
out:
    free(bc);
    job->err = rc;
    return rc;
}

/* ---- whole walks in lanes ---------------------------------------------------- */

/* Walk chain c from kp down (its lo bounds it) into out, at most cap;
 * *n gets the count. SHOAL_OK, SHOAL_E_SPACE (*n = cap, more remain), or
 * an error with *err_address. */
static int walk_into(shoal_log *log, const shoal_chain *c, uint64_t kp, uint64_t *out, uint64_t cap, uint64_t *n,
                     uint64_t *err_address, shoal_block_cache **bc) {
    uint64_t rec, prev;
    int r;
    *n = 0;
    while (kp && (r = shoal_chain_next(log, c, &kp, &rec, &prev, bc)) == 1) {
        if (*n == cap) return SHOAL_E_SPACE;
        out[(*n)++] = rec;
        kp = prev;
    }
    if (kp && r < 0) {
        *err_address = kp;
        return r;
    }
    return SHOAL_OK;
}

typedef struct {
    shoal_chain c;     /* lo: just above the next piece's first key pointer */
    uint64_t kp;       /* the next key pointer to read; 0: done */
    uint64_t *out;     /* where the piece writes */
    uint64_t cap, n;
    shoal_block_cache *bc;
} walk_lane;

/* A walk_all's work, shared by up to WALK_THREADS threads: the head and the
 * tail (sizes unknown: each walked alone into its own buffer) and the
 * pieces between samples (sizes known: each writes at its own place in
 * out, SHOAL_WALK_LANES of them at a time in lockstep on each thread). A
 * thread takes the next task (head, tail, then pieces newest first) when
 * one of its lanes is free. More than one thread only when the records are
 * costly to reach: on a store with cold (compressed) segments, where a
 * walk decompresses a frame every few records (~15 us each), and with at
 * least WALK_THREAD_PIECES pieces per thread (one costs ~50 us to start). */
#define WALK_THREADS 4
#define WALK_THREAD_PIECES 4

typedef struct {
    shoal_log *log;
    const shoal_chain *c;
    const shoal_tally_sample *smp;
    uint32_t last;
    uint64_t lo;
    uint64_t *pieces_out;    /* piece i writes at pieces_out + at[i] */
    const uint64_t *at;
    uint32_t n_pieces;
    uint32_t lanes;          /* lanes per thread: no more than its share of the pieces */
    uint32_t next_task;      /* atomic: 0 head, 1 tail, 2 + i piece i */
    shoal_chain head_c;
    uint64_t head_kp, tail_kp;
    uint64_t *head, *tail;   /* their buffers */
    uint64_t head_cap, tail_cap, n_head, n_tail;
    int head_rc, tail_rc;
    int rc;                  /* the first error */
    uint64_t err_address;
    int overflow;            /* a piece held more records than its samples say */
    uint32_t pieces;         /* atomic */
    pthread_mutex_t lock;    /* rc, err_address */
} walk_tasks;

static void task_failed(walk_tasks *w, int rc, uint64_t address) {
    pthread_mutex_lock(&w->lock);
    if (w->rc == SHOAL_OK) {
        w->rc = rc;
        w->err_address = address;
    }
    pthread_mutex_unlock(&w->lock);
}

static uint32_t walk_threads(shoal_log *log, uint32_t n_pieces) {
    static long cores;
    if (!cores) cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!log->codec || !LOAD(&log->cold)) return 1;
    uint32_t t = n_pieces / WALK_THREAD_PIECES;
    if (t > (uint32_t)cores) t = cores > 0 ? (uint32_t)cores : 1;
    if (t > WALK_THREADS) t = WALK_THREADS;
    return t ? t : 1;
}

static void *walk_tasks_run(void *arg) {
    walk_tasks *w = arg;
    const shoal_tally_sample *smp = w->smp;
    walk_lane lanes[SHOAL_WALK_LANES];
    shoal_block_cache *bc = NULL;
    uint32_t active = 0;
    int more = 1; /* tasks may be left */
    for (uint32_t k = 0; k < SHOAL_WALK_LANES; k++) lanes[k].kp = 0, lanes[k].bc = NULL;
    for (;;) {
        for (uint32_t k = 0; k < w->lanes && more; k++) {
            if (lanes[k].kp) continue;
            uint32_t task = __atomic_fetch_add(&w->next_task, 1, __ATOMIC_RELAXED);
            if (task == 0 || task == 1) { /* the head or the tail, walked alone */
                uint64_t err = 0;
                int r = task == 0 ? walk_into(w->log, &w->head_c, w->head_kp, w->head, w->head_cap, &w->n_head, &err, &bc)
                                  : walk_into(w->log, w->c, w->tail_kp, w->tail, w->tail_cap, &w->n_tail, &err, &bc);
                if (task == 0) w->head_rc = r; else w->tail_rc = r;
                if (r < 0 && r != SHOAL_E_SPACE) task_failed(w, r, err);
                k--; /* this lane is still free */
                continue;
            }
            if (task - 2 >= w->n_pieces) { more = 0; break; }
            uint32_t i = task - 2, j = w->last - 1 - i; /* piece i: sample j down to just above sample j-1 */
            walk_lane *l = &lanes[k];
            l->c = *w->c;
            l->c.lo = smp[j - 1].kp + 1 > w->lo ? smp[j - 1].kp + 1 : w->lo;
            l->kp = smp[j].kp;
            l->out = w->pieces_out + w->at[i];
            l->cap = smp[j].ordinal - smp[j - 1].ordinal;
            l->n = 0;
            active++;
            __atomic_add_fetch(&w->pieces, 1, __ATOMIC_RELAXED);
        }
        if (!active) break;
        for (uint32_t k = 0; k < SHOAL_WALK_LANES; k++) {
            walk_lane *l = &lanes[k];
            if (!l->kp) continue;
            uint64_t rec, prev;
            int r = shoal_chain_next(w->log, &l->c, &l->kp, &rec, &prev, &l->bc);
            if (r == 1) {
                if (l->n == l->cap) { __atomic_store_n(&w->overflow, 1, __ATOMIC_RELAXED); r = 0; }
                else { l->out[l->n++] = rec; l->kp = prev; if (prev) continue; }
            }
            if (r < 0) task_failed(w, r, l->kp);
            /* the piece is done: a short one leaves a gap, closed below */
            for (uint64_t q = l->n; q < l->cap; q++) l->out[q] = 0;
            l->kp = 0;
            active--;
        }
        if (__atomic_load_n(&w->rc, __ATOMIC_RELAXED) < 0 || __atomic_load_n(&w->overflow, __ATOMIC_RELAXED)) break;
    }
    for (uint32_t k = 0; k < SHOAL_WALK_LANES; k++) free(lanes[k].bc);
    free(bc);
    return NULL;
}

int shoal_walk_all(shoal_walk_all_job *job, shoal_log *log, shoal_index *index, shoal_tally *tally) {
    job->n_out = job->need = 0;
    job->pieces = job->threads = 0;
    job->err = SHOAL_OK;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t lo = job->lo > begin ? job->lo : begin, hi = job->hi;
    if (lo >= hi) return SHOAL_OK;
    shoal_chain c = {job->psf_id, job->hash, job->canon, job->canon_len, lo, hi, begin};
    uint64_t start = job->start ? job->start : shoal_index_lookup(index, job->hash);
    const shoal_tally_sample *smp = NULL;
    uint32_t ns = 0;
    if (tally && !shoal_tally_find(tally, job->psf_id, job->hash, job->canon, job->canon_len, &smp, &ns)) ns = 0;
    /* Samples below start and at or above lo: [first, last) */
    uint32_t first = sample_at_or_above(smp, ns, lo);
    uint32_t last = sample_at_or_above(smp, ns, start ? start : UINT64_MAX);
    shoal_block_cache *bc = NULL;
    int rc = SHOAL_OK;
    if (last < first + 2 || !start) { /* too few pieces: the plain walk */
        uint64_t n = 0;
        rc = walk_into(log, &c, start, job->out, job->cap, &n, &job->err_address, &bc);
        if (rc == SHOAL_E_SPACE) {
            uint64_t more = 0, kp = start, rec, prev;
            int r;
            while (kp && (r = shoal_chain_next(log, &c, &kp, &rec, &prev, &bc)) == 1) { more++; kp = prev; }
            job->need = more + 64;
        }
        job->n_out = n;
        free(bc);
        job->err = rc == SHOAL_E_SPACE ? SHOAL_OK : rc;
        return rc;
    }
    /* Pieces, newest first: the head (start down to just above sample
     * last-1), one per sample j in (first, last) (sample j's key pointer
     * down to just above sample j-1: ordinal(j) - ordinal(j-1) records),
     * and the tail (sample first down to lo). The pieces are walked into
     * out from its start; the head and the tail into buffers of their own,
     * put around the pieces at the end. */
    uint64_t middle = smp[last - 1].ordinal - smp[first].ordinal;
    uint32_t n_pieces = last - 1 - first; /* samples first+1 .. last-1 */
    if (middle + 2 * SHOAL_TALLY_SAMPLE_EVERY > job->cap) {
        job->need = middle + 4 * SHOAL_TALLY_SAMPLE_EVERY + 4096;
        return SHOAL_E_SPACE;
    }
    walk_tasks w;
    memset(&w, 0, sizeof w);
    w.log = log;
    w.c = &c;
    w.smp = smp;
    w.last = last;
    w.lo = lo;
    w.pieces_out = job->out;
    w.n_pieces = n_pieces;
    w.head_c = c;
    w.head_c.lo = smp[last - 1].kp + 1 > lo ? smp[last - 1].kp + 1 : lo;
    w.head_kp = start;
    w.tail_kp = smp[first].kp;
    w.head_cap = w.tail_cap = job->cap - middle;
    uint64_t *at = malloc(((uint64_t)n_pieces + 1) * sizeof *at);
    w.head = malloc(w.head_cap * sizeof *w.head);
    w.tail = malloc(w.tail_cap * sizeof *w.tail);
    if (!at || !w.head || !w.tail) {
        free(at), free(w.head), free(w.tail);
        rc = SHOAL_E_NOMEM;
        goto fail;
    }
    at[0] = 0;
    for (uint32_t i = 0; i < n_pieces; i++) {
        uint32_t j = last - 1 - i;
        at[i + 1] = at[i] + (smp[j].ordinal - smp[j - 1].ordinal);
    }
    w.at = at;
    pthread_mutex_init(&w.lock, NULL);
    uint32_t threads = walk_threads(log, n_pieces), started = 1;
    w.lanes = (n_pieces + threads - 1) / threads;
    if (w.lanes > SHOAL_WALK_LANES) w.lanes = SHOAL_WALK_LANES;
    if (w.lanes == 0) w.lanes = 1;
    pthread_t helpers[WALK_THREADS];
    for (; started < threads; started++) /* too few threads: fewer walk it all the same */
        if (pthread_create(&helpers[started], NULL, walk_tasks_run, &w) != 0) break;
    walk_tasks_run(&w);
    for (uint32_t t = 1; t < started; t++) pthread_join(helpers[t], NULL);
    job->threads = started;
    pthread_mutex_destroy(&w.lock);
    free(at);
    job->pieces = w.pieces;
    rc = w.rc;
    job->err_address = w.err_address;
    if (rc == SHOAL_OK && (w.head_rc == SHOAL_E_SPACE || w.tail_rc == SHOAL_E_SPACE
                           || w.n_head + middle + w.n_tail > job->cap)) {
        job->need = middle + 2 * w.head_cap + 4096; /* the head or the tail did not fit (or may still grow) */
        rc = SHOAL_E_SPACE;
    }
    if (rc == SHOAL_OK && w.overflow) { /* the tally disagrees with the chain: the plain walk */
        free(w.head), free(w.tail);
        uint64_t n = 0;
        rc = walk_into(log, &c, start, job->out, job->cap, &n, &job->err_address, &bc);
        if (rc == SHOAL_E_SPACE) job->need = job->cap * 2;
        job->n_out = n;
        job->pieces = 0;
        free(bc);
        job->err = rc == SHOAL_E_SPACE ? SHOAL_OK : rc;
        return rc;
    }
    if (rc != SHOAL_OK) {
        free(w.head), free(w.tail);
        if (rc == SHOAL_E_SPACE) return rc;
        goto fail;
    }
    /* head | pieces (their gaps closed: 0 is never a record address) | tail */
    memmove(job->out + w.n_head, job->out, middle * sizeof *job->out);
    memcpy(job->out, w.head, w.n_head * sizeof *job->out);
    uint64_t k = w.n_head;
    for (uint64_t q = w.n_head; q < w.n_head + middle; q++)
        if (job->out[q]) job->out[k++] = job->out[q];
    memcpy(job->out + k, w.tail, w.n_tail * sizeof *job->out);
    job->n_out = k + w.n_tail;
    free(w.head), free(w.tail);
    return SHOAL_OK;
fail:
    free(bc);
    job->err = rc;
    return rc;
}
