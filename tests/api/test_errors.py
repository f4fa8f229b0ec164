"""The one error shape for every status the API answers with, the error
table, the client's reverse mapping of it, and the OpenAPI description."""
from __future__ import annotations

import gzip
import inspect

import httpx
import pytest

import shoal
from shoal import client as shoal_client
from shoal import errors as E
from shoal.api import create_app
from shoal.api.errors import ERRORS, HTTP_CODES

from .conftest import assert_error

pytestmark = pytest.mark.anyio


async def test_400_parse_error_for_corrupt_gzip(client):
    body = gzip.compress(b'{"a":1}\n' * 1000)[:-30]
    r = await client.post("/records", content=body, headers={"Content-Encoding": "gzip"})
    assert_error(r, 400, "parse_error")
    assert_error(await client.post("/records", content=b"plain", headers={"Content-Encoding": "gzip"}),
                 400, "bad_request")


async def test_404_409_422_from_the_library(client):
    assert_error(await client.get("/psfs/x"), 404, "psf_not_found")
    assert_error(await client.get("/no/such/route"), 404, "not_found")
    await client.post("/psfs", json={"name": "x", "expr": "a"})
    assert_error(await client.post("/psfs", json={"name": "x", "expr": "a"}), 409, "psf_exists")
    body = assert_error(await client.post("/psfs", json={"name": "y", "expr": "a ||"}), 422, "psf_definition_error")
    assert isinstance(body["position"], int)
    body = assert_error(await client.post("/query", json={"psf": 3}), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "psf"]


async def test_405(client):
    assert_error(await client.put("/psfs"), 405, "method_not_allowed")


