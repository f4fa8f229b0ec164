"""Library ingest cold and warm, on 1, 2, 4 and every core's threads, per dataset, beside orjson and SQLite.

Per dataset, in rounds (each round measures every row once, so machine
noise hits them alike), 3 PSFs, the store's default settings:
  cold     a fresh store (new directory: every page frame is fresh memory
           the kernel must fault in and zero) and its first
           Store.ingest(data, threads=T): what a user who opens a store and
           loads a file sees
  warm     the same store once its ingests have recycled every frame
           (steady state: a long-running store), Store.ingest(data, threads=T),
           after the flusher wrote what the run will recycle (untimed), so
           the row measures the CPU, not the disk (durable.py measures that)
  callers  T threads each ingesting 1/T of the data at once (warm), as
           concurrent HTTP POSTs or application threads do
  orjson   orjson.loads of every line + extracting the same fields (one core)
  SQLite   executemany into a fresh WAL database with one json_extract
           index per PSF (one core; --no-sqlite leaves it out)
"x1" is the median over rounds of a row's MB/s over the 1-thread row of the
same state in that round (the scaling; efficiency = x1 / T), "cold/warm" of
the cold row over the warm row of its thread count.

Where the time goes: stats()["ingest"]["commit_seconds"] is the wall time
of commits, the part under the writer lock that threads take in turn
(appending records at the tail, linking chains, counting values, page
turns); the rest of a 1-thread warm ingest is preparing (framing, parsing,
evaluating PSFs, hashing), which threads do at once. The script prints both
per MB and the scaling they imply up to 16 cores, a model from measured
costs, not a measurement: between (P + C) / (P / T + C) (Amdahl's law: no
commit overlaps any prepare) and min(T, (P + C) / C) (a perfect pipeline).

What bounds it on this machine: "busy" is the process's CPU seconds (every
thread: workers, the flusher, system time) over the row's wall seconds, so
how many cores the row kept busy. A 1-thread row already keeps more than one
core busy (the flusher writes on the other), so with the same CPU per MB,
T cores can give at most T / busy(1 thread): the script prints that
ceiling. It also measures, in each round, what this machine gives two
threads of plain work: hashlib.sha256 over 32 MB each (compute) and numpy
copies of 64 MB each (memory traffic), as 2-thread over 1-thread throughput.

Datasets: events (benchmarks/gen_events.py, ~1 KB GitHub-like events,
100 MB), zeek, github, twitter (real streams of ../shared/data, replayed with
ids rewritten to ~100 MB).

    .venv/bin/python benchmarks/ingest_threads.py [--quick] [--runs 3] [--threads 1,2,4]
        [--datasets events,zeek,github,twitter] [--no-sqlite]
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, NO_DATA, arg_parser, events_file, fmt_mmm, paired_ratio, real_file, replay,  # noqa: E402
                     split_batches, summary, table, target, target_table, write_result)
from _peers import SQLitePeer, orjson_floor, psfs, register  # noqa: E402

import shoal  # noqa: E402
from shoal.config import StoreConfig  # noqa: E402

TARGET_BYTES = 100 * 1000 * 1000
QUICK_BYTES = 4 * 1000 * 1000
# name -> (source, one copy's bytes are replayed up to the size)
DATASETS = {
    "events": "generated GitHub-like events",
    "zeek": "zeek_wrccdc2018.ndjson.gz",
    "github": "github_events.ndjson.gz",
    "twitter": "twitter_statuses.ndjson.gz",
}


def load(name: str, size: int) -> bytes:
    if name == "events":
        data = events_file(max(1000, size // 1000)).read_bytes()
        return data[: data.rindex(b"\n", 0, size) + 1] if len(data) > size else data
    one = replay(DATASETS[name], 1)
    copies = max(1, -(-size // len(one)))
    return replay(DATASETS[name], copies, max_bytes=size)


def thread_counts(text: str | None) -> list[int]:
    if text:
        return sorted({int(x) for x in text.split(",")})
    cores = len(os.sched_getaffinity(0))
    return sorted({1, 2, 4, cores})


def two_thread_gain(work) -> float:
    """Throughput of `work` on 2 threads at once over 1 thread (median of 3)."""
    ratios = []
    for _ in range(3):
        t0 = time.perf_counter()
        work()
        one = time.perf_counter() - t0
        ts = [threading.Thread(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ratios.append(2 * one / (time.perf_counter() - t0))
    return sorted(ratios)[1]


def machine_scaling() -> dict:
    """What 2 threads of plain compute and of plain memory copying gain here
    (both release the GIL), for the ingest rows' scaling to be read against."""
    text = os.urandom(32 << 20)
    src = np.ones(64 << 20, dtype=np.uint8)
    dst = [np.zeros_like(src) for _ in range(2)]
    k = iter(range(1 << 30))

    def compute() -> None:
        hashlib.sha256(text).digest()

    def memory() -> None:
        out = dst[next(k) % 2]
        for _ in range(4):
            np.copyto(out, src)

    memory()  # fault the buffers in first
    return {"compute": two_thread_gain(compute), "memory": two_thread_gain(memory)}


