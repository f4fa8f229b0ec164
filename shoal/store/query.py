"""Queries: the addresses of records with property (PSF, value), newest or
oldest first, complete across log ranges where the PSF was not active.

Where the PSF was active, every matching record has a key pointer on the
(PSF, value) chain and a C chain walk finds it. Where it was not (registered
later, deregistered for a while), the range is scanned and the PSF evaluated,
so an answer never silently misses records. Conjunctions and disjunctions
merge the per-condition address streams, which are all sorted. A whole
walk goes in lanes (walk_all); answers with records come from the fused
fetch (fetch.py).

Readers only; safe during ingest.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
from array import array
from collections.abc import Iterator

from .._native import check, ffi, lib
from .scan import scan_range

_WALK_CAP = 1024
_FIRST_WALK_CAP = 32


def _walk_job(psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int, cap: int):
    """A chain walk's native job over [lo, hi) with an output array of
    `cap` addresses; the caller keeps all three alive while the job runs
    (the job points into `out` and `canon_c`)."""
    job = ffi.new("shoal_walk_job *")
    out = ffi.new("uint64_t[]", cap)
    canon_c = ffi.new("char[]", canon)
    job.lo = lo
    job.hi = hi
    job.hash = value_hash
    job.canon = canon_c
    job.canon_len = len(canon)
    job.psf_id = psf_id
    job.out = out
    job.cap = cap
    return job, out, canon_c


def walk_chain_batches(log, index, psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int,
                       gate=contextlib.nullcontext(),
                       also: list[tuple[int, bytes]] | None = None, tally=None) -> Iterator[list[int]]:
    """Lists of record addresses on the chain of (psf_id, canon) in [lo, hi),
    newest first; with `also`, only records that also hold each of those
    (psf_id, canon) pairs (their key pointers read in C, the records not
    copied). `gate` is entered around each native call (the store's reader
    gate). With the store's `tally`, a chain still going after its first
    two batches (a reader that wants more than a page of it) is walked to
    its end at once in lanes (walk_all)."""
    cap = _FIRST_WALK_CAP  # most answers are short: start small, grow
    job, out, canon_c = _walk_job(psf_id, canon, value_hash, lo, hi, cap)
    conds = _conds(also) if also else None
    if conds:
        job.also = conds[0]
        job.n_also = len(also)
    batches = 0
    while True:
        if tally is not None and batches == 2 and not conds:
            rest = walk_all(log, index, tally, psf_id, canon, value_hash, lo, hi, gate, start=job.next_kp)
            for k in range(0, len(rest), _WALK_CAP):
                yield rest[k:k + _WALK_CAP].tolist()
            return
        batches += 1
        with gate:
            rc = lib.shoal_walk(job, log.c, index.ptr)
        if rc < 0 and job.err_address >= log.begin_address:
            check(rc, f"chain walk at address {job.err_address}")
        # else compaction moved begin past the walk and deleted what it was
        # reading: the chain ends there, as it would for a walk started now
        if job.n_out:
            yield ffi.unpack(out, job.n_out)
        if job.done:
            return
        if cap < _WALK_CAP:
            cap = _WALK_CAP
            out = ffi.new("uint64_t[]", cap)
            job.out = out
            job.cap = cap


def walk_all(log, index, tally, psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int,
             gate=contextlib.nullcontext(), *, start: int = 0, stats: dict | None = None) -> array:
    """Every address of the chain of (psf_id, canon) in [lo, hi) from the key
    pointer `start` down (0: the head), newest first, in one native call
    that walks the pieces between the tally's samples in lockstep
    (shoal_walk_all: several memory loads in flight instead of one).
    `stats`, if given, gets "pieces": how many were walked in lanes, and
    "threads": by how many threads."""
    job = ffi.new("shoal_walk_all_job *")
    canon_c = ffi.new("char[]", canon)
    job.psf_id, job.canon, job.canon_len, job.hash = psf_id, canon_c, len(canon), value_hash
    job.lo, job.hi, job.start = lo, hi, start
    cap = 4096
    while True:
        out = array("Q", bytes(8 * cap))
        job.out = ffi.from_buffer("uint64_t[]", out)
        job.cap = cap
        with gate:
            rc = lib.shoal_walk_all(job, log.c, index.ptr, tally.ptr)
        if rc == lib.SHOAL_E_SPACE:
            cap = max(int(job.need), 2 * cap)
            continue
        if rc < 0:
            if job.err_address >= log.begin_address:
                check(rc, f"chain walk at address {job.err_address}")
            # else compaction moved begin past the walk: the chain ends there
        del out[int(job.n_out):]
        if stats is not None:
            stats["pieces"] = int(job.pieces)
            stats["threads"] = int(job.threads)
        return out


def count_chain(log, index, tally, psf_id: int, canon: bytes, lo: int, hi: int,
                gate=contextlib.nullcontext()) -> int:
    """How many records of the chain of (psf_id, canon) lie in [lo, hi):
    one native call that reads key pointers only, jumping between the
    tally's samples of the value (store/tally.py) inside the window."""
    job = ffi.new("shoal_count_job *")
    canon_c = ffi.new("char[]", canon)
    job.psf_id = psf_id
    job.hash = lib.shoal_hash(psf_id, canon_c, len(canon))
    job.canon = canon_c
    job.canon_len = len(canon)
    job.lo = lo
    job.hi = hi
    with gate:
        rc = lib.shoal_count_window(job, log.c, index.ptr, tally.ptr if tally is not None else ffi.NULL)
    if rc < 0 and job.err_address >= log.begin_address:
        check(rc, f"chain count at address {job.err_address}")
    # else compaction moved begin past the walk: what it counted below is gone, and
    # so the count is of a log that no longer exists: count again, from the new begin
    elif rc < 0:
        return count_chain(log, index, tally, psf_id, canon, max(lo, log.begin_address), hi, gate)
    return int(job.count)


