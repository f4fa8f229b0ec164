"""Durable ingest and I/O errors.

Group commit: concurrent durable ingests share fsyncs, and every record
acknowledged as durable survives a power cut (tests/faults.py keeps each
file as its last fsync left it) and a SIGKILL. Disk full and other I/O
errors: the caller gets DiskFull / NativeIOError naming the file, reads go
on, a failed write is retried by a later flush, a failed fsync leaves the
log read-only until reopened, a failed checkpoint leaves the previous ones.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import orjson
import pytest
from oracle import ALL, Log, as_pairs, sample_values

import shoal

PSFS = {"path": "_path", "resp_p": '"id.resp_p"'}


def _register(store):
    for name, definition in PSFS.items():
        store.register_psf(name, definition)


def _batches(raws, n):
    k = -(-len(raws) // n)
    return [raws[i:i + k] for i in range(0, len(raws), k)]


def _body(batch) -> bytes:
    return b"\n".join(batch) + b"\n"


def check_consistent(store, inputs=None) -> list[bytes]:
    """The store's records in log order, after checking that each parses and
    is one of `inputs`, and that every PSF answer equals a scan of the log."""
    a = store.stats()["addresses"]
    assert a["begin"] <= a["head"] <= a["read_only"] <= a["tail"]
    assert a["synced_until"] <= a["flushed_until"] <= a["tail"]
    stored = [r.raw for r in store.scan(ALL, order="oldest")]
    allowed = set(inputs) if inputs is not None else None
    for raw in stored:
        orjson.loads(raw)
        assert allowed is None or raw in allowed
    log = Log(stored)
    log.bind(store)
    for psf in store.psfs(include_inactive=False):
        for value in sample_values(log.value_counts(psf.definition), 2) + [True]:
            assert as_pairs(store.query(psf.name, value)) == log.query(psf.definition, value), (psf.name, value)
    return stored


def _run_threads(n, target):
    errors: list[BaseException] = []

    def run(i):
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


# ---- group commit ----

def test_concurrent_durable_ingests_share_fsyncs(open_store, generated, faulty_disk, store_path, tmp_path):
    """8 threads x 8 durable ingests: fewer fsyncs than ingests, each call
    returns with its records synced, and a power cut right after the last
    acknowledgement (no close) keeps every record."""
    raws = generated("zeek_logs", 3200)
    batches = _batches(raws, 64)
    store = open_store()
    _register(store)
    faulty_disk.fsync_delay_s = 0.005  # a disk whose fsync takes a while, so ingests pile up behind it
    before = faulty_disk.calls["fsync"]
    ends: list[tuple[int, int]] = []

    def work(i):
        for b in batches[i::8]:
            res = store.ingest(_body(b), durable=True)
            assert res.durable and res.ingested == len(b)
            ends.append((res.last_address, store.stats()["addresses"]["synced_until"]))

    assert _run_threads(8, work) == []
    fsyncs = faulty_disk.calls["fsync"] - before
    assert 0 < fsyncs < len(batches), fsyncs
    assert all(synced > last for last, synced in ends)  # synced_until covers each acknowledged record
    assert store.stats()["syncs"] < len(batches)

    faulty_disk.power_cut_copy(store_path, tmp_path / "cut")
    store.close()
    for path in (tmp_path / "cut", store_path):
        other = open_store(path)
        stored = check_consistent(other, raws)
        assert sorted(stored) == sorted(raws)
        other.close()


def test_durable_acks_survive_a_power_cut_among_buffered_ingests(open_store, generated, faulty_disk, store_path,
                                                                tmp_path):
    """Durable and buffered writers at once; a power cut after the last
    durable acknowledgement keeps every durable record, and what survives is
    a consistent prefix of the log."""
    raws = generated("zeek_logs", 4000)
    durable_batches = _batches(raws[:2000], 30)
    buffered_batches = _batches(raws[2000:], 30)
    store = open_store()
    _register(store)
    acked: list[bytes] = []

    def work(i):
        if i == 3:
            for b in buffered_batches:
                store.ingest(_body(b))
        else:
            for b in durable_batches[i::3]:
                store.ingest(_body(b), durable=True)
                acked.extend(b)

    assert _run_threads(4, work) == []
    log_order = [r.raw for r in store.scan(ALL, order="oldest")]
    faulty_disk.power_cut_copy(store_path, tmp_path / "cut")
    other = open_store(tmp_path / "cut")
    stored = check_consistent(other, raws)
    assert set(acked) <= set(stored)
    assert stored == log_order[:len(stored)]  # a prefix of the log


def test_tail_writes_run_beside_appends_page_turns_and_checkpoints(open_store, generated, faulty_disk, store_path,
                                                                   tmp_path):
    """The group commit leader writes the tail page without the writer lock.
    With every write slowed, appends fill and turn that page, the flusher
    takes it and checkpoints sync while such a write is in flight; a power
    cut after the last acknowledgement keeps every durable record in a
    consistent prefix of the log, and so does a clean reopen."""
    raws = generated("zeek_logs", 3000)
    durable_batches = _batches(raws[:2000], 120)  # ~17 records: many tail writes per 16 KiB page
    buffered_batches = _batches(raws[2000:], 40)
    store = open_store()
    _register(store)
    faulty_disk.write_delay_s = 0.002
    acked: list[bytes] = []
    checkpoints = []

    def work(i):
        if i == 3:
            for k, b in enumerate(buffered_batches):
                store.ingest(_body(b))
                if k % 2 == 1:
                    checkpoints.append(store.checkpoint())
        else:
            for b in durable_batches[i::3]:
                store.ingest(_body(b), durable=True)
                acked.extend(b)

    assert _run_threads(4, work) == []
    assert len(checkpoints) == 20
    log_order = [r.raw for r in store.scan(ALL, order="oldest")]
    assert sorted(log_order) == sorted(raws)
    faulty_disk.power_cut_copy(store_path, tmp_path / "cut")
    stored = check_consistent(open_store(tmp_path / "cut"), raws)
    assert set(acked) <= set(stored)
    assert stored == log_order[:len(stored)]
    store.close()
    assert check_consistent(open_store(store_path), raws) == log_order


def test_a_tail_write_waits_for_the_unfinished_one(open_store, generated):
    """Between plan and finish (the leader's write, without the writer lock)
    appends go on, but the next tail write (here a flush's) waits for the
    finish: two writes of the same block must not race."""
    raws = generated("zeek_logs", 40)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:5]))
    log = store._log
    with store._write_lock:
        plan = log.plan_tail_write()
    store.ingest(_body(raws[5:]))  # appends need only the writer lock
    done = threading.Event()
    flusher = threading.Thread(target=lambda: (store.flush(durable=True), done.set()))
    flusher.start()
    assert not done.wait(0.3)
    assert log.finish_tail_write(plan) == plan.tail
    assert done.wait(30)
    flusher.join()
    assert store.stats()["addresses"]["synced_until"] == store.tail_address
    assert check_consistent(store, raws) == list(raws)


def test_store_flush_and_checkpoint_sync_for_waiters(open_store, generated, faulty_disk, store_path, tmp_path):
    """flush(durable=True) and checkpoint() use the same sync: synced_until
    reaches the tail, and a power cut keeps everything below it."""
    raws = generated("zeek_logs", 600)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:300]))
    assert store.stats()["addresses"]["synced_until"] < store.tail_address
    assert store.flush(durable=True) == store.tail_address == store.stats()["addresses"]["synced_until"]
    store.ingest(_body(raws[300:]))
    info = store.checkpoint()
    assert store.stats()["addresses"]["synced_until"] == info.tail_address == store.tail_address
    faulty_disk.power_cut_copy(store_path, tmp_path / "cut")
    other = open_store(tmp_path / "cut")
    assert check_consistent(other, raws) == list(raws)
    assert other.stats()["recovery"]["checkpoint_id"] == info.checkpoint_id


def test_recovered_records_are_synced_before_new_durable_ones(open_store, generated, faulty_disk, store_path,
                                                               tmp_path):
    """A killed process leaves written, unsynced records in the page cache;
    the next open fsyncs them before acknowledging anything after them, or a
    power cut would leave a hole that recovery cuts the acknowledged records at."""
    raws = generated("zeek_logs", 1000)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:600]))
    store.flush(durable=False)
    shutil.copytree(store_path, tmp_path / "killed")  # what a SIGKILL now leaves: written, not synced
    other = open_store(tmp_path / "killed")
    other.ingest(_body(raws[600:]), durable=True)
    faulty_disk.power_cut_copy(tmp_path / "killed", tmp_path / "cut")
    assert check_consistent(open_store(tmp_path / "cut"), raws) == list(raws)


_SELF_KILLER = textwrap.dedent("""
    import os, signal, sys, threading, shoal
    path, data = sys.argv[1], sys.argv[2]
    lines = open(data, "rb").read().split(b"\\n")
    s = shoal.open(path, page_size_bytes=16384, memory_budget_bytes=65536, segment_size_bytes=65536)
    s.register_psf("path", "_path")
    lock = threading.Lock()
    acks = [0]

    def work(t):
        for k in range(t * 40, len(lines), 120):
            s.ingest(b"\\n".join(lines[k:k + 40]), durable=True)
            with lock:
                print(k, flush=True)
                acks[0] += 1
                if acks[0] == 30:  # acknowledged: die without closing
                    os.kill(os.getpid(), signal.SIGKILL)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")


@pytest.mark.crash
def test_acknowledged_durable_ingests_survive_sigkill(generated, tmp_path, tiny_config):
    raws = list(generated("zeek_logs", 2400))
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(raws))
    path = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", _SELF_KILLER, str(path), str(data)], capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    acked = [int(x) for x in proc.stdout.split()]
    assert len(acked) == 30
    store = shoal.open(path, tiny_config)
    try:
        stored = check_consistent(store, raws)
        for k in acked:
            assert set(raws[k:k + 40]) <= set(stored)
    finally:
        store.close()


# ---- disk full and I/O errors ----

def _assert_disk_full(exc_info, what="segment-"):
    msg = str(exc_info.value)
    assert "no space left on device" in msg and what in msg, msg
    assert exc_info.value.errno == errno.ENOSPC


def test_disk_full_in_a_durable_ingest_then_retry(open_store, generated, faulty_disk, store_path):
    raws = generated("zeek_logs", 1500)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:500]), durable=True)
    acked = check_consistent(store)
    faulty_disk.fail("pwrite", after_bytes=0)
    with pytest.raises(shoal.DiskFull) as e:
        store.ingest(_body(raws[500:1000]), durable=True)
    _assert_disk_full(e)
    # Reads answer as before; the failed call's records are stored (in
    # memory), not durable: synced_until stays below them.
    now = check_consistent(store, raws)
    assert now[:len(acked)] == acked
    stats = store.stats()["addresses"]
    assert stats["synced_until"] < stats["tail"]
    with pytest.raises(shoal.DiskFull):  # still full: the retry fails too
        store.flush(durable=True)
    faulty_disk.heal()
    store.flush(durable=True)  # the retry writes what failed
    assert store.stats()["addresses"]["synced_until"] == store.tail_address
    store.ingest(_body(raws[1000:]), durable=True)
    store.checkpoint()
    expected = check_consistent(store, raws)
    store.close()
    store = open_store()
    assert check_consistent(store, raws) == expected
    assert store.stats()["recovery"]["dropped"] == []


