"""Damage to a closed store's files, found on open.

A store spanning many segment files, with two checkpoints, is closed; then
one file is damaged: a segment truncated (mid-page at a record boundary, or
mid-record), a bit flipped in a record, a segment file deleted (each before
the first checkpoint's tail, between the two, or after the second), a
checkpoint's metadata or index corrupted or truncated, or the log cut below
the newest checkpoint's tail. Every time, opening: does not raise; holds a
prefix of what was ingested, each record parsing and equal to its input;
reports what it dropped; answers every PSF query as a scan of what it holds;
and goes on ingesting, reopening cleanly after.

test_recovery.py covers torn and corrupt tails and the no-checkpoint case.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


import orjson
import pytest
from oracle import ALL, Log, as_pairs, sample_values
from conftest import PAGE_BYTES

import shoal

PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "dns_udp": "_path == 'dns' && proto == 'udp'"}
N = 3000


def _segment_of(store, address: int) -> tuple[Path, int]:
    cfg = store.config
    pages_per_segment = cfg.segment_size_bytes // cfg.page_size_bytes
    page = address // cfg.page_size_bytes
    path = store.path / "log" / f"segment-{page // pages_per_segment:06d}.log"
    return path, (page % pages_per_segment) * cfg.page_size_bytes + address % cfg.page_size_bytes


@pytest.fixture
def damaged(open_store, generated, store_path):
    """A closed store of N records (three thirds, a checkpoint after each of
    the first two); returns (raws, addresses, checkpoint tails)."""
    raws = list(generated("zeek_logs", N))
    store = open_store()
    for name, definition in PSFS.items():
        store.register_psf(name, definition)
    tails = []
    for k in range(3):
        store.ingest(b"\n".join(raws[k * N // 3:(k + 1) * N // 3]))
        if k < 2:
            tails.append(store.checkpoint().tail_address)
    addresses = [r.address for r in store.scan(ALL, order="oldest")]
    store.close()
    assert len(list((store_path / "log").iterdir())) > 10  # many segment files
    return raws, addresses, tails


def check_recovered(store, raws) -> int:
    """What every open must give: a prefix of the input, each record intact,
    every PSF answer equal to a scan. Returns how many records survived."""
    stored = [r.raw for r in store.scan(ALL, order="oldest")]
    assert stored == raws[:len(stored)]
    for raw in stored:
        orjson.loads(raw)
    log = Log(stored)
    log.bind(store)
    for name, definition in PSFS.items():
        for value in sample_values(log.value_counts(definition), 2) + [True]:
            assert as_pairs(store.query(name, value)) == log.query(definition, value), (name, value)
    # and the predicate PSF against the store's own scan
    assert as_pairs(store.query("dns_udp")) == as_pairs(store.scan(PSFS["dns_udp"]))
    assert store.stats()["records"] == len(stored)
    return len(stored)


def _goes_on(open_store, store, raws, kept):
    """Ingest continues after the damage, and the next open is clean."""
    more = raws[kept:kept + 100] or raws[:100]
    store.ingest(b"\n".join(more))
    store.close()
    again = open_store()
    assert again.stats()["recovery"]["dropped"] == []
    assert check_recovered(again, raws[:kept] + more) == kept + 100


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x04]))


WHERE = ["before-first-checkpoint", "between-checkpoints", "after-last-checkpoint"]


def _victim(addresses, tails, where) -> int:
    """Index of a record well inside the chosen stretch of the log, not in the
    last segment file, and followed by a record on its page (so the distance
    to the next address is the record's own size, not the page's unused end)."""
    lo, hi = {"before-first-checkpoint": (addresses[0], tails[0]), "between-checkpoints": (tails[0], tails[1]),
              "after-last-checkpoint": (tails[1], addresses[-1])}[where]
    inside = [i for i, a in enumerate(addresses)
              if lo <= a < hi and addresses[i + 1] // PAGE_BYTES == a // PAGE_BYTES]
    return inside[len(inside) // 2]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("damage", ["truncate-at-record", "truncate-mid-record", "flip", "delete-segment"])
def test_damaged_segment(open_store, damaged, store_path, damage, where):
    raws, addresses, tails = damaged
    victim = _victim(addresses, tails, where)
    address = addresses[victim]
    probe = open_store()
    path, off = _segment_of(probe, address)
    size = addresses[victim + 1] - address
    probe.close()
    if damage == "truncate-at-record":
        os.truncate(path, off)
        first_lost = victim
    elif damage == "truncate-mid-record":
        os.truncate(path, off + size // 2)
        first_lost = victim
    elif damage == "flip":
        _flip(path, off + size - 12)  # in the payload
        first_lost = victim
    else:
        os.unlink(path)
        seg_start = address - off
        first_lost = next(i for i, a in enumerate(addresses) if a >= seg_start)

    store = open_store()
    rec = store.stats()["recovery"]
    assert rec["dropped"], rec
    assert any("moved to" in d and "lost+found" in d for d in rec["dropped"]), rec["dropped"]
    usable = [t for t in tails if t <= addresses[first_lost]]
    assert rec["checkpoint_id"] == (len(usable) or None)
    assert check_recovered(store, raws) == first_lost
    assert addresses[first_lost - 1] < store.tail_address <= addresses[first_lost]  # <: at a page's end marker
    lost = list((store_path / "lost+found").iterdir())
    assert len(lost) == 1 and any(lost[0].iterdir())  # the dropped log is kept, not deleted
    kept = sum(f.stat().st_size for f in (store_path / "lost+found").rglob("*") if f.is_file())
    assert rec["lost_and_found_bytes"] == kept > 0
    _goes_on(open_store, store, raws, first_lost)


@pytest.mark.parametrize("damage", ["meta-flip", "meta-truncated", "index-flip", "index-truncated",
                                    "index-missing"])
@pytest.mark.parametrize("which", ["newest", "both"])
def test_damaged_checkpoint(open_store, damaged, store_path, damage, which):
    """A checkpoint that does not verify is ignored: the older one is used, or
    the whole log is replayed; nothing is lost either way."""
    raws, _, _ = damaged
    ckpt = store_path / "checkpoints"
    for cid in ([2] if which == "newest" else [2, 1]):
        target = ckpt / f"ckpt-{cid:06d}.{'json' if damage.startswith('meta') else 'index'}"
        if damage.endswith("flip"):
            _flip(target, os.path.getsize(target) // 2)
        elif damage.endswith("truncated"):
            os.truncate(target, os.path.getsize(target) // 2)
        else:
            os.unlink(target)
    store = open_store()
    rec = store.stats()["recovery"]
    assert len(rec["dropped"]) == (1 if which == "newest" else 2), rec["dropped"]
    assert all("checkpoint" in d and "lost+found" in d for d in rec["dropped"])
    assert rec["checkpoint_id"] == (1 if which == "newest" else None)
    assert check_recovered(store, raws) == N
    _goes_on(open_store, store, raws, N)


def test_checkpoint_past_the_end_of_the_log(open_store, damaged, store_path):
    """The log ends below the newest checkpoint's tail (its last segments
    lost): that checkpoint indexes records that are gone. It is moved aside
    (never to match a log that grows past its tail again) and the older one
    is used."""
    raws, addresses, tails = damaged
    probe = open_store()
    path, _ = _segment_of(probe, tails[1] - 1)
    probe.close()
    for p in (store_path / "log").iterdir():
        if p.name > path.name:
            p.unlink()
    os.truncate(path, 0)
    store = open_store()
    rec = store.stats()["recovery"]
    assert rec["checkpoint_id"] == 1
    assert any("checkpoint 2 ends at" in d for d in rec["dropped"]), rec["dropped"]
    assert sorted(os.listdir(store_path / "checkpoints")) == ["ckpt-000001.index", "ckpt-000001.json", "ckpt-000001.tally"]
    kept = check_recovered(store, raws)
    assert tails[0] <= store.tail_address < tails[1] and kept == sum(a < store.tail_address for a in addresses)
    _goes_on(open_store, store, raws, kept)  # grows past checkpoint 2's tail: still clean


@pytest.mark.parametrize("damage", ["flip-header", "delete-segment"])
def test_without_verification(open_store, damaged, store_path, damage):
    """verify_log_on_open=False: opening reads only the log after the
    checkpoint and checks that the segment files below it are all there. A
    missing file is found at open (the checkpoint past it is not used); a
    damaged record below the checkpoint is found by the read that meets it
    (reads check its CRC32C and return None, scans check its header), and by
    the next verified open."""
    raws, addresses, tails = damaged
    victim = _victim(addresses, tails, "between-checkpoints")
    probe = open_store()
    path, off = _segment_of(probe, addresses[victim])
    probe.close()
    if damage == "delete-segment":
        os.unlink(path)
        store = open_store(verify_log_on_open=False)
        rec = store.stats()["recovery"]
        assert rec["checkpoint_id"] == 1 and any("checkpoint 2 ends at" in d for d in rec["dropped"])
        assert check_recovered(store, raws) == sum(a < addresses[victim] - off for a in addresses)
        return
    _flip(path, off + 5)  # the record's magic
    store = open_store(verify_log_on_open=False)
    rec = store.stats()["recovery"]
    assert rec["checkpoint_id"] == 2 and rec["dropped"] == [] and store.recovery.verified_bytes == 0
    assert store.get(addresses[victim]) is None  # a damaged record is never returned
    with pytest.raises(shoal.CorruptionError):
        list(store.scan(ALL))
    store.close()
    store = open_store()  # verified: found at open
    assert store.stats()["recovery"]["checkpoint_id"] == 1
    assert check_recovered(store, raws) == victim


@pytest.mark.parametrize("checkpointed", [True, False])
def test_a_missing_first_segment_is_reported_not_taken_for_compaction(open_store, damaged, store_path,
                                                                       checkpointed):
    """No compaction ran, so an absent oldest segment file is damage: the
    open reports the lost bytes, and what follows is a consistent suffix."""
    raws, addresses, tails = damaged
    if not checkpointed:
        shutil.rmtree(store_path / "checkpoints")
    first = store_path / "log" / "segment-000000.log"
    first.unlink()
    store = open_store()
    rec = store.stats()["recovery"]
    assert any("missing" in d and "lost" in d for d in rec["dropped"]), rec["dropped"]
    begin = store.begin_address
    kept = [i for i, a in enumerate(addresses) if a >= begin]
    assert kept and kept[0] > 0
    stored = [r.raw for r in store.scan(ALL, order="oldest")]
    assert stored == raws[kept[0]:]
    log = Log(stored)
    log.bind(store)
    for name, definition in PSFS.items():
        for value in sample_values(log.value_counts(definition), 2) + [True]:
            assert as_pairs(store.query(name, value)) == log.query(definition, value), (name, value)
    assert store.stats()["records"] == len(stored)
    store.close()
    again = open_store()
    assert again.stats()["recovery"]["dropped"] == []  # reported once
    assert [r.raw for r in again.scan(ALL, order="oldest")] == stored
    assert again.stats()["records"] == len(stored)
