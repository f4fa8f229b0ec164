"""Keyed stores beside SQLite's primary key: upserts, point reads by key, and
what live-version filtering costs PSF queries.

Data: generated GitHub-like events (gen_events.py); each carries a unique
`id`. The load is the events, then new versions of every fourth event (same
id, a changed `type` for half of them), so a quarter of the keys have two
versions. shoal: a store with key="id" and PSFs `type` and `repo.name`, all
in memory. SQLite: a table (id TEXT PRIMARY KEY, doc TEXT) filled with
INSERT OR REPLACE in one transaction, WAL, an expression index on
json_extract(doc, '$.repo.name').

Workloads, in rounds (shoal and SQLite alternate within a round):
  upsert     loading everything (records/s, MB/s); beside it the same data
             into an unkeyed shoal store, for the cost of keys
  get        point reads of 2,000 random keys (latency median, p99)
  query      repo.name = v at ~3% (live versions only) vs the same on SQLite
             (whose table holds only live rows), and shoal's
             include_superseded (no filtering), for the cost of liveness

    .venv/bin/python benchmarks/keys.py [--quick] [--runs 3] [--records N]
"""
from __future__ import annotations

import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, arg_parser, events_counts, events_file, paired_ratio, percentile, pick_values,  # noqa: E402
                     summary, table, target, target_table, write_result)

import shoal  # noqa: E402


def versions(lines: list[bytes]) -> list[bytes]:
    """New versions of every fourth event: same id, half with a new type."""
    out = []
    for i, line in enumerate(lines[::4]):
        obj = orjson.loads(line)
        obj["version"] = 2
        if i % 2:
            obj["type"] = "RewrittenEvent"
        out.append(orjson.dumps(obj))
    return out


