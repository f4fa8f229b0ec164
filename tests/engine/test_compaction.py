"""Compaction and retention: the cut, what is dropped and deleted, answers
after compaction (equal to the oracle over the records at or above the new
begin), reopening (begin persisted, no resurrected records, checkpoints from
before the compaction), an interrupted compaction, compaction under
concurrent ingest and queries, keyed stores (live versions are copied), and
retention by bytes and by age in the background."""
from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time

import pytest
from oracle import ALL, Log, as_pairs, sample_values

import shoal
from shoal.store.segments import segment_bytes
from shoal.engine import compaction as C
from shoal.store import begin as B

PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "dns_udp": "_path == 'dns' && proto == 'udp'"}


def _register(store, psfs=PSFS):
    for name, definition in psfs.items():
        store.register_psf(name, definition)


def _ingest(store, raws, step=1000):
    for k in range(0, len(raws), step):
        res = store.ingest(b"\n".join(raws[k:k + step]))
        assert res.rejected == 0


def _page_floor(store, address):
    return address - address % store.config.page_size_bytes


def _segments(store):
    return sorted(int(n[8:-4]) for n in os.listdir(store.path / "log") if n.startswith("segment-"))


def _suffix(log: Log, begin: int) -> Log:
    """The oracle for the records at or above begin (log bound to the store before compaction)."""
    keep = [i for i, a in enumerate(log.addresses) if a >= begin]
    out = Log(log.raws[i] for i in keep)
    out.addresses = [log.addresses[i] for i in keep]
    return out


def _check(store, log: Log, psfs=PSFS):
    assert as_pairs(store.scan(ALL, order="oldest")) == log.answer(range(len(log)), order="oldest")
    assert as_pairs(store.scan("\"id.resp_p\" == `53`")) == log.scan("\"id.resp_p\" == `53`")
    for name, definition in psfs.items():
        for value in sample_values(log.value_counts(definition), 2) + [True]:
            for order in ("newest", "oldest"):
                assert as_pairs(store.query(name, value, order=order)) == \
                    log.query(definition, value, order=order), (name, value)
    assert as_pairs(store.query_any([("path", "ssl"), ("resp_p", 53)])) == \
        log.query_any([(PSFS["path"], "ssl"), (PSFS["resp_p"], 53)])
    assert store.stats()["records"] == len(log)


@pytest.fixture
def loaded(open_store, generated):
    raws = generated("zeek_logs", 6000)
    store = open_store()
    _register(store)
    _ingest(store, raws)
    log = Log(raws)
    log.bind(store)
    return store, log


# ---- the cut and what it reclaims ----

