/*
 * segmap.c -- segment files mapped read-only, the SIGBUS guard that
 * makes a fault in a map read as an I/O error, and the holes compaction
 * punches in a segment file below begin (shoal_punch_hole).
 *
 * Segment files are mapped read-only, and the part of each whose pages are
 * written is published (segment_map_bytes), so a read below head is a copy
 * from the page cache, not a pread each. Python maps, extends and unmaps
 * (shoal_segment_*); readers find maps with shoal_map_view (hlog.h).
 *
 * Must stay true:
 *   - A published map's first segment_map_bytes[s] bytes are written pages
 *     that are never written again; segment_map_bytes only grows while the
 *     map is published, and a map is unpublished before it is unmapped (the
 *     caller waits for readers in between: the store's reader gate).
 *   - Every read from a map runs between shoal_map_guard_enter and _leave
 *     (hlog.h) after a sigsetjmp: a fault in a map (the file was truncated
 *     under us, or the device failed) raises SIGBUS, and the handler jumps
 *     back to the read, which reports SHOAL_E_IO as a failed pread would. A
 *     SIGBUS outside such a read goes to the handler that was there before.
 */
#define _GNU_SOURCE
#include "hlog.h"

#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>

/* Must also stay true: a punched range lies wholly below the log's begin
 * address, and is punched only once no reader that might read it is left
 * (the store's gate): a read there finds zeros, which no record holds. */

/* ---- the SIGBUS guard ----------------------------------------------------- */

__thread sigjmp_buf *shoal_map_guard; /* hlog.h */
static struct sigaction g_prev_sigbus;
static pthread_once_t g_sigbus_once = PTHREAD_ONCE_INIT;
static int g_sigbus_ready;

static void on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    sigjmp_buf *guard = shoal_map_guard;
    /* Inside a map copy, whoever sent it: a handler installed after ours
     * (Python's faulthandler) may have met the fault first and raised the
     * signal again after restoring ours. */
    if (guard) {
        shoal_map_guard = NULL;
        /* The jump leaves the handler (or a chain of them) without restoring
         * the signal mask (sigsetjmp(env, 0): no syscall per copy), and a
         * handler installed without SA_NODEFER left SIGBUS blocked. */
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        siglongjmp(*guard, 1);
    }
    /* Not ours: restore the previous handler. A fault repeats on return and
     * meets it; a signal sent by kill is raised again. */
    sigaction(SIGBUS, &g_prev_sigbus, NULL);
    if (!si || si->si_code <= 0) raise(sig);
}

static void install_sigbus(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER; /* NODEFER: not blocked after the jump */
    sigemptyset(&sa.sa_mask);
    g_sigbus_ready = sigaction(SIGBUS, &sa, &g_prev_sigbus) == 0;
}

int shoal_map_copy(char *dst, const char *src, size_t n) {
    sigjmp_buf env;
    if (sigsetjmp(env, 0)) return SHOAL_E_IO;
    shoal_map_guard_enter(&env);
    memcpy(dst, src, n);
    shoal_map_guard_leave();
    return SHOAL_OK;
}

/* ---- read-ahead advice ----------------------------------------------------- */

/* Maps fault one page at a time (MADV_RANDOM), which suits hops across the
 * log. When a dense walk (moves between 4 KiB pages of at most DENSE_GAP)
 * meets a page that was not in memory (the copy took SHOAL_SLOW_TICKS or
 * more: a read from the device), it asks the kernel to read ahead HINT_BYTES
 * in its direction, so a cold dense answer is read in large requests, not a
 * page per fault. Warm walks never ask (a hint costs microseconds even then). */
#define DENSE_GAP (16 * 1024)
#define HINT_BYTES (256 * 1024)

