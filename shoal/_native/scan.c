/*
 * scan.c -- record by record through a buffer of log bytes that Python read
 * (a page or its prefix): shoal_scan matches records against a program
 * (queries over records older than a PSF), shoal_replay verifies records and
 * re-links their key pointers into the index and the tally (recovery).
 *
 * Must stay true:
 *   - Buffers start at a record boundary, page aligned; a zero header ends
 *     a page's records.
 *   - Sizes are never trusted before the header is checked: the buffer may
 *     be a frame recycled under a scan (its caller then discards the answer),
 *     or a torn page on disk (replay stops there: SHOAL_E_CORRUPT).
 *   - Replay is the writer (it upserts the index); it checks each record's
 *     CRC and each key pointer's hash before linking it.
 */
#include "record.h"

#include <stdlib.h>
#include <string.h>

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
                } else if (job->mode == SHOAL_SCAN_BUCKETS) {
                    int64_t k;
                    match = shoal_prog_bucket(set, job->prog, payload, &v, &k) && k >= job->kmin && k <= job->kmax;
                } else {
                    int64_t cl = shoal_prog_canon(set, job->prog, payload, &v, job->scratch, job->scratch_bytes);
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
                 shoal_index *index, shoal_tally *tally, uint64_t *records) {
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
            int urc = index ? shoal_index_upsert(index, hash, a + shoal_kp_offset(k), NULL) : SHOAL_OK;
            if (urc == SHOAL_OK && tally && psf_id != SHOAL_KEY_PSF_ID)
                urc = shoal_tally_add(tally, psf_id, hash, canon, (uint32_t)cl, a + shoal_kp_offset(k), 1);
            if (urc != SHOAL_OK) { rc = urc; goto out; }
        }
        (*records)++;
        *pos = a + h->size;
    }
out:
    free(canon);
    return rc;
}
