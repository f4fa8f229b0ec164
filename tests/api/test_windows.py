"""since/until and bucketed ranges over HTTP and shoal.Client, against the
oracle of tests/engine/test_windows.py (a time field registered through
the API as the bucketed time PSF `@time`)."""
from __future__ import annotations

import orjson
from oracle import Log
from timedata import BASE, events, in_window, iso

import shoal

from .conftest import assert_error


def test_windows_and_ranges_over_http(live_url, store, generated):
    raws = events(generated, 2000)
    with shoal.Client(live_url) as c:
        c.register_psf("@time", "created_at", bucket=600, time=True)
        c.register_psf("type", "type")
        c.register_psf("size", "payload.size", bucket=2)
        c.ingest(b"\n".join(raws))
        log = Log(raws)
        log.bind(store)
        since, until = iso(BASE + 3600), BASE + 3 * 3600.5
        inside = set(in_window(log.objs, since, until))
        push = inside & set(log.matching("type", "PushEvent"))
        assert [(r.address, r.raw) for r in c.query("type", "PushEvent", since=since, until=until)] == \
            log.answer(push)
        assert [(r.address, r.raw) for r in c.query("type", "PushEvent", since=since, until=until,
                                                     page_size=7)] == log.answer(push)
        assert c.count("type", "PushEvent", since=since, until=until) == len(push)
        assert dict(c.group_count("type", since=since, until=until)) == {
            t: sum(1 for i in inside if log.objs[i]["type"] == t) for t in {log.objs[i]["type"] for i in inside}}
        assert [r.address for r in c.scan("public", since=since, until=until)] == \
            [a for a, _ in log.answer(inside & set(log.scan_matching("public")))]
        sizes = [i for i, o in enumerate(log.objs)
                 if isinstance(o["payload"].get("size"), int) and 2 <= o["payload"]["size"] < 5]
        assert [(r.address, r.raw) for r in c.query_range("size", 2, 5)] == log.answer(sizes)
        assert c.count_range("size", 2, 5) == len(sizes)
        r = c._http.get("/psfs/type/records", params={"value": "PushEvent", "since": since,
                                                      "until": str(until), "with_address": "true"})
        assert [orjson.loads(line)["address"] for line in r.content.splitlines()] == [a for a, _ in log.answer(push)]
        assert_error(c._http.post("/query", json={"psf": "size", "range": [2, 5], "since": 1}), 400,
                     "invalid_argument")
        assert_error(c._http.post("/count", json={"psf": "type", "range": [2, 5]}), 400, "invalid_argument")
        assert_error(c._http.post("/count", json={"psf": "type", "value": "x", "since": "yesterday"}), 400,
                     "invalid_argument")
        assert_error(c._http.post("/query", json={"all": [{"psf": "type"}], "range": [1, 2]}), 422,
                     "validation_error")
