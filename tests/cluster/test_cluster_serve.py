"""`shoal cluster serve` end to end: the HTTP API of shoal serve over a
cluster of 2 shards (on the tests' Ray), driven with shoal.Client and the
CLI, answers as the oracle says; `shoal cluster status` reports the shards;
SIGTERM stops it cleanly and a restart finds every record."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import shoal
from shoal.sample import github

from oracle import Log, python_value
from serverproc import ServerProcess


@pytest.mark.slow
def test_cluster_serve_answers_the_store_api(ray_cluster, tmp_path):
    import ray
    gcs = ray.get_runtime_context().gcs_address
    data = tmp_path / "cl"
    args = ("--shards", "2", "--shard-cpus", "0.25", "--address", gcs, "--memory", "8MiB")
    srv = ServerProcess(data, *args, module="shoal.cli", command=("cluster", "serve"), start_timeout_s=90)
    try:
        raw = github.events(3000, seed=3)
        log = Log(raw.splitlines())
        with shoal.Client(srv.url) as client:
            client.register_psf("type", "type")
            half = raw.index(b"\n", len(raw) // 2) + 1
            # two calls: a spreading cluster sends each (smaller than a piece) to the next shard
            assert client.ingest(raw[:half]).ingested + client.ingest(raw[half:]).ingested == 3000
            counts = {python_value(k): c for k, c in log.value_counts("type").items()}
            for t, n in list(counts.items())[:4]:
                assert client.count("type", t) == n
                got = [bytes(x.raw) for x in client.query("type", t)]
                assert got == [log.raws[i] for i in reversed(log.matching("type", t))]
            with pytest.raises(shoal.IngestRejected):  # a bad line: nothing of the body stored
                client.ingest(raw[:half] + b"not json\n", on_error="reject")
            top = client.group_count("type", limit=3)
            assert [n for _, n in top] == sorted(counts.values(), reverse=True)[:3]
        import httpx
        text = httpx.get(srv.url + "/metrics").text  # each shard's store, labelled
        per_shard = {line.split('"')[1]: int(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("shoal_records{")}
        assert sorted(per_shard) == ["0", "1"] and sum(per_shard.values()) == 3000
        assert "shoal_cluster_shards 2" in text
        stats = httpx.get(srv.url + "/stats").json()
        assert stats["records"] == 3000 and len(stats["shards"]) == 2
        # a client that skips the front: the map, then records straight to the shards
        m = httpx.get(srv.url + "/cluster").json()
        assert m["ray"]["address"] == gcs and len(m["shards"]) == 2 and len(m["owners"]) == m["virtual_shards"]
        from shoal import cluster
        direct = cluster.open(m["directory"], attach=True)
        more = github.events(500, seed=4)
        assert direct.ingest(more).ingested == 500
        direct.close(keep_shards=True)
        log = Log((raw + more).splitlines())
        with shoal.Client(srv.url) as client:
            assert client.count("type", "PushEvent") == len(log.matching("type", "PushEvent"))
            assert sum(1 for _ in client.scan("`true`")) == 3500
        with shoal.Client(srv.url) as client:
            oldest = next(client.scan("`true`", order="oldest", limit=1))
        # GET /tail from the oldest record: every record once, then the stream ends (timeout)
        tail = httpx.get(srv.url + "/tail", params={"since_address": oldest.address, "timeout": 1}, timeout=60)
        assert tail.status_code == 200
        assert sorted(tail.content.splitlines()) == sorted(log.raws)
        assert len(log.raws) == 3500
        out = subprocess.run([sys.executable, "-m", "shoal.cli", "cluster", "status", "--data", str(data),
                              "--address", gcs, "--json"], capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        st = json.loads(out.stdout)
        assert [s["healthy"] for s in st["shards"]] == [True, True]
        assert st["records"] == 3500 and all(s["records"] for s in st["shards"])
        assert all(s["disk_bytes"] > 0 for s in st["shards"]) and st["disk_bytes"] == sum(
            s["disk_bytes"] for s in st["shards"])
        assert sum(s["virtual_shards"] for s in st["shards"]) == st["virtual_shards"] and not st["moving"]
        out = subprocess.run([sys.executable, "-m", "shoal.cli", "cluster", "status", "--data", str(data),
                              "--address", gcs], capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        assert "3,500 records" in out.stdout.decode() and "vshards" in out.stdout.decode()
    finally:
        rc, _, output = srv.stop(timeout=60)
    assert rc == 0, output
    srv = ServerProcess(data, "--address", gcs, "--shard-cpus", "0.25", module="shoal.cli",
                        command=("cluster", "serve"), start_timeout_s=90)
    try:
        with shoal.Client(srv.url) as client:
            assert client.count("type", "PushEvent") == len(log.matching("type", "PushEvent"))
    finally:
        srv.stop(timeout=60)


@pytest.mark.parametrize("argv, says", [
    (["cluster", "serve", "--shards", "1"], "has 2 shards, not 1: only a keyed cluster removes shards"),
    (["cluster", "serve", "--route-by", "type"], "routes by None, not 'type'"),
])
def test_cluster_serve_refuses_a_cluster_it_does_not_match(tmp_path, argv, says):
    """Settings that contradict the cluster's map: a clear error, exit 1,
    before any Ray starts."""
    from shoal.cluster import shardmap
    shardmap.save(tmp_path / "cl", shardmap.ShardMap.create(2))
    out = subprocess.run([sys.executable, "-m", "shoal.cli", *argv, "--data", str(tmp_path / "cl")],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.decode().startswith("shoal cluster serve: ") and says in out.stderr.decode()


def test_cluster_status_of_no_cluster(tmp_path):
    out = subprocess.run([sys.executable, "-m", "shoal.cli", "cluster", "status", "--data", str(tmp_path / "none")],
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and "no cluster in" in out.stderr.decode()
