"""One ingest call on several threads: the input is framed on the calling
thread (eagerly, at memchr speed) into batches of about batch_bytes, each
batch is prepared on a worker (the GIL released: parse, validate, evaluate)
and committed under the writer lock in input order.

Must stay true:
  - Batch k commits only once batch k-1 has committed all of its records
    and been counted (a Turn): the call's records land in input order, and
    its result (counts, errors, addresses) is built in that order.
  - After a batch fails, no later batch commits: the records stored are a
    prefix of the input, as for a serial call, and the error says how many.
  - PSF holds (core.PsfHold) are taken on the calling thread, in batch
    order, before a batch goes to a worker. Taken on the workers, batch k+1
    could hold while batch k waits behind a registration that waits for
    k+1 to leave.
  - At most threads + 1 batches are in flight: the input is read no
    further ahead than that, and their spans arrays are recycled.
"""
from __future__ import annotations

import threading
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._native import ffi
from ..results import IngestResult
from .batch import BatchRunner, _append, _NO_EXTRAS, _slow_extras
from .core import IngestCore
from .framing import _SPAN_CAP, Framer, InputFormat
from .sources import Source


class _Abandoned(Exception):
    """A batch after one that failed: it commits nothing."""


class _Turn:
    """Batches commit in order: k waits until k-1 is done."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.next = 0
        self.failed_at: int | None = None

    def wait(self, k: int) -> None:
        with self._cv:
            while True:
                if self.failed_at is not None and self.failed_at < k:
                    raise _Abandoned
                if self.next == k:
                    return
                self._cv.wait()

    def done(self, k: int) -> None:
        with self._cv:
            if self.next == k:
                self.next = k + 1
            self._cv.notify_all()

    def fail(self, k: int) -> None:
        with self._cv:
            if self.failed_at is None or k < self.failed_at:
                self.failed_at = k
            self._cv.notify_all()


def run(core: IngestCore, source: Source, fmt: InputFormat, threads: int, *,
        addresses: bool = False) -> tuple[IngestResult, int]:
    """The records of `source`, prepared on `threads` workers (on_error
    "skip"); returns the result and a tail at or after its last record."""
    cfg = core.config
    lock = core.lock
    log = core.log
    result = IngestResult()
    if addresses:
        result.addresses = array("Q")
    framer = Framer(fmt, cfg.batch_bytes, cfg.effective_max_record_bytes, lazy=False)
    free_spans: list[Any] = []
    spans_lock = threading.Lock()

    def spans_source() -> Any:
        with spans_lock:
            if free_spans:
                return free_spans.pop()
        return ffi.new("shoal_span[]", _SPAN_CAP)

    framer.spans_source = spans_source
    framer.window = cfg.batch_bytes
    turn = _Turn()
    room = threading.Semaphore(threads + 1)
    local = threading.local()
    runners: list[tuple[BatchRunner, Any]] = []
    errors: dict[int, BaseException] = {}

    def worker_runner() -> tuple[BatchRunner, Any]:
        r = getattr(local, "runner", None)
        if r is None:
            runner = BatchRunner(core, result, dry_run=False)
            scratch = core.take_scratch(core.compiled.native.n_slots)
            r = local.runner = (runner, scratch)
            with spans_lock:
                runners.append(r)
        return r

    def work(k: int, batch: Any, compiled: Any) -> None:
        runner, scratch = worker_runner()
        mine = [False]

        def commit() -> None:
            if not mine[0]:
                turn.wait(k)
                mine[0] = True
            core.let_through()  # a compaction waiting for the writer lock goes first
            with lock:
                core.check_open()
                log.check_writable()
                runner.commit_held()

        runner.commit = commit
        failed: BaseException | None = None
        try:
            scratch.fit_slots(compiled.native.n_slots)
            n = batch.n_spans
            scratch.fit(n)
            extras_c, pool_c, n_extras = _NO_EXTRAS, ffi.NULL, 0
            slow = compiled.slow
            if slow is not None:
                extras_c, pool_c, n_extras, keep = _slow_extras(slow, batch.buf, batch.spans, n,
                                                                key=compiled.key_slow)
            _append(runner, compiled.native, batch.buf, batch.spans, n, extras_c, pool_c, n_extras, scratch)
        except BaseException as exc:  # noqa: BLE001 - raised on the calling thread, in batch order
            failed = exc
        finally:
            core.psf_hold.leave()
            try:
                if not mine[0]:
                    turn.wait(k)  # count in order, even a batch with nothing to commit
                    mine[0] = True
                runner.count(batch, scratch)
            except _Abandoned:
                pass
            if failed is not None and not isinstance(failed, _Abandoned):
                errors[k] = failed
                turn.fail(k)
            turn.done(k)
            if batch.spans is not None and len(batch.spans) == _SPAN_CAP:
                with spans_lock:
                    free_spans.append(batch.spans)
            room.release()

    k = 0
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-ingest") as pool:
            try:
                for batch in framer.batches(source.chunks()):
                    room.acquire()
                    if turn.failed_at is not None:
                        room.release()
                        break
                    core.psf_hold.enter()
                    try:
                        compiled = core.compiled  # held: fixed until this batch commits
                        core.check_open()
                    except BaseException:
                        core.psf_hold.leave()
                        room.release()
                        raise
                    pool.submit(work, k, batch, compiled)
                    k += 1
            except BaseException:
                turn.fail(k)  # batches not yet committed commit nothing more
                raise
    except BaseException as exc:
        exc.ingest_result = result
        raise
    finally:
        for runner, scratch in runners:
            core.give_scratch(scratch)
        with lock:
            core.noted(result, counted=True)
    if errors:
        exc = errors[min(errors)]
        exc.ingest_result = result
        raise exc
    end = max([r.end for r, _ in runners] + [result.last_address or 0])
    return result, end
