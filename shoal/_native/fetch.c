/*
 * fetch.c -- the fused fetch: a chain walk that reads each record as it
 * reaches it (shoal_fetch), optionally only records that also hold other
 * (psf, value) pairs (a conjunction driven by one chain), and its one-call
 * form for point queries (shoal_fetch_start, inside the reader gate).
 *
 * Must stay true:
 *   - Records are emitted newest first, each read and verified as shoal_read
 *     reads it (read.c); tombstones and records that fail verification are
 *     skipped, an I/O error stops the call.
 *   - Resuming (next_kp) restarts at the record that did not fit, so a
 *     record is emitted exactly once across calls.
 */
#include "hlog.h"

static int fetch_records(shoal_fetch_job *job, shoal_log *log, shoal_index *index, int sep) {
    job->n_out = 0;
    job->used = 0;
    job->err = SHOAL_OK;
    if (job->done) return SHOAL_OK;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    shoal_chain c = {job->psf_id, job->hash, job->canon, job->canon_len, job->lo, job->hi, begin};
    uint64_t kp_addr = job->next_kp ? job->next_kp : shoal_index_lookup(index, job->hash);
    shoal_block_cache *bc = NULL;
    int rc = SHOAL_OK;
    uint64_t rec_addr, prev;
    int r;
    while ((r = shoal_chain_next(log, &c, &kp_addr, &rec_addr, &prev, &bc)) == 1) {
        if (shoal_record_address_ok(rec_addr, begin, tail, log->page_bits)) {
            if (job->n_out == job->max_records) { job->next_kp = kp_addr; free(bc); return SHOAL_OUT_FULL; }
            if (job->n_also) {
                int m = shoal_has_all(log, rec_addr, tail, job->also, job->n_also, &bc);
                if (m == SHOAL_E_IO) { job->err = m; job->err_address = rec_addr; rc = m; r = 0; break; }
                /* no match, or damaged: skipped, as shoal_read_record skips it */
                if (m != 1) { kp_addr = prev; continue; }
            }
            shoal_prefetch_near(log, prev);
            uint32_t len = 0;
            int rr = shoal_read_record(log, rec_addr, tail, job->out + job->used,
                                       shoal_room_for(job->cap, job->used, sep), 1, &len, &bc);
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
                shoal_end_payload(job->out, &job->used, len, sep);
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