def walk_chain(log, index, psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int,
               gate=contextlib.nullcontext(), tally=None) -> Iterator[int]:
    """The addresses of walk_chain_batches one by one (unbatched in C)."""
    return itertools.chain.from_iterable(walk_chain_batches(log, index, psf_id, canon, value_hash, lo, hi, gate,
                                                            tally=tally))


def merge_sorted(streams: list[Iterator[int]], *, descending: bool) -> Iterator[int]:
    """Union of sorted address streams, without duplicates."""
    last = None
    for a in heapq.merge(*streams, reverse=descending):
        if a != last:
            yield a
            last = a


def intersect_sorted(streams: list[Iterator[int]], *, descending: bool) -> Iterator[int]:
    """Addresses present in every sorted stream."""
    if not streams:
        return
    its = [iter(s) for s in streams]
    try:
        heads = [next(it) for it in its]
        while True:
            # The furthest-behind head bounds what all streams can share.
            target = min(heads) if descending else max(heads)
            done = True
            for k, it in enumerate(its):
                while (heads[k] > target) if descending else (heads[k] < target):
                    heads[k] = next(it)
                if heads[k] != target:
                    done = False
            if done:
                yield target
                heads = [next(it) for it in its]
    except StopIteration:
        return


# Oldest first: addresses per re-walked piece of a chain (see walk_chain_oldest_first).
_REVERSE_CHUNK = 16384


