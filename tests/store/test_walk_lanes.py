"""Whole chain walks in lanes (shoal_walk_all): the pieces between the value
tally's samples walked in lockstep give the same addresses, in the same
order, as the plain walk and as the oracle, over windows of the log, for a
PSF registered midway, across page turns and segment files on disk, after
a compaction, after a reopen, and while ingest appends."""
from __future__ import annotations

import os
import random
import threading

import pytest
from oracle import Log, python_value

from shoal import StoreConfig
from shoal.psf import canonical, value_hash
from shoal.store import query as Q


def _plain(store, psf_id, canon, lo, hi, start=0):
    p = store._planner
    job, out, canon_c = Q._walk_job(psf_id, canon, value_hash(psf_id, canon), lo, hi, 1 << 20)
    job.next_kp = start
    got = []
    while True:
        rc = Q.lib.shoal_walk(job, p.log.c, p.index.ptr)
        assert rc >= 0
        got += Q.ffi.unpack(out, job.n_out)
        if job.done:
            return got


def _lanes(store, psf_id, canon, lo, hi, start=0):
    p = store._planner
    stats = {}
    got = list(Q.walk_all(p.log, p.index, p.tally, psf_id, canon, value_hash(psf_id, canon), lo, hi, p.gate,
                          start=start, stats=stats))
    _lanes.threads = max(getattr(_lanes, "threads", 0), stats["threads"])
    return got, stats["pieces"]


# Compressed: most of the log in cold frames, where the pieces are shared by
# threads (walk_all.c's walk_threads) on a machine with more than one core.
COLD = StoreConfig(page_size_bytes=64 * 1024, memory_budget_bytes=256 * 1024, segment_size_bytes=1 << 20,
                   compression="zstd")


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_lanes_walk_as_the_plain_walk_and_the_oracle(open_store, records, source, compression):
    raws = list(records(source, "zeek_logs", 24000))
    _lanes.threads = 0
    store = open_store(config=COLD if compression == "zstd" else None)
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws[:8000]))
    store.register_psf("late", "_path")  # indexes from here on only
    store.ingest(b"\n".join(raws[8000:]))
    assert store.wait_compressed(60)
    if compression == "zstd":
        assert store.stats()["compression"]["cold_disk_bytes"] > 0
    log = Log(raws)
    log.bind(store)
    counts = log.value_counts("_path")
    values = [python_value(k) for k, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:3]]
    rng = random.Random(5)
    begin, tail = store.begin_address, store.tail_address
    windows = [(begin, tail)] + [tuple(sorted(rng.randrange(begin, tail) for _ in range(2))) for _ in range(6)]
    used = 0
    for name in ("path", "late"):
        psf = store.psf(name)
        first = psf.ranges[0][0]
        for v in values:
            canon = canonical(v)
            for lo, hi in windows:
                lo = max(lo, first)
                want = [a for a, _ in log.query("_path", v, from_address=lo, to_address=hi)]
                got, pieces = _lanes(store, psf.id, canon, lo, hi)
                used += pieces
                assert got == want == _plain(store, psf.id, canon, lo, hi), (name, v, lo, hi)
            # from a key pointer in the middle of the chain (a walk resumed there)
            whole = _plain(store, psf.id, canon, first, tail)
            if len(whole) > 3000:
                job, out, canon_c = Q._walk_job(psf.id, canon, value_hash(psf.id, canon), first, tail, 1000)
                assert Q.lib.shoal_walk(job, store._planner.log.c, store._planner.index.ptr) == Q.lib.SHOAL_OUT_FULL
                rest, pieces = _lanes(store, psf.id, canon, first, tail, start=job.next_kp)
                assert rest == whole[1000:] and pieces > 0
        # the query: the chain (in lanes) where the PSF was active, a scan before
        assert [a for a, _ in log.query("_path", values[0])] == [r.address for r in store.query(name, values[0])]
    assert used > 0, "no walk went through the lanes"
    if compression == "zstd" and (os.cpu_count() or 1) > 1:
        assert _lanes.threads > 1, "no walk of cold frames shared its pieces among threads"


def test_lanes_after_compaction_and_reopen(open_store, generated, store_path):
    raws = list(generated("zeek_logs", 20000))
    store = open_store()
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    cut = log.addresses[len(log) // 3]
    r = store.compact(cut)
    want = [r_.address for r_ in store.scan("_path == 'dns'")]
    assert [r_.address for r_ in store.query("path", "dns")] == want
    assert all(a >= r.begin_after for a in want)
    store.checkpoint()
    store.close()
    store = open_store()
    psf = store.psf("path")
    got, pieces = _lanes(store, psf.id, canonical("dns"), store.begin_address, store.tail_address)
    assert got == want and pieces > 0  # the samples came back with the checkpoint's tally


def test_lanes_while_ingest_appends(open_store, generated):
    raws = list(generated("zeek_logs", 30000))
    store = open_store()
    store.register_psf("path", "_path")
    store.ingest(b"\n".join(raws[:15000]))
    tail = store.tail_address
    want = [r.address for r in store.query("path", "dns", to_address=tail)]
    stop = threading.Event()

    def writer():
        for k in range(15000, 30000, 500):
            if stop.is_set():
                return
            store.ingest(b"\n".join(raws[k:k + 500]))

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(20):  # records appended meanwhile lie above `tail`: the answer below it is fixed
            assert [r.address for r in store.query("path", "dns", to_address=tail)] == want
    finally:
        stop.set()
        t.join()
    everything = [r.address for r in store.query("path", "dns")]
    assert everything == [r.address for r in store.scan("_path == 'dns'")]
