"""A shard's sequence marks: where each piece of input the front sent began
in the shard's log, and the sequence number the front gave it
(addresses.py: the cluster's order).

A mark is (address, seq): the records from `address` up to the next mark's
address came in the piece numbered `seq`. Kept in memory as two sorted
arrays and appended to `marks.bin` (16 bytes per mark, little-endian) in
the shard's directory.

Must stay true:
  - Marks are added in address order, with seq strictly increasing: `add`
    raises a seq that is not above the last one to last + 1, so a shard's
    records in address order are in seq order whatever clocks the fronts
    that sent them keep.
  - A mark is written before the piece's records are ingested (the shard
    holds its ingest lock across both), so after a crash every record
    recovered lies at or after the mark of its piece. A mark lost with the
    crash (written, not yet on disk) leaves its records under the mark
    before: their order among themselves and against later pieces is kept,
    only coarser.
  - A torn last mark (a crash mid-write) is dropped when the file is read,
    and marks past the recovered tail (their records lost with a crash) when
    the next piece is marked below them.
"""
from __future__ import annotations

import bisect
import os
import struct
from array import array
from pathlib import Path

import numpy as np

from ..errors import io_error

MARKS_FILE = "marks.bin"
_MARK = struct.Struct("<QQ")


class Marks:
    def __init__(self, directory: Path):
        self.path = directory / MARKS_FILE
        self.addresses = array("Q")
        self.seqs = array("Q")
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        whole = len(data) - len(data) % _MARK.size
        for address, seq in _MARK.iter_unpack(data[:whole]):
            if self.addresses and (address < self.addresses[-1] or seq <= self.seqs[-1]):
                break  # not written by add(): stop at the last good mark
            self.addresses.append(address)
            self.seqs.append(seq)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.ftruncate(self._fd, len(self.addresses) * _MARK.size)
        except OSError as exc:
            raise io_error("opening", self.path, exc) from exc
        self._end = len(self.addresses) * _MARK.size

    def add(self, address: int, seq: int) -> int:
        """Mark `address` as the start of piece `seq`; returns the seq kept
        (raised above the last if it was not)."""
        if self.addresses and address < self.addresses[-1]:
            # Marks past the tail name records a crash lost (the mark was
            # written, its records were not): they mark nothing, and would
            # break the address order.
            k = bisect.bisect_left(self.addresses, address)
            del self.addresses[k:]
            del self.seqs[k:]
            self._end = k * _MARK.size
            try:
                os.ftruncate(self._fd, self._end)
            except OSError as exc:
                raise io_error("truncating", self.path, exc) from exc
        if self.seqs and seq <= self.seqs[-1]:
            seq = self.seqs[-1] + 1
        if self.addresses and address == self.addresses[-1]:
            # The piece before stored nothing: this one takes its place.
            self.seqs[-1] = seq
            off = self._end - _MARK.size
        else:
            self.addresses.append(address)
            self.seqs.append(seq)
            off = self._end
            self._end += _MARK.size
        try:
            os.pwrite(self._fd, _MARK.pack(address, seq), off)
        except OSError as exc:
            raise io_error("write to", self.path, exc) from exc
        return seq

    def sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise io_error("fsync of", self.path, exc) from exc

    def seq_of(self, addresses: array) -> array:
        """The seq of each address (0 before the first mark: records the
        store held before it joined a cluster)."""
        if not len(addresses):
            return array("Q")
        marks = np.frombuffer(self.addresses, dtype=np.uint64) if self.addresses else np.zeros(0, np.uint64)
        seqs = np.frombuffer(self.seqs, dtype=np.uint64) if self.seqs else np.zeros(0, np.uint64)
        k = np.searchsorted(marks, np.frombuffer(addresses, dtype=np.uint64), side="right").astype(np.int64) - 1
        out = np.where(k >= 0, seqs[np.maximum(k, 0)] if len(seqs) else 0, 0).astype(np.uint64)
        return array("Q", out.tobytes())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
