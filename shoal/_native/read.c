/*
 * read.c -- reading the log at addresses: bytes (from a frame, a segment map
 * or the segment file through the per-call block cache) and verified
 * records (shoal_read; fetch.c's reads too).
 *
 * Must stay true:
 *   - A record is read only if it lies wholly below the tail the reader
 *     loaded (shoal_header_ok's end): bytes past it are being written.
 *   - An in-memory copy is checked seqlock-style: frame_page is loaded
 *     before the copy and re-checked after it (acquire fence); if the frame
 *     was recycled meanwhile, the bytes are read again from the segment
 *     file, where the writer put them before recycling the frame.
 *   - Records in frames are not checksummed (this process wrote them, or
 *     replay verified them when the store opened); records read from a map
 *     or a file are, before any byte is handed out.
 *   - Addresses a caller made up (verify_start) are proven record starts
 *     before they are read: see record_starts_at.
 */
#define _GNU_SOURCE
#include "hlog.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- log bytes --------------------------------------------------------------- */

/* A block-cache miss reads a 4 KiB block, or a 64 KiB one when it lands just
 * below the previous block (a dense chain): sparse chains (point queries) do
 * not pay for 64 KiB per hop, dense ones make few calls. */
#define SMALL_BLOCK_BYTES 4096

static int pread_full(int fd, char *dst, size_t n, uint64_t off) {
    while (n) {
        ssize_t r = pread(fd, dst, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return SHOAL_E_IO;
        }
        if (r == 0) return SHOAL_E_CORRUPT; /* short file: no record here */
        dst += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return SHOAL_OK;
}

/* The segment file holding addr and addr's offset in it; -1 if there is none. */
static int segment_of(shoal_log *log, uint64_t addr, uint64_t *offset) {
    uint64_t seg = shoal_segment_at(log, addr, offset);
    if (seg >= log->n_segment_slots) return -1;
    return LOAD(&log->segment_fds[seg]);
}

static int disk_read(shoal_log *log, uint64_t addr, char *dst, size_t n) {
    uint64_t off;
    int fd = segment_of(log, addr, &off);
    if (fd < 0) return SHOAL_E_CORRUPT;
    return pread_full(fd, dst, n, off);
}

/* ---- cold segments: compressed frames -------------------------------------------- */

/* A dense walk reads cold frames a few apart, newest first. Read one by one,
 * each pread of a frame whose file pages are not in memory waits for the
 * device (the kernel reads no more than asked for reads that do not go
 * forward): ~50 us per frame, more than decompressing it. So once a walk
 * reads a frame within COLD_DENSE_FRAMES of its last one, a read the page
 * cache cannot serve at once (RWF_NOWAIT) first asks for the COLD_HINT_BYTES
 * of the file the walk goes on into (POSIX_FADV_WILLNEED, not waited for). */
#define COLD_DENSE_FRAMES 16
#define COLD_HINT_BYTES (512 * 1024)

static int nowait_broken; /* RWF_NOWAIT refused (an old kernel, a file system): plain reads only */

static int cold_pread(const shoal_cold *c, uint64_t fa, char *z, size_t n, uint64_t off, shoal_block_cache *bc) {
    if (bc && !nowait_broken) {
        uint64_t prev = bc->cold_prev, gap = COLD_DENSE_FRAMES * (uint64_t)c->frame_bytes;
        bc->cold_prev = fa + 1;
        int dense = prev && (fa + 1 < prev ? prev - fa - 1 : fa + 1 - prev) <= gap;
        int hinted = bc->cold_hint_fd == c->fd && off >= bc->cold_hint_lo && off + n <= bc->cold_hint_hi;
        if (dense && !hinted) {
            struct iovec v = {z, n};
            ssize_t r = preadv2(c->fd, &v, 1, (off_t)off, RWF_NOWAIT);
            if (r == (ssize_t)n) return SHOAL_OK;
            if (r < 0 && errno != EAGAIN) nowait_broken = errno == EOPNOTSUPP || errno == EINVAL;
            uint64_t lo = off, hi = off + n;
            if (fa + 1 < prev) lo = off > COLD_HINT_BYTES ? off - COLD_HINT_BYTES : 0; /* downwards */
            else hi = off + COLD_HINT_BYTES;
            posix_fadvise(c->fd, (off_t)lo, (off_t)(hi - lo), POSIX_FADV_WILLNEED);
            bc->cold_hint_fd = c->fd;
            bc->cold_hint_lo = lo;
            bc->cold_hint_hi = hi;
        }
    }
    return pread_full(c->fd, z, n, off);
}

/* Decompress frame i of c into out (frame_bytes room): its raw length in *len. */
static int cold_frame(shoal_log *log, const shoal_cold *c, uint64_t i, char *out, uint32_t *len,
                      shoal_block_cache *bc) {
    char z[SHOAL_COLD_MAX_FRAME + 1024];
    uint64_t lo = c->offsets[i], hi = c->offsets[i + 1];
    if (hi <= lo || hi - lo > sizeof z) return SHOAL_E_CORRUPT;
    int rc = cold_pread(c, c->address + i * c->frame_bytes, z, (size_t)(hi - lo), lo, bc);
    if (rc != SHOAL_OK) return rc;
    int64_t k = shoal_frame_decompress(log->codec, z, hi - lo, c->address + i * c->frame_bytes, out, c->frame_bytes);
    if (k < 0) return k == SHOAL_E_IO ? k : SHOAL_E_CORRUPT;
    *len = (uint32_t)k;
    return SHOAL_OK;
}

/* Log bytes [addr, addr + n) of cold segment c, frame by frame; the caller's
 * block cache keeps the last frame decompressed (a walk's next hop is often
 * in it). */
static int cold_read(shoal_log *log, const shoal_cold *c, uint64_t addr, char *dst, size_t n,
                     shoal_block_cache **bcp) {
    char local[SHOAL_COLD_MAX_FRAME];
    shoal_block_cache *bc = bcp ? shoal_block_cache_of(bcp) : NULL;
    if (c->frame_bytes > SHOAL_COLD_MAX_FRAME || !c->frame_bytes) return SHOAL_E_CORRUPT;
    uint64_t raw_bytes = LOAD(&c->raw_bytes); /* the frames below it are published */
    while (n) {
        if (addr < c->address || addr - c->address >= raw_bytes) return SHOAL_E_CORRUPT;
        uint64_t i = (addr - c->address) / c->frame_bytes, fa = c->address + i * c->frame_bytes;
        const char *src;
        uint32_t len;
        uint64_t at = addr - fa;
        struct shoal_frame_cache *fc = log->frame_cache;
        if (bc && fa && bc->lo == fa) { /* (lo 0 means empty: the log's first frame is never kept) */
            src = bc->buf;
            len = bc->len;
        } else if (fc && shoal_frame_cache_get(fc, fa, at, dst, n, &len)) {
            /* a hit copies only the bytes asked for, not the frame */
            if (at >= len) return SHOAL_E_CORRUPT;
            size_t k = n < len - at ? n : (size_t)(len - at);
            dst += k;
            addr += k;
            n -= k;
            continue;
        } else {
            char *out = bc ? bc->buf : local;
            if (bc) bc->lo = 0;
            int rc = cold_frame(log, c, i, out, &len, bc);
            if (rc != SHOAL_OK) return rc;
            if (fc) shoal_frame_cache_put(fc, fa, out, len);
            if (bc && fa) { bc->lo = fa; bc->len = len; }
            src = out;
        }
        if (at >= len) return SHOAL_E_CORRUPT;
        size_t k = n < len - at ? n : (size_t)(len - at);
        memcpy(dst, src + at, k);
        dst += k;
        addr += k;
        n -= k;
    }
    return SHOAL_OK;
}

/* A raw read that found no file: the segment may have gone cold meanwhile. */
static int raw_or_cold(shoal_log *log, uint64_t addr, char *dst, size_t n, shoal_block_cache **bcp, int rc) {
    if (rc != SHOAL_E_CORRUPT) return rc;
    const shoal_cold *c = shoal_cold_at(log, addr);
    return c ? cold_read(log, c, addr, dst, n, bcp) : rc;
}

int shoal_read_bytes(shoal_log *log, uint64_t addr, char *dst, size_t n, shoal_block_cache **bcp) {
    uint64_t page = addr >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    int64_t p1 = LOAD(&log->frame_page[f]);
    if (p1 == (int64_t)page) {
        memcpy(dst, log->frames[f] + (addr & ((1ULL << log->page_bits) - 1)), n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) == p1) return SHOAL_OK;
    }
    const shoal_cold *cold = shoal_cold_at(log, addr);
    if (cold && addr - cold->address < LOAD(&cold->raw_bytes)) return cold_read(log, cold, addr, dst, n, bcp);
    const char *view = shoal_map_view(log, addr, n);
    if (view) {
        if (!shoal_page_move(bcp, addr)) return shoal_map_copy(dst, view, n);
        uint64_t t0 = shoal_ticks();
        int rc = shoal_map_copy(dst, view, n);
        shoal_map_hint(log, addr, shoal_ticks() - t0, bcp);
        return rc;
    }
    if (bcp && n <= SHOAL_BLOCK_BYTES) {
        shoal_block_cache *bc = shoal_block_cache_of(bcp);
        if (!bc) return SHOAL_E_NOMEM;
        if (!(bc->lo && addr >= bc->lo && addr + n <= bc->lo + bc->len)) {
            uint64_t page_size = 1ULL << log->page_bits;
            uint64_t block = (bc->lo && addr < bc->lo && bc->lo - addr <= SHOAL_BLOCK_BYTES) ? SHOAL_BLOCK_BYTES
                                                                                           : SMALL_BLOCK_BYTES;
            if (n > block) block = SHOAL_BLOCK_BYTES;
            uint64_t lo = addr & ~(block - 1);
            uint64_t page_lo = addr & ~(page_size - 1);
            if (lo < page_lo) lo = page_lo;
            uint64_t hi = lo + block;
            if (hi > page_lo + page_size) hi = page_lo + page_size;
            if (addr + n > hi) return raw_or_cold(log, addr, dst, n, bcp, disk_read(log, addr, dst, n));
            /* The block may run past the end of the segment file (last page
             * partially flushed): read what is there. */
            uint64_t want = hi - lo, off;
            int fd = segment_of(log, lo, &off);
            if (fd < 0) return raw_or_cold(log, addr, dst, n, bcp, SHOAL_E_CORRUPT);
            uint64_t got = 0;
            while (got < want) {
                ssize_t r = pread(fd, bc->buf + got, want - got, (off_t)(off + got));
                if (r < 0) {
                    if (errno == EINTR) continue;
                    bc->lo = 0;
                    return SHOAL_E_IO;
                }
                if (r == 0) break;
                got += (uint64_t)r;
            }
            bc->lo = lo;
            bc->len = (uint32_t)got;
            if (addr + n > lo + got) { bc->lo = 0; return SHOAL_E_CORRUPT; }
        }
        memcpy(dst, bc->buf + (addr - bc->lo), n);
        return SHOAL_OK;
    }
    return raw_or_cold(log, addr, dst, n, bcp, disk_read(log, addr, dst, n));
}

