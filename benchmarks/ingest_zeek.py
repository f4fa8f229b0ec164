"""Library ingest of the Zeek stream with 3 PSFs beside its peers: a shortcut
for `ingest.py --datasets zeek --psfs 3` (see ingest.py).

    .venv/bin/python benchmarks/ingest_zeek.py [--runs 5] [--spill] [--no-sqlite] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spill", action="store_true", help="memory budget = 1/10 of the data")
    args, rest = ap.parse_known_args()
    ingest.main(["--datasets", "zeek", "--psfs", "3", "--modes", "spill" if args.spill else "memory"] + rest)
