/*
 * ingest.c -- shoal_ingest: the single writer's per-record pipeline, from
 * framed text to records at the tail linked into their chains.
 *
 * Must stay true:
 *   - One writer (Python's writer lock): nothing else appends, moves the
 *     tail or upserts the index meanwhile.
 *   - A record's bytes are complete before tail_address is published
 *     (release), and the tail is published before any index entry points
 *     into the record, so a reader that reaches it through the index or
 *     below a tail it loaded sees all of it.
 *   - A key pointer's prev is its chain's head before the record was
 *     linked: chains only point backwards.
 */
#include "hlog.h"

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