async def test_413_body_limit(store):
    app = create_app(store, max_body_bytes=1000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = assert_error(await c.post("/records", content=b'{"a":1}\n' * 200), 413, "body_too_large")
        assert body["limit_bytes"] == 1000

        async def chunked():  # no Content-Length: cut while streaming
            for _ in range(50):
                yield b'{"a":1}\n' * 10

        assert_error(await c.post("/records", content=chunked(), params={"on_error": "reject"}), 413,
                     "body_too_large")
        assert list(store.scan("`true`")) == []  # reject spools first: nothing stored
        r = await c.post("/records", content=b'{"a":1}\n' * 100)
        assert r.json()["ingested"] == 100  # the writer lock was released


async def test_413_record_too_large_is_per_record(client, store):
    big = b'{"a":"' + b"x" * (store.config.page_size_bytes * 2) + b'"}\n'
    r = await client.post("/records", content=big + b'{"a":1}\n')
    out = r.json()
    assert (out["ingested"], out["rejected"]) == (1, 1)


async def test_415(client):
    assert_error(await client.post("/records", content=b"{}", headers={"Content-Encoding": "br"}), 415,
                 "unsupported_media_type")
    assert_error(await client.post("/records", content=b"{}", headers={"Content-Type": "text/csv"}), 415,
                 "unsupported_media_type")


async def test_compact_arguments(client):
    for body in ({}, {"until_address": 64, "retain_bytes": 1}, {"until_address": -1}, {"retain_bytes": "1GiB"},
                 {"until_address": 1.5}, {"cut": 3}):
        assert_error(await client.post("/compact", json=body), 422, "validation_error")
    assert_error(await client.post("/compact"), 422, "validation_error")


async def test_503_after_the_store_closed(client, store):
    store.close()
    for call in (client.get("/healthz"), client.get("/stats"), client.get("/psfs"),
                 client.post("/query", json={"psf": "a"}), client.post("/records", content=b"{}\n"),
                 client.post("/checkpoints"), client.get("/records/64")):
        assert_error(await call, 503, "store_closed")
    assert (await client.get("/metrics")).status_code == 200


async def test_500_is_generic_and_logged(store, caplog, monkeypatch):
    app = create_app(store)

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(store, "stats", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = assert_error(await c.get("/stats"), 500, "internal_error")
    assert "secret" not in body["detail"]
    assert "secret internals" in caplog.text


# ---- the table ----

def test_table_lists_subclasses_before_their_bases():
    for i, (cls, _, _) in enumerate(ERRORS):
        for later, _, _ in ERRORS[i + 1:]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


def test_every_library_error_has_a_row():
    tree = [c for c in vars(E).values() if inspect.isclass(c) and issubclass(c, E.ShoalError)
            and not issubclass(c, E.RemoteError)]  # RemoteError and AccessDenied: raised by the client only
    covered = {cls for cls, _, _ in ERRORS}
    for c in tree:
        assert c in covered, c.__name__
    assert all(400 <= s < 600 for _, s, _ in ERRORS)


def test_client_maps_every_library_code_back():
    for cls, _, code in ERRORS:
        if issubclass(cls, E.ShoalError):
            exc = shoal_client._ERRORS[code]({"detail": "d", "errors": []})
            assert isinstance(exc, cls), (code, type(exc))
    # codes with no library class come back as RemoteError
    r = httpx.Response(413, json={"error": HTTP_CODES[413], "detail": "too big"})
    with pytest.raises(shoal.RemoteError) as info:
        shoal_client._raise_for(r)
    assert (info.value.status, info.value.code) == (413, "body_too_large")


# ---- OpenAPI ----

async def test_openapi_describes_every_route(client, app):
    spec = (await client.get("/openapi.json")).json()
    routes = {(r.path, m) for r in app.routes if getattr(r, "include_in_schema", False) for m in r.methods}
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    assert routes - {(p, "HEAD") for p, _ in routes} <= documented
    assert {p for p, _ in documented} >= {
        "/records", "/records/{address}", "/psfs", "/psfs/{name}", "/psfs/{name}/records", "/query", "/scan",
        "/checkpoints", "/compact", "/stats", "/healthz", "/metrics"}
    paths = spec["paths"]
    for p, m in (("/query", "post"), ("/scan", "post"), ("/psfs/{name}/records", "get")):
        assert "application/x-ndjson" in paths[p][m]["responses"]["200"]["content"], p
        assert "ErrorBody" in str(paths[p][m]["responses"]["404" if p != "/scan" else "422"])
    ingest = paths["/records"]["post"]
    assert {"application/x-ndjson", "application/json"} <= set(ingest["requestBody"]["content"])
    assert {"on_error", "durable", "format", "content-encoding"} <= {q["name"].lower() for q in ingest["parameters"]}
    assert paths["/psfs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PSFIn")
    assert "QueryIn" in str(paths["/query"]["post"]["requestBody"])
    assert "application/json" in paths["/records/{address}"]["get"]["responses"]["200"]["content"]
    r = await client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()


async def test_413_counts_bytes_after_gunzip(store):
    """A gzip body of a few hundred KB that expands past the limit (a gzip
    bomb) ends at the limit: 413 input_too_large, the records before it
    stored and counted, the server's memory never holding the expansion."""
    import gzip
    limit = 1 << 20
    data = b'{"a":1}\n' * 1_000_000  # 8 MB of records
    packed = gzip.compress(data)
    assert len(packed) < limit
    app = create_app(store, max_body_bytes=limit)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/records", content=packed, headers={"Content-Encoding": "gzip"})
        body = assert_error(r, 413, "input_too_large")
        assert body["limit_bytes"] == limit and "after gunzip" in body["detail"]
        stored = sum(1 for _ in store.scan("`true`"))
        assert body["ingested"] == stored == store.stats()["records"]
        assert stored * len(b'{"a":1}\n') <= limit
        r = await c.post("/records", content=packed, headers={"Content-Encoding": "gzip"},
                         params={"on_error": "reject"})
        assert_error(r, 413, "input_too_large")
        assert store.stats()["records"] == stored  # reject: nothing more stored


async def test_reject_mode_body_is_bounded_without_max_body(store, monkeypatch):
    """on_error=reject holds the whole body before storing it: bounded by a
    default when the server sets no --max-body; skip mode streams, so it
    has no such bound."""
    from shoal.api.routes import records
    monkeypatch.setattr(records, "REJECT_BODY_BYTES", 10_000)
    app = create_app(store)

    async def chunked():  # no Content-Length: refused while streaming
        for _ in range(100):
            yield b'{"a":1}\n' * 50

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = assert_error(await c.post("/records", content=chunked(), params={"on_error": "reject"}),
                            413, "body_too_large")
        assert body["limit_bytes"] == 10_000 and store.stats()["records"] == 0
        r = await c.post("/records", content=chunked())
        assert r.status_code == 200 and r.json()["ingested"] == 5000


def test_library_reject_spool_honours_max_input_bytes(store):
    chunks = iter([b'{"a":1}\n' * 1000] * 10)
    with pytest.raises(shoal.InputTooLarge, match="on_error=reject holds the whole input"):
        store.ingest(chunks, on_error="reject", max_input_bytes=20_000)
    assert store.stats()["records"] == 0
