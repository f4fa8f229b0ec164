"""Logical addresses into the hybrid log.

An address is 48 bits: the high bits number a page, the low `page_bits` bits
are the byte offset inside it (FASTER's layout, with the split set by the
store's page size). Address 0 means "none"; the log begins at FIRST_ADDRESS.
Records are 8-byte aligned and never straddle a page.

Regions, oldest to newest (invariant: begin <= head <= read_only <= tail):
    [begin, head)       on disk only (segment files)
    [head, read_only)   sealed pages still in memory (being or already flushed)
    [read_only, tail)   the tail page, being appended to
"""
from __future__ import annotations

from .._native import lib

ADDRESS_BITS: int = lib.SHOAL_ADDRESS_BITS
MAX_ADDRESS: int = (1 << ADDRESS_BITS) - 1
FIRST_ADDRESS: int = lib.SHOAL_FIRST_ADDRESS


def page_of(address: int, page_bits: int) -> int:
    return address >> page_bits


def page_start(page: int, page_bits: int) -> int:
    return page << page_bits


def offset_of(address: int, page_bits: int) -> int:
    return address & ((1 << page_bits) - 1)
