"""The benchmark suite: every script in turn, then every target in one table.

`make bench` runs the standard sizes (~200 MB of generated events, 5 rounds;
about 3 minutes on a 2-core machine, 10 at most), `make bench-quick` the
--quick sizes (about 30 s; the figures mean nothing, the plumbing is
tested). Each script prints its own tables, with the peers beside shoal;
results go to benchmarks/results/suite-<time>/<script>.json and a summary
to benchmarks/results/suite-<time>.json.

    .venv/bin/python benchmarks/suite.py [--quick] [--runs 5] [--only ingest,query]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, arg_parser, events_file, target_table, write_result  # noqa: E402

# In order; each is benchmarks/<name>.py.
SCRIPTS = ["ingest", "ingest_threads", "http_ingest", "es_bulk", "durable", "query", "counts", "walks", "ranges", "tail", "keys", "recovery", "memory", "compaction", "space", "compression", "cluster"]


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--only", help="comma-separated scripts to run (default: all)")
    ap.set_defaults(runs=5)
    args = ap.parse_args(argv)
    scripts = args.only.split(",") if args.only else SCRIPTS
    stamp = int(time.time())
    out_dir = RESULTS / f"suite-{stamp}"
    events_file(20_000 if args.quick else 200_000)  # generate (or reuse) the data before any clock starts
    summary = {"quick": args.quick, "runs": args.runs, "scripts": {}, "targets": []}
    failed = []
    t_suite = time.perf_counter()
    for name in scripts:
        print(f"\n=== {name} ===", flush=True)
        out = out_dir / f"{name}.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--runs", str(args.runs), "--out", str(out)]
        if args.quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        seconds = time.perf_counter() - t0
        entry = {"seconds": seconds, "returncode": rc, "result": str(out)}
        if rc == 0 and out.exists():
            result = json.loads(out.read_text())
            for t in result.get("targets", []):
                summary["targets"].append(dict(t, script=name))
            if result.get("skipped"):
                entry["skipped"] = result["skipped"]
        else:
            failed.append(name)
        summary["scripts"][name] = entry
        print(f"({name}: {seconds:.0f} s)", flush=True)
    summary["seconds"] = time.perf_counter() - t_suite
    print(f"\n=== targets ({'quick sizes: not meaningful' if args.quick else 'standard sizes'}; "
          f"{summary['seconds']:.0f} s) ===")
    print(target_table(summary["targets"]))
    skipped = [n for n, e in summary["scripts"].items() if e.get("skipped")]
    if skipped:
        print(f"skipped: {', '.join(skipped)}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    path = write_result("suite", summary, RESULTS / f"suite-{stamp}.json")
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
