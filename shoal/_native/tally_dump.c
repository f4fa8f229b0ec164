/*
 * tally_dump.c -- the tally in a checkpoint (ckpt-<n>.tally): dump and load.
 * A loaded tally is checked whole (magic, version, every length, no value
 * twice, samples rising) before it is used; a bad one is CORRUPT and
 * recovery counts the log again instead.
 */
#include "tally.h"

/* Layout: u32 magic, u32 version, u32 n_psfs, then per tallied PSF (u32 id,
 * u32 values, u64 since, u32 overflow), then u64 n entries and per entry
 * (u32 psf_id, u32 len, i64 count, u64 ordinal, u32 n_samples, len bytes,
 * n_samples x (u64 kp, u64 ordinal)). Little-endian, as the host. */
uint64_t shoal_tally_dump_bytes(shoal_tally *t) {
    uint64_t n = 12;
    for (uint32_t i = 0; i < N_PSFS; i++) n += t->psfs[i].used ? 20 : 0;
    n += 8;
    table_t *tb = t->table;
    for (uint64_t i = 0; i <= tb->mask; i++)
        if (tb->e[i].hash && tb->e[i].psf_id != DEAD_PSF)
            n += 28 + tb->e[i].len + (uint64_t)tb->e[i].n_samples * sizeof(shoal_tally_sample);
    return n;
}

int shoal_tally_dump(shoal_tally *t, char *dst, uint64_t cap) {
    if (cap < shoal_tally_dump_bytes(t)) return SHOAL_E_SPACE;
    char *p = dst;
#define PUT(v, w) do { __typeof__(v) _v = (v); memcpy(p, &_v, (w)); p += (w); } while (0)
    uint32_t n_psfs = 0;
    for (uint32_t i = 0; i < N_PSFS; i++) n_psfs += t->psfs[i].used;
    PUT((uint32_t)DUMP_MAGIC, 4);
    PUT((uint32_t)DUMP_VERSION, 4);
    PUT(n_psfs, 4);
    for (uint32_t i = 0; i < N_PSFS; i++) {
        if (!t->psfs[i].used) continue;
        PUT(i, 4);
        PUT(t->psfs[i].values, 4);
        PUT(t->psfs[i].since, 8);
        PUT((uint32_t)t->psfs[i].overflow, 4);
    }
    PUT(t->live, 8);
    table_t *tb = t->table;
    for (uint64_t i = 0; i <= tb->mask; i++) {
        entry_t *e = &tb->e[i];
        if (!e->hash || e->psf_id == DEAD_PSF) continue;
        PUT(e->psf_id, 4);
        PUT(e->len, 4);
        PUT(e->count, 8);
        PUT(e->ordinal, 8);
        PUT(e->n_samples, 4);
        memcpy(p, e->bytes, e->len);
        p += e->len;
        for (uint32_t k = 0; k < e->n_samples; k++) {
            PUT(e->samples[k].kp, 8);
            PUT(e->samples[k].ordinal, 8);
        }
    }
#undef PUT
    return SHOAL_OK;
}

shoal_tally *shoal_tally_load(const char *src, uint64_t len, uint32_t max_values, uint32_t max_value_bytes,
                              int *err) {
    const char *p = src, *end = src + len;
    *err = SHOAL_E_CORRUPT;
#define GET(var, w) do { if ((uint64_t)(end - p) < (w)) goto bad; memcpy(&(var), p, (w)); p += (w); } while (0)
    uint32_t magic = 0, version = 0, n_psfs = 0;
    uint64_t n = 0;
    shoal_tally *t = shoal_tally_new(max_values, max_value_bytes);
    if (!t) { *err = SHOAL_E_NOMEM; return NULL; }
    GET(magic, 4);
    GET(version, 4);
    if (magic != DUMP_MAGIC || version != DUMP_VERSION) goto bad;
    GET(n_psfs, 4);
    for (uint32_t i = 0; i < n_psfs; i++) {
        uint32_t id, values, overflow;
        uint64_t since;
        GET(id, 4);
        GET(values, 4);
        GET(since, 8);
        GET(overflow, 4);
        if (id >= N_PSFS || id == SHOAL_KEY_PSF_ID || t->psfs[id].used) goto bad;
        t->psfs[id].used = 1;
        t->psfs[id].since = since;
        t->psfs[id].overflow = overflow ? 1 : 0;
        (void)values; /* counted again as the entries load */
    }
    GET(n, 8);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id, vlen, n_samples;
        int64_t count;
        uint64_t ordinal;
        GET(id, 4);
        GET(vlen, 4);
        GET(count, 8);
        GET(ordinal, 8);
        GET(n_samples, 4);
        if ((uint64_t)(end - p) < vlen || id >= N_PSFS || !t->psfs[id].used || count <= 0
            || ordinal < (uint64_t)count)
            goto bad;
        shoal_tally_psf *ps = &t->psfs[id];
        uint64_t hash = shoal_hash(id, p, vlen);
        int64_t have;
        if (shoal_tally_get(t, id, hash, p, vlen, &have)) goto bad; /* a value twice */
        /* Loaded values are admitted past the bounds of this open (they may
         * have been lowered): the counts stay exact, the PSF just takes no
         * new values. */
        uint8_t overflow = ps->overflow;
        uint32_t mv = t->max_values, mb = t->max_value_bytes;
        ps->overflow = 0;
        t->max_values = UINT32_MAX;
        t->max_value_bytes = UINT32_MAX;
        t->sampling = 0;
        int rc = shoal_tally_add(t, id, hash, p, vlen, ps->since, count);
        t->sampling = 1;
        t->max_values = mv;
        t->max_value_bytes = mb;
        ps->overflow = overflow || ps->values > mv;
        if (rc != SHOAL_OK) { *err = rc; shoal_tally_free(t); return NULL; }
        entry_t *e = shoal_tally_probe(t->table, id, hash, p, vlen);
        p += vlen;
        if (!e) goto bad;
        e->ordinal = ordinal;
        if ((uint64_t)(end - p) / sizeof(shoal_tally_sample) < n_samples) goto bad;
        for (uint32_t k = 0; k < n_samples; k++) {
            shoal_tally_sample smp;
            GET(smp.kp, 8);
            GET(smp.ordinal, 8);
            /* samples rise in address and ordinal, and none passes the entry's */
            if (smp.ordinal > ordinal || (e->n_samples && (smp.kp <= e->samples[e->n_samples - 1].kp ||
                                                           smp.ordinal <= e->samples[e->n_samples - 1].ordinal)))
                goto bad;
            uint64_t keep = e->ordinal;
            e->ordinal = smp.ordinal;
            rc = shoal_tally_add_sample(t, e, smp.kp);
            e->ordinal = keep;
            if (rc != SHOAL_OK) { *err = rc; shoal_tally_free(t); return NULL; }
        }
    }
    if (p != end) goto bad;
#undef GET
    *err = SHOAL_OK;
    return t;
bad:
    shoal_tally_free(t);
    return NULL;
}
