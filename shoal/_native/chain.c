/*
 * chain.c -- chain walks: the key pointers of one (psf_id, value) linked
 * newest to oldest through prev_psf, their head in the index (shoal_walk,
 * optionally keeping only records that also hold other (psf, value) pairs:
 * shoal_has_all, which the fused fetch shares); counts of a chain in a
 * window (shoal_count_window); and keyed liveness, a walk of each record's
 * key chain (shoal_live). Whole walks in lanes are walk_all.c's.
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
    uint32_t above = shoal_sample_at_or_above(smp, ns, hi); /* the walk down to hi starts here */
    uint64_t start = above < ns ? smp[above].kp : shoal_index_lookup(index, job->hash);
    uint32_t b = shoal_sample_at_or_above(smp, ns, lo);
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
