"""Validation throughput of shoal_parse vs orjson.loads on real NDJSON lines.

Run:   .venv/bin/python benchmarks/json_parse.py [--runs 5] [--quick] [--out out.json]

For each data set it times, over the same lines (median of --runs passes):
  orjson.loads(line)                       the peer: parses and builds Python objects
  shoal_parse(line, trie=NULL)             validation only
  shoal_parse(line, trie of 3 paths)       validation + extraction of 3 fields
Each call is made from a Python loop, so every figure includes cffi's per-call
cost. The "net" column subtracts that cost, measured by timing the same number
of calls over the same line objects with len=1 (the parser stops at once),
to estimate the C code's own throughput.
MB/s counts input bytes (10^6 bytes per second). One core.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_DATA, arg_parser, load_ndjson, real_file, write_result  # noqa: E402

from shoal._native import ffi, lib  # noqa: E402

QUICK_LINES = 2000
DATASETS = {
    "zeek_wrccdc2018": [("_path",), ("id.resp_h",), ("id.resp_p",)],
    "twitter_statuses": [("lang",), ("user", "screen_name"), ("metadata", "result_type")],
}


def build_trie(paths):
    """A shoal_trie for key-only paths; returns (trie cdata, keepalive)."""
    children, terminal = [{}], [False]
    for path in paths:
        node = 0
        for key in path:
            if key not in children[node]:
                children.append({})
                terminal.append(False)
                children[node][key] = len(children) - 1
            node = children[node][key]
        terminal[node] = True
    n = len(children)
    slot, lo, hi = [-1] * n, [0] * n, [0] * n
    counter = 0

    def number(node):  # preorder, so each subtree's slots are contiguous
        nonlocal counter
        lo[node] = counter
        if terminal[node]:
            slot[node] = counter
            counter += 1
        for child in children[node].values():
            number(child)
        hi[node] = counter

    number(0)
    nodes = ffi.new("shoal_trie_node[]", n)
    edge_rows, keys = [], bytearray()
    for i, kids in enumerate(children):
        nodes[i].slot, nodes[i].slot_lo, nodes[i].slot_hi = slot[i], lo[i], hi[i]
        nodes[i].first_edge, nodes[i].n_edges = len(edge_rows), len(kids)
        for key, child in kids.items():
            edge_rows.append((len(keys), len(key.encode()), child))
            keys += key.encode()
    edges = ffi.new("shoal_trie_edge[]", len(edge_rows))
    for i, (off, klen, child) in enumerate(edge_rows):
        edges[i].key_off, edges[i].key_len, edges[i].child = off, klen, child
    keybuf = ffi.new("char[]", bytes(keys))
    trie = ffi.new("shoal_trie *")
    trie.nodes, trie.n_nodes = nodes, n
    trie.edges, trie.n_edges = edges, len(edge_rows)
    trie.keys, trie.n_slots = keybuf, counter
    return trie, (nodes, edges, keybuf)


def median_seconds(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name, paths, runs, max_lines=0):
    lines = [line for line in load_ndjson(f"{name}.ndjson.gz").split(b"\n") if line]
    if max_lines:
        lines = lines[:max_lines]
    total = sum(map(len, lines))
    trie, keep = build_trie(paths)
    slots = ffi.new("shoal_slot[]", max(1, trie.n_slots))
    err = ffi.new("size_t *")
    parse, null, loads = lib.shoal_parse, ffi.NULL, orjson.loads

    def run_orjson():
        for line in lines:
            loads(line)

    def run_validate():
        for line in lines:
            if parse(line, len(line), null, null, err):
                raise AssertionError(line)

    def run_trie():
        for line in lines:
            if parse(line, len(line), trie, slots, err):
                raise AssertionError(line)

    def run_overhead():
        for line in lines:
            parse(line, 1, null, null, err)

    overhead = median_seconds(run_overhead, runs)
    rows = []
    for label, fn, has_call in (("orjson.loads", run_orjson, False),
                                ("shoal_parse (no trie)", run_validate, True),
                                ("shoal_parse (3-path trie)", run_trie, True)):
        sec = median_seconds(fn, runs)
        net = sec - overhead if has_call and sec > overhead else None
        rows.append({
            "dataset": name, "method": label, "records": len(lines), "bytes": total,
            "seconds": sec, "mb_per_s": total / sec / 1e6,
            "net_mb_per_s": (total / net / 1e6) if net else None,
        })
    del keep
    return rows


def main(argv=None):
    ap = arg_parser(__doc__)
    args = ap.parse_args(argv)
    rows = []
    for name, paths in DATASETS.items():
        if real_file("ndjson", f"{name}.ndjson.gz") is None:
            print(f"{name}: skipped, {NO_DATA}")
            continue
        rows += bench(name, paths, args.runs, QUICK_LINES if args.quick else 0)
    print(f"{'dataset':<18} {'method':<27} {'records':>8} {'avg B':>6} {'MB/s':>8} {'net MB/s':>9}")
    for r in rows:
        net = f"{r['net_mb_per_s']:9.0f}" if r["net_mb_per_s"] else f"{'-':>9}"
        print(f"{r['dataset']:<18} {r['method']:<27} {r['records']:>8} {r['bytes'] // r['records']:>6} "
              f"{r['mb_per_s']:8.0f} {net}")
    path = write_result("json_parse", {"runs": args.runs, "quick": args.quick, "results": rows, "targets": []},
                        args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
