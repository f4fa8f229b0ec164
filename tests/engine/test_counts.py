"""Counts and top values (Store.count, count_all, count_any, group_count)
against the oracle (orjson + jmespath over the same records): over the whole
log and windows of it, for PSFs registered before and after the records,
after a restart (from a checkpoint, from the log alone, from a checkpoint
written before tallies), after compaction, past the tally's bounds, and on a
keyed store.

Stores have 16 KiB pages and a four-page budget: most of each log is on disk.
"""
from __future__ import annotations

import json
import math
import random

import pytest
from oracle import Log, python_value, sample_values, value_key

import shoal
from shoal.store.checkpoint import crc32c

GITHUB = {"type": "type", "repo": "repo.name", "actor": "actor.login", "size": "payload.size",
          "public": "public", "push": "type == 'PushEvent'"}
ZEEK = {"path": "_path", "proto": "proto", "resp_p": '"id.resp_p"', "rtt": "rtt", "qtype": "qtype_name"}
CASES = {
    "github-generated": ("generated", "github_events", 3000, GITHUB),
    "github-real": ("real", "github_events", None, GITHUB),
    "zeek-generated": ("generated", "zeek_logs", 3000, ZEEK),
    "zeek-real": ("real", "zeek_logs", 6000, ZEEK),
}


def _load(records, case):
    source, kind, n, psfs = CASES[case]
    return records(source, kind, n or 10**9), psfs


def _norm(value):
    """A value as compared here: numbers as floats unless integral (the
    store hands non-integral numbers back as float)."""
    k = value_key(value)
    return python_value(k) if k is not None else None


def _expected_groups(log: Log, definition, lo=0, hi=None) -> dict:
    out: dict = {}
    for addr, k in zip(log.addresses, log.values(definition)):
        if k is not None and lo <= addr and (hi is None or addr < hi):
            v = python_value(k)
            out[v] = out.get(v, 0) + 1
    return out


def _got_groups(pairs) -> dict:
    out: dict = {}
    for v, n in pairs:
        assert n > 0
        out[_norm(v)] = out.get(_norm(v), 0) + n
    return out


def _check_counts(store, log: Log, psfs: dict, *, windows: int = 2, seed: int = 1) -> None:
    rng = random.Random(seed)
    tail = store.tail_address
    spans = [(None, None)] + [tuple(sorted(rng.sample(log.addresses, 2))) for _ in range(windows)]
    for name, definition in psfs.items():
        for lo, hi in spans:
            want = _expected_groups(log, definition, lo or 0, hi)
            got = store.group_count(name, from_address=lo, to_address=hi)
            assert _got_groups(got) == want, (name, lo, hi)
            counts = [n for _, n in got]
            assert counts == sorted(counts, reverse=True)
            top = store.group_count(name, limit=3, from_address=lo, to_address=hi)
            assert top == got[:3]
        counts = log.value_counts(definition)
        for value in sample_values(counts) + ["no such value", 123456789]:
            for lo, hi in spans:
                want = len(log.query(definition, value, from_address=lo, to_address=hi))
                got = store.count(name, value, from_address=lo, to_address=hi)
                assert got == want, (name, value, lo, hi)
                assert got == sum(1 for _ in store.query(name, value, from_address=lo, to_address=hi))
    names = list(psfs)
    a, b = names[0], names[1]
    va = sample_values(log.value_counts(psfs[a]), 1)[0]
    vb = sample_values(log.value_counts(psfs[b]), 1)[0]
    conds = [(a, va), (b, vb)]
    oracle_conds = [(psfs[a], va), (psfs[b], vb)]
    assert store.count_all(conds) == len(log.query_all(oracle_conds))
    assert store.count_any(conds) == len(log.query_any(oracle_conds))
    assert store.tail_address == tail  # counting appends nothing


@pytest.mark.parametrize("case", list(CASES))
def test_counts_and_top_values_match_the_oracle(open_store, records, case):
    raws, psfs = _load(records, case)
    store = open_store()
    for name, definition in psfs.items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    _check_counts(store, log, psfs)


def test_a_psf_registered_midway_counts_the_records_before_it(open_store, generated):
    raws = generated("github_events", 2000)
    store = open_store()
    store.register_psf("type", "type")
    store.ingest(b"\n".join(raws[:1200]))
    store.register_psf("repo", "repo.name")  # the first 1,200 records are scanned for it
    store.deregister_psf("type")
    store.ingest(b"\n".join(raws[1200:1600]))
    store.register_psf("type", "type")  # resumes: [1200, 1600) is scanned
    store.ingest(b"\n".join(raws[1600:]))
    log = Log(raws)
    log.bind(store)
    _check_counts(store, log, {"type": "type", "repo": "repo.name"})


@pytest.mark.parametrize("how", ["checkpoint", "log only", "checkpoint before tallies"])
def test_counts_survive_a_restart(open_store, generated, store_path, how):
    raws = generated("github_events", 2000)
    store = open_store()
    for name, definition in GITHUB.items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws[:1000]))
    if how != "log only":
        store.checkpoint()
    store.ingest(b"\n".join(raws[1000:]))  # replayed at the reopen
    store.close()
    if how == "checkpoint before tallies":
        ckpt = store_path / "checkpoints"
        meta_path = ckpt / "ckpt-000001.json"
        meta = json.loads(meta_path.read_bytes())
        meta.pop("meta_crc32c")
        for k in ("tally_file", "tally_bytes", "tally_crc32c"):
            meta.pop(k)
        (ckpt / "ckpt-000001.tally").unlink()
        meta["meta_crc32c"] = crc32c(json.dumps(meta, sort_keys=True).encode())
        meta_path.write_text(json.dumps(meta, sort_keys=True))
    store = open_store()
    assert store.recovery.checkpoint_id == (None if how == "log only" else 1)
    log = Log(raws)
    log.bind(store)
    _check_counts(store, log, GITHUB, windows=1)


