"""Queries by PSF value beside SQLite: point queries at three selectivities,
index vs full scan, a conjunction, and a PSF registered half way (hybrid).

Data: generated GitHub-like events (gen_events.py). shoal indexes `type`,
`repo.name` and `actor.login` from the start, and `actor.login` again under
the name `actor_late` registered after half the records, so a query on it
walks the chain for the newer half and scans the older half. SQLite holds
the same records as raw JSON text with an index per PSF
(json_extract(doc, '$.repo.name') = ? and so on); both return the records'
JSON text: SQLite a fetchall of the text column (a tuple and a str per row),
shoal three ways, each held in a list until the query ends as fetchall's
rows are: store.query (a Record per record; a large answer's Records share
the buffer their batch was read into, and a Record's text becomes its own
bytes object when .raw is first taken), the same with .raw taken of every
Record (what a caller that needs each record's bytes pays), and
store.query_batches (RecordBatches: the records' text in one buffer per
batch, no object per record: what the HTTP API streams).

Workloads, each in rounds (shoal and SQLite alternate within a round):
  point    repo.name = v for v with ~5 records (50 different values, each
           queried 10 times a round), ~3% and ~40% of the records (one
           value each, queried 10 and 2 times a round), after a warm-up
           query of each: latency median and p99, records/s returned
  scan     store.scan("repo.name == 'v'") at ~3%: the full scan an index
           saves, beside store.query for the same value (Records both), and
           scan_batches beside query_batches; its MB/s counts log bytes. A
           round runs each scan once and each index query 10 times (its
           median is the round's figure, as in the point workload).
           Beside them query_addresses: the chain walk alone, no records
  and      query_all([type = PushEvent, repo.name = v at ~3%]) vs SQLite's
           WHERE ... AND ...
  hybrid   actor_late = v (~1%) vs the same PSF indexed from the start vs a scan
Phases: "memory" (the store that ingested the data, memory budget 2x the
data: every page in memory), then "disk" (reopened from a checkpoint with a
budget of 1/10 of the data: every page but the tail read from segment
files; the OS page cache is warm after the first pass) and "disk-cold"
(~5-record queries only, on values not queried before; before every query
posix_fadvise(DONTNEED) drops shoal's segment files and SQLite's database
from the OS page cache, so reads go to the device; each system keeps its own
in-process caches: shoal's hash index, SQLite's page cache).

    .venv/bin/python benchmarks/query.py [--quick] [--runs 3] [--records N]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, arg_parser, drop_cache, events_counts, events_file, page_config, paired_ratio,  # noqa: E402
                     percentile, pick_values, summary, table, target, target_table, write_result)
from _peers import SQLitePeer, psfs, register  # noqa: E402

import shoal  # noqa: E402

N_SMALL_VALUES = 50
REPEATS = {"~5 records": 10, "~3%": 10, "~40%": 2}  # queries of each value per round


class Bench:
    def __init__(self, store, peer: SQLitePeer, counts: dict, n: int, runs: int, quick: bool):
        self.store, self.peer, self.n, self.runs = store, peer, n, runs
        repo = counts["repo.name"]
        k = 10 if quick else N_SMALL_VALUES
        small = pick_values(repo, 5, k * (runs + 1))
        self.values = {"~5 records": small[:k], "~3%": pick_values(repo, 0.03 * n),
                       "~40%": pick_values(repo, 0.40 * n)}
        self.cold_values = small[k:]  # never queried warm
        self.expect = {v: repo[v] for v in small + self.values["~3%"] + self.values["~40%"]}
        self.v3 = self.values["~3%"][0]
        self.actor = pick_values(counts["actor.login"], 0.01 * n)[0]
        self.expect_actor = counts["actor.login"][self.actor]
        self.expect_and = None

    # ---- one query each, verified ----
    def shoal_point(self, v: str) -> int:
        got = len(list(self.store.query("repo", v)))
        assert got == self.expect[v], (v, got, self.expect[v])
        return got

    def raw_point(self, v: str) -> int:
        got = len([r.raw for r in self.store.query("repo", v)])
        assert got == self.expect[v], (v, got, self.expect[v])
        return got

    def batches_point(self, v: str) -> int:
        batches = list(self.store.query_batches([("repo", v)]))
        got = sum(map(len, batches))
        assert got == self.expect[v], (v, got, self.expect[v])
        return got

    def sqlite_point(self, v: str) -> int:
        got = len(self.peer.query("repo", v))
        assert got == self.expect[v], (v, got, self.expect[v])
        return got

    def shoal_scan(self) -> int:
        got = len(list(self.store.scan(f"repo.name == '{self.v3}'")))
        assert got == self.expect[self.v3], got
        return got

    def batches_scan(self) -> int:
        got = sum(map(len, list(self.store.scan_batches(f"repo.name == '{self.v3}'"))))
        assert got == self.expect[self.v3], got
        return got

    def shoal_and(self) -> int:
        return len(list(self.store.query_all([("type", "PushEvent"), ("repo", self.v3)])))

    def sqlite_and(self) -> int:
        return len(self.peer.query_all([("type", "PushEvent"), ("repo", self.v3)]))

    def shoal_actor(self, psf: str) -> int:
        got = len(list(self.store.query(psf, self.actor)))
        assert got == self.expect_actor, (psf, got, self.expect_actor)
        return got

    def actor_scan(self) -> int:
        got = len(list(self.store.scan(f"actor.login == '{self.actor}'")))
        assert got == self.expect_actor, got
        return got

    # ---- workloads ----
    def point(self) -> list[dict]:
        out = []
        for label, values in self.values.items():
            repeats = REPEATS[label]
            for v in values:  # warm-up pass
                self.shoal_point(v)
                self.raw_point(v)
                self.batches_point(v)
                self.sqlite_point(v)
            rounds = [[v for _ in range(repeats) for v in values]] * self.runs
            out.append(self._point(label, rounds))
        return out

    def point_cold(self, files: list[Path]) -> list[dict]:
        """~5-record queries with the OS page cache dropped before each; a
        value is queried once (each system's own caches stay as they are)."""
        return [self._point("~5 records", [self.cold_values[i::self.runs] for i in range(self.runs)],
                            cold_files=files)]

    def _point(self, label: str, rounds: list[list[str]], cold_files: list[Path] | None = None) -> dict:
        lat: dict = {"shoal": [], "raw": [], "batches": [], "sqlite": []}
        per_round: dict = {k: [] for k in lat}
        for values in rounds:
            for system, fn in (("shoal", self.shoal_point), ("raw", self.raw_point),
                               ("batches", self.batches_point), ("sqlite", self.sqlite_point)):
                total = 0.0
                for v in values:
                    if cold_files:
                        self.store._log.segments.drop_mapped_pages()  # else fadvise skips mapped pages
                        drop_cache(cold_files)
                    t0 = time.perf_counter()
                    fn(v)
                    dt = time.perf_counter() - t0
                    lat[system].append(dt)
                    total += dt
                per_round[system].append(total)
        queried = [v for values in rounds for v in values]
        records = sum(self.expect[v] for v in queried) / len(queried)
        res = {"selectivity": label, "records": records, "values": len(set(queried)), "samples": len(queried),
               "x": paired_ratio(per_round["sqlite"], per_round["shoal"]),
               "x_raw": paired_ratio(per_round["sqlite"], per_round["raw"]),
               "x_batches": paired_ratio(per_round["sqlite"], per_round["batches"])}
        for system, xs in lat.items():
            res[system] = dict(summary(xs), p99=percentile(xs, 99), records_s=records / summary(xs)["median"])
        return res

    def shoal_addresses(self) -> int:
        got = len(list(self.store.query_addresses([("repo", self.v3)])))
        assert got == self.expect[self.v3], got
        return got

    def scan_vs_index(self) -> dict:
        t = {"index": [], "batches": [], "addresses": [], "scan": [], "scan_batches": []}
        self.shoal_point(self.v3)
        for _ in range(self.runs):
            for name, fn in (("index", lambda: self.shoal_point(self.v3)),
                             ("batches", lambda: self.batches_point(self.v3)), ("addresses", self.shoal_addresses),
                             ("scan", self.shoal_scan), ("scan_batches", self.batches_scan)):
                # an index query's time in a round: the median of REPEATS["~3%"] runs, as in the
                # point workload (a single run right after a 130 ms scan starts with cold caches)
                times = []
                for _ in range(1 if name.startswith("scan") else REPEATS["~3%"]):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                t[name].append(sorted(times)[len(times) // 2])
        log_bytes = self.store.stats()["log_bytes"]
        return {"value": self.v3, "records": self.expect[self.v3], "log_bytes": log_bytes,
                **{k: summary(v) for k, v in t.items()},
                "scan_mb_s": summary([log_bytes / MB / s for s in t["scan"]]),
                "scan_batches_mb_s": summary([log_bytes / MB / s for s in t["scan_batches"]]),
                "x": paired_ratio(t["scan"], t["index"]), "x_batches": paired_ratio(t["scan_batches"], t["batches"]),
                "x_addresses": paired_ratio(t["scan"], t["addresses"])}

    def conjunction(self) -> dict:
        n_shoal, n_sqlite = self.shoal_and(), self.sqlite_and()
        assert n_shoal == n_sqlite, (n_shoal, n_sqlite)
        t = {"shoal": [], "sqlite": []}
        for _ in range(self.runs):
            for name, fn in (("shoal", self.shoal_and), ("sqlite", self.sqlite_and)):
                t0 = time.perf_counter()
                fn()
                t[name].append(time.perf_counter() - t0)
        return {"conditions": [["type", "PushEvent"], ["repo", self.v3]], "records": n_shoal,
                "shoal": summary(t["shoal"]), "sqlite": summary(t["sqlite"]),
                "x": paired_ratio(t["sqlite"], t["shoal"])}

    def hybrid(self) -> dict:
        t = {"full index": [], "hybrid": [], "scan": []}
        fns = {"full index": lambda: self.shoal_actor("actor"), "hybrid": lambda: self.shoal_actor("actor_late"),
               "scan": self.actor_scan}
        for fn in fns.values():
            fn()
        for _ in range(self.runs):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                t[name].append(time.perf_counter() - t0)
        return {"value": self.actor, "records": self.expect_actor, **{k: summary(v) for k, v in t.items()},
                "hybrid_over_index": paired_ratio(t["hybrid"], t["full index"]),
                "scan_over_hybrid": paired_ratio(t["scan"], t["hybrid"])}


def us(x: float) -> str:
    return f"{x * 1e6:,.0f}"


def print_phase(phase: str, res: dict) -> None:
    rows = []
    for p in res["point"]:
        for system, label in (("shoal", "shoal query (Records)"), ("raw", "shoal query, .raw of each"),
                              ("batches", "shoal query_batches"), ("sqlite", "SQLite indexed")):
            if system not in p:  # results written before the .raw row existed
                continue
            s = p[system]
            x = {"shoal": p["x"], "raw": p.get("x_raw"), "batches": p["x_batches"]}.get(system)
            rows.append([p["selectivity"] if system == "shoal" else "", f"{p['records']:,.0f}" if system == "shoal" else "",
                         label, us(s["median"]), us(s["p99"]), f"{s['records_s']:,.0f}",
                         f"{x['median']:.2f}x" if x else ""])
    if "scan" in res:
        s = res["scan"]
        rows.append(["~3%", "", "shoal query_addresses", us(s["addresses"]["median"]), us(s["addresses"]["max"]),
                     f"{s['records'] / s['addresses']['median']:,.0f}", "addresses only, no records"])
        rows.append(["", "", f"shoal scan ({s['scan_mb_s']['median']:,.0f} MB/s)", us(s["scan"]["median"]),
                     us(s["scan"]["max"]), f"{s['records'] / s['scan']['median']:,.0f}",
                     f"query {s['x']['median']:,.0f}x, addresses {s['x_addresses']['median']:,.0f}x faster"])
        rows.append(["", "", f"shoal scan_batches ({s['scan_batches_mb_s']['median']:,.0f} MB/s)",
                     us(s["scan_batches"]["median"]), us(s["scan_batches"]["max"]),
                     f"{s['records'] / s['scan_batches']['median']:,.0f}",
                     f"query_batches {s['x_batches']['median']:,.0f}x faster"])
    if "and" in res:
        c = res["and"]
        for system, label in (("shoal", "shoal query_all"), ("sqlite", "SQLite AND")):
            rows.append(["type=Push AND ~3%" if system == "shoal" else "", f"{c['records']:,}" if system == "shoal" else "",
                         label, us(c[system]["median"]), us(c[system]["max"]),
                         f"{c['records'] / c[system]['median']:,.0f}",
                         f"{c['x']['median']:.2f}x" if system == "shoal" else ""])
    if "hybrid" in res:
        h = res["hybrid"]
        for name, label in (("full index", "shoal, PSF from the start"), ("hybrid", "shoal, PSF from half way"),
                            ("scan", "shoal scan")):
            extra = {"hybrid": f"{h['hybrid_over_index']['median']:.1f}x index time",
                     "scan": f"{h['scan_over_hybrid']['median']:.1f}x hybrid time"}.get(name, "")
            rows.append(["actor ~1%" if name == "full index" else "", f"{h['records']:,}" if name == "full index" else "",
                         label, us(h[name]["median"]), us(h[name]["max"]), f"{h['records'] / h[name]['median']:,.0f}",
                         extra])
    print(f"\n{phase}:")
    print(table(rows, ["query", "records", "system", "median us", "p99/max us", "records/s", "shoal x"],
                align="lrlrrrl"))


def targets_for(mem: dict) -> list[dict]:
    out = []
    by = {p["selectivity"]: p for p in mem["point"]}
    small = by["~5 records"]
    out.append(target("point query ~5 records, in memory: median latency vs SQLite", "<= SQLite's",
                      small["shoal"]["median"] * 1e6, small["sqlite"]["median"] * 1e6, unit="us",
                      higher_is_better=False, detail=f"SQLite {small['sqlite']['median'] * 1e6:.0f} us"))
    for label in ("~3%", "~40%"):
        p = by[label]
        for key, how in (("x_batches", "query_batches"), ("x", "query, Records")):
            out.append(target(f"{how} {label} ({p['records']:,.0f} records), in memory: records/s vs SQLite",
                              ">= 3x", p[key]["median"], 3, unit="x"))
    s = mem["scan"]
    out.append(target("query_batches vs scan_batches at ~3%, in memory", ">= 100x", s["x_batches"]["median"], 100,
                      unit="x"))
    out.append(target("query vs scan (Records) at ~3%, in memory", ">= 100x", s["x"]["median"], 100, unit="x"))
    out.append(target("full scan from memory", ">= 1000 MB/s (1 GB/s)", s["scan_mb_s"]["median"], 1000, unit="MB/s"))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="events (default 200,000; --quick 20,000)")
    ap.add_argument("--tmp", type=Path, help="directory for the store and database (default: system temp)")
    args = ap.parse_args(argv)
    n = args.records or (20_000 if args.quick else 200_000)
    path = events_file(n)
    data = path.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    counts = events_counts(n)
    specs = psfs("events", 3)
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-", dir=args.tmp))
    results: dict = {"records": n, "bytes": len(data), "runs": args.runs, "quick": args.quick}
    try:
        disk_config = page_config(len(data), 0.1)  # its page size serves both phases (fixed at creation)
        mem_config = page_config(len(data), 2.0, disk_config["page_size_bytes"])
        store = shoal.open(tmp / "store", **mem_config)
        register(store, specs)
        store.ingest(data[:half])
        store.register_psf("actor_late", "actor.login")
        store.ingest(data[half:])
        peer = SQLitePeer(tmp / "peer.sqlite", specs)
        peer.create()
        peer.load(data.splitlines())
        peer.settle()
        assert all(peer.uses_index(s.name) for s in specs)
        del data
        print(f"events: {n:,} records, {results['bytes'] / MB:,.1f} MB; shoal log {store.stats()['log_bytes'] / MB:,.1f} MB"
              f", SQLite file {peer.size_bytes() / MB:,.1f} MB; {args.runs} rounds")

        b = Bench(store, peer, counts, n, args.runs, args.quick)
        mem = {"config": mem_config, "point": b.point(), "scan": b.scan_vs_index(), "and": b.conjunction(),
               "hybrid": b.hybrid()}
        print_phase(f"in memory (budget {mem_config['memory_budget_bytes'] / MB:,.0f} MB)", mem)
        store.checkpoint()
        store.close()

        store = shoal.open(tmp / "store", **disk_config)
        b.store = store
        disk = {"config": disk_config, "point": b.point(), "scan": b.scan_vs_index(), "and": b.conjunction(),
                "hybrid": b.hybrid()}
        print_phase(f"on disk (budget {disk_config['memory_budget_bytes'] / MB:,.0f} MB, page cache warm)", disk)
        files = sorted((tmp / "store" / "log").glob("segment-*.log")) + [tmp / "peer.sqlite", tmp / "peer.sqlite-wal"]
        cold = {"point": b.point_cold(files)}
        print_phase("on disk, page cache dropped before every query", cold)
        store.close()
        peer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results.update(memory=mem, disk=disk, disk_cold=cold)
    results["targets"] = targets_for(mem)
    print()
    print(target_table(results["targets"]))
    path = write_result("query", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
