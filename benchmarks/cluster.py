"""The cluster (shoal cluster serve, shards as Ray actors) beside one plain
`shoal serve`, in the same rounds.

Per round, each server on a fresh data directory, 3 PSFs (type, repo.name,
actor.login), the same NDJSON file of generated GitHub-like events:
  serve        `shoal serve`
  cluster k    `shoal cluster serve --shards k` for k = 1, 2, 4, on a Ray this
               script starts once (num_cpus = the cores; each shard reserves
               cores / k), so Ray's own start is not counted; the shards'
               actors and stores are
For each: ingest (curl --data-binary @file, one streaming POST, MB/s), then
query latency (median of 30 keep-alive requests): POST /query of a
frequent value with limit 10, and POST /count.

In this process, a keyed cluster (key `id`) of 2 shards holding the file
grown to 3 (add_shards(1)): the seconds its move of a third of the keys
takes, while every front's ingest and reads wait.

In this process, what the front and a shard cost per MB (the model):
  front        framing and cutting the file into 1 MiB pieces
               (routing.Router) plus handing each to Ray (ray.put): what the
               front does per MB whatever the shard count
  shard        Store.ingest of the same file, one thread (what a shard does)
With a core per shard and F fronts (each with a core; clients spread over
them), k shards ingest at most min(k / shard, F / front) MB/s: the script
prints that model for 1..8 shards with one front and with a front per
shard, a model from measured costs, not a measurement.

Targets: cluster 1 >= 0.8x serve; cluster k >= 0.8 k x cluster 1 where the
machine has a core per shard (here: k <= cores), else the model's 8 shards
>= 0.8 * 8 x one shard; fan-out query latency <= serve's + 2 ms.

    .venv/bin/python benchmarks/cluster.py [--quick] [--runs 3] [--records N]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (MB, ROOT, arg_parser, events_counts, events_file, paired_ratio, pick_values,  # noqa: E402
                     summary, table, target, target_table, write_result)
from _peers import psfs  # noqa: E402
from http_ingest import free_port  # noqa: E402

QUERIES = 30


class Server:
    """`shoal serve` or `shoal cluster serve` on a free port."""

    def __init__(self, data_dir: Path, cluster: list[str] | None):
        import httpx
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "shoal.cli", *(["cluster", "serve", *cluster] if cluster is not None else
                                                      ["serve"]),
               "--data", str(data_dir), "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited with {self.proc.returncode}")
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(120)


def ingest(url: str, path: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "--data-binary", f"@{path}", "-H",
                          "Content-Type: application/x-ndjson", url + "/records"], check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    body = json.loads(out.stdout)
    assert body["rejected"] == 0, body
    return seconds


def latencies(url: str, value: str) -> dict:
    import httpx
    out = {"query": [], "count": []}
    with httpx.Client(base_url=url, timeout=60) as c:
        c.get("/healthz")
        for _ in range(QUERIES):
            t0 = time.perf_counter()
            r = c.post("/query", json={"psf": "type", "value": value, "limit": 10})
            out["query"].append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.text.count("\n") == 10, r.text[:300]
            t0 = time.perf_counter()
            r = c.post("/count", json={"psf": "type", "value": value})
            out["count"].append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text[:300]
    return {k: sorted(v)[len(v) // 2] for k, v in out.items()}


def one(data_dir: Path, cluster: list[str] | None, path: Path, specs, value: str) -> dict:
    import httpx
    srv = Server(data_dir, cluster)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for s in specs:
                r = c.post("/psfs", json={"name": s.name, "expr": s.jmespath})
                assert r.status_code == 201, r.text
        seconds = ingest(srv.url, path)
        lat = latencies(srv.url, value)
    finally:
        srv.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {"ingest_s": seconds, **{f"{k}_s": v for k, v in lat.items()}}


def front_and_shard(path: Path, specs, tmp: Path) -> dict:
    """Seconds per MB of the front's work (pieces + ray.put) and of one
    shard's (Store.ingest), in this process."""
    import numpy as np
    import ray

    import shoal
    from shoal.cluster.routing import Router
    from shoal.cluster.shardmap import ShardMap
    from shoal.config import StoreConfig
    from shoal.ingest.framing import InputFormat
    from shoal.ingest.sources import Source
    from shoal.results import IngestResult
    size = path.stat().st_size
    router = Router(ShardMap.create(8), StoreConfig())
    t0 = time.perf_counter()
    refs = [ray.put([np.frombuffer(d, dtype=np.uint8) for d in (p.data if isinstance(p.data, list) else [p.data])])
            for p in router.pieces(Source(str(path)), InputFormat.AUTO, IngestResult())]
    front = time.perf_counter() - t0
    del refs
    d = tmp / "shard-alone"
    store = shoal.open(d)
    for s in specs:
        store.register_psf(s.name, s.jmespath)
    t0 = time.perf_counter()
    store.ingest(str(path))
    store.flush(durable=False)
    shard = time.perf_counter() - t0
    store.close()
    shutil.rmtree(d, ignore_errors=True)
    return {"front_s_per_mb": front / (size / MB), "shard_s_per_mb": shard / (size / MB)}


