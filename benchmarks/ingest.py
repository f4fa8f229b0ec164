"""Library ingest with 1, 3 and 8 PSFs, in memory and spilling, beside its peers.

For each dataset, PSF count and memory mode, in rounds (one run of each
system per round, so machine noise hits all alike):
  shoal    Store.ingest(bytes) of the whole dataset with k PSFs, appended to
           one open store after a warm-up (steady state: page frames
           allocated and recycled, the flusher writing sealed pages)
  orjson   orjson.loads of every line + extracting the same k fields
           (the floor of doing the work in Python)
  SQLite   executemany of the raw JSON text in one transaction into a
           fresh WAL database with one json_extract index per PSF
           (in-memory rounds only: it is the slowest by far)
Modes: "memory" has a memory budget of 2x the data: a run never waits for
the disk (the frames it recycles were flushed a round earlier); "spill" has
1/10 of the data, so the writer recycles frames as fast as the flusher
frees them and the run is bounded by the disk as well as the CPU. In both,
sealed pages go to segment files in the background (the hybrid log), and
SQLite's database is fsynced after each timed load (untimed), so its
writeback does not land in shoal's next run.
Reports records/s and MB/s (input bytes, 10^6), shoal's CPU seconds per
wall second (1.0 = one core busy), and "x" = median over rounds of
peer time / shoal time.

Datasets: events (benchmarks/gen_events.py, ~1 KB GitHub-like events; all
PSF counts and both modes), zeek, github, twitter (real streams, replayed
with ids rewritten to reach volume; 3 PSFs, in memory).

    .venv/bin/python benchmarks/ingest.py [--quick] [--runs 3] [--datasets events,zeek]
        [--records N] [--psfs 1,3,8] [--modes memory,spill] [--no-sqlite]
"""
from __future__ import annotations

import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, NO_DATA, arg_parser, events_file, fmt_mmm, page_config, paired_ratio,  # noqa: E402
                     rate_summary, real_file, replay, summary, table, target, target_table, write_result)
from _peers import SQLitePeer, orjson_floor, psfs, register  # noqa: E402

import shoal  # noqa: E402

# name -> (source, standard size, quick size); sizes are records (events) or copies (real streams)
DATASETS = {
    "events": ("generated GitHub-like events", 200_000, 20_000),
    "zeek": ("zeek_wrccdc2018.ndjson.gz", 1, 0),
    "github": ("github_events.ndjson.gz", 1000, 60),
    "twitter": ("twitter_statuses.ndjson.gz", 100, 6),
}
QUICK_ZEEK_BYTES = 4 << 20


def load(name: str, records: int, quick: bool) -> bytes:
    src, standard, small = DATASETS[name]
    n = small if quick else standard
    if name == "events":
        return events_file(records or n).read_bytes()
    if name == "zeek":
        return replay(src, max(1, n), max_bytes=QUICK_ZEEK_BYTES if quick else 0)
    return replay(src, n)


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure(data: bytes, lines: list[bytes], dataset: str, k: int, modes: list[str], runs: int,
            sqlite: bool, tmp: Path) -> list[dict]:
    """All modes of one (dataset, k): shoal per mode, peers alongside."""
    import time
    specs = psfs(dataset, k)
    n, size = len(lines), len(data)
    out = []
    for mode in modes:
        config = page_config(size, 2.0 if mode == "memory" else 0.1)
        directory = Path(tempfile.mkdtemp(prefix="store-", dir=tmp))
        store = shoal.open(directory, **config)
        register(store, specs)
        written = 0
        while written < config["memory_budget_bytes"] or written == 0:
            store.ingest(data)  # warm-up: every frame allocated once; steady state from here
            written += size
        peer = SQLitePeer(tmp / "peer.sqlite", specs) if sqlite and mode == "memory" else None
        t = {"shoal": [], "shoal_cpu": [], "orjson": [], "sqlite": []}
        for _ in range(runs):
            c0, t0 = cpu_seconds(), time.perf_counter()
            r = store.ingest(data)
            t["shoal"].append(time.perf_counter() - t0)
            t["shoal_cpu"].append(cpu_seconds() - c0)
            assert r.ingested == n and not r.rejected, (r.ingested, r.rejected, n, r.errors[:3])
            t0 = time.perf_counter()
            assert orjson_floor(lines, specs) == n
            t["orjson"].append(time.perf_counter() - t0)
            if peer:
                peer.create()
                t0 = time.perf_counter()
                peer.load(lines)
                t["sqlite"].append(time.perf_counter() - t0)
                peer.settle()
        stats = store.stats()
        store.close()
        if peer:
            peer.close()
        shutil.rmtree(directory, ignore_errors=True)
        res = {"dataset": dataset, "psfs": [s.jmespath for s in specs], "k": k, "mode": mode, "config": config,
               "records": n, "bytes": size, "index_bytes": stats["index"]["bytes"],
               "shoal": summary(t["shoal"]), "shoal_mb_s": rate_summary(size / MB, t["shoal"]),
               "shoal_cpu_per_wall": summary([c / w for c, w in zip(t["shoal_cpu"], t["shoal"])]),
               "orjson": summary(t["orjson"]), "orjson_mb_s": rate_summary(size / MB, t["orjson"]),
               "x_orjson": paired_ratio(t["orjson"], t["shoal"])}
        if t["sqlite"]:
            res.update(sqlite=summary(t["sqlite"]), sqlite_mb_s=rate_summary(size / MB, t["sqlite"]),
                       x_sqlite=paired_ratio(t["sqlite"], t["shoal"]))
        out.append(res)
    return out


