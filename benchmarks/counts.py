"""Counts and top values: shoal's Store.count / group_count beside SQLite,
DuckDB, ClickHouse (chdb) and Tantivy on the same records, in the same rounds.

Data: the real GitHub events of ../shared/data replayed to ~45,000 records
(ids rewritten; skipped without the data), and generated events
(gen_events.py) of the same count, whose `repo.name` has ~1,000 values.
Each system indexes `type` and `repo.name` its own best way:

  shoal    PSFs on type and repo.name (the value tally answers whole-log counts)
  SQLite   raw JSON text + an expression index per field (json_extract)
  DuckDB   raw JSON text + the two fields as columns, extracted at load
  chdb     MergeTree: raw JSON String + the two fields as columns, ORDER BY id
  Tantivy  the two fields as raw-tokenized fast fields, id as a fast integer

Queries (each a row; "x fastest" is the fastest peer's time over shoal's,
per round, so > 1 means shoal is faster):
  count type = 'PushEvent'              whole log
  count type = 'PushEvent', 2nd half    a window: records from the middle on
  count repo = <a ~3% value>            whole log
  group by type                         all values with their counts
  group by repo, top 10                 ~1,000 values (generated data)
Warm rows are medians over repeated calls; cold rows are the first call
after reopening each system (the OS page cache stays warm).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import orjson
from _common import (DATA, NO_DATA, MB, arg_parser, events_counts, events_file, paired_ratio, pick_values, replay,
                     summary, table, target, target_table, write_result)
from _peers import _proj

import shoal

FIELDS = {"type": ("type",), "repo": ("repo", "name")}


def _get(o, path):
    for k in path:
        o = o.get(k) if isinstance(o, dict) else None
    return o if isinstance(o, str) else None


class Systems:
    """shoal and its peers holding the same records."""

    def __init__(self, tmp: Path, lines: list[bytes]):
        self.tmp = tmp
        self.lines = lines
        cols = {name: [] for name in FIELDS}
        for line in lines:
            o = orjson.loads(line)
            for name, path in FIELDS.items():
                cols[name].append(_get(o, path))
        self.cols = cols
        self.n = len(lines)
        self.mid = self.n // 2
        self._load_shoal()
        self._load_sqlite()
        self.peers = ["SQLite"]
        self.skipped = {}
        for name, load in (("DuckDB", self._load_duckdb), ("chdb", self._load_chdb), ("Tantivy", self._load_tantivy)):
            try:
                load()
                self.peers.append(name)
            except ImportError as exc:  # an optional peer (the bench extra: make bench installs it)
                self.skipped[name] = f"not installed ({exc.name}); pip install -e '.[bench]'"

    # ---- loads ----
    def _load_shoal(self) -> None:
        self.store = shoal.open(self.tmp / "shoal")
        for name, path in FIELDS.items():
            self.store.register_psf(name, ".".join(path))
        res = self.store.ingest(b"\n".join(self.lines))
        addrs = [r.address for r in self.store.scan("`true`", order="oldest")]
        self.shoal_mid = addrs[self.mid]
        assert res.ingested == self.n
        self.store.checkpoint()

    def _load_sqlite(self) -> None:
        import sqlite3
        con = self.sqlite = sqlite3.connect(self.tmp / "sqlite.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
        self.sql = {name: _proj(name, *path).sql for name, path in FIELDS.items()}
        for name, expr in self.sql.items():
            con.execute(f"CREATE INDEX idx_{name} ON events({expr})")
        con.execute("BEGIN")
        con.executemany("INSERT INTO events(id, doc) VALUES (?, ?)", ((i, l.decode()) for i, l in enumerate(self.lines)))
        con.execute("COMMIT")
        con.execute("ANALYZE")
        for name, expr in self.sql.items():
            for q in (f"SELECT count(*) FROM events WHERE {expr} = ?", f"SELECT count(*) FROM events WHERE {expr} = ? AND id >= 1"):
                plan = str(con.execute("EXPLAIN QUERY PLAN " + q, ("x",)).fetchall())
                assert f"idx_{name}" in plan, (q, plan)

    def _arrow(self):
        import pyarrow as pa
        return pa.table({"id": list(range(self.n)), "doc": [l.decode() for l in self.lines], **self.cols})

    def _load_duckdb(self) -> None:
        import duckdb
        self.duck = duckdb.connect(str(self.tmp / "duck.db"))
        tbl = self._arrow()  # noqa: F841 - read by name in the SQL below
        self.duck.execute("CREATE TABLE events AS SELECT * FROM tbl")
        self.duck.execute("CHECKPOINT")

    def _load_chdb(self) -> None:
        from chdb import session
        self.ch = session.Session(str(self.tmp / "chdb"))
        self.ch.query("CREATE TABLE events (id UInt64, doc String, type Nullable(String), repo Nullable(String)) "
                      "ENGINE = MergeTree ORDER BY id")
        tbl = self._arrow()  # noqa: F841 - read by name (Python table function)
        self.ch.query("INSERT INTO events SELECT id, doc, type, repo FROM Python(tbl)")
        self.ch.query("OPTIMIZE TABLE events FINAL")

    def _load_tantivy(self) -> None:
        import tantivy
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("id", stored=False, indexed=True, fast=True)
        for name in FIELDS:
            sb.add_text_field(name, stored=False, tokenizer_name="raw", fast=True)
        self.tschema = sb.build()
        (self.tmp / "tantivy").mkdir()
        index = tantivy.Index(self.tschema, path=str(self.tmp / "tantivy"))
        w = index.writer(heap_size=200_000_000, num_threads=1)
        for i in range(self.n):
            doc = {"id": i, **{k: v[i] for k, v in self.cols.items() if v[i] is not None}}
            w.add_document(tantivy.Document(**doc))
        w.commit()
        w.wait_merging_threads()
        index.reload()
        self.tindex = index
        self.tsearch = index.searcher()

    def reopen(self) -> None:
        """Close and open every system again (the cold rows' first call follows)."""
        import sqlite3
        self.store.close()
        self.store = shoal.open(self.tmp / "shoal")
        self.sqlite.close()
        self.sqlite = sqlite3.connect(self.tmp / "sqlite.db", isolation_level=None)
        if "DuckDB" in self.peers:
            import duckdb
            self.duck.close()
            self.duck = duckdb.connect(str(self.tmp / "duck.db"))
        if "chdb" in self.peers:
            from chdb import session
            self.ch.close()
            self.ch = session.Session(str(self.tmp / "chdb"))
        if "Tantivy" in self.peers:
            import tantivy
            self.tindex = tantivy.Index.open(str(self.tmp / "tantivy"))
            self.tsearch = self.tindex.searcher()

    def close(self) -> None:
        self.store.close()
        self.sqlite.close()
        if "DuckDB" in self.peers:
            self.duck.close()
        if "chdb" in self.peers:
            self.ch.close()

    def _only_loaded(self, fns: dict) -> dict:
        return {k: v for k, v in fns.items() if k == "shoal" or k in self.peers}

    # ---- the questions, one function per system ----
    def count(self, field: str, value: str, window: bool) -> dict:
        lo_id = self.mid if window else 0
        lo_addr = self.shoal_mid if window else None
        sql = self.sql[field]

        def t_query():
            import tantivy
            term = tantivy.Query.term_query(self.tschema, field, value)
            if not window:
                return term
            rng = tantivy.Query.range_query(self.tschema, "id", tantivy.FieldType.Integer, lo_id, self.n)
            return tantivy.Query.boolean_query([(tantivy.Occur.Must, term), (tantivy.Occur.Must, rng)])

        since = f" AND id >= {lo_id}" if window else ""  # no predicate a planner could take for a range scan
        return self._only_loaded({
            "shoal": lambda: self.store.count(field, value, from_address=lo_addr),
            "SQLite": lambda: self.sqlite.execute(f"SELECT count(*) FROM events WHERE {sql} = ?{since}",
                                                  (value,)).fetchone()[0],
            "DuckDB": lambda: self.duck.execute(f"SELECT count(*) FROM events WHERE {field} = ?{since}",
                                                [value]).fetchone()[0],
            "chdb": lambda: int(self.ch.query(f"SELECT count() FROM events WHERE {field} = '{value}'{since}",
                                              "CSV").bytes().strip()),
            "Tantivy": lambda: self.tsearch.search(t_query(), limit=1, count=True).count,
        })

    def group(self, field: str, limit: int | None) -> dict:
        sql = self.sql[field]
        lim = f" LIMIT {limit}" if limit else ""
        size = limit or 100_000

        def tantivy_terms():
            import tantivy
            out = self.tsearch.aggregate(tantivy.Query.all_query(), {"g": {"terms": {"field": field, "size": size}}})
            return [(b["key"], b["doc_count"]) for b in out["g"]["buckets"]]

        return self._only_loaded({
            "shoal": lambda: self.store.group_count(field, limit=limit),
            "SQLite": lambda: self.sqlite.execute(
                f"SELECT {sql} AS v, count(*) AS c FROM events WHERE v IS NOT NULL GROUP BY v "
                f"ORDER BY c DESC, v{lim}").fetchall(),
            "DuckDB": lambda: self.duck.execute(
                f"SELECT {field}, count(*) AS c FROM events WHERE {field} IS NOT NULL GROUP BY 1 "
                f"ORDER BY c DESC, 1{lim}").fetchall(),
            "chdb": lambda: self.ch.query(
                f"SELECT {field}, count() AS c FROM events WHERE {field} IS NOT NULL GROUP BY {field} "
                f"ORDER BY c DESC, {field}{lim}", "CSV").bytes(),
            "Tantivy": tantivy_terms,
        })


def _check(fns: dict) -> None:
    """Every system gives the same answer (counts; top values as counts)."""
    answers = {}
    for name, fn in fns.items():
        a = fn()
        if isinstance(a, bytes):  # chdb CSV rows: value,count
            a = [int(line.rsplit(b",", 1)[1]) for line in a.splitlines() if line]
        elif isinstance(a, list):
            a = [row[1] for row in a]
        answers[name] = a
    first = answers["shoal"]
    for name, a in answers.items():
        assert a == first, f"{name} answers {a!r:.200}, shoal {first!r:.200}"


def measure(systems: Systems, questions: dict, runs: int, reps: int) -> dict:
    """Per question: warm (median of `reps` calls per round) and cold (the
    first call after a reopen; one reopen per round) seconds per system."""
    out = {q: {"warm": {}, "cold": {}} for q in questions}
    for r in range(runs):
        systems.reopen()
        for q, make in questions.items():
            for name, fn in make().items():
                t0 = time.perf_counter()
                fn()
                out[q]["cold"].setdefault(name, []).append(time.perf_counter() - t0)
        for q, make in questions.items():
            fns = make()
            if r == 0:
                _check(fns)
            for name, fn in fns.items():
                fn()
                samples = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t0)
                samples.sort()
                out[q]["warm"].setdefault(name, []).append(samples[len(samples) // 2])
    return out


def report(title: str, res: dict) -> dict:
    print(f"\n{title}")
    summ = {}
    rows = []
    for q, phases in res.items():
        summ[q] = {}
        for phase in ("warm", "cold"):
            per = phases[phase]
            peers = [k for k in per if k != "shoal"]
            fastest = [min(per[p][i] for p in peers) for i in range(len(per["shoal"]))]
            x = paired_ratio(fastest, per["shoal"])
            summ[q][phase] = {name: summary(v) for name, v in per.items()}
            summ[q][phase]["x_fastest"] = x
            sqlite_x = paired_ratio(per["SQLite"], per["shoal"])
            summ[q][phase]["x_sqlite"] = sqlite_x
            cells = [f"{summ[q][phase][name]['median'] * 1e3:.3f}" for name in per]
            rows.append([q, phase, *cells, f"{x['median']:.2f}", f"{sqlite_x['median']:.1f}"])
        names = list(phases["warm"])
    print(table(rows, ["question", "", *[f"{n} ms" for n in names], "x fastest", "x SQLite"], "ll" + "r" * 8))
    return summ


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="records per data set (default 45,000; --quick 3,000)")
    ap.add_argument("--reps", type=int, default=0, help="warm calls per round (default 30)")
    args = ap.parse_args(argv)
    n = args.records or (3_000 if args.quick else 45_000)
    reps = args.reps or (5 if args.quick else 30)
    results: dict = {"records": n, "runs": args.runs, "reps": reps, "quick": args.quick}
    sets = {}
    gen = events_file(n).read_bytes().splitlines()
    counts = events_counts(n)
    sets["generated"] = (gen, pick_values(counts["repo.name"], 0.03 * n)[0])
    if DATA is not None:
        real = replay("github_events.ndjson.gz", copies=-(-n // 30)).splitlines()[:n]
        rc: dict = {}
        for line in real:
            v = _get(orjson.loads(line), FIELDS["repo"])
            rc[v] = rc.get(v, 0) + 1
        sets["real"] = (real, min(rc, key=lambda v: abs(rc[v] - 0.03 * n) if v else 1e18))
    else:
        print(f"real GitHub events: skipped ({NO_DATA})")
    for label, (lines, repo_value) in sets.items():
        tmp = Path(tempfile.mkdtemp(prefix="shoal-counts-"))
        try:
            systems = Systems(tmp, lines)
            distinct_repo = len(set(v for v in systems.cols["repo"] if v))
            questions = {
                "count type=PushEvent": lambda: systems.count("type", "PushEvent", False),
                "count type=PushEvent, 2nd half": lambda: systems.count("type", "PushEvent", True),
                "count repo=~3% value": lambda: systems.count("repo", repo_value, False),
                "group by type": lambda: systems.group("type", None),
                f"group by repo ({distinct_repo} values), top 10": lambda: systems.group("repo", 10),
            }
            for name, why in systems.skipped.items():
                print(f"{name}: skipped, {why}")
            res = measure(systems, questions, args.runs, reps)
            systems.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results[label] = report(f"{label} GitHub events: {len(lines):,} records, "
                                f"{sum(map(len, lines)) / MB:,.1f} MB; {args.runs} rounds, {reps} warm calls each",
                                res)
    results["targets"] = targets_for(results)
    print()
    print(target_table(results["targets"]))
    path = write_result("counts", results, args.out)
    print(f"wrote {path}")
    return results


def targets_for(results: dict) -> list[dict]:
    out = []
    label = "real" if "real" in results else "generated"
    r = results[label]
    for q in ("count type=PushEvent", "count repo=~3% value", "group by type"):
        x = r[q]["warm"]["x_fastest"]["median"]
        out.append(target(f"{q} ({label}, warm): fastest peer's time / shoal's", ">= 1x", x, 1, unit="x"))
    x = r["count type=PushEvent, 2nd half"]["warm"]["x_sqlite"]["median"]
    out.append(target(f"windowed count ({label}, warm): SQLite's time / shoal's", ">= 5x", x, 5, unit="x"))
    g = results["generated"]
    q = next(k for k in g if k.startswith("group by repo"))
    out.append(target(f"{q} (generated, warm): SQLite's time / shoal's", ">= 10x",
                      g[q]["warm"]["x_sqlite"]["median"], 10, unit="x"))
    return out


if __name__ == "__main__":
    main()