/* ---- records ------------------------------------------------------------------ */

/* shoal_read_record from a segment map, under one fault guard: the checksum
 * is taken on the map and only what the caller keeps is copied. -1: the
 * record is not (wholly) in a published map; read it some other way. */
static int read_mapped(shoal_log *log, uint64_t a, uint64_t tail, char *dst, uint64_t room, int payload_only,
                       uint32_t *len, shoal_block_cache **bc) {
    const char *rec = shoal_map_view(log, a, SHOAL_HEADER_BYTES);
    if (!rec) return -1;
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) return SHOAL_E_IO;
    int timed = shoal_page_move(bc, a); /* after sigsetjmp: not live across the jump */
    uint64_t t0 = timed ? shoal_ticks() : 0;
    shoal_map_guard_enter(&env);
    int rc;
    shoal_record_header h;
    memcpy(&h, rec, sizeof h);
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) {
        rc = SHOAL_E_CORRUPT;
    } else if (!shoal_map_view(log, a, h.size)) {
        rc = -1;
    } else {
        uint64_t start = payload_only ? shoal_payload_offset(&h) : 0;
        uint32_t n = payload_only ? h.payload_bytes : h.size;
        if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) n = 0;
        if (n > room) {
            *len = n;
            rc = SHOAL_E_SPACE;
        } else if (shoal_crc32c(0, rec + 4, shoal_payload_end(&h) - 4) != h.crc) {
            rc = SHOAL_E_CORRUPT;
        } else if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) {
            *len = 0;
            rc = SHOAL_TOMBSTONE;
        } else {
            memcpy(dst, rec + start, n);
            *len = n;
            rc = SHOAL_OK;
        }
    }
    shoal_map_guard_leave();
    if (timed) shoal_map_hint(log, a, shoal_ticks() - t0, bc);
    return rc;
}

