"""GitHub events over HTTP: register PSFs, stream a gzip file to a shoal
server, query it with shoal.Client.

    .venv/bin/python examples/http_github.py [URL] [--events FILE]

With no URL, starts `shoal serve` on a free port over a temporary data
directory and stops it at the end. The events are 20,000 generated
GitHub-archive-like ones (shoal.sample), or FILE: GH Archive events as
NDJSON or a JSON array, gzipped or not.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import shoal
from shoal import sample

GENERATED = 20_000
PSFS = {
    "type": "type",
    "repo": "repo.name",
    "actor": "actor.login",
    "push": "type == 'PushEvent'",
}


def main(url: str, events: str | None) -> None:
    with shoal.Client(url) as c:
        for name, expression in PSFS.items():
            with contextlib.suppress(shoal.PSFExists):  # a server that ran this before
                c.register_psf(name, expression)
        res = c.ingest(events or sample.github_events(GENERATED))  # streamed; a gzip file travels compressed
        print(f"ingested {res.ingested} events, rejected {res.rejected}, "
              f"addresses {res.first_address}..{res.last_address}")

        print("newest 3 pushes:")
        repo = "torvalds/linux"
        for i, rec in enumerate(c.query("push", limit=3)):
            event = rec.json()
            repo = event["repo"]["name"] if i == 0 else repo
            print(f"  @{rec.address}: {event['actor']['login']} -> {event['repo']['name']}")

        for kind in ("PushEvent", "CreateEvent", "WatchEvent", "IssueCommentEvent", "ForkEvent"):
            print(f"{kind}: {sum(1 for _ in c.query('type', kind))}")

        both = list(c.query_all([("type", "PushEvent"), ("repo", repo)]))
        either = list(c.query_any([("type", "ForkEvent"), ("type", "WatchEvent")]))
        print(f"pushes to {repo}: {len(both)}; forks or watches: {len(either)}")
        print(f"events with payload.size > 1 (scan): {sum(1 for _ in c.scan('payload.size > `1`'))}")

        first = c.get(res.first_address)
        print(f"first event: {first.json()['type']} by {first.json()['actor']['login']}")
        print(f"server holds {c.stats()['records']} records; checkpoint {c.checkpoint().checkpoint_id}")


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """`shoal serve` on a free port over a temporary directory; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", "--data", data, "--port", str(port),
                                 "--memory", "64MiB", "--log-level", "warning", "--no-access-log"])
        try:
            deadline = time.monotonic() + 30
            with shoal.Client(url) as c:
                while True:
                    try:
                        c.health()
                        break
                    except Exception:  # noqa: BLE001 - not up yet
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit("the server did not start") from None
                        time.sleep(0.05)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful: checkpoint, close, exit 0
            proc.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="a running server (default: start one)")
    parser.add_argument("--events", metavar="FILE", help="GitHub events to ingest (default: generated)")
    args = parser.parse_args()
    if args.url:
        main(args.url, args.events)
    else:
        with local_server() as server_url:
            main(server_url, args.events)
