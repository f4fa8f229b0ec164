"""Stores created with compression="zstd": sealed segments are rewritten as
cold files of compressed frames in the background (store/cooling.py), and
every read path (scans, chain walks, counts, reads by address, recovery,
compaction) answers from them exactly as from raw segment files. The
oracle is tests/oracle.py's Log (orjson + jmespath over the same records),
bound to the store's addresses.
"""
from __future__ import annotations

import os
import random
import threading

import orjson
import pytest
from conftest import SOURCES
from oracle import ALL, Log, as_pairs, python_value, sample_values

import shoal
from shoal.errors import InvalidArgument
from shoal.store import fetch
from shoal.store.frames import Codec
from shoal.store.segments import segment_bytes

KiB = 1024
# Tiny pages and segments: many segments, most of them sealed and compressed.
COLD = shoal.StoreConfig(page_size_bytes=16 * KiB, memory_budget_bytes=4 * 16 * KiB, segment_size_bytes=64 * KiB,
                         batch_bytes=16 * KiB, compression="zstd", compression_frame_bytes=8 * KiB)
PSFS = {"github_events": {"type": "type", "repo": "repo.name"}, "zeek_logs": {"path": "_path", "port": "\"id.resp_p\""}}


def _files(store) -> tuple[list[str], list[str]]:
    names = sorted(os.listdir(store.path / "log"))
    return [n for n in names if n.endswith(".log")], [n for n in names if n.endswith(".z")]


def _check(store, log: Log, kind: str, rng: random.Random) -> None:
    """Every answer of the store against the oracle."""
    assert as_pairs(store.scan(ALL, order="oldest")) == log.answer(range(len(log)), order="oldest")
    for name, definition in PSFS[kind].items():
        for value in sample_values(log.value_counts(definition)):
            want = log.query(definition, value)
            assert as_pairs(store.query(name, value)) == want, (name, value)
            assert store.count(name, value) == len(want)
            assert as_pairs(store.query(name, value, order="oldest", limit=7)) == log.query(
                definition, value, order="oldest", limit=7)
    for i in rng.sample(range(len(log)), min(200, len(log))):
        assert store.get(log.addresses[i]).raw == log.raws[i]


def _closed_store(open_store, raws: list[bytes], config, psfs: dict | None = None):
    """A compressed store holding raws, every written page compressed,
    closed: (its path, the oracle bound to its addresses)."""
    store = open_store(config=config)
    for name, definition in (psfs or {}).items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    log = Log(raws)
    log.bind(store)
    path = store.path
    store.close()
    return path, log


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["github_events", "zeek_logs"])
def test_a_compressed_store_answers_as_the_oracle(open_store, records, source, kind):
    raws = list(records(source, kind, 4_000))
    store = open_store(config=COLD)
    for name, definition in PSFS[kind].items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    raw_files, cold_files = _files(store)
    if store.stats()["log_bytes"] > 3 * COLD.segment_size_bytes:
        assert len(cold_files) >= 2 and len(raw_files) <= 2  # all but the newest segment(s) compressed
        assert segment_bytes(store.path / "log") < 0.6 * sum(map(len, raws))
    log = Log(raws)
    log.bind(store)
    rng = random.Random(7)
    _check(store, log, kind, rng)
    st = store.stats()["compression"]
    assert st["kind"] == "zstd" and st["cold_segments"] == len(cold_files) and st["last_error"] is None
    assert st["cold_disk_bytes"] == sum((store.path / "log" / n).stat().st_blocks * 512 for n in cold_files)
    if cold_files:
        assert st["frame_cache_hits"] > 0 and st["frame_cache_misses"] > 0
    path = store.path
    store.close()
    store = open_store(path, config=COLD)  # recovery reads the cold files (verified)
    assert store.recovery.dropped == []
    _check(store, log, kind, rng)
    more = list(records(source, kind, 5_000))[4_000:]  # and it goes on
    store.ingest(b"\n".join(more))
    assert store.wait_compressed(60)
    log = Log(raws + more)
    log.bind(store)
    _check(store, log, kind, rng)