@pytest.mark.parametrize("checkpoint_after", [False, True])
def test_counts_after_compaction_and_a_restart(open_store, generated, checkpoint_after):
    raws = generated("github_events", 3000)
    store = open_store()
    for name, definition in GITHUB.items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws[:1500]))
    store.checkpoint()  # older than the compaction: reopening must not use its tally as it is
    store.ingest(b"\n".join(raws[1500:]))
    result = store.compact(until_address=store.tail_address // 2)
    assert result.records_dropped > 0
    kept = raws[len(raws) - store.stats()["records"]:]
    log = Log(kept)
    log.bind(store)
    _check_counts(store, log, GITHUB, windows=1)
    if checkpoint_after:
        store.checkpoint()
    store.close()
    store = open_store()
    log.bind(store)
    _check_counts(store, log, GITHUB, windows=1)


def test_past_the_tally_bounds_answers_stay_exact(open_store, generated):
    raws = generated("github_events", 2000)
    store = open_store(tally_max_values=5, tally_max_value_bytes=12)
    for name, definition in GITHUB.items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    assert store._tally.state(store.psf("actor").id).overflow  # many logins
    assert not store._tally.state(store.psf("public").id).overflow  # true: one value
    _check_counts(store, log, GITHUB, windows=1)


def test_keyed_store_counts_live_versions(open_store, generated):
    raws = [json.loads(r) for r in generated("github_events", 1500)]
    for i, obj in enumerate(raws):
        obj["key"] = i % 400  # later records supersede earlier ones
    lines = [json.dumps(o).encode() for o in raws]
    store = open_store(key="key")
    store.register_psf("type", "type")
    store.ingest(b"\n".join(lines))
    store.delete_key(7)
    live = {}
    for line in lines:
        live[json.loads(line)["key"]] = line
    del live[7]
    want: dict = {}
    for line in live.values():
        t = json.loads(line)["type"]
        want[t] = want.get(t, 0) + 1
    assert dict(store.group_count("type")) == want
    for t, n in want.items():
        assert store.count("type", t) == n
    assert store.count("type", "PushEvent", include_superseded=True) == sum(
        1 for o in raws if o["type"] == "PushEvent")
    assert _got_groups(store.group_count("type", include_superseded=True)) == _got_groups(
        (o["type"], 1) for o in raws)


def test_count_arguments_are_checked(store):
    store.register_psf("type", "type")
    store.ingest(b'{"type": "a"}\n{"type": "b"}\n{"type": "a"}')
    assert store.count("type", "a") == 2
    assert store.count("type", None) == 0 and store.count("type", [1]) == 0
    assert store.group_count("type") == [("a", 2), ("b", 1)]
    assert store.group_count("type", limit=0) == []
    with pytest.raises(shoal.PSFNotFound):
        store.count("nope", "a")
    with pytest.raises(shoal.PSFNotFound):
        store.group_count("nope")
    with pytest.raises(shoal.InvalidArgument):
        store.group_count("type", limit=-1)
    with pytest.raises(shoal.InvalidArgument):
        store.count_all([])
    with pytest.raises(shoal.InvalidArgument):
        store.count(3)


@pytest.mark.parametrize("reopen", [False, True])
def test_window_counts_at_any_bounds(open_store, generated, reopen):
    """Windows whose bounds fall anywhere (inside records too), on values with
    thousands of records (counted by jumping between the tally's samples)
    and few, before and after a reopen (samples saved with the checkpoint)."""
    raws = generated("github_events", 6000)
    store = open_store()
    store.register_psf("type", "type")
    store.register_psf("push", "type == 'PushEvent'")
    store.ingest(b"\n".join(raws))
    if reopen:
        store.checkpoint()
        store.close()
        store = open_store()
    log = Log(raws)
    log.bind(store)
    rng = random.Random(7)
    begin, tail = store.begin_address, store.tail_address
    values = [("push", True, "type == 'PushEvent'")] + [("type", v, "type") for v in sample_values(
        log.value_counts("type"))]
    for _ in range(60):
        lo, hi = sorted(rng.randrange(begin, tail + 1) for _ in range(2))
        for name, value, definition in values:
            want = len(log.query(definition, value, from_address=lo, to_address=hi))
            assert store.count(name, value, from_address=lo, to_address=hi) == want, (name, value, lo, hi)


def test_top_values_keep_numbers_exact(store):
    """group_count's values come from C as JSON text: integers with trailing
    zeros (canonical exponents), negative exponents, big and negative ones."""
    values = [0, 1, 10, 100, 1200, 10**15, 10**25, -7000, 0.5, 1.25, -0.001, 123456789, True, "x", "a\"b\\c\n"]
    lines = []
    for i, v in enumerate(values):
        lines += [json.dumps({"v": v}).encode()] * (i + 1)
    store.register_psf("v", "v")
    store.register_psf("b", "v", bucket=10)
    store.ingest(b"\n".join(lines))
    got = store.group_count("v")
    assert got == [(v, i + 1) for i, v in reversed(list(enumerate(values)))]
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    want: dict = {}
    for i, v in enumerate(values):
        if v in nums and not isinstance(v, bool):  # beyond 2^53 buckets: the edge bucket, shown by its start
            k = (v // 10) * 10 if abs(v / 10) < 2 ** 53 else math.copysign((2 ** 53 - 1) * 10.0, v)
            want[k] = want.get(k, 0) + i + 1
    assert dict(store.group_count("b")) == want
