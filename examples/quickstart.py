"""Library quickstart: register PSFs, ingest GitHub events, query, reopen.

    .venv/bin/python examples/quickstart.py [DATA_DIR] [--events FILE]

The events are 20,000 generated GitHub-archive-like ones (shoal.sample), or
FILE: GH Archive events as NDJSON or a JSON array, gzipped or not. With no
DATA_DIR the store lives in a temporary directory.
"""
from __future__ import annotations

import argparse
import tempfile

import shoal
from shoal import sample

GENERATED = 20_000


def main(directory: str, events: str | None) -> None:
    with shoal.open(directory) as store:
        store.register_psf("type", "type")                        # projection
        store.register_psf("push", "type == 'PushEvent'")         # predicate
        store.register_psf("repo", "repo.name")
        source = events or sample.github_events(GENERATED)        # a path, or the records' bytes
        result = store.ingest(source)                             # NDJSON, arrays, gzip: detected
        print(f"ingested {result.ingested} records, rejected {result.rejected}, "
              f"addresses {result.first_address}..{result.last_address}")

        newest = []
        for rec in store.query("type", "PushEvent", limit=3):     # newest first
            event = rec.json()
            newest.append(event)
            print(f"  @{rec.address}: {event['actor']['login']} pushed to {event['repo']['name']}")

        repo = newest[0]["repo"]["name"] if newest else "torvalds/linux"
        pushes = sum(1 for _ in store.query("push"))
        both = list(store.query_all([("type", "PushEvent"), ("repo", repo)]))
        print(f"{pushes} push events; {len(both)} of them to {repo}")

        big = list(store.scan("payload.size > `1`"))               # no index needed
        print(f"{len(big)} events with payload.size > 1")
        store.checkpoint()

    with shoal.open(directory) as store:                          # recovers from the checkpoint
        print(f"after reopen: {sum(1 for _ in store.query('push'))} push events, "
              f"PSFs: {[p.name for p in store.psfs()]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", help="store directory (default: a temporary one)")
    parser.add_argument("--events", metavar="FILE", help="GitHub events to ingest (default: generated)")
    args = parser.parse_args()
    if args.directory:
        main(args.directory, args.events)
    else:
        with tempfile.TemporaryDirectory() as d:
            main(d, args.events)
