"""Retention: by bytes and by age in the background (what stays equals the
oracle over the newest records), the age cut page by page, timestamp
parsing, and the policy's settings checked at open."""
from __future__ import annotations

import json
import time

import pytest
from oracle import ALL, Log
from test_compaction import _check, _ingest, _page_floor, _register

import shoal
from shoal.engine import retention as R


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_retention_by_bytes_in_the_background(open_store, generated):
    raws = generated("zeek_logs", 12_000)
    store = open_store(retain_bytes=200_000, compaction_interval_seconds=0.02)
    _register(store)
    page = store.config.page_size_bytes
    for k in range(0, len(raws), 1000):
        store.ingest(b"\n".join(raws[k:k + 1000]))
    # A run moves the begin address first; the files below it are deleted
    # after, and their blocks freed when the last reader's descriptor closes
    # (engine/compaction.py, _retire): wait for both (a stats() between sees them).
    _wait(lambda: store.stats()["log_bytes"] < 200_000 + 2 * page
          and store.stats()["disk_bytes"] < 200_000 + 2 * store.config.segment_size_bytes)
    st = store.stats()
    assert st["compaction"]["runs"] >= 1 and st["compaction"]["errors"] == 0
    assert st["compaction"]["last"]["trigger"] == "retain_bytes" and st["compaction"]["policy"]["background"]
    log = Log(raws)
    log.bind(store, check=False)  # the records still there are the newest ones, in order
    assert log.raws[-len(log.addresses):] == [r.raw for r in store.scan(ALL, order="oldest")]
    kept = Log(raws[len(raws) - len(log.addresses):])
    kept.bind(store)
    _check(store, kept)


def test_retention_by_age_in_the_background(open_store):
    now = time.time()
    recs = []
    for i in range(3000):
        t = now - 3000 + i  # one record a second, the oldest 50 minutes ago
        ts = [t, t * 1000, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"][i % 3]
        recs.append(json.dumps({"ts": ts, "i": i, "pad": "y" * 150}).encode())
    recs.insert(2, b'{"i": -1, "no_ts": true}')  # no timestamp: counts as new, keeps its page
    store = open_store(retain_seconds=1200, timestamp_expression="ts", compaction_interval_seconds=0.02)
    _ingest(store, recs[:3])
    time.sleep(0.1)
    assert store.begin_address == 64, "a page with an unreadable timestamp is kept"
    store.close()
    store = open_store(retain_seconds=1200, timestamp_expression="ts", compaction_interval_seconds=0.02)
    _ingest(store, recs[3:])
    # ... until retention by bytes or a manual compaction drops it
    store.compact(_page_floor(store, store.tail_address // 8) + store.config.page_size_bytes)
    _wait(lambda: store.stats()["compaction"]["runs"] >= 2)
    time.sleep(0.1)
    st = store.stats()["compaction"]
    assert st["errors"] == 0 and st["last"]["trigger"] == "retain_seconds", st
    kept = [r.json()["i"] for r in store.scan(ALL, order="oldest")]
    # Records 1800.. are younger than 1200 s; whole pages older than that went.
    per_page = store.config.page_size_bytes // 200
    assert 1800 - per_page < kept[0] <= 1800 and kept == list(range(kept[0], 3000))
    assert next(iter(store.scan(ALL, order="oldest"))).address == store.begin_address


def test_age_cut_picks_the_first_page_with_a_new_record(open_store):
    now = 1_700_000_000
    recs = [json.dumps({"ts": now + i, "pad": "z" * 300}).encode() for i in range(400)]
    store = open_store()
    _ingest(store, recs)
    addrs = [r.address for r in store.scan(ALL, order="oldest")]
    policy = store._compactor.retention
    policy._timestamp = shoal.psf.parse_definition("ts")
    for i in (0, 37, 150, 399):
        assert policy.age_cut(now + i) == max(64, _page_floor(store, addrs[i]))
    assert policy.age_cut(now + 10**6) == store.read_only_address


def test_timestamps():
    t = R.timestamp_seconds
    assert t(1_700_000_000) == 1_700_000_000 and t(1_700_000_000.5) == 1_700_000_000.5
    assert t(1_700_000_000_123) == pytest.approx(1_700_000_000.123)
    assert t("2023-11-14T22:13:20Z") == 1_700_000_000 and t("2023-11-14T23:13:20+01:00") == 1_700_000_000
    assert t("2023-11-14T22:13:20") == 1_700_000_000  # no zone: UTC
    assert t("2023-11-14") == 1_699_920_000
    for bad in (None, True, "yesterday", [1], {"a": 1}, float("nan")):
        assert t(bad) is None


def test_retention_config_is_validated(tmp_path):
    for kw in [{"retain_bytes": 0}, {"retain_bytes": -1}, {"retain_bytes": 1.5}, {"retain_bytes": True},
               {"retain_seconds": 10}, {"retain_seconds": -1, "timestamp_expression": "ts"},
               {"retain_seconds": float("nan"), "timestamp_expression": "ts"}, {"timestamp_expression": ""},
               {"compaction_interval_seconds": 0}]:
        with pytest.raises(shoal.InvalidArgument):
            shoal.StoreConfig(**kw)
    with pytest.raises(shoal.InvalidArgument, match="timestamp_expression"):
        shoal.open(tmp_path / "s", retain_seconds=5, timestamp_expression="a.[")
    shoal.open(tmp_path / "s").close()  # the failed open let go of the directory
