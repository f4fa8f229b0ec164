"""Bearer-token access (shoal/api/auth.py): every route with no token, a
read token, a write token and a wrong one; the body of a refused request is
never read; shoal.Client and the CLI carry the token; the tokens' rules.

The expected role of each route is `ROUTES` below, written from the issue's
contract (reads: GETs, /query, /scan; writes: ingest, PSF changes, key
deletes, checkpoints, compaction; open: /healthz and the API docs), not
from auth.py's rule; a test fails when the app has a route this table does
not classify, so a new route must be decided here too."""
from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest
from .conftest import assert_error

import shoal
from shoal.api import create_app
from shoal.api.auth import Role, Tokens, required_role
from shoal.api.routes import elastic

WRITE = "w-" + "x" * 30
WRITE2 = "w2-" + "y" * 30
READ = "r-" + "z" * 30

# (method, path template, concrete request path, JSON body or None, role)
ROUTES = [
    ("GET", "/healthz", "/healthz", None, Role.NONE),
    ("GET", "/openapi.json", "/openapi.json", None, Role.NONE),
    ("GET", "/docs", "/docs", None, Role.NONE),
    ("GET", "/stats", "/stats", None, Role.READ),
    ("GET", "/metrics", "/metrics", None, Role.READ),
    ("GET", "/checkpoints", "/checkpoints", None, Role.READ),
    ("GET", "/cluster", "/cluster", None, Role.READ),
    ("GET", "/psfs", "/psfs", None, Role.READ),
    ("GET", "/psfs/{name}", "/psfs/t", None, Role.READ),
    ("GET", "/psfs/{name}/records", "/psfs/t/records?value=1", None, Role.READ),
    ("GET", "/records/{address}", "/records/64", None, Role.READ),
    ("GET", "/keys/{key}", "/keys/1", None, Role.READ),
    ("GET", "/tail", "/tail?timeout=0", None, Role.READ),
    ("POST", "/query", "/query", {"psf": "t", "value": 1}, Role.READ),
    ("POST", "/scan", "/scan", {"expr": "t"}, Role.READ),
    ("POST", "/count", "/count", {"psf": "t", "value": 1}, Role.READ),
    ("POST", "/group_count", "/group_count", {"psf": "t"}, Role.READ),
    ("POST", "/records", "/records", None, Role.WRITE),
    ("POST", "/psfs", "/psfs", {"name": "u", "expr": "t"}, Role.WRITE),
    ("DELETE", "/psfs/{name}", "/psfs/t", None, Role.WRITE),
    ("DELETE", "/keys/{key}", "/keys/1", None, Role.WRITE),
    ("POST", "/checkpoints", "/checkpoints", None, Role.WRITE),
    ("POST", "/compact", "/compact", {"retain_bytes": 1 << 30}, Role.WRITE),
] + [  # the Elasticsearch door (routes/elastic.py), at the root and under /es
    (method, prefix + template, prefix + path, None, role) for prefix in ("", "/es")
    for method, template, path, role in [
        ("GET", "/", "/", Role.READ), ("HEAD", "/", "/", Role.READ),
        ("GET", "/_cluster/health", "/_cluster/health", Role.READ),
        ("POST", "/_bulk", "/_bulk", Role.WRITE), ("PUT", "/_bulk", "/_bulk", Role.WRITE),
        ("POST", "/{index}/_bulk", "/logs/_bulk", Role.WRITE), ("PUT", "/{index}/_bulk", "/logs/_bulk", Role.WRITE),
    ]
]


@pytest.fixture
def auth_app(store):
    store.register_psf("t", "t")
    store.ingest(b'{"t": 1}\n{"t": 2}\n')
    return create_app(store, tokens=Tokens.of([WRITE, WRITE2], [READ]))


@pytest.fixture
async def auth_client(auth_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=auth_app), base_url="http://shoal") as c:
        yield c