def test_disk_full_in_the_background_flush(open_store, generated, faulty_disk):
    """Buffered ingest over many pages: the flusher's write fails, the next
    page turn retries and raises; reads go on; after the fault clears,
    ingest goes on and everything reaches the disk."""
    raws = generated("zeek_logs", 6000)
    store = open_store()
    _register(store)
    page = store.config.page_size_bytes
    faulty_disk.fail("pwrite", after_bytes=3 * page)
    with pytest.raises(shoal.DiskFull) as e:
        for b in _batches(raws[:5000], 50):
            store.ingest(_body(b))
    _assert_disk_full(e)
    held = check_consistent(store, raws)
    assert 0 < len(held) < 5000
    with pytest.raises(shoal.DiskFull):
        store.ingest(_body(raws[5000:5100]))  # a page turn retries, and fails again
    faulty_disk.heal()
    store.ingest(_body(raws[5000:]))
    expected = check_consistent(store, raws)
    store.close()
    store = open_store()
    assert check_consistent(store, raws) == expected


def test_a_failed_page_turn_changes_nothing(open_store, generated, monkeypatch):
    """A page turn that cannot recycle a frame (its page's write failed)
    raises before it seals the tail page: otherwise the page would be queued
    while still the tail, and its later records counted as written."""
    raws = generated("zeek_logs", 3000)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:1000]))  # every frame in use: the next turns recycle
    log = store._log
    real_wait = log.wait_flushed

    def failing(address):
        raise shoal.DiskFull("write to segment-x failed: no space left on device")

    monkeypatch.setattr(log, "wait_flushed", failing)
    with pytest.raises(shoal.DiskFull):
        for raw in raws[1000:2000]:
            store.ingest(raw)
    tail_page = (store.tail_address - 1) >> log.page_bits  # the page holding the last record
    assert tail_page not in log._queue  # not sealed: the next turn seals it
    monkeypatch.setattr(log, "wait_flushed", real_wait)
    store.ingest(_body(raws[2000:]), durable=True)
    expected = check_consistent(store, raws)
    store.close()
    assert check_consistent(open_store(), raws) == expected


