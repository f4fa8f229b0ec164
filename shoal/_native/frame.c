/*
 * frame.c -- compressed frames: the unit of the compressed cold tier.
 *
 * A frame holds up to SHOAL_FRAME_MAX_RAW bytes of log, [address, address +
 * raw_len), compressed with zstd (the store's dictionary, if it has one):
 *
 *   shoal_frame_header (32 B) | zstd frame (comp_len bytes) | zeros to 8
 *
 * zstd itself comes from the `zstandard` wheel: its cffi module exports the
 * library's entry points, which store/frames.py hands to shoal_zstd_bind at
 * import, so the build needs no zstd headers or system library.
 *
 * Must stay true:
 *   - A frame is taken only when its header checks (magic, its CRC32C over
 *     the header's other bytes and the compressed bytes), it is the frame of
 *     the address the reader asked for, and the bytes zstd gives back have
 *     the raw length and the raw CRC32C the writer recorded: a flipped bit
 *     anywhere, or a frame of another address, reads as SHOAL_E_CORRUPT.
 *   - Compression and decompression contexts are never shared between
 *     threads: a compress call makes its own, a decompress uses its
 *     thread's (created on first use, freed at the thread's exit).
 */
#include "internal.h"

#include <pthread.h>
#include <sys/mman.h>

static struct {
    void *(*createCCtx)(void);
    size_t (*freeCCtx)(void *);
    size_t (*compressCCtx)(void *, void *, size_t, const void *, size_t, int);
    size_t (*compress_usingCDict)(void *, void *, size_t, const void *, size_t, const void *);
    void *(*createCDict)(const void *, size_t, int);
    size_t (*freeCDict)(void *);
    void *(*createDCtx)(void);
    size_t (*freeDCtx)(void *);
    size_t (*decompressDCtx)(void *, void *, size_t, const void *, size_t);
    size_t (*decompress_usingDDict)(void *, void *, size_t, const void *, size_t, const void *);
    void *(*createDDict)(const void *, size_t);
    size_t (*freeDDict)(void *);
    unsigned (*isError)(size_t);
    size_t (*compressBound)(size_t);
    int bound;
} Z;

int shoal_zstd_bind(const shoal_zstd_api *api) {
    void *const *p = (void *const *)api;
    for (size_t i = 0; i < sizeof *api / sizeof(void *); i++)
        if (!p[i]) return SHOAL_E_ARG;
    memcpy(&Z, api, sizeof *api);
    Z.bound = 1;
    return SHOAL_OK;
}

struct shoal_codec {
    void *cdict, *ddict;
    int level;
};

shoal_codec *shoal_codec_new(const char *dict, uint64_t dict_len, int level) {
    if (!Z.bound) return NULL;
    shoal_codec *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->level = level;
    if (dict_len) {
        c->cdict = Z.createCDict(dict, (size_t)dict_len, level);
        c->ddict = Z.createDDict(dict, (size_t)dict_len);
        if (!c->cdict || !c->ddict) {
            shoal_codec_free(c);
            return NULL;
        }
    }
    return c;
}

void shoal_codec_free(shoal_codec *c) {
    if (!c) return;
    if (c->cdict) Z.freeCDict(c->cdict);
    if (c->ddict) Z.freeDDict(c->ddict);
    free(c);
}

static uint32_t header_crc(const shoal_frame_header *h, const char *comp) {
    uint32_t crc = shoal_crc32c(0, (const char *)h + 8, sizeof *h - 8);
    return shoal_crc32c(crc, comp, h->comp_len);
}

uint64_t shoal_frame_bound(uint64_t raw_len) {
    if (!Z.bound) return 0;
    return sizeof(shoal_frame_header) + ((Z.compressBound((size_t)raw_len) + 7) & ~(uint64_t)7);
}