void shoal_map_hint(shoal_log *log, uint64_t a, uint64_t took, shoal_block_cache **bcp) {
    shoal_block_cache *bc = shoal_block_cache_of(bcp);
    if (!bc) return;
    uint64_t prev = bc->map_prev;
    bc->map_prev = a;
    if (took < SHOAL_SLOW_TICKS || !prev || (a < prev ? prev - a : a - prev) > DENSE_GAP) return;
    if (a >= bc->hint_lo && a < bc->hint_hi) return;
    uint64_t seg_bytes = 1ULL << (log->page_bits + log->segment_page_bits);
    uint64_t seg = a / seg_bytes, seg_lo = seg * seg_bytes;
    if (seg >= log->n_segment_slots) return;
    char *m = LOAD(&log->segment_maps[seg]);
    if (!m) return;
    uint64_t valid = LOAD(&log->segment_map_bytes[seg]);
    uint64_t lo, hi;
    if (a < prev) { /* newest first: downwards */
        hi = a + 4096;
        lo = hi - seg_lo > HINT_BYTES ? hi - HINT_BYTES : seg_lo;
    } else {
        lo = a;
        hi = a + HINT_BYTES;
    }
    lo &= ~(uint64_t)4095;
    hi = (hi + 4095) & ~(uint64_t)4095;
    if (hi > seg_lo + valid) hi = seg_lo + valid;
    if (hi <= lo) return;
    madvise(m + (lo - seg_lo), (size_t)(hi - lo), MADV_WILLNEED);
    bc->hint_lo = lo;
    bc->hint_hi = hi;
}

/* ---- maps, as Python manages them ------------------------------------------- */

int shoal_segment_map(shoal_log *log, uint32_t seg, int fd, uint64_t map_len, uint64_t valid) {
    if (!log->segment_maps || seg >= log->n_segment_slots || !map_len || valid > map_len
        || sizeof(void *) < 8 || LOAD(&log->segment_maps[seg]))
        return SHOAL_E_ARG;
    pthread_once(&g_sigbus_once, install_sigbus);
    if (!g_sigbus_ready) return SHOAL_E_IO;
    void *m = mmap(NULL, (size_t)map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return SHOAL_E_IO;
    /* A fault reads the page it needs, not the device's read-ahead window
     * around it (8 MiB on some virtual disks): chain walks hop. */
    madvise(m, (size_t)map_len, MADV_RANDOM);
    STORE(&log->segment_map_bytes[seg], valid);
    STORE(&log->segment_maps[seg], (char *)m);
    return SHOAL_OK;
}

void shoal_segment_extend(shoal_log *log, uint32_t seg, uint64_t valid) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return;
    if (valid > LOAD(&log->segment_map_bytes[seg])) STORE(&log->segment_map_bytes[seg], valid);
}

void *shoal_segment_unpublish(shoal_log *log, uint32_t seg) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return NULL;
    return __atomic_exchange_n(&log->segment_maps[seg], NULL, __ATOMIC_ACQ_REL);
}

void shoal_segment_unmap(void *map, uint64_t bytes) {
    if (map) munmap(map, (size_t)bytes);
}

void shoal_segment_map_dontneed(shoal_log *log, uint32_t seg) {
    if (!log->segment_maps || seg >= log->n_segment_slots) return;
    char *m = LOAD(&log->segment_maps[seg]);
    uint64_t valid = LOAD(&log->segment_map_bytes[seg]);
    if (m && valid) madvise(m, (size_t)valid, MADV_DONTNEED);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* First touch of fresh memory is where a first ingest spent a third of its
 * time (the kernel zeroing pages, dearer on VMs that hand freed memory back
 * to their host): HybridLog prepares frames on another thread with this. */
int shoal_populate(char *p, uint64_t n) {
    /* No fallback that writes: the writer may be filling the frame already. */
    return madvise(p, (size_t)n, MADV_POPULATE_WRITE) == 0 ? 0 : -errno;
}

int shoal_punch_hole(int fd, uint64_t offset, uint64_t len) {
    if (!len) return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) != 0) return -errno;
    return 0;
}
