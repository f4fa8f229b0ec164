"""Library quickstart: register PSFs, ingest GitHub events, query, reopen.

    .venv/bin/python examples/quickstart.py [DATA_DIR]
"""
from __future__ import annotations

import sys
import tempfile

import shoal
from _data import sample_data  # noqa: E402  (examples/ is on sys.path when run)

DATA = sample_data() / "ndjson" / "github_events.ndjson.gz"


def main(directory: str) -> None:
    with shoal.open(directory) as store:
        store.register_psf("type", "type")                        # projection
        store.register_psf("push", "type == 'PushEvent'")         # predicate
        store.register_psf("repo", "repo.name")
        result = store.ingest(DATA)                               # gzip NDJSON, detected
        print(f"ingested {result.ingested} records, rejected {result.rejected}, "
              f"addresses {result.first_address}..{result.last_address}")

        for rec in store.query("type", "PushEvent", limit=3):
            event = rec.json()
            print(f"  @{rec.address}: {event['actor']['login']} pushed to {event['repo']['name']}")

        pushes = sum(1 for _ in store.query("push"))
        both = list(store.query_all([("type", "PushEvent"), ("repo", "markpiro/muzicbaux")]))
        print(f"{pushes} push events; {len(both)} of them to markpiro/muzicbaux")

        big = list(store.scan("payload.size > `1`"))               # no index needed
        print(f"{len(big)} events with payload.size > 1")
        store.checkpoint()

    with shoal.open(directory) as store:                          # recovers from the checkpoint
        print(f"after reopen: {sum(1 for _ in store.query('push'))} push events, "
              f"PSFs: {[p.name for p in store.psfs()]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as d:
            main(d)