int64_t shoal_frames_compress(shoal_codec *c, uint64_t address, const char *src, uint64_t n, uint32_t frame_raw,
                              char *out, uint64_t cap, uint64_t *offsets, uint32_t max_frames, uint32_t *n_frames) {
    *n_frames = 0;
    if (!c || !Z.bound || !frame_raw || frame_raw > SHOAL_FRAME_MAX_RAW) return SHOAL_E_ARG;
    void *cctx = Z.createCCtx();
    if (!cctx) return SHOAL_E_NOMEM;
    uint64_t used = 0;
    int64_t rc = 0;
    for (uint64_t at = 0; at < n; at += frame_raw) {
        uint32_t raw = (uint32_t)(n - at < frame_raw ? n - at : frame_raw);
        if (*n_frames == max_frames || cap - used < shoal_frame_bound(raw)) { rc = SHOAL_E_SPACE; break; }
        shoal_frame_header *h = (shoal_frame_header *)(out + used);
        char *comp = out + used + sizeof *h;
        size_t room = (size_t)(cap - used - sizeof *h);
        size_t k = c->cdict ? Z.compress_usingCDict(cctx, comp, room, src + at, raw, c->cdict)
                            : Z.compressCCtx(cctx, comp, room, src + at, raw, c->level);
        if (Z.isError(k)) { rc = SHOAL_E_SPACE; break; }
        memset(h, 0, sizeof *h);
        h->magic = SHOAL_FRAME_MAGIC;
        h->address = address + at;
        h->raw_len = raw;
        h->comp_len = (uint32_t)k;
        h->raw_crc = shoal_crc32c(0, src + at, raw);
        h->flags = c->cdict ? SHOAL_FRAME_DICT : 0;
        h->crc = header_crc(h, comp);
        uint64_t size = sizeof *h + ((k + 7) & ~(size_t)7);
        memset(comp + k, 0, (size_t)(size - sizeof *h - k));
        offsets[(*n_frames)++] = used;
        used += size;
    }
    Z.freeCCtx(cctx);
    return rc < 0 ? rc : (int64_t)used;
}

static pthread_key_t g_dctx_key;
static pthread_once_t g_dctx_once = PTHREAD_ONCE_INIT;
static void free_dctx(void *d) { if (d && Z.bound) Z.freeDCtx(d); }
static void make_dctx_key(void) { pthread_key_create(&g_dctx_key, free_dctx); }

static void *thread_dctx(void) {
    pthread_once(&g_dctx_once, make_dctx_key);
    void *d = pthread_getspecific(g_dctx_key);
    if (!d) {
        d = Z.createDCtx();
        if (d) pthread_setspecific(g_dctx_key, d);
    }
    return d;
}

int64_t shoal_frame_size(const char *f, uint64_t avail) {
    const shoal_frame_header *h = (const shoal_frame_header *)f;
    if (avail < sizeof *h || h->magic != SHOAL_FRAME_MAGIC || h->raw_len > SHOAL_FRAME_MAX_RAW) return SHOAL_E_CORRUPT;
    uint64_t size = sizeof *h + (((uint64_t)h->comp_len + 7) & ~(uint64_t)7);
    return size <= avail ? (int64_t)size : SHOAL_E_CORRUPT;
}

static int frame_checks(const char *data, uint64_t size, uint64_t pos) {
    const shoal_frame_header *h = (const shoal_frame_header *)(data + pos);
    return shoal_frame_size(data + pos, size - pos) > 0 && h->raw_len && header_crc(h, data + pos + sizeof *h) == h->crc;
}

/* Where the first frame lies after a hole compaction punched at the start of
 * a cold file (whole file system blocks of zeros, then the tail of the last
 * frame it covered), or 0: no hole there. */
static uint64_t after_hole(const char *data, uint64_t size) {
    uint64_t pos = 0;
    while (pos + 8 <= size && !memcmp(data + pos, "\0\0\0\0\0\0\0\0", 8)) pos += 8;
    pos &= ~(uint64_t)(SHOAL_HOLE_BLOCK - 1);
    if (pos == 0) return 0;
    for (uint64_t at = pos; at < size && at < pos + SHOAL_HOLE_BLOCK + SHOAL_COLD_MAX_FRAME + 1024; at += 8)
        if (frame_checks(data, size, at)) return at;
    return 0;
}

int64_t shoal_frames_walk(const char *data, uint64_t size, uint64_t address, uint64_t *offsets, uint64_t max,
                          uint64_t *n, uint64_t *first, uint64_t *raw_bytes, uint32_t *frame_raw) {
    uint64_t pos = 0, k = 0, raw = 0;
    uint32_t unit = 0;
    if (size && !frame_checks(data, size, 0)) pos = after_hole(data, size);
    while (pos < size && k < max) {
        const shoal_frame_header *h = (const shoal_frame_header *)(data + pos);
        int64_t len = shoal_frame_size(data + pos, size - pos);
        if (len < 0 || header_crc(h, data + pos + sizeof *h) != h->crc || h->raw_len == 0) break;
        if (k == 0) {
            if (address != UINT64_MAX && (pos ? h->address <= address : h->address != address)) break;
            address = h->address;
            unit = h->raw_len;
        } else if (h->address != address + raw || raw % unit || h->raw_len > unit) {
            break; /* not the next frame, or one after a short (last) frame */
        }
        offsets[k++] = pos;
        raw += h->raw_len;
        pos += (uint64_t)len;
    }
    *n = k;
    *first = address;
    *raw_bytes = raw;
    *frame_raw = unit;
    return (int64_t)pos;
}