def ingest_callers(store, parts: list[bytes]) -> None:
    """Each part on its own thread, at once (one call each)."""
    errors = []

    def run(p):
        try:
            store.ingest(p)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def one_round(data: bytes, n: int, specs, threads: list[int], tmp: Path) -> dict:
    """Every thread count's cold, warm and callers rows, once."""
    budget = StoreConfig().memory_budget_bytes
    out = {}
    for t in threads:
        directory = Path(tempfile.mkdtemp(prefix="store-", dir=tmp))
        store = shoal.open(directory)
        register(store, specs)
        t0, p0 = time.perf_counter(), time.process_time()
        r = store.ingest(data, threads=t)
        cold = time.perf_counter() - t0
        cold_cpu = time.process_time() - p0
        assert r.ingested == n and not r.rejected, (r.ingested, r.rejected, n, r.errors[:3])
        written = len(data)
        while written < budget + len(data):
            store.ingest(data, threads=t)  # until every frame has been filled once
            written += len(data)
        store.flush(durable=False)  # untimed: the frames the timed run recycles are on disk already
        c0 = store.stats()["ingest"]["commit_seconds"]
        t0, p0 = time.perf_counter(), time.process_time()
        r = store.ingest(data, threads=t)
        warm = time.perf_counter() - t0
        warm_cpu = time.process_time() - p0
        commit = store.stats()["ingest"]["commit_seconds"] - c0
        assert r.ingested == n
        parts = split_batches(data, -(-len(data) // t))
        store.flush(durable=False)
        t0, p0 = time.perf_counter(), time.process_time()
        ingest_callers(store, parts)
        callers = time.perf_counter() - t0
        callers_cpu = time.process_time() - p0
        store.close()
        shutil.rmtree(directory, ignore_errors=True)
        out[t] = {"cold": cold, "warm": warm, "callers": callers, "commit": commit,
                  "cpu": {"cold": cold_cpu, "warm": warm_cpu, "callers": callers_cpu}}
    return out


def measure(name: str, data: bytes, threads: list[int], runs: int, sqlite: bool, tmp: Path) -> dict:
    lines = data.splitlines()
    n = len(lines)
    specs = psfs(name, 3)
    peer = SQLitePeer(tmp / "peer.sqlite", specs) if sqlite else None
    rounds = []
    orj, sql, machine = [], [], []
    for _ in range(runs):
        rounds.append(one_round(data, n, specs, threads, tmp))
        machine.append(machine_scaling())
        t0 = time.perf_counter()
        assert orjson_floor(lines, specs) == n
        orj.append(time.perf_counter() - t0)
        if peer:
            peer.create()
            t0 = time.perf_counter()
            peer.load(lines)
            sql.append(time.perf_counter() - t0)
            peer.settle()
    if peer:
        peer.close()
    size = len(data)
    res = {"dataset": name, "records": n, "bytes": size, "threads": threads, "rows": {},
           "machine_2_threads": {k: summary([m[k] for m in machine]) for k in ("compute", "memory")}}
    for t in threads:
        row = {}
        for state in ("cold", "warm", "callers"):
            secs = [r[t][state] for r in rounds]
            base = [r[1][state if state != "callers" else "warm"] for r in rounds] if 1 in threads else secs
            row[state] = {"s": summary(secs), "mb_s": summary([size / MB / s for s in secs]),
                          "x1": paired_ratio(base, secs),
                          "busy": summary([r[t]["cpu"][state] / r[t][state] for r in rounds]),
                          "cpu_s_per_mb": summary([r[t]["cpu"][state] / (size / MB) for r in rounds])}
        row["cold_over_warm"] = paired_ratio([r[t]["warm"] for r in rounds], [r[t]["cold"] for r in rounds])
        row["commit_s_per_mb"] = summary([r[t]["commit"] / (size / MB) for r in rounds])
        res["rows"][t] = row
    res["orjson"] = {"s": summary(orj), "mb_s": summary([size / MB / s for s in orj]),
                     "x_shoal_warm_1": paired_ratio(orj, [r[threads[0]]["warm"] for r in rounds])}
    if sql:
        res["sqlite"] = {"s": summary(sql), "mb_s": summary([size / MB / s for s in sql]),
                         "x_shoal_warm_1": paired_ratio(sql, [r[threads[0]]["warm"] for r in rounds])}
    if 1 in threads:
        warm1 = [r[1]["warm"] for r in rounds]
        commit1 = [r[1]["commit"] for r in rounds]
        c = sorted(commit1)[len(commit1) // 2] / (size / MB)
        total = sorted(warm1)[len(warm1) // 2] / (size / MB)
        p = max(total - c, 0.0)
        ks = (1, 2, 4, 8, 16)
        res["model"] = {"commit_s_per_mb": c, "prepare_s_per_mb": p,
                        # commits never overlap preparing (Amdahl) .. overlap fully (a pipeline)
                        "implied_speedup_low": {k: (p + c) / (p / k + c) for k in ks},
                        "implied_speedup_high": {k: min(k, (p + c) / c) if c else float(k) for k in ks},
                        # the same CPU per MB on k cores: at most k / (cores 1 thread keeps busy)
                        "cpu_ceiling": {k: k / res["rows"][1]["warm"]["busy"]["median"] for k in ks}}
    return res


def print_dataset(res: dict) -> None:
    rows = []
    for t, row in res["rows"].items():
        for state in ("cold", "warm", "callers"):
            if state == "callers" and t == 1:
                continue
            r = row[state]
            x1 = r["x1"]["median"]
            extra = f"{row['cold_over_warm']['median']:.2f}" if state == "cold" else ""
            rows.append([str(t), state, f"{r['mb_s']['median']:,.0f}", fmt_mmm(r["s"], 1, "{:.3f}"),
                         f"{x1:.2f}x", f"{x1 / t:.0%}", extra, f"{r['busy']['median']:.2f}",
                         f"{r['cpu_s_per_mb']['median'] * 1e3:.2f}"])
    for peer, label in (("orjson", "orjson.loads + fields"), ("sqlite", "SQLite + indexes")):
        if peer in res:
            r = res[peer]
            rows.append(["1", label, f"{r['mb_s']['median']:,.0f}", fmt_mmm(r["s"], 1, "{:.3f}"),
                         f"shoal {r['x_shoal_warm_1']['median']:.2f}x", "", "", "", ""])
    print(table(rows, ["threads", "row", "MB/s", "s min/med/max", "x1", "eff.", "cold/warm", "busy",
                       "cpu ms/MB"], align="llrlrrrrr"))
    m = res.get("model")
    if m:
        lo, hi = m["implied_speedup_low"], m["implied_speedup_high"]
        print(f"per MB (1 thread, warm): commit (under the writer lock) {m['commit_s_per_mb'] * 1e3:.2f} ms, "
              f"prepare (in parallel) {m['prepare_s_per_mb'] * 1e3:.2f} ms; speedup they imply (a model: "
              f"commits serial, overlapping no prepare .. all of it): "
              + ", ".join(f"{k} cores {lo[k]:.1f}-{hi[k]:.1f}x" for k in lo))
        ceil = m["cpu_ceiling"]
        print(f"1 thread keeps {res['rows'][1]['warm']['busy']['median']:.2f} cores busy: with the same CPU per MB, "
              f"2 cores give at most {ceil[2]:.2f}x")
    mach = res["machine_2_threads"]
    print(f"this machine, 2 threads over 1 (same rounds): compute {mach['compute']['median']:.2f}x, "
          f"memory copies {mach['memory']['median']:.2f}x")


def targets_for(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        rows = r["rows"]
        if 1 in rows:
            out.append(target(f"{r['dataset']}: first ingest into a fresh store / warm, 1 thread", ">= 0.9x",
                              rows[1]["cold_over_warm"]["median"], 0.9, unit="x"))
        if 2 in rows and 1 in rows:
            for state in ("warm", "cold"):
                out.append(target(f"{r['dataset']}: 2 threads / 1 thread, {state}", ">= 1.7x",
                                  rows[2][state]["x1"]["median"], 1.7, unit="x"))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--datasets", default="events,zeek,github,twitter")
    ap.add_argument("--threads", help="thread counts (default 1,2,4 and the cores)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--tmp", type=Path, help="directory for stores (default: system temp)")
    args = ap.parse_args(argv)
    threads = thread_counts(args.threads)
    size = QUICK_BYTES if args.quick else TARGET_BYTES
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    results = []
    try:
        for name in args.datasets.split(","):
            if name != "events" and real_file("ndjson", DATASETS[name]) is None:
                print(f"\n{name} ({DATASETS[name]}): skipped, {NO_DATA}", flush=True)
                continue
            data = load(name, size)
            n = data.count(b"\n")
            print(f"\n{name} ({DATASETS[name]}): {n:,} records, {len(data) / MB:,.1f} MB, "
                  f"{args.runs} rounds, threads {threads}", flush=True)
            res = measure(name, data, threads, args.runs, not args.no_sqlite, tmp)
            results.append(res)
            print_dataset(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    targets = targets_for(results)
    print()
    print(target_table(targets))
    payload = {"runs": args.runs, "quick": args.quick, "results": results, "targets": targets}
    path = write_result("ingest_threads", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
