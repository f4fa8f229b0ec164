"""The cold tier's converter: a background thread that rewrites each sealed
segment file of a store created with compression="zstd" as a cold file of
compressed frames (store/cold.py), off the ingest thread.

A segment is sealed once the flusher has written its last page (so the tail
is in a later segment and nothing writes it again). For each, in address
order: the segment's bytes are compressed frame by frame into segment-N.z
(written whole, fsynced, renamed), published to readers, and the raw file
unlinked (SegmentFiles.make_cold); its descriptor and map are closed only
once every reader that might be inside them has left (the store's gate).

The first segment converted trains the store's dictionary (frames.DICT_FILE)
from pieces of its bytes, when it has enough of them; until then frames are
compressed without one (they stay readable after).

Must stay true: a conversion that fails (a full disk) leaves the raw file as
it was and is tried again at the next flush; close() stops the thread
between chunks, leaving no temporary file behind.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from ..errors import StoreClosed
from ..files import write_atomic
from .cold import Interrupted
from .frames import DICT_BYTES, DICT_FILE, Codec, train_dictionary
from .segments import unmap

log = logging.getLogger("shoal.cooling")

_PIECE = 4096
OPEN_DELAY_SECONDS = 2.0


class Cooling:
    def __init__(self, hlog, gate):
        self.hlog = hlog
        self.gate = gate
        self.segments = hlog.segments
        self._cv = threading.Condition()
        self._flushed = 0
        self._stop = False
        self._busy = False
        # Segments found sealed at open wait a moment: a short-lived process
        # (a CLI query) would only start them and stop at close. New ones
        # (a flush) and wait_idle start at once.
        self._not_before = time.monotonic() + OPEN_DELAY_SECONDS
        self.converted = 0  # segments converted by this process
        self.last_error: BaseException | None = None
        hlog.flush_listeners.append(self._on_flush)
        self._thread = threading.Thread(target=self._loop, name="shoal-cooling", daemon=True)
        self._thread.start()

    def _on_flush(self, end: int) -> None:
        with self._cv:
            self._flushed = max(self._flushed, end)
            self._not_before = 0.0
            self._cv.notify_all()

    def sealed(self) -> list[int]:
        """Segments whose every page is written and that still have a raw file."""
        seg_bytes = self.segments.segment_bytes
        below = min(self.hlog.flushed_until_address, self.hlog.tail_address) // seg_bytes
        first = self.hlog.begin_address // seg_bytes
        return [s for s in self.segments.existing() if first <= s < below and not self.segments.is_cold(s)]

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self.gate.closed and (
                        not self.sealed() or time.monotonic() < self._not_before):
                    self._cv.wait(timeout=max(0.01, min(1.0, self._not_before - time.monotonic())))
                if self._stop or self.gate.closed:
                    return
                self._busy = True
            try:
                for seg in self.sealed():
                    if self._stop:
                        break
                    self._convert(seg)
            except Interrupted:
                pass
            except Exception as exc:  # noqa: BLE001 - a full disk, say: the raw file stays; try again later
                self.last_error = exc
                log.warning("compressing a cold segment failed (it stays raw; retried later): %s", exc)
                with self._cv:
                    self._cv.wait(timeout=5.0)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _convert(self, seg: int) -> None:
        codec = self._codec_for(seg)
        try:
            done = self.segments.make_cold(seg, codec, reading=self.gate, stop=lambda: self._stop)
        except StoreClosed:
            raise Interrupted("the store closed") from None
        if done is None:
            return
        fd, m = done
        token = self.gate.mark()
        while not self.gate.idle_since(token):
            time.sleep(0.001)
        os.close(fd)
        unmap(m)
        self.converted += 1

    def _codec_for(self, seg: int) -> Codec:
        """The store's codec, with a dictionary trained on this segment if it
        has none yet and the segment holds enough bytes to train one."""
        codec = self.hlog.codec
        path = self.segments.directory / DICT_FILE
        if codec.dictionary or path.exists():
            return codec
        size = self.segments.size(seg)
        if size < 8 * DICT_BYTES:
            return codec
        n = min(size // _PIECE, 30 * DICT_BYTES // _PIECE)  # 30x the dictionary: as good as 100x here, a third of the time
        step = size // n
        base = seg * self.segments.segment_bytes
        sample = b"".join(self.segments.read(base + i * step, _PIECE) for i in range(n))
        dictionary = train_dictionary(sample)
        write_atomic(path, dictionary)  # empty: tried, none found; frames go without one
        if not dictionary:
            return codec
        codec = Codec(level=codec.level, frame_bytes=codec.frame_bytes, dictionary=dictionary)
        self.hlog.set_codec(codec)
        return codec

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no sealed segment waits for conversion (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._not_before = 0.0
            self._cv.notify_all()
            while (self._busy or self.sealed()) and time.monotonic() < deadline and self._thread.is_alive():
                self._cv.wait(timeout=0.05)
            return not (self._busy or self.sealed())

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
