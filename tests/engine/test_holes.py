"""Compaction frees disk at page granularity: the blocks below the new
begin in the segment file holding it are punched out (a hole), so a store
compacted to its newest tenth takes about a tenth of its disk, even when
all of its log is one segment file. Checked against the records the store
still answers (oracle: the records above the cut), after a reopen, after a
compaction whose hole a crash left unpunched, and on a keyed store, whose
live records are copied to the tail.
"""
from __future__ import annotations

import errno
import random

import orjson
import pytest
from oracle import ALL, Log, as_pairs

import shoal
from shoal.store import segments as S
from shoal.store.segments import segment_bytes

KiB = 1024
# One big segment file, small pages: whole-file deletion alone frees nothing.
BIG_SEGMENT = shoal.StoreConfig(page_size_bytes=64 * KiB, memory_budget_bytes=8 * 64 * KiB,
                                segment_size_bytes=64 << 20, batch_bytes=64 * KiB)


def _filled(open_store, raws):
    """A store of one big segment holding raws, flushed, and its oracle."""
    store = open_store(config=BIG_SEGMENT)
    store.ingest(b"\n".join(raws))
    store.flush()
    log = Log(raws)
    log.bind(store)
    return store, log


def _above(log: Log, begin: int) -> list[tuple[int, bytes]]:
    return [(a, r) for a, r in zip(log.addresses, log.raws) if a >= begin]


@pytest.mark.parametrize("source", ["generated", "real"])
def test_compacting_to_a_tenth_leaves_a_tenth_on_disk(open_store, records, source, store_path):
    raws = list(records(source, "zeek_logs", 12000))
    store = open_store(config=BIG_SEGMENT)
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws))
    store.flush()
    log = Log(raws)
    log.bind(store)
    disk = store.stats()["disk_bytes"]
    r = store.compact(retain_bytes=store.stats()["log_bytes"] // 10)
    assert r.segments_deleted == 0 and r.disk_bytes_before == disk
    assert r.disk_bytes_after <= 0.15 * disk, (r.disk_bytes_after, disk)
    assert r.bytes_reclaimed == disk - r.disk_bytes_after == disk - store.stats()["disk_bytes"]
    kept = _above(log, r.begin_after)
    assert as_pairs(store.scan(ALL, order="oldest")) == kept
    dns = [(a, raw) for a, raw in kept if orjson.loads(raw)["_path"] == "dns"]
    assert as_pairs(store.query("path", "dns", order="oldest")) == dns
    store.close()
    store = open_store(config=BIG_SEGMENT)
    assert store.stats()["disk_bytes"] == r.disk_bytes_after
    assert as_pairs(store.scan(ALL, order="oldest")) == kept
    assert as_pairs(store.query("path", "dns", order="oldest")) == dns
    store.ingest(b"\n".join(raws[:500]))  # the file it punched goes on growing
    assert store.stats()["records"] == len(kept) + 500


def test_a_hole_a_crash_left_unpunched_is_punched_at_open(open_store, generated, monkeypatch):
    raws = list(generated("zeek_logs", 8000))
    store, log = _filled(open_store, raws)
    with monkeypatch.context() as m:  # the process dies before its hole is punched
        m.setattr(S.SegmentFiles, "punch_below", lambda self, address: 0)
        r = store.compact(retain_bytes=store.stats()["log_bytes"] // 5)
        assert r.bytes_reclaimed == 0
        store.close()
    full = segment_bytes(store.path / "log")
    store = open_store(config=BIG_SEGMENT)
    assert store.stats()["disk_bytes"] < 0.3 * full
    assert as_pairs(store.scan(ALL, order="oldest")) == _above(log, r.begin_after)


def test_no_hole_where_the_file_system_cannot_punch(open_store, generated, monkeypatch, caplog):
    class NoHoles:
        def __getattr__(self, name):
            return getattr(S.lib, name)

        @staticmethod
        def shoal_punch_hole(fd, offset, length):
            return -errno.EOPNOTSUPP

    raws = list(generated("zeek_logs", 4000))
    store, log = _filled(open_store, raws)
    monkeypatch.setattr(S, "lib", NoHoles())
    r = store.compact(retain_bytes=store.stats()["log_bytes"] // 2)
    assert r.bytes_reclaimed == 0 and r.disk_bytes_after == r.disk_bytes_before
    assert "cannot punch holes" in caplog.text
    assert as_pairs(store.scan(ALL, order="oldest")) == _above(log, r.begin_after)


def test_keyed_compaction_leaves_less_disk(open_store):
    """The case that grew before holes: a keyed store, a third of its keys
    updated and a tenth deleted, compacted below the updates: its live
    records are copied to the tail and the blocks below the cut freed."""
    rng = random.Random(3)
    store = open_store(config=BIG_SEGMENT, key="id")
    store.register_psf("color", "color")
    n = 6000
    live = {i: {"id": i, "color": rng.choice("rgb"), "pad": "x" * rng.randrange(200, 600)} for i in range(n)}
    store.ingest(b"\n".join(orjson.dumps(o) for o in live.values()))
    for i in rng.sample(range(n), n // 3):
        live[i] = dict(live[i], color=rng.choice("rgb"), v=2)
        store.ingest(orjson.dumps(live[i]))
    for i in rng.sample(range(n), n // 10):
        store.delete_key(i)
        live.pop(i)
    store.flush()
    before = store.stats()["disk_bytes"]
    r = store.compact(until_address=store.tail_address)
    store.checkpoint()
    assert 0.9 * len(live) < r.records_copied <= len(live)  # all but those in the tail page
    assert store.stats()["disk_bytes"] < before, (store.stats()["disk_bytes"], before)
    got = {orjson.loads(rec.raw)["id"]: orjson.loads(rec.raw) for rec in store.scan(ALL)}
    assert got == live
    for color in "rgb":
        assert store.count("color", color) == sum(1 for o in live.values() if o["color"] == color)
