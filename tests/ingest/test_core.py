"""The ingest core's counters (ingest/core.py): ingest calls are counted as
users made them; compaction's copies add records but are not ingest calls."""
from __future__ import annotations

import json
import random

import orjson

import shoal


def test_counters_count_each_call_and_its_records(tmp_path):
    rng = random.Random(3)
    calls = []
    for _ in range(7):
        lines = [orjson.dumps({"i": rng.randrange(10**6), "s": "x" * rng.randrange(50)}) for _ in range(rng.randrange(1, 200))]
        bad = rng.randrange(0, 4)
        lines += [b'{"broken": '] * bad
        rng.shuffle(lines)
        calls.append((b"\n".join(lines) + b"\n", len(lines) - bad, bad))
    with shoal.open(tmp_path / "s") as store:
        results = [store.ingest(data) for data, _, _ in calls]
        got = store.stats()
        assert [(r.ingested, r.rejected) for r in results] == [(ok, bad) for _, ok, bad in calls]
        commit_seconds = got["ingest"].pop("commit_seconds")
        assert got["ingest"] == {"calls": len(calls), "records": sum(ok for _, ok, _ in calls),
                                 "rejected": sum(bad for _, _, bad in calls),
                                 "bytes": sum(r.input_bytes for r in results)}
        assert 0 < commit_seconds < 60
        assert got["records"] == sum(ok for _, ok, _ in calls) == sum(1 for _ in store.scan("@"))


def test_compaction_copies_are_records_not_ingest_calls(tmp_path):
    with shoal.open(tmp_path / "s", key="id", page_size_bytes=1 << 16, segment_size_bytes=1 << 18) as store:
        # k1000..k1999 keep their first (old) version: compaction copies them.
        rows = [{"id": f"k{i % 2000}", "v": i, "pad": "p" * 200} for i in range(3000)]
        for k in range(0, len(rows), 500):
            store.ingest(b"\n".join(json.dumps(r).encode() for r in rows[k:k + 500]))
        before = store.stats()
        r = store.compact(store.read_only_address)
        after = store.stats()
        assert r.records_copied > 0
        assert after["ingest"] == before["ingest"]  # copies are not ingest calls
        assert after["records"] == before["records"] - r.records_dropped
        live = {row["id"]: row for row in rows}
        assert sorted((rec.json()["id"], rec.json()["v"]) for rec in store.scan("@")) == \
            sorted((k, v["v"]) for k, v in live.items())
