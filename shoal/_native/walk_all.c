/*
 * walk_all.c -- a whole chain walked in lanes (shoal_walk_all): the pieces
 * between the value tally's samples, whose sizes the samples give, walked
 * many at a time in lockstep, and on a store with cold segments on more
 * than one thread.
 *
 * Must stay true:
 *   - The answer is the plain walk's (shoal_walk): the same addresses in
 *     the same order, newest first. A piece writes at the place its samples'
 *     ordinals give; one that holds more records than they say (a tally
 *     that disagrees with the chain) makes the call walk the plain way.
 *   - The threads a call starts end before it returns: no thread reads the
 *     log after its caller left the store's reader gate.
 */
#include "hlog.h"

#include <pthread.h>
#include <unistd.h>

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
    uint32_t first = shoal_sample_at_or_above(smp, ns, lo);
    uint32_t last = shoal_sample_at_or_above(smp, ns, start ? start : UINT64_MAX);
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