@pytest.mark.parametrize("how", ["until_address", "retain_bytes"])
def test_compact_drops_the_prefix_and_deletes_whole_segments(loaded, how):
    store, log = loaded
    seg_bytes = store.config.segment_size_bytes
    disk_before = store.stats()["disk_bytes"]
    tail = store.tail_address
    if how == "until_address":
        want = log.addresses[len(log) // 2] + 100  # inside a record: rounded down to its page
        r = store.compact(want)
        cut = _page_floor(store, want)
    else:
        r = store.compact(retain_bytes=300_000)
        cut = _page_floor(store, tail - 300_000)
    assert (r.begin_before, r.begin_after) == (64, cut) and store.begin_address == cut
    kept = _suffix(log, cut)
    assert r.records_dropped == len(log) - len(kept) and r.records_copied == 0
    assert r.segments_deleted == cut // seg_bytes
    assert _segments(store)[0] == cut // seg_bytes
    # Whole files below the cut went, and the blocks below it in the file
    # holding it: what stays on disk is the log from the cut on.
    disk_after = store.stats()["disk_bytes"]
    assert (r.disk_bytes_before, r.disk_bytes_after) == (disk_before, disk_after)
    assert r.bytes_reclaimed == disk_before - disk_after
    flushed = store.stats()["addresses"]["flushed_until"]
    assert flushed - cut - 4096 <= disk_after <= store.tail_address - cut + 4096
    assert store.stats()["log_bytes"] == store.tail_address - cut
    assert 0 <= r.duration_ms < 10_000
    _check(store, kept)
    dropped = log.addresses[0]
    assert store.get(dropped) is None
    assert as_pairs(store.scan(ALL, from_address=0, to_address=cut)) == []
    # ingest goes on, and chains that cross the cut end cleanly
    more = [raw for raw in log.raws[:2000]]
    _ingest(store, more)
    kept.extend(more)
    kept.bind(store)
    _check(store, kept)
    st = store.stats()["compaction"]
    assert st["runs"] == 1 and st["last"]["begin_after"] == cut and st["bytes_reclaimed_total"] == r.bytes_reclaimed
    assert st["last"]["trigger"] == "manual" and st["records_dropped_total"] == r.records_dropped


def test_dropped_records_are_counted_without_reading_pages_this_process_wrote(open_store, store_path,
                                                                           generated, monkeypatch):
    """An unkeyed compaction counts the records of pages this process wrote
    whole from the appends (no page read), and reads the pages it did not:
    written before a reopen, or the page it was opened in the middle of.
    Either way the count equals the oracle's."""
    raws = generated("zeek_logs", 6000)
    store = open_store()
    _register(store)
    _ingest(store, raws[:3000])
    store.close()
    store = open_store()
    _ingest(store, raws[3000:])
    log = Log(raws)
    log.bind(store)
    page = store.config.page_size_bytes
    reopened_tail_page = log.addresses[2999] // page  # the page ingest resumed in after the reopen
    read = []
    real = C.Compactor._page_records
    monkeypatch.setattr(C.Compactor, "_page_records", lambda self, p, b: read.append(p) or real(self, p, b))
    first = store.compact(log.addresses[4000])
    cut1 = _page_floor(store, log.addresses[4000])
    assert first.records_dropped == sum(1 for a in log.addresses if a < cut1)
    assert read == list(range(reopened_tail_page + 1))  # pages 0.. the reopened tail page were read
    read.clear()
    second = store.compact(log.addresses[5500])
    cut2 = _page_floor(store, log.addresses[5500])
    assert second.records_dropped == sum(1 for a in log.addresses if cut1 <= a < cut2) > 0
    assert read == []  # all counted from the appends
    _check(store, _suffix(log, cut2))


def test_the_cut_never_passes_the_tail_page(loaded):
    store, log = loaded
    read_only = store.read_only_address
    r = store.compact(store.tail_address + 10**6)
    assert r.begin_after == read_only == store.begin_address
    kept = _suffix(log, read_only)
    assert len(kept) and as_pairs(store.scan(ALL, order="oldest")) == kept.answer(range(len(kept)), order="oldest")
    r = store.compact(retain_bytes=0)  # the same cut: nothing to do
    assert r.begin_after == r.begin_before == read_only and r.bytes_reclaimed == r.records_dropped == 0
    assert store.stats()["compaction"]["runs"] == 1


def test_arguments(loaded):
    store, _ = loaded
    for args, kw in [((), {}), ((64,), {"retain_bytes": 1}), ((-1,), {}), ((True,), {}), ((1.5,), {}),
                     ((), {"retain_bytes": -5}), ((), {"retain_bytes": "1GiB"})]:
        with pytest.raises(shoal.InvalidArgument):
            store.compact(*args, **kw)
    r = store.compact(0)  # below begin: nothing to do
    assert r.begin_before == r.begin_after == 64 and r.segments_deleted == 0
    store.close()
    with pytest.raises(shoal.StoreClosed):
        store.compact(10**6)


def test_segment_fds_are_closed_once_no_reader_is_inside(loaded, monkeypatch):
    """Deleted files' fds, and the hole below begin, wait for the readers
    inside a native call when the compaction ran: one may still read there."""
    store, log = loaded
    comp = store._compactor
    monkeypatch.setattr(C, "_RETIRE_WAIT_S", 0.01)
    gate = store._gate

    def files():
        return [r for r in comp._retired if r[1] is not None]

    def holes():
        return [r[2] for r in comp._retired if r[1] is None]

    with gate:  # a reader inside a native call could still pread the deleted files
        r = store.compact(log.addresses[len(log) // 2])
        assert r.segments_deleted and len(files()) == r.segments_deleted and holes() == [r.begin_after]
        fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for _, fd, _ in files()}
        assert all(t.endswith(".log (deleted)") for t in fds.values())  # still open, the files gone
        assert store.stats()["compaction"]["fds_pending_close"] == r.segments_deleted
        assert store.stats()["compaction"]["holes_pending"] == 1
        held = store.stats()["disk_bytes"]  # the hole is not punched yet
    with gate:  # a reader that came after the first compaction does not hold its fds up
        r2 = store.compact(log.addresses[len(log) // 2 + 1000])
        assert r2.segments_deleted and len(files()) == r2.segments_deleted  # only the new ones wait
        assert holes() == [r2.begin_after]
        assert r2.bytes_reclaimed >= r2.segments_deleted * store.config.segment_size_bytes  # and the first hole
    for fd, target in fds.items():  # closed (the number may have been reused since)
        assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != target
    assert len(files()) == r2.segments_deleted
    store.close()  # closes what is still pending, and punches the hole
    assert comp._retired == []
    assert segment_bytes(store.path / "log") < held - r2.segments_deleted * store.config.segment_size_bytes


def test_iterators_open_across_a_compaction(loaded):
    """A query or scan that started before the compaction ends cleanly: what
    it returns is right, and everything at or above the new begin is there."""
    store, log = loaded
    want = log.query(PSFS["path"], "dns")
    its = {"query": store.query("path", "dns"), "oldest": store.query("path", "dns", order="oldest"),
           "scan": store.scan("_path == 'dns'")}
    firsts = {k: [next(it)] for k, it in its.items()}
    cut = _page_floor(store, log.addresses[len(log) * 3 // 4])
    store.compact(cut)
    for k, it in its.items():
        got = as_pairs(firsts[k] + list(it))
        assert set(got) <= set(want), k
        assert {p for p in want if p[0] >= cut} <= set(got), k


# ---- reopening ----

@pytest.mark.parametrize("ckpt", ["none", "before-below-cut", "before-above-cut", "after"])
def test_reopen_after_compaction(open_store, generated, ckpt):
    raws = generated("zeek_logs", 6000)
    store = open_store()
    _register(store)
    _ingest(store, raws[:2000])
    if ckpt == "before-below-cut":
        store.checkpoint()  # its tail is below the cut
    _ingest(store, raws[2000:5000])
    if ckpt == "before-above-cut":
        store.checkpoint()  # its tail is above the cut, its begin below
    log = Log(raws[:5000])
    log.bind(store)
    cut = _page_floor(store, log.addresses[3000])
    r = store.compact(log.addresses[3000])
    assert r.begin_after == cut
    if ckpt == "after":
        store.checkpoint()
    store.ingest(b"\n".join(raws[5000:]))  # replayed after reopening
    kept = _suffix(log, cut)
    kept.extend(raws[5000:])
    kept.bind(store)
    tail = store.tail_address
    store.close()

    store = open_store()
    assert (store.begin_address, store.tail_address) == (cut, tail)
    rec = store.stats()["recovery"]
    assert rec["dropped"] == [] and rec["checkpoint_id"] == (None if ckpt == "none" else 1)
    _check(store, kept)  # no record below the cut comes back, the count is exact
    assert _segments(store)[0] == cut // store.config.segment_size_bytes
    more = raws[:500]
    _ingest(store, more)
    kept.extend(more)
    kept.bind(store)
    store.compact(kept.addresses[len(kept) // 2])  # a second compaction after reopening
    kept = _suffix(kept, store.begin_address)
    _check(store, kept)
    store.close()
    store = open_store()
    _check(store, kept)


def test_a_crash_between_recording_the_cut_and_deleting_files(open_store, generated, monkeypatch):
    raws = generated("zeek_logs", 4000)
    store = open_store()
    _register(store)
    _ingest(store, raws)
    log = Log(raws)
    log.bind(store)
    segments = _segments(store)

    def crash(*_):
        raise RuntimeError("killed")

    monkeypatch.setattr(type(store._log.segments), "detach_below", crash)
    with pytest.raises(RuntimeError):
        store.compact(log.addresses[2000])
    assert _segments(store) == segments, "nothing deleted yet"
    monkeypatch.undo()
    store.close()
    store = open_store()  # reopening finishes the job
    cut = _page_floor(store, log.addresses[2000])
    assert store.begin_address == cut and _segments(store)[0] == cut // store.config.segment_size_bytes
    _check(store, _suffix(log, cut))


def test_a_damaged_begin_file_falls_back_to_the_oldest_segment(open_store, generated, store_path):
    raws = generated("zeek_logs", 4000)
    store = open_store()
    _register(store)
    _ingest(store, raws)
    log = Log(raws)
    log.bind(store)
    seg_bytes = store.config.segment_size_bytes
    cut = seg_bytes * 5  # a segment boundary: the oldest segment file starts at the cut
    store.compact(cut)
    store.close()
    meta = json.loads((store_path / B.BEGIN_FILE).read_text())
    meta["begin_address"] = 64  # a bit flip: the checksum no longer matches
    (store_path / B.BEGIN_FILE).write_text(json.dumps(meta))
    store = open_store()
    assert store.begin_address == cut
    assert any("begin.json failed verification" in d for d in store.stats()["recovery"]["dropped"])
    _check(store, _suffix(log, cut))


# ---- concurrency ----

@pytest.mark.slow
def test_compaction_while_ingesting_and_querying(open_store, generated):
    """Readers' answers stay correct prefixes: every record returned is right
    (bytes, match, order), and every match between the begin address after
    the query and the tail before it is there."""
    raws = list(generated("zeek_logs", 16_000))
    page = 4096
    store = open_store(page_size_bytes=page, memory_budget_bytes=4 * page, segment_size_bytes=4 * page)
    _register(store)
    index_of = {raw: i for i, raw in enumerate(raws)}
    assert len(index_of) == len(raws)
    oracle = Log(raws)
    queries = [("path", "dns"), ("path", "ssl"), ("resp_p", 53), ("dns_udp", True)]
    want = {q: set(oracle.matching(PSFS[q[0]], q[1])) for q in queries}
    done = threading.Event()
    errors: list[BaseException] = []
    observations = []
    results = []

    def writer():
        try:
            for k in range(0, len(raws), 400):
                store.ingest(b"\n".join(raws[k:k + 400]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def compactor():
        try:
            while not done.is_set():
                results.append(store.compact(retain_bytes=200_000))
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader(seed):
        rng = random.Random(seed)
        try:
            while not done.is_set():
                q = rng.choice(queries)
                order = rng.choice(["newest", "oldest"])
                tail0 = store.tail_address
                got = as_pairs(store.query(*q, order=order)) if rng.random() < 0.8 else \
                    as_pairs(store.scan(f"{PSFS[q[0]]} == `{json.dumps(q[1])}`", order=order))
                observations.append((q, order, tail0, store.begin_address, got))
                for a, raw in got[:3]:
                    rec = store.get(a)
                    assert rec is None or rec.raw == raw
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=compactor)] + \
        [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    assert sum(r.segments_deleted for r in results) > 10 and len(observations) > 20

    # Addresses of the records that survive, plus those seen in answers.
    address_of = {index_of[raw]: a for a, raw in as_pairs(store.scan(ALL))}
    for *_, got in observations:
        for a, raw in got:
            assert address_of.setdefault(index_of[raw], a) == a
    for q, order, tail0, begin_after, got in observations:
        idx = [index_of[raw] for _, raw in got]
        assert all(i in want[q] for i in idx), q
        assert idx == sorted(idx, reverse=order == "newest")
        must = {i for i in want[q] if i in address_of and begin_after <= address_of[i] < tail0}
        assert must <= set(idx), (q, order)
    final = Log(raw for raw in raws if address_of.get(index_of[raw], -1) >= store.begin_address)
    final.bind(store)
    _check(store, final)


# ---- keyed stores ----

def test_keyed_store_copies_live_versions(open_store):
    store = open_store(key="id")
    store.register_psf("color", "color")
    rng = random.Random(5)
    versions = []
    for k in range(4000):
        versions.append({"id": f"k{rng.randrange(300)}", "v": k, "color": rng.choice(["red", "blue"]), "pad": "x" * 80})
    _ingest(store, [json.dumps(v).encode() for v in versions], step=500)
    deleted = {f"k{i}" for i in range(0, 300, 7)}
    for key in sorted(deleted):
        store.delete_key(key)
    newest = {}
    for v in versions:
        newest[v["id"]] = v
    live = {k: v for k, v in newest.items() if k not in deleted}
    before = store.stats()["records"]
    r = store.compact(store.read_only_address)
    assert r.records_copied > 0 and r.records_copied + r.records_dropped > 0
    assert store.stats()["records"] == before - r.records_dropped
    for key, v in live.items():
        rec = store.get_key(key)
        assert rec is not None and rec.json() == v, key
    for key in deleted:
        assert store.get_key(key) is None
    red = sorted(v["v"] for v in live.values() if v["color"] == "red")
    assert sorted(rec.json()["v"] for rec in store.query("color", "red")) == red
    store.close()
    store = open_store(key="id")
    for key, v in live.items():
        assert store.get_key(key).json() == v
    assert sorted(rec.json()["v"] for rec in store.query("color", "red")) == red


# ---- the index after compaction ----

def test_the_index_forgets_values_whose_records_were_all_dropped(open_store, store_path):
    # A PSF with a new value per record (an id) under repeated compaction:
    # without step 6 the index would keep an entry for every id ever seen.
    store = open_store()
    store.register_psf("id", "id")
    store.register_psf("kind", "kind")
    raws: list[bytes] = []
    entries = []
    for rnd in range(6):
        batch = [b'{"id":"r%d-%d","kind":"k%d","pad":"%s"}' % (rnd, i, i % 3, b"x" * 200) for i in range(600)]
        raws += batch
        res = store.ingest(b"\n".join(batch))
        assert res.ingested == len(batch)
        if rnd == 2:
            store.checkpoint()  # older than the compactions below: reopening must prune too
        store.compact(retain_bytes=60 * 1024)
        entries.append(store.stats()["index"]["entries"])
    begin = store.begin_address
    kept = [r for r, a in zip(raws, _addresses(store, raws)) if a is not None]
    # the live ids and the 3 kinds, plus at most a quarter of the table dead
    assert all(e <= (len(kept) + 3) * 4 / 3 + 1 for e in entries[1:]), (entries, len(kept))
    for rid in (raws[0], raws[len(raws) // 2], kept[0], kept[-1]):
        ident = json.loads(rid)["id"]
        want = [r for r in kept if json.loads(r)["id"] == ident]
        assert [r.raw for r in store.query("id", ident)] == want
    assert [r.raw for r in store.query("kind", "k1", order="oldest")] == \
        [r for r in kept if json.loads(r)["kind"] == "k1"]
    store.close()

    store = open_store()  # recovery from the checkpoint of round 2, then replay
    assert store.begin_address == begin
    assert store.stats()["index"]["entries"] <= (len(kept) + 3) * 4 / 3 + 1
    assert store._index.count_below(begin) == 0  # pruned at open
    assert [r.raw for r in store.scan("id", order="oldest")] == kept
    for r in kept[::97]:
        assert [x.raw for x in store.query("id", json.loads(r)["id"])] == [r]


def _addresses(store, raws):
    """The address of each of `raws` still in the store (None if dropped), by a scan."""
    at = {r.raw: r.address for r in store.scan("id", order="oldest")}
    return [at.get(r) for r in raws]


def test_checkpoint_between_the_recorded_cut_and_the_moved_begin(loaded, tmp_path, monkeypatch, caplog):
    """begin.json is written outside the writer lock: a checkpoint may land
    after the cut is recorded and before begin moves (it holds the old
    begin). Reopening from it under the new begin counts exactly."""
    store, log = loaded
    saved = B.save_begin
    taken = []

    def save_then_checkpoint(path, state):
        saved(path, state)
        taken.append(store.checkpoint())

    first = store.compact(log.addresses[len(log) // 4])  # begin past the log's start: its count matters
    assert first.begin_after > 64
    monkeypatch.setattr(C, "save_begin", save_then_checkpoint)
    r = store.compact(log.addresses[len(log) // 2])
    assert taken and taken[0].begin_address == r.begin_before == first.begin_after < r.begin_after
    store.flush()
    snapshot = tmp_path / "snapshot"  # the directory as a crash right now would leave it
    shutil.copytree(store.path, snapshot, ignore=shutil.ignore_patterns("LOCK"))
    kept = _suffix(log, r.begin_after)
    with shoal.open(snapshot, store.config) as again:
        assert again.recovery.checkpoint_id == taken[0].checkpoint_id
        assert again.begin_address == r.begin_after
        assert again.stats()["records"] == len(kept)
        assert as_pairs(again.scan(ALL, order="oldest")) == kept.answer(range(len(kept)), order="oldest")
    assert "approximate" not in caplog.text
