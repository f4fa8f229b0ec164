"""HTTP ingest vs library ingest of the same file, in the same run.

    .venv/bin/python benchmarks/http_ingest.py [--quick] [--runs 3] [--dataset events|zeek] [--records N]

Starts `python -m shoal.api.server` on a free port over a fresh data
directory and, in rounds (one run of each per round), ingests the same NDJSON
file (decompressed, and gzip) by:
  library          Store.ingest(path) in this process
  curl             curl --data-binary @file -H 'Content-Type: application/x-ndjson'
                   POST /records: one streaming request
  shoal.Client     shoal.Client.ingest(path) of the gzip file (streamed as is)
  4 curls          4 curl processes at once, each streaming a quarter of the
                   file in one POST: concurrent large bodies (the server
                   prepares them in parallel, appending batch by batch)
  4 clients        the records as 1,000-record bodies POSTed by 4 threads,
                   an httpx.Client (keep-alive) each; per-request latency
  floor            curl posting the decompressed file to a bare uvicorn app
                   that only drains the body (same loop and HTTP parser as
                   the server): the cost of HTTP alone
Data: generated GitHub-like events (default; PSFs `type`, `repo.name`,
`actor.login`) or the Zeek stream (`_path`, `query`, `"id.resp_p"`). Both
stores have the same PSFs and memory budget (2x the file); each takes
warm-up ingests until every page frame was used once, then the timed ones
append to it (steady state). The server,
curl and this process share the machine's two cores. MB/s counts
decompressed record bytes for every row, so rows compare directly; "vs
library" is the median over rounds of library time / this row's time for
the same file.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (CACHE, MB, NO_DATA, ROOT, arg_parser, events_file, page_config, paired_ratio,  # noqa: E402
                     percentile, real_file, summary, table, target, target_table, write_result)
from _peers import psfs, register  # noqa: E402

import shoal  # noqa: E402

CLIENTS = 4
BODY_RECORDS = 1000
ZEEK_GZ = real_file("ndjson", "zeek_wrccdc2018.ndjson.gz")  # None without the real data


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
    def __init__(self, data_dir: Path | None, config: dict | None = None, extra: list[str] = ()):
        import httpx
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = [] if not config else ["--memory", str(config["memory_budget_bytes"]),
                                          "--page-size", str(config["page_size_bytes"])]
        cmd = ([sys.executable, "-c", _DRAIN, str(self.port)] if data_dir is None else
               [sys.executable, "-m", "shoal.api.server", "--data", str(data_dir), "--port", str(self.port),
                "--log-level", "warning", "--no-access-log", *settings, *extra])
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


def curl_ingest(url: str, path: Path, gz: bool) -> dict:
    headers = ["-H", "Content-Type: application/x-ndjson"] + (["-H", "Content-Encoding: gzip"] if gz else [])
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "--data-binary", f"@{path}", *headers,
                          url + "/records"], check=True, capture_output=True)
    body = json.loads(out.stdout)
    assert body["rejected"] == 0, body
    return body


def concurrent_curls(url: str, paths: list[Path]) -> int:
    """One streaming POST per file, all at once (a curl process each);
    records stored."""
    headers = ["-H", "Content-Type: application/x-ndjson"]
    procs = [subprocess.Popen(["curl", "-sS", "--fail-with-body", "--data-binary", f"@{p}", *headers,
                               url + "/records"], stdout=subprocess.PIPE) for p in paths]
    stored = 0
    for p in procs:
        out, _ = p.communicate()
        assert p.returncode == 0, out[:500]
        body = json.loads(out)
        assert body["rejected"] == 0, body
        stored += body["ingested"]
    return stored


def concurrent_posts(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """POST every body, spread over `clients` threads with a keep-alive
    connection each; wall seconds, per-request seconds, records stored."""
    import httpx
    latencies: list[float] = []
    stored = [0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=600, headers={"Content-Type": "application/x-ndjson"}) as c:
                c.get("/healthz")  # connect before the clock starts
                start.wait()
                for body in bodies[i::clients]:
                    t0 = time.perf_counter()
                    r = c.post("/records", content=body)
                    latencies.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:500]
                    stored[i] += r.json()["ingested"]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, latencies, sum(stored)


def files_for(dataset: str, n: int, work: Path) -> dict[str, Path]:
    """{"ndjson": decompressed file, "gz": its gzip}."""
    if dataset == "zeek":
        raw = work / "zeek.ndjson"
        with gzip.open(ZEEK_GZ) as src, open(raw, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return {"ndjson": raw, "gz": ZEEK_GZ}
    raw = events_file(n)
    gz = CACHE / (raw.name + ".gz")
    if not gz.exists():
        tmp = gz.with_name(f"{gz.name}.tmp{os.getpid()}")
        with open(raw, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(gz)
    return {"ndjson": raw, "gz": gz}


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--dataset", choices=["events", "zeek"], default="events")
    ap.add_argument("--records", type=int, default=0, help="events (default 200,000; --quick 20,000)")
    args = ap.parse_args(argv)
    if shutil.which("curl") is None:
        sys.exit("curl is needed")
    if args.dataset == "zeek" and ZEEK_GZ is None:
        sys.exit(f"--dataset zeek {NO_DATA}")
    n_events = args.records or (20_000 if args.quick else 200_000)
    specs = psfs("zeek" if args.dataset == "zeek" else "events", 3)

    work = Path(tempfile.mkdtemp(prefix="shoal-http-bench-"))
    try:
        files = files_for(args.dataset, n_events, work)
        raw_path = files["ndjson"]
        raw_bytes = raw_path.stat().st_size
        lines = raw_path.read_bytes().splitlines(keepends=True)
        n_records = len(lines)
        bodies = [b"".join(lines[i:i + BODY_RECORDS]) for i in range(0, n_records, BODY_RECORDS)]
        quarters = []
        for q in range(CLIENTS):
            quarters.append(work / f"quarter-{q}.ndjson")
            quarters[-1].write_bytes(b"".join(lines[q * n_records // CLIENTS:(q + 1) * n_records // CLIENTS]))
        del lines
        config = page_config(raw_bytes, 2.0)

        server = Server(work / "server-data", config)
        floor = Server(None)
        store = shoal.open(work / "library-data", **config)
        client = shoal.Client(server.url)
        register(store, specs)
        for s in specs:
            client.register_psf(s.name, s.jmespath)
        latencies: list[float] = []

        def library(fmt: str) -> None:
            r = store.ingest(files[fmt])
            assert r.ingested == n_records, r.ingested

        def via_client(fmt: str) -> None:
            r = client.ingest(files[fmt])
            assert r.ingested == n_records, r.ingested

        def via_curl(fmt: str) -> None:
            assert curl_ingest(server.url, files[fmt], gz=fmt == "gz")["ingested"] == n_records

        def curls() -> None:
            assert concurrent_curls(server.url, quarters) == n_records

        def clients() -> None:
            _, lat, stored = concurrent_posts(server.url, bodies, CLIENTS)
            assert stored == n_records, (stored, n_records)
            latencies.extend(lat)

        methods = {
            ("library", "ndjson"): lambda: library("ndjson"),
            ("library", "gz"): lambda: library("gz"),
            ("curl", "ndjson"): lambda: via_curl("ndjson"),
            ("curl", "gz"): lambda: via_curl("gz"),
            ("shoal.Client", "gz"): lambda: via_client("gz"),
            (f"{CLIENTS} curls, a quarter each", "ndjson"): curls,
            (f"{CLIENTS} clients x {BODY_RECORDS:,}-record POSTs", "ndjson"): clients,
            ("floor: curl to a drain-only app", "ndjson"): lambda: curl_ingest(floor.url, raw_path, gz=False),
        }
        for _ in range(-(-config["memory_budget_bytes"] // raw_bytes)):
            library("ndjson")  # warm-ups: every page frame of both stores allocated once
            via_curl("ndjson")
        samples: dict[tuple[str, str], list[float]] = {k: [] for k in methods}
        for _ in range(args.runs):
            for key, fn in methods.items():
                t0 = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - t0)
        client.close()
        store.close()
        floor.stop()
        rc = server.stop()
        assert rc == 0, f"server exit code {rc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows, results = [], {}
    for (method, fmt), secs in samples.items():
        s = summary(secs)
        med = s["median"]
        vs = paired_ratio(samples[("library", fmt)], secs)
        results[f"{method}/{fmt}"] = {"seconds": s, "records_per_s": n_records / med,
                                      "mb_per_s": raw_bytes / med / MB, "vs_library": vs}
        rows.append([method, "decompressed" if fmt == "ndjson" else "gzip", f"{med:.3f}",
                     f"{n_records / med:,.0f}", f"{raw_bytes / med / MB:,.0f}", f"{vs['median']:.2f}x"])
    post = dict(summary(latencies), p99=percentile(latencies, 99))
    print(f"{args.dataset}: {n_records:,} records, {raw_bytes / MB:.1f} MB decompressed, "
          f"{files['gz'].stat().st_size / MB:.1f} MB gzip; {len(specs)} PSFs; medians of {args.runs} rounds")
    print(table(rows, ["method", "body", "median s", "records/s", "MB/s", "vs library"], align="llrrrr"))
    print(f"{BODY_RECORDS:,}-record POSTs from {CLIENTS} clients: latency median {post['median'] * 1e3:.1f} ms, "
          f"p99 {post['p99'] * 1e3:.1f} ms ({post['runs']} requests)")
    one = samples[("curl", "ndjson")]
    vs_floor = paired_ratio(samples[("floor: curl to a drain-only app", "ndjson")], one)
    vs_one = paired_ratio(one, samples[(f"{CLIENTS} curls, a quarter each", "ndjson")])
    print(f"one streaming POST / the drain-only floor: {vs_floor['median']:.2f}x; "
          f"{CLIENTS} concurrent POSTs / one: {vs_one['median']:.2f}x")
    targets = [target("HTTP streaming ingest (curl, one POST) vs library rate", ">= 0.5x",
                      results["curl/ndjson"]["vs_library"]["median"], 0.5, unit="x",
                      detail=f"{args.dataset}, decompressed NDJSON"),
               target("one streaming POST vs the drain-only uvicorn floor", ">= 0.9x", vs_floor["median"], 0.9,
                      unit="x"),
               target(f"{CLIENTS} concurrent streaming POSTs vs one", ">= 1.5x", vs_one["median"], 1.5, unit="x")]
    print()
    print(target_table(targets))
    payload = {"dataset": args.dataset, "records": n_records, "bytes": raw_bytes, "config": config,
               "psfs": {s.name: s.jmespath for s in specs}, "runs": args.runs, "quick": args.quick,
               "results": results, "post_latency": post, "vs_floor": vs_floor, "concurrent_vs_one": vs_one,
               "targets": targets}
    path = write_result("http_ingest", payload, args.out)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return payload


if __name__ == "__main__":
    main()
