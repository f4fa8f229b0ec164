/*
 * ingest.c -- the per-record pipeline, from framed text to records at the
 * tail linked into their chains, in two calls:
 *
 *   shoal_ingest_prepare   (any thread, no lock; ingesting threads at once)
 *     frame     the next NDJSON line of the chunk, read just before its parse
 *               (job->frame; otherwise Python framed the spans)
 *     parse     validate the text, locate the fields programs read (shoal_parse)
 *     evaluate  run the PSF programs and take the Python-computed values
 *               (extras) into a plan: one entry per key pointer, its
 *               canonical bytes and hash in scratch, and the text's share of
 *               the CRC (shoal_crc32c_part)
 *   shoal_ingest_commit    (the writer: under the writer lock, in order)
 *     append    find room at the tail, read each chain's head, encode the
 *               record there (record.h), publish the tail
 *     link      point each chain's index entry at the record's key pointer,
 *               and count its value in the tally (tally.c)
 *
 * Must stay true:
 *   - prepare reads only the job, the PSF set (immutable once compiled) and
 *     the input; it writes only the job's own buffers. Everything shared
 *     (the log, the index, the tally) is commit's, and one commit runs at a
 *     time: nothing else appends, moves the tail or upserts the index.
 *   - A record's bytes are complete before tail_address is published
 *     (release), and the tail is published before any index entry points
 *     into the record, so a reader that reaches it through the index or
 *     below a tail it loaded sees all of it.
 *   - A key pointer's prev is its chain's head before the record was
 *     linked: chains only point backwards.
 *   - Commit counts every span it passes (appended, rejected, text bytes),
 *     so a batch prepared again (or never committed) counts nothing twice.
 *     A record that does not fit the tail page (SHOAL_NEED_PAGE) stays
 *     prepared; commit resumes at it after the page turns.
 *   - The steps are static inline, called once per record from each loop:
 *     splitting them out costs no call.
 */
#include "hlog.h"

/* At most this many key pointers per record (the plan's size): more is
 * SHOAL_E_TOO_MANY_KPS, well inside what a record holds. */
#define MAX_PLAN SHOAL_MAX_PLAN
_Static_assert(MAX_PLAN <= SHOAL_MAX_KPS, "a plan fits a record's n_kps");

/* What a step decided about the record in hand. */
typedef enum {
    STEP_ON,      /* go on to the next step */
    STEP_REJECT,  /* reject the record: its result's status says why */
    STEP_STOP,    /* end the call: rc says why (an error the caller raises) */
    STEP_FULL,    /* the batch's scratch is full: commit what is prepared, then
                     prepare this record again into an empty one */
} step;

/* The key pointers a record will carry, planned before it is written. Their
 * canonical values lie in job->scratch[0, scratch_used): SPAN ones only for
 * hashing, CANON ones to be copied into the values area. */
typedef struct {
    shoal_kp_plan *kps;     /* room for MAX_PLAN entries, in the job's plan array */
    uint32_t n_kps;
    uint64_t scratch_base;  /* job->scratch filled before this record: its values start here */
    uint64_t scratch_used;
    uint64_t values_bytes;  /* the CANON values' bytes: the values area, unpadded */
} record_plan;

/* ---- frame ------------------------------------------------------------------ */

/* With job->frame: frame the next NDJSON line of buf[*frame_pos,
 * frame_len) into spans[n_spans++]. 0 when framing stops: spans are full,
 * frame_stop is reached, or shoal_frame_ndjson would stop (the end, or a
 * partial last line unless frame_final). */
static inline int frame_next(shoal_ingest_job *job, size_t *frame_pos) {
    if (!job->frame || job->n_spans >= job->span_cap || *frame_pos >= job->frame_stop ||
        !shoal_ndjson_next((const uint8_t *)job->buf, (size_t)job->frame_len, (int)job->frame_final, frame_pos,
                           &job->frame_line, &job->spans[job->n_spans]))
        return 0;
    job->n_spans++;
    return 1;
}

/* ---- parse -------------------------------------------------------------------- */

/* A span framing rejected, a text too large for a record, or a text that is
 * not one JSON value is rejected; otherwise job->slots locate the fields. */
static inline step parse_record(const shoal_ingest_job *job, const shoal_psfset *set, const shoal_span *sp,
                                uint64_t page_size, shoal_rec_result *res) {
    if (sp->status != SHOAL_OK) {
        res->status = sp->status;
        return STEP_REJECT;
    }
    if (sp->len > job->max_record_bytes || sp->len >= page_size) {
        res->status = SHOAL_E_TOO_LARGE;
        return STEP_REJECT;
    }
    size_t err_off = 0;
    int prc = shoal_parse(job->buf + sp->start, (uint32_t)sp->len, &set->trie, job->slots, &err_off);
    if (prc != SHOAL_OK) {
        res->status = prc;
        res->err_off = (uint32_t)err_off;
        return STEP_REJECT;
    }
    return STEP_ON;
}