def walk_chain_oldest_first(log, index, psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int,
                            gate=contextlib.nullcontext(), chunk: int | None = None) -> Iterator[list[int]]:
    """walk_chain_batches' addresses oldest first, in memory bounded by
    `chunk` addresses plus one resume point per `chunk` on the chain.

    A chain links newest to oldest and has no other entry, so its oldest
    record is found only by walking all of it: that walk is unavoidable.
    What is avoided is keeping what it passes. The first pass walks the
    whole chain in native calls of `chunk` addresses each and keeps only
    where each call started (its key pointer); the addresses stay in the C
    buffer. Then the pieces are walked again from those key pointers,
    oldest piece first, each reversed and yielded in lists of up to 1,024
    addresses, and only as far as the consumer reads: an oldest-first
    answer with a limit re-walks only its oldest piece or two. The last
    piece of the first pass is the oldest and is still in the buffer: it
    is not walked twice.

    Key pointers are never rewritten, so a piece walked again from its key
    pointer yields what it did in the first pass; new records land above
    `hi` and are not emitted. If compaction moves begin past a piece
    meanwhile, that piece ends where begin is, as a walk started now would."""
    cap = chunk or _REVERSE_CHUNK
    job, out, canon_c = _walk_job(psf_id, canon, value_hash, lo, hi, cap)

    def walk_piece() -> None:
        with gate:
            rc = lib.shoal_walk(job, log.c, index.ptr)
        if rc < 0 and job.err_address >= log.begin_address:
            check(rc, f"chain walk at address {job.err_address}")
        # else compaction moved begin past what the walk was reading: the
        # chain ends there (job.done is set)

    starts: list[int] = []  # the key pointer each piece starts at (0: the head), newest piece first
    while True:
        starts.append(job.next_kp)
        walk_piece()
        if job.done:
            break
    starts.pop()  # the oldest piece: its addresses are in `out` now
    piece = ffi.unpack(out, job.n_out)
    while True:
        piece.reverse()
        for k in range(0, len(piece), _WALK_CAP):  # batches as large as newest-first walks make
            yield piece[k:k + _WALK_CAP]
        if not starts:
            return
        job.next_kp = starts.pop()
        job.done = 0
        walk_piece()
        piece = ffi.unpack(out, job.n_out)


# Oldest first, a chain has no entry at its old end: walk_chain_oldest_first
# walks all of it before it can give the first address (0.7 s for 8.9 M
# records). So oldest_first first walks up to _REVERSE_CHUNK of its newest
# entries in one native call. A chain that ends there is answered from that
# walk. A longer one whose entries are dense enough that the range's oldest
# OLDEST_SCAN_BYTES should hold OLDEST_SCAN_MIN of them is scanned there
# instead (parsing a record costs some 10x walking past one, so only a dense
# chain pays), and walked only above: a limit that the scan meets never
# walks the chain. Other chains are walked, as before.
OLDEST_SCAN_BYTES = 4 << 20
OLDEST_SCAN_MIN = 512


def _probe(log, index, psf_id: int, canon: bytes, value_hash: int, lo: int, hi: int, gate,
           cap: int) -> tuple[list[int], bool]:
    """The newest (at most) `cap` addresses of the chain in [lo, hi), and
    whether the chain ends with them."""
    job, out, canon_c = _walk_job(psf_id, canon, value_hash, lo, hi, cap)
    with gate:
        rc = lib.shoal_walk(job, log.c, index.ptr)
    if rc < 0 and job.err_address >= log.begin_address:
        check(rc, f"chain walk at address {job.err_address}")
        # else compaction moved begin past the walk: the chain ends there
    return ffi.unpack(out, job.n_out), bool(job.done) or rc < 0


