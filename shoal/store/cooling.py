"""The cold tier's converter: a background thread that compresses the
written log of a store created with compression="zstd" into cold files of
frames (store/cold.py), off the ingest thread.

A page is taken once the flusher has written it whole and nothing writes it
again (it is below the tail's page). Segment by segment, in address order,
its bytes are compressed and appended to the segment's cold file
(segment-N.z, fsynced), shown to readers (the file's frame table in C), and
then, once every reader that might be inside the raw pages has left (the
store's gate), punched out of the raw file. When a segment's last page has
gone cold, its cold file is finished (frame table and footer) and its raw
file unlinked (SegmentFiles.make_cold). So the whole written log is
compressed, not only whole segments; what stays raw is the tail's page and
what the flusher has not written yet.

The dictionary (frames.DICT_FILE) is trained once the log holds enough
written bytes (DICT_BYTES x 8), on pieces spread over them; nothing is
compressed before. If training finds nothing, frames go without one.

Must stay true: the cold bytes are fsynced before the raw pages are punched,
and published before readers can miss the raw ones; a conversion that fails
(a full disk) leaves the raw file as it was and is tried again later;
close() stops the thread between chunks.
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
            self._not_before = 0.0
            self._cv.notify_all()

    def todo(self) -> list[tuple[int, int]]:
        """(segment, offset) pairs: compress the segment's bytes up to the
        offset. Pages are taken once written whole and never written again
        (below the tail's page and flushed), in steps of whole frames and
        pages; a segment's last step reaches its end, and the raw file then
        goes. Nothing until the log has enough written to train the
        dictionary on (DICT_BYTES x 8)."""
        seg_bytes = self.segments.segment_bytes
        page = self.hlog.page_size
        unit = max(page, self.hlog.codec.frame_bytes)
        tail = self.hlog.tail_address
        done = min(self.hlog.flushed_until_address, tail - tail % page)
        begin = self.hlog.begin_address
        if done - begin < 8 * DICT_BYTES and not self.hlog.codec.dictionary \
                and not (self.segments.directory / DICT_FILE).exists():
            return []
        out = []
        for seg in self.segments.existing():
            lo = seg * seg_bytes
            if lo + seg_bytes <= begin or lo >= done or not self.segments.has_raw(seg):
                continue
            upto = min(seg_bytes, done - lo)
            if upto < seg_bytes:
                upto -= upto % unit
            if upto > self.segments.cold_bytes(seg):
                out.append((seg, upto))
        return out

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self.gate.closed and (
                        not self.todo() or time.monotonic() < self._not_before):
                    self._cv.wait(timeout=max(0.01, min(1.0, self._not_before - time.monotonic())))
                if self._stop or self.gate.closed:
                    return
                self._busy = True
            try:
                for seg, upto in self.todo():
                    if self._stop:
                        break
                    self._convert(seg, upto)
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

    def _convert(self, seg: int, upto: int) -> None:
        codec = self._codec()
        try:
            done = self.segments.make_cold(seg, upto, codec, reading=self.gate, stop=lambda: self._stop)
        except StoreClosed:
            raise Interrupted("the store closed") from None
        if done is None:
            return
        token = self.gate.mark()  # readers inside now may be in the raw pages that just went cold
        while not self.gate.idle_since(token):
            if self.gate.closed:
                break
            time.sleep(0.001)
        if done[0] == "punch":
            self.segments.punch_cold(done[1], done[2])
        else:
            os.close(done[1])
            unmap(done[2])
            self.converted += 1

    def _codec(self) -> Codec:
        """The store's codec, with a dictionary trained on pieces of the
        written log if it has none yet (tried once: an empty DICT_FILE says
        none was found)."""
        codec = self.hlog.codec
        path = self.segments.directory / DICT_FILE
        if codec.dictionary or path.exists():
            return codec
        lo = self.hlog.begin_address
        hi = min(self.hlog.flushed_until_address, self.hlog.tail_address)
        size = hi - lo
        n = max(1, min(size // _PIECE, 30 * DICT_BYTES // _PIECE))  # 30x the dictionary: as good as 100x here
        step = max(_PIECE, size // n)
        sample = b"".join(self.segments.read(lo + i * step, _PIECE) for i in range(n))
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
            while (self._busy or self.todo()) and time.monotonic() < deadline and self._thread.is_alive():
                self._cv.wait(timeout=0.05)
            return not (self._busy or self.todo())

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