/* In memory, the header is checked on the frame and the bytes copied once,
 * then the frame is re-checked (seqlock); otherwise the record is read from
 * a map or its segment file and its checksum verified. */
int shoal_read_record(shoal_log *log, uint64_t a, uint64_t tail, char *dst, uint64_t room, int payload_only,
                      uint32_t *len, shoal_block_cache **bc) {
    uint64_t page_mask = (1ULL << log->page_bits) - 1;
    uint64_t page = a >> log->page_bits;
    uint32_t f = (uint32_t)(page % log->n_frames);
    shoal_record_header h;
    int64_t p1 = LOAD(&log->frame_page[f]);
    if (p1 == (int64_t)page) {
        const char *rec = log->frames[f] + (a & page_mask);
        memcpy(&h, rec, sizeof h);
        /* No checksum here: a frame holds records this process wrote, or
         * the tail page's prefix that replay verified when the store opened. */
        int ok = shoal_header_ok(&h, a, log->page_bits, tail);
        int tomb = ok && payload_only && (h.flags & SHOAL_RF_TOMBSTONE);
        uint64_t start = payload_only ? shoal_payload_offset(&h) : 0;
        uint32_t n = ok && !tomb ? (payload_only ? h.payload_bytes : h.size) : 0;
        if (ok && n <= room) memcpy(dst, rec + start, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&log->frame_page[f], __ATOMIC_RELAXED) == p1) {
            if (!ok) return SHOAL_E_CORRUPT;
            if (tomb) { *len = 0; return SHOAL_TOMBSTONE; }
            *len = n;
            return n <= room ? SHOAL_OK : SHOAL_E_SPACE;
        }
        /* the frame was recycled under us: the page is on disk now */
    }
    int r = read_mapped(log, a, tail, dst, room, payload_only, len, bc);
    if (r != -1) return r;
    r = shoal_read_bytes(log, a, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : SHOAL_E_CORRUPT;
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) return SHOAL_E_CORRUPT;
    if (h.size > room) { *len = h.size; return SHOAL_E_SPACE; } /* whole record needed to verify */
    r = shoal_read_bytes(log, a, dst, h.size, h.size <= SHOAL_BLOCK_BYTES ? bc : NULL);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : SHOAL_E_CORRUPT;
    if (memcmp(dst, &h, sizeof h) != 0 || !shoal_record_crc_ok(dst)) return SHOAL_E_CORRUPT;
    if (payload_only && (h.flags & SHOAL_RF_TOMBSTONE)) { *len = 0; return SHOAL_TOMBSTONE; }
    if (payload_only) {
        memmove(dst, dst + shoal_payload_offset(&h), h.payload_bytes);
        *len = h.payload_bytes;
    } else {
        *len = h.size;
    }
    return SHOAL_OK;
}