/* ---- evaluate ------------------------------------------------------------------- */

/* Run every program (none for tombstones) over the parsed text. A value
 * that is a string, a number or true gets a key pointer: a SPAN into the
 * payload when it is a string of the record without escapes, its canonical
 * bytes otherwise. A keyed store's record whose key (program 0) is not a
 * string or number is rejected. */
static inline step plan_programs(const shoal_ingest_job *job, const shoal_psfset *set, const char *text,
                                 record_plan *pl, shoal_rec_result *res, int *rc) {
    for (uint32_t p = 0; p < (job->tombstones ? 0 : set->n_progs); p++) {
        shoal_val v;
        int erc = shoal_eval(set, p, text, job->slots, &v);
        if (erc != SHOAL_OK) {
            *rc = erc;
            return STEP_STOP;
        }
        if (p == 0 && set->key_required && !(v.type == SHOAL_T_STRING || v.type == SHOAL_T_NUMBER)) {
            res->status = SHOAL_E_NO_KEY;
            return STEP_REJECT;
        }
        if (!(v.type == SHOAL_T_STRING || v.type == SHOAL_T_NUMBER || v.type == SHOAL_T_TRUE))
            continue;
        if (pl->n_kps >= MAX_PLAN) {
            res->status = SHOAL_E_TOO_MANY_KPS;
            return STEP_REJECT;
        }
        int64_t cl = shoal_prog_canon(set, p, text, &v, job->scratch + pl->scratch_used,
                                      job->scratch_bytes - pl->scratch_used);
        if (cl == SHOAL_E_SPACE) {
            if (pl->scratch_base) return STEP_FULL;
            res->status = SHOAL_E_TOO_LARGE;
            return STEP_REJECT;
        }
        if (cl < 0) {
            *rc = (int)cl;
            return STEP_STOP;
        }
        if (cl == 0) continue;
        shoal_kp_plan *k = &pl->kps[pl->n_kps++];
        k->psf_id = set->progs[p].psf_id;
        k->hash = shoal_hash(k->psf_id, job->scratch + pl->scratch_used, (size_t)cl);
        k->canon_off = (uint32_t)pl->scratch_used;
        k->canon_len = (uint32_t)cl;
        if (job->tally && job->tally_hints && k->psf_id != SHOAL_KEY_PSF_ID)
            job->tally_hints[k - (shoal_kp_plan *)job->plan] =
                shoal_tally_hint(job->tally_table, k->psf_id, k->hash, job->scratch + k->canon_off, k->canon_len);
        if (v.origin == SHOAL_ORIGIN_RECORD && v.type == SHOAL_T_STRING && !(v.flags & SHOAL_VF_ESCAPED)
            && set->progs[p].transform == SHOAL_XF_NONE) {
            k->kind = SHOAL_KP_SPAN;
            k->off = v.start + 1;
            k->len = v.len - 2;
        } else {
            k->kind = SHOAL_KP_CANON;
            k->off = (uint32_t)pl->scratch_used; /* the encoder copies it to the values area */
            k->len = (uint32_t)cl;
            pl->values_bytes += (uint64_t)cl;
        }
        pl->scratch_used += (uint64_t)cl;
    }
    return STEP_ON;
}

/* The record's extras (values Python computed: slow-path PSFs, a
 * tombstone's key), extras[first, end): canonical bytes each. */
static inline step plan_extras(const shoal_ingest_job *job, uint32_t first, uint32_t end, record_plan *pl,
                               shoal_rec_result *res) {
    for (uint32_t e = first; e < end; e++) {
        const shoal_extra *x = &job->extras[e];
        if (pl->n_kps >= MAX_PLAN) {
            res->status = SHOAL_E_TOO_MANY_KPS;
            return STEP_REJECT;
        }
        if (pl->scratch_used + x->len > job->scratch_bytes) {
            if (pl->scratch_base) return STEP_FULL;
            res->status = SHOAL_E_TOO_LARGE;
            return STEP_REJECT;
        }
        memcpy(job->scratch + pl->scratch_used, job->extra_pool + x->off, x->len);
        shoal_kp_plan *k = &pl->kps[pl->n_kps++];
        k->psf_id = x->psf_id;
        k->hash = shoal_hash(x->psf_id, job->scratch + pl->scratch_used, x->len);
        k->kind = SHOAL_KP_CANON;
        k->off = k->canon_off = (uint32_t)pl->scratch_used;
        k->len = k->canon_len = x->len;
        if (job->tally_hints) job->tally_hints[k - (shoal_kp_plan *)job->plan] = NULL; /* probed at commit */
        pl->values_bytes += x->len;
        pl->scratch_used += x->len;
    }
    return STEP_ON;
}