@pytest.mark.parametrize("source", SOURCES)
def test_pages_go_cold_before_their_segment_is_full(open_store, records, source):
    """One segment larger than the log: its written pages are compressed
    into a growing cold file and punched out of the raw file, which stays
    for the pages still to come; a torn frame a crash left at the cold
    file's end is cut off at open, and nothing is lost."""
    raws = list(records(source, "zeek_logs", 6_000))
    config = COLD.replace(segment_size_bytes=64 << 20)
    store = open_store(config=config)
    for name, definition in PSFS["zeek_logs"].items():
        store.register_psf(name, definition)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    raw_files, cold_files = _files(store)
    assert raw_files == ["segment-000000.log"] and cold_files == ["segment-000000.z"]
    log_dir = store.path / "log"
    written = store.stats()["log_bytes"]
    assert (log_dir / raw_files[0]).stat().st_blocks * 512 < written / 4  # the cold pages are holes
    assert store.stats()["disk_bytes"] < 0.6 * sum(map(len, raws))
    log = Log(raws)
    log.bind(store)
    rng = random.Random(3)
    _check(store, log, "zeek_logs", rng)
    path = store.path
    store.close()
    with open(log_dir / cold_files[0], "ab") as f:  # half a frame, as a crash in an append leaves
        f.write(b"SHLZ" + os.urandom(3000))
    store = open_store(path, config=config)
    assert store.recovery.dropped == []
    _check(store, log, "zeek_logs", rng)
    more = list(records(source, "zeek_logs", 8_000))[6_000:]
    store.ingest(b"\n".join(more))
    assert store.wait_compressed(60)
    log = Log(raws + more)
    log.bind(store)
    _check(store, log, "zeek_logs", rng)


