"""The fused fetch: a chain walk that reads each record as it reaches it
(C: fetch.c), the way a query answers with records instead of addresses.
One native call per batch walks the chain of one (PSF, value), keeps only
the records that also hold the conjunction's other (PSF, value) pairs, and
copies them out; `rarest_first` picks the chain to drive a conjunction.

Readers only; safe during ingest.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from .._native import check, ffi, lib
from ..results import Record, RecordBatch, make_records
from .query import _FIRST_WALK_CAP, _conds, count_chain, walk_all, walk_chain_batches
from .record import array_of, batch_data, out_buffer

_FETCH_RECORDS = 1024  # a call's records for Records (read before the first is returned)
_BATCH_RECORDS = 8192  # for RecordBatches: so that batches of small records fill their buffer too
_E_SPACE: int = lib.SHOAL_E_SPACE
_OUT_FULL: int = lib.SHOAL_OUT_FULL
_E_CLOSED: int = lib.SHOAL_E_CLOSED
_FETCH_BYTES = 1 << 20


# The calling thread's fetch buffers, reused by every fetch on it (a call
# sets the job up for its own log; between calls a thread's job holds no
# condition of a fetch).
_LOCAL = threading.local()


class _FetchBuffers:
    """One thread's native arrays for fetch_chain. Each call's results are
    copied out, or the output buffer handed over to its RecordBatch, before
    the generator yields, so generators sharing a thread do not clash; the
    fields that never change are set once."""

    def __init__(self, cap: int = _FETCH_BYTES):
        self.job = ffi.new("shoal_fetch_job *")
        self.addrs = ffi.new("uint64_t[]", _BATCH_RECORDS)
        self.offsets = ffi.new("uint64_t[]", _BATCH_RECORDS)
        self.lengths = ffi.new("uint32_t[]", _BATCH_RECORDS)
        self.out = out_buffer(cap)
        self.cap = cap
        job = self.job
        job.out = self.out
        job.cap = cap
        job.addrs = self.addrs
        job.offsets = self.offsets
        job.lengths = self.lengths


def rarest_first(log, index, conds: list[tuple[int, bytes]], lo: int, hi: int, gate) -> list[tuple[int, bytes]]:
    """conds, (psf_id, canon) pairs, ordered by how many records in [lo, hi)
    each chain looks to hold, fewest first: a short walk from each head
    counts a chain that ends within it, and estimates a longer one from the
    address span its first records cover."""
    def estimate(cond):
        psf_id, canon = cond
        value_hash = lib.shoal_hash(psf_id, canon, len(canon))
        first = next(walk_chain_batches(log, index, psf_id, canon, value_hash, lo, hi, gate), [])
        if len(first) < _FIRST_WALK_CAP:
            return len(first)
        return len(first) * (hi - lo) / max(1, hi - first[-1])
    return sorted(conds, key=estimate)


def fetch_chain(log, index, psf_id: int, canon: bytes, lo: int, hi: int, gate,
                limit: int | None = None, also: list[tuple[int, bytes]] | None = None,
                tally=None) -> Iterator[Record]:
    """Records on the chain of (psf_id, canon) in [lo, hi), newest first, at
    most `limit`: one native call per batch walks the chain and copies the
    records' text (no address lists in between), inside `gate` (the store's
    reader gate; the first call enters it in C). The first batch is read
    now, so a short answer (a point query) costs one call and no generator.
    With `also`, more (psf_id, canon) conditions: only the chain's records
    that have a key pointer for each of them too (a conjunction)."""
    fetcher = _Fetcher(log, index, psf_id, canon, lo, hi, gate, limit, 0, also, tally)
    first = fetcher.records()
    if fetcher.finished:
        return iter(first)
    return itertools.chain(first, itertools.chain.from_iterable(iter(fetcher.records, None)))


def fetch_chain_batches(log, index, psf_id: int, canon: bytes, lo: int, hi: int, gate,
                        limit: int | None = None,
                        also: list[tuple[int, bytes]] | None = None, tally=None) -> Iterator[RecordBatch]:
    """fetch_chain's records as RecordBatches (no object per record); the
    first batch is read now, as there. With the store's `tally`, a long
    chain in cold frames is read ahead on every core (_Fetcher._warm_up)."""
    fetcher = _Fetcher(log, index, psf_id, canon, lo, hi, gate, limit, 10, also, tally)
    first = fetcher.batch()
    head = [first] if first else []
    if fetcher.finished:
        return iter(head)
    rest = (b for b in iter(fetcher.batch, None) if b)
    return itertools.chain(head, rest)


# Reading ahead a chain in cold frames (_Fetcher._warm_up): the first call
# reads this many records and counts the frames it had to decompress.
_PROBE_RECORDS = 64


class _Fetcher:
    __slots__ = ("log", "index", "psf_id", "canon", "canon_c", "hash", "lo", "hi", "gate", "left",
                 "limited", "most", "next_kp", "finished", "sep", "also", "n_also", "tally")

    def __init__(self, log, index, psf_id, canon, lo, hi, gate, limit, sep, also=None, tally=None):
        self.log, self.index, self.psf_id, self.canon = log, index, psf_id, canon
        self.canon_c = None  # a copy the job can point at across calls, made once needed
        self.hash = 0
        self.lo, self.hi, self.gate = lo, hi, gate
        self.limited = limit is not None
        self.most = _BATCH_RECORDS if sep else _FETCH_RECORDS  # records a call reads at most
        self.left = limit if limit is not None else self.most
        self.next_kp = 0
        self.finished = self.left <= 0
        self.sep = sep  # 10: each record followed by a newline (RecordBatch)
        self.also = _conds(also) if also else None  # [the array, what keeps it alive]
        self.n_also = len(also) if also else 0
        # the tally, while a read-ahead may still be worth it (a compressed
        # store with a frame cache; an answer that may be long)
        self.tally = tally if (tally is not None and log.frame_cache_bytes and not also
                               and self.left > 4 * _PROBE_RECORDS) else None

    def _call(self):
        """One native call: (the thread's buffers, records read)."""
        log = self.log
        bufs = getattr(_LOCAL, "fetch", None)
        if bufs is None:
            bufs = _LOCAL.fetch = _FetchBuffers()
        while True:
            job = bufs.job
            if self.n_also:  # set for this call only: between calls a thread's job has none
                job.also = self.also[0]
                job.n_also = self.n_also
            if not self.next_kp:  # from the chain's head: one call sets the job up and enters the gate
                most = min(self.left, self.most, _PROBE_RECORDS if self.tally is not None else self.most)
                before = log.frame_cache_tally() if self.tally is not None else None
                rc = lib.shoal_fetch_start(job, log.c, self.index.ptr, self.canon, len(self.canon),
                                           self.psf_id, self.lo, self.hi, most, self.sep, self.gate.c)
                if rc == _E_CLOSED:
                    job.n_also = 0
                    check(rc)
                self.hash = job.hash
                if self.tally is not None and rc == _OUT_FULL:
                    self.next_kp = job.next_kp
                    hits, misses = log.frame_cache_tally()
                    self._warm_up(hits - before[0], misses - before[1])
            else:
                if self.canon_c is None:
                    self.canon_c = ffi.new("char[]", self.canon)
                job.next_kp = self.next_kp
                job.lo = self.lo
                job.hi = self.hi
                job.hash = self.hash
                job.canon = self.canon_c
                job.canon_len = len(self.canon)
                job.psf_id = self.psf_id
                job.max_records = min(self.left, self.most)
                job.done = 0
                job.sep = self.sep
                with self.gate:
                    rc = lib.shoal_fetch(job, log.c, self.index.ptr)
            if self.n_also:
                job.n_also = 0
            if rc != _E_SPACE:
                break
            self.next_kp = job.next_kp  # one record larger than the buffer
            bufs = _LOCAL.fetch = _FetchBuffers(max(int(job.need), 2 * bufs.cap))
        if rc < 0 and job.err_address >= log.begin_address:
            self.finished = True
            check(rc, f"chain walk at address {job.err_address}")
        # else compaction moved begin past what the walk was reading: the
        # chain ends there, as it would for a walk started now
        n = job.n_out
        self.next_kp = job.next_kp
        if self.limited:
            self.left -= n
        self.finished = rc != _OUT_FULL or self.left <= 0
        return bufs, n

    def _warm_up(self, cached: int, decompressed: int) -> None:
        """After the first call: if it had to decompress most of the frames it
        read (they were not in the frame cache), the rest of the chain is
        likely cold too. A chain walk in lanes (query.walk_all: on every
        core for a long chain in cold frames) then reads the rest ahead: it
        decompresses the frames in parallel into the frame cache, where the
        serial fetch that follows finds them. Only when they fit in half of
        the cache: more would be evicted before the fetch reached them, and
        decompressed twice (a 3% answer over more than ~550 MB of generated
        events, with the default 256 MiB cache, is read the serial way)."""
        tally, self.tally = self.tally, None
        if decompressed <= cached:
            return
        upto = min(self.hi, self.next_kp + 1)
        rest = count_chain(self.log, self.index, tally, self.psf_id, self.canon, self.lo, upto, self.gate)
        frame = self.log.codec.frame_bytes
        frames = min(rest, (upto - self.lo) // frame + 1)  # the most frames the rest can lie in
        if rest < 4 * _PROBE_RECORDS or frames * frame > self.log.frame_cache_bytes // 2:
            return
        walk_all(self.log, self.index, tally, self.psf_id, self.canon, self.hash, self.lo, self.hi, self.gate,
                 start=self.next_kp)

    def records(self) -> list[Record] | None:
        """The next batch of records; None once the chain is done."""
        if self.finished:
            return None
        bufs, n = self._call()
        if not n:
            return []
        # back to back (no separator): the offsets add up. The Records share
        # the buffer (a full one is theirs, a short answer's bytes a copy).
        data, bufs.out = batch_data(bufs.out, bufs.job.used, bufs.cap)
        bufs.job.out = bufs.out
        return make_records(data, ffi.buffer(bufs.addrs, 8 * n), ffi.buffer(bufs.lengths, 4 * n), share=True)

    def batch(self) -> RecordBatch | None:
        """The next batch as a RecordBatch (empty: nothing in this call);
        None once the chain is done."""
        if self.finished:
            return None
        bufs, n = self._call()
        data, bufs.out = batch_data(bufs.out, bufs.job.used, bufs.cap)
        bufs.job.out = bufs.out
        return RecordBatch(data, array_of("Q", ffi.buffer(bufs.addrs, 8 * n)),
                           array_of("Q", ffi.buffer(bufs.offsets, 8 * n)), array_of("I", ffi.buffer(bufs.lengths, 4 * n)))
