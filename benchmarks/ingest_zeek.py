"""Library ingest rate on the Zeek stream with 3 PSFs, beside the orjson floor.

Runs, in one process and interleaved so machine noise hits both alike:
  shoal      Store.ingest of the whole stream (bytes in memory) with PSFs
             `_path`, `query`, `"id.resp_p"`, appended to one open store
             after a warm-up ingest (steady state: frames are recycled)
  orjson     orjson.loads of every line plus extracting the same three fields
             (the floor of doing the same work in Python)
Prints records/s and MB/s (medians of --runs) and the ratio; writes JSON to
benchmarks/results/.

    .venv/bin/python benchmarks/ingest_zeek.py [--runs 5] [--lines N] [--spill]

--spill sets the memory budget to 1/10 of the data so the log goes to disk.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

import orjson

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import load_ndjson, repeat, summary, table, write_result  # noqa: E402

import shoal  # noqa: E402

PSFS = [("path", "_path"), ("query", "query"), ("resp_p", '"id.resp_p"')]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=0, help="use only the first N lines")
    ap.add_argument("--spill", action="store_true", help="memory budget = 1/10 of the data")
    args = ap.parse_args()

    data = load_ndjson("zeek_wrccdc2018.ndjson.gz")
    if args.lines:
        data = b"\n".join(data.split(b"\n", args.lines)[: args.lines]) + b"\n"
    lines = data.splitlines()
    n, size = len(lines), len(data)
    config = {}
    if args.spill:
        page = 1 << 20
        config = dict(page_size_bytes=page, memory_budget_bytes=max(2 * page, (size // 10) & ~(page - 1)))

    directory = tempfile.mkdtemp(prefix="shoal-bench-")
    store = shoal.open(directory, **config)
    for name, expr in PSFS:
        store.register_psf(name, expr)
    store.ingest(data)  # warm-up: frames allocated, steady state from here

    def run_shoal():
        # Each run appends the whole stream again to the same open store.
        r = store.ingest(data)
        assert r.ingested == n, (r.ingested, n)

    def run_orjson():
        out = []
        for line in lines:
            o = orjson.loads(line)
            out.append((o.get("_path"), o.get("query"), o.get("id.resp_p")))
        assert len(out) == n

    t_shoal, t_orjson = [], []
    for _ in range(args.runs):  # interleaved
        t_shoal += repeat(run_shoal, 1)
        t_orjson += repeat(run_orjson, 1)
    store.close()
    shutil.rmtree(directory, ignore_errors=True)
    s, o = summary(t_shoal), summary(t_orjson)
    rows = []
    for name, st in (("shoal ingest (3 PSFs)", s), ("orjson.loads + 3 fields", o)):
        med = st["median"]
        rows.append([name, f"{n / med:,.0f}", f"{size / med / 1e6:,.1f}", f"{st['min']:.3f}/{med:.3f}/{st['max']:.3f}"])
    print(f"Zeek stream: {n:,} records, {size / 1e6:.1f} MB, {args.runs} runs"
          f"{' (log spilling to disk)' if args.spill else ' (in memory)'}")
    print(table(rows, ["workload", "records/s", "MB/s", "s min/median/max"]))
    print(f"ratio shoal/orjson (median throughput): {o['median'] / s['median']:.2f}x")
    path = write_result("ingest_zeek", {"dataset": "zeek_wrccdc2018", "records": n, "bytes": size,
                                        "config": config, "shoal": s, "orjson": o})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
