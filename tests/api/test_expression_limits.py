"""Expression limits over HTTP: POST /psfs and POST /scan answer 422 with a
code of their own for an expression too long, too deep or over its
evaluation budget (was: 500 RecursionError, or gigabytes and minutes); a
PSF over budget stores every record and counts them in /stats; a scan stops
when its client goes away, and does not hold up SIGTERM (real server)."""
from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

import shoal

from serverproc import ServerProcess

from .conftest import assert_error

pytestmark = pytest.mark.anyio


def pipe_bomb(stages: int) -> str:
    return "`1`" + " | [@,@]" * stages + " | length(to_string(@))"


def ndjson(n: int, pad: int = 0) -> bytes:
    return b"".join(json.dumps({"i": i, **({"pad": "z" * pad} if pad else {})}).encode() + b"\n"
                    for i in range(n))


TOO_DEEP = {
    "parens": "(" * 1000 + "a" + ")" * 1000,
    "not": "!" * 1000 + "a",
    "brackets": "[" * 1000 + "a" + "]" * 1000,
    "abs": "abs(" * 800 + "a" + ")" * 800,
    "filters": "a[?" * 900 + "b" + "]" * 900,
    "pipes": "a" + " | a" * 65,
}


@pytest.mark.parametrize("route", ["/psfs", "/scan"])
@pytest.mark.parametrize("kind", sorted(TOO_DEEP))
async def test_deep_nesting_answers_422_expression_too_deep(client, route, kind):
    text = TOO_DEEP[kind]
    body = {"name": "p", "expr": text} if route == "/psfs" else {"expr": text}
    b = assert_error(await client.post(route, json=body), 422, "expression_too_deep")
    assert b["limit"] == 64 and "max_expression_depth" in b["detail"]
    if kind != "pipes":
        assert b["depth"] == 65 and b["position"] is not None


@pytest.mark.parametrize("route", ["/psfs", "/scan"])
async def test_100000_parens_and_a_32kb_path_answer_422_expression_too_long_at_once(client, route):
    for text in ("(" * 100_000 + "a" + ")" * 100_000, ".".join(["a"] * 16_000)):
        body = {"name": "p", "expr": text} if route == "/psfs" else {"expr": text}
        t0 = time.perf_counter()
        b = assert_error(await client.post(route, json=body), 422, "expression_too_long")
        assert time.perf_counter() - t0 < 1
        assert b["limit"] == 4096 and b["length"] == len(text) and b["position"] == 4096
        assert len(b["expression"]) == 200  # not echoed whole
        assert "--max-expression-chars" in b["detail"]
    assert (await client.get("/psfs")).json()["psfs"] == []


async def test_a_pipe_bomb_scan_answers_422_with_the_record_s_address(client, store):
    store.ingest(ndjson(3))
    first = min(r.address for r in store.scan("`true`"))
    t0 = time.perf_counter()
    r = await client.post("/scan", json={"expr": pipe_bomb(26), "order": "oldest"})
    assert time.perf_counter() - t0 < 2
    b = assert_error(r, 422, "evaluation_budget_exceeded")
    assert b["limit"] == "max_eval_bytes" and b["address"] == first and "--max-eval-bytes" in b["detail"]


async def test_a_pipe_bomb_psf_stores_every_record_and_counts_them(client):
    assert (await client.post("/psfs", json={"name": "bomb", "expr": pipe_bomb(16)})).status_code == 201
    assert (await client.post("/psfs", json={"name": "i", "expr": "i"})).status_code == 201
    r = await client.post("/records", content=ndjson(500))
    assert r.status_code == 200 and r.json()["ingested"] == 500, r.text
    stats = (await client.get("/stats")).json()
    assert stats["records"] == 500
    rows = {p["name"]: p for p in stats["psfs"]}
    assert rows["bomb"]["over_budget"] == 500 and rows["i"]["over_budget"] == 0
    assert "\nshoal_psf_over_budget_total 500\n" in (await client.get("/metrics")).text
    got = await client.get("/psfs/i/records", params={"value": "7"})
    assert got.status_code == 200 and json.loads(got.content) == {"i": 7}


def test_the_client_raises_the_library_errors(live_url, store):
    store.ingest(ndjson(2))
    with shoal.Client(live_url) as c:
        with pytest.raises(shoal.ExpressionTooDeep) as deep:
            c.register_psf("p", "!" * 100 + "a")
        assert deep.value.position == 64 and deep.value.status == 422
        with pytest.raises(shoal.ExpressionTooLong) as long_:
            list(c.scan(".".join(["a"] * 3000)))
        assert long_.value.limit == 4096
        with pytest.raises(shoal.EvaluationBudgetExceeded) as over:
            list(c.scan(pipe_bomb(20)))
        assert over.value.limit == "max_eval_bytes" and over.value.address is not None


