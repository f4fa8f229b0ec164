"""GET /tail and shoal.Client.tail against a real server: NDJSON and SSE,
every record given once, in order, byte for byte."""
from __future__ import annotations

import threading
import time

import httpx

import shoal


def test_tail_over_http(live_url, store, generated):
    raws = generated("github_events", 600)
    with shoal.Client(live_url) as c:
        c.register_psf("type", "type")
        got = []
        started = threading.Event()

        def follower():
            it = c.tail("type", "PushEvent", timeout=1.0)
            started.set()
            got.extend(it)

        f = threading.Thread(target=follower)
        f.start()
        started.wait()
        time.sleep(0.2)
        for k in range(6):
            c.ingest(b"\n".join(raws[k * 100:(k + 1) * 100]))
        f.join()
        want = list(c.query("type", "PushEvent", order="oldest"))
        assert [(r.address, r.raw) for r in got] == [(r.address, r.raw) for r in want]
        with httpx.stream("GET", live_url + "/tail", params={"timeout": 0.2, "since_address": 64},
                          headers={"Accept": "text/event-stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            body = r.read()
        events = [e for e in body.split(b"\n\n") if e.startswith(b"id: ")]
        assert len(events) == 600
        assert events[0] == b"id: %d\ndata: %s" % (want[0].address if raws[0] == want[0].raw else 64, raws[0])