def rows_for(res: dict) -> list[list]:
    n, size = res["records"], res["bytes"]
    head = [str(res["k"]), res["mode"]]
    cpu = f"{res['shoal_cpu_per_wall']['median']:.2f}"
    rows = [head + ["shoal", f"{n / res['shoal']['median']:,.0f}", f"{size / MB / res['shoal']['median']:,.0f}",
                    fmt_mmm(res["shoal"], 1, "{:.3f}"), cpu, ""]]
    for peer, label in (("orjson", "orjson.loads + fields"), ("sqlite", "SQLite + indexes")):
        if peer in res:
            med = res[peer]["median"]
            rows.append(["", "", label, f"{n / med:,.0f}", f"{size / MB / med:,.0f}",
                         fmt_mmm(res[peer], 1, "{:.3f}"), "", f"{res['x_' + peer]['median']:.2f}x"])
    return rows


def targets_for(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        if r["dataset"] == "events" and r["k"] == 3 and r["mode"] == "memory":
            mb_s = r["shoal_mb_s"]["median"]
            what = "library ingest, 3 PSFs, ~1 KB events, in memory"
            out.append(target(f"{what}: MB/s", ">= 1000 MB/s (1 GB/s)", mb_s, 1000, unit="MB/s",
                              detail=f"CPU s per wall s {r['shoal_cpu_per_wall']['median']:.2f}"))
            out.append(target(f"{what}: vs orjson parse + extract", ">= 2x", r["x_orjson"]["median"], 2, unit="x"))
            if "x_sqlite" in r:
                out.append(target(f"{what}: vs SQLite + indexes", ">= 10x", r["x_sqlite"]["median"], 10, unit="x"))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--datasets", default="events,zeek,github,twitter")
    ap.add_argument("--records", type=int, default=0, help="events (default 200,000; --quick 20,000)")
    ap.add_argument("--psfs", help="PSF counts, e.g. 1,3,8 (default: 1,3,8 for events, 3 for the real streams)")
    ap.add_argument("--modes", help="memory,spill (default: both for events, memory for the real streams)")
    ap.add_argument("--no-sqlite", action="store_true", help="leave SQLite out (it takes most of the time)")
    ap.add_argument("--tmp", type=Path, help="directory for stores and databases (default: system temp)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    results = []
    try:
        for dataset in args.datasets.split(","):
            if dataset != "events" and real_file("ndjson", DATASETS[dataset][0]) is None:
                print(f"\n{dataset} ({DATASETS[dataset][0]}): skipped, {NO_DATA}", flush=True)
                continue
            data = load(dataset, args.records, args.quick)
            lines = data.splitlines()
            ks = [int(x) for x in args.psfs.split(",")] if args.psfs else ([1, 3, 8] if dataset == "events" else [3])
            modes = args.modes.split(",") if args.modes else (["memory", "spill"] if dataset == "events" else ["memory"])
            print(f"\n{dataset} ({DATASETS[dataset][0]}): {len(lines):,} records, {len(data) / MB:,.1f} MB, "
                  f"{args.runs} rounds", flush=True)
            rows = []
            for k in ks:
                res = measure(data, lines, dataset, k, modes, args.runs, not args.no_sqlite, tmp)
                results += res
                for r in res:
                    rows += rows_for(r)
            print(table(rows, ["PSFs", "mode", "system", "records/s", "MB/s", "s min/med/max", "CPU/wall",
                               "shoal x"], align="llrrrlrr"))
            del data, lines
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    targets = targets_for(results)
    if targets:
        print()
        print(target_table(targets))
    payload = {"runs": args.runs, "quick": args.quick, "results": results, "targets": targets}
    path = write_result("ingest", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