# ---- a real server: abandoned scans, SIGTERM ----

# ~6 ms a record within the default budget, and no record matches.
SLOW = "length(to_string(`1`" + " | [@,@]" * 14 + ")) == `-1`"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _busy_after(srv: ServerProcess, settle_s: float = 0.5, window_s: float = 2.0) -> float:
    """CPU seconds the server used in a window once `settle_s` has passed."""
    time.sleep(settle_s)
    before = _cpu_seconds(srv.proc.pid)
    time.sleep(window_s)
    return _cpu_seconds(srv.proc.pid) - before


@pytest.fixture
def slow_server(tmp_path):
    # ~500 records a page: a scan hands on its matches page by page
    with ServerProcess(tmp_path / "data", "--page-size", "64KiB") as srv:
        r = httpx.post(srv.url + "/records", content=ndjson(4000, pad=100), timeout=60)
        assert r.status_code == 200 and r.json()["ingested"] == 4000
        yield srv


@pytest.mark.slow
def test_a_scan_stops_when_its_client_goes_away_before_the_first_chunk(slow_server):
    """The whole scan (~25 s) would run in one next(): the route polls for the
    disconnect while it waits for the first chunk."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow_server.url + "/scan", json={"expr": SLOW}, timeout=1.0)
    assert _busy_after(slow_server) < 0.4
    assert httpx.get(slow_server.url + "/healthz").status_code == 200


@pytest.mark.slow
def test_a_scan_stops_when_its_client_goes_away_mid_stream(slow_server):
    """The oldest 1,100 records match at once (a first chunk streams), the
    rest take ~6 ms each."""
    expr = f"i < `1100` || {SLOW}"
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", slow_server.url + "/scan", json={"expr": expr, "order": "oldest"}) as r:
            assert r.status_code == 200
            assert next(r.iter_bytes()).startswith(b'{"i": 0, "pad": "zz')
    assert _busy_after(slow_server) < 0.4


@pytest.mark.slow
@pytest.mark.parametrize("how", ["psf-route", "query"])
def test_a_query_stops_when_its_client_goes_away(slow_server, how):
    """A PSF registered after the records were stored answers for them by a
    scan (it was not active there): ~25 s of a Python PSF, stopped once the
    client goes away."""
    r = httpx.post(slow_server.url + "/psfs", json={"name": "slow", "expr": SLOW}, timeout=10)
    assert r.status_code == 201, r.text
    with pytest.raises(httpx.ReadTimeout):
        if how == "psf-route":
            httpx.get(slow_server.url + "/psfs/slow/records", timeout=1.0)
        else:
            httpx.post(slow_server.url + "/query", json={"psf": "slow"}, timeout=1.0)
    assert _busy_after(slow_server) < 0.4
    assert httpx.get(slow_server.url + "/healthz").status_code == 200


@pytest.mark.slow
def test_sigterm_is_not_held_up_by_a_running_scan(slow_server):
    answers: list[httpx.Response | BaseException] = []

    def scan() -> None:
        try:
            answers.append(httpx.post(slow_server.url + "/scan", json={"expr": SLOW}, timeout=30))
        except BaseException as exc:  # noqa: BLE001
            answers.append(exc)

    t = threading.Thread(target=scan)
    t.start()
    time.sleep(1.0)
    rc, took, out = slow_server.stop(signal.SIGTERM, timeout=15)
    t.join(10)
    assert rc == 0 and took < 8, (rc, took, out)
    assert isinstance(answers[0], httpx.Response), answers
    assert_error(answers[0], 503, "store_closed")
    assert "shutting down" in answers[0].json()["detail"]


@pytest.mark.slow
def test_serve_flags_set_the_limits(tmp_path):
    with ServerProcess(tmp_path / "data", "--max-expression-chars", "40", "--max-expression-depth", "4",
                       "--max-eval-bytes", "2KiB") as srv:
        b = assert_error(httpx.post(srv.url + "/psfs", json={"name": "p", "expr": ".".join(["a"] * 21)}), 422,
                         "expression_too_long")
        assert b["limit"] == 40
        b = assert_error(httpx.post(srv.url + "/scan", json={"expr": "(((((a)))))"}), 422, "expression_too_deep")
        assert b["limit"] == 4
        httpx.post(srv.url + "/records", content=ndjson(1, pad=200))
        sixteen = "[" + ",".join(["@"] * 16) + "]"  # 16 copies of a ~220-byte record
        b = assert_error(httpx.post(srv.url + "/scan", json={"expr": sixteen}), 422, "evaluation_budget_exceeded")
        assert "2048" in b["detail"]
        r = httpx.post(srv.url + "/scan", json={"expr": "[@,@]"})
        assert r.status_code == 200 and r.content.startswith(b'{"i": 0')