def test_compaction_deletes_cold_files_and_keeps_the_rest(open_store, generated):
    raws = list(generated("zeek_logs", 6_000))
    store = open_store(config=COLD)
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    log = Log(raws)
    log.bind(store)
    before = len(_files(store)[1])
    r = store.compact(retain_bytes=store.stats()["log_bytes"] // 3)
    assert r.segments_deleted > 0 and len(_files(store)[1]) < before
    kept = [(a, raw) for a, raw in zip(log.addresses, log.raws) if a >= r.begin_after]
    assert as_pairs(store.scan(ALL, order="oldest")) == kept
    dns = [(a, raw) for a, raw in kept if orjson.loads(raw)["_path"] == "dns"]
    assert as_pairs(store.query("path", "dns", order="oldest")) == dns
    path = store.path
    store.close()
    store = open_store(path, config=COLD)
    assert as_pairs(store.scan(ALL, order="oldest")) == kept


def test_queries_during_compression_never_miss_or_misread(open_store, generated):
    raws = list(generated("github_events", 6_000))
    store = open_store(config=COLD)
    store.register_psf("type", "type")
    first = raws[:1_000]
    store.ingest(b"\n".join(first))
    store.flush()
    want = {r for r in first}
    stop = threading.Event()
    errors: list = []

    def reader() -> None:
        try:
            while not stop.is_set():
                got = [r.raw for r in store.scan(ALL, order="oldest")][:len(first)]
                assert got == first, "scan differs"
                for r in store.query("type", "PushEvent", order="oldest", limit=50):
                    assert r.raw in want or r.raw in set(raws)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for k in range(1_000, len(raws), 500):
        store.ingest(b"\n".join(raws[k:k + 500]))
    assert store.wait_compressed(60)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    log = Log(raws)
    log.bind(store)
    assert as_pairs(store.query("type", "PushEvent")) == log.query("type", "PushEvent")


def test_leftovers_of_a_stopped_conversion_are_resolved_at_open(open_store, generated):
    raws = list(generated("zeek_logs", 3_000))
    store = open_store(config=COLD)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    log_dir = store.path / "log"
    path = store.path
    store.close()
    cold = sorted(log_dir.glob("segment-*.z"))
    assert len(cold) >= 3
    # a conversion cut short (its temporary file), and one stopped after the rename but before the
    # raw file went (both files there): the cold file wins, the raw one goes
    (log_dir / (cold[0].name + ".tmp")).write_bytes(b"partial")
    raw_twin = cold[1].with_suffix(".log")
    store = open_store(path, config=COLD)
    seg1 = store.scan(ALL, order="oldest", from_address=1 * COLD.segment_size_bytes,
                      to_address=2 * COLD.segment_size_bytes)
    twin_bytes = b"".join(bytes(r.raw) for r in seg1)
    store.close()
    raw_twin.write_bytes(b"\0" * COLD.segment_size_bytes)  # what the raw file held matters not: the cold one checks
    store = open_store(path, config=COLD)
    assert not raw_twin.exists() and not (log_dir / (cold[0].name + ".tmp")).exists()
    log = Log(raws)
    log.bind(store)
    again = store.scan(ALL, order="oldest", from_address=1 * COLD.segment_size_bytes,
                       to_address=2 * COLD.segment_size_bytes)
    assert b"".join(bytes(r.raw) for r in again) == twin_bytes


def test_a_damaged_cold_frame_ends_the_log_there_at_open(open_store, generated):
    raws = list(generated("zeek_logs", 3_000))
    path, log = _closed_store(open_store, raws, COLD)
    victim = path / "log" / "segment-000002.z"
    data = bytearray(victim.read_bytes())
    data[200] ^= 0x40  # inside its first frame
    victim.write_bytes(bytes(data))
    store = open_store(path, config=COLD)
    cut = 2 * COLD.segment_size_bytes
    assert store.recovery.dropped  # reported
    assert as_pairs(store.scan(ALL, order="oldest")) == [(a, r) for a, r in zip(log.addresses, log.raws) if a < cut]
    store.ingest(b"\n".join(raws[:500]))  # the log goes on from the cut
    assert len(list(store.scan(ALL))) == sum(1 for a in log.addresses if a < cut) + 500


def test_compression_is_chosen_at_creation(open_store, store_path):
    with pytest.raises(InvalidArgument, match="compression must be"):
        shoal.StoreConfig(compression="gzip")
    with pytest.raises(InvalidArgument, match="compression_frame_bytes"):
        shoal.StoreConfig(compression_frame_bytes=64 * KiB)
    with pytest.raises(InvalidArgument, match="compression_level"):
        shoal.StoreConfig(compression_level=0)
    store = open_store(store_path, config=COLD.replace(compression="none"))
    store.close()
    with pytest.raises(InvalidArgument, match="compression is fixed"):
        open_store(store_path, config=COLD)
    store = open_store(store_path)  # no config: the stored one
    assert store.config.compression == "none"
    store.close()


def test_a_store_without_compression_keeps_raw_files(open_store, generated):
    store = open_store(config=COLD.replace(compression="none"))
    store.ingest(b"\n".join(generated("zeek_logs", 3_000)))
    assert store.wait_compressed(1)
    assert _files(store)[1] == []


def test_opening_verifies_cold_frames_without_decompressing_them(open_store, generated, monkeypatch):
    """Open verifies the log below the checkpoint: cold frames by their
    headers and compressed bytes (the records were checked before they went
    cold), so it decompresses nothing, and a damaged frame still ends the log."""
    raws = list(generated("zeek_logs", 3_000))
    store = open_store(config=COLD)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    store.checkpoint()
    log = Log(raws)
    log.bind(store)
    path = store.path
    store.close()
    calls = []
    real = Codec.decompress
    monkeypatch.setattr(Codec, "decompress", lambda self, *a: calls.append(a[1]) or real(self, *a))
    store = open_store(path, config=COLD)
    assert calls == [] and not store.recovery.dropped
    assert store.recovery.verified_bytes == store.recovery.checkpoint_tail - store.recovery.begin_address > 0
    assert as_pairs(store.scan(ALL, order="oldest")) == log.answer(range(len(log)), order="oldest")
    store.close()


def test_answers_with_the_cold_files_out_of_the_page_cache(open_store, generated):
    """Dense walks over cold files the page cache no longer holds ask the
    kernel to read ahead (read.c's cold_pread): the answers stay the oracle's."""
    raws = list(generated("github_events", 3_000))
    path, log = _closed_store(open_store, raws, COLD, PSFS["github_events"])
    store = open_store(path, config=COLD.replace(compression_cache_bytes=0))  # every read goes to the files
    for f in (path / "log").glob("segment-*.z"):
        fd = os.open(f, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    _check(store, log, "github_events", random.Random(5))


def test_a_long_answer_in_cold_frames_is_read_ahead_on_every_core(open_store, generated, monkeypatch):
    """The first fetch call of a chain whose records are in cold frames not
    yet decompressed has the rest walked in lanes first (fetch.py's
    _warm_up), which fills the frame cache; the answer is the oracle's, and a
    repeat, whose frames are cached, is not read ahead."""
    raws = list(generated("zeek_logs", 6_000))
    config = COLD.replace(page_size_bytes=64 * KiB, memory_budget_bytes=256 * KiB, segment_size_bytes=1 << 20)
    path, log = _closed_store(open_store, raws, config, {"path": "_path"})
    store = open_store(path, config=config)
    value = python_value(max(log.value_counts("_path").items(), key=lambda kv: kv[1])[0])
    walks = []
    real = fetch.walk_all
    monkeypatch.setattr(fetch, "walk_all", lambda *a, **k: walks.append(1) or real(*a, **k))
    want = log.query("_path", value)
    assert len(want) > 1000
    for _ in range(2):
        assert as_pairs(store.query("path", value)) == want
        assert len(walks) == 1  # the first time only


@pytest.mark.parametrize("segment_kib", [64 * 1024, 1024])  # one growing cold file; several, the older finished
def test_compaction_frees_cold_frames_below_begin(open_store, generated, segment_kib):
    """Compacting a compressed store to its newest tenth frees the frames
    below begin in the cold file holding it (a hole of whole blocks), not
    only whole files: its disk falls to about a tenth; the answers stay the
    oracle's, after a reopen (which walks a growing cold file from the
    first frame after its hole) and after more ingest."""
    raws = list(generated("zeek_logs", 40_000))
    config = COLD.replace(page_size_bytes=64 * KiB, memory_budget_bytes=256 * KiB,
                          segment_size_bytes=segment_kib * KiB)
    store = open_store(config=config)
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    store.checkpoint()
    log = Log(raws)
    log.bind(store)
    dictionary = (store.path / "log" / "zstd.dict").stat().st_size
    r = store.compact(until_address=log.addresses[len(log) * 9 // 10])
    store.checkpoint()
    assert r.disk_bytes_after - dictionary <= 0.15 * (r.disk_bytes_before - dictionary), r
    kept = [(a, raw) for a, raw in zip(log.addresses, log.raws) if a >= r.begin_after]
    dns = [(a, raw) for a, raw in kept if orjson.loads(raw)["_path"] == "dns"]
    assert as_pairs(store.scan(ALL, order="oldest")) == kept
    assert as_pairs(store.query("path", "dns", order="oldest")) == dns
    path = store.path
    store.close()
    store = open_store(path, config=config)
    assert not store.recovery.dropped
    assert as_pairs(store.scan(ALL, order="oldest")) == kept
    assert as_pairs(store.query("path", "dns", order="oldest")) == dns
    store.ingest(b"\n".join(raws[:2000]))  # the log goes on, and goes cold, after the hole
    assert store.wait_compressed(60)
    assert len(list(store.scan(ALL))) == len(kept) + 2000


def test_a_damaged_frame_after_a_compaction_hole_ends_the_log_there(open_store, generated):
    raws = list(generated("zeek_logs", 20_000))
    config = COLD.replace(page_size_bytes=64 * KiB, memory_budget_bytes=256 * KiB, segment_size_bytes=64 << 20)
    store = open_store(config=config)
    store.ingest(b"\n".join(raws))
    assert store.wait_compressed(60)
    log = Log(raws)
    log.bind(store)
    r = store.compact(until_address=log.addresses[len(log) // 2])
    store.checkpoint()
    kept = [(a, raw) for a, raw in zip(log.addresses, log.raws) if a >= r.begin_after]
    path = store.path
    store.close()
    cold = path / "log" / "segment-000000.z"
    data = bytearray(cold.read_bytes())
    assert data[:4096] == bytes(4096)  # the hole
    at = len(data) * 3 // 4
    data[at] ^= 0x20  # a frame well above begin
    cold.write_bytes(bytes(data))
    store = open_store(path, config=config)
    assert store.recovery.dropped
    got = as_pairs(store.scan(ALL, order="oldest"))
    assert 0 < len(got) < len(kept) and got == kept[:len(got)]  # a prefix of what was kept, from begin on
