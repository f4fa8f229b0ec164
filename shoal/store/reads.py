"""Record reads by address (shoal_read, _native/read.c): whole records, their
JSON text, Records or RecordBatches, in buffers of about a MiB per native
call.

Safe from any thread without a lock: each thread has its own job arrays and
output buffer (a threading.local), the native read loads log addresses
atomically and checks each in-memory page before and after copying it (a
frame recycled under the reader falls back to the segment file), and the
read methods never yield, so no two calls on one thread overlap. Callers
hold the store's reader gate around each call.
"""
from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator

from .._native import check, ffi, lib
from ..errors import NativeIOError
from ..results import Record, RecordBatch, make_records
from .record import array_of, batch_data, out_buffer


class RecordReads:
    def __init__(self, log_c, page_size: int):
        self._log_c = log_c  # the shoal_log the HybridLog owns (it outlives this object's use)
        self.page_size = page_size
        self._local = threading.local()

    def read_records(self, addresses: list[int], *, payload_only: bool = False,
                     verify_start: bool = False) -> list[bytes | None]:
        """Records at `addresses` (whole, or only their JSON text); None where
        no valid record starts. `verify_start`: the addresses come from a
        caller, not from a chain or a scan, so each is checked to be a
        record start (by hopping its page's headers up to it; shoal.h,
        shoal_read_job). Safe from any thread."""
        n = len(addresses)
        if n == 0:
            return []
        job, _addrs, offsets, lengths, status = self._read_job(addresses, payload_only, 0, verify_start)
        result: list[bytes | None] = []
        for start, end, out in self._read_calls(job):
            buf = ffi.buffer(out, job.used)
            offs = ffi.unpack(offsets + start, end - start)
            lens = ffi.unpack(lengths + start, end - start)
            sts = ffi.unpack(status + start, end - start)
            if not any(sts):  # the common case: every record read
                result.extend([buf[o:o + ln] for o, ln in zip(offs, lens)])
            else:
                for o, ln, st in zip(offs, lens, sts):
                    if st == 0:
                        result.append(buf[o:o + ln])
                    elif st == lib.SHOAL_E_IO:
                        raise NativeIOError(f"reading record at {addresses[len(result)]} failed")
                    else:
                        result.append(None)
        return result

    def read_record_objects(self, addresses: list[int]) -> list[Record]:
        """Records (address and JSON text) at `addresses`, skipping those
        where no live record starts (read_records' None), in order; each
        buffer full of them made in one call. Safe from any thread."""
        if not addresses:
            return []
        job, addrs, offsets, lengths, status = self._read_job(addresses, True, 0)
        result: list[Record] = []
        for start, end, out in self._read_calls(job):
            k = end - start
            buf = ffi.buffer(out, job.used)
            sts = ffi.unpack(status + start, k)
            if not any(sts):  # the common case: every record read, into a buffer the Records share
                data, self._local.buf = batch_data(out, job.used, self._local.cap)
                result += make_records(data, ffi.buffer(addrs + start, 8 * k), ffi.buffer(lengths + start, 4 * k),
                                       ffi.buffer(offsets + start, 8 * k), share=True)
                continue
            if lib.SHOAL_E_IO in sts:
                raise NativeIOError(f"reading record at {addresses[start + sts.index(lib.SHOAL_E_IO)]} failed")
            for i in range(start, end):
                if sts[i - start] == 0:
                    result.append(Record(addrs[i], buf[offsets[i]:offsets[i] + lengths[i]]))
        return result

    def _read_calls(self, job) -> Iterator[tuple[int, int, object]]:
        """Run shoal_read over the job's addresses, one call per buffer full:
        (first, end, buffer) per call, the indexes of the addresses it read and
        the thread's output buffer holding them (job.used bytes), valid until
        the next step."""
        need = 1 << 20
        while True:
            out, cap = self._read_buffer(need)  # read_batches may have taken the last one
            job.out = out
            job.cap = cap
            job.used = 0
            start = job.n_done
            rc = lib.shoal_read(job, self._log_c)
            if rc == lib.SHOAL_E_SPACE:  # one record larger than the buffer (and its separator)
                need = self.page_size + 1
                continue
            if rc < 0:
                check(rc, "read")
            yield start, job.n_done, out
            if rc != lib.SHOAL_OUT_FULL:
                return

    def _read_job(self, addresses: list[int], payload_only: bool, sep: int, verify_start: bool = False):
        """The calling thread's shoal_read job, set up for `addresses`.
        Per-thread arrays: the read methods never yield, so no two calls on
        one thread overlap."""
        n = len(addresses)
        local = self._local
        if getattr(local, "read_cap", 0) < n:
            local.read_cap = max(n, 256)
            local.job = ffi.new("shoal_read_job *")
            local.addrs = ffi.new("uint64_t[]", local.read_cap)
            local.offsets = ffi.new("uint64_t[]", local.read_cap)
            local.lengths = ffi.new("uint32_t[]", local.read_cap)
            local.status = ffi.new("int32_t[]", local.read_cap)
        job, addrs, offsets, lengths, status = local.job, local.addrs, local.offsets, local.lengths, local.status
        addrs[0:n] = addresses
        job.n_done = 0
        job.addrs = addrs
        job.n = n
        job.offsets = offsets
        job.lengths = lengths
        job.status = status
        job.payload_only = 1 if payload_only else 0
        job.sep = sep
        job.verify_start = 1 if verify_start else 0
        return job, addrs, offsets, lengths, status

    def read_batches(self, addresses: list[int]) -> list[RecordBatch]:
        """The JSON text of the records at `addresses` as RecordBatches (one
        per MiB or so), skipping addresses where no live record starts (as
        read_records' None), in order. Safe from any thread."""
        n = len(addresses)
        if n == 0:
            return []
        job, addrs, offsets, lengths, status = self._read_job(addresses, True, 10)
        result: list[RecordBatch] = []
        for start, end, out in self._read_calls(job):
            k = end - start
            local = self._local
            data, local.buf = batch_data(out, job.used, local.cap)
            offs = array_of("Q", ffi.buffer(offsets + start, 8 * k))
            lens = array_of("I", ffi.buffer(lengths + start, 4 * k))
            addr = array_of("Q", ffi.buffer(addrs + start, 8 * k))
            sts = ffi.unpack(status + start, k)
            if any(sts):  # rare: drop what was not read
                if lib.SHOAL_E_IO in sts:
                    bad = addresses[start + sts.index(lib.SHOAL_E_IO)]
                    raise NativeIOError(f"reading record at {bad} failed")
                keep = [i for i, st in enumerate(sts) if st == 0]
                offs = array("Q", [offs[i] for i in keep])
                lens = array("I", [lens[i] for i in keep])
                addr = array("Q", [addr[i] for i in keep])
            if addr:
                result.append(RecordBatch(data, addr, offs, lens))
        return result

    def _read_buffer(self, at_least: int):
        """A per-thread output buffer for record reads, reused across calls."""
        local = self._local
        buf = getattr(local, "buf", None)
        if buf is None or local.cap < at_least:
            local.cap = max(at_least, 1 << 20)
            local.buf = buf = out_buffer(local.cap)
        return buf, local.cap
