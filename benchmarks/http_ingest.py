"""HTTP ingest vs library ingest of the Zeek stream, in the same run.

    .venv/bin/python benchmarks/http_ingest.py [--runs 3]

Starts `python -m shoal.api.server` on a free port over a fresh data
directory and streams `zeek_wrccdc2018.ndjson` (decompressed, 62.5 MB) and
`.ndjson.gz` (5.4 MB on the wire) with
`curl --data-binary @file -H 'Content-Type: application/x-ndjson'`, beside
`Store.ingest(path)` of the same files in this process and shoal.Client
(which streams the gz file as is). Both stores have the same 3 PSFs
(`_path`, `query`, `"id.resp_p"`) and default settings; each takes one
warm-up ingest, then the timed ones append to it (steady state), in rounds
(one run of each per round). The floor row is curl posting the decompressed
file to a bare uvicorn app that only drains the body (same loop and HTTP
parser as the server): the cost of HTTP alone. Figures: medians; MB/s counts decompressed
record bytes for every row, so rows compare directly; "vs library" divides
by the library's rate for the same file.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, summary, table, write_result  # noqa: E402

import shoal  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZEEK_GZ = DATA / "ndjson" / "zeek_wrccdc2018.ndjson.gz"
PSFS = {"path": "_path", "query": "query", "resp_p": '"id.resp_p"'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# An ASGI app that reads the body and answers {"rejected": 0}: the HTTP floor.
_DRAIN = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"rejected": 0}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", lifespan="off", access_log=False)
"""


class Server:
    def __init__(self, data_dir: Path | None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = ([sys.executable, "-c", _DRAIN, str(self.port)] if data_dir is None else
               [sys.executable, "-m", "shoal.api.server", "--data", str(data_dir), "--port", str(self.port),
                "--log-level", "warning", "--no-access-log"])
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        for _ in range(600):
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


def curl_ingest(url: str, path: Path, gz: bool) -> float:
    headers = ["-H", "Content-Type: application/x-ndjson"] + (["-H", "Content-Encoding: gzip"] if gz else [])
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "--data-binary", f"@{path}", *headers,
                          url + "/records"], check=True, capture_output=True)
    dt = time.perf_counter() - t0
    assert json.loads(out.stdout)["rejected"] == 0
    return dt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    if shutil.which("curl") is None:
        sys.exit("curl is needed")

    work = Path(tempfile.mkdtemp(prefix="shoal-http-bench-"))
    try:
        raw_path = work / "zeek.ndjson"
        with gzip.open(ZEEK_GZ) as src, open(raw_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        raw_bytes = raw_path.stat().st_size
        n_records = sum(1 for _ in open(raw_path, "rb"))
        files = {"ndjson": raw_path, "gz": ZEEK_GZ}

        server = Server(work / "server-data")
        floor = Server(None)
        store = shoal.open(work / "library-data")
        client = shoal.Client(server.url)
        for name, expr in PSFS.items():
            store.register_psf(name, expr)
            client.register_psf(name, expr)

        def library(fmt: str) -> float:
            t0 = time.perf_counter()
            r = store.ingest(files[fmt])
            dt = time.perf_counter() - t0
            assert r.ingested == n_records, r.ingested
            return dt

        def via_client(fmt: str) -> float:
            t0 = time.perf_counter()
            r = client.ingest(files[fmt])
            dt = time.perf_counter() - t0
            assert r.ingested == n_records, r.ingested
            return dt

        methods = {
            ("library", "ndjson"): lambda: library("ndjson"),
            ("library", "gz"): lambda: library("gz"),
            ("curl", "ndjson"): lambda: curl_ingest(server.url, raw_path, gz=False),
            ("curl", "gz"): lambda: curl_ingest(server.url, ZEEK_GZ, gz=True),
            ("shoal.Client", "gz"): lambda: via_client("gz"),
            ("floor: curl to a drain-only app", "ndjson"): lambda: curl_ingest(floor.url, raw_path, gz=False),
        }
        library("ndjson")  # warm-ups: both stores past their first pages
        curl_ingest(server.url, raw_path, gz=False)
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in methods}
        for _ in range(args.runs):
            for key, fn in methods.items():
                samples[key].append(fn())
        client.close()
        store.close()
        floor.stop()
        rc = server.stop()
        assert rc == 0, f"server exit code {rc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows, results = [], {}
    for (method, fmt), secs in samples.items():
        med = statistics.median(secs)
        lib = statistics.median(samples[("library", fmt)])
        results[f"{method}/{fmt}"] = {"seconds": summary(secs), "records_per_s": n_records / med,
                                      "mb_per_s": raw_bytes / med / 1e6, "vs_library": lib / med}
        rows.append([method, "decompressed" if fmt == "ndjson" else "gzip", f"{med:.3f}",
                     f"{n_records / med:,.0f}", f"{raw_bytes / med / 1e6:,.0f}", f"{lib / med:.2f}x"])
    print(f"Zeek stream: {n_records:,} records, {raw_bytes / 1e6:.1f} MB decompressed, "
          f"{ZEEK_GZ.stat().st_size / 1e6:.1f} MB gzip; {len(PSFS)} PSFs; medians of {args.runs} runs")
    print(table(rows, ["method", "body", "median s", "records/s", "MB/s", "vs library"]))
    path = write_result("http_ingest", {"records": n_records, "bytes": raw_bytes, "psfs": PSFS,
                                        "runs": args.runs, "results": results})
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
