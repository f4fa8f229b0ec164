"""HybridLog: the append-only record log, newest pages in memory, older pages
in segment files (FASTER's hybrid log, without in-place updates: shoal's
records are immutable once written).

Memory: `n_frames` page frames of page_size bytes, allocated on first use, is
all the log ever holds in memory; page p lives in frame p % n_frames. Until
every frame exists, a thread makes and populates the frames of the pages
after the tail (`_prepare`), so the writer does not wait for the kernel to
zero fresh memory.

Page life: the tail page takes appends; when a record does not fit, the writer
turns the page: the full page goes to the flusher thread, the next page takes
a frame, and when that frame still holds an old page the writer waits until
that page is flushed, moves head past it, and recycles the frame.

Concurrency:
  - One writer (the store's writer lock) appends through C, turns pages,
    flushes the tail page and moves addresses.
  - The preparer thread makes frames for pages the writer has not reached
    (under `_frame_lock`, which the writer takes to make one too) and
    faults their memory in; it never writes a frame's bytes.
  - The flusher thread writes sealed pages in order and advances
    flushed_until_address; `_cv` guards its queue and progress.
    flushed_until_address means "every byte below is written to its segment
    file" (not yet fsynced: store/commit.py makes it durable).
  - Readers never lock: they read addresses with atomic loads in C and check
    frame_page before and after copying (seqlock), falling back to segment
    files for pages that left memory.

Write errors (disk full, EIO): a page whose write failed stays queued and in
its frame (frames are recycled only once their page is written), so nothing
is lost while the process lives. The flusher then waits; the next writer call
that needs the page written (a page turn, a flush, a durable ingest) asks it
to retry once and raises DiskFull / NativeIOError if that fails too. A failed
fsync is different (after one, the kernel may have dropped the dirty pages,
so what is on disk is unknown): `fail_writes` refuses further writes until
the store is reopened, and recovery then keeps what verifies.

Why this file is long: the writer side (page turns, the flusher thread,
planned tail writes, write errors) is one protocol over one condition
variable and the frames; split across files, the rules above would be too.
Record reads by address live in reads.py.
"""
from __future__ import annotations

import collections
import mmap
import os
import threading
from array import array
from pathlib import Path

from .._native import ffi, lib
from ..config import StoreConfig
from ..errors import NativeIOError, ShoalError, StorageError, restated
from ..files import write_atomic
from .address import FIRST_ADDRESS, MAX_ADDRESS
from .frames import store_codec
from .reads import RecordReads
from .segments import BLOCK_BYTES, SegmentFiles

_MAX_SEGMENT_SLOTS = 1 << 20
TAG_KEY_FILE = "record-tag.key"  # in the log directory, beside the segment files
_ZERO_HEADER = bytes(32)
_ZEROS = bytes(64 << 10)
_HUGE_PAGE_BYTES = 2 << 20
PREPARE_AHEAD = 8  # frames made and populated ahead of the tail page, until every frame exists


