"""Numeric ranges and time windows: shoal's bucketed PSFs (query_range) and
since/until beside a full scan and SQLite, in the same rounds.

Data: generated events (gen_events.py), their `created_at` rewritten to
times spread over one day in no order (as epoch seconds, milliseconds or
ISO-8601 text), so a window's records lie all over the log.

  range     actor.id in [lo, hi), ~3% of the records: query_range on a PSF
            bucketed so the range spans ~20 buckets, vs store.scan of the
            same predicate, vs SQLite's expression index on actor.id
  window    type = 'PushEvent' in one hour of the day: store.query(...,
            since, until) on a store with time_field (one bucket per five
            minutes), vs the same query without the window, vs SQLite with
            an index on the time (a column computed at load) and one on
            json_extract(type)
  pages     how many log pages the window's walk reads (the pages of the
            records in the buckets it touches) over the pages that hold
            the window's records

Warm rows: medians of repeated calls per round; cold rows: the first call
after reopening each system (page cache warm); dropped rows: the first
call after reopening with the system's files evicted from the page cache
(posix_fadvise DONTNEED), so it reads the device. Answers are checked equal.
"""
from __future__ import annotations

import datetime
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson
from _common import MB, arg_parser, drop_cache, events_file, paired_ratio, summary, table, target, target_table, write_result

import shoal
from shoal.psf.buckets import span

BASE = 1_420_070_400
DAY = 86_400


