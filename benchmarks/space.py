"""Disk use: the same records, with indexes on three fields, in shoal and
beside SQLite, DuckDB, ClickHouse (chdb) and Tantivy, each its own best way
of keeping the raw JSON and the fields:

  shoal    raw JSON records (segment files) + PSFs on the fields, after a
           checkpoint (its index, registry and value tally included)
  shoal zstd  the same, created with compression="zstd": its written log
           compressed (benchmarks/compression.py measures what it costs)
  SQLite   raw JSON text + an expression index per field (json_extract),
           WAL checkpointed into the database
  DuckDB   raw JSON text + the fields as columns (extracted at load)
  chdb     MergeTree: raw JSON String + the fields as columns, ORDER BY id
  Tantivy  the raw JSON stored (not indexed) + the fields as raw-tokenized
           fast fields
  gzip -1  the input file itself, gzipped (how compressible it is)

Sizes are the allocated blocks of each system's files (what `du` counts),
as a multiple of the input's bytes. Data: generated GitHub-like events
(gen_events.py) and, with ../shared/data, the real Zeek stream. DuckDB,
chdb and Tantivy come from the `bench` extra (make bench installs it; they
are skipped without it).

    .venv/bin/python benchmarks/space.py [--quick] [--records N]
"""
from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, arg_parser, events_file, real_file, table, target, target_table, write_result  # noqa: E402

import shoal  # noqa: E402

FIELDS = {
    "generated": {"type": ("type",), "repo": ("repo", "name"), "actor": ("actor", "login")},
    "zeek": {"path": ("_path",), "query": ("query",), "resp_p": ("id.resp_p",)},
}


def du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def _get(o, path):
    for k in path:
        if not isinstance(o, dict):
            return None
        o = o.get(k)
    return o if isinstance(o, (str, int, float)) and not isinstance(o, bool) else None


def _jmespath(path: tuple[str, ...]) -> str:
    return ".".join(f'"{k}"' if not k.isidentifier() else k for k in path)


def load_shoal(d: Path, lines: list[bytes], fields: dict, compression: str = "none") -> int:
    store = shoal.open(d, compression=compression)
    for name, path in fields.items():
        store.register_psf(name, _jmespath(path))
    store.ingest(b"\n".join(lines))
    store.wait_compressed(600)
    store.checkpoint()
    store.close()
    return du(d)


def load_shoal_zstd(d: Path, lines: list[bytes], fields: dict) -> int:
    return load_shoal(d, lines, fields, "zstd")


def load_sqlite(d: Path, lines: list[bytes], fields: dict) -> int:
    d.mkdir()
    con = sqlite3.connect(d / "db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
    for name, path in fields.items():
        con.execute(f"CREATE INDEX idx_{name} ON events(json_extract(doc, '$.{'.'.join(path)}'))"
                    if all(k.isidentifier() for k in path) else
                    f"CREATE INDEX idx_{name} ON events(json_extract(doc, '$.\"{path[0]}\"'))")
    con.execute("BEGIN")
    con.executemany("INSERT INTO events(doc) VALUES (?)", ((line.decode(),) for line in lines))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return du(d)


def _arrow(lines: list[bytes], fields: dict):
    import pyarrow as pa
    objs = [orjson.loads(line) for line in lines]
    cols = {name: [None if (v := _get(o, path)) is None else str(v) for o in objs] for name, path in fields.items()}
    return pa.table({"id": list(range(len(lines))), "doc": [line.decode() for line in lines], **cols})


def load_duckdb(d: Path, lines: list[bytes], fields: dict) -> int:
    import duckdb
    d.mkdir()
    con = duckdb.connect(str(d / "db"))
    tbl = _arrow(lines, fields)  # noqa: F841 - read by name in the SQL below
    con.execute("CREATE TABLE events AS SELECT * FROM tbl")
    con.execute("CHECKPOINT")
    con.close()
    return du(d)


def load_chdb(d: Path, lines: list[bytes], fields: dict) -> int:
    from chdb import session
    s = session.Session(str(d))
    cols = ", ".join(f"{name} Nullable(String)" for name in fields)
    s.query(f"CREATE TABLE events (id UInt64, doc String, {cols}) ENGINE = MergeTree ORDER BY id")
    tbl = _arrow(lines, fields)  # noqa: F841 - read by name (Python table function)
    s.query(f"INSERT INTO events SELECT id, doc, {', '.join(fields)} FROM Python(tbl)")
    s.query("OPTIMIZE TABLE events FINAL")
    s.close()
    return du(d)


def load_tantivy(d: Path, lines: list[bytes], fields: dict) -> int:
    import tantivy
    sb = tantivy.SchemaBuilder()
    sb.add_bytes_field("doc", stored=True, indexed=False)
    for name in fields:
        sb.add_text_field(name, stored=False, tokenizer_name="raw", fast=True)
    schema = sb.build()
    d.mkdir()
    index = tantivy.Index(schema, path=str(d))
    w = index.writer(heap_size=200_000_000, num_threads=1)
    for line in lines:
        o = orjson.loads(line)
        extra = {name: str(v) for name, path in fields.items() if (v := _get(o, path)) is not None}
        w.add_document(tantivy.Document(doc=line, **extra))
    w.commit()
    w.wait_merging_threads()
    return du(d)


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="records per data set (default 100,000; --quick 3,000)")
    args = ap.parse_args(argv)
    n = args.records or (3_000 if args.quick else 100_000)
    sets = {"generated": events_file(n).read_bytes().splitlines()[:n]}
    zeek = real_file("ndjson", "zeek_wrccdc2018.ndjson.gz")
    if zeek is not None:
        with gzip.open(zeek, "rb") as f:
            sets["zeek"] = [line.rstrip(b"\n") for _, line in zip(range(n), f)]
    else:
        print("zeek: skipped (no ../shared/data)")
    loaders = {"shoal": load_shoal, "shoal zstd": load_shoal_zstd, "SQLite": load_sqlite, "DuckDB": load_duckdb,
               "chdb": load_chdb, "Tantivy": load_tantivy}
    tmp = Path(tempfile.mkdtemp(prefix="shoal-space-"))
    results: dict = {"records": n, "sets": {}, "skipped": {}}
    rows, targets = [], []
    try:
        for label, lines in sets.items():
            size = sum(len(line) + 1 for line in lines)
            fields = FIELDS[label]
            out = {"input_bytes": size, "gzip1_bytes": len(gzip.compress(b"\n".join(lines), 1))}
            for name, load in loaders.items():
                d = tmp / f"{label}-{name}"
                try:
                    out[name] = load(d, lines, fields)
                except ImportError as exc:  # an optional peer (the bench extra)
                    results["skipped"][name] = f"not installed ({exc.name}); pip install -e '.[bench]'"
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            results["sets"][label] = out
            for name in [*loaders, "gzip -1"]:
                b = out.get("gzip1_bytes" if name == "gzip -1" else name)
                if b is not None:
                    rows.append([label, name, f"{b / MB:,.1f}", f"{b / size:.2f}"])
            targets.append(target(f"{label}: shoal zstd's disk / the input", "<= 0.3x", out["shoal zstd"] / size,
                                  0.3, unit="x", higher_is_better=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, why in results["skipped"].items():
        print(f"{name}: skipped, {why}")
    print(table(rows, ["data", "system", "disk MB", "x input"], "llrr"))
    results["targets"] = targets
    print()
    print(target_table(targets))
    path = write_result("space", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