def oldest_first(log, index, psf, canon: bytes, value_hash: int, scan_matcher_factory, lo: int, hi: int,
                 gate=contextlib.nullcontext()) -> Iterator[list[int]]:
    """Addresses of (psf, canon) in [lo, hi), where the PSF was active
    throughout, oldest first, in lists. Scanning a range where the PSF was
    active finds exactly its chain there: the scan evaluates the PSF's own
    native program on each record, as ingest did to link it (tombstones,
    which carry no PSF key pointers, are skipped by both). A Python PSF
    (slow to evaluate) is walked only."""
    if lo >= hi:
        return
    newest, ended = _probe(log, index, psf.id, canon, value_hash, lo, hi, gate, _REVERSE_CHUNK)
    if ended:
        if newest:
            yield newest[::-1]
        return
    bytes_per_entry = (hi - newest[-1]) / len(newest)
    if not psf.native or OLDEST_SCAN_BYTES < OLDEST_SCAN_MIN * bytes_per_entry:
        yield from walk_chain_oldest_first(log, index, psf.id, canon, value_hash, lo, hi, gate)
        return
    mid = min(hi, lo + OLDEST_SCAN_BYTES)
    yield from _batched(scan_range(log, scan_matcher_factory(), lo, mid, descending=False, gate=gate))
    if mid < hi:
        yield from walk_chain_oldest_first(log, index, psf.id, canon, value_hash, mid, hi, gate)


def psf_address_batches(log, index, psf, canon: bytes, value_hash: int, inactive: list[tuple[int, int]],
                        scan_matcher_factory, lo: int, hi: int, *, descending: bool,
                        gate=contextlib.nullcontext(), tally=None) -> Iterator[list[int]]:
    """psf_addresses in lists: the chain's own batches when the chain alone
    answers (the common case), else batches of the merged stream."""
    if not inactive:
        if descending:
            return walk_chain_batches(log, index, psf.id, canon, value_hash, lo, hi, gate, tally=tally)
        return oldest_first(log, index, psf, canon, value_hash, scan_matcher_factory, lo, hi, gate)
    return _batched(psf_addresses(log, index, psf, canon, value_hash, inactive, scan_matcher_factory,
                                  lo, hi, descending=descending, gate=gate, tally=tally))


def _batched(stream: Iterator[int], n: int = 1024) -> Iterator[list[int]]:
    while batch := list(itertools.islice(stream, n)):
        yield batch


def psf_addresses(log, index, psf, canon: bytes, value_hash: int, inactive: list[tuple[int, int]],
                  scan_matcher_factory, lo: int, hi: int, *, descending: bool,
                  gate=contextlib.nullcontext(), tally=None) -> Iterator[int]:
    """Complete answer for one (PSF, value) in [lo, hi)."""
    # The chain is walked from the first address in [lo, hi) where the PSF
    # was active (inactive[] is what it was not). Below, it indexed nothing:
    # that part is scanned. And key pointers of an earlier PSF that had the
    # same psf_id may lie there (a forgotten PSF's id is reused; see
    # psf/registry.py): the walk must not meet them.
    first = min(inactive, default=None)
    chain_lo = first[1] if first is not None and first[0] <= lo else lo
    if chain_lo >= hi:
        chain: Iterator[int] = iter(())
    elif descending:
        chain = walk_chain(log, index, psf.id, canon, value_hash, chain_lo, hi, gate, tally)
    else:
        chain = (a for piece in oldest_first(log, index, psf, canon, value_hash, scan_matcher_factory,
                                             chain_lo, hi, gate)
                 for a in piece)
    if not inactive:
        return chain
    ranges = sorted(inactive, reverse=descending)
    matcher = scan_matcher_factory()

    def scanned() -> Iterator[int]:
        for a, b in ranges:
            yield from scan_range(log, matcher, a, b, descending=descending, gate=gate)

    return merge_sorted([chain, scanned()], descending=descending)


def _conds(conds: list[tuple[int, bytes]]) -> list:
    """A native shoal_cond array for (psf_id, canon) pairs, followed by the
    canon buffers it points at (a list that keeps them alive)."""
    arr = ffi.new("shoal_cond[]", len(conds))
    keep = [arr]
    for c, (psf_id, canon) in zip(arr, conds):
        buf = ffi.new("char[]", canon)
        keep.append(buf)
        c.psf_id = psf_id
        c.canon = buf
        c.canon_len = len(canon)
        c.hash = lib.shoal_hash(psf_id, buf, len(canon))
    return keep
