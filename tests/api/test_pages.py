"""Pages (page_size, cursor, X-Shoal-Next-Cursor) and projections (fields)
over HTTP and shoal.Client, against the oracle; pages while ingest runs
never repeat or skip a record."""
from __future__ import annotations

import orjson
import pytest
from oracle import Log

import shoal

from .conftest import assert_error, pairs
from .test_queries import loaded  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def _pages(client, path, body, page_size):
    out, cursor, calls = [], None, 0
    while True:
        b = dict(body, page_size=page_size, with_address=True)
        if cursor is not None:
            b["cursor"] = cursor
        r = await client.post(path, json=b)
        assert r.status_code == 200, r.text
        page = pairs(r.content)
        assert len(page) <= page_size
        out += page
        calls += 1
        cursor = r.headers.get("x-shoal-next-cursor")
        if cursor is None:
            return out, calls
        assert len(page) == page_size  # a cursor only after a full page


@pytest.mark.parametrize("order", ["newest", "oldest"])
@pytest.mark.parametrize("page_size", [1, 7, 1000, 10_000])
async def test_pages_join_to_the_whole_answer(client, loaded, order, page_size):  # noqa: F811
    log = loaded
    got, calls = await _pages(client, "/query", {"psf": "path", "value": "dns", "order": order}, page_size)
    want = log.query("_path", "dns", order=order)
    assert got == want
    assert calls == max(1, -(-len(want) // page_size))  # one more record is read: no empty last page
    got, _ = await _pages(client, "/scan", {"expr": "proto == 'udp'", "order": order, "from_address": 5000},
                          page_size)
    assert got == log.scan("proto == 'udp'", order=order, from_address=5000)


async def test_page_errors(client, loaded):  # noqa: F811
    body = {"psf": "path", "value": "dns"}
    assert_error(await client.post("/query", json=dict(body, page_size=5, limit=3)), 422, "validation_error")
    assert_error(await client.post("/query", json=dict(body, cursor="n64")), 422, "validation_error")
    assert_error(await client.post("/query", json=dict(body, page_size=0)), 422, "validation_error")
    assert_error(await client.post("/query", json=dict(body, page_size=10_001)), 422, "validation_error")
    assert_error(await client.post("/query", json=dict(body, page_size=5, cursor="x1")), 400, "invalid_argument")
    r = await client.post("/query", json=dict(body, page_size=5))
    cursor = r.headers["x-shoal-next-cursor"]
    assert_error(await client.post("/query", json=dict(body, page_size=5, cursor=cursor, order="oldest")),
                 400, "invalid_argument")


async def test_fields_over_http(client, loaded):  # noqa: F811
    log = loaded
    r = await client.post("/query", json={"psf": "path", "value": "dns", "fields": ["_path", '"id.resp_p"',
                                                                                  "length(answers)"],
                                          "limit": 50, "with_address": True})
    got = pairs(r.content)
    want = log.query("_path", "dns", limit=50)
    assert [a for a, _ in got] == [a for a, _ in want]
    for (_, raw), (_, full) in zip(got, want):
        obj = orjson.loads(full)
        exp = {"_path": obj["_path"], "id.resp_p": obj["id.resp_p"]}
        if isinstance(obj.get("answers"), list):
            exp["length(answers)"] = len(obj["answers"])
        assert orjson.loads(raw) == exp
    r = await client.get("/psfs/path/records", params=[("value", "dns"), ("limit", 3), ("fields", "_path"),
                                                        ("fields", "query")])
    assert [orjson.loads(line) for line in r.content.splitlines()] == [
        {k: orjson.loads(raw)[k] for k in ("_path", "query") if k in orjson.loads(raw)}
        for _, raw in log.query("_path", "dns", limit=3)]
    assert_error(await client.post("/scan", json={"expr": "`true`", "fields": ["a["]}), 422, "psf_definition_error")


def test_client_pages_while_ingest_runs(live_url, store, generated):
    raws = generated("github_events", 3000)
    with shoal.Client(live_url) as c:
        c.register_psf("type", "type")
        c.ingest(b"\n".join(raws[:1500]))
        log = Log(raws[:1500])
        log.bind(store)
        want_newest = log.query("type", "PushEvent")
        got, more = [], iter(raws[1500:])
        for i, rec in enumerate(c.query("type", "PushEvent", page_size=50)):
            got.append((rec.address, rec.raw))
            if i % 50 == 0:  # new records land between pages: newest first, they are after the answer
                c.ingest(b"\n".join(next(more) for _ in range(20)))
        assert got == want_newest
        seen = []
        tail_before = store.tail_address
        for i, rec in enumerate(c.query("type", "PushEvent", page_size=50, order="oldest",
                                        fields=["type", "actor.login"])):
            seen.append(rec.address)
            assert set(orjson.loads(rec.raw)) <= {"type", "actor"}
            if i % 50 == 0:  # oldest first, they join the answer on the pages still to come
                c.ingest(b"\n".join(next(more, b'{"type": "PushEvent"}') for _ in range(10)))
        everything = Log([r.raw for r in store.scan("`true`", order="oldest")])
        everything.bind(store)
        # never a repeat, never a gap: every match up to the last one seen, in order
        assert seen == [a for a, _ in everything.query("type", "PushEvent", order="oldest", to_address=seen[-1] + 1)]
        assert seen[-1] > tail_before  # records ingested while paging were answered
        assert len(list(c.query("type", "PushEvent", page_size=7, limit=20))) == 20
        with pytest.raises(shoal.InvalidArgument):
            list(c.query("type", "PushEvent", page_size=0))