def move(path: Path, specs, tmp: Path, cores: int) -> dict:
    """A keyed cluster of 2 shards (key `id`) holding the file, grown to 3
    in this process: add_shards(1) moves a third of the keys (copied and
    fsynced at the new shard, deleted at the old ones), every front's
    ingest and reads paused meanwhile. Seconds, and MB of records moved."""
    import shoal.cluster
    d = tmp / "keyed"
    c = shoal.cluster.open(d, 2, key="id", shard_cpus=cores / 3)
    try:
        for s in specs:
            c.register_psf(s.name, s.jmespath)
        c.ingest(str(path))
        before = [s["records"] for s in c.status()["shards"]]
        t0 = time.perf_counter()
        c.add_shards(1, shard_cpus=cores / 3)
        seconds = time.perf_counter() - t0
        after = [s["records"] for s in c.status()["shards"]]
    finally:
        c.close()
        shutil.rmtree(d, ignore_errors=True)
    moved = after[2]
    return {"move_s": seconds, "moved_records": moved, "records": sum(before),
            "moved_mb": path.stat().st_size / MB * moved / max(1, sum(before))}


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="events (default 100,000: ~100 MB; --quick 5,000)")
    args = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        sys.exit("the cluster needs Ray: pip install 'shoal[cluster]'")
    if shutil.which("curl") is None:
        sys.exit("curl is needed")
    n = args.records or (5_000 if args.quick else 100_000)
    path = events_file(n)
    size = path.stat().st_size
    specs = psfs("events", 3)
    value = pick_values(events_counts(n)["type"], n * 0.1)[0]
    cores = len(os.sched_getaffinity(0))
    shard_counts = [1, 2] if args.quick else [1, 2, 4]
    tmp = Path(tempfile.mkdtemp(prefix="shoal-cluster-bench-"))
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, namespace="shoal",
             configure_logging=False)
    gcs = ray.get_runtime_context().gcs_address
    rows: dict[str, list[dict]] = {"serve": []}
    models, moves = [], []
    try:
        print(f"{n:,} events, {size / MB:,.1f} MB; {args.runs} rounds; shards {shard_counts}; {cores} cores",
              flush=True)
        for r in range(args.runs):
            rows["serve"].append(one(tmp / f"serve-{r}", None, path, specs, value))
            for k in shard_counts:
                flags = ["--shards", str(k), "--address", gcs, "--shard-cpus", f"{cores / k:g}"]
                rows.setdefault(f"cluster {k}", []).append(one(tmp / f"cluster{k}-{r}", flags, path, specs, value))
            models.append(front_and_shard(path, specs, tmp))
            moves.append(move(path, specs, tmp, cores))
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    res: dict = {"records": n, "bytes": size, "cores": cores, "rows": {}}
    out = []
    for name, rs in rows.items():
        ing = [x["ingest_s"] for x in rs]
        row = {"ingest_mb_s": summary([size / MB / s for s in ing]),
               "x_serve": paired_ratio([x["ingest_s"] for x in rows["serve"]], ing),
               "query_ms": summary([x["query_s"] * 1e3 for x in rs]),
               "count_ms": summary([x["count_s"] * 1e3 for x in rs])}
        if name != "serve":
            one_shard = rows["cluster 1"]
            row["x_cluster_1"] = paired_ratio([x["ingest_s"] for x in one_shard], ing)
        res["rows"][name] = row
        out.append([name, f"{row['ingest_mb_s']['median']:,.0f}", f"{row['x_serve']['median']:.2f}x",
                    f"{row.get('x_cluster_1', {}).get('median', 1.0):.2f}x" if name != "serve" else "",
                    f"{row['query_ms']['median']:.1f}", f"{row['count_ms']['median']:.1f}"])
    print(table(out, ["server", "ingest MB/s", "x serve", "x cluster 1", "query ms (limit 10)", "count ms"],
                align="lrrrrr"))
    front = summary([m["front_s_per_mb"] for m in models])["median"]
    shard = summary([m["shard_s_per_mb"] for m in models])["median"]
    ks = (1, 2, 4, 8)
    one_front = {k: min(k / shard, 1 / front) for k in ks}
    # clients spread over one front per shard (`shoal cluster serve` on each
    # shard's machine, the same directory): each front a core of its own
    fronts = {k: min(k / shard, k / front) for k in ks}
    res["model"] = {"front_s_per_mb": front, "shard_s_per_mb": shard, "mb_s_one_front": one_front,
                    "mb_s_front_per_shard": fronts}
    print(f"per MB: front {front * 1e3:.2f} ms (pieces + ray.put), shard {shard * 1e3:.2f} ms (Store.ingest). "
          "A model from these measured costs, a core per shard and per front:")
    print("  one front:        " + ", ".join(f"{k} shards {v:,.0f} MB/s ({v / one_front[1]:.1f}x)"
                                             for k, v in one_front.items()))
    print("  a front per shard: " + ", ".join(f"{k} shards {v:,.0f} MB/s ({v / fronts[1]:.1f}x)"
                                              for k, v in fronts.items()))
    mv = summary([m["move_s"] for m in moves])["median"]
    mv_mb = summary([m["moved_mb"] for m in moves])["median"]
    res["move"] = {"seconds": summary([m["move_s"] for m in moves]), "moved_mb": mv_mb,
                   "moved_records": moves[-1]["moved_records"], "records": moves[-1]["records"]}
    print(f"keyed cluster (key id), 2 shards -> 3: add_shards moved {moves[-1]['moved_records']:,} of "
          f"{moves[-1]['records']:,} records ({mv_mb:,.1f} MB) in {mv:.2f} s ({mv_mb / mv:,.0f} MB/s moved), "
          f"ingest and reads paused throughout")
    targets = [target("cluster, 1 shard / shoal serve (HTTP ingest)", ">= 0.8x",
                      res["rows"]["cluster 1"]["x_serve"]["median"], 0.8, unit="x")]
    for k in shard_counts[1:]:
        if k <= cores:
            targets.append(target(f"cluster, {k} shards / 1 shard (a core each)", f">= {0.8 * k:g}x",
                                  res["rows"][f"cluster {k}"]["x_cluster_1"]["median"], 0.8 * k, unit="x"))
    targets.append(target("model: 8 shards / 1, a front per shard, a core each", ">= 6.4x",
                          fronts[8] / fronts[1], 6.4, unit="x",
                          detail="a model from the measured front and shard costs"))
    targets.append(target("model: 8 shards / 1, one front, a core each", ">= 6.4x", one_front[8] / one_front[1],
                          6.4, unit="x", detail="a model from the measured front and shard costs"))
    base_q = res["rows"]["serve"]["query_ms"]["median"]
    for k in shard_counts[1:]:
        q = res["rows"][f"cluster {k}"]["query_ms"]["median"]
        targets.append(target(f"query latency, {k} shards (fan-out) vs serve + 2 ms", f"<= {base_q + 2:.1f} ms",
                              q, base_q + 2, unit="ms", higher_is_better=False))
    print()
    print(target_table(targets))
    payload = {"runs": args.runs, "quick": args.quick, "results": res, "targets": targets}
    p = write_result("cluster", payload, args.out)
    print(f"wrote {p}")
    return payload


if __name__ == "__main__":
    main()