def test_fsync_failure_reaches_every_waiter_and_leaves_the_log_read_only(open_store, generated, faulty_disk):
    raws = generated("zeek_logs", 1200)
    batches = _batches(raws[400:], 8)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:400]), durable=True)
    acked = check_consistent(store)
    faulty_disk.fsync_delay_s = 0.01
    faulty_disk.fail("fsync", nth=None, errno=errno.EIO)
    failures: list[BaseException] = []

    def work(i):
        try:
            store.ingest(_body(batches[i]), durable=True)
        except shoal.NativeIOError as exc:
            failures.append(exc)

    assert _run_threads(8, work) == []
    assert len(failures) == 8  # no durable ingest was acknowledged
    assert any("fsync of" in str(f) and "segment-" in str(f) for f in failures), failures
    faulty_disk.heal()
    for call in (lambda: store.ingest(_body(raws[:10])), store.flush, store.checkpoint):
        with pytest.raises(shoal.NativeIOError, match="reopen the store"):
            call()
    held = check_consistent(store, raws)  # reads go on
    assert held[:len(acked)] == acked
    store.close()  # does not raise: the failure was reported
    store = open_store()
    assert check_consistent(store, raws)[:len(acked)] == acked
    store.ingest(_body(raws[:10]), durable=True)


@pytest.mark.parametrize("failing", ["index", "metadata", "fsync"])
def test_failed_checkpoint_keeps_the_previous_one(open_store, generated, faulty_disk, store_path, failing):
    raws = generated("zeek_logs", 1500)
    store = open_store()
    _register(store)
    store.ingest(_body(raws[:500]))
    first = store.checkpoint()
    store.ingest(_body(raws[500:1000]))
    store.flush(durable=True)
    if failing == "fsync":
        faulty_disk.fail("fsync", where="ckpt-000002.json")
    else:
        faulty_disk.fail("write", where=f"ckpt-000002.{'index' if failing == 'index' else 'json'}")
    with pytest.raises(shoal.DiskFull) as e:
        store.checkpoint()
    _assert_disk_full(e, "ckpt-000002")
    ckpt_dir = store_path / "checkpoints"
    assert store.checkpoints() == [first.checkpoint_id]
    assert sorted(os.listdir(ckpt_dir)) == ["ckpt-000001.index", "ckpt-000001.json", "ckpt-000001.tally"]
    check_consistent(store, raws)  # reads go on
    store.ingest(_body(raws[1000:1100]))  # and so do writes
    store.close()
    store = open_store()  # from the previous checkpoint, replaying the rest
    rec = store.stats()["recovery"]
    assert rec["checkpoint_id"] == first.checkpoint_id and rec["dropped"] == []
    assert check_consistent(store, raws) == list(raws[:1100])
    faulty_disk.heal()
    assert store.checkpoint().checkpoint_id == 2


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs (skipped where mounting is not allowed, e.g. not root)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                       check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_psf_change_that_cannot_be_saved_is_undone(open_store, generated, faulty_disk, store_path):
    """Disk full while psfs.json is written: register_psf / deregister_psf
    raise DiskFull and the registry is as before, in memory too, so no PSF
    claims to index records it did not; once the disk heals, answers equal
    the oracle's, before and after a reopen."""
    raws = generated("zeek_logs", 1200)
    store = open_store()
    store.register_psf("path", "_path")
    store.ingest(_body(raws[:400]))
    faulty_disk.fail("fsync", where="psfs.json.", nth=None)  # the new file's fsync, before it replaces the old
    with pytest.raises(shoal.DiskFull):
        store.register_psf("resp_p", '"id.resp_p"')
    with pytest.raises(shoal.DiskFull):
        store.register_psf("proto", lambda p: p, fields=["proto"])
    with pytest.raises(shoal.DiskFull):
        store.deregister_psf("path")
    assert [(p.name, p.active) for p in store.psfs()] == [("path", True)]
    with pytest.raises(shoal.PSFNotFound):
        store.psf("resp_p")
    store.ingest(_body(raws[400:800]))
    faulty_disk.heal()
    store.register_psf("resp_p", '"id.resp_p"')
    store.ingest(_body(raws[800:]))
    assert check_consistent(store, raws) == list(raws)
    store.close()
    assert check_consistent(open_store(store_path), raws) == list(raws)