int64_t shoal_frame_decompress(const shoal_codec *c, const char *f, uint64_t avail, uint64_t address,
                               char *dst, uint64_t cap) {
    if (!c || !Z.bound) return SHOAL_E_ARG;
    const shoal_frame_header *h = (const shoal_frame_header *)f;
    if (shoal_frame_size(f, avail) < 0 || h->address != address) return SHOAL_E_CORRUPT;
    const char *comp = f + sizeof *h;
    if (header_crc(h, comp) != h->crc) return SHOAL_E_CORRUPT;
    if ((h->flags & SHOAL_FRAME_DICT) && !c->ddict) return SHOAL_E_ARG; /* the store's dictionary was not loaded */
    if (cap < h->raw_len) return SHOAL_E_SPACE;
    void *dctx = thread_dctx();
    if (!dctx) return SHOAL_E_NOMEM;
    size_t k = (h->flags & SHOAL_FRAME_DICT) ? Z.decompress_usingDDict(dctx, dst, h->raw_len, comp, h->comp_len, c->ddict)
                                            : Z.decompressDCtx(dctx, dst, h->raw_len, comp, h->comp_len);
    if (Z.isError(k) || k != h->raw_len || shoal_crc32c(0, dst, k) != h->raw_crc) return SHOAL_E_CORRUPT;
    return (int64_t)k;
}

/* ---- the shared cache of decompressed frames ------------------------------ */

/* Set-associative: a frame's address picks a set of WAYS slots; a miss is
 * filled by the reader that decompressed it (CLOCK eviction within the set),
 * under the set's lock. 32 ways: with 8, a dense answer whose frames filled
 * 60% of the cache overflowed ~7% of the sets, and every repeat decompressed
 * those frames again (3.6x slower).
 *
 * A hit takes no lock: a chain walk reads a record's key pointer, value and
 * body apart (~4 lookups per record), and a mutex per lookup made a warm
 * dense answer from cold frames twice as slow as from a raw file. A set's
 * `seq` is odd while a filler changes one of its slots: a reader loads it,
 * finds the key, copies the bytes, and keeps them only if `seq` is the same
 * even number after (a seqlock); else it tries again, under the lock.
 *
 * Must stay true: a slot's key and bytes change only under its set's lock,
 * between two increments of `seq`; a reader hands out bytes only when `seq`
 * did not move while it read them; keys are log addresses, never reused. */
#define WAYS 32

/* A lookup reads the set's first cache line (seq, counters, a one-byte tag
 * per way) and the slot whose tag matches: two lines, not the eight a scan
 * of every key took (the sets of a large cache are rarely in the CPU's). */
typedef struct {
    uint64_t key;         /* atomic: frame address + 1; 0: empty */
    uint32_t len;
    uint8_t used;         /* CLOCK bit (a reader sets it without the lock: a lost set costs an eviction) */
} cache_slot;

typedef struct {
    _Alignas(64) uint32_t seq; /* atomic: odd while a slot changes */
    uint32_t hand;
    uint64_t hits, misses; /* relaxed counters, per set: no line shared by every reader */
    uint8_t tag[WAYS];    /* atomic: of the slot's key (frame_tag), 0: empty */
    cache_slot slot[WAYS];
    pthread_mutex_t lock; /* fillers only */
} cache_set;

struct shoal_frame_cache {
    uint32_t n_sets, frame_bytes;
    cache_set *sets;
    char *bufs;           /* n_sets * WAYS * frame_bytes, mapped */
    size_t bufs_bytes;
};

