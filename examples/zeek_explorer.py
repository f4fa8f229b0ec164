"""Zeek log explorer: index a stream of Zeek logs by PSFs and answer the
questions an analyst asks first, each by index lookups rather than scans.

    .venv/bin/python examples/zeek_explorer.py [DATA_DIR] [--top N] [--zeek FILE]

Ingests 150,000 generated Zeek-like log records (shoal.sample), or FILE
(Zeek JSON logs as NDJSON, gzipped or not, such as the WRCCDC 2018 logs of
brimdata/zed-sample-data), into DATA_DIR (a temporary directory if none is
given; an existing store that already holds records is explored as is).
"""
from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time

import shoal
from shoal import sample

GENERATED = 150_000
PSFS = {
    "path": "_path",                        # which Zeek log a record came from
    "query": "query",                       # dns: the name looked up
    "port": '"id.resp_p"',                  # one key with a dot in it, not a nested path
    "nxdomain": "rcode_name == 'NXDOMAIN'",  # predicate: indexed under true only
}


def count(store: shoal.Store, psf: str, value) -> int:
    """How many records have this PSF value: a walk of the index, no record read."""
    return sum(1 for _ in store.query_addresses([(psf, value)]))


def literal(value: str) -> str:
    """A JMESPath JSON literal (`"..."`): plain "..." would name a field."""
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def log_kinds(store: shoal.Store) -> list[str]:
    """Every `_path` value, found in one pass over the log: each scan (native,
    oldest first) stops at the first record of a kind not yet seen and the
    next one resumes there, excluding every kind found so far."""
    kinds: list[str] = []
    start = None
    while True:
        expression = " && ".join(["_path"] + [f"_path != {literal(k)}" for k in kinds])
        found = next(store.scan(expression, order="oldest", from_address=start, limit=1), None)
        if found is None:
            return kinds
        kind = found.json()["_path"]
        assert kind not in kinds, expression
        kinds.append(kind)
        start = found.address


def explore(store: shoal.Store, top: int) -> None:
    kinds = {k: count(store, "path", k) for k in log_kinds(store)}
    print(f"{len(kinds)} log kinds (_path), {sum(kinds.values()):,} records:")
    for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:>8,}  {kind}")

    names = collections.Counter(q for rec in store.query("path", "dns")
                                if isinstance(q := rec.json().get("query"), str))
    print(f"top {top} DNS queries ({len(names):,} distinct names), with NXDOMAIN answers:")
    for name, n in sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        nx = sum(1 for _ in store.query_addresses([("query", name), ("nxdomain", True)]))
        print(f"  {n:>8,}  {nx:>6,}  {json.dumps(name)}")

    for port in (53, 443):
        records = list(store.query("port", port))
        by_kind = collections.Counter(rec.json()["_path"] for rec in records)
        hosts = collections.Counter(rec.json().get("id.resp_h") for rec in records)
        print(f"port {port}: {len(records):,} records; by log: "
              + ", ".join(f"{k} {n:,}" for k, n in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))))
        print("  top responders: "
              + ", ".join(f"{h} {n:,}" for h, n in sorted(hosts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:3]))


def main(directory: str, top: int, zeek: str | None) -> None:
    with shoal.open(directory) as store:
        for name, expression in PSFS.items():
            try:
                store.register_psf(name, expression)
            except shoal.PSFExists:
                pass  # exploring a store made by an earlier run
        if store.stats()["records"] == 0:
            source = zeek or sample.zeek_logs(GENERATED)  # a path, or the records' bytes
            t0 = time.monotonic()
            result = store.ingest(source)
            print(f"ingested {result.ingested:,} Zeek records in {time.monotonic() - t0:.2f} s")
        explore(store, top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", help="store directory (default: a temporary one)")
    parser.add_argument("--top", type=int, default=10, help="how many DNS names to show")
    parser.add_argument("--zeek", metavar="FILE", help="Zeek logs to ingest (default: generated)")
    args = parser.parse_args()
    if args.directory:
        main(args.directory, args.top, args.zeek)
    else:
        with tempfile.TemporaryDirectory() as d:
            main(d, args.top, args.zeek)
