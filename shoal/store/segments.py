"""Segment files: the on-disk part of the hybrid log.

Segment s holds pages [s * pages_per_segment, (s + 1) * pages_per_segment) at
offset (page % pages_per_segment) * page_size. Files are named
`segment-<s>.log` in the store's `log/` directory. File descriptors are
published into the C log view (`segment_fds`) so native readers can pread.

Writes go through a second descriptor opened with O_DIRECT where the file
system allows it: pages move from their (page-aligned) frames to the device
without a copy into the page cache, which on buffered writes costs more CPU
than parsing the records did. Callers write whole 4 KiB blocks from aligned
memory (see HybridLog.flush). Reads use the ordinary descriptor; the kernel
keeps the two coherent.

Who calls what: the flusher thread and the writer (under the store's writer
lock) write; whoever makes the log durable (store/commit.py) fsyncs, from any
thread; readers only pread through C or `read`.

Durability bookkeeping: a segment joins `_dirty` after a write to it has
completed, and `sync` takes and fsyncs the dirty set under `_sync_lock`, one
sync at a time. So when a sync starts, every write that completed before it
is either in its dirty set or was covered by an earlier sync that finished:
the caller may treat everything written before the sync began as durable
once it returns. The directory is fsynced only when a segment file was
created since the last sync (its name must survive a crash too).

Maps: with a C log view (`log_c`) and `map_files=True`, each segment file
is mapped read-only (its whole address range), and how much of it holds
written pages, which nothing writes again, is published to C as pages are
flushed (`map_written`): native reads below head copy from the page cache
there instead of making a pread each. A map is unpublished before its
file goes (compaction: `detach_below` hands it to the caller to unmap once
no reader can be inside it; `close`, after the readers are gone).

Cold segments (compression="zstd"): a segment's written pages are
compressed into its cold file, `segment-<s>.z` (store/cold.py), which grows,
by the store's converter (store/cooling.py, through `make_cold`): the frames
are published to C (log_c.cold) before the raw pages are punched, so a
reader always finds one of them; when the whole segment is cold, its raw
file is unpublished and unlinked. `read`, `size` and `existing` serve both
kinds; recovery cuts (`truncate_after`) write cut cold bytes back raw.

Errors: OSErrors become NativeIOError, or DiskFull for ENOSPC/EDQUOT, naming
the file. A failed fsync puts its segments back in the dirty set.

Why this file is long: every change of a segment's files (create, write,
sync, map, punch, compress, truncate, delete) must take the one lock that
guards the descriptor, map and cold tables and the dirty set, and keep the
C view of them in step; split, the lock would have to cross modules.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
from pathlib import Path

from .._native import ffi, lib
from ..errors import CorruptionError, NativeIOError, StoreClosed, io_error
from ..files import TEMP_SUFFIX, fsync_dir
from .cold import ColdSegment, Interrupted

log = logging.getLogger("shoal.store")

_NAME = re.compile(r"^segment-(\d{6,})\.log$")
_COLD_NAME = re.compile(r"^segment-(\d{6,})\.z$")
BLOCK_BYTES = 4096  # O_DIRECT alignment for offsets, lengths and memory
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class SegmentFiles:
    def __init__(self, directory: Path, page_bits: int, segment_page_bits: int, c_fds, n_slots: int,
                 log_c=None, map_files: bool = False, codec=None, c_cold=None, cache_written: bool = True):
        self.directory = directory
        self.page_bits = page_bits
        self.segment_page_bits = segment_page_bits
        self.segment_bytes = 1 << (page_bits + segment_page_bits)
        self._c_fds = c_fds
        self.n_slots = n_slots
        self._log_c = log_c if map_files else None
        self._maps: dict[int, tuple[object, int]] = {}  # segment -> (map, bytes), published to C
        self._fds: dict[int, int] = {}
        self._write_fds: dict[int, int] = {}
        self.direct = bool(_O_DIRECT) and os.environ.get("SHOAL_NO_DIRECT_IO") is None
        self.cache_written = cache_written  # read O_DIRECT writes back into the page cache (write())
        self._dirty: set[int] = set()
        self._new_files = False  # a segment file was created since the last sync
        self._closed = False
        self._punched: dict[int, int] = {}  # segment -> bytes from its start punched (this process)
        self._no_punch = False  # the file system said it cannot punch holes
        self._lock = threading.Lock()  # protects _fds, _write_fds, _dirty, _new_files, _punched
        self._sync_lock = threading.Lock()  # one sync at a time; close waits for it
        # Cold segments (store/cold.py): segment -> its cold file, published
        # to C in c_cold (log_c.cold) when there is a C log view.
        self.codec = codec
        self._c_cold = c_cold
        self._cold: dict[int, ColdSegment] = {}
        directory.mkdir(parents=True, exist_ok=True)
        names = os.listdir(directory)
        for name in names:
            m = _NAME.match(name)
            if m:
                self._open(int(m.group(1)))
        for name in names:
            m = _COLD_NAME.match(name)
            if m:
                self._load_cold(int(m.group(1)))
            elif name.endswith(".z" + TEMP_SUFFIX):  # a conversion a crash cut short: its raw file is still there
                (directory / name).unlink(missing_ok=True)

    # ---- cold segments ----
    def cold_path(self, seg: int) -> Path:
        return self.directory / f"segment-{seg:06d}.z"

    def _load_cold(self, seg: int) -> None:
        """Open segment seg's cold file. A finished one (its footer checks)
        holds the whole segment: a raw file still beside it (a conversion
        stopped between the two) goes. A growing one holds the segment's
        first pages, the raw file the rest; its frames are walked, and a
        torn last frame cut off. One with no frames goes."""
        if self.codec is None:
            raise CorruptionError(f"{self.cold_path(seg)} is compressed, but {self.directory} holds no codec "
                                  f"(was the store created with compression?)")
        cs = ColdSegment(self.cold_path(seg), self.codec, seg * self.segment_bytes,
                         capacity_bytes=self.segment_bytes)
        if not cs.raw_bytes and seg in self._fds:
            cs.close()
            self.cold_path(seg).unlink()
            return
        if cs.finished and seg in self._fds:
            fd = self._fds.pop(seg)
            self._c_fds[seg] = -1
            os.close(fd)
            self.path(seg).unlink(missing_ok=True)
            self._new_files = True
        self._cold[seg] = cs
        if self._c_cold is not None:
            self._c_cold[seg] = cs.c_view()

    def cold_segments(self) -> list[tuple[int, int]]:
        """(segment, bytes its cold file takes on disk) of each segment with one."""
        with self._lock:
            return [(seg, cs.allocated_bytes()) for seg, cs in sorted(self._cold.items())]

    def cold_bytes(self, seg: int) -> int:
        """How many of segment seg's first bytes are in its cold file."""
        with self._lock:
            cs = self._cold.get(seg)
        return cs.raw_bytes if cs is not None else 0

    def checked_cold_end(self, address: int) -> int:
        """Where the cold bytes from `address` on end that lie in frames that
        check (ColdSegment.check: headers and compressed bytes, nothing
        decompressed), or `address` itself when it is not in such a frame."""
        seg, off = self._locate(address)
        with self._lock:
            cs = self._cold.get(seg)
        if cs is None or off >= cs.raw_bytes:
            return address
        return max(address, address - off + cs.check())

    def has_raw(self, seg: int) -> bool:
        with self._lock:
            return seg in self._fds

    def make_cold(self, seg: int, upto: int, codec, *, reading=None, stop=None) -> tuple | None:
        """Compress segment seg's bytes up to offset `upto` (written pages,
        never written again; a multiple of the frame size, or the segment's
        end) into its cold file, which grows, and show them to readers.
        Returns what the caller must do once no reader can be inside the raw
        file's pages any more (the store's gate): ("punch", seg, upto) to
        free them, or, when the whole segment went cold and its raw file was
        unpublished and unlinked, ("close", fd, map). None: nothing to do
        (no raw file any more: a compaction took it meanwhile). `reading`:
        a context entered around each read of the raw file (the gate, so a
        compaction closes the fd only after it); `stop`: asked between
        chunks, raises cold.Interrupted when it says so."""
        with self._lock:
            fd = self._fds.get(seg)
            cs = self._cold.get(seg)
        if fd is None:
            return None
        if cs is None:
            cs = ColdSegment(self.cold_path(seg), codec, seg * self.segment_bytes,
                             capacity_bytes=self.segment_bytes, create=True)
            with self._lock:
                if self._fds.get(seg) != fd:
                    cs.close()
                    self.cold_path(seg).unlink(missing_ok=True)
                    return None
                self._cold[seg] = cs
                if self._c_cold is not None:
                    self._c_cold[seg] = cs.c_view()  # no bytes yet: readers still go raw
                self._new_files = True
        cs.codec = codec
        step = max(cs.frame_bytes, (4 << 20) // cs.frame_bytes * cs.frame_bytes)
        while cs.raw_bytes < upto:
            if stop is not None and stop():
                raise Interrupted(f"compressing segment {seg}")
            off = cs.raw_bytes
            with reading if reading is not None else contextlib.nullcontext():
                with self._lock:
                    if self._fds.get(seg) != fd:
                        raise Interrupted(f"segment {seg} was deleted while it was compressed")
                # from the page start: a cold file cut at a torn frame may end inside a page
                lead = off & ((1 << self.page_bits) - 1)
                chunk = self._pread(fd, off - lead, lead + min(step, upto - off), seg)
            self._check_records(seg * self.segment_bytes + off - lead, chunk)
            cs.append(memoryview(chunk)[lead:])
            cs.publish()  # readers of these bytes go cold from here; ones already in the raw pages go on
        if upto < self.segment_bytes:
            return ("punch", seg, upto)
        cs.finish()
        with self._sync_lock, self._lock:
            if self._fds.get(seg) != fd:
                return None
            self._fds.pop(seg)
            self._c_fds[seg] = -1
            m = self._unpublish(seg)
            wfd = self._write_fds.pop(seg, fd)
            if wfd != fd:
                os.close(wfd)
            self._dirty.discard(seg)  # its bytes are durable in the cold file
            self._punched.pop(seg, None)
            self.path(seg).unlink(missing_ok=True)
            self._new_files = True  # the name removed: the next sync fsyncs the directory
        return ("close", fd, m)

    def _check_records(self, base: int, data: bytes) -> None:
        """Every record in data (whole pages of log from `base`, the last may
        be cut short) checks: recovery verifies the log at open without
        decompressing cold frames, so what goes into them must be whole.
        CorruptionError if one does not; its pages stay raw, where recovery
        finds and cuts them."""
        page = 1 << self.page_bits
        pos, records = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        src = ffi.from_buffer(data)
        for at in range(0, len(data), page):
            pos[0] = base + at
            n = min(page, len(data) - at)
            rc = lib.shoal_replay(src + at, base + at, n, pos, self.page_bits, ffi.NULL, ffi.NULL, records)
            if rc not in (lib.SHOAL_OK, lib.SHOAL_END):  # (a page ends at a zero header or too few bytes for one)
                raise CorruptionError(f"log record at address {pos[0]} does not check; its segment stays raw")

    def punch_cold(self, seg: int, upto: int) -> None:
        """Free the raw file's blocks below `upto`, now in the cold file and
        read by no reader (make_cold's "punch")."""
        self._punch_raw_below(seg * self.segment_bytes + upto)

    def _pread(self, fd: int, off: int, n: int, seg: int) -> bytes:
        try:
            data = os.pread(fd, n, off)
        except OSError as exc:
            raise io_error("read of", self.path(seg), exc) from exc
        if len(data) != n:
            raise NativeIOError(f"{self.path(seg)} shrank while it was compressed")
        return data

    def path(self, seg: int) -> Path:
        return self.directory / f"segment-{seg:06d}.log"

    def existing(self) -> list[int]:
        with self._lock:
            return sorted(set(self._fds) | set(self._cold))

    def size(self, seg: int) -> int:
        """Log bytes segment `seg` holds (0 if it has no file)."""
        with self._lock:
            fd = self._fds.get(seg)
            cs = self._cold.get(seg)
        if fd is not None:
            return os.fstat(fd).st_size
        return cs.raw_bytes if cs is not None else 0

    def _open(self, seg: int) -> int:
        if seg >= self.n_slots:
            raise NativeIOError(f"log is full: segment {seg} exceeds the address space")
        fd = self._fds.get(seg)
        if fd is None:
            path = self.path(seg)
            try:
                try:
                    fd = os.open(path, os.O_RDWR)
                except FileNotFoundError:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                    self._new_files = True
            except OSError as exc:
                raise io_error("opening", path, exc) from exc
            self._fds[seg] = fd
            self._c_fds[seg] = fd
        return fd

    def _open_write(self, seg: int) -> int:
        wfd = self._write_fds.get(seg)
        if wfd is None:
            fd = self._open(seg)
            wfd = fd
            if self.direct:
                try:
                    wfd = os.open(self.path(seg), os.O_RDWR | _O_DIRECT)
                except OSError:  # e.g. tmpfs: no O_DIRECT; buffered writes it is
                    self.direct = False
            self._write_fds[seg] = wfd
        return wfd

    def _locate(self, address: int) -> tuple[int, int]:
        page = address >> self.page_bits
        seg = page >> self.segment_page_bits
        in_seg = ((page & ((1 << self.segment_page_bits) - 1)) << self.page_bits) | (
            address & ((1 << self.page_bits) - 1))
        return seg, in_seg

    def write(self, address: int, data) -> None:
        """Write bytes of one page at log address `address` (GIL released in pwrite)."""
        seg, off = self._locate(address)
        with self._lock:
            if self._closed:
                raise StoreClosed("the log's segment files are closed")
            fd = self._open_write(seg)
        view = memoryview(data)
        start = off
        try:
            while view:
                n = os.pwrite(fd, view, off)
                view = view[n:]
                off += n
        except OSError as exc:
            raise io_error("write to", self.path(seg), exc) from exc
        finally:
            # Dirty once some bytes may have reached the file, and only after
            # the write returned (see the module docstring).
            with self._lock:
                self._dirty.add(seg)
                rfd = self._fds.get(seg)
        if self.direct and self.cache_written and rfd is not None and off > start:
            # An O_DIRECT write leaves nothing in the page cache, so the first
            # query over pages just evicted from memory would wait on the
            # device for every one (418 MB of GitHub events: 0.37 s against
            # 0.06 s repeated). Ask the kernel to read them back now, in the
            # background (no copy on this thread): the recent log stays
            # cached as it would after buffered writes, without their CPU.
            # It costs the device a read per write (5-10% of ingest here).
            try:
                os.posix_fadvise(rfd, start, off - start, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass  # a hint only

    def read(self, address: int, n: int) -> bytes:
        """Up to n bytes at `address` (short at the end of a segment file)."""
        seg, off = self._locate(address)
        with self._lock:
            fd = self._fds.get(seg)
            cs = self._cold.get(seg)
        if cs is not None and (off < cs.raw_bytes or fd is None):
            return cs.read_checked(address, min(n, cs.raw_bytes - off))
        if fd is None:
            return b""
        try:
            return os.pread(fd, n, off)
        except OSError as exc:
            raise io_error("read of", self.path(seg), exc) from exc

    def sync(self) -> None:
        """fsync every segment written since the last sync (and the directory
        when a segment file was created). Any thread; one sync at a time."""
        with self._sync_lock:
            with self._lock:
                if self._closed:
                    raise StoreClosed("the log's segment files are closed")
                dirty = sorted(self._dirty)
                self._dirty.clear()
                new_files, self._new_files = self._new_files, False
                fds = {s: self._write_fds.get(s, self._fds[s]) for s in dirty}
            try:
                for seg in dirty:
                    try:
                        os.fsync(fds[seg])
                    except OSError as exc:
                        raise io_error("fsync of", self.path(seg), exc) from exc
                if new_files:
                    fsync_dir(self.directory)
            except BaseException:
                with self._lock:  # not known to be durable: the next sync tries again
                    self._dirty.update(dirty)
                    self._new_files = self._new_files or new_files
                raise

    def sync_all(self) -> None:
        """fsync every segment file and the directory: after recovery, bytes a
        killed process left in the page cache reach the disk before anything
        new is acknowledged as durable after them."""
        with self._lock:
            self._dirty.update(self._fds)
            self._new_files = True
        self.sync()

    def truncate_after(self, address: int, keep_in: Path | None = None) -> None:
        """Drop bytes at and after `address` in its segment and delete later
        segments (recovery: remove a torn tail so it is never read back).
        With `keep_in`, the dropped bytes are moved there instead: later
        segment files whole, and the cut segment's bytes from `address` on
        as segment-<s>.from-<offset>.log. The next sync makes the cut durable."""
        seg, off = self._locate(address)
        with self._lock:
            for s in [s for s in self._maps if s >= seg]:  # recovery: no reader is inside
                unmap(self._unpublish(s))
            for s in sorted(s for s in self._cold if s > seg or (s == seg and off < self._cold[s].raw_bytes)):
                self._thaw(s, keep_in, whole=s > seg)
            self._new_files = True  # names removed: the directory is fsynced too
            if keep_in is not None and any(s >= seg for s in self._fds):
                keep_in.mkdir(parents=True, exist_ok=True)
            for s in sorted(self._fds):
                if s > seg:
                    fd = self._fds.pop(s)
                    self._c_fds[s] = -1
                    os.close(fd)
                    wfd = self._write_fds.pop(s, fd)
                    if wfd != fd:
                        os.close(wfd)
                    self._dirty.discard(s)
                    if keep_in is not None:
                        os.replace(self.path(s), keep_in / self.path(s).name)
                    else:
                        os.unlink(self.path(s))
            if seg in self._fds:
                fd = self._fds[seg]
                if keep_in is not None and os.fstat(fd).st_size > off:
                    _copy_range(fd, off, keep_in / f"segment-{seg:06d}.from-{off}.log")
                os.ftruncate(fd, off)
                self._dirty.add(seg)

    def _thaw(self, seg: int, keep_in: Path | None, *, whole: bool) -> None:
        """Recovery cuts the log inside (not `whole`) or before (`whole`) cold
        segment seg's cold bytes (caller holds _lock): a whole one goes to
        keep_in, or away; a cut one's bytes are written back into the raw
        file (holes and all: the cut then shortens it), and the cold file
        goes."""
        cs = self._cold.pop(seg)
        if self._c_cold is not None:
            self._c_cold[seg] = ffi.NULL
        if not whole:
            cs.check()  # where frames start after a hole compaction punched (what lies below is below begin)
            lo = cs.lowest
            data = cs.read_checked(lo, cs.raw_bytes - (lo - cs.address))
            fd = self._fds.get(seg)
            if fd is None:
                fd = os.open(self.path(seg), os.O_RDWR | os.O_CREAT, 0o644)
                self._fds[seg] = fd
                self._c_fds[seg] = fd
            view, at = memoryview(data), lo - cs.address
            while view:
                k = os.pwrite(fd, view, at)
                view, at = view[k:], at + k
            self._dirty.add(seg)
            self._punched.pop(seg, None)
        cs.close()
        if whole and keep_in is not None:
            keep_in.mkdir(parents=True, exist_ok=True)
            os.replace(self.cold_path(seg), keep_in / self.cold_path(seg).name)
        else:
            self.cold_path(seg).unlink()
        self._new_files = True

    def map_written(self, below: int, *, every: bool = False) -> None:
        """Log bytes below `below` are written, in whole pages that are never
        written again: map the segment they end in (`every`: all segments
        below, as at open), if not yet, and publish how much of it is
        readable there. The flusher calls this after each page, the store
        at open with its tail page's start. A segment that cannot be mapped
        stays on pread."""
        if self._log_c is None or below <= 0:
            return
        last = (below - 1) // self.segment_bytes
        with self._lock:
            if self._closed:
                return
            for seg in (sorted(s for s in self._fds if s <= last) if every else [last]):
                fd = self._fds.get(seg)
                if fd is None:
                    continue
                valid = min(below - seg * self.segment_bytes, self.segment_bytes)
                if seg in self._maps:
                    lib.shoal_segment_extend(self._log_c, seg, valid)
                elif lib.shoal_segment_map(self._log_c, seg, fd, self.segment_bytes, valid) == 0:
                    self._maps[seg] = (self._log_c.segment_maps[seg], self.segment_bytes)

    def drop_mapped_pages(self) -> None:
        """Take the maps' pages out of this process's page tables, so that
        evicting the files from the page cache (posix_fadvise) reaches them:
        for benchmarks of cold reads."""
        with self._lock:
            for seg in self._maps:
                lib.shoal_segment_map_dontneed(self._log_c, seg)

    def mapped(self) -> list[int]:
        """The segments whose maps are published."""
        with self._lock:
            return sorted(self._maps)

    def _unpublish(self, seg: int) -> tuple[object, int] | None:
        """Take segment seg's map out of C (caller holds _lock); the caller
        unmaps it once no reader can be inside."""
        if seg not in self._maps:
            return None
        lib.shoal_segment_unpublish(self._log_c, seg)
        return self._maps.pop(seg)

    def close(self) -> None:
        """Close every descriptor, after a sync in progress has finished.
        No reader may be inside a native call (maps are unmapped here)."""
        with self._sync_lock, self._lock:
            self._closed = True
            for seg in list(self._maps):
                unmap(self._unpublish(seg))
            for seg, cs in self._cold.items():
                if self._c_cold is not None:
                    self._c_cold[seg] = ffi.NULL
                cs.close()
            self._cold.clear()
            for seg, fd in self._fds.items():
                self._c_fds[seg] = -1
                os.close(fd)
                wfd = self._write_fds.get(seg, fd)
                if wfd != fd:
                    os.close(wfd)
            self._fds.clear()
            self._write_fds.clear()

    def punch_below(self, address: int) -> int:
        """Free the file system blocks below `address` in the segment files
        that hold it, raw and cold (compaction: begin is at `address` and no
        reader can be below it any more), keeping the files' sizes, the raw
        file's map and the cold file's table; whole files below are
        `detach_below`'s. Returns the bytes freed (blocks allocated before
        less after: 0 when already punched, or where the file system cannot
        punch holes, which is logged once)."""
        freed = self._punch_raw_below(address)
        seg, _ = self._locate(address)
        with self._lock:
            cs = self._cold.get(seg)
            if cs is None or self._no_punch:
                return freed
            try:
                return freed + cs.punch_below(address)
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:
                    self._no_punch = True
                    return freed
                raise io_error("punching a hole in", cs.path, exc) from exc

    def _punch_raw_below(self, address: int) -> int:
        seg, offset = self._locate(address)
        offset -= offset % BLOCK_BYTES
        with self._lock:
            fd = self._fds.get(seg)
            if fd is None or self._no_punch or offset <= self._punched.get(seg, 0):
                return 0
            before = os.fstat(fd).st_blocks
            rc = lib.shoal_punch_hole(fd, 0, offset)
            if rc == -errno.EOPNOTSUPP:
                self._no_punch = True
                log.warning("%s: the file system cannot punch holes: compaction frees whole segment files only",
                            self.directory)
                return 0
            if rc < 0:
                raise io_error("punching a hole in", self.path(seg), OSError(-rc, os.strerror(-rc)))
            self._punched[seg] = offset
            return max(0, before - os.fstat(fd).st_blocks) * 512

    def allocated_bytes(self) -> int:
        """Bytes the segment files take on disk (their allocated blocks: holes
        punched below begin free theirs)."""
        with self._lock:
            fds = list(self._fds.values()) + [cs.fd for cs in self._cold.values()]
        total = 0
        for fd in fds:
            try:
                total += os.fstat(fd).st_blocks * 512
            except OSError:  # closed by a compaction meanwhile
                pass
        return total

    def detach_below(self, address: int) -> list[tuple[int, int, int, tuple | None]]:
        """Delete the segment files entirely below `address` (compaction,
        once begin is past them): their C slots become -1, their maps are
        unpublished and the files are unlinked now; returns (segment, bytes,
        read fd, map or None) for each. The fd and the map are the caller's
        to close and `unmap` once no reader can be inside a pread or a copy
        on them; bytes are the blocks each took on disk. Waits for a sync in
        progress (it may be fsyncing them)."""
        first_kept = address >> (self.page_bits + self.segment_page_bits)
        gone = []
        with self._sync_lock, self._lock:
            for seg in sorted(s for s in self._fds if s < first_kept):
                fd = self._fds.pop(seg)
                self._c_fds[seg] = -1
                m = self._unpublish(seg)
                wfd = self._write_fds.pop(seg, fd)
                if wfd != fd:
                    os.close(wfd)
                self._dirty.discard(seg)
                size = os.fstat(fd).st_blocks * 512  # what deleting it frees
                try:
                    os.unlink(self.path(seg))
                except FileNotFoundError:
                    pass
                self._punched.pop(seg, None)
                gone.append((seg, size, fd, m))
            for seg in sorted(s for s in self._cold if s < first_kept):
                cs = self._cold.pop(seg)
                if self._c_cold is not None:
                    self._c_cold[seg] = ffi.NULL
                size = cs.allocated_bytes()
                self.cold_path(seg).unlink(missing_ok=True)
                gone.append((seg, size, cs.fd, cs))  # cs: kept alive (readers' C view) until the fd closes
            if gone:
                self._new_files = True  # names removed: the next sync fsyncs the directory
        return gone


def unmap(m: tuple | None) -> None:
    """Unmap a map `_unpublish` or `detach_below` handed out (None: nothing)."""
    if m is not None and not isinstance(m, ColdSegment):  # a cold file's view: freed with it
        ptr, size = m
        lib.shoal_segment_unmap(ptr, size)


def _copy_range(fd: int, offset: int, dest: Path) -> None:
    with open(dest, "wb") as out:
        while chunk := os.pread(fd, 1 << 20, offset):
            out.write(chunk)
            offset += len(chunk)


def segment_bytes(directory: Path) -> int:
    """Bytes a log directory's segment files take on disk, their allocated
    blocks (what stats call disk_bytes): a hole punched below begin does
    not count, nor does the unwritten end of a file."""
    total = 0
    for f in [*directory.glob("segment-*.log"), *directory.glob("segment-*.z")]:
        try:
            total += f.stat().st_blocks * 512
        except FileNotFoundError:  # deleted by a compaction meanwhile
            pass
    return total
