"""Checkpoint and recovery time against log size.

For each log size (a prefix of the generated events), in rounds, on a fresh
store with 3 PSFs (`type`, `repo.name`, `actor.login`):
  checkpoint   Store.checkpoint() after ingesting the prefix: flush and
               fsync the log tail, write the index and the PSF registry
  reopen       shoal.open() from that checkpoint (nothing to replay), which
               reads the log below it back and checks every record
               (verify_log_on_open, the default)
  unverified   the same with verify_log_on_open=False (reads no log)
  replay       shoal.open() after deleting the checkpoints: every record is
               read back from the segment files, its CRC32C verified and its
               key pointers linked into a new index; MB/s counts log bytes
The segment files are read once untimed (on this VM the first read after a
write is slower, whichever open came first), then dropped from the page
cache before each open (posix_fadvise), so every open reads them back.

    .venv/bin/python benchmarks/recovery.py [--quick] [--runs 3] [--sizes-mb 50,100,200,400]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, arg_parser, drop_cache, events_file, summary, table, write_result  # noqa: E402
from _peers import psfs, register  # noqa: E402

import shoal  # noqa: E402


def one_round(directory: Path, data: bytes, n: int) -> dict:
    store = shoal.open(directory)
    register(store, psfs("events", 3))
    assert store.ingest(data).ingested == n
    t0 = time.perf_counter()
    store.checkpoint()
    ckpt = time.perf_counter() - t0
    stats = store.stats()
    store.close()
    segments = list((directory / "log").iterdir())
    for p in segments:  # one untimed read: the first read after writing is slower here (host cache)
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass

    times = {}
    for name, verify in (("reopen", True), ("unverified", False)):
        drop_cache(segments)
        t0 = time.perf_counter()
        store = shoal.open(directory, verify_log_on_open=verify)
        times[name] = time.perf_counter() - t0
        assert store.stats()["records"] == n and store.recovery.replayed_records == 0
        store.close()

    shutil.rmtree(directory / "checkpoints")
    drop_cache(segments)
    t0 = time.perf_counter()
    store = shoal.open(directory)
    replay = time.perf_counter() - t0
    assert store.recovery.replayed_records == n, store.recovery
    assert sum(1 for _ in store.query("type", "PushEvent", limit=10)) == 10
    store.close()
    shutil.rmtree(directory)
    return {"checkpoint": ckpt, **times, "replay": replay, "log_bytes": stats["log_bytes"],
            "index_bytes": stats["index"]["bytes"]}


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--sizes-mb", help="log sizes in MB (default 50,100,200,400; --quick 5,10,20)")
    ap.add_argument("--tmp", type=Path, help="directory for the stores (default: system temp)")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in (args.sizes_mb or ("5,10,20" if args.quick else "50,100,200,400")).split(",")]
    n_events = 20_000 if args.quick and max(sizes) <= 20 else 200_000
    while n_events * 1000 < max(sizes) * MB:
        n_events *= 2
    data = events_file(n_events).read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    results = []
    try:
        for mb in sizes:
            cut = min(len(data), int(mb * MB))
            prefix = data[: data.rindex(b"\n", 0, cut) + 1]
            n = prefix.count(b"\n")
            rounds = [one_round(tmp / "store", prefix, n) for _ in range(args.runs)]
            log_bytes = rounds[0]["log_bytes"]
            res = {"input_bytes": len(prefix), "records": n, "log_bytes": log_bytes,
                   "index_bytes": rounds[0]["index_bytes"],
                   **{k: summary([r[k] for r in rounds]) for k in ("checkpoint", "reopen", "unverified", "replay")}}
            res["replay_mb_s"] = summary([log_bytes / MB / r["replay"] for r in rounds])
            res["replay_records_s"] = summary([n / r["replay"] for r in rounds])
            results.append(res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [[f"{r['log_bytes'] / MB:,.0f}", f"{r['records']:,}", f"{r['index_bytes'] / MB:,.1f}",
             f"{r['checkpoint']['median'] * 1e3:,.0f}", f"{r['reopen']['median'] * 1e3:,.0f}",
             f"{r['unverified']['median'] * 1e3:,.0f}",
             f"{r['replay']['median']:,.2f}", f"{r['replay_mb_s']['median']:,.0f}",
             f"{r['replay_records_s']['median']:,.0f}"] for r in results]
    print(f"generated events, 3 PSFs; medians of {args.runs} rounds")
    print(table(rows, ["log MB", "records", "index MB", "checkpoint ms", "reopen (ckpt) ms", "unverified ms",
                       "replay s", "replay MB/s", "replay records/s"], align="rrrrrrrrr"))
    payload = {"runs": args.runs, "quick": args.quick, "results": results, "targets": []}
    path = write_result("recovery", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
