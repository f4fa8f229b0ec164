"""Durable ingest (durable=True per 1 MiB batch) beside the disk's sequential
write bandwidth, measured in the same run and directory.

In rounds:
  dd          dd if=/dev/zero of=<file in the store's directory> bs=1M
              count=N conv=fdatasync, N = the data's size in MiB
  durable     Store.ingest(batch, durable=True) for each ~1 MiB batch of
              the data (cut at line ends), 3 PSFs: each call returns once
              its records are on disk (the log flushed and fsynced)
  durable x4  the same batches from 4 threads at once (thread i takes
              batches i, i+4, ...), each call durable=True: group commit
              lets calls that finish appending while an fsync runs share
              the next one
  buffered    the same batches with durable=False (what durability costs)
MB/s counts input bytes (10^6); "log MB/s" counts the bytes the log grew
by (records with their headers and key pointers); "fsyncs/ingest" counts
os.fsync calls (segment files and their directory) per ingest call. The
store appends across rounds; memory budget 256 MiB (the default).

    .venv/bin/python benchmarks/durable.py [--quick] [--runs 3] [--records N]
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, arg_parser, dd_write, events_file, fmt_mmm, paired_ratio, rate_summary,  # noqa: E402
                     split_batches, summary, table, target, target_table, write_result)
from _peers import psfs, register  # noqa: E402

import shoal  # noqa: E402

BATCH_BYTES = 1 << 20
THREADS = 4


class _FsyncCounter:
    """Counts os.fsync calls (the store's only fsync) while installed."""

    def __init__(self) -> None:
        self.n = 0
        self._real = os.fsync

    def __enter__(self) -> "_FsyncCounter":
        def counted(fd):
            self.n += 1
            return self._real(fd)
        os.fsync = counted
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync = self._real


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="events (default 200,000; --quick 20,000)")
    ap.add_argument("--tmp", type=Path, help="directory for the store (default: system temp); the disk measured")
    args = ap.parse_args(argv)
    n = args.records or (20_000 if args.quick else 200_000)
    data = events_file(n).read_bytes()
    batches = split_batches(data, BATCH_BYTES)
    size = len(data)
    mib = max(1, round(size / (1 << 20)))
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    t = {"dd": [], "durable": [], "durable_x4": [], "buffered": []}
    log_bytes = []
    fsyncs = {"durable": [], "durable_x4": []}
    try:
        store = shoal.open(tmp / "store")
        register(store, psfs("events", 3))
        for b in batches[:8]:
            store.ingest(b, durable=True)  # warm-up

        def ingest_all(durable: bool) -> None:
            tail0 = store.tail_address
            for b in batches:
                store.ingest(b, durable=durable)
            if durable:
                log_bytes.append(store.tail_address - tail0)

        def ingest_threads() -> None:
            threads = [threading.Thread(target=lambda i=i: [store.ingest(b, durable=True)
                                                             for b in batches[i::THREADS]])
                       for i in range(THREADS)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()

        runs = {"durable": lambda: ingest_all(True), "durable_x4": ingest_threads,
                "buffered": lambda: ingest_all(False)}
        for _ in range(args.runs):
            t["dd"].append(dd_write(tmp, mib))
            for name, fn in runs.items():
                with _FsyncCounter() as fc:
                    t0 = time.perf_counter()
                    fn()
                    t[name].append(time.perf_counter() - t0)
                if name in fsyncs:
                    fsyncs[name].append(fc.n / len(batches))
            store.flush()  # the buffered round's tail goes to disk before dd runs
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    dd_bytes = mib * (1 << 20)
    payload = {"records": n, "bytes": size, "batches": len(batches), "batch_bytes": BATCH_BYTES, "dd_mib": mib,
               "runs": args.runs, "quick": args.quick, "directory": str(args.tmp or tempfile.gettempdir()),
               "dd": summary(t["dd"]), "dd_mb_s": rate_summary(dd_bytes / MB, t["dd"]),
               "durable": summary(t["durable"]), "durable_mb_s": rate_summary(size / MB, t["durable"]),
               "durable_log_mb_s": summary([b / MB / s for b, s in zip(log_bytes, t["durable"])]),
               "buffered": summary(t["buffered"]), "buffered_mb_s": rate_summary(size / MB, t["buffered"]),
               "durable_x4": summary(t["durable_x4"]), "durable_x4_mb_s": rate_summary(size / MB, t["durable_x4"]),
               "threads": THREADS, "fsyncs_per_ingest": {k: summary(v) for k, v in fsyncs.items()}}
    # durable MB/s over dd MB/s, round by round
    payload["durable_over_dd"] = paired_ratio([size / s for s in t["durable"]], [dd_bytes / s for s in t["dd"]])
    payload["durable_x4_over_dd"] = paired_ratio([size / s for s in t["durable_x4"]],
                                                 [dd_bytes / s for s in t["dd"]])
    payload["log_over_dd"] = paired_ratio([b / s for b, s in zip(log_bytes, t["durable"])],
                                          [dd_bytes / s for s in t["dd"]])
    fs = payload["fsyncs_per_ingest"]
    rows = [["dd bs=1M conv=fdatasync", "", f"{payload['dd_mb_s']['median']:,.0f}", "",
             fmt_mmm(payload["dd"], 1, "{:.3f}"), "", ""],
            ["shoal durable=True per 1 MiB", f"{n / payload['durable']['median']:,.0f}",
             f"{payload['durable_mb_s']['median']:,.0f}", f"{payload['durable_log_mb_s']['median']:,.0f}",
             fmt_mmm(payload["durable"], 1, "{:.3f}"), f"{payload['durable_over_dd']['median']:.2f}",
             f"{fs['durable']['median']:.2f}"],
            [f"shoal durable=True, {THREADS} threads", f"{n / payload['durable_x4']['median']:,.0f}",
             f"{payload['durable_x4_mb_s']['median']:,.0f}", "", fmt_mmm(payload["durable_x4"], 1, "{:.3f}"),
             f"{payload['durable_x4_over_dd']['median']:.2f}", f"{fs['durable_x4']['median']:.2f}"],
            ["shoal durable=False", f"{n / payload['buffered']['median']:,.0f}",
             f"{payload['buffered_mb_s']['median']:,.0f}", "", fmt_mmm(payload["buffered"], 1, "{:.3f}"), "", ""]]
    print(f"events: {n:,} records, {size / MB:,.1f} MB in {len(batches)} batches; dd {mib} MiB; {args.runs} rounds")
    print(table(rows, ["writer", "records/s", "MB/s", "log MB/s", "s min/med/max", "x dd", "fsyncs/ingest"],
                align="lrrrlrr"))
    payload["targets"] = [target("durable ingest (1 MiB batches) vs sequential disk write (dd)", ">= 0.7x",
                                 payload["durable_over_dd"]["median"], 0.7, unit="x",
                                 detail=f"dd {payload['dd_mb_s']['median']:,.0f} MB/s"),
                          target(f"durable ingest, {THREADS} threads (group commit) vs dd", ">= 0.7x",
                                 payload["durable_x4_over_dd"]["median"], 0.7, unit="x",
                                 detail=f"{fs['durable_x4']['median']:.2f} fsyncs per ingest")]
    print()
    print(target_table(payload["targets"]))
    path = write_result("durable", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
