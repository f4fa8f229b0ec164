"""End to end: `python -m shoal.api.server` as a real process on a free
port. Streams generated Zeek logs (gzip) over HTTP, compares queries with the oracle,
stops with SIGTERM (exit 0, a checkpoint written), restarts and queries
again; and checks that a body far larger than memory streams in bounded
memory."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from oracle import Log, as_pairs

import shoal
from shoal import sample

from serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow
ZEEK_RECORDS = 60_000
REPO = Path(__file__).resolve().parents[2]


def Server(data_dir: Path, *args: str) -> ServerProcess:
    return ServerProcess(data_dir, *args)


def file_chunks(path: Path, size: int = 1 << 16):
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


QUERIES = [("path", "_path", "dns", {"limit": 500}), ("path", "_path", "<rarest>", {}),
           ("path", "_path", "rdp", {"order": "oldest"}), ("resp_p", '"id.resp_p"', 3389, {"limit": 300}),
           ("udp", "proto == 'udp'", True, {"limit": 200, "order": "oldest"}),
           ("late", "query", "docs.google.com", {})]


def check_queries(c: shoal.Client, log: Log) -> None:
    counts = log.value_counts("_path")
    rarest = min(counts, key=lambda k: (counts[k], k))[1]  # a kind with a handful of records
    for name, expr, value, kw in QUERIES:
        value = rarest if value == "<rarest>" else value
        want = log.query(expr, value, **kw)
        assert want, (name, value)
        assert as_pairs(c.query(name, value, **kw)) == want, (name, value, kw)
    cond = [("path", "dns"), ("resp_p", 53)]
    assert as_pairs(c.query_all(cond, limit=100)) == log.query_all(
        [("_path", "dns"), ('"id.resp_p"', 53)], limit=100)
    expr = "\"id.resp_p\" == `445` && proto == 'tcp'"
    assert as_pairs(c.scan(expr)) == log.scan(expr)


def test_serve_ingest_query_sigterm_restart(tmp_path, generated):
    data = tmp_path / "data"
    log = Log(generated("zeek_logs", ZEEK_RECORDS))
    zeek = sample.write("zeek_logs", ZEEK_RECORDS, tmp_path / "zeek.ndjson.gz")
    with Server(data, "--memory", "64MiB") as srv:
        with shoal.Client(srv.url) as c:
            for name, expr in {(n, e) for n, e, _, _ in QUERIES if n != "late"}:
                c.register_psf(name, expr)
            r = httpx.post(srv.url + "/records", content=file_chunks(zeek), timeout=300,
                           headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
            assert r.status_code == 200, r.text
            assert (r.json()["ingested"], r.json()["rejected"]) == (len(log), 0)
            c.register_psf("late", "query")  # registered after the data: answered by scanning
            log.bind(c)
            check_queries(c, log)
        rc, seconds, output = srv.stop(signal.SIGTERM)
    assert rc == 0, output
    assert seconds < 10
    ckpts = shoal.store.checkpoint.list_checkpoints(data / "checkpoints")
    assert ckpts, "no checkpoint was written at shutdown"

    with Server(data) as srv:
        with shoal.Client(srv.url) as c:
            s = c.stats()
            assert s["records"] == len(log)
            assert s["recovery"]["checkpoint_id"] == ckpts[-1] and s["recovery"]["replayed_records"] == 0
            check_queries(c, log)
            r = c.ingest(b'{"_path":"dns","query":"docs.google.com"}\n')  # and it takes more
            assert r.ingested == 1
            assert len(list(c.query("late", "docs.google.com"))) == len(log.query("query", "docs.google.com")) + 1
        rc, _, output = srv.stop(signal.SIGINT)
    assert rc == 0, output


def test_a_second_server_on_the_same_data_is_refused(tmp_path):
    with Server(tmp_path / "d") as srv:
        port = free_port()
        p = subprocess.run([sys.executable, "-m", "shoal.api.server", "--data", str(tmp_path / "d"),
                            "--port", str(port)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and "in use by another process" in p.stderr
        srv.stop()


BODY_BYTES = 200 << 20


def generated_body(total: int = BODY_BYTES, chunk_records: int = 4000):
    """~200 MB of distinct NDJSON records, generated as it is sent."""
    sent = 0
    i = 0
    while sent < total:
        chunk = b"".join(b'{"i":%d,"kind":"k%d","pad":"%s"}\n' % (j, j % 7, b"x" * 150)
                         for j in range(i, i + chunk_records))
        i += chunk_records
        sent += len(chunk)
        yield chunk


def test_a_body_much_larger_than_memory_streams_in_bounded_memory(tmp_path):
    with Server(tmp_path / "d", "--memory", "16MiB", "--page-size", "1MiB") as srv:
        base = srv.peak_rss_bytes()
        r = httpx.post(srv.url + "/records", content=generated_body(), timeout=600,
                       headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["rejected"] == 0 and out["input_bytes"] > BODY_BYTES * 0.99
        peak = srv.peak_rss_bytes()
        growth = peak - base
        # 16 MiB of log pages, 8 queued 1 MiB chunks, a batch and framing
        # buffers: tens of MB, never the body's 200 MB.
        assert growth < 80 << 20, f"server RSS grew by {growth >> 20} MiB ({base >> 20} -> {peak >> 20})"
        assert srv.stop()[0] == 0
