"""Chain walks: `query_addresses` of `type == 'PushEvent'` on the real
GitHub events of ../shared/data (30 events replayed) and on generated
events, all records in memory, at two sizes, in the same rounds:

  lanes       shoal's walk (shoal_walk_all: the pieces between the value
              tally's samples walked 16 at a time in lockstep)
  plain       the same walk one key pointer after another (shoal_walk),
              the way every walk went before lanes
  addresses   Store.query_addresses, what a user calls (a Python int per
              address on top of the walk)

FishStore C++ is not installable here. The issue that asked for this
quotes it, measured on this machine: 4.4 ms at 45k records (23k hits) and
15.5 ms at 182k (93k hits) of the real events; those figures are printed
beside ours as quoted, not as measured in this run.

    .venv/bin/python benchmarks/walks.py [--quick] [--runs 3]
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import arg_parser, events_file, real_file, replay, summary, table, target, target_table, write_result  # noqa: E402

import shoal  # noqa: E402
from shoal.psf import canonical, value_hash  # noqa: E402
from shoal.store import query as Q  # noqa: E402

FISHSTORE_MS = {45_000: 4.4, 182_000: 15.5}  # quoted by the issue (same machine), not measured here


def measure(lines: list[bytes], runs: int, reps: int, tmp: Path) -> dict:
    store = shoal.open(tmp, memory_budget_bytes=2 << 30)
    try:
        store.register_psf("type", "type")
        store.ingest(b"\n".join(lines))
        p = store._planner
        psf = p.registry.get("type")
        canon = canonical("PushEvent")
        h = value_hash(psf.id, canon)
        tail = store.tail_address

        def lanes():
            return len(Q.walk_all(p.log, p.index, p.tally, psf.id, canon, h, 0, tail, p.gate))

        def plain():
            return sum(len(b) for b in Q.walk_chain_batches(p.log, p.index, psf.id, canon, h, 0, tail, p.gate))

        def addresses():
            return sum(1 for _ in store.query_addresses([("type", "PushEvent")]))

        fns = {"lanes": lanes, "plain": plain, "addresses": addresses}
        hits = {name: f() for name, f in fns.items()}
        assert len(set(hits.values())) == 1, hits
        out = {name: [] for name in fns}
        for _ in range(runs):
            for name, f in fns.items():
                samples = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    f()
                    samples.append(time.perf_counter() - t0)
                out[name].append(statistics.median(samples))
        return {"hits": hits["lanes"], "records": len(lines), "seconds": out}
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--reps", type=int, default=0, help="walks per round (default 20; --quick 3)")
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 20)
    sizes = [3_000, 12_000] if args.quick else [45_000, 182_000]
    sets = {}
    if real_file("ndjson", "github_events.ndjson.gz") is not None:
        for n in sizes:
            sets[f"real github {n:,}"] = (n, replay("github_events.ndjson.gz", copies=-(-n // 30)).splitlines()[:n])
    else:
        print("real data: skipped (no ../shared/data)")
    for n in sizes:
        sets[f"generated {n:,}"] = (n, events_file(n).read_bytes().splitlines()[:n])
    tmp = Path(tempfile.mkdtemp(prefix="shoal-walks-"))
    results: dict = {"runs": args.runs, "reps": reps, "sets": {}}
    rows, targets = [], []
    try:
        for label, (n, lines) in sets.items():
            r = measure(lines, args.runs, reps, tmp / "s")
            results["sets"][label] = r
            med = {k: summary(v)["median"] * 1e3 for k, v in r["seconds"].items()}
            quoted = FISHSTORE_MS.get(n) if label.startswith("real") else None
            rows.append([label, f"{r['hits']:,}", f"{med['lanes']:.2f}", f"{med['plain']:.2f}",
                         f"{med['plain'] / med['lanes']:.1f}", f"{med['addresses']:.2f}",
                         f"{quoted:.1f}" if quoted else ""])
            if quoted:
                targets.append(target(f"{label}: query_addresses vs FishStore's quoted walk", "<= quoted ms",
                                      med["addresses"], quoted, unit="ms", higher_is_better=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, ["data", "hits", "lanes ms", "plain ms", "x", "query_addresses ms", "FishStore ms (quoted)"],
                "lrrrrrr"))
    results["targets"] = targets
    if targets:
        print()
        print(target_table(targets))
    path = write_result("walks", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