/* ---- append ------------------------------------------------------------------------ */

/* Where a record of `size` bytes goes at `tail`, or NULL when the caller
 * must turn the page first: the record does not fit, or the last record
 * ended exactly at the page end (the next page is not installed). */
static inline char *tail_room(shoal_log *log, uint64_t tail, uint64_t size) {
    const uint64_t page_size = 1ULL << log->page_bits;
    const uint64_t page_mask = page_size - 1;
    uint64_t page = tail >> log->page_bits;
    char *frame = log->frames[page % log->n_frames];
    if ((tail & page_mask) + size > page_size || !frame
        || LOAD(&log->frame_page[page % log->n_frames]) != (int64_t)page)
        return NULL;
    return frame + (tail & page_mask);
}

/* Write the planned record at rec (log address tail) and publish the tail
 * past it. Each key pointer links to its chain's head as it is now. */
static inline void append_record(const shoal_ingest_job *job, shoal_log *log, shoal_index *index,
                                 record_plan *pl, char *rec, uint64_t tail, uint64_t size,
                                 const char *text, uint32_t text_len, const uint32_t *text_crc) {
    for (uint32_t k = 0; k < pl->n_kps; k++) pl->kps[k].prev = shoal_index_lookup_writer(index, pl->kps[k].hash);
    shoal_record_encode(rec, shoal_record_tag(log->tag_key, tail), job->tombstones ? SHOAL_RF_TOMBSTONE : 0,
                        pl->kps, pl->n_kps, job->scratch, pl->values_bytes, text, text_len, text_crc);
    STORE(&log->tail_address, tail + size);
}

/* ---- link ---------------------------------------------------------------------------- */

/* Point each chain's index entry at the record's key pointer (after the
 * tail is published: a reader may follow it at once), and count its value
 * in the tally (a keyed store's key is not tallied: one record per value). */
static inline int link_record(const shoal_ingest_job *job, shoal_index *index, const record_plan *pl,
                              uint64_t tail) {
    for (uint32_t k = 0; k < pl->n_kps; k++) {
        const shoal_kp_plan *kp = &pl->kps[k];
        int urc = shoal_index_upsert(index, kp->hash, tail + shoal_kp_offset(k), NULL);
        if (urc == SHOAL_OK && job->tally && kp->psf_id != SHOAL_KEY_PSF_ID)
            urc = job->tally_hints
                      ? shoal_tally_add_hinted(job->tally, job->tally_table,
                                               job->tally_hints[kp - (const shoal_kp_plan *)job->plan], kp->psf_id,
                                               kp->hash, job->scratch + kp->canon_off, kp->canon_len,
                                               tail + shoal_kp_offset(k))
                      : shoal_tally_add(job->tally, kp->psf_id, kp->hash, job->scratch + kp->canon_off,
                                        kp->canon_len, tail + shoal_kp_offset(k), 1);
        if (urc != SHOAL_OK) return urc;
    }
    return SHOAL_OK;
}

/* ---- the two loops ------------------------------------------------------------------------ */

/* Frame, parse and evaluate records from job->next_span on into plans:
 * job->prep[i] and job->plan[prep.first_kp, +n_kps), their canonical values
 * in job->scratch. Touches no shared state (not the log, index or tally), so
 * ingesting threads run it at once, outside the writer lock. */
int shoal_ingest_prepare(shoal_ingest_job *job, const shoal_psfset *set) {
    shoal_kp_plan *plan = (shoal_kp_plan *)job->plan;
    int rc = SHOAL_OK;
    size_t frame_pos = (size_t)job->frame_pos;
    /* Every plan of this call looks its tally entry up in one table: the
     * plans before were all committed before the call. */
    if (job->tally && job->tally_hints && job->n_plan == 0) job->tally_table = shoal_tally_table(job->tally);
    uint32_t i = job->next_span;
    for (;; i++) {
        if (job->n_plan + MAX_PLAN > job->plan_cap) {
            if (job->n_plan == 0) { rc = SHOAL_E_ARG; break; } /* plan_cap < MAX_PLAN */
            rc = SHOAL_OUT_FULL;
            break;
        }
        if (i >= job->n_spans && !frame_next(job, &frame_pos)) break;
        const shoal_span *sp = &job->spans[i];
        shoal_rec_result *res = &job->results[i];
        shoal_ingest_prep *prep = &job->prep[i];
        const char *text = job->buf + sp->start;
        uint32_t first_extra = job->next_extra;
        uint32_t extra_end = first_extra;
        while (extra_end < job->n_extras && job->extras[extra_end].rec == i) extra_end++;
        res->address = 0;
        res->err_off = 0;
        res->status = SHOAL_OK;
        record_plan pl = {plan + job->n_plan, 0, job->scratch_used, job->scratch_used, 0};

        step s = parse_record(job, set, sp, job->page_size, res);
        if (s == STEP_ON) s = plan_programs(job, set, text, &pl, res, &rc);
        if (s == STEP_ON) s = plan_extras(job, first_extra, extra_end, &pl, res);
        uint64_t size = shoal_record_bytes(pl.n_kps, pl.values_bytes, (uint32_t)sp->len);
        if (s == STEP_ON && (size > job->page_size || size > 0xFFFFFFFFull || pl.values_bytes > 0xFFFFFFFFull)) {
            res->status = SHOAL_E_TOO_LARGE;
            s = STEP_REJECT;
        }
        if (s == STEP_FULL) {
            res->status = SHOAL_OK;
            rc = SHOAL_OUT_FULL;
            break;
        }
        if (s == STEP_STOP) break;
        job->next_extra = extra_end;
        if (s == STEP_REJECT) {
            prep->n_kps = 0;
            continue;
        }
        prep->first_kp = job->n_plan;
        prep->n_kps = pl.n_kps;
        prep->size = (uint32_t)size;
        prep->values_bytes = (uint32_t)pl.values_bytes;
        prep->text_crc_ok = (uint32_t)shoal_crc32c_part(text, sp->len, &prep->text_crc);
        job->n_plan += pl.n_kps;
        job->scratch_used = pl.scratch_used;
    }
    job->next_span = i;
    job->frame_pos = frame_pos;
    return rc;
}