class HybridLog:
    def __init__(self, directory: Path, config: StoreConfig, begin_address: int = FIRST_ADDRESS,
                 tail_address: int = FIRST_ADDRESS):
        self.config = config
        self.page_bits = config.page_bits
        self.page_size = config.page_size_bytes
        self.n_frames = config.n_frames
        seg_page_bits = (config.segment_size_bytes // config.page_size_bytes).bit_length() - 1
        n_slots = min(_MAX_SEGMENT_SLOTS, (MAX_ADDRESS + 1) >> (self.page_bits + seg_page_bits))

        c = ffi.new("shoal_log *")
        # Records appended before each page this process turned into (see
        # records_in_page): entry i is for page _page_starts_first + i.
        self._page_starts = array("Q")
        self._page_starts_first = -1
        self._frame_ptrs = ffi.new("char *[]", self.n_frames)
        self._frame_page = ffi.new("int64_t[]", self.n_frames)
        for i in range(self.n_frames):
            self._frame_page[i] = -1
        self._fds = ffi.new("int32_t[]", n_slots)
        ffi.memmove(self._fds, b"\xff" * (4 * n_slots), 4 * n_slots)  # every slot -1 (no file); a loop took 70 ms
        c.page_bits = self.page_bits
        c.n_frames = self.n_frames
        c.frames = self._frame_ptrs
        c.frame_page = self._frame_page
        c.segment_fds = self._fds
        c.n_segment_slots = n_slots
        c.segment_page_bits = seg_page_bits
        # Map slots: anonymous maps, so the untouched slots (nearly all) cost no memory.
        self._map_slots = (mmap.mmap(-1, 8 * n_slots), mmap.mmap(-1, 8 * n_slots))
        c.segment_maps = ffi.cast("char **", ffi.from_buffer(self._map_slots[0]))
        c.segment_map_bytes = ffi.cast("uint64_t *", ffi.from_buffer(self._map_slots[1]))
        self.c = c
        self._frames: list = [None] * self.n_frames  # cdata views of frame memory
        self._mmaps: list = [None] * self.n_frames   # owners of frame memory

        # Cold segments (store/cold.py, store/cooling.py): anonymous slots, like the maps'.
        self._cold_slots = mmap.mmap(-1, 8 * n_slots)
        c.cold = ffi.cast("shoal_cold **", ffi.from_buffer(self._cold_slots))
        self.codec = store_codec(directory, config)
        self._codecs = [self.codec]  # every codec C was handed: readers may still use an older one
        c.codec = self.codec.ptr if self.codec is not None else ffi.NULL
        self._frame_cache = ffi.NULL
        self.frame_cache_bytes = 0  # 0: no cache of decompressed cold frames
        if self.codec is not None and config.compression_cache_bytes:
            self.frame_cache_bytes = config.compression_cache_bytes
            fc = lib.shoal_frame_cache_new(config.compression_cache_bytes, config.compression_frame_bytes)
            self._frame_cache = ffi.gc(fc, lib.shoal_frame_cache_free) if fc != ffi.NULL else ffi.NULL
        c.frame_cache = self._frame_cache
        self.segments = SegmentFiles(directory, self.page_bits, seg_page_bits, self._fds, n_slots,
                                     log_c=c, map_files=config.map_segments, codec=self.codec, c_cold=c.cold,
                                     cache_written=config.cache_written_pages)
        self.flush_listeners: list = []  # called with the end of each page the flusher wrote
        c.tag_key = _tag_key(directory)

        self._cv = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()  # sealed pages to flush
        self._flush_error: BaseException | None = None  # the flusher's last write failed
        self._write_error: NativeIOError | None = None  # set by fail_writes: no more writes
        self._stop = False
        self._tail_writing = False  # a planned tail write is being finished
        self._frame_lock = threading.Lock()  # making a frame (writer, preparer)
        self._prep_cv = threading.Condition()
        self._prep_upto = 0  # frames of pages below this are to be made
        self._preparer: threading.Thread | None = None
        self._prepared_all = False
        self._tail_block = mmap.mmap(-1, BLOCK_BYTES)  # page-aligned, for O_DIRECT

        # Load the tail page (its flushed prefix) so appends continue in it.
        tail_page = tail_address >> self.page_bits
        frame = self._frame_for(tail_page)
        tail_off = tail_address & (self.page_size - 1)
        if tail_off and tail_page << self.page_bits < tail_address:
            data = self.segments.read(tail_page << self.page_bits, tail_off)
            if tail_page == 0 and tail_off <= FIRST_ADDRESS:
                data = b""
            ffi.memmove(frame, data, len(data))
        self._install(tail_page)
        page_start = tail_page << self.page_bits
        c.begin_address = begin_address
        c.head_address = max(begin_address, page_start)
        c.read_only_address = max(begin_address, page_start)
        c.flushed_until_address = tail_address
        c.tail_address = tail_address
        # The tail below which every record is linked into its chains: the
        # writer publishes tail_address before it links a record, and sets
        # this after each native ingest call (ingest/ingest.py, _run).
        self.linked_tail = tail_address

        self.segments.map_written(page_start, every=True)  # whole pages below the tail page: never written again
        reads = RecordReads(c, self.page_size)
        # Record reads by address, safe from any thread (store/reads.py).
        self.read_records = reads.read_records
        self.read_record_objects = reads.read_record_objects
        self.read_batches = reads.read_batches
        self._flusher = threading.Thread(target=self._flush_loop, name="shoal-flusher", daemon=True)
        self._flusher.start()

    # ---- addresses (atomic enough: aligned 8-byte loads) ----
    @property
    def begin_address(self) -> int:
        return self.c.begin_address

    @property
    def head_address(self) -> int:
        return self.c.head_address

    @property
    def read_only_address(self) -> int:
        return self.c.read_only_address

    @property
    def tail_address(self) -> int:
        return self.c.tail_address

    @property
    def flushed_until_address(self) -> int:
        return self.c.flushed_until_address

    def frames_in_use(self) -> int:
        return sum(1 for f in self._frames if f is not None)

    # ---- frames ----
    def _frame_for(self, page: int):
        i = page % self.n_frames
        if self._frames[i] is None:
            with self._frame_lock:  # (the preparer may be making it)
                if self._frames[i] is None:
                    self._new_frame(i)
        return self._frames[i]

    def _new_frame(self, i: int) -> None:
        # mmap: page-aligned (O_DIRECT writes need it) and zero-filled lazily.
        m = mmap.mmap(-1, self.page_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if self.page_size >= _HUGE_PAGE_BYTES and hasattr(mmap, "MADV_HUGEPAGE"):
            try:  # fewer, larger page faults when a frame is first filled
                m.madvise(mmap.MADV_HUGEPAGE)
            except OSError:
                pass
        self._mmaps[i] = m
        self._frames[i] = ffi.from_buffer("char[]", m)
        self._frame_ptrs[i] = self._frames[i]

    # ---- frames prepared ahead of the writer ----
    # A frame is fresh memory until the writer first fills it, and the
    # kernel zeroes each page at its first touch: a third of a first ingest
    # here, on the writer's thread. Once pages turn, a thread makes and
    # populates the frames of the next PREPARE_AHEAD pages that have none
    # yet (shoal_populate, GIL released), on the other core; it ends once
    # every frame exists (recycled frames are touched already).
    def _prepare_ahead(self, page: int) -> None:
        """Writer, at a page turn: have the frames up to page + PREPARE_AHEAD made."""
        if self._prepared_all:
            return
        with self._prep_cv:
            self._prep_upto = max(self._prep_upto, page + PREPARE_AHEAD + 1)
            if self._preparer is None:
                self._preparer = threading.Thread(target=self._prepare, name="shoal-frames", daemon=True)
                self._preparer.start()
            self._prep_cv.notify()

    def _prepare(self) -> None:
        done = 0
        while True:
            with self._prep_cv:
                while not self._stop and self._prep_upto <= done:
                    self._prep_cv.wait()
                if self._stop:
                    return
                lo, upto = max(done, self._prep_upto - PREPARE_AHEAD - 1), self._prep_upto
            for page in range(lo, upto):
                i = page % self.n_frames
                with self._frame_lock:
                    if self._frames[i] is not None:
                        continue
                    self._new_frame(i)
                    frame = self._frames[i]
                if self._stop:
                    return
                lib.shoal_populate(frame, self.page_size)  # errors: the writer faults them in itself
            done = upto
            if all(f is not None for f in self._frames):
                self._prepared_all = True
                return

    def _install(self, page: int) -> None:
        self._frame_page[page % self.n_frames] = page

    # ---- writer side ----
    def turn_page(self) -> None:
        """Seal the tail page and make the next page the tail. Writer only."""
        self.check_writable()
        with self._cv:
            failed = self._flush_error is not None and self._queue
            sealed_end = (self._queue[-1] + 1) << self.page_bits if failed else 0
        if failed:  # retry now: fail this call rather than queue more pages behind a failing write
            self.wait_flushed(sealed_end)
        tail = self.c.tail_address
        if self._tail_page_full():
            new_page = tail >> self.page_bits  # the last record ended at the page end
            old_page = new_page - 1
        else:
            old_page = tail >> self.page_bits
            new_page = old_page + 1
        if (new_page + 1) << self.page_bits > MAX_ADDRESS + 1:
            raise StorageError("log address space exhausted")
        i = new_page % self.n_frames
        victim = self._frame_page[i]
        # Everything that may fail (the victim's write, a frame's allocation)
        # comes before anything changes: a failed turn leaves the tail page
        # as it was, to be turned again by the next call.
        if victim >= 0:
            # The frame holds an older page: it must be on disk before reuse.
            self.wait_flushed((victim + 1) << self.page_bits)
        frame = self._frame_for(new_page)
        # A zero header after the last record ends the page for scans and
        # replay. The rest of the page is cleared too: a recycled frame
        # still holds the page it held before there, records compaction may
        # have removed since, which would otherwise be written to the
        # segment file with this page (and read at a forged address).
        end_off = tail - (old_page << self.page_bits)
        if end_off < self.page_size and end_off:
            _clear(self._frames[old_page % self.n_frames] + end_off, self.page_size - end_off)
        with self._cv:
            self._queue.append(old_page)
            self._cv.notify_all()
        if victim >= 0:
            self.c.head_address = max(self.c.head_address, (victim + 1) << self.page_bits)
            self._frame_page[i] = -1  # readers now fall back to disk
            ffi.memmove(frame, _ZERO_HEADER, 32)
        self._install(new_page)
        start = new_page << self.page_bits
        self.c.read_only_address = start
        self.c.tail_address = start
        self._note_page_start(new_page)
        self._prepare_ahead(new_page)

    def _note_page_start(self, page: int) -> None:
        """Records appended by this process before `page` began (writer)."""
        starts = self._page_starts
        if page != self._page_starts_first + len(starts):  # the first turn of this process
            del starts[:]
            self._page_starts_first = page
        starts.append(self.c.records_appended)

    def records_in_page(self, page: int) -> int | None:
        """How many records a sealed page holds, when this process wrote all
        of it (it turned into the page and out of it); None otherwise. Lets
        compaction count what it drops without reading the pages."""
        i = page - self._page_starts_first
        starts = self._page_starts
        if 0 <= i and i + 1 < len(starts):
            return starts[i + 1] - starts[i]
        return None

    def forget_page_starts(self, below_page: int) -> None:
        """Drop the counts of pages below a compaction's cut (8 bytes a page)."""
        n = min(below_page - self._page_starts_first, len(self._page_starts) - 1)
        if n > 0:
            del self._page_starts[:n]
            self._page_starts_first += n

    def _tail_page_full(self) -> bool:
        """True when the tail sits on a page start whose page is not installed:
        the previous page filled up exactly and still needs turning."""
        tail = self.c.tail_address
        page = tail >> self.page_bits
        return tail & (self.page_size - 1) == 0 and self._frame_page[page % self.n_frames] != page

    def wait_flushed(self, address: int) -> None:
        """Block until the flusher has written every sealed page below
        `address`. If its write failed, ask it to retry once; raise
        DiskFull / NativeIOError if the retry fails too. Any thread."""
        retried = False
        with self._cv:
            while self.c.flushed_until_address < address:
                if self._flush_error is not None:
                    if retried or self._stop:
                        raise restated(self._flush_error, "background flush failed: ")
                    self._flush_error = None  # the flusher's signal to try the failed page again
                    retried = True
                    self._cv.notify_all()
                self._cv.wait(0.5)

    def flush(self, durable: bool = False) -> int:
        """Write everything below the tail to segment files (and fsync when
        durable: prefer store/commit.py, which shares fsyncs and publishes
        synced_until_address). Writer only. Returns the flushed tail address."""
        tail = self.write_tail()
        self.wait_flushed(tail)
        if durable:
            try:
                self.segments.sync()
            except NativeIOError as exc:
                self.fail_writes(exc)
                raise
        return tail

    def write_tail(self, *, wait: bool = True) -> int | None:
        """Write the tail page's unwritten blocks; returns the tail address,
        or None when wait=False and it would have to wait (see
        `plan_tail_write`). Writer only."""
        plan = self.plan_tail_write(wait=wait)
        return None if plan is None else self.finish_tail_write(plan)

    def plan_tail_write(self, *, wait: bool = True) -> "TailWrite | None":
        """Step 1 of writing the tail page's unwritten blocks, under the
        writer lock: note what to write and copy the last, partly filled
        4 KiB block aside (zero past the tail). `finish_tail_write(plan)`
        then writes it, and needs no lock: appends only add bytes past the
        tail, and the copy is what reaches disk of the block they share.
        Everything below the tail is written once that is done and the
        flusher has written the sealed pages before the tail page
        (wait_flushed(tail)). The tail page may be written only after those
        (flushed_until_address covers everything below it), so this waits
        for the flusher, or with wait=False returns None when it would have
        to. Until the plan is finished, the flusher and the next plan wait:
        no two writes of the same block can race. Writer only."""
        self.check_writable()
        with self._cv:
            while self._tail_writing:  # an unlocked finish of the previous plan
                self._cv.wait()
        if self._tail_page_full():
            self.turn_page()  # the full page is sealed; the flusher writes it
            return TailWrite(self.c.tail_address)
        tail = self.c.tail_address
        page = tail >> self.page_bits
        start = page << self.page_bits
        if not wait and self.c.flushed_until_address < start:
            return None
        self.wait_flushed(start)
        if tail <= start or self.c.flushed_until_address >= tail:
            return TailWrite(tail)
        # Whole 4 KiB blocks (O_DIRECT). Start at the block holding
        # flushed_until: the page's bytes before it are on disk already (an
        # earlier flush wrote them), so durable ingest in small batches writes
        # each byte about once, not the whole page prefix again per batch.
        frame = self._frames[page % self.n_frames]
        off = tail - start
        lo = _on_disk_prefix(self.c.flushed_until_address - start, self.page_size)
        whole = off - off % BLOCK_BYTES
        plan = TailWrite(tail, start + lo, ffi.buffer(frame + lo, whole - lo) if whole > lo else None)
        if whole < off:
            # The last block as it is now, zero past the tail, so nothing
            # stale of a recycled frame, nor an append racing the write,
            # reaches disk in it.
            n = off - whole
            self._tail_block[:n] = ffi.buffer(frame + whole, n)
            self._tail_block[n:] = bytes(BLOCK_BYTES - n)
            plan.block_address = start + whole
        with self._cv:
            self._tail_writing = True
        return plan

    def finish_tail_write(self, plan: "TailWrite") -> int:
        """Step 2: write what `plan_tail_write` planned (GIL released in
        pwrite; the writer lock need not be held) and publish it as flushed;
        returns the plan's tail address. Call it exactly once per plan."""
        if plan.address is None:
            return plan.tail
        try:
            if plan.blocks is not None:
                self.segments.write(plan.address, plan.blocks)
            if plan.block_address is not None:
                self.segments.write(plan.block_address, self._tail_block)
        finally:
            with self._cv:
                self._tail_writing = False
                self._cv.notify_all()
        with self._cv:
            if self.c.flushed_until_address < plan.tail:
                self.c.flushed_until_address = plan.tail
            self._cv.notify_all()
        return plan.tail

    def fail_writes(self, exc: NativeIOError) -> None:
        """Refuse every later write (an fsync failed: what reached the disk
        is unknown until recovery reads it back). Any thread."""
        with self._cv:
            if self._write_error is None:
                self._write_error = exc

    @property
    def writable(self) -> bool:
        return self._write_error is None

    def check_writable(self) -> None:
        if self._write_error is not None:
            raise restated(self._write_error, "the log takes no more writes after a failed fsync; "
                                              "reopen the store to recover what is on disk (", ")")

    def _flush_loop(self) -> None:
        while True:
            with self._cv:
                # After a failed write, wait for a retry request (or close).
                # A tail write in progress may share a block with the next
                # queued page's prefix: wait for it.
                while ((not self._queue or self._flush_error is not None) and not self._stop) or self._tail_writing:
                    self._cv.wait()
                if not self._queue or self._flush_error is not None:
                    return  # stopped: close() wrote the tail; a failed page stays unwritten
                page = self._queue[0]
                # A durable flush may have written this page's prefix while it
                # was the tail; that part is on disk and is not written again.
                lo = _on_disk_prefix(self.c.flushed_until_address - (page << self.page_bits), self.page_size)
            try:
                frame = self._frames[page % self.n_frames]
                self.segments.write((page << self.page_bits) + lo, ffi.buffer(frame + lo, self.page_size - lo))
            except BaseException as exc:  # the page stays queued; a writer retries or raises
                with self._cv:
                    self._flush_error = exc
                    self._cv.notify_all()
                continue
            with self._cv:
                self._queue.popleft()
                end = (page + 1) << self.page_bits
                if self.c.flushed_until_address < end:
                    self.c.flushed_until_address = end
                self._cv.notify_all()
            self.segments.map_written(end)
            for listener in self.flush_listeners:
                listener(end)

    def frame_cache_counts(self) -> dict:
        """Hits and misses of the cache of decompressed cold frames."""
        hits, misses = self.frame_cache_tally()
        return {"frame_cache_hits": hits, "frame_cache_misses": misses}

    def frame_cache_tally(self) -> tuple[int, int]:
        """(hits, misses) of the cache of decompressed cold frames."""
        hits, misses = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.shoal_frame_cache_counts(self._frame_cache, hits, misses)
        return hits[0], misses[0]

    def set_codec(self, codec) -> None:
        """Compress cold segments with `codec` from now on (a dictionary was
        just trained); frames already written keep reading as before."""
        self._codecs.append(codec)
        self.codec = codec
        self.segments.codec = codec
        self.c.codec = codec.ptr

    # ---- reader side (record reads: store/reads.py) ----
    def visit_page(self, page: int, fn):
        """fn(buffer, valid_bytes) over page `page`: on the frame itself when
        the page is in memory (no copy), re-run on the segment file's copy if
        the frame was recycled while fn ran (fn must be a pure reader)."""
        start = page << self.page_bits
        tail = self.c.tail_address
        if start >= tail:
            return fn(b"", 0)
        valid = min(self.page_size, tail - start)
        i = page % self.n_frames
        if self._frame_page[i] == page:
            try:
                result = fn(self._frames[i], valid)
            except ShoalError:
                if self._frame_page[i] == page:
                    raise  # a real error, not a torn read of a recycled frame
            else:
                if self._frame_page[i] == page:
                    return result
        data, valid = self._disk_page(page, start, valid)
        return fn(data, valid)

    def _disk_page(self, page: int, start: int, valid: int) -> tuple[bytes, int]:
        lo = FIRST_ADDRESS if page == 0 else 0
        data = self.segments.read(start + lo, valid - lo)
        if lo:
            data = bytes(lo) + data
        return data, len(data)

    def page_bytes(self, page: int) -> tuple[object, int]:
        """A buffer with page `page`'s bytes and how many are valid.
        In-memory pages are copied (a frame may be recycled under a reader)."""
        start = page << self.page_bits
        tail = self.c.tail_address
        if start >= tail:
            return b"", 0
        valid = min(self.page_size, tail - start)
        i = page % self.n_frames
        if self._frame_page[i] == page:
            frame = self._frames[i]
            data = ffi.buffer(frame, valid)[:]
            if self._frame_page[i] == page:
                return data, valid
        return self._disk_page(page, start, valid)

    def shift_begin_address(self, address: int) -> None:
        """Move begin forward to a page start at or below read_only
        (compaction, under the writer lock; turn_page, the other mover of
        head, runs under it too). Readers load begin before walking or
        reading and stop below it; head follows so begin <= head holds."""
        if not self.c.begin_address <= address <= self.c.read_only_address or address & (self.page_size - 1):
            raise StorageError(f"cannot move begin to {address}")
        self.c.begin_address = address
        if self.c.head_address < address:
            self.c.head_address = address

    # ---- lifecycle ----
    def close(self) -> None:
        with self._cv:
            while self._tail_writing:
                self._cv.wait()
            self._stop = True
            self._cv.notify_all()
        with self._prep_cv:
            self._prep_cv.notify_all()
        if self._preparer is not None:
            self._preparer.join()
        self._flusher.join()
        self.segments.close()


class TailWrite:
    """What `HybridLog.plan_tail_write` planned: the tail it covers; the
    whole blocks to write from the frame (`blocks` at `address`), and the
    set-aside last block's address; `address` is None when nothing is to be
    written."""
    __slots__ = ("tail", "address", "blocks", "block_address")

    def __init__(self, tail: int, address: int | None = None, blocks=None):
        self.tail = tail
        self.address = address
        self.blocks = blocks
        self.block_address: int | None = None


def _tag_key(directory: Path) -> int:
    """The log's secret tag key (shoal.h, shoal_log.tag_key): 8 random
    bytes, made with the log and kept beside its segment files. Lost or
    damaged, it is made anew: records tagged with the old key are then
    checked the slow way (a walk of their page) when read by address, never
    read wrongly."""
    path = directory / TAG_KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) != 8:
        data = os.urandom(8)
        write_atomic(path, data)
    return int.from_bytes(data, "little")


def _clear(dst, n: int) -> None:
    """Zero n bytes at cdata pointer dst (a page's unused end: usually less
    than a record, at most a page)."""
    for off in range(0, n, len(_ZEROS)):
        k = min(len(_ZEROS), n - off)
        ffi.memmove(dst + off, _ZEROS, k)


def _on_disk_prefix(flushed_bytes: int, page_size: int) -> int:
    """How much of a page can be skipped when writing it, given that its
    first `flushed_bytes` bytes are on disk: whole 4 KiB blocks only, since
    O_DIRECT writes whole blocks (the block holding the flushed end is
    written again, with the records that followed)."""
    if flushed_bytes <= 0:
        return 0
    flushed_bytes = min(flushed_bytes, page_size)
    return flushed_bytes - flushed_bytes % BLOCK_BYTES