struct shoal_frame_cache *shoal_frame_cache_new(uint64_t bytes, uint32_t frame_bytes) {
    if (!frame_bytes) return NULL;
    uint64_t slots = bytes / frame_bytes;
    uint32_t n_sets = (uint32_t)(slots / WAYS);
    if (n_sets == 0) n_sets = 1;
    struct shoal_frame_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n_sets = n_sets;
    c->frame_bytes = frame_bytes;
    c->sets = aligned_alloc(64, (size_t)n_sets * sizeof *c->sets); /* a set starts a cache line */
    if (c->sets) memset(c->sets, 0, (size_t)n_sets * sizeof *c->sets);
    /* Untouched pages cost nothing until filled, and go back at free. Not
     * MADV_HUGEPAGE: faults would take a fifth less time, but where the
     * kernel compacts memory for them (defrag "madvise") a first query
     * stalled for 100 ms. */
    c->bufs_bytes = (size_t)n_sets * WAYS * frame_bytes;
    void *m = mmap(NULL, c->bufs_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    c->bufs = m == MAP_FAILED ? NULL : m;
    if (!c->sets || !c->bufs) {
        free(c->sets);
        if (c->bufs) munmap(c->bufs, c->bufs_bytes);
        free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < n_sets; i++) pthread_mutex_init(&c->sets[i].lock, NULL);
    return c;
}

void shoal_frame_cache_free(struct shoal_frame_cache *c) {
    if (!c) return;
    for (uint32_t i = 0; i < c->n_sets; i++) pthread_mutex_destroy(&c->sets[i].lock);
    free(c->sets);
    munmap(c->bufs, c->bufs_bytes);
    free(c);
}

void shoal_frame_cache_counts(const struct shoal_frame_cache *c, uint64_t *hits, uint64_t *misses) {
    *hits = *misses = 0;
    for (uint32_t i = 0; c && i < c->n_sets; i++) {
        *hits += __atomic_load_n(&c->sets[i].hits, __ATOMIC_RELAXED);
        *misses += __atomic_load_n(&c->sets[i].misses, __ATOMIC_RELAXED);
    }
}

static uint64_t frame_hash(const struct shoal_frame_cache *c, uint64_t address) {
    return (address / c->frame_bytes) * 0x9E3779B97F4A7C15ull;
}

static cache_set *set_of(struct shoal_frame_cache *c, uint64_t address) {
    return &c->sets[(frame_hash(c, address) >> 32) % c->n_sets];
}

static uint8_t frame_tag(const struct shoal_frame_cache *c, uint64_t address) {
    return (uint8_t)(frame_hash(c, address) >> 24) | 1; /* never 0 (empty) */
}

/* The slot of `address` in s, or WAYS; copies what is asked of it to dst. */
static uint32_t find_copy(struct shoal_frame_cache *c, cache_set *s, uint64_t address, uint64_t at, char *dst,
                          uint64_t n, uint32_t *len) {
    char *base = c->bufs + (size_t)(s - c->sets) * WAYS * c->frame_bytes;
    uint8_t t = frame_tag(c, address);
    for (uint32_t w = 0; w < WAYS; w++) {
        if (__atomic_load_n(&s->tag[w], __ATOMIC_RELAXED) != t) continue;
        if (__atomic_load_n(&s->slot[w].key, __ATOMIC_RELAXED) != address + 1) continue;
        uint32_t l = __atomic_load_n(&s->slot[w].len, __ATOMIC_RELAXED);
        if (l > c->frame_bytes) return WAYS; /* torn: a filler is in this slot */
        *len = l;
        if (at < l) memcpy(dst, base + (size_t)w * c->frame_bytes + at, (size_t)(n < l - at ? n : l - at));
        return w;
    }
    return WAYS;
}

int shoal_frame_cache_get(struct shoal_frame_cache *c, uint64_t address, uint64_t at, char *dst, uint64_t n,
                          uint32_t *len) {
    cache_set *s = set_of(c, address);
    uint32_t w = WAYS;
    for (int tries = 0; tries < 2; tries++) {
        uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (seq & 1) continue;
        w = find_copy(c, s, address, at, dst, n, len);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == seq) goto done;
    }
    pthread_mutex_lock(&s->lock); /* fillers kept moving: read beside them no more */
    w = find_copy(c, s, address, at, dst, n, len);
    pthread_mutex_unlock(&s->lock);
done:
    if (w < WAYS) __atomic_store_n(&s->slot[w].used, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(w < WAYS ? &s->hits : &s->misses, 1, __ATOMIC_RELAXED);
    return w < WAYS;
}

void shoal_frame_cache_put(struct shoal_frame_cache *c, uint64_t address, const char *src, uint32_t len) {
    if (len > c->frame_bytes) return;
    cache_set *s = set_of(c, address);
    char *base = c->bufs + (size_t)(s - c->sets) * WAYS * c->frame_bytes;
    pthread_mutex_lock(&s->lock);
    uint32_t w;
    for (w = 0; w < WAYS; w++)
        if (s->slot[w].key == address + 1) break; /* another reader put it meanwhile */
    if (w == WAYS) {
        for (;;) { /* CLOCK: the first slot not used since the hand last passed */
            w = s->hand;
            s->hand = (s->hand + 1) % WAYS;
            if (!__atomic_load_n(&s->slot[w].used, __ATOMIC_RELAXED) || !s->slot[w].key) break;
            __atomic_store_n(&s->slot[w].used, 0, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELAXED); /* odd: readers of this set retry */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&s->tag[w], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->slot[w].key, 0, __ATOMIC_RELAXED);
        memcpy(base + (size_t)w * c->frame_bytes, src, len);
        __atomic_store_n(&s->slot[w].len, len, __ATOMIC_RELAXED);
        __atomic_store_n(&s->slot[w].key, address + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&s->slot[w].used, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&s->tag[w], frame_tag(c, address), __ATOMIC_RELAXED);
        __atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE); /* even again */
    }
    pthread_mutex_unlock(&s->lock);
}
