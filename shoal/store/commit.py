"""Group commit: concurrent durable ingests share one fsync.

A durable ingest appends under the store's writer lock, notes the address
where its records end, releases the lock and calls `wait_durable(end)`. It
returns once `synced_until_address >= end`: every log byte below
synced_until_address is written to its segment file and fsynced.

Waiters elect one leader at a time. The leader
  1. takes the writer lock briefly to plan the write of the tail page's
     unwritten blocks (its target is the tail then; the last, partly filled
     block is copied aside) and writes them after releasing it, so appends
     go on meanwhile (HybridLog.plan_tail_write);
  2. without the writer lock, waits for the flusher to write the sealed pages
     below the target, then fsyncs the dirty segment files;
  3. publishes synced_until_address and wakes the waiters. Those whose end is
     covered return; the others (their records landed after the leader took
     the lock) elect the next leader, which covers them all at once.
So while one fsync runs, the ingests that finish meanwhile queue up and the
next fsync covers all of them: fsyncs per durable ingest fall as more threads
ingest durably. Callers that hold the writer lock for their own reasons
(Store.flush, checkpoint, close) use `sync_locked`; it does the same steps
without electing (a leader may be waiting for the lock they hold) and
publishes the same address, which releases any waiter it covers.

Waiters take only `_cv`; the leader takes the writer lock and then nothing
else, and never holds `_cv` while it writes or fsyncs. Lock order: writer
lock -> segment files' sync lock -> _cv, never the other way.

Errors: the exception of a failed attempt reaches every waiter that was
waiting while it ran and whose end its target covered (a fresh exception of
the same class each). A failed write (DiskFull, NativeIOError) leaves the
records in memory, and the next attempt writes them again. A failed fsync
also calls `HybridLog.fail_writes`: the log refuses writes until reopened.
"""
from __future__ import annotations

import threading

from ..errors import NativeIOError, StoreClosed, restated
from .hlog import HybridLog

_LOCK_FREE_TRIES = 3  # step 1 without waiting for the flusher under the writer lock


class GroupCommit:
    def __init__(self, log: HybridLog, write_lock: threading.Lock, synced_until_address: int):
        self._log = log
        self._write_lock = write_lock
        self._cv = threading.Condition(threading.Lock())
        self._synced = synced_until_address
        self._leading = False
        self._target = 0  # the leader's target once it has one (leader only)
        self._attempts = 0  # attempts finished, successful or not
        self._failure: tuple[int, int, BaseException] | None = None  # (attempt, target, error)
        self._closed = False
        self.syncs = 0  # fsync rounds (each fsyncs the dirty segments), for stats

    @property
    def synced_until_address(self) -> int:
        return self._synced

    def wait_durable(self, end: int) -> None:
        """Return once every log byte below `end` is fsynced. Call without the
        writer lock, after the records ending at `end` were appended."""
        with self._cv:
            arrived = self._attempts
            while True:
                if self._synced >= end:
                    return
                f = self._failure
                if f is not None and f[0] > arrived and f[1] >= end:
                    raise restated(f[2])
                if self._closed:
                    raise StoreClosed("the store was closed before these records were made durable")
                if not self._leading:
                    self._leading = True
                    break
                self._cv.wait()
        # Until the lock is taken, the tail now is what the attempt would cover.
        self._target = self._log.tail_address
        try:
            synced = self._lead()
        except BaseException as exc:
            with self._cv:
                self._leading = False
                self._attempts += 1
                self._failure = (self._attempts, max(self._target, end), exc)
                self._cv.notify_all()
            raise
        with self._cv:
            self._leading = False
            self._attempts += 1
            self._publish(synced)
            self._cv.notify_all()
        if synced < end:  # only after close(): raises StoreClosed
            self.wait_durable(end)

    def _lead(self) -> int:
        """Steps 1-2 for the elected leader; returns the synced address."""
        log = self._log
        target = None
        for attempt in range(_LOCK_FREE_TRIES + 1):
            # Let the flusher reach the tail page before taking the lock, so
            # appends are not held up while it writes the pages before it.
            last = max(log.tail_address - 1, 0)
            log.wait_flushed((last >> log.page_bits) << log.page_bits)
            with self._write_lock:
                if self._closed:  # close() synced everything it could
                    return self._synced
                plan = log.plan_tail_write(wait=attempt == _LOCK_FREE_TRIES)
            if plan is not None:
                # The write itself runs without the writer lock: appends go
                # on while it does.
                target = self._target = log.finish_tail_write(plan)
                break
        assert target is not None
        return self._sync(target)

    def sync_locked(self) -> int:
        """Make everything below the tail durable; the caller holds the
        writer lock. Returns the tail (now synced)."""
        target = self._log.write_tail()
        synced = self._sync(target)
        with self._cv:
            self._publish(synced)
            self._cv.notify_all()
        return target

    def _sync(self, target: int) -> int:
        """Step 2: wait for the flusher to pass `target`, fsync; returns the
        address the fsync covers (all bytes written before it began)."""
        log = self._log
        log.wait_flushed(target)
        covered = log.flushed_until_address
        with self._cv:
            self.syncs += 1
        try:
            log.segments.sync()
        except StoreClosed:
            if self._closed and self._synced >= target:
                return self._synced  # close() synced it meanwhile
            raise
        except NativeIOError as exc:
            log.fail_writes(exc)
            raise
        return covered

    def _publish(self, synced: int) -> None:
        """Under _cv."""
        self._synced = max(self._synced, synced)

    def close(self) -> None:
        """After the store's last sync, under the writer lock: later waiters
        whose records are not covered raise StoreClosed."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
