"""Peak RSS while ingesting 10x the memory budget, against budget + index +
150 MB.

Each round runs a child process (a fresh interpreter, so the peak is its
own) that opens a store with memory budget B and 3 PSFs and ingests the
generated events from their file (streamed, as a path) until 10 x B bytes
went in; it reports VmHWM (peak resident set, /proc/self/status) before and
after, and the index size (Store.stats()["index"]["bytes"]). The target is
peak <= B + index + 150 MB; "baseline" is the interpreter with shoal
imported and the store open, before any ingest.

    .venv/bin/python benchmarks/memory.py [--quick] [--runs 3] [--budget-mb 64]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, arg_parser, events_file, page_config, summary, table, target, target_table, write_result  # noqa: E402,E501

ALLOWANCE_BYTES = 150 * MB


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(path: Path, budget: int) -> None:
    import shutil
    import tempfile

    import shoal
    from _peers import psfs, register
    config = page_config(budget * 10, 0.1)
    directory = tempfile.mkdtemp(prefix="shoal-bench-")
    try:
        store = shoal.open(directory, **config)
        register(store, psfs("events", 3))
        base = vm_hwm()
        target_bytes = 10 * config["memory_budget_bytes"]
        ingested = records = 0
        while ingested < target_bytes:
            r = store.ingest(path)
            ingested += r.input_bytes
            records += r.ingested
        stats = store.stats()
        peak = vm_hwm()
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"config": config, "baseline_rss": base, "peak_rss": peak, "ingested_bytes": ingested,
                      "records": records, "index_bytes": stats["index"]["bytes"],
                      "memory_bytes": stats["memory_bytes"]}))


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--budget-mb", type=float, help="memory budget (default 64; --quick 8)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run the child on this file
    args = ap.parse_args(argv)
    budget = int((args.budget_mb or (8 if args.quick else 64)) * (1 << 20))
    if args.child:
        child(args.child, budget)
        return {}
    path = events_file(20_000 if args.quick else 200_000)
    rounds = []
    for _ in range(args.runs):
        p = subprocess.run([sys.executable, __file__, "--child", str(path), "--budget-mb", str(budget / (1 << 20))],
                           capture_output=True, text=True, check=True)
        rounds.append(json.loads(p.stdout.strip().splitlines()[-1]))
    r0 = rounds[0]
    budget = r0["config"]["memory_budget_bytes"]
    peak = summary([r["peak_rss"] for r in rounds])
    index = max(r["index_bytes"] for r in rounds)
    allowed = budget + index + ALLOWANCE_BYTES
    payload = {"runs": args.runs, "quick": args.quick, "config": r0["config"], "file": path.name,
               "ingested_bytes": r0["ingested_bytes"], "records": r0["records"], "index_bytes": index,
               "baseline_rss": summary([r["baseline_rss"] for r in rounds]), "peak_rss": peak,
               "allowed_bytes": allowed, "rounds": rounds}
    rows = [["memory budget", f"{budget / MB:,.1f}"], ["index", f"{index / MB:,.1f}"],
            ["allowance", f"{ALLOWANCE_BYTES / MB:,.0f}"], ["= allowed peak", f"{allowed / MB:,.1f}"],
            ["baseline RSS (interpreter, store open)", f"{payload['baseline_rss']['median'] / MB:,.1f}"],
            ["peak RSS (VmHWM) min/med/max",
             "/".join(f"{peak[k] / MB:,.1f}" for k in ("min", "median", "max"))]]
    print(f"ingest of {r0['ingested_bytes'] / MB:,.0f} MB ({r0['records']:,} records, "
          f"{r0['ingested_bytes'] / budget:.1f}x the budget) from {path.name}; {args.runs} child processes")
    print(table(rows, ["", "MB"], align="lr"))
    payload["targets"] = [target("peak RSS ingesting 10x the memory budget", "<= budget + index + 150 MB",
                                 peak["median"] / MB, allowed / MB, unit="MB", higher_is_better=False,
                                 detail=f"allowed {allowed / MB:,.0f} MB")]
    print()
    print(target_table(payload["targets"]))
    out = write_result("memory", payload, args.out)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