class SQLiteKeyed:
    def __init__(self, path: Path):
        self.path = path

    def load(self, lines: list[bytes]) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        con = self.con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE events(id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")
        con.execute("CREATE INDEX idx_repo ON events(json_extract(doc, '$.repo.name'))")
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO events(id, doc) VALUES (json_extract(?1, '$.id'), ?1)",
                        ((line.decode(),) for line in lines))
        con.execute("COMMIT")

    def get(self, key: str):
        row = self.con.execute("SELECT doc FROM events WHERE id = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def query(self, repo: str) -> list:
        return self.con.execute("SELECT doc FROM events WHERE json_extract(doc, '$.repo.name') = ?",
                                (repo,)).fetchall()

    def close(self) -> None:
        self.con.close()


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, help="generated events (default 100,000; --quick 20,000)")
    args = ap.parse_args(argv)
    n = args.records or (20_000 if args.quick else 100_000)
    path = events_file(n)
    base = path.read_bytes().splitlines()
    lines = base + versions(base)
    data = b"\n".join(lines) + b"\n"
    ids = [orjson.loads(line)["id"] for line in base]
    live: dict[str, bytes] = {}
    for line in lines:
        live[orjson.loads(line)["id"]] = line
    rng = random.Random(1)
    get_keys = [rng.choice(ids) for _ in range(500 if args.quick else 2000)]
    repo_counts = events_counts(n)["repo.name"]
    v3 = pick_values(repo_counts, 0.03 * n)[0]
    want_live = sum(1 for line in live.values() if orjson.loads(line)["repo"]["name"] == v3)

    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-keys-"))
    budget = max(64 << 20, 4 * len(data))
    t = {k: [] for k in ("shoal", "shoal_unkeyed", "sqlite")}
    lat = {"shoal": [], "sqlite": []}
    q = {"shoal": [], "shoal_history": [], "sqlite": []}
    try:
        for _ in range(args.runs):
            for name in ("shoal", "shoal_unkeyed", "sqlite"):
                d = tmp / name
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir()
                if name == "sqlite":
                    peer = SQLiteKeyed(d / "peer.sqlite")
                    t0 = time.perf_counter()
                    peer.load(lines)
                    t[name].append(time.perf_counter() - t0)
                    continue
                store = shoal.open(d, memory_budget_bytes=budget, **({"key": "id"} if name == "shoal" else {}))
                store.register_psf("type", "type")
                store.register_psf("repo", "repo.name")
                t0 = time.perf_counter()
                result = store.ingest(data)
                t[name].append(time.perf_counter() - t0)
                assert result.ingested == len(lines), result
                if name == "shoal":
                    keyed = store
                else:
                    store.close()
            for name, fn in (("shoal", lambda k: keyed.get_key(k).raw), ("sqlite", peer.get)):
                for k in get_keys:
                    t0 = time.perf_counter()
                    got = fn(k)
                    lat[name].append(time.perf_counter() - t0)
                    assert got is not None
            for name, fn in (("shoal", lambda: list(keyed.query("repo", v3))),
                             ("shoal_history", lambda: list(keyed.query("repo", v3, include_superseded=True))),
                             ("sqlite", lambda: peer.query(v3))):
                for _ in range(5):
                    t0 = time.perf_counter()
                    got = fn()
                    q[name].append(time.perf_counter() - t0)
                    if name != "shoal_history":
                        assert len(got) == want_live, (name, len(got), want_live)
            # spot check against the dict oracle
            for k in get_keys[:50]:
                assert keyed.get_key(k).raw == live[k]
            keyed.close()
            peer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb = len(data) / MB
    rows = [[label, f"{len(lines) / summary(t[k])['median']:,.0f}", f"{mb / summary(t[k])['median']:,.0f}",
             f"{summary(t['sqlite'])['median'] / summary(t[k])['median']:.1f}x"]
            for k, label in (("shoal", "shoal, key=id"), ("shoal_unkeyed", "shoal, no key"),
                             ("sqlite", "SQLite INSERT OR REPLACE"))]
    print(f"\nupsert {len(lines):,} records ({mb:,.0f} MB, {len(lines) - len(base):,} new versions), "
          f"medians of {args.runs}:")
    print(table(rows, ["system", "records/s", "MB/s", "vs SQLite"], "lrrr"))
    lrows = [[name, f"{summary(xs)['median'] * 1e6:.1f}", f"{percentile(xs, 99) * 1e6:.1f}"]
             for name, xs in (("shoal get_key", lat["shoal"]), ("SQLite by primary key", lat["sqlite"]))]
    print(f"\npoint reads of {len(get_keys):,} random keys per round:")
    print(table(lrows, ["system", "median us", "p99 us"], "lrr"))
    qrows = [[name, f"{summary(xs)['median'] * 1e3:.2f}", f"{want_live / summary(xs)['median']:,.0f}"]
             for name, xs in (("shoal, live versions", q["shoal"]),
                              ("shoal, include_superseded", q["shoal_history"]),
                              ("SQLite indexed", q["sqlite"]))]
    print(f"\nrepo.name = {v3!r} (~3%, {want_live:,} live records):")
    print(table(qrows, ["system", "median ms", "records/s"], "lrr"))
    get_ratio = summary(lat["sqlite"])["median"] / summary(lat["shoal"])["median"]
    targets = [
        target("keyed upsert: records/s vs SQLite INSERT OR REPLACE", ">= 3x",
               summary(t["sqlite"])["median"] / summary(t["shoal"])["median"], 3.0, unit="x"),
        target("get_key: median latency vs SQLite primary key", "<= SQLite's",
               summary(lat["shoal"])["median"] * 1e6, summary(lat["sqlite"])["median"] * 1e6, unit="us",
               higher_is_better=False, detail=f"{get_ratio:.2f}x"),
    ]
    print("\n" + target_table(targets))
    payload = {"records": len(lines), "bytes": len(data), "runs": args.runs, "upsert": {k: summary(v) for k, v in t.items()},
               "get": {k: dict(summary(v), p99=percentile(v, 99)) for k, v in lat.items()},
               "query": {k: summary(v) for k, v in q.items()}, "query_records": want_live,
               "upsert_x": paired_ratio(t["sqlite"], t["shoal"]), "targets": targets}
    print(f"wrote {write_result('keys', payload, args.out)}")
    return payload


if __name__ == "__main__":
    main()
