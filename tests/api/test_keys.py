"""Keyed stores over HTTP: GET/DELETE /keys/{key}, include_superseded on
queries and scans, shoal.Client.get_key/delete_key, and the CLI's
`get --key`, `delete` and `--include-superseded`. The expected answers come
from the library itself on the same store (tests/store/test_keys.py checks
the library against a dict oracle)."""
from __future__ import annotations

import httpx
import orjson
import pytest

import shoal
from shoal.api import create_app

from .conftest import lines

VERSIONS = [{"id": 1, "t": "a", "v": 1}, {"id": "1", "t": "a", "v": 2}, {"id": 2, "t": "b", "v": 3},
            {"id": 1, "t": "b", "v": 4}, {"id": 3, "t": "a", "v": 5}]
BODY = b"".join(orjson.dumps(r) + b"\n" for r in VERSIONS)


@pytest.fixture
def keyed(open_store, tmp_path):
    store = open_store(tmp_path / "keyed", key="id")
    store.register_psf("t", "t")
    return store


@pytest.fixture
def app(keyed):
    return create_app(keyed)


@pytest.mark.anyio
async def test_get_and_delete_keys(client, keyed):
    r = await client.post("/records", content=BODY)
    assert r.status_code == 200 and r.json()["ingested"] == 5
    r = await client.get("/keys/1")  # a JSON literal: the number 1
    assert r.status_code == 200 and orjson.loads(r.content) == VERSIONS[3]
    assert int(r.headers["X-Shoal-Address"]) == keyed.get_key(1).address
    r = await client.get("/keys/%221%22")  # the string "1"
    assert orjson.loads(r.content) == VERSIONS[1]
    r = await client.get("/keys/nope")
    assert r.status_code == 404 and r.json()["error"] == "key_not_found"
    r = await client.delete("/keys/1", params={"durable": "true"})
    assert r.status_code == 200 and r.json() == {"key": 1, "deleted": True, "durable": True}
    assert keyed.get_key(1) is None
    r = await client.delete("/keys/1")
    assert r.status_code == 404 and r.json()["error"] == "key_not_found"
    r = await client.get("/keys/%5B1%5D")  # [1]: not a key
    assert r.status_code == 400 and r.json()["error"] == "invalid_argument"


@pytest.mark.anyio
async def test_queries_answer_live_versions_unless_asked(client, keyed):
    await client.post("/records", content=BODY)
    for body, want in ((
            {"psf": "t", "value": "a"}, [r.raw for r in keyed.query("t", "a")]),
            ({"psf": "t", "value": "a", "include_superseded": True},
             [r.raw for r in keyed.query("t", "a", include_superseded=True)])):
        r = await client.post("/query", json=body)
        assert r.status_code == 200 and lines(r.content) == want
    assert len(want) == 3  # the history holds the superseded {"id": 1, "t": "a"}
    r = await client.get("/psfs/t/records", params={"value": "a"})
    assert [orjson.loads(x)["v"] for x in lines(r.content)] == [5, 2]
    r = await client.get("/psfs/t/records", params={"value": "a", "include_superseded": "true"})
    assert [orjson.loads(x)["v"] for x in lines(r.content)] == [5, 2, 1]
    r = await client.post("/scan", json={"expr": "v > `0`"})
    assert [orjson.loads(x)["v"] for x in lines(r.content)] == [5, 4, 3, 2]


@pytest.mark.anyio
async def test_an_unkeyed_store_says_it_has_no_key(store):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)),
                                 base_url="http://shoal") as c:
        r = await c.get("/keys/1")
    assert r.status_code == 400 and "no key" in r.json()["detail"]


def test_client_keys(live_url, keyed):
    with shoal.Client(live_url) as c:
        c.ingest(BODY)
        assert c.get_key(1).json() == VERSIONS[3]
        assert c.get_key("1").json() == VERSIONS[1]  # sent as JSON text: stays a string
        assert c.get_key(1).address == keyed.get_key(1).address
        assert c.get_key(99) is None
        assert c.delete_key("1") is True and c.delete_key("1") is False
        assert c.get_key("1") is None and c.get_key(1) is not None
        assert [r.json()["v"] for r in c.query("t", "a")] == [5]
        assert [r.json()["v"] for r in c.query("t", "a", include_superseded=True)] == [5, 2, 1]
        with pytest.raises(shoal.errors.InvalidArgument):
            c.get_key(None)