def spread_times(lines: list[bytes], seed: int = 7) -> tuple[list[bytes], list[float]]:
    rng = random.Random(seed)
    out, times = [], []
    for line in lines:
        o = orjson.loads(line)
        t = BASE + rng.uniform(0, DAY)
        form = rng.random()
        o["created_at"] = (round(t) if form < 0.3 else round(t * 1000) if form < 0.5 else
                           datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z"))
        times.append(round(t) if form < 0.3 else (round(t * 1000) / 1000 if form < 0.5 else
                                                   datetime.datetime.fromisoformat(o["created_at"].replace(
                                                       "Z", "+00:00")).timestamp()))
        out.append(orjson.dumps(o))
    return out, times


def measure(fns: dict, runs: int, reps: int, reopen) -> dict:
    out = {name: {"warm": [], "cold": [], "dropped": []} for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():  # each system's first call with its files out of the page cache
            reopen(drop=True)
            t0 = time.perf_counter()
            fn()
            out[name]["dropped"].append(time.perf_counter() - t0)
        reopen()
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name]["cold"].append(time.perf_counter() - t0)
        for name, fn in fns.items():
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            samples.sort()
            out[name]["warm"].append(samples[len(samples) // 2])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="events (default 100,000; --quick 5,000)")
    ap.add_argument("--reps", type=int, default=0, help="warm calls per round (default 10)")
    args = ap.parse_args(argv)
    n = args.records or (5_000 if args.quick else 100_000)
    reps = args.reps or (3 if args.quick else 10)
    lines, times = spread_times(events_file(n).read_bytes().splitlines())
    objs = [orjson.loads(line) for line in lines]
    actor = sorted(o["actor"]["id"] for o in objs)
    lo, hi = actor[int(0.50 * n)], actor[int(0.53 * n)] + 1
    width = max(1, (hi - lo) // 20)
    sel = sum(1 for o in objs if lo <= o["actor"]["id"] < hi) / n
    w_lo = BASE + 10 * 3600
    w_hi = w_lo + 3600
    tmp = Path(tempfile.mkdtemp(prefix="shoal-ranges-"))
    results: dict = {"records": n, "runs": args.runs, "reps": reps, "range": [lo, hi], "range_selectivity": sel,
                     "bucket": width}
    try:
        store = shoal.open(tmp / "shoal", time_field="created_at")
        store.register_psf("type", "type")
        store.register_psf("actor", "actor.id", bucket=width)
        store.ingest(b"\n".join(lines))
        store.checkpoint()
        con = sqlite3.connect(tmp / "sqlite.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, doc TEXT NOT NULL, ts REAL)")
        con.execute("CREATE INDEX idx_actor ON events(json_extract(doc, '$.actor.id'))")
        con.execute("CREATE INDEX idx_type ON events(json_extract(doc, '$.type'))")
        con.execute("CREATE INDEX idx_ts ON events(ts)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO events(doc, ts) VALUES (?, ?)", ((l.decode(), t) for l, t in zip(lines, times)))
        con.execute("COMMIT")
        con.execute("ANALYZE")
        state = {"store": store, "con": con}
        print(f"events: {n:,} records, {sum(map(len, lines)) / MB:,.1f} MB, times spread over a day in no order; "
              f"range actor.id in [{lo}, {hi}) holds {sel:.1%} (bucket {width}); {args.runs} rounds, {reps} warm calls")

        def reopen(drop: bool = False):
            state["store"].close()
            state["con"].close()
            if drop:  # evicted from the page cache: the first call reads the device
                drop_cache([f for f in sorted((tmp / "shoal").rglob("*")) + sorted(tmp.glob("sqlite.db*")) if f.is_file()])
            state["store"] = shoal.open(tmp / "shoal")
            state["con"] = sqlite3.connect(tmp / "sqlite.db", isolation_level=None)

        expr = f"actor.id >= `{lo}` && actor.id < `{hi}`"
        ranges = {
            "shoal query_range": lambda: sum(len(b) for b in state["store"].query_range_batches("actor", lo, hi)),
            "shoal scan": lambda: sum(len(b) for b in state["store"].scan_batches(expr)),
            "SQLite": lambda: len(state["con"].execute(
                "SELECT doc FROM events WHERE json_extract(doc, '$.actor.id') >= ? AND "
                "json_extract(doc, '$.actor.id') < ?", (lo, hi)).fetchall()),
        }
        windows = {
            "shoal window": lambda: sum(len(b) for b in state["store"].query_batches(
                [("type", "PushEvent")], since=w_lo, until=w_hi)),
            "shoal no window": lambda: sum(len(b) for b in state["store"].query_batches([("type", "PushEvent")])),
            "SQLite window": lambda: len(state["con"].execute(
                "SELECT doc FROM events WHERE json_extract(doc, '$.type') = 'PushEvent' AND ts >= ? AND ts < ?",
                (w_lo, w_hi)).fetchall()),
        }
        answers = {k: f() for k, f in ranges.items()}
        assert len(set(answers.values())) == 1, answers
        wa = {k: f() for k, f in windows.items() if k != "shoal no window"}
        assert len(set(wa.values())) == 1, wa
        r = measure(ranges, args.runs, reps, reopen)
        w = measure(windows, args.runs, reps, reopen)
        pages = _pages(state["store"], times, w_lo, w_hi)
        state["store"].close()
        state["con"].close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    out: dict = {}
    for label, res, base in (("range ~3%", r, "shoal query_range"), ("1-hour window", w, "shoal window")):
        out[label] = {}
        for phase in ("warm", "cold", "dropped"):
            for name, v in res.items():
                s = summary(v[phase])
                x = paired_ratio(v[phase], res[base][phase])
                out[label].setdefault(name, {})[phase] = dict(s, x=x)
                rows.append([label, name, phase, f"{s['median'] * 1e3:.2f}", f"{x['median']:.1f}"])
    print(table(rows, ["question", "system", "", "ms", "x shoal"], "lllrr"))
    print(f"\nwindow pages: the walk reads {pages['read']} pages, the window's records lie in {pages['hold']} "
          f"({pages['read'] / max(1, pages['hold']):.2f}x)")
    results.update(out, pages=pages, answers={"range": answers, "window": wa})
    rq = out["range ~3%"]
    wq = out["1-hour window"]
    results["targets"] = [
        target("range ~3% (warm): full scan's time / query_range's", ">= 20x",
               rq["shoal scan"]["warm"]["x"]["median"], 20, unit="x"),
        target("range ~3% (warm): SQLite's time / query_range's", ">= 2x",
               rq["SQLite"]["warm"]["x"]["median"], 2, unit="x"),
        target("1-hour window (warm): the query without it / with it", ">= 10x",
               wq["shoal no window"]["warm"]["x"]["median"], 10, unit="x"),
        target("1-hour window: pages read / pages holding it", "<= 2x",
               pages["read"] / max(1, pages["hold"]), 2, unit="x", higher_is_better=False),
    ]
    print()
    print(target_table(results["targets"]))
    path = write_result("ranges", results, args.out)
    print(f"wrote {path}")
    return results


def _pages(store, times: list[float], lo: float, hi: float) -> dict:
    """Pages holding the window's records, and pages of the records of the
    buckets the window's walk touches (what it reads)."""
    tp = store.psf("@time")
    w = tp.bucket
    kmin, kmax = span(tp, lo, hi)  # the buckets the window's walk reads
    addrs = [r.address for r in store.scan("`true`", order="oldest")]
    bits = store.config.page_bits
    hold = {a >> bits for a, t in zip(addrs, times) if lo <= t < hi}
    read = {a >> bits for a, t in zip(addrs, times) if kmin <= int(t // w) <= kmax}
    return {"hold": len(hold), "read": len(read)}


if __name__ == "__main__":
    main()