/* Ask for the index buckets and tally slots a prepared record will touch. */
static inline void prefetch_links(const shoal_ingest_job *job, shoal_index *index, uint32_t i) {
    const shoal_ingest_prep *prep = &job->prep[i];
    if (job->results[i].status != SHOAL_OK) return;
    const shoal_kp_plan *plan = (const shoal_kp_plan *)job->plan + prep->first_kp;
    for (uint32_t k = 0; k < prep->n_kps; k++) {
        shoal_index_prefetch(index, plan[k].hash);
        if (job->tally && job->tally_hints && job->tally_hints[prep->first_kp + k])
            __builtin_prefetch(job->tally_hints[prep->first_kp + k], 1);
        else if (job->tally)
            shoal_tally_prefetch(job->tally, plan[k].hash);
    }
}

/* How many records ahead the commit loop prefetches: enough for the misses
 * to land, few enough that the lines are still in L1/L2 when used. */
#define PREFETCH_AHEAD 4

/* Append and link the prepared records [next_commit, next_span) in order,
 * counting each (a rejected one too) as it goes. The writer's part: under
 * the writer lock, one caller at a time. SHOAL_NEED_PAGE when the next
 * record does not fit the tail page (the caller turns the page and calls
 * again; next_commit says where). With dry_run, only counts. */
int shoal_ingest_commit(shoal_ingest_job *job, shoal_log *log, shoal_index *index) {
    shoal_kp_plan *plan = (shoal_kp_plan *)job->plan;
    const uint32_t end = job->next_span;
    if (!job->dry_run)
        for (uint32_t j = job->next_commit; j < end && j < job->next_commit + PREFETCH_AHEAD; j++)
            prefetch_links(job, index, j);
    for (uint32_t i = job->next_commit; i < end; i++) {
        const shoal_span *sp = &job->spans[i];
        shoal_rec_result *res = &job->results[i];
        if (res->status != SHOAL_OK) {
            job->text_bytes += sp->len;
            job->rejected++;
            job->rejects[job->n_rejects++] = i;
            continue;
        }
        if (job->dry_run) {
            job->text_bytes += sp->len;
            continue;
        }
        if (i + PREFETCH_AHEAD < end) prefetch_links(job, index, i + PREFETCH_AHEAD);
        const shoal_ingest_prep *prep = &job->prep[i];
        record_plan pl = {plan + prep->first_kp, prep->n_kps, 0, 0, prep->values_bytes};
        uint64_t tail = LOAD(&log->tail_address);
        char *rec = tail_room(log, tail, prep->size);
        if (!rec) {
            job->next_commit = i;
            return SHOAL_NEED_PAGE;
        }
        append_record(job, log, index, &pl, rec, tail, prep->size, job->buf + sp->start, (uint32_t)sp->len,
                      prep->text_crc_ok ? &prep->text_crc : NULL);
        job->text_bytes += sp->len;
        int rc = link_record(job, index, &pl, tail);
        if (rc != SHOAL_OK) {
            job->next_commit = i + 1;
            return rc;
        }
        res->address = tail;
        if (!job->first_address) job->first_address = tail;
        job->last_address = tail;
        job->appended++;
        log->records_appended++;
        job->bytes_appended += prep->size;
    }
    job->next_commit = end;
    return SHOAL_OK;
}

size_t shoal_kp_plan_bytes(void) { return sizeof(shoal_kp_plan); }
