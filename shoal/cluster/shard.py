"""One shard: a shoal store in its own directory, and the calls the cluster
front makes on it. A plain class (tested as it is); front.py runs each one
as a Ray actor, whose constructor opens the store, so a shard Ray restarts
after a crash recovers its store from disk before it takes a call.

Everything a method takes and returns is plain data (bytes, arrays, lists,
ints, dicts), cheap for Ray to pickle: answers travel as one buffer of
records per page (the RecordBatch layout, results.py) with each record's
store address and sequence number (marks.py) beside it.

Concurrency: the actor runs several calls at once (threads; the store's
own locks make that safe). Ingest calls take `_ingest_lock`, so a piece's
mark and its records are appended with no other piece between them, and
run on one thread of the shard's own (`_ingester`): Ray runs each call on
whichever of its threads is free, and glibc gives each thread its own
arena, so the buffers an ingest allocates (each part's copy, framing and
parsing scratch) would come from a cold arena, fresh memory the kernel
zeroes page by page, on each call (a sixth of a shard's ingest time).
"""
from __future__ import annotations

import bisect
import itertools
import os
import shutil
import threading
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Store
from ..engine import open as open_store
from ..errors import InvalidArgument, TailGap
from ..psf.expr import parse_definition
from . import pages
from .begun import Begun
from .marks import Marks
from .resume import skip_stored, stored_span
from .routing import routing_value, virtual_shard

STORE_DIR = "store"