/* Whether a record starts at a (8-aligned, in [begin, tail)): 1, 0, or
 * SHOAL_E_IO. A header carrying a's tag was written at a by the writer (a
 * copy of a record elsewhere carries another address's tag, bytes a client
 * chose cannot carry a valid one). Any other header is checked the slow way:
 * records lie back to back from their page's start (the log's first address
 * in page 0) to a zero header, so a is a record start exactly when hopping
 * headers from there lands on it. Bytes that only look like a header are
 * never hopped to: one forged in a record's values area, or an old record
 * past a page's end where a recycled frame left it (pages written before
 * page ends were cleared hold those on disk too). */
static int record_starts_at(shoal_log *log, uint64_t a, uint64_t tail, shoal_block_cache **bc) {
    shoal_record_header h;
    int r = shoal_read_bytes(log, a, (char *)&h, sizeof h, bc);
    if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : 0;
    if (!shoal_header_ok(&h, a, log->page_bits, tail)) return 0;
    if (h.aux == shoal_record_tag(log->tag_key, a)) return 1;
    uint64_t pos = a & ~((1ULL << log->page_bits) - 1);
    if (pos < SHOAL_FIRST_ADDRESS) pos = SHOAL_FIRST_ADDRESS;
    while (pos < a) {
        r = shoal_read_bytes(log, pos, (char *)&h, sizeof h, bc);
        if (r != SHOAL_OK) return r == SHOAL_E_IO ? r : 0;
        if (!shoal_header_ok(&h, pos, log->page_bits, tail)) return 0;
        pos += h.size;
    }
    return pos == a;
}

int shoal_read(shoal_read_job *job, shoal_log *log) {
    int sep = job->payload_only ? (int)(job->sep & 0xff) : 0;
    uint64_t begin = LOAD(&log->begin_address);
    uint64_t tail = LOAD(&log->tail_address);
    shoal_block_cache *bc = NULL;
    int rc = SHOAL_OK;
    for (; job->n_done < job->n; job->n_done++) {
        uint32_t i = job->n_done;
        uint64_t a = job->addrs[i];
        job->offsets[i] = job->used;
        job->lengths[i] = 0;
        job->status[i] = SHOAL_E_CORRUPT;
        if (!shoal_record_address_ok(a, begin, tail, log->page_bits)) continue;
        if (job->verify_start) {
            int s = record_starts_at(log, a, tail, &bc);
            if (s != 1) {
                if (s < 0) job->status[i] = s;
                continue;
            }
        }
        if (i + 1 < job->n) shoal_prefetch_near(log, job->addrs[i + 1]);
        uint32_t len = 0;
        int r = shoal_read_record(log, a, tail, job->out + job->used, shoal_room_for(job->cap, job->used, sep),
                                  job->payload_only != 0, &len, &bc);
        if (r == SHOAL_E_SPACE) {
            rc = job->used == 0 ? SHOAL_E_SPACE : SHOAL_OUT_FULL;
            break;
        }
        job->status[i] = r;
        if (r == SHOAL_OK) {
            job->lengths[i] = len;
            shoal_end_payload(job->out, &job->used, len, sep);
        }
    }
    free(bc);
    return rc;
}

