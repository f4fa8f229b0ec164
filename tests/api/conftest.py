"""Fixtures of the HTTP API tests.

`client` is an httpx.AsyncClient wired to the app through ASGITransport (no
sockets) over the tiny-page `store` of tests/conftest.py; tests using it are
anyio tests on asyncio. `live_url` serves the same kind of app with uvicorn
on a free port in a thread, for the synchronous shoal.Client. Helpers read
NDJSON answers into the (address, raw) pairs tests/oracle.py answers with.
"""
from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from shoal.api import create_app


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def app(store):
    return create_app(store)


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as c:
        yield c


from serverproc import free_port  # noqa: E402  (one helper for tests/api and the CLI tests)


@pytest.fixture
def live_url_for():
    """live_url_for(app) -> base URL of `app` served by uvicorn on a free port
    in a thread (stopped at teardown)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on", http="httptools"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        servers.append((server, t))
        deadline = time.monotonic() + 10
        while not server.started:
            assert t.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, t in servers:
        server.should_exit = True
        t.join(10)


@pytest.fixture
def live_url(app, live_url_for):
    """Base URL of `app` served by uvicorn in a thread (stopped at teardown)."""
    return live_url_for(app)


def lines(body: bytes) -> list[bytes]:
    """The lines of an NDJSON answer (each ends with a newline)."""
    assert body == b"" or body.endswith(b"\n"), "an NDJSON answer ends with a newline"
    return body.split(b"\n")[:-1]


def pairs(body: bytes) -> list[tuple[int, bytes]]:
    """(address, raw) of a with_address=true answer, raw sliced out verbatim."""
    out = []
    for line in lines(body):
        assert line.startswith(b'{"address":') and line.endswith(b"}")
        head, _, rest = line.partition(b',"record":')
        out.append((int(head[len(b'{"address":'):]), rest[:-1]))
    return out


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    """The one error shape: {"error": code, "detail": str, ...}."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body
