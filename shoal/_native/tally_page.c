/*
 * tally_page.c -- tallying the key pointers of records in log pages: what a
 * window's group count counts and what a compaction subtracts (a delta).
 * The buffer is a copy of a page (a frame may be recycled under a reader,
 * and a tally cannot be taken back); sizes are checked before use.
 */
#include "tally.h"
#include "record.h"

int shoal_tally_page(const char *buf, uint64_t base, uint64_t len, uint64_t *pos, uint64_t lo, uint64_t hi,
                     uint32_t psf_id, shoal_tally *t, shoal_tally *only) {
    uint64_t end = base + len;
    char small[256];
    char *canon = small;
    uint64_t canon_cap = sizeof small;
    int rc = SHOAL_OK;
    while (*pos + SHOAL_HEADER_BYTES <= end) {
        uint64_t a = *pos;
        const char *rec = buf + (a - base);
        const shoal_record_header *h = (const shoal_record_header *)rec;
        if (h->size == 0 && h->magic == 0) { rc = SHOAL_END; break; }
        if (h->magic != SHOAL_RECORD_MAGIC || !shoal_header_size_ok(h) || a + h->size > end) {
            rc = SHOAL_E_CORRUPT;
            break;
        }
        if (a >= hi) { rc = SHOAL_END; break; }
        if (a >= lo && !(h->flags & SHOAL_RF_TOMBSTONE)) {
            for (uint32_t k = 0; k < h->n_kps; k++) {
                const shoal_key_pointer *kp = (const shoal_key_pointer *)(rec + shoal_kp_offset(k));
                uint32_t id = shoal_kp_psf(kp->prev_psf);
                if (id == SHOAL_KEY_PSF_ID || (psf_id != SHOAL_TALLY_ALL && id != psf_id)) continue;
                if (kp->value_off + (uint64_t)kp->value_len > h->size) { rc = SHOAL_E_CORRUPT; goto out; }
                if ((uint64_t)kp->value_len + 1 > canon_cap) {
                    char *n = malloc(((uint64_t)kp->value_len + 1) * 2);
                    if (!n) { rc = SHOAL_E_NOMEM; goto out; }
                    if (canon != small) free(canon);
                    canon = n;
                    canon_cap = ((uint64_t)kp->value_len + 1) * 2;
                }
                uint32_t cl = 0;
                if (kp->value_kind == SHOAL_KP_SPAN) canon[cl++] = 's';
                memcpy(canon + cl, rec + kp->value_off, kp->value_len);
                cl += kp->value_len;
                uint64_t hash = shoal_hash(id, canon, cl);
                if (only) {
                    shoal_tally_psf *ps = &only->psfs[id];
                    int64_t c;
                    if (!ps->used || a < ps->since || !shoal_tally_get(only, id, hash, canon, cl, &c)) continue;
                }
                if (!t->psfs[id].used) { /* a delta or a window tallies what it meets */
                    t->psfs[id].used = 1;
                    t->psfs[id].since = only ? only->psfs[id].since : 0;
                }
                rc = shoal_tally_add(t, id, hash, canon, cl, a + shoal_kp_offset(k), 1);
                if (rc != SHOAL_OK) goto out;
            }
        }
        *pos = a + h->size;
    }
out:
    if (canon != small) free(canon);
    return rc;
}