def _headers(token: str | None, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"} if token is not None else {}


async def _send(c: httpx.AsyncClient, method: str, path: str, body, token: str | None, **kw) -> httpx.Response:
    if path == "/records":
        return await c.post(path, content=b'{"t": 3}\n', headers={**_headers(token), "Content-Type": "application/x-ndjson"})
    if path.endswith("/_bulk"):
        return await c.request(method, path, content=b'{"index": {"_index": "a"}}\n{"t": 3}\n', headers=_headers(token))
    return await c.request(method, path, json=body, headers=_headers(token), **kw)


def test_every_route_is_classified(auth_app):
    """The table covers every route the app serves, with the role auth.py derives."""
    served = {(m.upper(), path) for path, ops in auth_app.openapi()["paths"].items() for m in ops}
    served |= {("GET", "/openapi.json"), ("GET", "/docs")}  # served beside the description, not in it
    served |= {(m, prefix + r.path) for prefix in ("", elastic.ES_PREFIX) for r in elastic.router.routes
               for m in r.methods}  # left out of the description: the Elasticsearch door, at two prefixes
    assert served == {(m, t) for m, t, _, _, _ in ROUTES}
    for method, template, path, _, role in ROUTES:
        assert required_role(method, path.split("?")[0]) is role, (method, template)


@pytest.mark.anyio
@pytest.mark.parametrize("method,template,path,body,role", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
async def test_route_by_token(auth_client, method, template, path, body, role):
    """No token and a wrong one: 401 (unless open); a read token: 403 on a
    write route; the write token: every route, as without auth."""
    for token in (None, "not-" + WRITE, WRITE[:-1]):
        r = await _send(auth_client, method, path, body, token)
        if role is Role.NONE:
            assert r.status_code == 200, (path, r.text)
        else:
            if method == "HEAD":  # no body to say why
                assert r.status_code == 401
            else:
                assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
    r = await _send(auth_client, method, path, body, READ)
    if role is Role.WRITE:
        body_ = assert_error(r, 403, "forbidden")
        assert f"{method} {path.split('?')[0]}" in body_["detail"] and "write token" in body_["detail"]
    else:
        assert r.status_code not in (401, 403), (path, r.status_code, r.text)
    for token in (WRITE, WRITE2):  # either of two write tokens (rotation)
        r = await _send(auth_client, method, path, body, token)
        assert r.status_code not in (401, 403), (path, r.status_code, r.text)
        assert r.status_code < 500, (path, r.text)


@pytest.mark.anyio
async def test_refused_requests_store_nothing(auth_client, store):
    before = store.stats()["records"]
    for token in (None, READ, "wrong-token-wrong-token"):
        r = await auth_client.post("/records", content=b'{"t": 9}\n' * 100, headers=_headers(token))
        assert r.status_code in (401, 403)
        r = await auth_client.post("/psfs", json={"name": "new", "expr": "t"}, headers=_headers(token))
        assert r.status_code in (401, 403)
    assert store.stats()["records"] == before
    assert [p.name for p in store.psfs()] == ["t"]
    r = await auth_client.post("/records", content=b'{"t": 9}\n', headers=_headers(WRITE))
    assert r.status_code == 200 and store.stats()["records"] == before + 1


@pytest.mark.anyio
async def test_schemes_and_header_forms(auth_client):
    assert (await auth_client.get("/stats", headers=_headers(READ, "bearer"))).status_code == 200
    assert (await auth_client.get("/stats", headers=_headers(READ, "ApiKey"))).status_code == 200  # Elasticsearch clients
    for bad in (f"Basic {READ}", READ, "Bearer", "Bearer ", f"Token {READ}"):
        r = await auth_client.get("/stats", headers={"Authorization": bad})
        assert_error(r, 401, "unauthorized")


@pytest.mark.anyio
async def test_openapi_describes_the_tokens(auth_client):
    spec = (await auth_client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, template, _, _, role in ROUTES:
        op = spec["paths"].get(template) or spec["paths"].get(template.replace("{name}", "{name}"))
        if op is None:  # /docs and /openapi.json are not in the description
            continue
        sec = op[method.lower()]["security"]
        assert sec == ([] if role is Role.NONE else [{"bearer": []}]), (method, template)


@pytest.mark.anyio
async def test_no_tokens_means_open(store):
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        assert (await c.post("/psfs", json={"name": "a", "expr": "a"})).status_code == 201
        assert "securitySchemes" not in (await c.get("/openapi.json")).json().get("components", {})


def test_token_rules():
    with pytest.raises(shoal.InvalidArgument, match="need a write token"):
        Tokens.of([], [READ])
    with pytest.raises(shoal.InvalidArgument, match="both"):
        Tokens.of([WRITE], [WRITE])
    for bad in ("", "has space", "tab\there", "ünïcode-token-123456", "new\nline"):
        with pytest.raises(shoal.InvalidArgument):
            Tokens.of([bad])
    assert Tokens.of(["short"]).short() == ["a write token of 5 characters"]
    assert not Tokens().enabled and Tokens.of([WRITE]).enabled


def test_refused_before_the_body_is_read(store, live_url_for):
    """A client that announces a large body and sends none gets its 401 at
    once: the server answers from the headers alone."""
    url = live_url_for(create_app(store, tokens=Tokens.of([WRITE])))
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /records HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")
        t0 = time.monotonic()
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert time.monotonic() - t0 < 5
    assert store.stats()["records"] == 0


def test_client_and_access_denied(store, live_url_for, monkeypatch):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    url = live_url_for(create_app(store, tokens=Tokens.of([WRITE], [READ])))
    with shoal.Client(url) as c:
        with pytest.raises(shoal.AccessDenied) as info:
            c.stats()
        assert info.value.status == 401 and info.value.code == "unauthorized"
    with shoal.Client(url, token=READ) as c:
        assert c.stats()["records"] == 0
        assert list(c.scan("t")) == []
        with pytest.raises(shoal.AccessDenied) as info:
            c.ingest(b'{"t": 1}\n')
        assert info.value.status == 403 and info.value.code == "forbidden"
        with pytest.raises(shoal.AccessDenied):
            c.register_psf("t", "t")
    monkeypatch.setenv("SHOAL_TOKEN", WRITE)  # the default token
    with shoal.Client(url) as c:
        c.register_psf("t", "t")
        assert c.ingest(b'{"t": 1}\n{"t": 2}\n').ingested == 2
        assert [r.raw for r in c.query("t", 2)] == [b'{"t": 2}']
        c.checkpoint()
        assert c.compact(retain_bytes=1 << 30).records_dropped == 0
    assert store.stats()["records"] == 2


def test_cli_token(store, live_url_for, monkeypatch, capsys):
    from shoal.cli import main
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    url = live_url_for(create_app(store, tokens=Tokens.of([WRITE], [READ])))
    assert main(["psf", "add", "t", "t", "--url", url]) == 1
    assert "401 unauthorized" in capsys.readouterr().err
    assert main(["psf", "add", "t", "t", "--url", url, "--token", READ]) == 1
    assert "403 forbidden" in capsys.readouterr().err
    assert main(["--url", url, "--token", WRITE, "psf", "add", "t", "t"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("SHOAL_TOKEN", READ)
    assert main(["stats", "--json", "--url", url]) == 0
    assert orjson.loads(capsys.readouterr().out)["records"] == 0
