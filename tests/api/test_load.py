"""A load test at CI size: 8 concurrent clients against a real `shoal serve`.

The workload and the audit are benchmarks/load.py's (the full run is that
script; benchmarks/README.md says how to run it): 4 ingesters (NDJSON, gzip,
a JSON array, durable), 2 queriers (/query one/all/any/predicate, /scan,
GET /records/{address}, a churned PSF), 1 client registering and
deregistering PSFs, 1 checkpointing and compacting, on loopback, over a keyed
store (every record has a unique `lid`, so compaction copies every record
below its cut instead of dropping it) with an 8 MiB memory budget. Ingest is
paced over ~15 s so the other clients run beside it the whole time, and
stops by itself (time or record count, whichever comes first).

Asserted: no answer outside the documented ones (a 500 or a transport error
fails); each kind of request succeeded at least once and some compaction
copied records; every acknowledged record is stored exactly once, byte for
byte, and nothing else is; /stats counts what the scan finds; queries after
ingest equal a plain orjson + jmespath loop over the stored records; the
server's peak anonymous memory stays within budget + index + 150 MB; the
server then stops cleanly on SIGTERM. Latencies are printed, not asserted
(run with -s to see the report).
"""
from __future__ import annotations

import importlib.util
import sys

import httpx
import pytest

from serverproc import REPO, ServerProcess

pytestmark = pytest.mark.slow

SECONDS = 15
MAX_RECORDS = 45_000
BUDGET = "8MiB"
BUDGET_BYTES = 8 << 20


def _load_module():
    spec = importlib.util.spec_from_file_location("shoal_benchmark_load", REPO / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


load = _load_module()


def test_eight_clients_against_a_real_server(tmp_path):
    records = load.Records(load.generated_templates(5_000, seed=3))
    pick = load.choices(records)
    with ServerProcess(tmp_path / "data", "--memory", BUDGET, "--page-size", "512KiB", "--key", load.KEY,
                       module="shoal.cli") as server:
        sampler = load.MemorySampler(server.proc.pid)
        sampler.start()
        run = load.Run(server.url, records, seconds=SECONDS, max_records=MAX_RECORDS,
                       rate_records_s=MAX_RECORDS / SECONDS, batch=500)
        ingest_s = run.go(pick)
        result = load.audit(server.url, records, run.acked, run.unacked, pick)
        peak = sampler.stop()
        stats = httpx.get(server.url + "/stats", timeout=30).json()
        rc, _, output = server.stop()

    print(f"\n{len(run.acked):,} records acknowledged in {ingest_s:.1f} s, {len(run.compactions)} compactions, "
          f"peak RssAnon {peak['RssAnon'] / 1e6:.1f} MB, VmHWM {peak['VmHWM'] / 1e6:.1f} MB")
    print(load.latency_table(run.tally))

    assert run.tally.unexpected == []
    assert rc == 0, output[-3000:]
    for kind in load.KIND_ORDER:
        assert run.tally.latencies.get(kind), f"no {kind} request succeeded: {dict(run.tally.answers)}"
    assert any(c["records_copied"] for c in run.compactions), run.compactions

    # every acknowledged record exactly once, as sent; nothing else
    assert run.acked and run.unacked == []
    assert (result["lost_count"], result["duplicates"], result["altered"], result["unknown"]) == (0, [], [], [])
    assert result["version_duplicates"] == []
    assert result["scanned"] == result["versions_scanned"] == result["stats_records"] == len(run.acked)

    # queries after ingest equal the oracle
    for q in result["queries"]:
        assert q["equal"] and q["newest_first"] and q["bytes_equal"], q
        assert q["expected"] > 0, q  # the oracle found something to compare

    bound = load.memory_bound(BUDGET_BYTES, stats["index"]["bytes"])
    assert peak["RssAnon"] <= bound, (peak, bound)