class ShardServer:
    def __init__(self, directory: str, config: dict[str, Any], shard: int, ingest_threads: int = 1):
        self.shard = shard
        self.ingest_threads = ingest_threads  # the cores Ray gave this shard
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.store: Store = open_store(self.directory / STORE_DIR, **config)
        self.marks = Marks(self.directory)
        self.begun = Begun(self.directory)
        self._ingest_lock = threading.Lock()
        self._ingester = ThreadPoolExecutor(1, thread_name_prefix="shard-ingest")
        self._tails: dict[str, tuple] = {}  # tail sessions: id -> (rounds, cancel)
        self._tails_lock = threading.Lock()

    # ---- health ----
    def ping(self) -> dict:
        st = self.store.stats()
        return {"shard": self.shard, "pid": os.getpid(), "records": st["records"], "disk_bytes": st["disk_bytes"],
                "tail_address": self.store.tail_address}

    def stats(self) -> dict:
        return self.store.stats()

    # ---- PSFs ----
    def apply_psfs(self, registrations: list[dict]) -> None:
        """Bring this shard's PSFs to the cluster's list (in order): a
        registration it has is left as it is, one it missed is made now (so
        it indexes from here on; queries scan the rest, as ever)."""
        for reg in registrations:
            self._apply(reg)

    def _apply(self, reg: dict) -> Any:
        name = reg["name"]
        if reg["op"] == "register":
            try:
                current = self.store.psf(name)
            except Exception:  # noqa: BLE001 - PSFNotFound: register it
                current = None
            if (current is not None and current.active and current.definition == reg["definition"]
                    and current.bucket == reg.get("bucket") and bool(current.time) == bool(reg.get("time"))):
                return current
            return self.store.register_psf(name, reg["definition"], replace=current is not None and current.active,
                                           bucket=reg.get("bucket"), time=bool(reg.get("time")))
        try:
            current = self.store.psf(name)
        except Exception:  # noqa: BLE001 - PSFNotFound: nothing to deregister
            return None
        return self.store.deregister_psf(name) if current.active else current

    def register_psf(self, reg: dict) -> Any:
        return self._apply(reg)

    def deregister_psf(self, reg: dict) -> Any:
        return self._apply(reg)

    def psfs(self, include_inactive: bool = True) -> list:
        return self.store.psfs(include_inactive=include_inactive)

    # ---- ingest ----
    def ingest(self, pieces: list[tuple[Any, str, int]], durable: bool = False,
               addresses: bool = False, token: int = 0, resume: int = 0) -> list[tuple]:
        """Ingest each (data or list of parts, format, seq) piece in order, then write them
        out (durable: and fsync); per piece
        (ingested, rejected, input_bytes, stored_bytes, errors, first and
        last store address or 0, each record's address or None) with
        errors as (line or element in the piece, reason, offset). `token`
        names the call (begun.py), so a front can ask whether it began;
        `resume` names a call this shard's last process died in, whose
        pieces these are: what it stored is skipped (resume.py)."""
        return self._ingester.submit(self._ingest, pieces, durable, addresses, token, resume).result()

    def _ingest(self, pieces: list[tuple[Any, str, int]], durable: bool, addresses: bool,
                token: int, resume: int) -> list[tuple]:
        out = []
        with self._ingest_lock:
            lost = stored_span(self, resume) if resume else None
            skip = lost[0] if lost else 0
            if token:
                self.begun.add(token, self.store.tail_address)
                if durable:
                    self.begun.sync()
            for data, fmt, seq in pieces:
                self.marks.add(self.store.tail_address, seq)
                if skip:
                    done, piece = self._resumed(data, fmt, skip, lost, first=not out, addresses=addresses)
                    out.append(piece)
                    skip -= done
                    continue
                data = self._stream(data)
                r = self.store.ingest(data, format=fmt, threads=self.ingest_threads, addresses=addresses)
                out.append((r.ingested, r.rejected, r.input_bytes, r.stored_bytes,
                            [(e.line, e.reason, e.offset) for e in r.errors], r.first_address or 0,
                            r.last_address or 0, r.addresses))
            # Acknowledged means written: to the OS at least (so the records
            # outlive this process: Ray restarts it and the store recovers
            # them), fsynced too when durable (they outlive the machine).
            if durable:
                self.marks.sync()
            self.store.flush(durable=durable)
        return out

    def _resumed(self, data: Any, fmt: str, skip: int, lost: tuple, first: bool, addresses: bool) -> tuple[int, tuple]:
        """A piece of a resumed call, at most `skip` of whose valid records
        the lost call stored (lost: stored_span's): the rest ingested.
        Returns how many of its records were stored before, and its result
        as _ingest gives one (the stored records' bytes: the lost call's log
        bytes, shared by record count)."""
        n, span_first, span_last, span_bytes, span_addresses = lost
        done, bad, errors, rest, offset, size, flags = skip_stored(self, self._joined(data), fmt, skip, addresses)
        ingested, stored = done, span_bytes * done // max(n, 1)
        first_address = span_first if first and done else 0
        last_address = span_last if done else 0
        addrs = None
        if addresses:  # the stored records' addresses to its valid records, in order; 0 to the bad
            addrs, at = array("Q"), n - skip
            for ok in flags:
                addrs.append(span_addresses[at] if ok else 0)
                at += ok
        if rest:
            r = self.store.ingest(rest, format=fmt, threads=self.ingest_threads, addresses=addresses)
            ingested, bad, stored = ingested + r.ingested, bad + r.rejected, stored + r.stored_bytes
            errors += [(e.line + offset, e.reason, e.offset) for e in r.errors]
            first_address = first_address or r.first_address or 0
            last_address = r.last_address or last_address
            if addresses:
                addrs.extend(r.addresses)
        return done, (ingested, bad, size, stored, errors, first_address, last_address, addrs)

    def began(self, token: int) -> tuple[bool, int]:
        """Whether ingest call `token` began here, and how many records it
        stored (resume.py), for a front deciding to send it again."""
        with self._ingest_lock:
            lost = stored_span(self, token)
            return (False, 0) if lost is None else (True, lost[0])

    def check(self, pieces: list[tuple[Any, str]]) -> list[tuple]:
        """Store.check of each (data, format) piece: (records it would
        store, bad records, errors as ingest gives them, input bytes),
        nothing stored."""
        out = []
        for data, fmt in pieces:
            r = self.store.check(self._joined(data), format=fmt)
            out.append((r.ingested, r.rejected, [(e.line, e.reason, e.offset) for e in r.errors], r.input_bytes))
        return out

    def _stream(self, data: Any) -> Any:
        """A piece's data for Store.ingest: one buffer, or its parts as
        they were cut, each copied once as the ingest reads it (a part is
        about a MiB, so its copy reuses memory freed by the one before; a
        piece joined into one buffer would take fresh memory, which costs
        a page fault per page here)."""
        data = self._resolve(data)
        if isinstance(data, list):
            return memoryview(data[0]) if len(data) == 1 else (memoryview(d) for d in data)
        return data

    def _joined(self, data: Any) -> Any:
        """A piece's data as one buffer: its parts, as the front cut them, joined."""
        data = self._resolve(data)
        if isinstance(data, list):
            data = bytes(data[0]) if len(data) == 1 else b"".join(data)
        return data

    def _resolve(self, data: Any) -> Any:
        """A piece's data that the front put in Ray's object store, fetched
        (front.py's actor does; a plain ShardServer is given the data)."""
        return data

    # ---- reads ----
    def seq_at(self, address: int) -> int:
        """The seq of the record at `address` (a cluster cursor's)."""
        return int(self.marks.seq_of(array("Q", [address]))[0])

    def _bound(self, pos: tuple[int, int, int]) -> int | None:
        """The first store address of this shard whose records come at or
        after cluster position pos = (seq, shard, store address) in cluster
        order (None: none do). Records are ordered by (seq, shard, address)
        and a shard's seqs grow with its addresses, so what comes before pos
        is a prefix of this shard's log."""
        seq, shard, address = pos
        if shard == self.shard:
            return address
        seqs = self.marks.seqs
        # a shard numbered below pos's: its records of seq == pos's come before pos
        k = bisect.bisect_right(seqs, seq) if self.shard < shard else bisect.bisect_left(seqs, seq)
        return self.marks.addresses[k] if k < len(seqs) else None

    def page(self, kind: str, spec: Any, limit: int, order: str, from_address: int | None,
             to_address: int | None, options: dict, lo: tuple | None = None,
             hi: tuple | None = None) -> bytes:
        """Up to `limit` records of a query (kind "all"/"any": spec is the
        conditions; "scan": an expression; "range": (psf, lo, hi)) in
        `order` within [from_address, to_address) of this store, and from
        cluster position `lo` (inclusive) to `hi` (exclusive) when given:
        one buffer of records each followed by b"\\n", their addresses,
        offsets, lengths and seqs, packed in one buffer (pages.py)."""
        s = self.store
        window = self._window(lo, hi, from_address, to_address)
        if window is None:
            return pages.pack(b"", b"", b"", b"", b"")
        from_address, to_address = window
        if options.get("addresses_only"):  # query_addresses: no record read
            got = array("Q", itertools.islice(s.query_addresses(
                spec, mode=kind, order=order, from_address=from_address, to_address=to_address,
                include_superseded=options.get("include_superseded", False)), limit))
            zeros = bytes(8 * len(got))
            return pages.pack(b"", got, zeros, zeros[:4 * len(got)], self.marks.seq_of(got))
        common = dict(limit=limit, order=order, from_address=from_address, to_address=to_address,
                      include_superseded=options.get("include_superseded", False), fields=options.get("fields"))
        if kind in ("all", "any"):
            batches = s.query_batches(spec, mode=kind, since=options.get("since"), until=options.get("until"),
                                      **common)
        elif kind == "scan":
            batches = s.scan_batches(spec, since=options.get("since"), until=options.get("until"), **common)
        elif kind == "range":
            psf, lo, hi = spec
            batches = s.query_range_batches(psf, lo, hi, **common)
        else:
            raise InvalidArgument(f"unknown query kind {kind!r}")
        parts: list[bytes] = []
        addresses, offsets, lengths = array("Q"), array("Q"), array("I")
        base = 0
        for b in batches:  # each batch's buffer as it is, its offsets moved past the ones before
            parts.append(bytes(b.data))
            offsets.frombytes((np.frombuffer(b.offsets, dtype=np.uint64) + np.uint64(base)).tobytes())
            lengths.extend(b.lengths)
            addresses.extend(b.addresses)
            base += len(b.data)
        return pages.pack(b"".join(parts), addresses, offsets, lengths, self.marks.seq_of(addresses))

    def _window(self, lo: tuple | None, hi: tuple | None, from_address: int | None = None,
                to_address: int | None = None) -> tuple[int | None, int | None] | None:
        """[from_address, to_address) of this store narrowed to the cluster
        positions lo (inclusive) and hi (exclusive); None when none of this
        shard's records lies inside."""
        if lo is not None:
            b = self._bound(lo)
            if b is None:
                return None
            from_address = b if from_address is None else max(from_address, b)
        if hi is not None:
            b = self._bound(hi)
            if b is not None:
                to_address = b if to_address is None else min(to_address, b)
        return from_address, to_address

    def _windowed(self, options: dict) -> dict | None:
        """A count's options with its cluster positions "lo" and "hi" given
        as this store's from_address / to_address (_window); None when none
        of this shard's records lies inside."""
        opts = dict(options)
        window = self._window(opts.pop("lo", None), opts.pop("hi", None))
        if window is None:
            return None
        for name, address in zip(("from_address", "to_address"), window):
            if address is not None:
                opts[name] = address
        return opts

    def count(self, kind: str, spec: Any, options: dict) -> int:
        s = self.store
        options = self._windowed(options)
        if options is None:
            return 0
        if kind == "range":
            psf, lo, hi = spec
            return s.count_range(psf, lo, hi, **options)
        fn = s.count_all if kind == "all" else s.count_any
        return fn(spec, **options)

    def group_count(self, psf: str, limit: int | None, options: dict) -> list[tuple[Any, int]]:
        options = self._windowed(options)
        return [] if options is None else self.store.group_count(psf, limit=limit, **options)

    def counts_of(self, psf: str, values: list, options: dict) -> list[int]:
        """Exact counts of given values (the second round of a merged top-k)."""
        options = self._windowed(options)
        return [0] * len(values) if options is None else [self.store.count(psf, v, **options) for v in values]

    def get(self, address: int) -> tuple[int, bytes] | None:
        r = self.store.get(address)
        return None if r is None else (r.address, bytes(r.raw))

    def get_key(self, key: Any) -> tuple[int, bytes] | None:
        r = self.store.get_key(key)
        return None if r is None else (r.address, bytes(r.raw))

    def delete_key(self, key: Any, durable: bool = False) -> bool:
        with self._ingest_lock:
            return self.store.delete_key(key, durable=durable)

    def delete_keys(self, keys: list, durable: bool = False) -> int:
        with self._ingest_lock:
            return self.store.delete_keys(keys, durable=durable)

    def wait_compressed(self, timeout: float) -> bool:
        return self.store.wait_compressed(timeout)

    # ---- moving virtual shards (growth.py: adding or removing shards of a keyed cluster) ----
    def _key_expression(self):
        if self.store.key is None:
            raise InvalidArgument("only a keyed cluster's shards move records")
        return parse_definition(self.store.key, self.store.config.expression_limits)

    def export_vshards(self, vshards: list[int], virtual_shards: int, from_address: int | None,
                       max_bytes: int) -> tuple[bytes, int, int | None]:
        """The live records whose key falls in one of `vshards`, from
        from_address on, oldest first: (NDJSON of at least max_bytes unless
        it is the last part, its records, where to go on or None when done)."""
        want, expr = set(vshards), self._key_expression()
        parts: list = []
        size = 0
        for batch in self.store.scan_batches("@", order="oldest", from_address=from_address):
            for rec in batch:
                if virtual_shard(expr, rec.raw, virtual_shards) in want:
                    parts.append(rec.raw)
                    size += len(rec.raw) + 1
                    if size >= max_bytes:
                        return b"\n".join(parts) + b"\n", len(parts), rec.address + 1
        return (b"\n".join(parts) + b"\n" if parts else b""), len(parts), None

    def drop_vshards(self, vshards: list[int], virtual_shards: int) -> int:
        """Delete (tombstone, durably) every live key that falls in one of
        `vshards`: they were copied to the shard that owns them now. Done
        twice, the second deletes nothing. Returns the keys deleted."""
        want, expr = set(vshards), self._key_expression()
        keys = []
        for batch in self.store.scan_batches("@", order="oldest"):
            for rec in batch:
                got = routing_value(expr, rec.raw, virtual_shards)
                if got is not None and got[0] in want:
                    keys.append(got[1])
        with self._ingest_lock:
            n = self.store.delete_keys(keys, durable=True) if keys else 0
            self.marks.sync()
        return n

    # ---- the live tail (tail.py) ----
    def tail_open(self, conditions: list, mode: str, fields: list | None, since: tuple | None,
                  from_begin: bool = False) -> str:
        """A follower of this store for a cluster tail, started at its tail,
        at the first record at or after cluster position `since`, or (a
        shard added after the tail began) at its first record."""
        start = self.store.begin_address if from_begin else None
        if since is not None:
            b = self._bound(since)
            start = b if b is not None else self.store.tail_address
        cancel = threading.Event()
        rounds = self.store.follow_rounds(conditions, mode=mode, since_address=start, on_gap="skip",
                                          fields=fields, cancel=cancel)
        sid = os.urandom(8).hex()
        with self._tails_lock:
            self._tails[sid] = (rounds, cancel)
        return sid

    def tail_next(self, sid: str) -> list | tuple | None:
        """The session's next round: [(address, raw), ...] ([] a heartbeat),
        ("gap", from, to), or None when there is no such session (this shard
        restarted since it was opened) or its follower ended."""
        with self._tails_lock:
            got = self._tails.get(sid)
        if got is None:
            return None
        item = next(got[0], None)
        if item is None:
            return None
        if isinstance(item, TailGap):
            return ("gap", item.missed[0], item.missed[1])
        return [(r.address, bytes(r.raw)) for r in item]

    def tail_close(self, sid: str) -> None:
        with self._tails_lock:
            got = self._tails.pop(sid, None)
        if got is not None:
            got[1].set()

    # ---- upkeep ----
    def flush(self, durable: bool = True) -> int:
        if durable:
            self.marks.sync()
        return self.store.flush(durable=durable)

    def compact(self, pos: tuple | None, retain_bytes: int | None) -> Any:
        """Store.compact below cluster position pos (what comes before it
        in cluster order), or keeping the newest retain_bytes of log."""
        if pos is None:
            return self.store.compact(retain_bytes=retain_bytes)
        b = self._bound(pos)
        return self.store.compact(b if b is not None else self.store.tail_address)

    def checkpoint(self) -> Any:
        self.marks.sync()
        return self.store.checkpoint()

    def checkpoints(self) -> list[int]:
        return self.store.checkpoints()

    def retire(self) -> None:
        """Close the store and delete this shard's directory: a keyed
        cluster removing this shard has moved every key it held
        (growth.py)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def close(self) -> None:
        self._ingester.shutdown(wait=True)
        if not self.store.closed:
            self.marks.sync()
            self.store.close()
        self.marks.close()
        self.begun.close()
