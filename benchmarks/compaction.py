"""Compaction: space reclaimed, compaction MB/s, and what background
retention costs ingest.

Stores: 3 PSFs, 1 MiB pages, 16 MiB segments, a 64 MiB memory budget
(--quick: 64 KiB pages, 1 MiB segments, 4 MiB). In rounds, each on fresh
stores:
  unkeyed      ingest the generated events, then compact(retain_bytes=10% of
               the log): nothing below the cut is live, so compaction reads
               the pages below it (counting records), records the cut,
               deletes whole segment files and punches a hole below the cut
               in the file holding it
  one file     the same with 256 MiB segments (the default; --quick 64
               MiB): the whole log is one file, which only the hole frees
  one file, zstd  the same on a store created with compression="zstd",
               once its log is compressed: the hole is punched in the cold
               file's frames below the cut
  keyed        a store keyed by `id`: ingest the events, then the first
               half again (newer versions of those keys), then compact up
               to the end of the first ingest: the second half of it is
               still live and is copied to the tail (re-indexed by every
               PSF), the first half is dropped; then a checkpoint
  ingest       the events three times over in 4 MB ingest calls, without
               retention, and with retain_bytes=20% of the events checked
               every 0.05 s in the background (compactions run during the
               ingest, reading the pages they drop as it appends)
"disk MB" is what the segment files take on disk (allocated blocks)
before and after. Compaction MB/s counts log bytes below the cut (begin_before..begin_after)
per second; ingest MB/s counts input bytes (10^6); "anon +MB" is the peak
of the process's anonymous resident memory during the compaction (RssAnon,
sampled every 2 ms) over its value before, the memory a compaction costs;
"maps +MB" is the growth of file-backed resident pages (RssFile): the
segment pages the compaction read through shoal's read-only maps, which are
page cache the kernel reclaims at will, not memory shoal holds. Medians of
the rounds.

    .venv/bin/python benchmarks/compaction.py [--quick] [--runs 3] [--records N]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, arg_parser, events_file, fmt_mmm, paired_ratio, rate_summary, split_batches,  # noqa: E402
                     summary, table, target, target_table, write_result)
from _peers import psfs, register  # noqa: E402

import shoal  # noqa: E402

BATCH_BYTES = 4 << 20
PASSES = 3  # the ingest comparison: the data this many times over


def settings(quick: bool) -> dict:
    page = (64 << 10) if quick else (1 << 20)
    return {"page_size_bytes": page, "segment_size_bytes": 16 * page, "memory_budget_bytes": 64 * page}


def ingest(store, batches: list[bytes]) -> None:
    for b in batches:
        store.ingest(b)


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class MemoryWatch:
    """Peak RssAnon while the block runs (sampled), and RssFile growth."""

    def __enter__(self):
        self.anon0, self.file0 = _status("RssAnon"), _status("RssFile")
        self.peak = self.anon0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))
        self.anon_growth = self.peak - self.anon0
        self.file_growth = _status("RssFile") - self.file0


def unkeyed(directory: Path, batches: list[bytes], config: dict) -> dict:
    store = shoal.open(directory, **config)
    register(store, psfs("events", 3))
    ingest(store, batches)
    store.flush()
    if config.get("compression") == "zstd":
        assert store.wait_compressed(600)
    before = store.stats()
    with MemoryWatch() as mem:
        r = store.compact(retain_bytes=before["log_bytes"] // 10)
    after = store.stats()
    assert after["records"] == before["records"] - r.records_dropped
    store.close()
    shutil.rmtree(directory)
    return {"log_bytes": before["log_bytes"], "disk_before": before["disk_bytes"], "disk_after": after["disk_bytes"],
            "compacted_bytes": r.begin_after - r.begin_before, "seconds": r.duration_ms / 1e3,
            "anon_growth": mem.anon_growth, "maps_growth": mem.file_growth, **r.to_dict()}


def keyed(directory: Path, batches: list[bytes], config: dict) -> dict:
    store = shoal.open(directory, key="id", **config)
    register(store, psfs("events", 3))
    ingest(store, batches)
    end_of_first = store.tail_address
    ingest(store, batches[: len(batches) // 2])
    store.flush()
    with MemoryWatch() as mem:
        t0 = time.perf_counter()
        r = store.compact(end_of_first)
        seconds = time.perf_counter() - t0
    assert r.records_copied > 0
    store.checkpoint()
    disk_after = store.stats()["disk_bytes"]
    store.close()
    shutil.rmtree(directory)
    return {"compacted_bytes": r.begin_after - r.begin_before, "seconds": seconds, "disk_before": r.disk_bytes_before,
            "disk_after": disk_after, "anon_growth": mem.anon_growth, "maps_growth": mem.file_growth, **r.to_dict()}


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="events (default 200,000; --quick 20,000)")
    ap.add_argument("--tmp", type=Path, help="directory for the stores (default: system temp)")
    args = ap.parse_args(argv)
    n = args.records or (20_000 if args.quick else 200_000)
    data = events_file(n).read_bytes()
    batches = split_batches(data, BATCH_BYTES)
    config = settings(args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    one_file = dict(config, segment_size_bytes=(64 << 20) if args.quick else (256 << 20))
    one_zstd = dict(one_file, compression="zstd")
    rounds_u, rounds_1, rounds_z, rounds_k, t_plain, t_retain, retain_runs, retain_disk = [], [], [], [], [], [], [], []
    try:
        for _ in range(args.runs):
            rounds_u.append(unkeyed(tmp / "u", batches, config))
            rounds_1.append(unkeyed(tmp / "1", batches, one_file))
            rounds_z.append(unkeyed(tmp / "z", batches, one_zstd))
            rounds_k.append(keyed(tmp / "k", batches, config))
            for name in ("plain", "retain"):
                extra = {"retain_bytes": len(data) // 5, "compaction_interval_seconds": 0.05} if name == "retain" else {}
                store = shoal.open(tmp / name, **config, **extra)
                register(store, psfs("events", 3))
                t0 = time.perf_counter()
                ingest(store, batches * PASSES)
                (t_plain if name == "plain" else t_retain).append(time.perf_counter() - t0)
                if name == "retain":
                    st = store.stats()
                    retain_runs.append(st["compaction"]["runs"])
                    retain_disk.append(st["disk_bytes"])
                store.close()
                shutil.rmtree(tmp / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(rounds: list[dict], key: str) -> float:
        return summary([r[key] for r in rounds])["median"]

    u_rate = summary([r["compacted_bytes"] / MB / r["seconds"] for r in rounds_u])
    k_rate = summary([r["compacted_bytes"] / MB / r["seconds"] for r in rounds_k])
    plain_rate = rate_summary(PASSES * len(data) / MB, t_plain)
    retain_rate = rate_summary(PASSES * len(data) / MB, t_retain)
    ratio = paired_ratio([len(data) / s for s in t_retain], [len(data) / s for s in t_plain])
    payload = {"records": n, "bytes": len(data), "config": config, "runs": args.runs, "quick": args.quick,
               "unkeyed": rounds_u, "one_file": rounds_1, "one_file_zstd": rounds_z, "keyed": rounds_k,
               "unkeyed_mb_s": u_rate, "keyed_mb_s": k_rate,
               "ingest_plain_mb_s": plain_rate, "ingest_retain_mb_s": retain_rate, "ingest_ratio": ratio,
               "retain_bytes": len(data) // 5, "retain_runs": retain_runs, "retain_disk_bytes": retain_disk}

    print(f"{n:,} generated events ({len(data) / MB:,.0f} MB), 3 PSFs, pages {config['page_size_bytes'] >> 10} KiB, "
          f"segments {config['segment_size_bytes'] >> 20} MiB; medians of {args.runs} rounds")
    def disk(rounds: list[dict]) -> str:
        return f"{med(rounds, 'disk_before') / MB:,.1f} -> {med(rounds, 'disk_after') / MB:,.1f}"

    rows = [[label, f"{med(rs, 'log_bytes') / MB:,.1f}",
             f"{med(rs, 'compacted_bytes') / MB:,.1f}", f"{med(rs, 'bytes_reclaimed') / MB:,.1f}", disk(rs),
             f"{med(rs, 'records_dropped'):,.0f}", "0", f"{med(rs, 'seconds') * 1e3:,.0f}",
             fmt_mmm(rate), f"{med(rs, 'anon_growth') / MB:,.1f}", f"{med(rs, 'maps_growth') / MB:,.1f}"]
            for label, rs, rate in (("unkeyed, retain 10%", rounds_u, u_rate),
                                    (f"one {one_file['segment_size_bytes'] >> 20} MiB file, retain 10%", rounds_1,
                                     summary([r["compacted_bytes"] / MB / r["seconds"] for r in rounds_1])),
                                    (f"one {one_file['segment_size_bytes'] >> 20} MiB file, zstd, retain 10%",
                                     rounds_z, summary([r["compacted_bytes"] / MB / r["seconds"] for r in rounds_z])))]
    rows.append(["keyed, half live (+checkpoint)", "", f"{med(rounds_k, 'compacted_bytes') / MB:,.1f}",
                 f"{med(rounds_k, 'bytes_reclaimed') / MB:,.1f}", disk(rounds_k), f"{med(rounds_k, 'records_dropped'):,.0f}",
                 f"{med(rounds_k, 'records_copied'):,.0f}", f"{med(rounds_k, 'seconds') * 1e3:,.0f}", fmt_mmm(k_rate),
                 f"{med(rounds_k, 'anon_growth') / MB:,.1f}", f"{med(rounds_k, 'maps_growth') / MB:,.1f}"])
    print(table(rows, ["compaction", "log MB", "below cut MB", "reclaimed MB", "disk MB", "dropped", "copied",
                       "ms", "MB/s min/med/max", "anon +MB", "maps +MB"], align="lrrrrrrrrrr"))
    print()
    rows = [["without retention", fmt_mmm(plain_rate), "", ""],
            [f"retain_bytes {len(data) // 5 / MB:,.0f} MB, checked every 0.05 s", fmt_mmm(retain_rate),
             f"{summary(retain_runs)['median']:,.0f}", f"{summary(retain_disk)['median'] / MB:,.1f}"]]
    print(table(rows, [f"ingest {PASSES}x the events (4 MB calls)", "MB/s min/med/max", "compactions", "disk MB after"], align="lrrr"))
    payload["targets"] = [target("ingest with background retention vs without", ">= 0.8x", ratio["median"], 0.8,
                                 unit="x", detail=f"{retain_rate['median']:,.0f} vs {plain_rate['median']:,.0f} MB/s")]
    for label, rs in (("compact to the newest 10%", rounds_u), ("compact to the newest 10%, one file", rounds_1),
                      ("compact to the newest 10%, one file, zstd", rounds_z)):
        share = summary([r["disk_after"] / r["disk_before"] for r in rs])["median"]
        payload["targets"].append(target(f"{label}: disk after / before", "<= 0.15", share, 0.15,
                                         higher_is_better=False))
    share = summary([r["disk_after"] / r["disk_before"] for r in rounds_k])["median"]
    payload["targets"].append(target("keyed compaction (+checkpoint): disk after / before", "< 1", share, 1.0,
                                     higher_is_better=False))
    print()
    print(target_table(payload["targets"]))
    path = write_result("compaction", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
