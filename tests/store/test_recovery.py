"""Close and reopen: from a checkpoint, by replaying the log, both; the PSF
registry persists; answers after reopening equal the oracle; ingest goes on.
Torn and corrupt tails lose only the damaged record and what follows it.
Durable ingest survives a copy of the directory taken while the store is open
and a SIGKILL of the writing process."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from oracle import ALL, Log, as_pairs, sample_values

import shoal

PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "dns_udp": "_path == 'dns' && proto == 'udp'",
        "n_answers": "length(answers)"}


def _register(store, names=PSFS):
    for name, definition in names.items():
        store.register_psf(name, definition)


def _ingest(store, log, raws):
    res = store.ingest(b"\n".join(raws) + b"\n")
    assert (res.ingested, res.rejected) == (len(raws), 0)
    log.extend(raws)


def _check_all(store, log, psfs=PSFS):
    log.bind(store)
    for name, definition in psfs.items():
        for value in sample_values(log.value_counts(definition), 2) + [True]:
            for order in ("newest", "oldest"):
                assert as_pairs(store.query(name, value, order=order)) == \
                    log.query(definition, value, order=order), (name, value)


@pytest.mark.parametrize("how", ["checkpoint", "replay", "checkpoint-then-more"])
def test_reopen(open_store, generated, how):
    raws = generated("zeek_logs", 9000)
    log = Log()
    store = open_store()
    _register(store)
    _ingest(store, log, raws[:4000])
    if how != "replay":
        info = store.checkpoint()
        assert info.tail_address == store.tail_address and info.records == 4000
    if how != "checkpoint":
        _ingest(store, log, raws[4000:6000])
    tail = store.tail_address
    psfs_before = [(p.name, p.id, p.definition, p.ranges) for p in store.psfs()]
    store.close()

    store = open_store()
    rec = store.stats()["recovery"]
    assert store.tail_address == tail and rec["dropped"] == []
    assert rec["checkpoint_id"] == (None if how == "replay" else 1)
    log.bind(store)
    after_ckpt = {"checkpoint": 0, "replay": 6000, "checkpoint-then-more": 2000}[how]
    assert rec["replayed_records"] == after_ckpt
    assert store.stats()["records"] == len(log)
    assert [(p.name, p.id, p.definition, p.ranges) for p in store.psfs()] == psfs_before
    _check_all(store, log)

    _ingest(store, log, raws[6000:])  # ingest goes on after reopening
    _check_all(store, log)
    store.close()
    store = open_store()  # and once more, without a new checkpoint
    _check_all(store, log)


def test_psf_changes_after_the_checkpoint_persist(open_store, generated):
    raws = generated("zeek_logs", 6000)
    log = Log()
    store = open_store()
    store.register_psf("path", "_path")
    _ingest(store, log, raws[:2000])
    store.checkpoint()
    store.deregister_psf("path")
    store.register_psf("proto", "proto")
    _ingest(store, log, raws[2000:4000])
    store.register_psf("path", "_path")
    _ingest(store, log, raws[4000:])
    store.deregister_psf("proto")
    ranges = {p.name: p.ranges for p in store.psfs()}
    store.close()
    store = open_store()
    assert {p.name: p.ranges for p in store.psfs()} == ranges
    assert store.psf("path").active and not store.psf("proto").active
    _check_all(store, log, {"path": "_path", "proto": "proto"})


def test_callable_psf_after_reopen(open_store, generated):
    raws = generated("github_events", 30)
    log = Log()

    def big(size):
        return size is not None and size > 3

    store = open_store()
    store.register_psf("big", big, fields=["payload.size"])
    _ingest(store, log, raws[:20])
    store.close()
    store = open_store()
    psf = store.psf("big")
    assert psf.kind is shoal.PSFKind.CALLABLE and not psf.active
    _ingest(store, log, raws[20:])
    with pytest.raises(shoal.PSFError):
        list(store.query("big", True))  # records after reopen need the function
    store.register_psf("big", big, fields=["payload.size"])
    log.bind(store)
    for order in ("newest", "oldest"):
        assert as_pairs(store.query("big", True, order=order)) == \
            log.query(big, True, fields=["payload.size"], order=order)


def test_layout_is_fixed_but_memory_may_change(open_store, generated, tiny_config, store_path):
    raws = generated("github_events", 30)
    log = Log()
    store = open_store()
    _ingest(store, log, raws)
    store.close()
    with pytest.raises(shoal.InvalidArgument):
        shoal.open(store_path, tiny_config, page_size_bytes=2 * tiny_config.page_size_bytes)
    with pytest.raises(shoal.InvalidArgument):
        shoal.open(store_path, segment_size_bytes=8 * tiny_config.page_size_bytes)
    store = open_store(memory_budget_bytes=2 * tiny_config.page_size_bytes)
    assert store.config.page_size_bytes == tiny_config.page_size_bytes
    log.bind(store)
    store.close()
    store = shoal.open(store_path)  # no settings: the stored layout
    try:
        assert store.config.page_size_bytes == tiny_config.page_size_bytes
        log.bind(store)
    finally:
        store.close()


# ---- torn and corrupt tails ----

def _segment_offset(store, address):
    cfg = store.config
    pages_per_segment = cfg.segment_size_bytes // cfg.page_size_bytes
    page = address // cfg.page_size_bytes
    seg = page // pages_per_segment
    path = store.path / "log" / f"segment-{seg:06d}.log"
    return path, (page % pages_per_segment) * cfg.page_size_bytes + address % cfg.page_size_bytes


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("cut", ["header", "payload", "last-byte", "flip"])
def test_torn_tail(open_store, generated, checkpoint, cut):
    raws = generated("zeek_logs", 3000)
    log = Log()
    store = open_store()
    _register(store)
    _ingest(store, log, raws[:1500])
    if checkpoint:
        store.checkpoint()
    _ingest(store, log, raws[1500:])
    log.bind(store)
    last = log.addresses[-1]
    size = store.tail_address - last
    path, off = _segment_offset(store, last)
    store.close()

    if cut == "flip":
        with open(path, "r+b") as f:
            f.seek(off + size - 10)
            b = f.read(1)
            f.seek(off + size - 10)
            f.write(bytes([b[0] ^ 0x20]))
    else:
        keep = {"header": 20, "payload": size // 2, "last-byte": size - 1}[cut]
        assert os.path.getsize(path) >= off + keep
        os.truncate(path, off + keep)

    store = open_store()
    assert store.stats()["recovery"]["dropped"] != []
    assert store.tail_address == last
    survivors = Log(raws[:-1])
    survivors.bind(store)
    _check_all(store, survivors)
    assert store.get(last) is None
    # The log goes on from the last good record.
    _ingest(store, survivors, raws[-5:])
    _check_all(store, survivors)
    store.close()
    store = open_store()
    assert store.stats()["recovery"]["dropped"] == []
    _check_all(store, survivors)


def test_corrupt_record_mid_log_drops_it_and_everything_after(open_store, generated):
    raws = generated("jenkins_jobs", 875)
    log = Log()
    store = open_store()
    _register(store, {"color": "color"})
    _ingest(store, log, raws)
    log.bind(store)
    victim = len(raws) // 2
    path, off = _segment_offset(store, log.addresses[victim])
    store.close()
    with open(path, "r+b") as f:
        f.seek(off + 40)
        b = f.read(1)
        f.seek(off + 40)
        f.write(bytes([b[0] ^ 0x01]))
    store = open_store()
    assert store.stats()["recovery"]["dropped"] != []
    survivors = Log(raws[:victim])
    _check_all(store, survivors, {"color": "color"})


# ---- durability ----

def test_durable_ingest_is_on_disk_while_open(open_store, generated, store_path, tmp_path):
    raws = generated("statuses", 100)
    store = open_store()
    _register(store, {"lang": "lang"})
    store.ingest(b"\n".join(raws[:60]), durable=True)
    store.ingest(b"\n".join(raws[60:]), durable=True)
    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    other = shoal.open(copy)
    try:
        log = Log(raws)
        _check_all(other, log, {"lang": "lang"})
    finally:
        other.close()


def test_durable_ingest_record_by_record_within_a_page(open_store, generated, store_path, tmp_path):
    """Many durable flushes of one page: each writes from the block holding
    the flushed end on (not the page prefix again); a copy taken while open
    still holds every record, byte for byte."""
    raws = generated("jenkins_jobs", 200)  # ~100 B each: dozens per 16 KiB page
    store = open_store()
    _register(store, {"color": "color"})
    for raw in raws:
        store.ingest(raw, durable=True)
    copy = tmp_path / "copy"
    shutil.copytree(store_path, copy)
    other = shoal.open(copy)
    try:
        _check_all(other, Log(raws), {"color": "color"})
    finally:
        other.close()


_WRITER = textwrap.dedent("""
    import sys, shoal
    path, data, durable = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    lines = open(data, "rb").read().split(b"\\n")
    s = shoal.open(path, page_size_bytes=16384, memory_budget_bytes=65536, segment_size_bytes=65536)
    s.register_psf("path", "_path")
    done = 0
    while True:
        for k in range(0, len(lines), 50):
            s.ingest(b"\\n".join(lines[k:k + 50]), durable=durable)
            done += len(lines[k:k + 50])
            print(done, flush=True)
""")


@pytest.mark.crash
@pytest.mark.parametrize("durable", [True, False])
def test_sigkill_during_ingest(generated, tmp_path, tiny_config, durable):
    """Killed while ingesting: the store reopens to a prefix of what was
    written, holding at least everything acknowledged as durable."""
    raws = list(generated("zeek_logs", 2000))
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(raws))
    path = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(data), "1" if durable else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acked: list[int] = []
    reader = threading.Thread(target=lambda: acked.extend(int(x) for x in proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while (not acked or acked[-1] < 3000) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(5)
    assert acked and acked[-1] >= 3000, f"the writer did not get far enough: {proc.stderr.read()[-2000:]!r}"
    store = shoal.open(path, tiny_config)
    try:
        stored = [r.raw for r in store.scan(ALL, order="oldest")]
        if durable:
            assert len(stored) >= acked[-1]  # everything acknowledged as durable
        expected = (raws * (len(stored) // len(raws) + 1))[: len(stored)]
        assert stored == expected  # a prefix of what was written, nothing else
        log = Log(expected)
        _check_all(store, log, {"path": "_path"})
    finally:
        store.close()
