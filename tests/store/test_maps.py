"""Reads through read-only maps of the segment files (StoreConfig.map_segments).

Answers with maps equal the oracle and the pread path's; a map publishes
only pages the flusher has written; a segment file cut short under a map
reads as an I/O error, not a crash; compaction unmaps what it deletes once
readers have left.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from oracle import Log, as_pairs, sample_values

import shoal
from shoal.engine import compaction as C

PSFS = {"path": "_path", "proto": "proto", "resp_p": '"id.resp_p"', "dns": "_path == 'dns'"}


def _load(open_store, raws, **config):
    store = open_store(**config)
    for name, definition in PSFS.items():
        store.register_psf(name, definition)
    assert store.ingest(b"\n".join(raws)).rejected == 0
    return store


def _published(store) -> dict[int, int]:
    """segment -> bytes of it published to C as readable through its map."""
    c = store._log.c
    return {seg: c.segment_map_bytes[seg] for seg in store._log.segments.mapped()}


def _mapped_paths() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6]


@pytest.fixture(scope="module")
def zeek(generated):
    return generated("zeek_logs", 12_000)


def test_maps_and_pread_answer_alike_and_as_the_oracle(open_store, store_path, zeek):
    store = _load(open_store, zeek)
    store.close()
    log = Log(zeek)
    answers = {}
    for mapped in (True, False):
        store = open_store(map_segments=mapped)
        log.bind(store)
        assert bool(store._log.segments.mapped()) is mapped
        assert store.head_address > store.tail_address // 2  # most reads go below head
        got = []
        for psf, definition in PSFS.items():
            for value in sample_values(log.value_counts(definition), 4) + [True]:
                for order in ("newest", "oldest"):
                    pairs = as_pairs(store.query(psf, value, order=order))
                    assert pairs == log.query(definition, value, order=order), (psf, value, mapped)
                    batches = as_pairs(r for b in store.query_batches([(psf, value)], order=order) for r in b)
                    assert batches == pairs
                    got.append(pairs)
        scanned = as_pairs(store.scan('"id.resp_p" > `1024`'))
        assert scanned == log.scan('"id.resp_p" > `1024`')
        answers[mapped] = got
        store.close()
    assert answers[True] == answers[False]


def test_a_map_publishes_only_written_pages(open_store, zeek):
    store = _load(open_store, zeek[: len(zeek) // 2])
    for _ in range(3):  # while ingest runs on: published <= flushed, in whole pages
        store.ingest(b"\n".join(zeek[len(zeek) // 2:][:2000]))
        seg_bytes = store.config.segment_size_bytes
        flushed_before = store._log.flushed_until_address  # the flusher runs on: it only grows
        published = _published(store)
        flushed_after = store._log.flushed_until_address
        assert published, "the flusher maps what it writes"
        for seg, n in published.items():
            start = seg * seg_bytes
            assert n % store.config.page_size_bytes == 0 and 0 <= n <= seg_bytes
            assert start + n <= flushed_after
            # the flusher publishes a page before it writes the next one
            if start + seg_bytes <= flushed_before - store.config.page_size_bytes:
                assert n == seg_bytes, "a segment behind the flushed address is published whole"


def test_maps_off_reads_with_pread(open_store, zeek):
    store = _load(open_store, zeek, map_segments=False)
    assert store._log.segments.mapped() == [] and _published(store) == {}
    assert not any(p.endswith(".log") and "segment-" in p for p in _mapped_paths())


@pytest.mark.parametrize("faulthandler_after", [False, True])
def test_a_segment_cut_short_under_its_map_reads_as_an_io_error(tmp_path, generated, faulthandler_after):
    """Truncating a mapped file makes its pages fault (SIGBUS): the read that
    meets one reports an I/O error and the process lives on (a child process,
    so a crash fails this test instead of ending the run). Also when Python's
    faulthandler was enabled after the store mapped its segments, so that its
    handler meets the fault first (it dumps the stack, then hands over)."""
    script = textwrap.dedent("""
        import faulthandler, os, sys
        import shoal
        path, data = sys.argv[1], sys.argv[2]
        raws = open(data, "rb").read()
        cfg = dict(page_size_bytes=16384, memory_budget_bytes=65536, segment_size_bytes=65536)
        store = shoal.open(path, **cfg)
        store.register_psf("path", "_path")
        store.ingest(raws)
        store.close()
        store = shoal.open(path, **cfg)
        oldest = list(store.query("path", "dns", order="oldest", limit=3))
        assert oldest, "records to read"
        seg = oldest[0].address >> 16  # 64 KiB segments
        assert seg in store._log.segments.mapped() and seg < store.tail_address >> 16
        if sys.argv[3] == "1":
            faulthandler.enable()
        os.truncate(os.path.join(path, "log", "segment-%06d.log" % seg), 0)
        try:
            list(store.query("path", "dns", order="oldest"))
        except shoal.NativeIOError as exc:
            print("io error:", exc)
        # the rest of the log still reads
        tail = list(store.query("path", "dns", limit=2))
        print("after:", len(tail))
        store.close()
    """)
    data = tmp_path / "zeek.ndjson"
    data.write_bytes(b"\n".join(generated("zeek_logs", 3000)) + b"\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store"), str(data),
                           "1" if faulthandler_after else "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "io error:" in proc.stdout and "I/O" in proc.stdout, proc.stdout
    assert "after: 2" in proc.stdout


def test_compaction_unmaps_deleted_segments_once_no_reader_is_inside(open_store, zeek, monkeypatch):
    store = _load(open_store, zeek)
    monkeypatch.setattr(C, "_RETIRE_WAIT_S", 0.01)
    log = Log(zeek)
    log.bind(store)
    before = set(store._log.segments.mapped())
    addresses = sorted(r.address for r in store.scan("_path"))
    with store._gate:  # a reader inside a native call could still be copying from the maps
        r = store.compact(addresses[len(addresses) // 2])
        assert r.segments_deleted
        gone = before - set(store._log.segments.mapped())
        assert len(gone) == r.segments_deleted
        assert all(store._log.c.segment_maps[s] == shoal._native.ffi.NULL for s in gone)  # unpublished
        deleted = [p for p in _mapped_paths() if p.endswith(".log (deleted)")]
        assert len(deleted) >= r.segments_deleted  # still mapped
    r2 = store.compact(addresses[len(addresses) // 2 + 2000])  # retires what the first left, and its own
    assert r2.segments_deleted
    assert not any(p.endswith(".log (deleted)") for p in _mapped_paths())
    cut = store.begin_address
    for value in sample_values(log.value_counts("_path"), 3):
        assert as_pairs(store.query("path", value)) == log.query("_path", value, from_address=cut)


@pytest.mark.parametrize("cache", [True, False])
def test_written_pages_are_read_back_into_the_page_cache(open_store, zeek, monkeypatch, cache):
    """StoreConfig.cache_written_pages: every range the flusher writes with
    O_DIRECT is handed to the kernel to read back (POSIX_FADV_WILLNEED on
    the read descriptor), so the first query over pages that left memory
    finds them cached; without it, none is."""
    from shoal.store import segments

    asked: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        if advice == os.POSIX_FADV_WILLNEED:
            asked.append((fd, offset, length))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(segments.os, "posix_fadvise", spy)
    store = _load(open_store, zeek, cache_written_pages=cache)
    if not store._log.segments.direct:
        pytest.skip("this file system takes no O_DIRECT writes: they go through the page cache anyway")
    store.flush()  # every page written
    if not cache:
        assert asked == []
        return
    # The ranges asked for cover every page written, once (the tail page's
    # last blocks may be written, and asked for, twice).
    page = store._log.page_size
    covered = sum(length for _, _, length in asked)
    assert (store.tail_address // page) * page <= covered <= store.tail_address + 2 * page
    assert store.tail_address > 4 * page  # the data did leave memory: the test means something