def test_a_psf_change_whose_directory_fsync_fails_is_kept(open_store, generated, faulty_disk, store_path):
    """The registry file replaced, then the directory's fsync fails: the
    error is raised, and the change stands (the file holds it), indexed."""
    raws = generated("zeek_logs", 600)
    store = open_store()
    store.ingest(_body(raws[:300]))
    faulty_disk.fail("fsync", where=str(store_path), nth=2, errno=errno.EIO)  # 1: the new file, 2: the directory
    with pytest.raises(shoal.NativeIOError):
        store.register_psf("path", "_path")
    assert store.psf("path").active
    store.ingest(_body(raws[300:]))
    assert check_consistent(store, raws) == list(raws)
    store.close()
    assert check_consistent(open_store(store_path), raws) == list(raws)


def test_a_real_full_disk(tiny_tmpfs, generated, tiny_config):
    """ENOSPC from a real file system: the ingest that fills it raises
    DiskFull, reads go on, and once the file system grows a flush retries."""
    raws = generated("zeek_logs", 4000)
    store = shoal.open(tiny_tmpfs / "store", tiny_config)
    try:
        _register(store)
        with pytest.raises(shoal.DiskFull) as e:
            for b in _batches(raws, 40):
                store.ingest(_body(b), durable=True)
        _assert_disk_full(e)
        held = check_consistent(store, raws)
        assert held
        subprocess.run(["mount", "-o", "remount,size=4m", "tmpfs", str(tiny_tmpfs)], check=True)
        store.flush(durable=True)
        store.checkpoint()
    finally:
        store.close()
    store = shoal.open(tiny_tmpfs / "store", tiny_config)
    try:
        assert check_consistent(store, raws) == held
    finally:
        store.close()


def test_leftovers_of_a_killed_checkpoint_are_removed_on_open(open_store, generated, store_path):
    """A checkpoint killed midway leaves a temp file, or an index whose
    metadata was never written: neither is loaded, and both go on open."""
    raws = generated("zeek_logs", 300)
    store = open_store()
    _register(store)
    store.ingest(_body(raws))
    store.checkpoint()
    store.close()
    ckpt = store_path / "checkpoints"
    (ckpt / "ckpt-000002.index").write_bytes((ckpt / "ckpt-000001.index").read_bytes())
    (ckpt / "ckpt-000002.json.tmp").write_bytes(b'{"tail_address": 99')
    store = open_store()
    assert sorted(os.listdir(ckpt)) == ["ckpt-000001.index", "ckpt-000001.json", "ckpt-000001.tally"]
    assert store.stats()["recovery"]["checkpoint_id"] == 1
    assert check_consistent(store, raws) == list(raws)
