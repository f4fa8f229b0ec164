"""The cluster's pause: while records move between shards (front.py, adding
shards to a keyed cluster), no front ingests, deletes or reads, so no
answer sees a key twice (copied, not yet deleted at its old shard) or not
at all, and no record reaches a shard that is giving its keys away.

Every front's calls on shards hold a shared lock on PAUSE_FILE in the
cluster directory (one flock per front while it has any call out, however
many threads make them); the front that moves records holds it exclusively.
A front that wants to pause first creates PAUSING_FILE: a front with no
call out then waits before its next one, so a busy cluster cannot keep the
pause from starting. A pause that cannot start within `timeout` (a front
with a call that never ends) gives up with a clear error, changing nothing.

Must stay true:
  - A front's own calls made while it holds the pause (the move's) take no
    shared lock: flock locks of one file through two descriptors conflict
    even in one process.
  - A call's shared hold spans from sending a request to taking its
    answer, so a shard never runs a front's request during a move.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ShoalError

PAUSE_FILE = "cluster.pause"
PAUSING_FILE = "cluster.pausing"
POLL_SECONDS = 0.01


class Pause:
    def __init__(self, directory: Path):
        self._lock_path = directory / PAUSE_FILE
        self._pausing_path = directory / PAUSING_FILE
        self._held = 0          # this front's calls out
        self._fd: int | None = None
        self._cv = threading.Condition()
        self._local = threading.local()

    # ---- a call's shared hold ----
    def enter(self) -> None:
        if getattr(self._local, "exclusive", False):
            return
        with self._cv:
            if self._held == 0:
                while self._pausing_path.exists():  # a pause is starting: let it
                    self._cv.wait(POLL_SECONDS)
                if self._fd is None:  # opened once: a call costs two flocks, not an open and a close
                    self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self._fd, fcntl.LOCK_SH)  # waits while a move runs
            self._held += 1

    def leave(self) -> None:
        if getattr(self._local, "exclusive", False):
            return
        with self._cv:
            self._held -= 1
            if self._held == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._cv:
            if self._fd is not None:
                os.close(self._fd)  # and with it any lock
                self._fd = None

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    # ---- the move's exclusive hold ----
    @contextlib.contextmanager
    def exclusive(self, timeout: float) -> Iterator[None]:
        """Every front's calls stopped (those out finish first) until the block ends."""
        self._pausing_path.touch()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ShoalError(f"could not pause the cluster within {timeout:g} s: a call kept running "
                                         f"(a query whose answer is still being read?); nothing was moved, "
                                         f"try again") from None
                    time.sleep(POLL_SECONDS)
            self._local.exclusive = True
            try:
                yield
            finally:
                self._local.exclusive = False
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._pausing_path.unlink()
            os.close(fd)
