"""Seeded generator of GitHub-archive-like events, for benchmarks at any volume.

The generator is shoal.sample.github_events (its docstring says what makes
the events a fair workload); this script writes them, and with --counts the
records per type, repo.name and actor.login (shoal.sample.github_value_counts).
The output depends only on (n, seed).

    .venv/bin/python benchmarks/gen_events.py -n 100000 --seed 1 -o events.ndjson [--counts]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from shoal.sample import github_events as generate
from shoal.sample import github_value_counts as value_counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000, help="number of events")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    ap.add_argument("--counts", action="store_true",
                    help="also write OUTPUT with suffix .counts.json: records per type, repo.name, actor.login")
    args = ap.parse_args(argv)
    data = generate(args.n, args.seed)
    if args.output:
        # Write under temporary names first (one per process): a cache reader
        # never sees half a file, and concurrent writers do not mix theirs.
        suffix = f".tmp{os.getpid()}"
        if args.counts:
            counts = args.output.with_suffix(".counts.json")
            tmp_counts = counts.with_name(counts.name + suffix)
            tmp_counts.write_text(json.dumps(value_counts(args.n, args.seed)))
            tmp_counts.replace(counts)
        tmp = args.output.with_name(args.output.name + suffix)
        tmp.write_bytes(data)
        tmp.replace(args.output)
    else:
        sys.stdout.buffer.write(data)


if __name__ == "__main__":
    main()
