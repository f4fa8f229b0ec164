"""Hybrid log edge cases: page boundaries, eviction, flush and reopen."""
from __future__ import annotations

import time

import orjson
import pytest

import shoal

PAGE = 4096


def _record(n_bytes: int, i: int) -> bytes:
    """A JSON object of exactly n_bytes."""
    head = b'{"i":%d,"pad":"' % i
    return head + b"x" * (n_bytes - len(head) - 2) + b'"}'


@pytest.mark.parametrize("budget_pages", [2, 3, 8])
def test_records_that_end_exactly_at_a_page_end(tmp_path, budget_pages):
    # Without PSFs a record takes 32 header bytes + its padded text; page 0
    # starts at address 64, later pages at 0.
    cfg = dict(page_size_bytes=PAGE, memory_budget_bytes=budget_pages * PAGE, segment_size_bytes=2 * PAGE)
    first = _record(PAGE - 64 - 32, 0)          # fills page 0 exactly
    full = [_record(PAGE - 32, i) for i in range(1, 7)]  # each fills a page exactly
    tail = [_record(100, i) for i in range(7, 12)]
    records = [first, *full, *tail]
    with shoal.open(tmp_path, **cfg) as st:
        for r in records:          # one call per record: the tail lands on page starts
            assert st.ingest(r + b"\n").ingested == 1
        got = [rec.raw for rec in st.scan("i", order="oldest")]
        assert got == records
        st.flush()
    with shoal.open(tmp_path, **cfg) as st:
        assert [rec.raw for rec in st.scan("i", order="oldest")] == records
        st.ingest(_record(50, 99) + b"\n")
        assert [orjson.loads(r.raw)["i"] for r in st.scan("i", order="oldest")] == list(range(12)) + [99]


def test_memory_stays_within_the_frame_budget(tmp_path):
    cfg = dict(page_size_bytes=PAGE, memory_budget_bytes=4 * PAGE, segment_size_bytes=4 * PAGE)
    lines = b"".join(_record(300, i) + b"\n" for i in range(2000))
    with shoal.open(tmp_path, **cfg) as st:
        st.register_psf("i", "i")
        st.ingest(lines)
        s = st.stats()
        assert s["memory_bytes"] <= 4 * PAGE
        assert st.head_address > st.begin_address  # most of the log is on disk
        assert [r.json()["i"] for r in st.query("i", 7)] == [7]
        assert [r.json()["i"] for r in st.query("i", 1999)] == [1999]


def test_read_record_objects_agrees_with_read_records(tmp_path):
    # Records over many pages (most on disk), read back in one list with
    # addresses where no record starts mixed in: the Records are read_records'
    # texts with the Nones dropped, in order, across several buffer fills.
    cfg = dict(page_size_bytes=PAGE, memory_budget_bytes=3 * PAGE, segment_size_bytes=2 * PAGE)
    records = [_record(200 + (i * 37) % 900, i) for i in range(3000)]
    with shoal.open(tmp_path, **cfg) as st:
        res = st.ingest(b"\n".join(records))
        assert res.ingested == len(records)
        addrs = [r.address for r in st.scan("i", order="oldest")]
        log = st._log
        mixed = []
        for k, a in enumerate(addrs):
            mixed.append(a)
            if k % 97 == 0:
                mixed.append(a + 8)  # inside a record: no header there
        raws = log.read_records(mixed, payload_only=True)
        assert raws.count(None) == len(mixed) - len(addrs)
        got = log.read_record_objects(mixed)
        assert [(r.address, r.raw) for r in got] == list(zip(addrs, records))
        assert log.read_record_objects(addrs) == [shoal.Record(a, r) for a, r in zip(addrs, records)]
        assert log.read_record_objects([]) == []


def test_frames_are_prepared_ahead_of_the_writer(tmp_path):
    """After a page turn a thread makes and populates the frames of the next
    pages (HybridLog._prepare), within the budget: the writer finds them
    made; what it writes reads back; close stops the thread."""
    from shoal.store.hlog import PREPARE_AHEAD
    budget = 32
    cfg = dict(page_size_bytes=PAGE, memory_budget_bytes=budget * PAGE, segment_size_bytes=64 * PAGE)
    records = [_record(1000, i) for i in range(12)]  # three pages' worth
    with shoal.open(tmp_path, **cfg) as st:
        st.ingest(b"\n".join(records))
        log = st._log
        pages = (st.tail_address >> log.page_bits) + 1
        deadline = time.monotonic() + 10
        while log.frames_in_use() < min(budget, pages + PREPARE_AHEAD) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.frames_in_use() == min(budget, pages + PREPARE_AHEAD)  # made ahead, no more
        assert st.stats()["memory_bytes"] <= budget * PAGE
        more = [_record(1000, i) for i in range(12, 200)]  # through every frame and round again
        st.ingest(b"\n".join(more))
        assert log.frames_in_use() == budget
        assert [r.raw for r in st.scan("i", order="oldest")] == records + more
        preparer = log._preparer
    assert preparer is not None and not preparer.is_alive()
