"""Slow and stuck clients cannot take the server from the others (limits.py):
bodies trickled a few bytes a second, and a client that never reads its
answer, against the real server process on 127.0.0.1. Every socket here has
a timeout and every wait a deadline, so a regression fails, never hangs."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from shoal.api.limits import ServerLimits, limited_body

from .conftest import assert_error
from serverproc import ServerProcess

pytestmark = pytest.mark.slow


def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect: the window the server may fill
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def _read_until_closed(s: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (or the
    deadline passes: then what came so far)."""
    out = bytearray()
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got = s.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            break
        except OSError:  # reset
            break
        if not got:
            return bytes(out)
        out += got
    raise AssertionError(f"the server did not close the connection ({len(out)} bytes came)")


class Trickler(threading.Thread):
    """POST /records announcing a large body, then one byte every 0.3 s
    until told to stop or the server answers."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.sock = _connect(port)
        self.stop = stop
        self.sock.sendall(b"POST /records HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/x-ndjson\r\n"
                          b"Content-Length: 100000\r\n\r\n")

    def run(self) -> None:
        body = b'{"slow":1}\n' * 10_000
        try:
            for b in body:
                if self.stop.wait(0.3):
                    return
                self.sock.sendall(bytes([b]))
        except OSError:  # the server answered and closed
            pass

    def answer_status(self, deadline: float) -> int:
        head = _read_until_closed(self.sock, deadline)
        return int(head.split(b" ", 2)[1])


def test_trickled_bodies_take_no_thread_from_reads_and_are_cut(tmp_path):
    with ServerProcess(tmp_path / "data", "--max-ingests", "8", "--body-idle-timeout", "3") as srv:
        c = httpx.Client(base_url=srv.url, timeout=5)
        c.post("/psfs", json={"name": "n", "expr": "n"}).raise_for_status()
        r = c.post("/records", content=b"".join(b'{"n":%d}\n' % i for i in range(100)))
        first = r.json()["first_address"]
        stop = threading.Event()
        tricklers = [Trickler(srv.port, stop) for _ in range(45)]
        try:
            for t in tricklers:
                t.start()
            time.sleep(1.0)  # all 45 bodies are trickling (or were refused)
            for _ in range(3):  # reads and admin answer at once, every time
                for method, url, kw in (("GET", "/stats", {}), ("GET", "/healthz", {}),
                                        ("POST", "/query", {"json": {"psf": "n", "value": 7}}),
                                        ("GET", f"/records/{first}", {}), ("GET", "/psfs", {})):
                    t0 = time.monotonic()
                    r = c.request(method, url, **kw)
                    assert r.status_code == 200, (url, r.text)
                    assert time.monotonic() - t0 < 2, (url, time.monotonic() - t0)
            # the ingest slots are taken: one more ingest is told at once to come back
            t0 = time.monotonic()
            r = c.post("/records", content=b'{"n":1000}\n')
            body = assert_error(r, 503, "too_many_ingests")
            assert body["max_ingests"] == 8 and r.headers["retry-after"] == "1"
            assert time.monotonic() - t0 < 2
            # the trickled bodies are cut after one window of 3 s: 408; the others had 503
            deadline = time.monotonic() + 15
            statuses = sorted(t.answer_status(deadline) for t in tricklers)
            assert statuses == [408] * 8 + [503] * 37, statuses
            r = c.post("/records", content=b'{"n":1001}\n')
            assert r.status_code == 200 and r.json()["ingested"] == 1, r.text
        finally:
            stop.set()
            for t in tricklers:
                t.sock.close()
                t.join(5)
            c.close()


def test_a_client_that_does_not_read_its_answer_is_cut_off(tmp_path):
    with ServerProcess(tmp_path / "data", "--send-timeout", "2") as srv:
        c = httpx.Client(base_url=srv.url, timeout=30)
        c.post("/psfs", json={"name": "k", "expr": "k"}).raise_for_status()
        pad = "x" * 500
        for part in range(4):  # ~25 MB of answer: far more than socket buffers hold
            r = c.post("/records", content=b"".join(b'{"k":"v","i":%d,"pad":"%s"}\n' % (i, pad.encode())
                                                    for i in range(part * 12_500, (part + 1) * 12_500)))
            assert r.status_code == 200, r.text
        s = _connect(srv.port, rcvbuf=4096)
        try:
            s.sendall(b"GET /psfs/k/records?value=v HTTP/1.1\r\nHost: shoal\r\n\r\n")
            time.sleep(0.5)
            t0 = time.monotonic()
            assert c.get("/stats").status_code == 200  # the stuck reader holds nobody up
            assert time.monotonic() - t0 < 2
            time.sleep(3)  # past the send timeout, without reading
            got = _read_until_closed(s, time.monotonic() + 10)
        finally:
            s.close()
        assert got.startswith(b"HTTP/1.1 200")
        assert len(got) < 20_000_000, "the whole answer was sent: nothing was cut off"
        assert not got.endswith(b"0\r\n\r\n"), "a cut-off answer must not look complete"
        assert c.get("/healthz").status_code == 200
        c.close()


# ---- the body rules alone ----

async def _body(pieces):
    """An async body: (delay in seconds, bytes) pairs."""
    import asyncio
    for delay, data in pieces:
        await asyncio.sleep(delay)
        yield data


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_limited_body_rules(anyio_backend):
    from shoal.api.errors import ApiError
    limits = ServerLimits(body_idle_timeout_s=0.2, body_min_rate_bytes_per_s=100)
    fast = [(0.01, b"x" * 50)] * 30  # 5,000 bytes/s over 0.3 s: passes
    assert b"".join([c async for c in limited_body(_body(fast), limits)]) == b"x" * 1500
    with pytest.raises(ApiError) as info:  # a pause longer than the idle timeout
        [c async for c in limited_body(_body([(0.01, b"x"), (0.5, b"y")]), limits)]
    assert (info.value.status, info.value.code, info.value.extra) == (408, "body_timeout", {"timeout_s": 0.2})
    with pytest.raises(ApiError) as info:  # steady, but 10 bytes/s
        [c async for c in limited_body(_body([(0.1, b"z")] * 10), limits)]
    assert (info.value.status, info.value.code) == (408, "body_timeout")
    assert info.value.extra == {"min_rate_bytes_per_s": 100}
    unlimited = ServerLimits(body_idle_timeout_s=0.2, body_min_rate_bytes_per_s=0)
    assert len([c async for c in limited_body(_body([(0.1, b"z")] * 5), unlimited)]) == 5


@pytest.mark.parametrize("bad", [{"max_ingests": 0}, {"body_idle_timeout_s": 0}, {"send_timeout_s": -1},
                                 {"body_min_rate_bytes_per_s": -5}, {"max_ingests": True}])
def test_server_limits_are_checked(bad):
    import shoal
    with pytest.raises(shoal.InvalidArgument):
        ServerLimits(**bad)


@pytest.mark.slow
def test_connections_past_max_connections_get_503(tmp_path):
    """Idle or slow connections hold a socket (a file descriptor) each:
    past --max-connections the server answers 503 instead of running out
    of descriptors, and serves again once they go."""
    with ServerProcess(tmp_path / "data", "--max-connections", "4") as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(4)]
        try:
            for s in idle:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            time.sleep(0.3)
            r = httpx.get(srv.url + "/stats", timeout=5)
            assert r.status_code == 503
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5
        while httpx.get(srv.url + "/stats", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the server did not serve again"
            time.sleep(0.1)
