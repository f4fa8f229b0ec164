"""Larger than memory, at small scale: a log many times the memory budget.
Every query equals the oracle (chains run through pages that live only in
segment files), the hash index doubles as it fills, and a process ingesting
10x its budget keeps its resident set bounded (the large scale is
benchmarks/memory.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from oracle import ALL, Log, as_pairs, sample_values

from shoal import sample

PAGE = 4096
BUDGET = 8 * PAGE
PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "orig_h": '"id.orig_h"', "uid": "uid",
        "dns_udp": "_path == 'dns' && proto == 'udp'"}
LATE = {"proto": "proto"}  # registered mid-stream: scanned below its registration


def test_queries_through_on_disk_pages_equal_the_oracle(open_store, generated):
    raws = generated("zeek_logs", 20_000)
    store = open_store(page_size_bytes=PAGE, memory_budget_bytes=BUDGET, segment_size_bytes=16 * PAGE,
                       index_bucket_bits=4)
    buckets0 = store.stats()["index"]["buckets"]
    for name, definition in PSFS.items():
        store.register_psf(name, definition)
    for k in range(0, len(raws), 500):
        store.ingest(b"\n".join(raws[k:k + 500]))
        if k == 10_000:
            store.register_psf("proto", LATE["proto"])
    st = store.stats()
    assert st["log_bytes"] >= 10 * BUDGET and st["memory_bytes"] <= BUDGET
    assert store.head_address >= store.tail_address - BUDGET, "all but the newest pages are on disk only"
    assert st["index"]["buckets"] >= 8 * buckets0, "the index doubled as it filled"
    assert st["index"]["entries"] > 4 * buckets0

    log = Log(raws)
    log.bind(store)
    for name, definition in {**PSFS, **LATE}.items():
        for value in sample_values(log.value_counts(definition), 3) + [True]:
            for order in ("newest", "oldest"):
                assert as_pairs(store.query(name, value, order=order)) == \
                    log.query(definition, value, order=order), (name, value, order)
    assert as_pairs(store.query("path", "dns", limit=7, from_address=log.addresses[5000])) == \
        log.query(PSFS["path"], "dns", limit=7, from_address=log.addresses[5000])
    conds = [("path", "dns"), ("dns_udp", True)]
    assert as_pairs(store.query_all(conds)) == log.query_all([(PSFS[n], v) for n, v in conds])
    assert as_pairs(store.query_any([("path", "ntp"), ("resp_p", 123)])) == \
        log.query_any([(PSFS["path"], "ntp"), (PSFS["resp_p"], 123)])
    assert as_pairs(store.scan(ALL, order="oldest")) == log.answer(range(len(log)), order="oldest")
    for i in (0, 1, 4999, 19_999):
        assert store.get(log.addresses[i]).raw == log.raws[i]


_CHILD = textwrap.dedent("""
    import json, sys, shoal
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    path, src, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = shoal.open(path, page_size_bytes=64 << 10, memory_budget_bytes=budget, segment_size_bytes=1 << 20,
                       index_bucket_bits=8)
    for name, expr in (("path", "_path"), ("resp_p", '"id.resp_p"'), ("uid", "uid")):
        store.register_psf(name, expr)
    base = hwm()
    ingested = 0
    while ingested < 10 * budget:
        ingested += store.ingest(src).input_bytes  # streamed from the .gz file
    st = store.stats()
    print(json.dumps({"base": base, "peak": hwm(), "ingested": ingested, "index": st["index"],
                      "memory": st["memory_bytes"], "log": st["log_bytes"]}))
    store.close()
""")


def test_rss_stays_bounded_at_ten_times_the_budget(tmp_path):
    budget = 4 << 20
    src = sample.write("zeek_logs", 30_000, tmp_path / "zeek.ndjson.gz")  # ~11 MB of records, ingested 4 times
    p = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "s"), str(src), str(budget)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["ingested"] >= 10 * budget and r["memory"] <= budget and r["log"] >= 10 * budget
    assert r["index"]["buckets"] > 256
    # Frames, the index, and a fixed allowance for batch buffers and the gzip stream.
    allowed = budget + r["index"]["bytes"] + (40 << 20)
    assert r["peak"] - r["base"] <= allowed, (r["peak"] - r["base"]) / 1e6
