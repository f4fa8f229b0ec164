"""The record format, as Python sees it: the one Python module that knows it.

Layout (shoal.h, `shoal_record_header` and `shoal_key_pointer`):

    header (32 B) | key pointers (24 B each) | values area (pad 8) | payload (pad 8)

header: crc32c u32 | magic u16 | version u8 | flags u8 | size u32 |
        payload_bytes u32 | n_kps u16 | reserved u16 | values_bytes u32 | aux u64
key pointer: prev|psf_id u64 | value_off u32 | value_len u32 | kp_index u16 |
        value_kind u8 | reserved u8 | hash32 u32

The CRC32C covers bytes [4, end of payload), so a torn or flipped record fails
verification. The payload is the record's JSON text exactly as ingested. aux
is the record's tag, a keyed hash of its own address (0 in records written
before tags), which tells a record start from bytes that only look like one
(hlog.py, read_records(verify_start=True)).
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from typing import Any

from .._native import ffi, lib

HEADER_BYTES: int = lib.SHOAL_HEADER_BYTES
KP_BYTES: int = lib.SHOAL_KP_BYTES
_HEADER = struct.Struct("<IHBBIIHHIQ")
_KP = struct.Struct("<QIIHBBI")
assert _HEADER.size == HEADER_BYTES == ffi.sizeof("shoal_record_header")
assert _KP.size == KP_BYTES == ffi.sizeof("shoal_key_pointer")
_ADDR_MASK = (1 << lib.SHOAL_ADDRESS_BITS) - 1
_MAGIC: int = lib.SHOAL_RECORD_MAGIC
_TOMBSTONE: int = lib.SHOAL_RF_TOMBSTONE


def _pad8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class KeyPointer:
    psf_id: int
    prev_address: int
    value: bytes  # canonical value bytes


def payload_of(record: bytes | memoryview, offset: int = 0) -> bytes:
    """The JSON text of the record starting at `offset` in `record`."""
    _, _, _, _, _, payload_bytes, n_kps, _, values_bytes, _ = _HEADER.unpack_from(record, offset)
    start = offset + HEADER_BYTES + n_kps * KP_BYTES + _pad8(values_bytes)
    return bytes(record[start:start + payload_bytes])


def record_size(record: bytes | memoryview, offset: int = 0) -> int:
    return _HEADER.unpack_from(record, offset)[4]


def record_addresses(page: bytes | memoryview, base: int, valid: int, start: int, *,
                     tombstones: bool = True) -> tuple[list[int], int | None]:
    """The addresses of the records in a copy of one page (log addresses
    [base, base + valid)), from `start` (a record boundary) to the page's end
    (a zero header, or too few bytes left for one), and the address of a
    header that does not parse (None when the page ended cleanly). Headers
    are checked (magic, size bounds), not checksums."""
    out: list[int] = []
    unpack = _HEADER.unpack_from
    end = valid
    pos = start - base
    while pos + HEADER_BYTES <= end:
        _crc, magic, _version, flags, size, *_ = unpack(page, pos)
        if magic == 0 and size == 0:
            break
        if magic != _MAGIC or size < HEADER_BYTES or size & 7 or pos + size > end:
            return out, base + pos
        if tombstones or not flags & _TOMBSTONE:
            out.append(base + pos)
        pos += size
    return out, None


def key_pointers(record: bytes | memoryview, offset: int = 0) -> list[KeyPointer]:
    """Decode a record's key pointers (for stats, tests and tools)."""
    n_kps = _HEADER.unpack_from(record, offset)[6]
    out = []
    for k in range(n_kps):
        prev_psf, voff, vlen, _idx, kind, _r, _h = _KP.unpack_from(record, offset + HEADER_BYTES + k * KP_BYTES)
        raw = bytes(record[offset + voff: offset + voff + vlen])
        value = b"s" + raw if kind == lib.SHOAL_KP_SPAN else raw
        out.append(KeyPointer(prev_psf >> 48, prev_psf & _ADDR_MASK, value))
    return out


_UNCLEARED = ffi.new_allocator(should_clear_after_alloc=False)


def out_buffer(cap: int) -> Any:
    """A native output buffer of `cap` bytes, not cleared (the native reads
    write what they report as used)."""
    return _UNCLEARED("char[]", cap)


def batch_data(out: Any, used: int, cap: int) -> tuple[Any, Any]:
    """What a RecordBatch keeps of `used` bytes in output buffer `out`, and
    the buffer to fill next. A buffer at least a quarter full goes to the
    batch as it is (no copy) and a new one takes its place; one less full
    is not worth pinning (the end of an answer, a batch of small records),
    so its bytes are copied."""
    if 4 * used >= cap:
        return ffi.buffer(out, used), out_buffer(cap)
    return ffi.buffer(out, used)[:], out


def array_of(code: str, buffer: Any) -> array:
    """A new array of typecode `code` holding a copy of `buffer`'s bytes."""
    out = array(code)
    out.frombytes(buffer)
    return out
